"""The whole broker on loopback for the TypeScript client's tests and benchmark: the repository's
local stack (local/local_stack.py): moto's server, the KillB sandbox, the refresher behind the
local Lambda endpoint, and the broker behind the local API Gateway, which checks the client's SigV4
signature against the AWS credentials this process is given (the tests' fake ones).

Prints one JSON line on stdout, {"brokerUrl", "killbUrl"}, then answers one JSON line per
command read from stdin (the `commands` below) and stops when stdin closes. Everything the
functions log goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[3]
EMAIL = "ops@example.test"
PASSWORD = "pw-NodeClient-5e1b7a"  # noqa: S105 - the local sandbox's fake account
API_KEY = "ak-NodeClient-90c4f2"


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


def main() -> int:
    args = parse_args()
    # The protocol owns stdout; the functions' JSON logs (Powertools writes to stdout) go to stderr.
    protocol: IO[str] = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    sys.path[:0] = [str(ROOT / "layers" / "shared"), str(ROOT / "local")]
    os.environ.update(
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL=os.environ.get("LOCAL_STACK_LOG_LEVEL", "WARNING"),
    )

    from lambda_runtime import ACCOUNT_ID  # noqa: PLC0415 - after the path is set
    from local_stack import LocalStack  # noqa: PLC0415

    from killb_sandbox.server import Account  # noqa: PLC0415

    role = "payments-api" if args.caller == "allowed" else "reporting"
    with LocalStack(
        sandbox_accounts={EMAIL: Account(password=PASSWORD, api_key=API_KEY)},
        token_lifetime_ms=args.token_lifetime_ms,
        caller_arn=f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}/node-client",
        allowed_principals=f"arn:aws:iam::{ACCOUNT_ID}:role/payments-api",
        invoke_refresher=not args.no_refresher,
    ) as stack:
        if stack.first_run.get("action") != "logged_in":
            raise SystemExit(f"the refresher did not log in: {stack.first_run}")
        sandbox = stack.sandbox
        if sandbox is None:  # pragma: no cover - LocalStack starts one when given no KillB
            raise SystemExit("the local stack started no KillB sandbox")
        reply(protocol, {"brokerUrl": stack.broker_url, "killbUrl": sandbox.base_url})

        def queries(_: dict[str, Any]) -> dict[str, Any]:
            asked = [query for _, path, query in stack.api.access_log if path == "/v1/auth-headers"]
            return {"queries": [{name: values[-1] for name, values in q.items()} for q in asked]}

        def revoke(command: dict[str, Any]) -> dict[str, Any]:
            sandbox.revoke(command["token"])
            return {"revoked": True}

        commands: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            # What the broker was asked for: one entry per GET /v1/auth-headers.
            "queries": queries,
            # Every access token KillB issued, in order.
            "access-tokens": lambda _: {"tokens": sandbox.issued_access_tokens()},
            # KillB refuses this access token from now on, as after an early revocation.
            "revoke": revoke,
            # The refresher's runs the broker caused (the stack's own first run left out).
            "refresher-invokes": lambda _: {"payloads": stack.refresher_payloads()[1:]},
            # KillB's count of one endpoint.
            "killb-count": lambda command: {"count": sandbox.count(command["endpoint"])},
        }
        for line in sys.stdin:
            command = json.loads(line)
            reply(protocol, commands[command["command"]](command))
    return 0


def reply(protocol: IO[str], answer: dict[str, Any]) -> None:
    protocol.write(json.dumps(answer) + "\n")
    protocol.flush()


if __name__ == "__main__":
    sys.exit(main())
