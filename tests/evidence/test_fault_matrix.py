"""The fault matrix: every KillB fault of the sandbox at login and at refresh, and Secrets Manager
throttling, refusal and failure on each read and write, at login and at refresh.

Each case asserts the same three things: nothing stored is lost (each secret unchanged, or
holding a token KillB accepts for at least as long), no secret reached the output, and the
scheduled runs that follow recover without a human. The refresher runs as deployed, on a fixed
clock (tests/refresher_harness.py). tests/integration/test_refresher.py tells each behaviour
once; this is the cross-product.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from moto.core.botocore_stubber import MockRawResponse

from killb_sandbox.accounts import SANDBOX_PASSWORD
from killb_sandbox.server import (
    Delay,
    Drop,
    Endpoint,
    ErrorResponse,
    Fault,
    NotJson,
    RateLimit,
    UnexpectedJson,
    every_token_issued,
)
from tests.refresher_harness import (
    ACCESS_TOKEN_ID,
    CREDENTIALS_ID,
    KILLB_TIMEOUT_SECONDS,
    SESSION_ID,
    Refresher,
)

REFRESH_WINDOW = 1800
STALE = 2100  # seconds after a login: inside the refresh window, the token still valid
SCHEDULE = 300
RECOVERY_RUNS = 4  # the login backoff (900 s) and one schedule period: no human needed

KILLB_FAULTS: dict[str, Fault] = {
    "500-without-errorCode": ErrorResponse(500, error_code=None),
    "502": ErrorResponse(502),
    "503": ErrorResponse(503),
    "504": ErrorResponse(504),
    "429-with-retry-after": RateLimit(retry_after=1),
    "429-without-retry-after": RateLimit(retry_after=None),
    "timeout": Delay(seconds=KILLB_TIMEOUT_SECONDS * 2),
    "dropped-connection": Drop(),
    "html-200": NotJson(),
    "html-502": NotJson(status=502),
    "json-missing-fields": UnexpectedJson({"accessToken": "x"}),
    "json-expires-in-as-text": UnexpectedJson(
        {"accessToken": "x", "refreshToken": "y", "expiresIn": "3600000"}
    ),
    "400": ErrorResponse(400, "VALIDATION.0001"),
    "401-AUTH.0001": ErrorResponse(401, "AUTH.0001"),
    "401-AUTH.0002": ErrorResponse(401, "AUTH.0002"),
    "401-AUTH.0003": ErrorResponse(401, "AUTH.0003"),
    "403": ErrorResponse(403, "AUTH.0004"),
    "404": ErrorResponse(404, "NOT_FOUND.0001"),
}

STORE_CALLS = {
    "read-session": ("GetSecretValue", SESSION_ID),
    "read-credentials": ("GetSecretValue", CREDENTIALS_ID),
    "write-session": ("PutSecretValue", SESSION_ID),
    "write-access-token": ("PutSecretValue", ACCESS_TOKEN_ID),
}


def stale_session(refresher: Refresher) -> None:
    """A session logged in 35 minutes ago: the next run refreshes."""
    assert refresher.run()["action"] == "logged_in"
    refresher.clock.advance(STALE)


def given(refresher: Refresher, path: str) -> None:
    if path == "refresh":
        stale_session(refresher)


def stored(refresher: Refresher) -> dict[str, Any]:
    def value(secret_id: str) -> Any:
        try:
            return json.loads(refresher.secret(secret_id)[0])
        except ValueError:
            return {}

    return {"session": value(SESSION_ID), "access": value(ACCESS_TOKEN_ID)}


def assert_nothing_lost(refresher: Refresher, before: dict[str, Any]) -> None:
    """Each secret still holds what it held, or a token KillB accepts, expiring no earlier."""
    after = stored(refresher)
    for name in ("session", "access"):
        old, new = before[name], after[name]
        if new.get("accessToken") == old.get("accessToken"):
            continue
        assert new.get("accessToken"), f"the {name} secret lost its token"
        assert refresher.sandbox.is_valid_access_token(new["accessToken"])
        assert new["expiresAt"] >= old.get("expiresAt", 0)


def assert_no_secret_in_output(refresher: Refresher, caplog: pytest.LogCaptureFixture) -> None:
    captured = "\n".join(refresher.output) + caplog.text
    assert "refresher run" in captured
    secrets = {SANDBOX_PASSWORD, *every_token_issued()}
    assert [secret for secret in secrets if secret in captured] == []


def assert_recovers_on_schedule(refresher: Refresher) -> None:
    """The scheduled runs that follow (no human, no secret edited) publish a fresh token."""
    for _ in range(RECOVERY_RUNS):
        refresher.clock.advance(SCHEDULE)
        summary = refresher.run()
        access = stored(refresher)["access"]
        left = access.get("expiresAt", 0) - refresher.clock()
        if (
            summary["action"] != "failed"
            and left > REFRESH_WINDOW
            and refresher.sandbox.is_valid_access_token(access["accessToken"])
        ):
            return
    pytest.fail(f"no recovery within {RECOVERY_RUNS} scheduled runs")


@pytest.mark.parametrize("path", ["login", "refresh"])
@pytest.mark.parametrize("fault", KILLB_FAULTS.values(), ids=KILLB_FAULTS.keys())
def test_killb_fault_loses_nothing_leaks_nothing_and_the_schedule_recovers(
    refresher: Refresher, caplog: pytest.LogCaptureFixture, path: Endpoint, fault: Fault
) -> None:
    # Given a run about to log in (no session) or to refresh (a stale session)
    given(refresher, path)
    before = stored(refresher)

    # When KillB answers every request to that endpoint with the fault
    reached_before = refresher.sandbox.count(path)
    refresher.sandbox.inject(path, fault, times=10)
    refresher.run()
    refresher.sandbox.clear_faults()

    # Then the fault was served (the run did reach that endpoint), nothing stored is lost, no
    # secret was logged, and the schedule recovers on its own
    assert refresher.sandbox.count(path) > reached_before
    assert_nothing_lost(refresher, before)
    assert_recovers_on_schedule(refresher)
    assert_no_secret_in_output(refresher, caplog)


def refuse_once(refresher: Refresher, call: str, code: str) -> list[str]:
    """Secrets Manager refuses the call once with code, before botocore's retries (not retried)."""
    operation, secret_id = STORE_CALLS[call]
    refused: list[str] = []

    def refuse(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if refused or json.loads(params["body"])["SecretId"] != secret_id:
            return None
        refused.append(code)
        status = 500 if code == "InternalServiceError" else 400
        error = {"Error": {"Code": code, "Message": "refused by the test"}}
        response = AWSResponse("https://test.invalid", status, {}, None)  # type: ignore[arg-type]
        return response, {**error, "ResponseMetadata": {"HTTPStatusCode": status}}

    refresher.hooks.add(f"before-call.secrets-manager.{operation}", refuse)
    return refused


def throttle_once(refresher: Refresher, call: str) -> list[str]:
    """Secrets Manager throttles the call once, on the wire: botocore's retry takes it on."""
    operation, secret_id = STORE_CALLS[call]
    throttled: list[str] = []

    def throttle(request: Any, **_: Any) -> AWSResponse | None:
        if throttled or json.loads(request.body)["SecretId"] != secret_id:
            return None
        throttled.append(operation)
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/x-amz-json-1.1"
        return AWSResponse(request.url, 400, headers, MockRawResponse(body.encode()))

    refresher.hooks.add(f"before-send.secrets-manager.{operation}", throttle)
    return throttled


@pytest.mark.parametrize("path", ["login", "refresh"])
@pytest.mark.parametrize("call", STORE_CALLS)
def test_secrets_manager_throttling_once_is_retried_and_the_run_succeeds(
    refresher: Refresher, caplog: pytest.LogCaptureFixture, path: str, call: str
) -> None:
    # Given a run about to log in or refresh, and Secrets Manager throttling one of its calls
    given(refresher, path)
    before = stored(refresher)
    throttled = throttle_once(refresher, call)

    # When the refresher runs
    summary = refresher.run()

    # Then botocore retried the throttled call, and the run did its work
    assert throttled
    assert summary["action"] == ("logged_in" if path == "login" else "refreshed")
    assert_nothing_lost(refresher, before)
    assert_no_secret_in_output(refresher, caplog)


@pytest.mark.parametrize("path", ["login", "refresh"])
@pytest.mark.parametrize("call", STORE_CALLS)
@pytest.mark.parametrize("code", ["AccessDeniedException", "InternalServiceError"])
def test_secrets_manager_refusal_loses_nothing_and_the_schedule_recovers(
    refresher: Refresher, caplog: pytest.LogCaptureFixture, path: str, call: str, code: str
) -> None:
    # Given a run about to log in or refresh, and Secrets Manager refusing one of its calls once
    given(refresher, path)
    before = stored(refresher)
    refused = refuse_once(refresher, call, code)

    # When the refresher runs
    summary = refresher.run()

    # Then the run failed saying which secret, lost nothing, and the schedule recovers
    assert refused == [code]
    assert summary["action"] == "failed"
    assert STORE_CALLS[call][1] in str(summary["reason"])
    assert_nothing_lost(refresher, before)
    assert_recovers_on_schedule(refresher)
    assert_no_secret_in_output(refresher, caplog)
