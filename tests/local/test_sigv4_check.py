"""local/sigv4_check.py, the local API Gateway's AWS_IAM check, on vectors of the published AWS
Signature Version 4 test suite and against curl's own signer.

No package this project can install ships the suite's files (botocore's wheel carries no test
data; requests-aws4auth and the aws4 npm package ship none either), so the cases below are
transcribed from it: the suite's credentials, date, region and service `service`. Its vectors
whose path holds percent-encoded bytes are left out: the suite encodes the path once, while every
service but S3 (API Gateway included) encodes it twice, as botocore does.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.credentials import ReadOnlyCredentials
from broker_server import BrokerServer, serve_broker
from sigv4_check import SignatureRefused, SigV4Check

from tests.client.scripted_broker import ACCOUNT_ID, CALLER_ARN, json_response

SUITE_CREDENTIALS = ReadOnlyCredentials(
    "AKIDEXAMPLE",
    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",  # the suite's published example secret
    None,
)
SUITE_TIME = datetime(2015, 8, 30, 12, 36, tzinfo=UTC).timestamp()
SUITE_HEADERS = [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")]
SUITE_CASES = {
    # name: (method, target, extra headers, body, SignedHeaders, Signature)
    "get-vanilla": (
        "GET",
        "/",
        [],
        b"",
        "host;x-amz-date",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    "get-vanilla-query-order-key-case": (
        "GET",
        "/?Param2=value2&Param1=value1",
        [],
        b"",
        "host;x-amz-date",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    "get-vanilla-empty-query-key": (
        "GET",
        "/?Param1=value1",
        [],
        b"",
        "host;x-amz-date",
        "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
    ),
    "get-vanilla-utf8-query": (
        "GET",
        "/?%E1%88%B4=bar",
        [],
        b"",
        "host;x-amz-date",
        "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    ),
    "post-vanilla": (
        "POST",
        "/",
        [],
        b"",
        "host;x-amz-date",
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ),
    "post-x-www-form-urlencoded": (
        "POST",
        "/",
        [("Content-Type", "application/x-www-form-urlencoded")],
        b"Param1=value1",
        "content-type;host;x-amz-date",
        "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
    ),
}


def suite_check() -> SigV4Check:
    return SigV4Check(SUITE_CREDENTIALS, "us-east-1", service="service", clock=lambda: SUITE_TIME)


def suite_request(name: str, signature: str | None = None) -> tuple[str, str, list[Any], bytes]:
    method, target, extra, body, signed, expected = SUITE_CASES[name]
    authorization = (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders={signed}, Signature={signature or expected}"
    )
    return method, target, [*SUITE_HEADERS, *extra, ("Authorization", authorization)], body


@pytest.mark.parametrize("name", SUITE_CASES)
def test_the_published_test_suite_signatures_hold(name: str) -> None:
    method, target, headers, body = suite_request(name)

    assert suite_check().verify(method, target, headers, body) == "AKIDEXAMPLE"


@pytest.mark.parametrize("name", SUITE_CASES)
def test_a_test_suite_signature_one_digit_off_is_refused(name: str) -> None:
    expected = SUITE_CASES[name][-1]
    wrong = expected[:-1] + ("0" if expected[-1] != "0" else "1")
    method, target, headers, body = suite_request(name, wrong)

    with pytest.raises(SignatureRefused, match="does not match"):
        suite_check().verify(method, target, headers, body)


def test_a_test_suite_request_checked_a_day_later_is_refused_as_expired() -> None:
    check = SigV4Check(
        SUITE_CREDENTIALS, "us-east-1", service="service", clock=lambda: SUITE_TIME + 86_400
    )
    method, target, headers, body = suite_request("get-vanilla")

    with pytest.raises(SignatureRefused, match="signature expired"):
        check.verify(method, target, headers, body)


# curl signs with --aws-sigv4 since 7.75; this machine kind has 7.88.
CURL = shutil.which("curl")


@pytest.fixture
def gateway() -> Iterator[BrokerServer]:
    credentials = ReadOnlyCredentials("AKIDLOCALCURL", "local-curl-secret", None)
    with serve_broker(
        lambda _event, _context: json_response(200, {"status": "ok"}),
        caller_arn=CALLER_ARN,
        account_id=ACCOUNT_ID,
        credentials=credentials,
        region="us-east-1",
    ) as api:
        yield api


def curl(*argv: str) -> tuple[int, str]:
    assert CURL is not None
    done = subprocess.run(  # noqa: S603 - the machine's curl, no shell
        [CURL, "-s", "-o", "/dev/stderr", "-w", "%{http_code}", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return int(done.stdout), done.stderr


def test_curl_aws_sigv4_passes_the_local_api_gateway(gateway: BrokerServer) -> None:
    # When curl signs for itself, as the README shows
    status, body = curl(
        "--aws-sigv4",
        "aws:amz:us-east-1:execute-api",
        "--user",
        "AKIDLOCALCURL:local-curl-secret",
        f"{gateway.base_url}/v1/health?minTtl=300",
    )

    # Then the gateway let it through to the broker
    assert (status, body) == (200, '{"status": "ok"}')


def test_curl_signing_for_another_region_is_refused(gateway: BrokerServer) -> None:
    status, _ = curl(
        "--aws-sigv4",
        "aws:amz:eu-west-1:execute-api",
        "--user",
        "AKIDLOCALCURL:local-curl-secret",
        f"{gateway.base_url}/v1/health",
    )

    assert status == 403
    assert gateway.refusals == ["signed for region 'eu-west-1', not 'us-east-1'"]
