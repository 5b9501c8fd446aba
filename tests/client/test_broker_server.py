"""local/broker_server.py turns HTTP requests into API Gateway REST proxy events and back, and
checks each caller's SigV4 signature as API Gateway's AWS_IAM authorization does."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import time_machine
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from broker_server import BrokerServer, environment_credentials, serve_broker

from killb_broker_client import BrokerAuth
from tests.client.scripted_broker import ACCOUNT_ID, CALLER_ARN, issued, json_response


class Recorder:
    """A handler that keeps each event and answers with a set response."""

    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.answer = answer or json_response(200, {"ok": True})
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], _context: Any) -> dict[str, Any]:
        self.events.append(event)
        return self.answer


GATEWAY_403 = {
    "errorCode": "BROKER.0002",
    "message": ["The request signature is not valid"],
    "statusCode": "403",
}


@pytest.fixture
def handler() -> Recorder:
    return Recorder(issued())


@pytest.fixture
def gateway(handler: Recorder) -> Iterator[BrokerServer]:
    """A local API Gateway checking signatures against the tests' credentials, in us-east-1."""
    with serve_broker(
        handler,
        caller_arn=CALLER_ARN,
        account_id=ACCOUNT_ID,
        credentials=environment_credentials(),
        region="us-east-1",
    ) as api:
        yield api


def signed_headers(
    method: str,
    url: str,
    *,
    region: str = "us-east-1",
    at: datetime | None = None,
    body: bytes = b"",
    credentials: ReadOnlyCredentials | None = None,
) -> dict[str, str]:
    """Headers that sign this request as a SigV4 client does, at a chosen moment."""
    request = AWSRequest(method=method, url=url, data=body)
    signer = SigV4Auth(credentials or environment_credentials(), "execute-api", region)
    # The signer reads the clock: only the signing moves to `at`, never the gateway's check.
    with time_machine.travel(at or datetime.now(UTC), tick=False):
        signer.add_auth(request)
    return dict(request.headers.items())


def test_unsigned_request_is_refused_by_the_gateway_and_never_reaches_the_handler(
    handler: Recorder, gateway: BrokerServer
) -> None:
    # When a request comes without a SigV4 signature
    response = requests.get(f"{gateway.base_url}/v1/health", timeout=5)

    # Then API Gateway's 403, in the contract's shape, and the handler never saw it
    assert response.status_code == 403
    assert response.json() == {
        "errorCode": "BROKER.0002",
        "message": ["Missing or unsigned request, or no such route"],
        "statusCode": "403",
    }
    assert response.headers["Cache-Control"] == "no-store"
    assert handler.events == []


def test_a_request_signed_for_another_region_is_refused(
    handler: Recorder, gateway: BrokerServer
) -> None:
    url = f"{gateway.base_url}/v1/auth-headers?minTtl=300"

    response = requests.get(url, headers=signed_headers("GET", url, region="eu-west-1"), timeout=5)

    assert (response.status_code, response.json()) == (403, GATEWAY_403)
    assert handler.events == []
    assert gateway.refusals == ["signed for region 'eu-west-1', not 'us-east-1'"]


@pytest.mark.parametrize("minutes", [-6, 6])
def test_a_signature_more_than_five_minutes_off_is_refused(
    handler: Recorder, gateway: BrokerServer, minutes: int
) -> None:
    # Given a request signed six minutes ago (or six minutes ahead)
    url = f"{gateway.base_url}/v1/health"
    at = datetime.now(UTC) + timedelta(minutes=minutes)

    response = requests.get(url, headers=signed_headers("GET", url, at=at), timeout=5)

    assert (response.status_code, response.json()) == (403, GATEWAY_403)
    assert handler.events == []
    assert gateway.refusals[0].startswith("signature expired")


def test_a_signature_four_minutes_old_still_holds(handler: Recorder, gateway: BrokerServer) -> None:
    url = f"{gateway.base_url}/v1/health"
    at = datetime.now(UTC) - timedelta(minutes=4)

    response = requests.get(url, headers=signed_headers("GET", url, at=at), timeout=5)

    assert response.status_code == 200
    assert len(handler.events) == 1


@pytest.mark.parametrize(
    ("what", "sent_url"),
    [
        ("another minTtl", "/v1/auth-headers?minTtl=1800"),
        ("a rejected report added", "/v1/auth-headers?minTtl=300&rejected=0123456789ab"),
        ("another path", "/v1/health?minTtl=300"),
    ],
)
def test_a_request_tampered_after_signing_is_refused(
    handler: Recorder, gateway: BrokerServer, what: str, sent_url: str
) -> None:
    # Given headers signed for GET /v1/auth-headers?minTtl=300
    signed = signed_headers("GET", f"{gateway.base_url}/v1/auth-headers?minTtl=300")

    # When the request sent differs (what)
    response = requests.get(f"{gateway.base_url}{sent_url}", headers=signed, timeout=5)

    # Then the gateway refuses it
    assert (response.status_code, response.json()) == (403, GATEWAY_403), what
    assert handler.events == []


def test_a_body_changed_after_signing_is_refused(handler: Recorder, gateway: BrokerServer) -> None:
    url = f"{gateway.base_url}/v1/auth-headers"
    signed = signed_headers("POST", url, body=b'{"a": 1}')

    response = requests.post(url, data=b'{"a": 2}', headers=signed, timeout=5)

    assert (response.status_code, response.json()) == (403, GATEWAY_403)
    assert handler.events == []


def test_a_body_changed_under_a_signed_content_hash_is_refused(
    handler: Recorder, gateway: BrokerServer
) -> None:
    # Given a request signed with x-amz-content-sha256 naming its body's hash
    url = f"{gateway.base_url}/v1/auth-headers"
    request = AWSRequest(method="POST", url=url, data=b'{"a": 1}')
    request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(b'{"a": 1}').hexdigest()
    SigV4Auth(environment_credentials(), "execute-api", "us-east-1").add_auth(request)

    # When another body is sent under the same headers
    response = requests.post(
        url, data=b'{"a": 2}', headers=dict(request.headers.items()), timeout=5
    )

    # Then the gateway checks the hash against the body that arrived
    assert (response.status_code, response.json()) == (403, GATEWAY_403)
    assert gateway.refusals == ["x-amz-content-sha256 is not the hash of the body"]


def test_a_changed_signed_header_is_refused(handler: Recorder, gateway: BrokerServer) -> None:
    url = f"{gateway.base_url}/v1/health"
    signed = signed_headers("GET", url)
    signed["X-Amz-Date"] = signed["X-Amz-Date"][:-3] + "00Z"  # the same minute, another second

    response = requests.get(url, headers=signed, timeout=5)

    assert (response.status_code, response.json()) == (403, GATEWAY_403)


def test_a_request_without_the_credentials_session_token_is_refused(
    handler: Recorder, gateway: BrokerServer
) -> None:
    # Given credentials with a session token (the tests' own), and a request signed without it
    url = f"{gateway.base_url}/v1/health"
    given = environment_credentials()
    without_token = ReadOnlyCredentials(given.access_key, given.secret_key, None)

    response = requests.get(
        url, headers=signed_headers("GET", url, credentials=without_token), timeout=5
    )

    assert (response.status_code, response.json()) == (403, GATEWAY_403)
    assert gateway.refusals == ["no session token, or not the credentials' own"]


def test_a_caller_arn_without_credentials_to_check_is_refused() -> None:
    with pytest.raises(ValueError, match="credentials"):
        serve_broker(Recorder(), caller_arn=CALLER_ARN, account_id=ACCOUNT_ID)


def test_signed_request_carries_the_configured_caller(
    handler: Recorder, gateway: BrokerServer
) -> None:
    BrokerAuth(gateway.base_url).headers()

    identity = handler.events[0]["requestContext"]["identity"]
    assert (identity["userArn"], identity["accountId"]) == (CALLER_ARN, ACCOUNT_ID)
    assert identity["accessKey"] == "testing"
    assert identity["caller"].endswith(":i-0abc")


def test_signed_request_without_a_configured_caller_has_no_identity() -> None:
    handler = Recorder(issued())
    with serve_broker(handler, caller_arn=None, account_id=ACCOUNT_ID) as api:
        BrokerAuth(api.base_url).headers()

    assert handler.events[0]["requestContext"]["identity"]["userArn"] is None


def test_event_has_the_rest_proxy_shape(handler: Recorder, gateway: BrokerServer) -> None:
    # Given a signed request with a repeated query parameter and a body
    url = f"{gateway.base_url}/v1/auth-headers?minTtl=1&minTtl=2"

    # When it is sent
    requests.post(url, data="{}", headers=signed_headers("POST", url, body=b"{}"), timeout=5)

    # Then the event is what API Gateway's REST proxy integration sends
    event = handler.events[0]
    assert (event["httpMethod"], event["path"], event["body"]) == ("POST", "/v1/auth-headers", "{}")
    assert event["queryStringParameters"] == {"minTtl": "2"}
    assert event["multiValueQueryStringParameters"] == {"minTtl": ["1", "2"]}
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["stage"] == "local"
    assert event["requestContext"]["requestId"]
    assert event["headers"]["Content-Length"] == "2"


def test_handler_response_is_written_back_with_all_its_headers() -> None:
    # Given a handler answering in the multi-value form, as Powertools does for REST events
    answer = {
        "statusCode": 405,
        "multiValueHeaders": {"Allow": ["GET"], "Cache-Control": ["no-store"]},
        "headers": {"Content-Type": "application/json", "Allow": "GET"},
        "body": json.dumps({"errorCode": "BROKER.0005"}),
        "isBase64Encoded": False,
    }
    with serve_broker(Recorder(answer), caller_arn=None, account_id=ACCOUNT_ID) as api:
        response = requests.delete(f"{api.base_url}/v1/health", timeout=5)

    assert response.status_code == 405
    assert response.json() == {"errorCode": "BROKER.0005"}
    assert response.headers["Allow"] == "GET"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Type"] == "application/json"


def test_a_failing_handler_is_a_502_as_api_gateway_gives() -> None:
    def broken(_event: dict[str, Any], _context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    with serve_broker(broken, caller_arn=None, account_id=ACCOUNT_ID) as api:
        response = requests.get(f"{api.base_url}/v1/health", timeout=5)

    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}


def test_only_loopback_hosts_are_served() -> None:
    with pytest.raises(ValueError, match="loopback"):
        serve_broker(Recorder(), host="0.0.0.0", caller_arn=None, account_id=ACCOUNT_ID)  # noqa: S104
