"""The refresher handler end to end, as deployed: the files in events/, settings from the
environment only, Secrets Manager in moto, the local KillB sandbox over real HTTP, and a fixed
clock (tests/refresher_harness.py). One test per rule of docs/spec.md, "Refresher"."""

from __future__ import annotations

import json
from typing import Any

import pytest

from killb_broker.errors import ConfigurationError
from killb_broker.tokens import fingerprint
from killb_sandbox.accounts import SANDBOX_API_KEY, SANDBOX_EMAIL, SANDBOX_PASSWORD
from killb_sandbox.server import (
    Account,
    Delay,
    Drop,
    ErrorResponse,
    Fault,
    NotJson,
    RateLimit,
)
from tests.refresher_harness import (
    ACCESS_TOKEN_ID,
    CREDENTIALS_ID,
    KILLB_ATTEMPTS,
    KILLB_TIMEOUT_SECONDS,
    SECRET_IDS,
    SESSION_ID,
    START,
    WRONG_PASSWORD,
    Refresher,
)
from tests.support import load_function


def test_first_run_logs_in_and_publishes_the_session_and_the_access_token(
    refresher: Refresher,
) -> None:
    # Given no session yet (the template's placeholders)

    # When the scheduled event arrives
    summary = refresher.run("refresher-scheduled.json")

    # Then the refresher logged in once and published a token KillB accepts
    access_token = refresher.secret_json(ACCESS_TOKEN_ID)
    session = refresher.secret_json(SESSION_ID)
    assert refresher.sandbox.count("login") == 1
    assert summary == {"action": "logged_in", "expiresAt": access_token["expiresAt"],
                       "reason": "logged in"}  # fmt: skip
    assert refresher.sandbox.is_valid_access_token(access_token["accessToken"])
    assert set(access_token) == {"accessToken", "expiresAt", "baseUrl", "checkedAt"}
    assert access_token["baseUrl"] == refresher.sandbox.base_url
    assert access_token["checkedAt"] == START
    assert session["accessToken"] == access_token["accessToken"]
    assert session["expiresAt"] == access_token["expiresAt"]
    assert session["refreshToken"]


def test_expires_at_is_the_answer_time_plus_expires_in_seconds(refresher: Refresher) -> None:
    # Given KillB issues tokens that live 1 200 000 ms (20 minutes)
    refresher.sandbox.set_token_lifetime_ms(1_200_000)

    # When the refresher logs in
    summary = refresher.run()

    # Then expiresAt is 1200 s after KillB answered, in whole seconds
    assert summary["expiresAt"] == START + 1200


def test_first_run_emits_login_and_seconds_left_metrics(refresher: Refresher) -> None:
    # Given no session yet, When the refresher logs in
    refresher.run()

    # Then it counts the login and reports the seconds left on the token
    metrics = refresher.metrics()
    assert metrics["Logins"] == [1]
    assert metrics["AccessTokenSecondsLeft"] == [3600]
    assert "RefresherFailed" not in metrics


def test_run_inside_the_window_makes_no_killb_call_and_no_write(refresher: Refresher) -> None:
    # Given a token logged in 20 minutes ago (40 minutes left, more than the 30-minute window)
    refresher.run()
    versions = refresher.versions()
    refresher.clock.advance(1200)

    # When the next scheduled run arrives
    summary = refresher.run()

    # Then nothing is asked of KillB and neither secret gets a new version
    assert refresher.sandbox.count("any") == 1
    assert refresher.versions() == versions
    assert summary["action"] == "noop"
    assert refresher.metrics()["AccessTokenSecondsLeft"] == [2400]


def test_duplicate_invocation_after_a_successful_run_makes_no_killb_call(
    refresher: Refresher,
) -> None:
    # Given a run that just succeeded
    first = refresher.run()
    versions = refresher.versions()

    # When the scheduler delivers the same event again
    second = refresher.run()

    # Then the duplicate is a noop with the same token
    assert refresher.sandbox.count("any") == 1
    assert refresher.versions() == versions
    assert second["action"] == "noop"
    assert second["expiresAt"] == first["expiresAt"]


def test_stale_token_is_refreshed_with_the_latest_refresh_token_each_time(
    refresher: Refresher,
) -> None:
    # Given a session logged in 35 minutes ago (inside the refresh window)
    refresher.run()
    first_refresh_token = refresher.secret_json(SESSION_ID)["refreshToken"]
    refresher.clock.advance(2100)

    # When the refresher runs, and again 35 minutes later
    first = refresher.run()
    second_refresh_token = refresher.secret_json(SESSION_ID)["refreshToken"]
    refresher.clock.advance(2100)
    second = refresher.run()

    # Then each refresh used the refresh token of the answer before it
    sent = [r.json for r in refresher.sandbox.requests if r.endpoint == "refresh"]
    assert sent == [{"refreshToken": first_refresh_token}, {"refreshToken": second_refresh_token}]
    assert first_refresh_token != second_refresh_token
    assert (first["action"], second["action"]) == ("refreshed", "refreshed")
    assert refresher.sandbox.count("login") == 1
    assert second["expiresAt"] == refresher.secret_json(ACCESS_TOKEN_ID)["expiresAt"]
    assert refresher.metrics()["Refreshes"] == [1]


def test_forced_run_refreshes_a_fresh_token(refresher: Refresher) -> None:
    # Given a fresh token
    refresher.run()
    old_token = refresher.secret_json(ACCESS_TOKEN_ID)["accessToken"]

    # When the force event arrives
    summary = refresher.run("refresher-force.json")

    # Then it refreshes at once and publishes the new token
    assert summary["action"] == "refreshed"
    assert refresher.sandbox.count("refresh") == 1
    assert refresher.secret_json(ACCESS_TOKEN_ID)["accessToken"] != old_token


def test_refresh_token_rejected_falls_back_to_login(refresher: Refresher) -> None:
    # Given a stale session whose refresh token KillB has revoked
    refresher.run()
    refresher.sandbox.revoke_refresh_tokens()
    refresher.clock.advance(2100)

    # When the refresher runs
    summary = refresher.run()

    # Then the refresh is refused, and a login publishes a new token
    assert summary["action"] == "logged_in"
    assert (refresher.sandbox.count("refresh"), refresher.sandbox.count("login")) == (1, 2)
    token = refresher.secret_json(ACCESS_TOKEN_ID)["accessToken"]
    assert refresher.sandbox.is_valid_access_token(token)
    metrics = refresher.metrics()
    assert (metrics["RefreshRejected"], metrics["Logins"]) == ([1], [1])


def test_wrong_credentials_start_a_backoff_that_holds_across_invocations(
    refresher: Refresher,
) -> None:
    # Given credentials KillB rejects, and a first run that tried them
    refresher.put_credentials(password=WRONG_PASSWORD)
    first = refresher.run()
    first_metrics = refresher.metrics()

    # When the next scheduled runs (and a forced one) arrive inside the backoff
    refresher.clock.advance(300)
    second = refresher.run()
    forced = refresher.run("refresher-force.json")

    # Then only the first run called KillB; the others fail saying why
    assert refresher.sandbox.count("login") == 1
    assert first["action"] == second["action"] == forced["action"] == "failed"
    assert "login rejected" in first["reason"]
    assert "login backoff" in second["reason"]
    assert first_metrics["LoginRejected"] == [1]
    assert first_metrics["RefresherFailed"] == [1]
    assert refresher.metrics()["LoginBackoffActive"] == [1]


def test_new_credentials_version_ends_the_backoff_at_once(refresher: Refresher) -> None:
    # Given a login backoff for rejected credentials
    refresher.put_credentials(password=WRONG_PASSWORD)
    refresher.run()

    # When the operator puts the right password and the next run arrives
    refresher.put_credentials(password=SANDBOX_PASSWORD)
    summary = refresher.run()

    # Then it logs in at once, and the backoff is gone from the session
    assert summary["action"] == "logged_in"
    assert refresher.sandbox.count("login") == 2
    assert "loginBackoff" not in refresher.secret_json(SESSION_ID)


def test_backoff_ends_after_login_backoff_seconds(refresher: Refresher) -> None:
    # Given KillB rejected the credentials at START, starting the 900 s login backoff
    refresher.put_credentials(password=WRONG_PASSWORD)
    refresher.run()

    # When a run comes one second before the backoff ends, and one at its end
    refresher.clock.advance(899)
    refresher.run()
    inside = refresher.metrics()
    logins_inside = refresher.sandbox.count("login")
    refresher.clock.advance(1)
    refresher.run()

    # Then the run inside made no KillB call, the run at the end tried a login again
    assert logins_inside == 1
    assert inside["LoginBackoffActive"] == [1]
    assert refresher.sandbox.count("login") == 2
    assert refresher.metrics()["LoginRejected"] == [1]


def test_placeholder_credentials_fail_as_not_configured_without_a_killb_call(
    refresher: Refresher,
) -> None:
    # Given the credentials secret still holds the template's placeholder
    refresher.secrets.put_secret_value(
        SecretId=CREDENTIALS_ID, SecretString=json.dumps({"email": "", "password": ""})
    )

    # When the refresher runs
    summary = refresher.run()

    # Then KillB hears nothing, and the run fails saying so, with a metric and a log line
    assert refresher.sandbox.count("any") == 0
    assert summary == {"action": "failed", "expiresAt": None,
                       "reason": "credentials not configured: empty field email"}  # fmt: skip
    assert refresher.metrics()["NotConfigured"] == [1]
    assert any("not configured" in record["message"] for record in refresher.logs())


@pytest.mark.parametrize(
    "fault",
    [
        ErrorResponse(503),
        ErrorResponse(500, error_code=None),
        RateLimit(retry_after=1),
        Delay(seconds=KILLB_TIMEOUT_SECONDS * 2),
        Drop(),
        NotJson(),
    ],
    ids=["503", "500-no-code", "429", "timeout", "drop", "non-json"],
)
def test_killb_unavailable_retries_then_fails_with_the_secrets_unchanged(
    refresher: Refresher, fault: Fault
) -> None:
    # Given KillB answers every login with the fault
    refresher.sandbox.inject("login", fault, times=10)
    before = refresher.stored()

    # When the refresher runs
    summary = refresher.run()

    # Then it tried a few times, gave up, and left both secrets as they were
    assert refresher.sandbox.count("login") == KILLB_ATTEMPTS
    assert summary["action"] == "failed"
    assert "KillB unavailable" in summary["reason"]
    assert refresher.stored() == before
    metrics = refresher.metrics()
    assert (metrics["KillBUnavailable"], metrics["RefresherFailed"]) == ([1], [1])


def test_killb_unavailable_at_refresh_keeps_the_stale_session(refresher: Refresher) -> None:
    # Given a stale session and a KillB that answers every refresh with a 502
    refresher.run()
    refresher.clock.advance(2100)
    before = refresher.stored()
    access_token_version = refresher.versions()[1]
    refresher.sandbox.inject("refresh", ErrorResponse(502), times=10)

    # When the refresher runs
    summary = refresher.run()

    # Then it fails with the token still in service, and writes no token
    assert summary["action"] == "failed"
    assert summary["expiresAt"] == refresher.secret_json(ACCESS_TOKEN_ID)["expiresAt"]
    assert refresher.stored() == before
    assert refresher.versions()[1] == access_token_version
    assert refresher.sandbox.count("login") == 1


def test_access_token_write_failing_is_repaired_by_the_next_run(refresher: Refresher) -> None:
    # Given a run whose session write succeeds but whose access-token write is refused
    refresher.fail_next_put(ACCESS_TOKEN_ID)
    failed = refresher.run()
    assert failed["action"] == "failed"
    assert ACCESS_TOKEN_ID in str(failed["reason"])
    assert refresher.metrics()["RefresherFailed"] == [1]
    assert refresher.secret(ACCESS_TOKEN_ID)[0] == "{}"

    # When the next scheduled run arrives
    summary = refresher.run()

    # Then it publishes the session's token without asking KillB again
    session = refresher.secret_json(SESSION_ID)
    assert summary["action"] == "noop"
    assert refresher.secret_json(ACCESS_TOKEN_ID) == {
        "accessToken": session["accessToken"],
        "expiresAt": session["expiresAt"],
        "baseUrl": refresher.sandbox.base_url,
        "checkedAt": session["obtainedAt"],
    }
    assert refresher.sandbox.count("any") == 1


def test_session_write_failing_after_a_refresh_is_recovered_by_login(
    refresher: Refresher,
) -> None:
    # Given a stale session, and a run whose refresh succeeds but whose session write is refused
    refresher.run()
    refresher.clock.advance(2100)
    access_token_before = refresher.secret(ACCESS_TOKEN_ID)
    refresher.fail_next_put(SESSION_ID)
    failed = refresher.run()
    assert failed["action"] == "failed"
    assert SESSION_ID in str(failed["reason"])
    assert refresher.secret(ACCESS_TOKEN_ID) == access_token_before

    # When the next run arrives (KillB has retired the refresh token the session still holds)
    summary = refresher.run()

    # Then the refused refresh falls back to a login, and a valid token is published
    assert summary["action"] == "logged_in"
    assert (refresher.sandbox.count("refresh"), refresher.sandbox.count("login")) == (2, 2)
    token = refresher.secret_json(ACCESS_TOKEN_ID)["accessToken"]
    assert refresher.sandbox.is_valid_access_token(token)


def test_api_key_is_sent_to_killb_and_published_with_the_token(
    refresher: Refresher,
) -> None:
    # Given an account that requires an API key, and credentials that hold it
    refresher.sandbox.accounts[SANDBOX_EMAIL] = Account(SANDBOX_PASSWORD, SANDBOX_API_KEY)
    refresher.put_credentials(apiKey=SANDBOX_API_KEY)

    # When the refresher logs in, then is forced to refresh
    refresher.run()
    summary = refresher.run("refresher-force.json")

    # Then every KillB request carried x-api-key, and the access-token secret holds the key
    assert summary["action"] == "refreshed"
    assert [r.headers.get("x-api-key") for r in refresher.sandbox.requests] == [
        SANDBOX_API_KEY,
        SANDBOX_API_KEY,
    ]
    assert refresher.secret_json(ACCESS_TOKEN_ID)["apiKey"] == SANDBOX_API_KEY


def test_captured_output_holds_no_secret(
    refresher: Refresher, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an account with an API key, and runs through login, refresh, rejection and backoff
    refresher.sandbox.accounts[SANDBOX_EMAIL] = Account(SANDBOX_PASSWORD, SANDBOX_API_KEY)
    refresher.put_credentials(apiKey=SANDBOX_API_KEY)
    refresh_tokens = []
    refresher.run()
    refresh_tokens.append(refresher.secret_json(SESSION_ID)["refreshToken"])
    refresher.run("refresher-force.json")
    refresh_tokens.append(refresher.secret_json(SESSION_ID)["refreshToken"])
    refresher.sandbox.revoke_refresh_tokens()
    refresher.run("refresher-force.json")
    refresh_tokens.append(refresher.secret_json(SESSION_ID)["refreshToken"])
    refresher.sandbox.revoke_refresh_tokens()
    refresher.put_credentials(password=WRONG_PASSWORD, apiKey=SANDBOX_API_KEY)
    refresher.run("refresher-force.json")
    refresher.run("refresher-force.json")

    # When everything the runs printed or logged is read
    captured = "\n".join(refresher.output) + caplog.text

    # Then none of the secrets is in it, though the runs did log
    secrets = [SANDBOX_PASSWORD, WRONG_PASSWORD, SANDBOX_API_KEY, *refresh_tokens]
    secrets += refresher.sandbox.issued_access_tokens()
    assert len(secrets) == 3 + 3 + 3
    assert "refresher run" in captured
    for secret in secrets:
        assert secret not in captured


def test_force_that_is_not_a_boolean_runs_as_not_forced_with_a_warning(
    refresher: Refresher,
) -> None:
    # Given a fresh token
    refresher.run()

    # When an event says force, but not as a boolean
    summary = refresher.invoke({"force": "yes"})

    # Then the run is a noop, and a warning says why
    assert summary["action"] == "noop"
    assert refresher.sandbox.count("any") == 1
    assert any(record["level"] == "WARNING" for record in refresher.logs())


def test_event_that_is_not_an_object_runs_as_not_forced(refresher: Refresher) -> None:
    # Given a fresh token, When the event is a bare list
    refresher.run()
    summary = refresher.invoke(["force"])

    # Then the run is a noop
    assert summary["action"] == "noop"


def test_logs_carry_the_request_id_as_correlation_id(refresher: Refresher) -> None:
    # Given any run
    refresher.run()

    # When its log lines are read, Then each carries the Lambda request id
    ids = {record.get("correlation_id") for record in refresher.logs()}
    assert ids == {refresher.context.aws_request_id}


# The wiring as deployed: window, timeout, credentials


@pytest.mark.parametrize(
    ("seconds_later", "action"),
    [(1799, "noop"), (1800, "refreshed"), (1801, "refreshed")],
    ids=["1801-s-left", "exactly-the-window-left", "1799-s-left"],
)
def test_stale_window_boundary_is_refresh_window_seconds_left(
    refresher: Refresher, seconds_later: int, action: str
) -> None:
    # Given a token that expires 3600 s after START, and a refresh window of 1800 s
    refresher.run()

    # When a scheduled run comes with one second more, exactly, or one second less than that left
    refresher.clock.advance(seconds_later)
    summary = refresher.run()

    # Then only a token with more than the window left is left alone
    assert summary["action"] == action
    assert refresher.sandbox.count("refresh") == (action == "refreshed")


def test_killb_timeout_seconds_ends_an_attempt_that_takes_longer(refresher: Refresher) -> None:
    # Given KILLB_TIMEOUT_SECONDS=1, and KillB taking 2 s to answer the first login
    refresher.sandbox.inject("login", Delay(seconds=2 * KILLB_TIMEOUT_SECONDS))

    # When the refresher logs in
    summary = refresher.run()

    # Then the first attempt timed out after 1 s, and the retry logged in
    assert summary["action"] == "logged_in"
    assert refresher.sandbox.count("login") == 2


def test_a_longer_killb_timeout_seconds_waits_for_a_slow_answer(
    refresher: Refresher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the function deployed with KILLB_TIMEOUT_SECONDS=4, and KillB taking 2 s to answer
    monkeypatch.setenv("KILLB_TIMEOUT_SECONDS", "4")
    refresher.app = load_function("refresher")
    refresher.sandbox.inject("login", Delay(seconds=2))

    # When the refresher logs in
    summary = refresher.run()

    # Then it waited for the answer: one attempt
    assert summary["action"] == "logged_in"
    assert refresher.sandbox.count("login") == 1


@pytest.mark.parametrize(
    ("secret_string", "problem"),
    [
        ("REPLACE-ME", "not JSON"),
        (json.dumps([SANDBOX_EMAIL, SANDBOX_PASSWORD]), "not a JSON object"),
        (json.dumps({"password": SANDBOX_PASSWORD}), "missing field email"),
        (json.dumps({"email": SANDBOX_EMAIL}), "missing field password"),
        (json.dumps({"email": SANDBOX_EMAIL, "password": " "}), "empty field password"),
        (json.dumps({"email": 7, "password": SANDBOX_PASSWORD}), "field email is not a string"),
    ],
    ids=["not-json", "array", "no-email", "no-password", "blank-password", "email-not-text"],
)
def test_credentials_not_configured_say_what_is_wrong_without_a_killb_call(
    refresher: Refresher, secret_string: str, problem: str
) -> None:
    # Given a credentials secret that holds no usable login
    refresher.put_credentials_string(secret_string)

    # When the refresher runs
    summary = refresher.run()

    # Then KillB hears nothing, and the reason says what is wrong (never a value)
    assert refresher.sandbox.count("any") == 0
    assert summary["action"] == "failed"
    assert summary["reason"] == f"credentials not configured: {problem}"
    assert refresher.metrics()["NotConfigured"] == [1]


@pytest.mark.parametrize(
    "api_key",
    ["ak-Sandbox\r\nX-Injected: 1", "ak-Sandbox-\u00e9t\u00e9", " ak-Sandbox-51d2e8", "ak\u0000"],
    ids=["crlf", "non-ascii", "leading-space", "nul"],
)
def test_api_key_no_header_can_carry_fails_the_run_naming_the_field(
    refresher: Refresher, api_key: str
) -> None:
    # Given credentials whose apiKey holds a character an HTTP header cannot carry
    refresher.put_credentials(apiKey=api_key)

    # When the refresher runs
    summary = refresher.run()

    # Then no KillB call: the run fails, the reason naming apiKey and not its value
    assert refresher.sandbox.count("any") == 0
    assert summary["action"] == "failed"
    assert "apiKey" in summary["reason"]
    assert api_key.strip() not in summary["reason"]
    assert refresher.metrics()["NotConfigured"] == [1]


def test_killb_refusing_the_login_otherwise_is_counted_as_refused(refresher: Refresher) -> None:
    # Given KillB answers the login with a 422, which is about neither the credentials nor a token
    refresher.sandbox.inject("login", ErrorResponse(422, "VALIDATION.0002"))

    # When the refresher runs
    summary = refresher.run()

    # Then it asked once, failed, and counted a refusal, not an outage nor a rejected login
    metrics = refresher.metrics()
    assert refresher.sandbox.count("login") == 1
    assert summary["action"] == "failed"
    assert (metrics["KillBRefused"], metrics["RefresherFailed"]) == ([1], [1])
    assert "KillBUnavailable" not in metrics
    assert "LoginRejected" not in metrics


def test_retry_after_longer_than_the_run_can_wait_fails_at_once_as_rate_limited(
    refresher: Refresher,
) -> None:
    # Given KillB answers the login with 429 and Retry-After: 3600
    refresher.sandbox.inject("login", RateLimit(retry_after=3600), times=10)

    # When the refresher runs
    summary = refresher.run()

    # Then it did not ask again, and the run failed saying rate-limited
    assert refresher.sandbox.count("login") == 1
    assert summary["action"] == "failed"
    assert "rate-limited" in summary["reason"]
    assert refresher.metrics()["KillBUnavailable"] == [1]


def test_retry_after_is_waited_out_before_the_next_attempt(refresher: Refresher) -> None:
    # Given KillB answers the first login with 429 and Retry-After: 5
    refresher.sandbox.inject("login", RateLimit(retry_after=5))

    # When the refresher runs
    summary = refresher.run()

    # Then the second attempt came 5 s after the first, and logged in
    first, second = (r.at for r in refresher.sandbox.requests if r.endpoint == "login")
    assert second - first >= 5
    assert summary["action"] == "logged_in"


# Rejected tokens: a caller's report that KillB refused the token it was handed


def report(refresher: Refresher, token: str) -> dict[str, Any]:
    """The broker's invoke for a caller that reports this token rejected."""
    return refresher.invoke({"force": True, "rejected": fingerprint(token)})


def test_report_of_the_stored_token_replaces_it_with_one_killb_accepts(
    refresher: Refresher,
) -> None:
    # Given a fresh token that KillB revoked early
    refresher.run()
    rejected = refresher.access_token()
    refresher.sandbox.revoke(rejected)
    refresher.clock.advance(10)

    # When a report of it arrives
    summary = report(refresher, rejected)

    # Then one refresh published a token KillB accepts, and the session records when
    token = refresher.access_token()
    assert summary["action"] == "refreshed"
    assert refresher.sandbox.count("refresh") == 1
    assert token != rejected
    assert refresher.sandbox.is_valid_access_token(token)
    assert refresher.secret_json(SESSION_ID)["rejectedRefreshAt"] == START + 10
    assert refresher.metrics()["RejectedTokenRefreshes"] == [1]


def test_report_of_a_token_already_replaced_changes_nothing(refresher: Refresher) -> None:
    # Given a token that a forced refresh has replaced since
    refresher.run()
    old = refresher.access_token()
    refresher.run("refresher-force.json")
    versions = refresher.versions()

    # When a report of the old token arrives, and the sample event's (of no stored token)
    summary = report(refresher, old)
    sample = refresher.run("refresher-rejected.json")

    # Then neither asks anything of KillB nor writes
    assert (summary["action"], sample["action"]) == ("noop", "noop")
    assert "already replaced" in summary["reason"]
    assert refresher.sandbox.count("any") == 2
    assert refresher.versions() == versions


def test_many_reports_of_the_same_token_cause_one_refresh(refresher: Refresher) -> None:
    # Given a token KillB revoked, and twenty callers that each report it
    refresher.run()
    rejected = refresher.access_token()
    refresher.sandbox.revoke(rejected)

    # When their reports reach the refresher one after another (its concurrency is one)
    actions = [report(refresher, rejected)["action"] for _ in range(20)]

    # Then the first refreshed, every other found it replaced
    assert actions == ["refreshed"] + ["noop"] * 19
    assert refresher.sandbox.count("refresh") == 1


def test_killb_rejecting_every_new_token_gets_one_refresh_a_minute_not_a_login_storm(
    refresher: Refresher,
) -> None:
    # Given a KillB that revokes every token it issues, and callers reporting every 5 s
    refresher.run()
    too_soon = 0

    # When ten minutes of reports arrive, each of the token then in the store
    for _ in range(120):
        token = refresher.access_token()
        refresher.sandbox.revoke(token)
        report(refresher, token)
        too_soon += refresher.metrics().get("RejectedTooSoon", [0])[0] == 1
        refresher.clock.advance(5)

    # Then one refresh a minute (at 0, 60, ... 540 s), no login but the first, the rest too soon
    assert refresher.sandbox.count("refresh") == 10
    assert refresher.sandbox.count("login") == 1
    assert too_soon == 110


def test_report_too_soon_fails_saying_so(refresher: Refresher) -> None:
    # Given a rejected-token refresh 30 s ago, and KillB refusing the new token too
    refresher.run()
    report(refresher, refresher.access_token())
    refresher.clock.advance(30)

    # When the new token is reported
    summary = report(refresher, refresher.access_token())

    # Then no KillB call: the run fails, too soon
    assert summary["action"] == "failed"
    assert "too soon" in summary["reason"]
    assert refresher.sandbox.count("refresh") == 1
    assert refresher.metrics()["RejectedTooSoon"] == [1]


@pytest.mark.parametrize("rejected", ["0123456789AB", "abc", "Bearer x", 123456789012])
def test_malformed_rejected_fingerprint_fails_without_a_killb_call(
    refresher: Refresher, rejected: object
) -> None:
    # Given a fresh token, When an event reports a fingerprint that is not 12 lowercase hex
    refresher.run()
    summary = refresher.invoke({"force": True, "rejected": rejected})

    # Then the run fails saying so, and KillB hears nothing more
    assert summary["action"] == "failed"
    assert summary["reason"] == "invalid rejected fingerprint"
    assert refresher.sandbox.count("any") == 1


# Revoke: the kill switch


def test_revoke_logs_the_session_out_and_publishes_a_new_login(refresher: Refresher) -> None:
    # Given a fresh session
    refresher.run()
    old = refresher.access_token()

    # When the revoke event arrives
    summary = refresher.run("refresher-revoke.json")

    # Then KillB ended the old session, and a new login's token is published
    token = refresher.access_token()
    assert summary["action"] == "logged_in"
    assert "old session revoked" in summary["reason"]
    assert (refresher.sandbox.count("logout"), refresher.sandbox.count("login")) == (1, 2)
    assert not refresher.sandbox.is_valid_access_token(old)
    assert refresher.sandbox.is_valid_access_token(token)
    metrics = refresher.metrics()
    assert (metrics["Revocations"], metrics["Logouts"], metrics["Logins"]) == ([1], [1], [1])


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        (ErrorResponse(503), "could not answer the logout"),
        (ErrorResponse(401, "AUTH.0003"), "refused the logout"),
    ],
    ids=["unavailable", "refused"],
)
def test_revoke_whose_logout_fails_still_logs_in_saying_so(
    refresher: Refresher, fault: Fault, said: str
) -> None:
    # Given a session, and a KillB that cannot answer or refuses the logout
    refresher.run()
    refresher.sandbox.inject("logout", fault, times=10)

    # When the revoke event arrives
    summary = refresher.run("refresher-revoke.json")

    # Then the new login happened all the same, and the reason says the logout failed
    assert summary["action"] == "logged_in"
    assert said in summary["reason"]
    assert refresher.sandbox.is_valid_access_token(refresher.access_token())
    assert refresher.metrics()["LogoutFailed"] == [1]


# A new credentials version: the old session is logged out once the new one is published


def test_login_with_a_new_credentials_version_logs_the_old_session_out(
    refresher: Refresher,
) -> None:
    # Given a session logged in with the first credentials version, then a new version put,
    # and a stale session whose refresh token KillB no longer accepts
    refresher.run()
    old = refresher.access_token()
    version = refresher.put_credentials()
    refresher.sandbox.revoke_refresh_tokens()
    refresher.clock.advance(2100)

    # When the refresher runs
    summary = refresher.run()

    # Then it logged in with the new version, published, and logged the old session out
    assert summary["action"] == "logged_in"
    assert refresher.sandbox.count("logout") == 1
    assert not refresher.sandbox.is_valid_access_token(old)
    assert refresher.sandbox.is_valid_access_token(refresher.access_token())
    assert refresher.secret_json(SESSION_ID)["credentialsVersion"] == version
    assert refresher.metrics()["Logouts"] == [1]


def test_failed_logout_of_the_old_session_never_fails_the_run(refresher: Refresher) -> None:
    # Given a login about to happen with a new credentials version, and a KillB whose logout fails
    refresher.run()
    refresher.put_credentials()
    refresher.sandbox.revoke_refresh_tokens()
    refresher.clock.advance(2100)
    refresher.sandbox.inject("logout", ErrorResponse(500), times=10)

    # When the refresher runs
    summary = refresher.run()

    # Then the run is a login all the same, the failed logout logged and counted
    metrics = refresher.metrics()
    assert summary["action"] == "logged_in"
    assert metrics["LogoutFailed"] == [1]
    assert "RefresherFailed" not in metrics
    assert any(record["level"] == "WARNING" for record in refresher.logs())


def test_session_records_the_credentials_version_it_was_logged_in_with(
    refresher: Refresher,
) -> None:
    # Given the operator's credentials version, When the refresher logs in, then refreshes
    version = refresher.secret(CREDENTIALS_ID)[1]
    refresher.run()
    refresher.run("refresher-force.json")

    # Then the session secret holds that version
    assert refresher.secret_json(SESSION_ID)["credentialsVersion"] == version


@pytest.mark.usefixtures("logs_to_capsys")
def test_missing_setting_fails_the_cold_start_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a function without KILLB_BASE_URL
    for variable, secret_id in SECRET_IDS.items():
        monkeypatch.setenv(variable, secret_id)
    monkeypatch.delenv("KILLB_BASE_URL", raising=False)

    # When the function is loaded (a cold start), Then it fails and one log line names it
    with pytest.raises(ConfigurationError, match="KILLB_BASE_URL"):
        load_function("refresher")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["variable"] for line in lines] == ["KILLB_BASE_URL"]
