"""`killb-broker headers`: its three formats, its errors, and `python -m killb_broker_client`."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from broker_server import BrokerServer

from killb_broker_client.cli import main
from tests.client.scripted_broker import ACCESS_TOKEN, API_KEY, ScriptedBroker, issued, refused

LAYER = Path(__file__).resolve().parents[2] / "layers" / "shared"


def test_json_format_prints_the_headers_as_json(
    broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the CLI is asked for headers as JSON
    status = main(["headers", "--api-url", broker_api.base_url, "--format", "json"])

    # Then it prints exactly the broker's headers and succeeds
    assert status == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"Authorization": f"Bearer {ACCESS_TOKEN}", "x-api-key": API_KEY}


def test_env_format_prints_shell_assignments(
    broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the CLI is asked for headers as shell variables
    status = main(["headers", "--api-url", broker_api.base_url, "--format", "env"])

    # Then it prints one quoted export per header
    assert status == 0
    assert capsys.readouterr().out.splitlines() == [
        f"export KILLB_AUTHORIZATION='Bearer {ACCESS_TOKEN}'",
        f"export KILLB_API_KEY={API_KEY}",
    ]


def test_curl_format_prints_header_arguments_a_shell_reads_back(
    broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the CLI is asked for headers as curl arguments
    status = main(["headers", "--api-url", broker_api.base_url, "--format", "curl"])

    # Then a shell splits them into curl's -H arguments, one per header
    assert status == 0
    printed = capsys.readouterr().out.strip()
    assert printed == f"-H 'Authorization: Bearer {ACCESS_TOKEN}' -H 'x-api-key: {API_KEY}'"
    assert shlex.split(printed) == [
        "-H",
        f"Authorization: Bearer {ACCESS_TOKEN}",
        "-H",
        f"x-api-key: {API_KEY}",
    ]


def test_url_and_min_ttl_come_from_the_environment_and_flags(
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the broker URL in KILLB_BROKER_URL
    monkeypatch.setenv("KILLB_BROKER_URL", broker_api.base_url)

    # When the CLI is run with only --min-ttl
    status = main(["headers", "--min-ttl", "900"])

    # Then it asked that broker for that minTtl, and printed JSON (the default format)
    assert status == 0
    assert broker.events[0]["queryStringParameters"] == {"minTtl": "900"}
    assert json.loads(capsys.readouterr().out)["Authorization"] == f"Bearer {ACCESS_TOKEN}"


def test_broker_error_goes_to_stderr_with_its_error_code_and_exit_1(
    broker: ScriptedBroker, broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a broker that has no token to give
    broker.script(refused(503, "BROKER.0003", "No token available", retry_after="30"))

    # When the CLI asks for headers
    status = main(["headers", "--api-url", broker_api.base_url])

    # Then it exits 1, prints nothing on stdout and the errorCode on stderr
    assert status == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    assert json.loads(printed.err) == {
        "message": "No token available",
        "errorCode": "BROKER.0003",
        "status": 503,
        "retryAfter": 30,
        "url": broker_api.base_url,
    }


def test_insecure_url_is_an_error_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["headers", "--api-url", "http://broker.example.com/v1"])

    assert status == 1
    assert "https" in json.loads(capsys.readouterr().err)["message"]


def test_missing_url_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KILLB_BROKER_URL", raising=False)

    with pytest.raises(SystemExit) as exited:
        main(["headers"])

    assert exited.value.code == 2
    assert "KILLB_BROKER_URL" in capsys.readouterr().err


@pytest.mark.parametrize("min_ttl", ["-1", "1801", "1.5", "abc"])
def test_min_ttl_outside_0_to_1800_is_a_usage_error(min_ttl: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["headers", "--api-url", "http://127.0.0.1:9", "--min-ttl", min_ttl])

    assert exited.value.code == 2


def test_python_dash_m_runs_the_same_command_without_the_broker_package(
    broker: ScriptedBroker, broker_api: BrokerServer, tmp_path: Path
) -> None:
    # Given an account without an API key, and the client alone on the path, as a pip install
    # of layers/shared leaves it: no killb_broker to import
    broker.script(issued(api_key=None))
    shutil.copytree(LAYER / "killb_broker_client", tmp_path / "killb_broker_client")

    # When the package is run as a module, in a process of its own
    completed = subprocess.run(
        [sys.executable, "-m", "killb_broker_client", "headers", "--format", "env"],
        env={**os.environ, "PYTHONPATH": str(tmp_path), "KILLB_BROKER_URL": broker_api.base_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then it prints the one header as a shell assignment
    assert (completed.returncode, completed.stderr) == (0, "")
    assert completed.stdout == f"export KILLB_AUTHORIZATION='Bearer {ACCESS_TOKEN}'\n"
