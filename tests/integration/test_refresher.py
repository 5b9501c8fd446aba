"""The refresher handler end to end: the files in events/, Secrets Manager in moto, and the local
KillB sandbox over real HTTP. One test per rule of the contract's "The refresher"."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from killb_broker.client import KillBAuthClient
from killb_broker.errors import ConfigurationError
from killb_broker.observability import logger
from killb_broker.policy import KillB
from killb_sandbox.pytest_plugin import SANDBOX_API_KEY, SANDBOX_EMAIL, SANDBOX_PASSWORD
from killb_sandbox.server import (
    Account,
    Delay,
    Drop,
    ErrorResponse,
    Fault,
    KillBSandbox,
    NotJson,
    RateLimit,
)
from tests.support import load_event, load_function

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

SECRET_IDS = {
    "CREDENTIALS_SECRET_ID": "killb-test/credentials",
    "SESSION_SECRET_ID": "killb-test/session",
    "ACCESS_TOKEN_SECRET_ID": "killb-test/access-token",
}
CREDENTIALS_ID, SESSION_ID, ACCESS_TOKEN_ID = SECRET_IDS.values()
KILLB_RETRIES = 2  # so each KillB call makes 3 attempts at most
KILLB_TIMEOUT = 0.5
WRONG_PASSWORD = "pw-Wrong-0b9e4d"


class Clock:
    """Real time plus an offset a test moves forward; shared by the handler, client and sandbox."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Refresher:
    """The loaded handler with everything around it, and what a test needs to look at."""

    app: ModuleType
    secrets: SecretsManagerClient
    sandbox: KillBSandbox
    clock: Clock
    context: Any
    capsys: pytest.CaptureFixture[str]
    output: list[str] = field(default_factory=list)

    def run(self, event_file: str = "refresher-scheduled.json") -> dict[str, Any]:
        return self.invoke(load_event(event_file))

    def invoke(self, event: Any) -> dict[str, Any]:
        try:
            summary: dict[str, Any] = self.app.lambda_handler(event, self.context)
        finally:
            self.output.append(self.capsys.readouterr().out)
        return summary

    def put_credentials(self, password: str = SANDBOX_PASSWORD, **extra: str) -> str:
        value = {"email": SANDBOX_EMAIL, "password": password, **extra}
        put = self.secrets.put_secret_value(SecretId=CREDENTIALS_ID, SecretString=json.dumps(value))
        return put["VersionId"]

    def secret(self, secret_id: str) -> tuple[str, str]:
        """The current value and VersionId of a secret."""
        answer = self.secrets.get_secret_value(SecretId=secret_id)
        return answer["SecretString"], answer["VersionId"]

    def secret_json(self, secret_id: str) -> Any:
        return json.loads(self.secret(secret_id)[0])

    def versions(self) -> tuple[str, str]:
        return self.secret(SESSION_ID)[1], self.secret(ACCESS_TOKEN_ID)[1]

    def metrics(self) -> dict[str, list[float]]:
        """Every metric the last invocation emitted (EMF lines on stdout), by name."""
        emitted: dict[str, list[float]] = {}
        for line in self.output[-1].splitlines():
            record = json.loads(line)
            if "_aws" not in record:
                continue
            for definition in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = record[definition["Name"]]
                emitted[definition["Name"]] = value if isinstance(value, list) else [value]
        return emitted

    def logs(self) -> list[dict[str, Any]]:
        """The log records of the last invocation (JSON lines on stdout)."""
        records = [json.loads(line) for line in self.output[-1].splitlines()]
        return [record for record in records if "_aws" not in record]

    def fail_next_put(self, secret_id: str, code: str = "AccessDeniedException") -> None:
        """Secrets Manager refuses the next PutSecretValue to this secret, once."""
        pending = [secret_id]

        def refuse(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
            # before-call sees the serialized request: the API parameters are its JSON body.
            target = json.loads(params["body"])["SecretId"]
            if target not in pending:
                return None
            pending.remove(target)
            error = {"Error": {"Code": code, "Message": "refused by the test"}}
            response = AWSResponse("https://test.invalid", 400, {}, None)  # type: ignore[arg-type]
            return response, {**error, "ResponseMetadata": {"HTTPStatusCode": 400}}

        self.app.STORE._client.meta.events.register_first(
            "before-call.secrets-manager.PutSecretValue", refuse
        )


class CurrentStdout:
    """Whatever sys.stdout is at the moment of writing (capsys swaps it per test phase)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture(autouse=True)
def logs_to_capsys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared Logger keeps the stdout it found at import: send its lines to capsys."""
    monkeypatch.setattr(logger.registered_handler, "stream", CurrentStdout())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> Iterator[KillBSandbox]:
    with KillBSandbox({SANDBOX_EMAIL: Account(password=SANDBOX_PASSWORD)}, clock=clock) as sandbox:
        yield sandbox


@pytest.fixture
def refresher(
    sandbox: KillBSandbox,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    lambda_context: Any,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Refresher]:
    """The stack's secrets as the template creates them, credentials put, the handler loaded."""
    with mock_aws():
        secrets = boto3.client("secretsmanager")
        secrets.create_secret(
            Name=CREDENTIALS_ID, SecretString=json.dumps({"email": "", "password": ""})
        )
        secrets.create_secret(Name=SESSION_ID, SecretString="{}")
        secrets.create_secret(Name=ACCESS_TOKEN_ID, SecretString="{}")
        for variable, secret_id in SECRET_IDS.items():
            monkeypatch.setenv(variable, secret_id)
        monkeypatch.setenv("KILLB_BASE_URL", sandbox.base_url)
        monkeypatch.setenv("KILLB_TIMEOUT_SECONDS", "1")
        monkeypatch.setenv("LOGIN_BACKOFF_SECONDS", "900")
        app = load_function("refresher")

        def small_backoff_client(api_key: str | None) -> KillB:
            return KillBAuthClient(
                sandbox.base_url,
                api_key=api_key,
                timeout=KILLB_TIMEOUT,
                max_retries=KILLB_RETRIES,
                backoff_factor=0.01,
                max_retry_after=0.05,
                deadline=10,
                clock=clock,
            )

        monkeypatch.setattr(app, "killb_client", small_backoff_client)
        monkeypatch.setattr(app, "clock", clock)
        capsys.readouterr()
        refresher = Refresher(app, secrets, sandbox, clock, lambda_context, capsys)
        refresher.put_credentials()
        yield refresher


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
    before = int(refresher.clock())
    summary = refresher.run()

    # Then expiresAt is 1200 s after KillB answered, in whole seconds
    assert before + 1200 <= summary["expiresAt"] <= int(refresher.clock()) + 1200


def test_first_run_emits_login_and_seconds_left_metrics(refresher: Refresher) -> None:
    # Given no session yet, When the refresher logs in
    refresher.run()

    # Then it counts the login and reports the seconds left on the token
    metrics = refresher.metrics()
    assert metrics["Logins"] == [1]
    assert 3590 <= metrics["AccessTokenSecondsLeft"][0] <= 3600
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
    assert 2390 <= refresher.metrics()["AccessTokenSecondsLeft"][0] <= 2400


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
    # Given a login backoff for rejected credentials
    refresher.put_credentials(password=WRONG_PASSWORD)
    refresher.run()

    # When LOGIN_BACKOFF_SECONDS (900) have passed
    refresher.clock.advance(899)
    inside = refresher.run()
    refresher.clock.advance(1)
    after = refresher.run()

    # Then the run inside made no call, the run after tried a login again
    assert "login backoff" in inside["reason"]
    assert "login rejected" in after["reason"]
    assert refresher.sandbox.count("login") == 2


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
                       "reason": "credentials not configured"}  # fmt: skip
    assert refresher.metrics()["NotConfigured"] == [1]
    assert any("not configured" in record["message"] for record in refresher.logs())


@pytest.mark.parametrize(
    "fault",
    [
        ErrorResponse(503),
        ErrorResponse(500, error_code=None),
        RateLimit(retry_after=1),
        Delay(seconds=KILLB_TIMEOUT * 3),
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
    assert refresher.sandbox.count("login") == 1 + KILLB_RETRIES
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
