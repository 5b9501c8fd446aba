"""`make demo` (`python local/demo.py`): the whole path on this machine, with no AWS account and no
Docker.

The local stack (local/local_stack.py) starts on free loopback ports: a local Secrets Manager
(moto's server), the local KillB sandbox, the stack's three secrets with the credentials put, the
refresher behind a local Lambda endpoint (its first scheduled run logs in), and the broker behind
a local API Gateway that checks each caller's SigV4 signature. The demo then runs the refresher
with the files in events/, and the caller client gets headers from the broker and calls KillB's
`GET /api/v2/users`. Given KILLB_BASE_URL, KILLB_EMAIL and KILLB_PASSWORD (and KILLB_API_KEY if
the account has one) in the environment, it runs against that KillB instead of the sandbox.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
IMPORT_PATHS = [
    str(ROOT / "layers" / "shared"),
    str(ROOT / "local"),
    str(ROOT / "clients" / "python"),
]

if TYPE_CHECKING:
    from local_stack import KillBAccount, LocalStack


class DemoFailed(Exception):
    """A step did not do what it should; the message says which."""


def step(number: int, text: str) -> None:
    print(f"[{number}] {text}", flush=True)


def detail(text: str) -> None:
    print(f"    {text}", flush=True)


def use_local_packages() -> None:
    """The layer's, local/'s and the client's packages, for this process."""
    sys.path[:0] = [path for path in IMPORT_PATHS if path not in sys.path]


def quiet_logs() -> None:
    """The functions log JSON for CloudWatch; the demo shows its own lines instead."""
    os.environ["POWERTOOLS_LOG_LEVEL"] = os.environ.get("DEMO_LOG_LEVEL", "WARNING")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"


def run(real_killb: KillBAccount | None) -> None:
    from lambda_runtime import ACCOUNT_ID  # noqa: PLC0415 - after the path is set
    from local_stack import LocalStack  # noqa: PLC0415

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo")  # noqa: S106
    quiet_logs()
    with LocalStack(
        stack_name="killb-demo",
        killb=real_killb,
        caller_arn=f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/payments-api/demo",
        allowed_principals=f"arn:aws:iam::{ACCOUNT_ID}:role/payments-api",
    ) as stack:
        step(1, f"Local Secrets Manager (moto server) on {stack.secretsmanager_url}")
        where = "Real KillB (from KILLB_BASE_URL)" if real_killb else "Local KillB sandbox"
        step(2, f"{where} at {stack.killb.base_url}")
        step(3, "The stack's three secrets, the credentials put as an operator would")
        detail(", ".join(stack.secret_ids.values()))
        run_flow(stack, show_token=real_killb is None)


def run_flow(stack: LocalStack, *, show_token: bool) -> None:
    import requests  # noqa: PLC0415
    from local_stack import load_event  # noqa: PLC0415

    from killb_broker.tokens import fingerprint  # noqa: PLC0415
    from killb_broker_client import BrokerAuth, get_auth_headers  # noqa: PLC0415

    scheduled, forced = "refresher-scheduled.json", "refresher-force.json"
    step(4, f"Refresher, scheduled run (events/{scheduled}) through the Lambda endpoint")
    detail(f"no session yet: {json.dumps(stack.first_run)}")
    expect(stack.first_run, "logged_in")
    runs = (
        ("again, as a duplicate delivery: the token is fresh, no KillB call", scheduled, "noop"),
        (f"forced (events/{forced}): refresh with the refresh token", forced, "refreshed"),
    )
    for number, (what, event_file, expected) in enumerate(runs, start=5):
        step(number, f"Refresher, {what}")
        summary = stack.invoke_refresher(load_event(event_file))
        detail(json.dumps(summary))
        expect(summary, expected)

    step(7, f"Broker on {stack.broker_url} behind a local API Gateway that checks SigV4")
    detail(f"caller {stack.caller_arn}")
    headers = get_auth_headers(stack.broker_url, min_ttl=300)
    token = headers["Authorization"].removeprefix("Bearer ")
    shown = headers["Authorization"] if show_token else f"Bearer <{fingerprint(token)}>"
    detail(f"Authorization: {shown}")
    if "x-api-key" in headers:
        detail("x-api-key: " + (headers["x-api-key"] if show_token else "<set>"))

    base_url = stack.killb.base_url
    step(8, f"Call KillB's GET {base_url}/api/v2/users with the broker's headers")
    with requests.Session() as session:
        session.auth = BrokerAuth(stack.broker_url)
        answer = session.get(f"{base_url}/api/v2/users", timeout=10)
    if answer.status_code != 200:
        raise DemoFailed(f"KillB answered {answer.status_code} to the broker's headers")
    detail(f"HTTP 200, {answer.headers.get('Content-Type', 'no content type')}")


def expect(summary: dict[str, object], action: str) -> None:
    if summary.get("action") != action:
        raise DemoFailed(f"expected {action!r}, the refresher returned {summary!r}")


def real_killb_from_env() -> KillBAccount | None:
    """The real KillB the environment names, or None for the local sandbox. Never echoes the
    URL when refusing it: one with user info (http://me:pw@host) holds a password."""
    from local_stack import KillBAccount  # noqa: PLC0415 - after the path is set

    from killb_broker.config import secure_base_url  # noqa: PLC0415

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
    return KillBAccount(base_url, email, password, os.environ.get("KILLB_API_KEY") or None)


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
    from local_stack import StackFailed  # noqa: PLC0415 - after the path is set

    from killb_broker.errors import ConfigurationError  # noqa: PLC0415

    try:
        run(real_killb_from_env())
    except KeyboardInterrupt:
        print("demo interrupted: everything it started is stopped", file=sys.stderr)
        return 130
    except (DemoFailed, ConfigurationError, StackFailed) as failure:
        print(f"demo FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"demo OK in {time.monotonic() - started:.1f} s: everything it started is stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
