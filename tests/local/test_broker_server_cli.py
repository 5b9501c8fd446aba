"""`python local/broker_server.py` from the repo root: help, a clear refusal of a broken
setting, and the broker served over HTTP until SIGTERM."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from killb_broker_client import BrokerAuth
from tests.local.runner import free_port, run_tool, start_tool

TOKEN = "tok-BrokerServerCli-0b7e"


@pytest.fixture
def secretsmanager_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_help_says_where_the_settings_come_from() -> None:
    done = run_tool("local/broker_server.py", "--help")

    assert done.returncode == 0
    assert "ACCESS_TOKEN_SECRET_ID" in done.stdout
    assert "--caller-arn" in done.stdout


def test_a_host_beyond_loopback_is_refused() -> None:
    done = run_tool("local/broker_server.py", "--host", "192.0.2.10")

    assert done.returncode == 2
    assert "not a loopback address" in done.stderr


def test_a_missing_setting_is_one_line_naming_it() -> None:
    done = run_tool("local/broker_server.py", "--port", "0")

    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "broker_server: the broker's settings are invalid: ACCESS_TOKEN_SECRET_ID" in done.stderr


def test_it_serves_the_stored_token_to_a_signed_caller_until_terminated(
    secretsmanager_url: str,
) -> None:
    # Given an access-token secret in a local Secrets Manager
    secrets = boto3.client("secretsmanager", endpoint_url=secretsmanager_url)
    stored = {"accessToken": TOKEN, "expiresAt": int(time.time()) + 3600}
    secrets.create_secret(Name="local/access-token", SecretString=json.dumps(stored))
    port = free_port()

    # When the broker server is started by hand with the broker's settings
    process = start_tool(
        "local/broker_server.py",
        "--port",
        str(port),
        ACCESS_TOKEN_SECRET_ID="local/access-token",
        AWS_ENDPOINT_URL_SECRETSMANAGER=secretsmanager_url,
        REFRESHER_FUNCTION_NAME="",
        POWERTOOLS_LOG_LEVEL="WARNING",
    )
    try:
        assert process.stdout is not None
        announced = process.stdout.readline()
        headers = BrokerAuth(f"http://127.0.0.1:{port}").headers()
        unsigned = requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=15)

    # Then it announced its URL, handed the signed caller the token, refused the unsigned one,
    # and stopped cleanly
    assert f"http://127.0.0.1:{port}" in announced
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert unsigned.status_code == 403
    assert exit_code == 0
