"""`make local` (`python local/stack.py`): the stack stays up, answers the commands it prints,
and Ctrl-C stops all of it."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess

import requests

from killb_broker_client import BrokerAuth
from tests.local.runner import free_port, start_tool


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


def test_the_stack_serves_the_refreshed_token_until_interrupted() -> None:
    # Given the local stack started on free ports
    ports = {name: free_port() for name in ("broker", "secretsmanager", "killb")}
    process = start_tool(
        "local/stack.py",
        "--broker-port", str(ports["broker"]),
        "--secretsmanager-port", str(ports["secretsmanager"]),
        "--killb-port", str(ports["killb"]),
    )  # fmt: skip
    try:
        printed = read_until(process, "Ctrl-C stops everything")

        # When a caller follows the printed instructions: BrokerAuth on the broker's URL,
        # then KillB's user list with those headers
        broker_url = f"http://127.0.0.1:{ports['broker']}"
        with requests.Session() as session:
            session.auth = BrokerAuth(broker_url)
            users = session.get(f"http://127.0.0.1:{ports['killb']}/api/v2/users", timeout=10)
    finally:
        process.send_signal(signal.SIGINT)
        exit_code = process.wait(timeout=30)

    # Then the refresher had logged in, the export lines were printed, KillB accepted the
    # broker's headers, and Ctrl-C stopped the stack and every server it started
    assert '"action": "logged_in"' in printed
    assert f"export KILLB_BROKER_URL={broker_url}" in printed
    assert (
        f"export AWS_ENDPOINT_URL_SECRETSMANAGER=http://127.0.0.1:{ports['secretsmanager']}"
        in printed
    )
    assert "sam local invoke RefresherFunction" in printed
    assert users.status_code == 200
    assert exit_code == 0
    assert not any(is_listening(port) for port in ports.values())
