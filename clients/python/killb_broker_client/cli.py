"""`killb-broker`: the broker's current KillB auth headers and its health, for shells and scripts.

The env and curl formats are shell-quoted (a header value holds a space), so a shell must parse
them again: `eval "curl $(killb-broker headers --format curl) https://killb.app/api/v2/users"`.
Every failure is one JSON line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from killb_broker_client import proxy_cli
from killb_broker_client.auth import (
    MIN_TTL_LIMIT,
    URL_VARIABLE,
    BrokerAuth,
    IssuedHeaders,
    check_fingerprint,
)
from killb_broker_client.errors import AwsCredentialsError, BrokerClientError, BrokerUnavailable
from killb_broker_client.signing import RegionNotFound

ENV_NAMES = {"Authorization": "KILLB_AUTHORIZATION", "x-api-key": "KILLB_API_KEY"}
# The shell variable of the broker's killbBaseUrl: where KillB is for the token printed.
BASE_URL_NAME = "KILLB_BASE_URL"
# health's exit status: 0 while a token can be had, NO_TOKEN when the broker holds none.
HEALTHY = frozenset({"ok", "refreshing"})
NO_TOKEN = 3

HEALTH_EPILOG = f"""\
exit status: 0 when the status is ok or refreshing (a token can be had now), {NO_TOKEN} when it
is expired or missing, 1 when the broker could not be asked or refused, 2 for a usage error."""
HEADERS_EPILOG = f"""\
formats: json prints the headers, {{"Authorization": "Bearer ...", "x-api-key": "..."}};
answer prints the broker's whole answer, {{"headers": {{...}}, "expiresAt": "...",
"killbBaseUrl": "..." or null}}; env prints one export line per header, and {BASE_URL_NAME}
when the broker names KillB's URL; curl prints -H arguments.

exit status: 0 with the headers on stdout; 1 when the broker could not be reached or refused,
or the AWS credentials to sign with cannot be had (one JSON line on stderr: message, errorCode,
status, retryAfter, url, profile as far as known); 2 for a usage error.

After KillB answered 401 to a token, pass its fingerprint so the broker hands out another:
  --rejected "$(printf %s "$TOKEN" | sha256sum | cut -c1-12)"
where TOKEN is the part of the Authorization header after "Bearer "."""


def min_ttl(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number of seconds") from None
    if not 0 <= seconds <= MIN_TTL_LIMIT:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MIN_TTL_LIMIT}")
    return seconds


def rejected_fingerprint(value: str) -> str:
    try:
        return check_fingerprint(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="killb-broker",
        description="Ask the KillB credential broker for auth headers, or for its health.",
    )
    commands = cli.add_subparsers(dest="command", required=True, metavar="COMMAND")
    broker = argparse.ArgumentParser(add_help=False)
    broker.add_argument(
        "--url",
        "--broker-url",
        "--api-url",
        dest="broker_urls",
        action="append",
        metavar="URL",
        help=(
            "the broker API's URL, stage included; repeat it (or separate URLs with commas) "
            "for several brokers, asked in that order "
            f"(default: ${URL_VARIABLE}, which may hold a comma-separated list)"
        ),
    )
    broker.add_argument(
        "--region",
        help="region to sign for, for every URL (default: the URL's, else $AWS_REGION)",
    )
    broker.add_argument(
        "--api-id",
        help="the broker API's id, for a VPC endpoint host (vpce-...vpce.amazonaws.com)",
    )
    headers = commands.add_parser(
        "headers",
        parents=[broker],
        help="print the current KillB auth headers",
        description="Print the KillB auth headers the broker issues now.",
        epilog=HEADERS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    headers.add_argument(
        "--min-ttl",
        type=min_ttl,
        default=300,
        help=f"seconds the token must still be valid for, 0 to {MIN_TTL_LIMIT} (default: 300)",
    )
    headers.add_argument(
        "--format",
        choices=("json", "answer", "env", "curl"),
        default="json",
        help="json (default: the headers), answer (the broker's whole answer, killbBaseUrl "
        "included), env (export lines for eval), or curl",
    )
    headers.add_argument(
        "--rejected",
        type=rejected_fingerprint,
        metavar="FINGERPRINT",
        help="fingerprint of a token KillB refused (401): the broker hands out another",
    )
    commands.add_parser(
        "health",
        parents=[broker],
        help="print the broker's token status (ok, refreshing, expired, missing)",
        description="Print the broker's GET /v1/health: status, expiresAt, expiresIn. No token.",
        epilog=HEALTH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    proxy_cli.add_parser(commands)
    return cli


def env_name(header: str) -> str:
    """The shell variable for a header: a name a shell accepts, whatever the header is called."""
    return ENV_NAMES.get(header) or "KILLB_" + re.sub(r"[^A-Za-z0-9]", "_", header).upper()


def render(issued: IssuedHeaders, output_format: str) -> str:
    headers = issued.headers
    if output_format == "env":
        exports = [(env_name(name), value) for name, value in headers.items()]
        if issued.killb_base_url:
            exports.append((BASE_URL_NAME, issued.killb_base_url))
        return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in exports)
    if output_format == "curl":
        return " ".join(f"-H {shlex.quote(f'{name}: {value}')}" for name, value in headers.items())
    if output_format == "answer":
        return json.dumps(
            {
                "headers": headers,
                "expiresAt": issued.expires_at,
                "killbBaseUrl": issued.killb_base_url,
            }
        )
    return json.dumps(headers)


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    arguments = cli.parse_args(argv)
    if arguments.command == "proxy":
        return proxy_cli.run(arguments)
    return ask_broker(cli, arguments)


def ask_broker(cli: argparse.ArgumentParser, arguments: argparse.Namespace) -> int:
    """`headers` and `health`: one call to the broker, its answer on stdout."""
    urls = arguments.broker_urls or [os.environ.get(URL_VARIABLE, "")]
    if not any(url.strip(" ,") for url in urls):
        cli.error(f"--url or ${URL_VARIABLE} is required")
    shown_urls = ",".join(urls)
    try:
        auth = BrokerAuth(
            urls,
            min_ttl=getattr(arguments, "min_ttl", 300),
            region=arguments.region,
            api_id=arguments.api_id,
        )
    except RegionNotFound:
        return fail("no region for the broker URL: pass --region or set AWS_REGION")
    except BrokerClientError as error:  # the AWS config could not even be read for a region
        return fail_from(error, shown_urls)
    except ValueError as error:  # a URL that cannot be used
        return fail(str(error))
    try:
        if arguments.command == "health":
            health = auth.health()
            print(json.dumps(health.to_json()))
            return 0 if health.status in HEALTHY else NO_TOKEN
        issued = auth.issued(rejected=arguments.rejected)
    except BrokerClientError as error:
        return fail_from(error, shown_urls)
    print(render(issued, arguments.format))
    return 0


def fail_from(error: BrokerClientError, broker_urls: str) -> int:
    retry_after = error.retry_after if isinstance(error, BrokerUnavailable) else None
    profile = error.profile if isinstance(error, AwsCredentialsError) else None
    return fail(
        error.message,
        errorCode=error.error_code,
        status=error.status,
        retryAfter=retry_after,
        url=error.url or broker_urls,
        profile=profile,
    )


def fail(message: str, **known: Any) -> int:
    """The error as one JSON line on stderr, with only the fields that are known (never a
    token: the client's errors hold none)."""
    error = {
        "message": message,
        **{name: value for name, value in known.items() if value is not None},
    }
    print(json.dumps(error), file=sys.stderr)
    return 1
