"""The refresher handler end to end, as deployed: the files in events/, settings from the
environment only, Secrets Manager in moto, the local KillB sandbox over real HTTP, and a fixed
clock (tests/refresher_harness.py). One test per rule of docs/spec.md, "Refresher"."""

from __future__ import annotations

import json

import pytest

from killb_broker.errors import ConfigurationError
from killb_sandbox.pytest_plugin import SANDBOX_API_KEY, SANDBOX_EMAIL, SANDBOX_PASSWORD
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
    assert set(access_token) == {"accessToken", "expiresAt"}
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
    before = refresher.secret(SESSION_ID), refresher.secret(ACCESS_TOKEN_ID)

    # When the refresher runs
    summary = refresher.run()

    # Then it tried a few times, gave up, and left both secrets as they were
    assert refresher.sandbox.count("login") == KILLB_ATTEMPTS
    assert summary["action"] == "failed"
    assert "KillB unavailable" in summary["reason"]
    assert (refresher.secret(SESSION_ID), refresher.secret(ACCESS_TOKEN_ID)) == before
    metrics = refresher.metrics()
    assert (metrics["KillBUnavailable"], metrics["RefresherFailed"]) == ([1], [1])


def test_killb_unavailable_at_refresh_keeps_the_stale_session(refresher: Refresher) -> None:
    # Given a stale session and a KillB that answers every refresh with a 502
    refresher.run()
    refresher.clock.advance(2100)
    versions = refresher.versions()
    refresher.sandbox.inject("refresh", ErrorResponse(502), times=10)

    # When the refresher runs
    summary = refresher.run()

    # Then it fails with the token still in service, and writes nothing
    assert summary["action"] == "failed"
    assert summary["expiresAt"] == refresher.secret_json(ACCESS_TOKEN_ID)["expiresAt"]
    assert refresher.versions() == versions
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
