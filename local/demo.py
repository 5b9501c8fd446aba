"""`make demo` (`python local/demo.py`): the whole path on this machine, with no AWS account and no
Docker.

A local Secrets Manager (moto's server) and the local KillB sandbox start on free loopback ports;
the stack's three secrets are created and the credentials put; the refresher handler runs with
the files in events/; the broker handler is served over HTTP as API Gateway would (with a caller
identity); the caller client gets headers from it and calls KillB's `GET /api/v2/users`.
Given KILLB_BASE_URL, KILLB_EMAIL and KILLB_PASSWORD (and KILLB_API_KEY if the account has one)
in the environment, it runs against that KillB instead of the sandbox.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_ID = "123456789012"
CALLER_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/payments-api/demo"
SECRET_NAMES = {
    "CREDENTIALS_SECRET_ID": "killb-demo/credentials",
    "SESSION_SECRET_ID": "killb-demo/session",
    "ACCESS_TOKEN_SECRET_ID": "killb-demo/access-token",
}


class DemoFailed(Exception):
    """A step did not do what it should; the message says which."""


def step(number: int, text: str) -> None:
    print(f"[{number}] {text}", flush=True)


def detail(text: str) -> None:
    print(f"    {text}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoFailed(f"{name} exited with code {process.returncode} before it was ready")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.1)
    raise DemoFailed(f"{name} did not open port {port} within 30 s")


@contextlib.contextmanager
def background(name: str, argv: list[str], port: int, host: str = "127.0.0.1") -> Iterator[None]:
    """A child process that is stopped on the way out, whatever happened."""
    process = subprocess.Popen(  # noqa: S603 - argv is this script's own, no shell
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    try:
        wait_for_port(host, port, process, name)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "events" / name).read_text())
    return loaded


def quiet_logs() -> None:
    """The functions log JSON for CloudWatch; the demo shows its own lines instead."""
    os.environ["POWERTOOLS_LOG_LEVEL"] = os.environ.get("DEMO_LOG_LEVEL", "WARNING")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"


IMPORT_PATHS = [str(ROOT / "layers" / "shared"), str(ROOT / "local")]


def use_local_packages() -> None:
    """The layer's and local/'s packages, for this process and the servers it starts."""
    sys.path[:0] = [path for path in IMPORT_PATHS if path not in sys.path]
    os.environ["PYTHONPATH"] = os.pathsep.join(IMPORT_PATHS)


def run(real_killb: dict[str, str] | None) -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",  # noqa: S106 - moto accepts any key
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        POWERTOOLS_SERVICE_NAME="killb-demo",
    )
    os.environ.pop("AWS_PROFILE", None)
    quiet_logs()

    moto_port = free_port()
    step(1, f"Local Secrets Manager (moto server) on http://127.0.0.1:{moto_port}")
    moto_argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)]
    with background("moto server", moto_argv, moto_port):
        os.environ["AWS_ENDPOINT_URL_SECRETSMANAGER"] = f"http://127.0.0.1:{moto_port}"
        if real_killb is None:
            from killb_sandbox.accounts import (  # noqa: PLC0415
                SANDBOX_API_KEY,
                SANDBOX_EMAIL,
                SANDBOX_PASSWORD,
            )

            killb_port = free_port()
            credentials = {
                "email": SANDBOX_EMAIL,
                "password": SANDBOX_PASSWORD,
                "apiKey": SANDBOX_API_KEY,
            }
            base_url = f"http://127.0.0.1:{killb_port}"
            step(2, f"Local KillB sandbox on {base_url}")
            sandbox_argv = [
                sys.executable, "-m", "killb_sandbox", "--port", str(killb_port),
                "--email", SANDBOX_EMAIL, "--password", SANDBOX_PASSWORD,
                "--api-key", SANDBOX_API_KEY,
            ]  # fmt: skip
            with background("KillB sandbox", sandbox_argv, killb_port):
                run_flow(base_url, credentials, show_token=True)
        else:
            base_url = real_killb.pop("base_url")
            step(2, f"Real KillB at {base_url} (from KILLB_BASE_URL)")
            run_flow(base_url, real_killb, show_token=False)


def run_flow(base_url: str, credentials: dict[str, str], *, show_token: bool) -> None:
    import requests  # noqa: PLC0415
    from broker_server import serve_broker  # noqa: PLC0415
    from lambda_runtime import LambdaContext, load_function  # noqa: PLC0415

    from killb_broker.aws import secretsmanager_client  # noqa: PLC0415
    from killb_broker.tokens import fingerprint  # noqa: PLC0415
    from killb_broker_client import BrokerAuth, get_auth_headers  # noqa: PLC0415

    step(3, "Create the stack's three secrets and put the credentials, as an operator would")
    secrets = secretsmanager_client()
    placeholders = {
        "CREDENTIALS_SECRET_ID": json.dumps({"email": "", "password": ""}),
        "SESSION_SECRET_ID": "{}",
        "ACCESS_TOKEN_SECRET_ID": "{}",
    }
    for variable, name in SECRET_NAMES.items():
        secrets.create_secret(Name=name, SecretString=placeholders[variable])
        os.environ[variable] = name
    secrets.put_secret_value(
        SecretId=SECRET_NAMES["CREDENTIALS_SECRET_ID"], SecretString=json.dumps(credentials)
    )
    detail(", ".join(SECRET_NAMES.values()))

    os.environ["KILLB_BASE_URL"] = base_url
    refresher = load_function("refresher").lambda_handler
    scheduled, forced = "refresher-scheduled.json", "refresher-force.json"
    runs = (
        (f"scheduled run (events/{scheduled}): no session yet", scheduled, "logged_in"),
        ("again, as a duplicate delivery: the token is fresh, no KillB call", scheduled, "noop"),
        (f"forced (events/{forced}): refresh with the refresh token", forced, "refreshed"),
    )
    for number, (what, event_file, expected) in enumerate(runs, start=4):
        step(number, f"Refresher, {what}")
        summary = refresher(event(event_file), LambdaContext("refresher", remaining_ms=90_000))
        detail(json.dumps(summary))
        if summary.get("action") != expected:
            raise DemoFailed(f"expected {expected!r}, the refresher returned {summary!r}")

    os.environ["ALLOWED_PRINCIPALS"] = f"arn:aws:iam::{ACCOUNT_ID}:role/payments-api"
    os.environ["REFRESHER_FUNCTION_NAME"] = ""
    broker = load_function("broker").lambda_handler
    with serve_broker(broker, caller_arn=CALLER_ARN, account_id=ACCOUNT_ID) as api:
        step(7, f"Broker served on {api.base_url} as API Gateway would, caller {CALLER_ARN}")
        headers = get_auth_headers(api.base_url, min_ttl=300)
        token = headers["Authorization"].removeprefix("Bearer ")
        shown = headers["Authorization"] if show_token else f"Bearer <{fingerprint(token)}>"
        detail(f"Authorization: {shown}")
        if "x-api-key" in headers:
            detail("x-api-key: " + (headers["x-api-key"] if show_token else "<set>"))

        step(8, f"Call KillB's GET {base_url}/api/v2/users with the broker's headers")
        with requests.Session() as session:
            session.auth = BrokerAuth(api.base_url)
            answer = session.get(f"{base_url}/api/v2/users", timeout=10)
        if answer.status_code != 200:
            raise DemoFailed(f"KillB answered {answer.status_code} to the broker's headers")
        detail(f"HTTP 200, {answer.headers.get('Content-Type', 'no content type')}")


def real_killb_from_env() -> dict[str, str] | None:
    """The real KillB the environment names, or None for the local sandbox. Never echoes the
    URL when refusing it: one with user info (http://me:pw@host) holds a password."""
    from killb_broker.config import secure_base_url  # noqa: PLC0415 - after the path is set

    base_url = os.environ.get("KILLB_BASE_URL", "").strip()
    email, password = os.environ.get("KILLB_EMAIL", ""), os.environ.get("KILLB_PASSWORD", "")
    if not base_url:
        given = [name for name in ("KILLB_EMAIL", "KILLB_PASSWORD") if os.environ.get(name)]
        if given:
            raise DemoFailed(
                f"{' and '.join(given)} set without KILLB_BASE_URL: set KILLB_BASE_URL to run "
                "against a real KillB, or unset them to run against the local sandbox"
            )
        return None
    try:
        base_url = secure_base_url(base_url)
    except ValueError as problem:
        raise DemoFailed(f"KILLB_BASE_URL {problem}") from None
    if not email or not password:
        raise DemoFailed("KILLB_BASE_URL is set: KILLB_EMAIL and KILLB_PASSWORD must be too")
    credentials = {"base_url": base_url, "email": email, "password": password}
    if os.environ.get("KILLB_API_KEY"):
        credentials["apiKey"] = os.environ["KILLB_API_KEY"]
    return credentials


def on_signal(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make demo",
        description="Run the whole path on this machine: a local Secrets Manager, the local KillB "
        "sandbox, the refresher's events, the broker over HTTP and the caller client, then stop "
        "everything. No AWS account, no Docker.",
        epilog="Against a real KillB instead of the sandbox: set KILLB_BASE_URL (https://), "
        "KILLB_EMAIL, KILLB_PASSWORD and, if the account has one, KILLB_API_KEY. "
        "DEMO_LOG_LEVEL=INFO shows the functions' own log lines.",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    use_local_packages()
    from killb_broker.errors import ConfigurationError  # noqa: PLC0415 - after the path is set

    try:
        run(real_killb_from_env())
    except KeyboardInterrupt:
        print("demo interrupted: everything it started is stopped", file=sys.stderr)
        return 130
    except (DemoFailed, ConfigurationError) as failure:
        print(f"demo FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"demo OK in {time.monotonic() - started:.1f} s: everything it started is stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
