"""The client and openapi/broker.yaml against the real broker handler, served over loopback.

Secrets Manager is moto's; the broker is functions/broker/app.py, loaded as a cold start would.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
import requests
from botocore.session import Session as BotocoreSession
from broker_server import BrokerServer, environment_credentials, serve_broker
from moto import mock_aws
from mypy_boto3_secretsmanager import SecretsManagerClient

from killb_broker.store import access_token_to_json
from killb_broker.tokens import AccessToken, fingerprint
from killb_broker_client import BrokerAccessDenied, BrokerAuth, BrokerUnavailable
from killb_broker_client.cli import main
from killb_broker_client.signing import sigv4_headers
from tests.client.openapi_document import assert_matches, component_response, documented_response
from tests.client.scripted_broker import ACCESS_TOKEN, ACCOUNT_ID, API_KEY, CALLER_ARN
from tests.support import SessionHooks, load_function

SECRET_NAME = "killb-test/access-token"
ALLOWED_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/payments-api"
OTHER_CALLER = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/reporting/i-0def"


@dataclass
class RealBroker:
    api: BrokerServer
    app: ModuleType
    secrets: SecretsManagerClient
    hooks: SessionHooks

    def store(self, secret_string: str) -> None:
        self.secrets.put_secret_value(SecretId=SECRET_NAME, SecretString=secret_string)


def token_valid_for(seconds: int) -> str:
    token = AccessToken(token=ACCESS_TOKEN, expires_at=int(time.time()) + seconds, api_key=API_KEY)
    return access_token_to_json(token)


@pytest.fixture
def real_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[RealBroker]:
    with mock_aws():
        secrets = boto3.client("secretsmanager")
        secrets.create_secret(Name=SECRET_NAME, SecretString=token_valid_for(3600))
        monkeypatch.setenv("ACCESS_TOKEN_SECRET_ID", SECRET_NAME)
        monkeypatch.setenv("ALLOWED_PRINCIPALS", ALLOWED_ROLE)
        monkeypatch.delenv("REFRESHER_FUNCTION_NAME", raising=False)
        hooks = SessionHooks()
        try:
            app = load_function("broker")
            with serve_broker(
                app.lambda_handler,
                caller_arn=CALLER_ARN,
                account_id=ACCOUNT_ID,
                credentials=environment_credentials(),
            ) as api:
                yield RealBroker(api, app, secrets, hooks)
        finally:
            hooks.close()


def signed(method: str, url: str) -> requests.Response:
    """A request signed as the client signs it, read raw (status, headers, body)."""
    credentials = BotocoreSession().get_credentials()
    assert credentials is not None
    headers = sigv4_headers(method, url, credentials, "us-east-1")
    return requests.request(method, url, headers=headers, timeout=10)


def test_client_gets_the_stored_token_and_api_key(real_broker: RealBroker) -> None:
    # Given an access-token secret valid for an hour, and a caller whose role is allowed
    # When the client asks the broker for headers
    headers = BrokerAuth(real_broker.api.base_url).headers()

    # Then they are the stored token and API key
    assert headers == {"Authorization": f"Bearer {ACCESS_TOKEN}", "x-api-key": API_KEY}


def test_auth_headers_200_matches_the_document(real_broker: RealBroker) -> None:
    response = signed("GET", f"{real_broker.api.base_url}/v1/auth-headers?minTtl=600")

    assert response.status_code == 200
    assert_matches(response, documented_response("/v1/auth-headers", "GET", 200))
    assert response.json()["expiresIn"] >= 600


def test_health_200_matches_the_document(real_broker: RealBroker) -> None:
    response = signed("GET", f"{real_broker.api.base_url}/v1/health")

    assert response.status_code == 200
    assert_matches(response, documented_response("/v1/health", "GET", 200))
    assert response.json()["status"] == "ok"


def test_health_of_a_missing_token_matches_the_document(real_broker: RealBroker) -> None:
    real_broker.store("{}")

    response = signed("GET", f"{real_broker.api.base_url}/v1/health")

    assert response.json() == {
        "status": "missing",
        "expiresAt": None,
        "expiresIn": None,
        "checkedAt": None,
    }
    assert_matches(response, documented_response("/v1/health", "GET", 200))


def test_invalid_min_ttl_400_matches_the_document(real_broker: RealBroker) -> None:
    response = signed("GET", f"{real_broker.api.base_url}/v1/auth-headers?minTtl=abc")

    assert response.status_code == 400
    assert_matches(response, documented_response("/v1/auth-headers", "GET", 400))


def test_unsigned_request_403_matches_the_document(real_broker: RealBroker) -> None:
    # Given a request with no SigV4 signature: no IAM identity reaches the broker
    response = requests.get(f"{real_broker.api.base_url}/v1/auth-headers", timeout=10)

    assert response.status_code == 403
    assert_matches(response, documented_response("/v1/auth-headers", "GET", 403))


def test_cli_health_of_a_fresh_token_prints_ok_and_exits_0(
    real_broker: RealBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["health", "--api-url", real_broker.api.base_url])

    printed = json.loads(capsys.readouterr().out)
    assert (status, printed["status"]) == (0, "ok")
    assert printed["expiresIn"] > 3500


def test_cli_health_of_a_missing_token_prints_missing_and_exits_3(
    real_broker: RealBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    real_broker.store("{}")

    status = main(["health", "--api-url", real_broker.api.base_url])

    assert status == 3
    assert json.loads(capsys.readouterr().out) == {
        "status": "missing",
        "expiresAt": None,
        "expiresIn": None,
    }


def test_a_report_of_an_old_token_changes_nothing(real_broker: RealBroker) -> None:
    # Given the stored token, and a caller reporting a token KillB refused long ago
    auth = BrokerAuth(real_broker.api.base_url)

    # When it asks for headers with that report
    headers = auth.headers(rejected=fingerprint("kb-access-token-of-yesterday"))

    # Then the broker hands out the token in hand, as without a report
    assert headers == {"Authorization": f"Bearer {ACCESS_TOKEN}", "x-api-key": API_KEY}


def test_a_report_of_the_token_in_hand_is_never_answered_with_it(
    real_broker: RealBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a broker with no refresher to replace its token
    # When the CLI reports the token in hand as refused
    status = main(
        ["headers", "--api-url", real_broker.api.base_url, "--rejected", fingerprint(ACCESS_TOKEN)]
    )

    # Then it gets the broker's 503, not the refused token
    printed = capsys.readouterr()
    assert status == 1
    assert ACCESS_TOKEN not in printed.out
    assert json.loads(printed.err)["errorCode"] == "BROKER.0003"


def test_caller_not_allowed_raises_access_denied_with_broker_0002(
    real_broker: RealBroker,
) -> None:
    # Given the same broker, called by a role ALLOWED_PRINCIPALS does not name
    app = real_broker.app
    # When the client asks for headers
    with (
        serve_broker(
            app.lambda_handler,
            caller_arn=OTHER_CALLER,
            account_id=ACCOUNT_ID,
            credentials=environment_credentials(),
        ) as api,
        pytest.raises(BrokerAccessDenied) as raised,
    ):
        BrokerAuth(api.base_url).headers()

    # Then the broker's code reaches the caller
    assert (raised.value.status, raised.value.error_code) == (403, "BROKER.0002")


def test_unknown_route_404_matches_the_document(real_broker: RealBroker) -> None:
    response = signed("GET", f"{real_broker.api.base_url}/v1/tokens")

    assert response.status_code == 404
    assert_matches(response, component_response("NotFound"))


def test_other_method_405_matches_the_document(real_broker: RealBroker) -> None:
    response = signed("POST", f"{real_broker.api.base_url}/v1/auth-headers")

    assert response.status_code == 405
    assert_matches(response, component_response("MethodNotAllowed"))


def test_no_token_503_matches_the_document(real_broker: RealBroker) -> None:
    # Given a placeholder secret and no refresher to invoke
    real_broker.store("{}")

    response = signed("GET", f"{real_broker.api.base_url}/v1/auth-headers")

    assert response.status_code == 503
    assert_matches(response, documented_response("/v1/auth-headers", "GET", 503))


def test_client_surfaces_503_with_retry_after_when_no_token_lasts(
    real_broker: RealBroker,
) -> None:
    # Given a stored token with two minutes left, and no refresher to invoke
    real_broker.store(token_valid_for(120))

    # When the client needs five minutes, and will not wait as long as the broker asks
    auth = BrokerAuth(real_broker.api.base_url, min_ttl=300, max_retry_after=1)
    with pytest.raises(BrokerUnavailable) as raised:
        auth.headers()

    # Then it gets BROKER.0003 and the broker's Retry-After
    assert (raised.value.status, raised.value.error_code) == (503, "BROKER.0003")
    assert raised.value.retry_after is not None
    assert raised.value.retry_after > 1


def test_unexpected_failure_500_matches_the_document(
    real_broker: RealBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a Secrets Manager read that fails in a way nobody planned for
    def broken(**_: Any) -> None:
        raise RuntimeError("disk on fire")

    real_broker.hooks.add("before-call.secrets-manager.GetSecretValue", broken)

    response = signed("GET", f"{real_broker.api.base_url}/v1/health")

    assert response.status_code == 500
    assert_matches(response, documented_response("/v1/health", "GET", 500))
    assert "disk on fire" not in response.text


def test_whole_path_logs_the_fingerprint_never_the_token(
    real_broker: RealBroker,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # When a caller gets headers through the client, its log at DEBUG, the broker's at INFO
    # (botocore's own DEBUG log prints whole responses, the secret's too: never on in production)
    caplog.set_level(logging.DEBUG, logger="killb_broker_client")
    caplog.set_level(logging.INFO)
    BrokerAuth(real_broker.api.base_url).headers()

    # Then the broker's audit record names the token by fingerprint only, and nothing that was
    # logged or printed (metrics included) holds the token or the API key
    records = [record.__dict__ for record in caplog.records]
    audit = [record for record in records if record["msg"] == "broker audit"]
    assert [record["token_fingerprint"] for record in audit] == [fingerprint(ACCESS_TOKEN)]
    everything = str(records) + caplog.text + "".join(capsys.readouterr())
    assert ACCESS_TOKEN not in everything
    assert API_KEY not in everything
