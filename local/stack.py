"""`make local` (`python local/stack.py`): the stack on this machine, kept up until Ctrl-C.

The local stack (local/local_stack.py) on the ports local/sam-env.json names: a local Secrets
Manager (moto's server), the KillB sandbox, the stack's three secrets with the sandbox's
credentials, the refresher behind a local Lambda endpoint, run on its schedule, and the broker
behind a local API Gateway that checks SigV4 signatures. The broker reaches the refresher through
the Lambda endpoint, so forced refreshes and `rejected` reports work as deployed. The functions'
own log lines go to a file; the terminal gets one line per scheduled run and, last, what to try.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, TextIO
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
ENV_VARS_FILE = ROOT / "local" / "sam-env.json"
IMPORT_PATHS = [str(ROOT / path) for path in ("layers/shared", "local", "clients/python")]
DEFAULT_LOG_FILE = Path(tempfile.gettempdir()) / "killb-local.log"


class StackError(Exception):
    """A setting the stack cannot use; the message says which."""


def sam_env_vars() -> dict[str, dict[str, str]]:
    loaded: dict[str, dict[str, str]] = json.loads(ENV_VARS_FILE.read_text())
    return loaded


def port_of(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise StackError(f"{ENV_VARS_FILE.name}: {url} names no port")
    return port


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make local",
        description="Start a local Secrets Manager, the KillB sandbox, the refresher (on its "
        "schedule, behind a local Lambda endpoint) and the broker (behind a local API Gateway "
        "that checks SigV4), print what to try, and keep them up until Ctrl-C.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="where the Secrets Manager and the sandbox listen (default: %(default)s). For "
        "`sam local` on Linux, the Docker bridge's address (ip -4 addr show docker0), which "
        "containers reach as host.docker.internal; Docker Desktop reaches 127.0.0.1 itself",
    )
    parser.add_argument(
        "--broker-port", type=int, default=3001, help="the broker's port (default: %(default)s)"
    )
    parser.add_argument(
        "--lambda-port",
        type=int,
        default=3002,
        help="the local Lambda endpoint's port (default: %(default)s)",
    )
    # local/sam-env.json's ports by default, so that its `sam local` commands reach this stack.
    refresher_env = sam_env_vars()["RefresherFunction"]
    parser.add_argument(
        "--secretsmanager-port",
        type=int,
        default=port_of(refresher_env["AWS_ENDPOINT_URL_SECRETSMANAGER"]),
        help="moto server's port (default: %(default)s, as local/sam-env.json says)",
    )
    parser.add_argument(
        "--killb-port",
        type=int,
        default=port_of(refresher_env["KILLB_BASE_URL"]),
        help="the KillB sandbox's port (default: %(default)s, as local/sam-env.json says)",
    )
    parser.add_argument(
        "--schedule-seconds",
        type=float,
        default=60,
        help="how often the refresher runs on its schedule (default: %(default)s)",
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        default=DEFAULT_LOG_FILE,
        help="where the functions' own log lines go (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.schedule_seconds <= 0:
        parser.error("--schedule-seconds must be more than 0")
    return args


def instructions(stack: Any, log_file: Path, host_is_bridge: bool) -> str:
    add_host = " --add-host host.docker.internal:host-gateway" if host_is_bridge else ""
    sam = f"--env-vars local/sam-env.json{add_host}"
    cli = "PYTHONPATH=clients/python .venv/bin/python -m killb_broker_client"
    caller = stack.caller_environment()
    exports = " ".join(
        f"{name}={caller[name]}"
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    )
    key, secret = caller["AWS_ACCESS_KEY_ID"], caller["AWS_SECRET_ACCESS_KEY"]
    return f"""
Local stack up: broker {stack.broker_url} (SigV4 checked: {key} / us-east-1 / execute-api),
Lambda endpoint {stack.lambda_url}, Secrets Manager {stack.secretsmanager_url},
KillB sandbox {stack.killb.base_url}. The functions log to {log_file}.

In another shell, from the repo root:

  export {exports}
  export AWS_ENDPOINT_URL_SECRETSMANAGER={stack.secretsmanager_url}
  export AWS_ENDPOINT_URL_LAMBDA={stack.lambda_url}
  export KILLB_BROKER_URL={stack.broker_url}

  # the caller's command line (or `killb-broker` after `pip install ./clients/python`)
  {cli} headers
  {cli} headers --rejected <fingerprint of the token in hand>   # another token
  # KillB called with the broker's headers
  eval "curl -s $({cli} headers --format curl) {stack.killb.base_url}/api/v2/users"
  # curl signs for itself; unsigned (plain curl) gets API Gateway's 403
  curl -s --aws-sigv4 aws:amz:us-east-1:execute-api --user {key}:{secret} \\
    {stack.broker_url}/v1/health
  # the refresher, invoked through the local Lambda endpoint
  aws lambda invoke --function-name {stack.refresher_name} \\
    --cli-binary-format raw-in-base64-out --payload file://events/refresher-force.json /dev/stdout

  # the real handlers in SAM's Lambda container (Docker; `make build` first)
  sam local invoke RefresherFunction -e events/refresher-force.json {sam}
  sam local invoke BrokerFunction -e events/broker-auth-headers.json {sam}
  LOCAL_CALLER_ARN=arn:aws:iam::123456789012:role/local-caller sam local start-api {sam}

Ctrl-C stops everything.
"""


def on_signal(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def scheduled_run_line(console: TextIO) -> Any:
    def show(summary: dict[str, Any]) -> None:
        at = time.strftime("%H:%M:%S")
        reason = summary.get("reason", "")
        print(f"[{at}] scheduled refresher run: {summary.get('action')} ({reason})", file=console)
        console.flush()

    return show


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except StackError as error:
        print(f"local stack FAILED: {error}", file=sys.stderr)
        return 1
    sys.path[:0] = [path for path in IMPORT_PATHS if path not in sys.path]
    from local_stack import SECRET_NAMES, StackFailed  # noqa: PLC0415 - after the path is set

    signal.signal(signal.SIGTERM, on_signal)
    refresher_env = sam_env_vars()["RefresherFunction"]
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    # moto takes any key; callers on this machine sign with these, and the API checks them.
    os.environ.update(AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local")  # noqa: S106
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "INFO")
    console = sys.stdout
    stack_name = refresher_env["CREDENTIALS_SECRET_ID"].split("/", 1)[0]
    if any(
        refresher_env[variable] != f"{stack_name}/{name}" for variable, name in SECRET_NAMES.items()
    ):
        print(f"local stack FAILED: {ENV_VARS_FILE.name} names other secrets", file=sys.stderr)
        return 1
    with args.log_file.open("a", encoding="utf-8") as log:
        # The functions' log lines and metrics (Powertools writes them to stdout) go to the file.
        sys.stdout = log
        try:
            return serve(args, stack_name, console)
        except KeyboardInterrupt:
            print("local stack stopped", file=sys.stderr)
            return 0
        except StackFailed as failure:
            print(f"local stack FAILED: {failure}", file=sys.stderr)
            return 1
        except OSError as error:
            print(f"local stack FAILED: {error.strerror or error}", file=sys.stderr)
            return 1
        finally:
            sys.stdout = console


def serve(args: argparse.Namespace, stack_name: str, console: TextIO) -> int:
    """Start the stack, print what to try, and keep it up until interrupted."""
    from local_stack import LocalStack  # noqa: PLC0415

    from killb_broker.config import is_loopback  # noqa: PLC0415 - after the path is set

    with LocalStack(
        host=args.host,
        secretsmanager_port=args.secretsmanager_port,
        killb_port=args.killb_port,
        lambda_port=args.lambda_port,
        broker_port=args.broker_port,
        stack_name=stack_name,
        schedule_seconds=args.schedule_seconds,
        on_scheduled_run=scheduled_run_line(console),
    ) as stack:
        first = stack.first_run
        print(
            f"Refresher, first scheduled run: {first.get('action')} ({first.get('reason')})",
            file=console,
        )
        if first.get("action") != "logged_in":
            print("local stack FAILED: the refresher did not log in", file=sys.stderr)
            return 1
        print(instructions(stack, args.log_file, not is_loopback(args.host)), file=console)
        console.flush()
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
