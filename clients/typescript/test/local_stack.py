"""The whole broker on loopback for the TypeScript client's tests and benchmark.

Secrets Manager is moto's (in this process), KillB is the local sandbox, the refresher and the
broker are functions/*/app.py loaded as a cold start would, and the broker is served over HTTP by
local/broker_server.py as API Gateway would serve it. The broker's invoke of the refresher runs
the refresher handler in this process, so a forced refresh really asks the sandbox.

Prints one JSON line on stdout, {"brokerUrl", "killbUrl"}, then answers one JSON line per
command read from stdin (the `commands` below) and stops when stdin closes. Everything the
functions log goes to stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[3]
ACCOUNT_ID = "123456789012"
ALLOWED_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/payments-api"
CALLER_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/payments-api/node-client"
OTHER_CALLER_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/reporting/node-client"
REFRESHER_NAME = "killb-local-refresher"
SECRET_NAMES = {
    "CREDENTIALS_SECRET_ID": "killb-node/credentials",
    "SESSION_SECRET_ID": "killb-node/session",
    "ACCESS_TOKEN_SECRET_ID": "killb-node/access-token",
}
EMAIL = "ops@example.test"
PASSWORD = "pw-NodeClient-5e1b7a"  # noqa: S105 - the local sandbox's fake account
API_KEY = "ak-NodeClient-90c4f2"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--caller", choices=("allowed", "other"), default="allowed", help="the IAM caller"
    )
    parser.add_argument(
        "--no-refresher", action="store_true", help="REFRESHER_FUNCTION_NAME left empty"
    )
    parser.add_argument(
        "--token-lifetime-ms", type=int, default=3_600_000, help="the sandbox's token lifetime"
    )
    return parser.parse_args()


class InProcessLambda:
    """A boto3 lambda client's invoke, answered by running the refresher handler here."""

    def __init__(self, handler: Handler, context_for: Callable[[], Any]) -> None:
        self.handler = handler
        self.context_for = context_for
        self.payloads: list[dict[str, Any]] = []

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:  # noqa: N803
        payload = json.loads(Payload)
        self.payloads.append(payload)
        summary = self.handler(payload, self.context_for())
        body = json.dumps(summary).encode()
        return {"StatusCode": 200, "Payload": io.BytesIO(body)}


class CountingHandler:
    """The broker's handler, with the query of every request it was given recorded."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.queries: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event.get("path") == "/v1/auth-headers":
            with self._lock:
                self.queries.append(dict(event.get("queryStringParameters") or {}))
        return self.handler(event, context)


def main() -> int:
    args = parse_args()
    # The protocol owns stdout; the functions' JSON logs (Powertools writes to stdout) go to stderr.
    protocol: IO[str] = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    sys.path[:0] = [str(ROOT / "layers" / "shared"), str(ROOT / "local")]
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETSMANAGER"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto accepts any key
        AWS_SESSION_TOKEN="testing",  # noqa: S106
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        POWERTOOLS_SERVICE_NAME="killb-credential-broker",
        POWERTOOLS_METRICS_NAMESPACE="KillBCredentialBroker",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL=os.environ.get("LOCAL_STACK_LOG_LEVEL", "WARNING"),
    )

    import boto3  # noqa: PLC0415 - after the environment is set
    from broker_server import serve_broker  # noqa: PLC0415
    from lambda_runtime import LambdaContext, load_function  # noqa: PLC0415
    from moto import mock_aws  # noqa: PLC0415

    from killb_sandbox.server import Account, KillBSandbox  # noqa: PLC0415

    account = Account(password=PASSWORD, api_key=API_KEY)
    with (
        mock_aws(),
        KillBSandbox({EMAIL: account}, token_lifetime_ms=args.token_lifetime_ms) as sandbox,
    ):
        secrets = boto3.client("secretsmanager")
        credentials = {"email": EMAIL, "password": PASSWORD, "apiKey": API_KEY}
        values = {
            "CREDENTIALS_SECRET_ID": json.dumps(credentials),
            "SESSION_SECRET_ID": "{}",
            "ACCESS_TOKEN_SECRET_ID": "{}",
        }
        for variable, name in SECRET_NAMES.items():
            secrets.create_secret(Name=name, SecretString=values[variable])
            os.environ[variable] = name
        os.environ["KILLB_BASE_URL"] = sandbox.base_url
        refresher = load_function("refresher").lambda_handler

        def context() -> Any:
            return LambdaContext(REFRESHER_NAME, remaining_ms=90_000)

        scheduled = json.loads((ROOT / "events" / "refresher-scheduled.json").read_text())
        first_run = refresher(scheduled, context())
        if first_run.get("action") != "logged_in":
            raise SystemExit(f"the refresher did not log in: {first_run}")

        os.environ["ALLOWED_PRINCIPALS"] = ALLOWED_ROLE
        os.environ["REFRESHER_FUNCTION_NAME"] = "" if args.no_refresher else REFRESHER_NAME
        broker_app = load_function("broker")
        lambda_client = InProcessLambda(refresher, context)
        token_source = broker_app.broker.token_source
        if token_source.refresher is not None:
            token_source.refresher.client = lambda_client
        broker = CountingHandler(broker_app.lambda_handler)
        caller = CALLER_ARN if args.caller == "allowed" else OTHER_CALLER_ARN
        with serve_broker(broker, caller_arn=caller, account_id=ACCOUNT_ID) as api:
            reply(protocol, {"brokerUrl": api.base_url, "killbUrl": sandbox.base_url})
            commands: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
                # What the broker was asked for: one entry per GET /v1/auth-headers.
                "queries": lambda _: {"queries": broker.queries},
                # Every access token KillB issued, in order.
                "access-tokens": lambda _: {"tokens": sandbox.issued_access_tokens()},
                # KillB refuses this access token from now on, as after an early revocation.
                "revoke": lambda command: revoke(sandbox, command["token"]),
                # The refresher's runs the broker caused, and KillB's count of one endpoint.
                "refresher-invokes": lambda _: {"payloads": lambda_client.payloads},
                "killb-count": lambda command: {"count": sandbox.count(command["endpoint"])},
            }
            for line in sys.stdin:
                command = json.loads(line)
                reply(protocol, commands[command["command"]](command))
    return 0


def revoke(sandbox: Any, token: str) -> dict[str, Any]:
    sandbox.revoke(token)
    return {"revoked": True}


def reply(protocol: IO[str], answer: dict[str, Any]) -> None:
    protocol.write(json.dumps(answer) + "\n")
    protocol.flush()


if __name__ == "__main__":
    sys.exit(main())
