"""`make local` (`python local/stack.py`): the stack stays up, runs the refresher on its schedule,
answers the commands it prints (a rejected report included), refuses a port another program holds,
and Ctrl-C stops all of it."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from botocore.credentials import Credentials

from killb_broker_client import BrokerAuth, fingerprint
from tests.local.runner import ROOT, free_port, start_tool, tool_environment


def read_until(process: subprocess.Popen[str], marker: str) -> str:
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"the stack ended before printing {marker!r}: {''.join(seen)}")


def is_listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


PORT_NAMES = ("broker", "lambda", "secretsmanager", "killb")


def stack_argv(ports: dict[str, int], log_file: Path, *extra: str) -> list[str]:
    argv = ["local/stack.py", "--log-file", str(log_file), *extra]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    return argv


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, int], str]]:
    """`make local` on free ports, its schedule every second, up until the test ends."""
    ports = {name: free_port() for name in PORT_NAMES}
    process = start_tool(
        *stack_argv(ports, tmp_path / "functions.log", "--schedule-seconds", "1"),
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
    )
    try:
        printed = read_until(process, "Ctrl-C stops everything")
        yield process, ports, printed
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def test_the_stack_serves_the_refreshed_token_until_interrupted(tmp_path: Path) -> None:
    # Given the local stack started on free ports
    ports = {name: free_port() for name in PORT_NAMES}
    log_file = tmp_path / "functions.log"
    process = start_tool(*stack_argv(ports, log_file))
    try:
        printed = read_until(process, "Ctrl-C stops everything")

        # When a caller follows the printed instructions: BrokerAuth on the broker's URL
        # (signing with the printed credentials), then KillB's user list with those headers
        broker_url = f"http://127.0.0.1:{ports['broker']}"
        auth = BrokerAuth(broker_url, credentials=local_credentials())
        with requests.Session() as session:
            session.auth = auth
            users = session.get(f"http://127.0.0.1:{ports['killb']}/api/v2/users", timeout=10)
    finally:
        process.send_signal(signal.SIGINT)
        exit_code = process.wait(timeout=30)

    # Then the refresher had logged in, the export lines were printed last, KillB accepted the
    # broker's headers, no long JSON line reached the terminal (the functions log to the file),
    # and Ctrl-C stopped the stack and every server it started
    assert "first scheduled run: logged_in" in printed
    assert f"export KILLB_BROKER_URL={broker_url}" in printed
    assert (
        f"export AWS_ENDPOINT_URL_SECRETSMANAGER=http://127.0.0.1:{ports['secretsmanager']}"
        in printed
    )
    assert "make build" in printed
    assert "sam local invoke RefresherFunction" in printed
    assert max(len(line) for line in printed.splitlines()) < 160
    assert users.status_code == 200
    assert exit_code == 0
    assert not any(is_listening(port) for port in ports.values())
    audit = [
        json.loads(line) for line in log_file.read_text().splitlines() if "broker audit" in line
    ]
    assert audit
    assert {(record["service"], record["function_name"]) for record in audit} == {
        ("killb-local", "killb-local-broker")
    }


def local_credentials() -> Credentials:
    """What `make local` prints to export: the API checks signatures against them."""
    return Credentials("local", "local")


def test_the_refresher_runs_on_its_schedule(
    running: tuple[subprocess.Popen[str], dict[str, int], str],
) -> None:
    process, _, _ = running

    # When a scheduled period passes
    line = read_until(process, "scheduled refresher run")

    # Then one compact line says what the run did (the token is fresh: nothing to do)
    assert "scheduled refresher run: noop" in line.splitlines()[-1]


def test_headers_rejected_for_the_token_in_hand_returns_another_token(
    running: tuple[subprocess.Popen[str], dict[str, int], str],
) -> None:
    # Given the token in hand, from the printed command line
    _, ports, _ = running
    broker_url = f"http://127.0.0.1:{ports['broker']}"
    environment = tool_environment(
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        AWS_DEFAULT_REGION="us-east-1",
        KILLB_BROKER_URL=broker_url,
        PYTHONPATH=str(ROOT / "clients" / "python"),
    )
    environment.pop("AWS_SESSION_TOKEN", None)

    def headers(*extra: str) -> str:
        done = subprocess.run(  # noqa: S603 - our own CLI, no shell
            [sys.executable, "-m", "killb_broker_client", "headers", *extra],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        token: str = json.loads(done.stdout)["Authorization"].removeprefix("Bearer ")
        return token

    held = headers()

    # When KillB refused it and the caller reports it
    replaced = headers("--rejected", fingerprint(held))

    # Then the broker had the refresher (through the Lambda endpoint) replace it
    assert replaced != held
    assert headers() == replaced


def test_a_port_another_program_holds_is_named_and_nothing_is_sent_there(tmp_path: Path) -> None:
    # Given a program already listening on the Secrets Manager port (LocalStack's 4566, say)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        holder.settimeout(0.5)
        ports = {name: free_port() for name in PORT_NAMES}
        ports["secretsmanager"] = holder.getsockname()[1]

        # When `make local` starts
        process = start_tool(*stack_argv(ports, tmp_path / "functions.log"))
        _, stderr = process.communicate(timeout=60)

        # Then it stops at once with one line naming the port, and never connected there
        with pytest.raises(TimeoutError):
            holder.accept()
    assert process.returncode == 1
    assert stderr.splitlines() == [
        f"local stack FAILED: port {ports['secretsmanager']} (Secrets Manager (moto server)) on "
        "127.0.0.1 is taken: another `make local`, or another program, listens there; stop it "
        "or choose another port"
    ]
