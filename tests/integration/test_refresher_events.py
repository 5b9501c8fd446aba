"""What the refresher tells operators and how it checks its token, end to end: the handler as
deployed (tests/refresher_harness.py), EventBridge in moto with a rule on the default bus that
sends source killb.broker to an SQS queue, read back as an operator's consumer would; and the
token check and the revoke against the local KillB sandbox (docs/spec.md, "Telling operators",
"The token check", "Revoke")."""

from __future__ import annotations

import json
import socket
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto.core.config import default_user_config

from killb_broker.store import read_access_token
from killb_broker.tokens import fingerprint
from killb_sandbox.accounts import SANDBOX_PASSWORD
from killb_sandbox.server import ErrorResponse, NotJson
from tests.refresher_harness import (
    ACCESS_TOKEN_ID,
    SESSION_ID,
    START,
    WRONG_PASSWORD,
    Refresher,
)
from tests.support import load_function

DETAIL_KEYS = {"stack", "reason", "fingerprint", "expiresAt"}


class Operators:
    """An SQS queue behind a rule on the default bus: every event the refresher puts there."""

    def __init__(self) -> None:
        self._sqs = boto3.client("sqs")
        self._queue_url = self._sqs.create_queue(QueueName="killb-broker-events")["QueueUrl"]
        queue_arn = self._sqs.get_queue_attributes(
            QueueUrl=self._queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        events = boto3.client("events")
        events.put_rule(
            Name="killb-broker-events", EventPattern=json.dumps({"source": ["killb.broker"]})
        )
        events.put_targets(Rule="killb-broker-events", Targets=[{"Id": "queue", "Arn": queue_arn}])

    def received(self) -> list[dict[str, Any]]:
        """Every event delivered since the last call, oldest first."""
        delivered: list[dict[str, Any]] = []
        while True:
            answer = self._sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10)
            messages = answer.get("Messages", [])
            if not messages:
                return delivered
            for message in messages:
                delivered.append(json.loads(message["Body"]))
                self._sqs.delete_message(
                    QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def detail_types(self) -> list[str]:
        return [event["detail-type"] for event in self.received()]


@pytest.fixture
def operators(refresher: Refresher) -> Operators:
    return Operators()


def the_one(events: list[dict[str, Any]], detail_type: str) -> dict[str, Any]:
    (found,) = [event for event in events if event["detail-type"] == detail_type]
    assert found["source"] == "killb.broker"
    detail: dict[str, Any] = found["detail"]
    assert set(detail) == DETAIL_KEYS
    return detail


# One test per detail-type


def test_a_run_that_gets_no_token_is_told_as_refresh_failed(
    refresher: Refresher, operators: Operators, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the stack's name set, and a KillB that answers every login with a 503
    monkeypatch.setenv("STACK_NAME", "killb-broker-sandbox")
    refresher.app = load_function("refresher")
    refresher.sandbox.inject("login", ErrorResponse(503), times=10)

    # When the first run comes
    summary = refresher.run()

    # Then one Refresh Failed carries the stack and the run's reason, no token
    detail = the_one(operators.received(), "Refresh Failed")
    assert detail == {
        "stack": "killb-broker-sandbox",
        "reason": summary["reason"],
        "fingerprint": None,
        "expiresAt": None,
    }
    assert refresher.metrics()["EventsSent"] == [1]


def test_killb_unavailable_is_told_and_leaves_both_secrets_exactly_as_they_were(
    refresher: Refresher, operators: Operators
) -> None:
    # Given a stale session, and a KillB that answers every request with a 500
    refresher.run()
    in_service = refresher.secret_json(ACCESS_TOKEN_ID)
    refresher.clock.advance(2100)
    before = refresher.stored()
    refresher.sandbox.inject("any", ErrorResponse(500), times=20)

    # When the scheduled run comes
    summary = refresher.run()

    # Then the run failed; both secrets keep their SecretString and version (rule R5); and one
    # Refresh Failed names the token still in service
    assert summary["action"] == "failed"
    assert refresher.stored() == before
    detail = the_one(operators.received(), "Refresh Failed")
    assert detail["fingerprint"] == fingerprint(in_service["accessToken"])
    assert detail["expiresAt"] == in_service["expiresAt"]


def fail_every_5_minutes_for_2_hours(refresher: Refresher, operators: Operators) -> list[str]:
    """Runs through the same loaded handler every 5 minutes from START (the KillB client's retry
    waits move the clock too), KillB answering no login: the detail-types operators received."""
    told = []
    for _ in range(24):
        refresher.sandbox.inject("login", ErrorResponse(503), times=10)
        assert refresher.run()["action"] == "failed"
        told += operators.detail_types()
        refresher.clock.advance(300)
    return told


def test_failing_runs_every_5_minutes_for_2_hours_are_told_twice(
    refresher: Refresher, operators: Operators
) -> None:
    # Given a KillB that cannot answer any login for two hours
    versions = refresher.versions()

    # When the schedule runs the refresher every 5 minutes
    told = fail_every_5_minutes_for_2_hours(refresher, operators)

    # Then operators were told twice: at the first failure and an hour later; no secret written
    assert told == ["Refresh Failed", "Refresh Failed"]
    assert refresher.versions() == versions


def test_the_first_success_after_two_hours_of_failing_runs_is_told_once(
    refresher: Refresher, operators: Operators
) -> None:
    # Given two hours of failing runs operators were told of
    fail_every_5_minutes_for_2_hours(refresher, operators)

    # When KillB is back and the next two runs log in, then find the token fresh
    refresher.sandbox.clear_faults()
    recovered_at = refresher.clock()
    refresher.run()
    refresher.run()

    # Then exactly one Refresh Recovered, saying how long runs had failed (since the first one)
    events = operators.received()
    assert [event["detail-type"] for event in events] == ["Refresh Recovered"]
    assert the_one(events, "Refresh Recovered")["reason"] == (
        f"logged in; runs had failed for {int(recovered_at - START)} s"
    )


def test_the_first_success_after_a_told_failure_is_told_as_recovered(
    refresher: Refresher, operators: Operators
) -> None:
    # Given a failed run that operators were told of
    refresher.sandbox.inject("login", ErrorResponse(503), times=10)
    refresher.run()
    operators.received()
    refresher.clock.advance(300)

    # When KillB is back and the next run logs in, and the run after that finds it fresh
    refresher.sandbox.clear_faults()
    summary = refresher.run()
    refresher.run()

    # Then one Refresh Recovered names the new token; the session secret holds no failure record
    detail = the_one(operators.received(), "Refresh Recovered")
    assert detail["fingerprint"] == fingerprint(refresher.access_token())
    assert detail["expiresAt"] == summary["expiresAt"]
    assert set(refresher.secret_json(SESSION_ID)) == {
        "accessToken",
        "refreshToken",
        "expiresAt",
        "obtainedAt",
        "credentialsVersion",
    }


def test_a_revoke_is_told_as_session_revoked(refresher: Refresher, operators: Operators) -> None:
    # Given a session
    refresher.run()
    revoked = refresher.access_token()

    # When the revoke event arrives
    refresher.run("refresher-revoke.json")

    # Then one Session Revoked names the revoked token
    detail = the_one(operators.received(), "Session Revoked")
    assert detail["fingerprint"] == fingerprint(revoked)


def test_credentials_killb_refuses_are_told_as_credentials_rejected(
    refresher: Refresher, operators: Operators
) -> None:
    # Given credentials KillB refuses
    refresher.put_credentials(password=WRONG_PASSWORD)

    # When the refresher runs
    refresher.run()

    # Then operators hear of the refused credentials (and of the failed run)
    events = operators.received()
    assert "login rejected" in the_one(events, "Credentials Rejected")["reason"]
    assert [event["detail-type"] for event in events] == ["Credentials Rejected", "Refresh Failed"]


def test_a_rejected_report_that_leads_to_a_refresh_is_told_as_token_rejected(
    refresher: Refresher, operators: Operators
) -> None:
    # Given a token KillB revoked early, reported by a caller
    refresher.run()
    rejected = refresher.access_token()
    refresher.sandbox.revoke(rejected)

    # When the report arrives
    refresher.invoke({"force": True, "rejected": fingerprint(rejected)})

    # Then one Token Rejected names the refused token
    detail = the_one(operators.received(), "Token Rejected")
    assert detail["fingerprint"] == fingerprint(rejected)


def test_an_event_that_cannot_be_put_never_fails_the_run(
    refresher: Refresher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given EventBridge's endpoint on a loopback port nobody listens on (env only, as deployed;
    # moto told to let EventBridge's requests through to it)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setitem(default_user_config["core"], "passthrough", {"services": ["events"]})
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", f"http://127.0.0.1:{closed_port}")
    refresher.app = load_function("refresher")
    refresher.run()

    # When a revoke logs in and has its Session Revoked to tell
    summary = refresher.run("refresher-revoke.json")

    # Then the run succeeded and published its token; the lost event is logged and counted
    assert summary["action"] == "logged_in"
    assert refresher.sandbox.is_valid_access_token(refresher.access_token())
    assert refresher.metrics()["EventsNotSent"] == [1]
    assert any("EventBridge" in record["message"] for record in refresher.logs())


def test_a_refresh_failed_eventbridge_refused_is_told_by_the_next_failing_run(
    refresher: Refresher, operators: Operators, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given EventBridge refuses the first entry the refresher puts (FailedEntryCount 1), and a
    # KillB that cannot answer any login
    refuse_next_put_events(monkeypatch)
    refresher.sandbox.inject("login", ErrorResponse(503), times=20)
    refresher.run()
    assert refresher.metrics()["EventsNotSent"] == [1]
    refresher.clock.advance(300)

    # When the next scheduled run fails too, within the hour
    refresher.run()

    # Then its Refresh Failed is told: the refused one did not count as told
    assert operators.detail_types() == ["Refresh Failed"]


def refuse_next_put_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """EventBridge answers the next PutEvents of a client built from now on with its one entry
    refused, as it does under throttling or an internal failure."""
    pending = [True]

    def refuse(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if not pending:
            return None
        pending.clear()
        entry = {"ErrorCode": "InternalFailure", "ErrorMessage": "refused by the test"}
        answer = {"FailedEntryCount": 1, "Entries": [entry]}
        response = AWSResponse("https://test.invalid", 200, {}, None)  # type: ignore[arg-type]
        return response, {**answer, "ResponseMetadata": {"HTTPStatusCode": 200}}

    # The refresher builds its events client from boto3's default session on its first event.
    session = boto3.session.Session()
    # A before-call handler's answer stands in for the call; the type stubs expect None of all.
    session.events.register_first("before-call.events.PutEvents", refuse)  # type: ignore[arg-type]
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)


def test_no_event_detail_holds_a_secret(refresher: Refresher, operators: Operators) -> None:
    # Given runs through a login, a revoke and a refused password
    refresher.run()
    refresher.run("refresher-revoke.json")
    refresher.put_credentials(password=WRONG_PASSWORD)
    refresher.run("refresher-revoke.json")

    # When every event delivered is read
    delivered = json.dumps(operators.received())

    # Then none holds a password or a token
    assert "Session Revoked" in delivered
    for secret in [SANDBOX_PASSWORD, WRONG_PASSWORD, *refresher.sandbox.issued_access_tokens()]:
        assert secret not in delivered


# The token check


def check_due(refresher: Refresher) -> None:
    """Given: a token KillB issued 1801 s ago (TOKEN_CHECK_SECONDS is 1800 by default), still
    fresh for the refresh window because KillB issues it for 2 hours."""
    refresher.sandbox.set_token_lifetime_ms(7_200_000)
    refresher.run()
    refresher.clock.advance(1801)


def test_a_token_killb_confirms_gets_a_new_checked_at_and_nothing_else(
    refresher: Refresher,
) -> None:
    # Given a token due for its check
    check_due(refresher)
    before = refresher.secret_json(ACCESS_TOKEN_ID)

    # When a scheduled run comes
    summary = refresher.run()

    # Then KillB was asked with the token; the same token now says when it was confirmed
    (asked,) = [r for r in refresher.sandbox.requests if r.endpoint == "me"]
    assert asked.headers["authorization"] == f"Bearer {before['accessToken']}"
    assert summary["action"] == "noop"
    assert refresher.secret_json(ACCESS_TOKEN_ID) == {**before, "checkedAt": START + 1801}
    assert refresher.metrics()["TokenChecks"] == [1]


def test_the_next_run_after_a_confirmation_asks_nothing(refresher: Refresher) -> None:
    # Given a token KillB confirmed 300 s ago
    check_due(refresher)
    refresher.run()
    refresher.clock.advance(300)

    # When the next scheduled run comes, Then KillB hears nothing more
    refresher.run()
    assert refresher.sandbox.count("me") == 1


@pytest.mark.parametrize("fault", [ErrorResponse(503), NotJson()], ids=["5xx", "not-json"])
def test_a_check_killb_cannot_answer_changes_nothing(
    refresher: Refresher, fault: ErrorResponse | NotJson
) -> None:
    # Given a token due for its check, and a KillB that cannot answer it
    check_due(refresher)
    versions = refresher.versions()
    refresher.sandbox.inject("me", fault, times=10)

    # When a scheduled run comes
    summary = refresher.run()

    # Then no secret is written, and the run is still a noop
    assert refresher.versions() == versions
    assert summary["action"] == "noop"


def test_a_token_killb_refuses_at_the_check_is_replaced_and_told(
    refresher: Refresher, operators: Operators
) -> None:
    # Given a token due for its check, which KillB has revoked
    check_due(refresher)
    refused = refresher.access_token()
    refresher.sandbox.revoke(refused)

    # When a scheduled run comes
    summary = refresher.run()

    # Then it was refreshed as a rejected report would be, audited, counted and told
    assert summary["action"] == "refreshed"
    assert refresher.sandbox.is_valid_access_token(refresher.access_token())
    assert refresher.secret_json(SESSION_ID)["rejectedRefreshAt"] == START + 1801
    audit = [r for r in refresher.logs() if r["message"] == "token check refused"]
    assert [record["token"] for record in audit] == [fingerprint(refused)]
    metrics = refresher.metrics()
    assert (metrics["TokenCheckRefused"], metrics["RejectedTokenRefreshes"]) == ([1], [1])
    assert the_one(operators.received(), "Token Rejected")["fingerprint"] == fingerprint(refused)


def test_the_check_is_off_with_token_check_seconds_0(
    refresher: Refresher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the function deployed with TOKEN_CHECK_SECONDS=0, and a token KillB revoked
    monkeypatch.setenv("TOKEN_CHECK_SECONDS", "0")
    refresher.app = load_function("refresher")
    check_due(refresher)

    # When a scheduled run comes, Then KillB is not asked
    refresher.run()
    assert refresher.sandbox.count("me") == 0


# Revoke: never a dead token


def test_revoke_publishes_the_new_token_before_the_old_session_is_logged_out(
    refresher: Refresher,
) -> None:
    # Given a session
    refresher.run()

    # When the revoke event arrives
    summary = refresher.run("refresher-revoke.json")

    # Then KillB saw the login before the logout
    assert [r.endpoint for r in refresher.sandbox.requests] == ["login", "login", "logout"]
    assert summary["action"] == "logged_in"
    assert "old session revoked" in summary["reason"]


def test_revoke_with_no_new_token_leaves_the_broker_nothing_to_hand_out(
    refresher: Refresher,
) -> None:
    # Given a session, and a KillB that can no longer log in
    refresher.run()
    old = refresher.access_token()
    refresher.sandbox.inject("login", ErrorResponse(503), times=10)

    # When the revoke event arrives
    summary = refresher.run("refresher-revoke.json")

    # Then the old session is logged out, and the broker's reader finds no token
    assert refresher.sandbox.count("logout") == 1
    assert not refresher.sandbox.is_valid_access_token(old)
    assert read_access_token(refresher.secrets, ACCESS_TOKEN_ID) is None
    assert "accessToken" not in refresher.secret_json(SESSION_ID)
    assert summary["action"] == "failed"
    assert summary["expiresAt"] is None
    assert "old session revoked" in summary["reason"]
    assert "KillB unavailable" in summary["reason"]


def test_after_a_revoke_without_a_new_token_the_next_run_logs_in(refresher: Refresher) -> None:
    # Given a revoke that could get no new token
    refresher.run()
    refresher.sandbox.inject("login", ErrorResponse(503), times=4)
    refresher.run("refresher-revoke.json")

    # When the next scheduled run comes (KillB is back)
    summary = refresher.run()

    # Then it logs in (R1) and publishes a token KillB accepts
    assert summary["action"] == "logged_in"
    assert refresher.sandbox.is_valid_access_token(refresher.access_token())


def test_revoke_inside_the_login_backoff_logs_out_and_keeps_the_backoff(
    refresher: Refresher,
) -> None:
    # Given a session, then a password KillB refused (a login backoff started)
    refresher.run()
    refresher.put_credentials(password=WRONG_PASSWORD)
    refresher.sandbox.revoke_refresh_tokens()
    refresher.run("refresher-force.json")

    # When the revoke event arrives inside the backoff
    summary = refresher.run("refresher-revoke.json")

    # Then no new login is tried, the session is logged out and cleared, the backoff kept
    assert refresher.sandbox.count("login") == 2
    assert refresher.sandbox.count("logout") == 1
    assert read_access_token(refresher.secrets, ACCESS_TOKEN_ID) is None
    assert "loginBackoff" in refresher.secret_json(SESSION_ID)
    assert "login backoff" in summary["reason"]


def test_revoke_with_no_stored_session_logs_in_and_sends_no_logout(refresher: Refresher) -> None:
    # Given no session yet, When the revoke event arrives
    summary = refresher.run("refresher-revoke.json")

    # Then it logs in, and KillB hears no logout
    assert summary["action"] == "logged_in"
    assert refresher.sandbox.count("logout") == 0
