"""The refresher as deployed, for the tests that drive it (tests/integration, tests/evidence):
functions/refresher/app.py loaded as a cold start would, its settings from the environment only,
Secrets Manager in moto, the local KillB sandbox over real HTTP, and a fixed clock.

The clock is time-machine's: it patches time.time (and datetime) for the whole process, so the
handler, the KillB client, the sandbox and moto all read the same fixed time, which only a test
moves. time.sleep moves it too, so the client's retry waits take no wall time; timeouts do, as
they are the sockets' own.
"""

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
import time_machine
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from killb_broker.observability import logger
from killb_sandbox.accounts import SANDBOX_EMAIL, SANDBOX_PASSWORD
from killb_sandbox.server import Account, KillBSandbox
from tests.support import SessionHooks, load_event, load_function

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = [
    "ACCESS_TOKEN_ID",
    "CREDENTIALS_ID",
    "KILLB_ATTEMPTS",
    "KILLB_TIMEOUT_SECONDS",
    "SECRET_IDS",
    "SESSION_ID",
    "START",
    "WRONG_PASSWORD",
    "Clock",
    "Refresher",
    "clock",
    "logs_to_capsys",
    "refresher",
    "sandbox",
    "send_logger_to_capsys",
]

SECRET_IDS = {
    "CREDENTIALS_SECRET_ID": "killb-test/credentials",
    "SESSION_SECRET_ID": "killb-test/session",
    "ACCESS_TOKEN_SECRET_ID": "killb-test/access-token",
}
CREDENTIALS_ID, SESSION_ID, ACCESS_TOKEN_ID = SECRET_IDS.values()
# The function's settings, as the template would set them (the timeout at its smallest).
SETTINGS = {"KILLB_TIMEOUT_SECONDS": "1", "LOGIN_BACKOFF_SECONDS": "900"}
KILLB_TIMEOUT_SECONDS = 1
KILLB_ATTEMPTS = 1 + 3  # the KillB client's own retries: three after the first attempt
WRONG_PASSWORD = "pw-Wrong-0b9e4d"
START = 1_800_000_000  # 2027-01-15T08:00:00Z: a whole second, so no rounding hides anything


class Clock:
    """The process's fixed time; advance() and time.sleep move it, nothing else does."""

    def __init__(self, traveller: time_machine.Traveller) -> None:
        self._traveller = traveller

    def __call__(self) -> float:
        return time.time()

    def advance(self, seconds: float) -> None:
        self._traveller.shift(seconds)

    def sleep(self, seconds: float) -> None:
        self._traveller.shift(max(0.0, seconds))


@dataclass
class Refresher:
    """The loaded handler with everything around it, and what a test needs to look at."""

    app: ModuleType
    secrets: SecretsManagerClient
    sandbox: KillBSandbox
    clock: Clock
    context: Any
    capsys: pytest.CaptureFixture[str]
    # Hooks on the clients the handler built at its cold start (Secrets Manager's).
    hooks: SessionHooks
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
        return self.put_credentials_string(json.dumps(value))

    def put_credentials_string(self, secret_string: str) -> str:
        put = self.secrets.put_secret_value(SecretId=CREDENTIALS_ID, SecretString=secret_string)
        return put["VersionId"]

    def secret(self, secret_id: str) -> tuple[str, str]:
        """The current value and VersionId of a secret."""
        answer = self.secrets.get_secret_value(SecretId=secret_id)
        return answer["SecretString"], answer["VersionId"]

    def secret_json(self, secret_id: str) -> Any:
        return json.loads(self.secret(secret_id)[0])

    def access_token(self) -> str:
        token: str = self.secret_json(ACCESS_TOKEN_ID)["accessToken"]
        return token

    def versions(self) -> tuple[str, str]:
        return self.secret(SESSION_ID)[1], self.secret(ACCESS_TOKEN_ID)[1]

    def stored(self) -> tuple[tuple[str, str], tuple[str, str]]:
        """What rule R5 keeps as it was: the session and access-token secrets, each its
        SecretString and VersionId."""
        return self.secret(SESSION_ID), self.secret(ACCESS_TOKEN_ID)

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

        self.hooks.add("before-call.secrets-manager.PutSecretValue", refuse)


class CurrentStdout:
    """Whatever sys.stdout is at the moment of writing (capsys swaps it per test phase)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def send_logger_to_capsys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared Logger keeps the stdout it found at import: send its lines to capsys."""
    monkeypatch.setattr(logger.registered_handler, "stream", CurrentStdout())


@pytest.fixture
def logs_to_capsys(monkeypatch: pytest.MonkeyPatch) -> None:
    send_logger_to_capsys(monkeypatch)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    with time_machine.travel(START, tick=False) as traveller:
        fixed = Clock(traveller)
        # The KillB client's retry waits and botocore's: both wait with time.sleep.
        monkeypatch.setattr(time, "sleep", fixed.sleep)
        yield fixed


@pytest.fixture
def sandbox(clock: Clock) -> Iterator[KillBSandbox]:
    with KillBSandbox({SANDBOX_EMAIL: Account(password=SANDBOX_PASSWORD)}) as sandbox:
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
    send_logger_to_capsys(monkeypatch)
    with mock_aws():
        secrets = boto3.client("secretsmanager")
        secrets.create_secret(
            Name=CREDENTIALS_ID, SecretString=json.dumps({"email": "", "password": ""})
        )
        secrets.create_secret(Name=SESSION_ID, SecretString="{}")
        secrets.create_secret(Name=ACCESS_TOKEN_ID, SecretString="{}")
        for variable, value in {
            **SECRET_IDS,
            **SETTINGS,
            "KILLB_BASE_URL": sandbox.base_url,
        }.items():
            monkeypatch.setenv(variable, value)
        hooks = SessionHooks()
        try:
            app = load_function("refresher")
            capsys.readouterr()
            refresher = Refresher(app, secrets, sandbox, clock, lambda_context, capsys, hooks)
            refresher.put_credentials()
            yield refresher
        finally:
            hooks.close()
