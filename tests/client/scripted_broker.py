"""A scripted broker handler for the client tests: answers shaped as docs/spec.md says, in order."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import lambda_runtime
from broker_server import serve_broker

ACCOUNT_ID = lambda_runtime.ACCOUNT_ID  # the one account of everything local

CALLER_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/payments-api/i-0abc"
ACCESS_TOKEN = "kb-access-token-0f9e8d7c6b5a"
API_KEY = "kb-api-key-1a2b3c4d"
# The token of a second broker (another region), in the several-broker tests.
SECOND_TOKEN = "kb-access-token-of-the-second-region"


def json_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {
            "Content-Type": "application/json",
            "Cache-Control": "no-store",
            **(headers or {}),
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def issued(
    token: str = ACCESS_TOKEN,
    *,
    api_key: str | None = API_KEY,
    expires_in: int = 3600,
    killb_base_url: object = None,
) -> dict[str, Any]:
    """A 200 of GET /v1/auth-headers, as docs/spec.md shapes it; killbBaseUrl only when given
    (an older broker sends none)."""
    headers = {"Authorization": f"Bearer {token}"}
    if api_key:
        headers["x-api-key"] = api_key
    return issued_headers(headers, expires_in=expires_in, killb_base_url=killb_base_url)


def issued_headers(
    headers: dict[str, str], *, expires_in: int = 3600, killb_base_url: object = None
) -> dict[str, Any]:
    """A 200 of GET /v1/auth-headers with exactly these headers, whatever they hold."""
    expires_at = datetime.fromtimestamp(int(time.time()) + expires_in, UTC)
    body: dict[str, Any] = {
        "headers": headers,
        "expiresAt": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "expiresIn": expires_in,
    }
    if killb_base_url is not None:
        body["killbBaseUrl"] = killb_base_url
    return json_response(200, body)


def refused(
    status: int, error_code: str, message: str, retry_after: str | None = None
) -> dict[str, Any]:
    """A broker error in KillB's shape (statusCode is a string)."""
    body = {"errorCode": error_code, "message": [message], "statusCode": str(status)}
    return json_response(status, body, {"Retry-After": retry_after} if retry_after else None)


class ScriptedBroker:
    """Answers with the scripted responses in turn (the last one repeats); records each event."""

    def __init__(self) -> None:
        self.answers: list[dict[str, Any]] = [issued()]
        self.events: list[dict[str, Any]] = []
        self.received_at: list[float] = []
        self.first_request = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def script(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)

    def __call__(self, event: dict[str, Any], _context: Any) -> dict[str, Any]:
        self.received_at.append(time.monotonic())
        self.events.append(event)
        self.first_request.set()
        self.release.wait(timeout=10)
        index = min(len(self.events), len(self.answers)) - 1
        return self.answers[index]

    @property
    def calls(self) -> int:
        return len(self.events)


def stopped_broker_url() -> str:
    """The URL of a broker that has stopped: its port is closed."""
    with serve_broker(lambda _e, _c: issued(), caller_arn=None, account_id=ACCOUNT_ID) as api:
        return api.base_url
