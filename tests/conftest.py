"""Fixtures every test shares: an AWS environment that can never reach real AWS, a Lambda
context, and (through the sandbox's plugin) a local KillB on loopback."""

from __future__ import annotations

import os
from typing import Any

import pytest

POWERTOOLS_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "killb-credential-broker",
    "POWERTOOLS_METRICS_NAMESPACE": "KillBCredentialBroker",
}
# The shared Logger and Metrics read these when first imported, before any fixture runs.
for _name, _value in POWERTOOLS_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

pytest_plugins = [
    "killb_sandbox.pytest_plugin",
    # The leak check: every test's captured output is searched for the secrets the tests used.
    "tests.evidence.leak_check",
]


@pytest.fixture(autouse=True)
def aws_sandboxed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a fixed region, so no test can ever touch a real AWS account."""
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SECRETSMANAGER",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        "AWS_ENDPOINT_URL_LAMBDA",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for name, value in POWERTOOLS_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def lambda_context() -> Any:
    """The few attributes of a Lambda context that Powertools reads."""

    class Context:
        function_name = "test-function"
        memory_limit_in_mb = 256
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
        aws_request_id = "6f1b0a3e-0000-4000-8000-000000000001"

        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 60_000

    return Context()
