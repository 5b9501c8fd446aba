"""The leak check across the whole suite (a pytest plugin, registered in tests/conftest.py).

Every test's captured output (stdout, stderr and log sections, what a test read with capsys, and
every record of the shared Logger, wherever its stream went) is searched for every secret the
tests used: the sandbox account's password and API key, every token any KillB sandbox issued,
and the passwords, API keys and tokens tests put into Secrets Manager (moto). A find fails the
test at teardown, naming the test, the kind of secret and where it was seen, never the value.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import re
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from killb_sandbox.accounts import SANDBOX_API_KEY, SANDBOX_PASSWORD
from killb_sandbox.server import every_token_issued

# A shorter value (a test's "x") could turn up by chance; real secrets are longer.
MIN_SECRET_LENGTH = 8
# Fields of the secrets' JSON that hold a secret, and what to call each in a finding.
SECRET_FIELDS = {
    "password": "password",
    "apiKey": "API key",
    "accessToken": "access token",
    "refreshToken": "refresh token",
}
SANDBOX_TOKEN = "KillB sandbox token"
# The sandbox's tokens are secrets.token_urlsafe(32): 43 characters of this alphabet.
_URLSAFE_RUN = re.compile(r"[A-Za-z0-9_-]{43,}")
_SANDBOX_TOKEN_LENGTH = 43


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    where: str

    def __str__(self) -> str:
        return f"{self.kind} in {self.where}"


@dataclass
class LeakCheck:
    """The secrets to look for, and the output of the test that is running."""

    # Secrets of the whole session (value -> kind): the sandbox account's constants.
    lasting: dict[str, str] = field(
        default_factory=lambda: {SANDBOX_PASSWORD: "password", SANDBOX_API_KEY: "API key"}
    )
    # Secrets the running test put into Secrets Manager (value -> kind): hand-made values are
    # secret only where they were used, so they are forgotten when the next test starts.
    this_test: dict[str, str] = field(default_factory=dict)
    read_by_test: list[str] = field(default_factory=list)
    logged: io.StringIO = field(default_factory=io.StringIO)
    sandbox_tokens: Callable[[], Iterable[str]] = every_token_issued

    def begin_test(self) -> None:
        self.this_test.clear()
        self.read_by_test.clear()
        self.logged = io.StringIO()

    def remember_secret_string(self, secret_string: object) -> None:
        """The secret fields of a SecretString put into Secrets Manager."""
        try:
            value = json.loads(secret_string) if isinstance(secret_string, str) else None
        except ValueError:
            return
        if not isinstance(value, dict):
            return
        for name, kind in SECRET_FIELDS.items():
            secret = value.get(name)
            if isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH:
                self.this_test[secret] = kind

    def scan(self, sources: Iterable[tuple[str, str]]) -> list[Finding]:
        """Every (kind, where) of a known secret in the (where, text) sources."""
        known = {**self.lasting, **self.this_test}
        tokens = frozenset(self.sandbox_tokens())
        findings: set[Finding] = set()
        for where, text in sources:
            findings |= {Finding(kind, where) for secret, kind in known.items() if secret in text}
            for run in _URLSAFE_RUN.findall(text):
                windows = (
                    run[start : start + _SANDBOX_TOKEN_LENGTH]
                    for start in range(len(run) - _SANDBOX_TOKEN_LENGTH + 1)
                )
                if any(window in tokens for window in windows):
                    findings.add(Finding(SANDBOX_TOKEN, where))
        return sorted(findings, key=str)

    def sources(self, report: pytest.TestReport) -> list[tuple[str, str]]:
        """All the output of the test this (teardown) report closes."""
        return [
            *((title.lower(), text) for title, text in report.sections),
            ("output read with capsys", "".join(self.read_by_test)),
            ("the shared Logger's records", self.logged.getvalue()),
        ]

    def fail_on_leak(self, report: pytest.TestReport) -> list[Finding]:
        """Mark the report failed when its test's output holds a secret; the findings."""
        findings = self.scan(self.sources(report))
        if findings:
            # The captured output is not shown with the failure: it holds the secret.
            report.sections = []
            report.outcome = "failed"
            report.longrepr = f"leak check: {report.nodeid} logged " + "; ".join(
                str(finding) for finding in findings
            )
        return findings


CHECK = LeakCheck()
_LEAKS: list[str] = []
_UNDO: list[Callable[[], None]] = []


def _record_puts() -> None:
    """Every SecretString put into moto's Secrets Manager, whichever client or server put it."""
    from moto.secretsmanager.models import SecretsManagerBackend  # noqa: PLC0415 - moto is heavy

    for name in ("create_secret", "put_secret_value", "update_secret"):
        original = getattr(SecretsManagerBackend, name)
        signature = inspect.signature(original)

        def recording(
            *args: Any, __original: Any = original, __signature: Any = signature, **kwargs: Any
        ) -> Any:
            bound = __signature.bind_partial(*args, **kwargs)
            CHECK.remember_secret_string(bound.arguments.get("secret_string"))
            return __original(*args, **kwargs)

        setattr(SecretsManagerBackend, name, recording)
        _UNDO.append(lambda name=name, original=original: setattr(  # type: ignore[misc]
            SecretsManagerBackend, name, original
        ))  # fmt: skip


def _tee_readouterr() -> None:
    """What a test reads with capsys/capfd is gone from the report: keep a copy."""
    original = pytest.CaptureFixture.readouterr

    def readouterr(self: pytest.CaptureFixture[Any]) -> Any:
        result = original(self)
        CHECK.read_by_test.extend(str(part) for part in result)
        return result

    pytest.CaptureFixture.readouterr = readouterr  # type: ignore[method-assign]
    _UNDO.append(lambda: setattr(pytest.CaptureFixture, "readouterr", original))


def pytest_configure(config: pytest.Config) -> None:
    _record_puts()
    _tee_readouterr()


def pytest_unconfigure(config: pytest.Config) -> None:
    while _UNDO:
        _UNDO.pop()()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    """Around each test: a fresh buffer, and a handler on the shared Logger that fills it."""
    from killb_broker.observability import logger  # noqa: PLC0415 - after the env is set

    CHECK.begin_test()
    handler = logging.StreamHandler(CHECK.logged)
    handler.setFormatter(logger.registered_formatter)
    service_logger = logging.getLogger(logger.name)
    service_logger.addHandler(handler)
    try:
        return (yield)
    finally:
        service_logger.removeHandler(handler)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "teardown":
        _LEAKS.extend(str(finding) for finding in CHECK.fail_on_leak(report))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _LEAKS:
        terminalreporter.section("leak check")
        terminalreporter.write_line(f"{len(_LEAKS)} secret(s) found in captured output")
    else:
        terminalreporter.write_line("leak check: no secret in any captured output")
