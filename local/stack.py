"""`make local` (`python local/stack.py`): the stack on this machine, kept up until Ctrl-C.

A local Secrets Manager (moto's server) and the KillB sandbox on the ports local/sam-env.json
names, the stack's three secrets with the sandbox's credentials, one refresher run, and the
broker served over HTTP as API Gateway would. It prints what to try against it: the caller's
command line, curl, and `sam local` with local/sam-env.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from urllib.parse import urlsplit

from demo import (
    ACCOUNT_ID,
    ROOT,
    DemoFailed,
    background,
    event,
    on_signal,
    quiet_logs,
    use_local_packages,
)

ENV_VARS_FILE = ROOT / "local" / "sam-env.json"
CALLER_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/local-caller/local"
SAM_CALLER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/local-caller"


def sam_env_vars() -> dict[str, dict[str, str]]:
    loaded: dict[str, dict[str, str]] = json.loads(ENV_VARS_FILE.read_text())
    return loaded


def port_of(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise DemoFailed(f"{ENV_VARS_FILE.name}: {url} names no port")
    return port


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make local",
        description="Start a local Secrets Manager, the KillB sandbox, one refresher run and the "
        "broker over HTTP, print what to try, and keep them up until Ctrl-C.",
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
    return parser.parse_args(argv)


def instructions(broker_url: str, moto_url: str, killb_url: str, host_is_bridge: bool) -> str:
    add_host = " --add-host host.docker.internal:host-gateway" if host_is_bridge else ""
    sam = f"--env-vars local/sam-env.json{add_host}"
    cli = "PYTHONPATH=clients/python .venv/bin/python -m killb_broker_client"
    return f"""
Local stack up. In another shell, from the repo root:

  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1
  export AWS_ENDPOINT_URL_SECRETSMANAGER={moto_url}
  export KILLB_BROKER_URL={broker_url}

  # the caller's command line (or `killb-broker` after `pip install ./clients/python`)
  {cli} headers
  {cli} headers --format env
  # KillB called with the broker's headers
  eval "curl -s $({cli} headers --format curl) {killb_url}/api/v2/users"
  # unsigned, as plain curl is: API Gateway (and this stand-in) refuse it, 403
  curl -s {broker_url}/v1/health

  # the real handlers in SAM's Lambda container (Docker; `sam build` first)
  sam local invoke RefresherFunction -e events/refresher-force.json {sam}
  sam local invoke BrokerFunction -e events/broker-auth-headers.json {sam}
  LOCAL_CALLER_ARN={SAM_CALLER_ARN} sam local start-api {sam}
  curl -s http://127.0.0.1:3000/v1/auth-headers

Ctrl-C stops everything.
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    use_local_packages()
    from broker_server import serve_broker  # noqa: PLC0415 - after the path is set
    from lambda_runtime import LambdaContext, load_function  # noqa: PLC0415

    from killb_broker.aws import secretsmanager_client  # noqa: PLC0415
    from killb_broker.config import is_loopback  # noqa: PLC0415
    from killb_sandbox.accounts import (  # noqa: PLC0415
        SANDBOX_API_KEY,
        SANDBOX_EMAIL,
        SANDBOX_PASSWORD,
    )

    signal.signal(signal.SIGTERM, on_signal)
    refresher_env = sam_env_vars()["RefresherFunction"]
    moto_port, killb_port = args.secretsmanager_port, args.killb_port
    host = args.host
    moto_url, killb_url = f"http://{host}:{moto_port}", f"http://{host}:{killb_port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",  # noqa: S106 - moto accepts any key
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        POWERTOOLS_SERVICE_NAME="killb-local",
        AWS_ENDPOINT_URL_SECRETSMANAGER=moto_url,
    )
    os.environ.pop("AWS_PROFILE", None)
    quiet_logs()
    beyond_loopback = [] if is_loopback(host) else ["--allow-non-loopback"]
    moto_argv = [sys.executable, "-m", "moto.server", "-H", host, "-p", str(moto_port)]
    sandbox_argv = [
        sys.executable, "-m", "killb_sandbox", "--host", host, *beyond_loopback,
        "--port", str(killb_port), "--email", SANDBOX_EMAIL, "--password", SANDBOX_PASSWORD,
        "--api-key", SANDBOX_API_KEY,
    ]  # fmt: skip
    try:
        with (
            background("moto server", moto_argv, moto_port, host),
            background("KillB sandbox", sandbox_argv, killb_port, host),
        ):
            print(f"Secrets Manager (moto server) on {moto_url}", flush=True)
            print(f"KillB sandbox on {killb_url}, account {SANDBOX_EMAIL}", flush=True)
            secrets = secretsmanager_client()
            credentials = {
                "email": SANDBOX_EMAIL,
                "password": SANDBOX_PASSWORD,
                "apiKey": SANDBOX_API_KEY,
            }
            initial = {"CREDENTIALS_SECRET_ID": json.dumps(credentials)}
            for variable in (
                "CREDENTIALS_SECRET_ID",
                "SESSION_SECRET_ID",
                "ACCESS_TOKEN_SECRET_ID",
            ):
                name = refresher_env[variable]
                secrets.create_secret(Name=name, SecretString=initial.get(variable, "{}"))
                os.environ[variable] = name
            os.environ["KILLB_BASE_URL"] = killb_url
            refresher = load_function("refresher").lambda_handler
            context = LambdaContext("refresher", remaining_ms=90_000)
            summary = refresher(event("refresher-scheduled.json"), context)
            print(f"Refresher run once: {json.dumps(summary)}", flush=True)
            if summary.get("action") != "logged_in":
                raise DemoFailed(f"the refresher did not log in: {summary!r}")
            os.environ["REFRESHER_FUNCTION_NAME"] = ""
            os.environ["ALLOWED_PRINCIPALS"] = ""
            broker = load_function("broker").lambda_handler
            with serve_broker(
                broker, port=args.broker_port, caller_arn=CALLER_ARN, account_id=ACCOUNT_ID
            ) as api:
                print(f"Broker on {api.base_url}, signed requests as {CALLER_ARN}", flush=True)
                print(instructions(api.base_url, moto_url, killb_url, not is_loopback(host)))
                threading.Event().wait()
    except KeyboardInterrupt:
        print("local stack stopped", file=sys.stderr)
        return 0
    except DemoFailed as failure:
        print(f"local stack FAILED: {failure}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"local stack FAILED: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
