"""Fixtures every test shares: an AWS environment that can never reach real AWS, and loaders for
the files in events/ and for the two functions' handlers (both named app.py, so loaded by path)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
FUNCTIONS = ROOT / "functions"

pytest_plugins = ["killb_sandbox.pytest_plugin"]


def load_event(name: str) -> dict[str, Any]:
    """One of the JSON files in events/, the same ones `sam local invoke -e` takes."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def load_function(name: str) -> ModuleType:
    """Import functions/<name>/app.py afresh, as a cold start does (config is read at import)."""
    module_name = f"{name}_app"
    sys.modules.pop(module_name, None)
    spec = importlib.util.spec_from_file_location(module_name, FUNCTIONS / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def aws_sandboxed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and a fixed region, so no test can ever touch a real AWS account."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETSMANAGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "killb-credential-broker")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "KillBCredentialBroker")
    yield


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
