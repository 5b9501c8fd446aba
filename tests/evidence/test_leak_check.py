"""The leak check itself (leak_check.py): it finds a planted secret, names the test and the kind,
never the value; and it really watches moto's secrets and the shared Logger in this suite."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from killb_broker.observability import logger
from killb_broker.tokens import fingerprint
from tests.evidence.leak_check import CHECK, LeakCheck

PLANTED_PASSWORD = "pw-Planted-c0ffee42"  # never printed: the checker is handed it directly
PLANTED_TOKEN = "T" * 20 + "planted_token-0123456789ab"  # 46: longer than a sandbox token
SANDBOX_LIKE_TOKEN = PLANTED_TOKEN[:43]


def teardown_report(*sections: tuple[str, str]) -> pytest.TestReport:
    return pytest.TestReport(
        nodeid="tests/test_example.py::test_logs_too_much",
        location=("tests/test_example.py", 1, "test_logs_too_much"),
        keywords={},
        outcome="passed",
        longrepr=None,
        when="teardown",
        sections=list(sections),
    )


def test_a_planted_password_fails_the_test_naming_test_and_kind_but_not_the_value() -> None:
    # Given a test that put a password into Secrets Manager and then logged it
    check = LeakCheck(sandbox_tokens=frozenset)
    check.remember_secret_string(json.dumps({"email": "a@b.test", "password": PLANTED_PASSWORD}))
    report = teardown_report(("Captured stdout call", f'{{"message": "{PLANTED_PASSWORD}"}}'))

    # When the check reads its teardown report
    findings = check.fail_on_leak(report)

    # Then the test fails, and the message names the test and the kind, not the value
    assert [str(finding) for finding in findings] == ["password in captured stdout call"]
    assert report.outcome == "failed"
    assert "tests/test_example.py::test_logs_too_much" in str(report.longrepr)
    assert "password" in str(report.longrepr)
    assert PLANTED_PASSWORD not in str(report.longrepr)
    assert report.sections == []  # pytest would print them with the failure


def test_a_sandbox_token_inside_a_longer_word_is_found() -> None:
    # Given a token the sandbox issued, logged glued to other characters
    check = LeakCheck(sandbox_tokens=lambda: {SANDBOX_LIKE_TOKEN})
    report = teardown_report(("Captured log call", f"Authorization=Bearer{PLANTED_TOKEN}xyz"))

    # When the check reads the report, Then the token is found
    assert [f.kind for f in check.fail_on_leak(report)] == ["KillB sandbox token"]


def test_output_read_with_capsys_and_logger_records_are_searched_too() -> None:
    # Given an API key a test read back with capsys, and a refresh token in a Logger record
    check = LeakCheck(sandbox_tokens=frozenset)
    check.remember_secret_string(
        json.dumps({"refreshToken": "rt-planted-77aa01", "apiKey": "ak-planted-9f"})
    )
    check.read_by_test.append("ak-planted-9f")
    check.logged.write('{"extra": "rt-planted-77aa01"}')

    # When the check reads a report whose own sections are clean
    findings = check.fail_on_leak(teardown_report(("Captured stdout call", "all quiet")))

    # Then both are found, each where it was
    assert sorted(map(str, findings)) == [
        "API key in output read with capsys",
        "refresh token in the shared Logger's records",
    ]


def test_clean_output_and_fingerprints_leave_the_report_alone() -> None:
    # Given a test that logged only a token's fingerprint, and a value too short to be a secret
    check = LeakCheck(sandbox_tokens=lambda: {SANDBOX_LIKE_TOKEN})
    check.remember_secret_string(json.dumps({"accessToken": "x", "password": PLANTED_PASSWORD}))
    report = teardown_report(("Captured log call", f"token {fingerprint(SANDBOX_LIKE_TOKEN)} x"))

    # When the check reads the report, Then nothing is found and the report still passes
    assert check.fail_on_leak(report) == []
    assert report.outcome == "passed"


def test_the_running_suite_remembers_what_tests_put_into_moto() -> None:
    # Given this very test puts an access token into moto's Secrets Manager
    with mock_aws():
        boto3.client("secretsmanager").create_secret(
            Name="leak-check/access-token",
            SecretString=json.dumps({"accessToken": "at-planted-5e5e5e", "expiresAt": 1}),
        )

    # Then the live check will search this test's output for it
    assert CHECK.this_test == {"at-planted-5e5e5e": "access token"}


def test_the_running_suite_sees_every_record_of_the_shared_logger() -> None:
    # Given the shared Logger writes a record (wherever its own stream goes)
    logger.info("leak check probe", extra={"token_fingerprint": "0123456789ab"})

    # Then the live check has it, formatted as CloudWatch would get it
    assert "leak check probe" in CHECK.logged.getvalue()
    assert "0123456789ab" in CHECK.logged.getvalue()
