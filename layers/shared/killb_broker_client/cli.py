"""`killb-broker headers`: the broker's current KillB auth headers, for shells and scripts.

The env and curl formats are shell-quoted (a header value holds a space), so a shell must parse
them again: `eval "curl $(killb-broker headers --format curl) https://killb.app/api/v2/users"`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence

from killb_broker_client.auth import MIN_TTL_LIMIT, BrokerAuth
from killb_broker_client.errors import BrokerClientError

URL_VARIABLE = "KILLB_BROKER_URL"
ENV_NAMES = {"Authorization": "KILLB_AUTHORIZATION", "x-api-key": "KILLB_API_KEY"}


def min_ttl(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number of seconds") from None
    if not 0 <= seconds <= MIN_TTL_LIMIT:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MIN_TTL_LIMIT}")
    return seconds


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="killb-broker", description="Ask the KillB credential broker for auth headers."
    )
    commands = cli.add_subparsers(dest="command", required=True)
    headers = commands.add_parser("headers", help="print the current KillB auth headers")
    headers.add_argument(
        "--api-url",
        default=os.environ.get(URL_VARIABLE),
        help=f"the broker API's URL, stage included (default: ${URL_VARIABLE})",
    )
    headers.add_argument(
        "--min-ttl",
        type=min_ttl,
        default=300,
        help="seconds the token must still be valid for (default: 300)",
    )
    headers.add_argument("--region", help="region to sign for, when the URL names none")
    headers.add_argument("--format", choices=("json", "env", "curl"), default="json")
    return cli


def render(headers: dict[str, str], output_format: str) -> str:
    if output_format == "env":
        return "\n".join(
            f"{ENV_NAMES.get(name, name)}={shlex.quote(value)}" for name, value in headers.items()
        )
    if output_format == "curl":
        return " ".join(f"-H {shlex.quote(f'{name}: {value}')}" for name, value in headers.items())
    return json.dumps(headers)


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    arguments = cli.parse_args(argv)
    if not arguments.api_url:
        cli.error(f"--api-url or ${URL_VARIABLE} is required")
    try:
        auth = BrokerAuth(arguments.api_url, min_ttl=arguments.min_ttl, region=arguments.region)
        headers = auth.headers()
    except BrokerClientError as error:
        return fail(error.message, error_code=error.error_code, status=error.status)
    except ValueError as error:  # a URL or region that cannot be used
        return fail(str(error))
    print(render(headers, arguments.format))
    return 0


def fail(message: str, *, error_code: str | None = None, status: int | None = None) -> int:
    """The error as one JSON line on stderr (never a token: the broker's errors hold none)."""
    error = {"errorCode": error_code, "status": status, "message": message}
    print(json.dumps(error), file=sys.stderr)
    return 1
