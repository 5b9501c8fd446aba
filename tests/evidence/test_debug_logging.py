"""No secret at any log level: a whole login / forced refresh / broker flow in a fresh interpreter
with the root logger at DEBUG (as Lambda's ApplicationLogLevel DEBUG leaves it before the handler
is imported) and every log level variable at DEBUG, then the leak check over all it printed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.evidence.leak_check import Finding, LeakCheck
from tests.support import ROOT

DEBUG_EVERYWHERE = {
    "POWERTOOLS_LOG_LEVEL": "DEBUG",
    "LOG_LEVEL": "DEBUG",
    "AWS_LAMBDA_LOG_LEVEL": "DEBUG",
    "POWERTOOLS_DEBUG": "true",
    "POWERTOOLS_LOGGER_LOG_EVENT": "true",
}


def run_flow(tmp_path: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    """Everything the flow printed (stdout and stderr), and what it reports having used."""
    result_path = tmp_path / "result.json"
    environment = {
        **os.environ,
        **DEBUG_EVERYWHERE,
        "PYTHONPATH": os.pathsep.join(
            str(ROOT / part) for part in ("layers/shared", "clients/python", "local", "")
        ),
    }
    finished = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "tests.evidence.debug_flow", str(result_path), *extra],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Not shown on failure: the output may hold the very secrets this test looks for.
    assert finished.returncode == 0, "the flow failed; run tests.evidence.debug_flow to see why"
    return finished.stdout + finished.stderr, json.loads(result_path.read_text())


def leaks(printed: str, used: dict[str, Any]) -> list[Finding]:
    check = LeakCheck(lasting=dict(used["secrets"]), sandbox_tokens=lambda: used["tokens"])
    return check.scan([("the flow's output", printed)])


def test_debug_everywhere_prints_no_password_key_token_or_signature(tmp_path: Path) -> None:
    # Given a fresh interpreter at DEBUG everywhere, When it logs in, refreshes, and serves a caller
    printed, used = run_flow(tmp_path)

    # Then the flow worked, the root logger and ours at DEBUG, and nothing secret is in what it
    # printed: no password, API key, token, caller's signature, nor the event (asked to be logged)
    assert used["levels"] == [logging.DEBUG, logging.DEBUG]
    assert used["actions"] == ["logged_in", "refreshed"]
    assert used["broker_status"] == 200
    logged_the_runs = "refresher run" in printed  # a name, so a failure shows no output
    assert logged_the_runs
    assert leaks(printed, used) == []


def test_without_the_cap_the_same_flow_leaks(tmp_path: Path) -> None:
    # Given the same flow, but the library loggers put back to NOTSET after the handlers loaded
    printed, used = run_flow(tmp_path, "--libraries-loud")

    # Then botocore prints the Secrets Manager bodies: the password, the API key and tokens
    kinds = {finding.kind for finding in leaks(printed, used)}
    assert {"password", "API key", "KillB sandbox token"} <= kinds
