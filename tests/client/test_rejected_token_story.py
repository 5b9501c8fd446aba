"""The whole rejected-token story over real HTTP: KillB (the local sandbox) revokes the live token,
a caller's KillB call with BrokerAuth gets 401, BrokerAuth reports it, the broker (the real
handler behind the local API Gateway) has the refresher (the real handler, run in process as
Lambda would run it for the broker's invoke) refresh, and the retried call gets 200.

Secrets Manager is moto's; both handlers are loaded as a cold start would, settings from the
environment only.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
import pytest
import requests
from botocore.response import StreamingBody
from broker_server import BrokerServer, serve_broker
from lambda_runtime import LambdaContext
from moto import mock_aws

from killb_broker_client import BrokerAuth, fingerprint
from killb_sandbox.accounts import SANDBOX_API_KEY, SANDBOX_EMAIL, SANDBOX_PASSWORD
from killb_sandbox.server import KillBSandbox
from tests.client.scripted_broker import ACCOUNT_ID, CALLER_ARN
from tests.support import load_event, load_function

SECRET_IDS = {
    "CREDENTIALS_SECRET_ID": "killb-story/credentials",
    "SESSION_SECRET_ID": "killb-story/session",
    "ACCESS_TOKEN_SECRET_ID": "killb-story/access-token",
}
REFRESHER_NAME = "killb-refresher"


@dataclass
class InProcessRefresher:
    """The broker's Lambda client: an invoke of the refresher runs its handler here, synchronously,
    and answers as Lambda's Invoke API does."""

    app: ModuleType
    payloads: list[bytes] = field(default_factory=list)

    def invoke(
        self,
        *,
        FunctionName: str,  # noqa: N803 - boto3's names
        InvocationType: str,  # noqa: N803
        Payload: bytes,  # noqa: N803
    ) -> Mapping[str, Any]:
        assert (FunctionName, InvocationType) == (REFRESHER_NAME, "RequestResponse")
        self.payloads.append(Payload)
        summary = self.app.lambda_handler(json.loads(Payload), LambdaContext(REFRESHER_NAME))
        body = json.dumps(summary).encode()
        return {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(body), len(body))}


@dataclass
class Stack:
    sandbox: KillBSandbox
    refresher: InProcessRefresher
    api: BrokerServer


@pytest.fixture
def stack(
    killb_sandbox_with_api_key: KillBSandbox, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    """The stack's secrets with the sandbox's credentials, one scheduled refresher run, and the
    broker served over HTTP with the refresher behind its invoke."""
    sandbox = killb_sandbox_with_api_key
    with mock_aws():
        secrets = boto3.client("secretsmanager")
        credentials = {
            "email": SANDBOX_EMAIL,
            "password": SANDBOX_PASSWORD,
            "apiKey": SANDBOX_API_KEY,
        }
        secrets.create_secret(
            Name=SECRET_IDS["CREDENTIALS_SECRET_ID"], SecretString=json.dumps(credentials)
        )
        secrets.create_secret(Name=SECRET_IDS["SESSION_SECRET_ID"], SecretString="{}")
        secrets.create_secret(Name=SECRET_IDS["ACCESS_TOKEN_SECRET_ID"], SecretString="{}")
        for variable, value in {
            **SECRET_IDS,
            "KILLB_BASE_URL": sandbox.base_url,
            "REFRESHER_FUNCTION_NAME": REFRESHER_NAME,
            "ALLOWED_PRINCIPALS": f"arn:aws:iam::{ACCOUNT_ID}:role/payments-api",
        }.items():
            monkeypatch.setenv(variable, value)
        refresher_app = load_function("refresher")
        scheduled = refresher_app.lambda_handler(
            load_event("refresher-scheduled.json"), LambdaContext(REFRESHER_NAME)
        )
        assert scheduled["action"] == "logged_in"
        broker_app = load_function("broker")
        refresher = InProcessRefresher(refresher_app)
        broker_app.refresher.client = refresher
        with serve_broker(
            broker_app.lambda_handler, caller_arn=CALLER_ARN, account_id=ACCOUNT_ID
        ) as api:
            yield Stack(sandbox, refresher, api)


def test_a_token_killb_revoked_is_replaced_and_the_callers_call_succeeds(stack: Stack) -> None:
    # Given a caller whose KillB calls succeed with the broker's token
    sandbox = stack.sandbox
    users = f"{sandbox.base_url}/api/v2/users"
    with requests.Session() as session:
        session.auth = BrokerAuth(stack.api.base_url)
        assert session.get(users, timeout=10).status_code == 200
        (live,) = sandbox.issued_access_tokens()

        # When KillB revokes that token early, and the caller calls again
        sandbox.revoke(live)
        response = session.get(users, timeout=10)

    # Then the call got KillB's 401 first, the report made the broker invoke the refresher for
    # that token, which refreshed once, and the retry with the new token got 200
    assert response.status_code == 200
    assert [answer.status_code for answer in response.history] == [401]
    assert stack.refresher.payloads == [
        json.dumps({"force": True, "rejected": fingerprint(live)}).encode()
    ]
    assert (sandbox.count("login"), sandbox.count("refresh")) == (1, 1)
    assert sandbox.count("users") == 3
    new = response.request.headers["Authorization"].removeprefix("Bearer ")
    assert new != live
    assert sandbox.is_valid_access_token(new)


def test_calls_after_the_replacement_use_the_new_token_without_another_refresh(
    stack: Stack,
) -> None:
    sandbox = stack.sandbox
    users = f"{sandbox.base_url}/api/v2/users"
    with requests.Session() as session:
        session.auth = BrokerAuth(stack.api.base_url)
        session.get(users, timeout=10)
        sandbox.revoke(sandbox.issued_access_tokens()[0])
        session.get(users, timeout=10)

        # When the caller goes on calling KillB
        later = [session.get(users, timeout=10).status_code for _ in range(3)]

    # Then each call succeeds at once, and KillB saw no further refresh or login
    assert later == [200] * 3
    assert (sandbox.count("login"), sandbox.count("refresh")) == (1, 1)
    assert len(stack.refresher.payloads) == 1
