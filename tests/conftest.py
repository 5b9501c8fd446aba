"""Fixtures every test shares: an AWS environment that can never reach real AWS, a Lambda
context, and (through the sandbox's plugin) a local KillB on loopback."""

from __future__ import annotations

import os

import pytest
from lambda_runtime import LambdaContext

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
        "AWS_ENDPOINT_URL_EVENTBRIDGE",
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
def lambda_context() -> LambdaContext:
    """What Powertools reads from a Lambda context."""
    return LambdaContext(function_name="test-function")
