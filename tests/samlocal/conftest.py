"""Fixtures of the `sam local` checks: a local Secrets Manager (moto's server) and the KillB
sandbox where SAM's containers reach them, and SAM CLI itself run as a user would run it.

These tests need a dockerd, a stand-in Lambda image and a network namespace to keep containers
in: local/samlocal/run.sh (`make samlocal`, part of `make test`) provides them and runs this
folder. Collected anywhere else they could only fail for want of Docker, so they are not
collected then; run.sh fails loudly when it cannot provide them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from killb_sandbox.accounts import SANDBOX_API_KEY, SANDBOX_EMAIL, SANDBOX_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
ENV_VARS_FILE = ROOT / "local" / "sam-env.json"
TEMPLATE_VARIABLE = "KILLB_SAMLOCAL_TEMPLATE"
REGION = "us-east-1"
LOCAL_CALLER_ARN = "arn:aws:iam::123456789012:role/local-caller"

if not os.environ.get(TEMPLATE_VARIABLE):
    collect_ignore_glob = ["test_*.py"]


def env_vars_file() -> dict[str, dict[str, str]]:
    loaded: dict[str, dict[str, str]] = json.loads(ENV_VARS_FILE.read_text())
    return loaded


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, f"{url} names no port"
    return port


def wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} before it listened")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not listen on {host}:{port} within 60 s")


@contextlib.contextmanager
def background(name: str, argv: list[str], host: str, port: int, **env: str) -> Iterator[None]:
    process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
        argv, cwd=ROOT, env={**os.environ, **env}
    )
    try:
        wait_for_port(host, port, process, name)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class LocalAws:
    """Where the tests reach the servers; the containers reach the same ones through the host
    name in local/sam-env.json."""

    host: str
    secretsmanager_url: str
    killb_url: str
    secret_ids: dict[str, str]

    def secretsmanager(self) -> Any:
        return boto3.client(
            "secretsmanager",
            endpoint_url=self.secretsmanager_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stored(self, variable: str) -> dict[str, Any]:
        secret = self.secretsmanager().get_secret_value(SecretId=self.secret_ids[variable])
        value: dict[str, Any] = json.loads(secret["SecretString"])
        return value

    def sam_environment(self, **extra: str) -> dict[str, str]:
        """SAM CLI's own environment: fake credentials, and STS (SAM asks it for the account
        before each command) answered by moto instead of timing out."""
        environment = {
            name: value for name, value in os.environ.items() if not name.startswith("AWS_")
        }
        environment.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
            AWS_ENDPOINT_URL_STS=self.secretsmanager_url,
            SAM_CLI_TELEMETRY="0",
            **extra,
        )
        return environment


@pytest.fixture(scope="session")
def local_aws() -> Iterator[LocalAws]:
    """moto's server and the KillB sandbox on the Docker bridge's host side, on the ports that
    local/sam-env.json names, with the stack's three secrets created and the credentials put."""
    host = os.environ.get("KILLB_SAMLOCAL_BRIDGE_IP", "")
    assert host, "KILLB_SAMLOCAL_BRIDGE_IP is not set: run this through local/samlocal/run.sh"
    refresher = env_vars_file()["RefresherFunction"]
    moto_port = port_of(refresher["AWS_ENDPOINT_URL_SECRETSMANAGER"])
    killb_port = port_of(refresher["KILLB_BASE_URL"])
    moto_argv = [sys.executable, "-m", "moto.server", "-H", host, "-p", str(moto_port)]
    sandbox_argv = [
        # Every address of this network namespace (loopback and the bridge, no route beyond):
        # the containers reach it on the bridge, the host-side callers on loopback.
        sys.executable, "-m", "killb_sandbox", "--host", "0.0.0.0", "--allow-non-loopback",  # noqa: S104
        "--port", str(killb_port), "--email", SANDBOX_EMAIL, "--password", SANDBOX_PASSWORD,
        "--api-key", SANDBOX_API_KEY,
    ]  # fmt: skip
    sandbox_path = os.pathsep.join([str(ROOT / "local"), str(ROOT / "layers" / "shared")])
    with (
        background("moto server", moto_argv, host, moto_port),
        background("KillB sandbox", sandbox_argv, host, killb_port, PYTHONPATH=sandbox_path),
    ):
        aws = LocalAws(
            host=host,
            secretsmanager_url=f"http://{host}:{moto_port}",
            # Where a caller on this side sends its KillB requests: loopback, the only plain-http
            # host BrokerAuth puts headers on.
            killb_url=f"http://127.0.0.1:{killb_port}",
            secret_ids={
                name: refresher[name]
                for name in ("CREDENTIALS_SECRET_ID", "SESSION_SECRET_ID", "ACCESS_TOKEN_SECRET_ID")
            },
        )
        credentials = {"email": SANDBOX_EMAIL, "password": SANDBOX_PASSWORD}
        credentials["apiKey"] = SANDBOX_API_KEY
        initial = {
            "CREDENTIALS_SECRET_ID": json.dumps(credentials),
            "SESSION_SECRET_ID": "{}",
            "ACCESS_TOKEN_SECRET_ID": "{}",
        }
        secrets = aws.secretsmanager()
        for variable, secret_id in aws.secret_ids.items():
            secrets.create_secret(Name=secret_id, SecretString=initial[variable])
        yield aws


@dataclass(frozen=True)
class Invocation:
    """What `sam local invoke` printed: the function's answer on stdout, its logs on stderr."""

    answer: dict[str, Any]
    logs: str

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.answer["body"])
        return body


def sam_command(command: str) -> list[str]:
    template = os.environ[TEMPLATE_VARIABLE]
    return [
        "sam", "local", command, "--template", template, "--env-vars", str(ENV_VARS_FILE),
        "--skip-pull-image", "--add-host", "host.docker.internal:host-gateway",
        "--region", REGION,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def sam_invoke(local_aws: LocalAws) -> Any:
    """`sam local invoke FUNCTION --event events/FILE --env-vars local/sam-env.json`."""

    def invoke(function: str, event_file: str) -> Invocation:
        argv = [*sam_command("invoke"), function, "--event", str(ROOT / "events" / event_file)]
        done = subprocess.run(  # noqa: S603 - SAM CLI with our own arguments
            argv,
            cwd=ROOT,
            env=local_aws.sam_environment(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"sam local invoke failed:\n{done.stderr[-3000:]}"
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        assert lines, f"sam local invoke printed no answer:\n{done.stderr[-3000:]}"
        answer: dict[str, Any] = json.loads(lines[-1])
        return Invocation(answer=answer, logs=done.stderr)

    return invoke


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def sam_api(local_aws: LocalAws) -> Iterator[str]:
    """`sam local start-api` with LOCAL_CALLER_ARN in the shell, as a user starts it; its URL."""
    port = free_port()
    argv = [*sam_command("start-api"), "--host", "127.0.0.1", "--port", str(port)]
    environment = local_aws.sam_environment(LOCAL_CALLER_ARN=LOCAL_CALLER_ARN)
    process = subprocess.Popen(argv, cwd=ROOT, env=environment)  # noqa: S603 - SAM CLI
    try:
        wait_for_port("127.0.0.1", port, process, "sam local start-api")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
