"""`killb-broker proxy`: its arguments, its logging, and its start. The server itself (aiohttp)
is imported only when the command runs, so `killb-broker headers` starts as fast as before."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import sys
from typing import Any

from killb_broker_client.auth import URL_VARIABLE, BrokerAuth, require_safe_destination
from killb_broker_client.errors import BrokerClientError
from killb_broker_client.signing import RegionNotFound, is_loopback

logger = logging.getLogger("killb_broker_client.proxy")

DEFAULT_LISTEN = "127.0.0.1:8787"


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT, with an IPv6 host in brackets ([::1]:8787)."""
    host, separator, port_text = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not separator or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise argparse.ArgumentTypeError("must be HOST:PORT, e.g. 127.0.0.1:8787 or [::1]:8787")
    return host, int(port_text)


def add_parser(commands: Any) -> None:
    """The `proxy` subcommand of `killb-broker` (commands: argparse's subparsers)."""
    proxy = commands.add_parser(
        "proxy",
        help="serve KillB on a local port, with the broker's headers on every request",
        description=(
            "Forward METHOD /path?query to {killbBaseUrl}/path?query with the broker's current "
            "KillB headers (replacing any Authorization, x-api-key or Cookie), and stream the "
            "answer back. GET /_broker/health answers the broker's /v1/health."
        ),
    )
    proxy.add_argument(
        "--listen",
        type=parse_listen,
        metavar="HOST:PORT",
        help=f"where to listen (default: {DEFAULT_LISTEN}); a host beyond loopback warns",
    )
    proxy.add_argument(
        "--broker-url",
        "--url",
        "--api-url",
        dest="broker_url",
        action="extend",
        nargs="+",
        metavar="URL",
        help="the broker API's URL, stage included; several for failover, in order "
        "(default: $KILLB_BROKER_URL, comma-separated)",
    )
    proxy.add_argument(
        "--region", help="region to sign for, when the URL names none (default: $AWS_REGION)"
    )
    proxy.add_argument(
        "--api-id",
        help="the API's id, for a broker URL that is a VPC endpoint's own host (no API id in it)",
    )
    proxy.add_argument(
        "--killb-url",
        metavar="URL",
        help="KillB's root when the broker's answer names no killbBaseUrl (an older broker)",
    )
    proxy.add_argument(
        "--min-ttl", type=int, default=300, help="seconds a token must still last (default: 300)"
    )
    proxy.add_argument("--connect-timeout", type=float, default=5.0, metavar="SECONDS")
    proxy.add_argument("--read-timeout", type=float, default=30.0, metavar="SECONDS")
    proxy.add_argument(
        "--max-connections", type=int, default=100, help="open connections to KillB at most"
    )
    proxy.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, how long requests in flight may take to finish (default: 30)",
    )
    proxy.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default="INFO")


def configure_logging(level: str) -> None:
    """One line per record on stderr. The libraries that could print a signed request or a
    header (botocore's signer, urllib3, aiohttp) stay at INFO or above whatever the level."""
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    for name in ("botocore", "urllib3", "aiohttp", "asyncio"):
        library = logging.getLogger(name)
        library.setLevel(max(logging.getLevelName(level), logging.INFO))


class UsageError(Exception):
    """An option the proxy cannot start with; the message says which and why."""


def run(arguments: argparse.Namespace) -> int:
    """`killb-broker proxy`: serve until SIGTERM or SIGINT. Exit status 0, or 2 for a usage
    error (one JSON line on stderr)."""
    try:
        auth, (host, port) = broker_auth(arguments), listen_address(arguments)
    except UsageError as error:
        return usage_error(str(error))
    from killb_broker_client.proxy import (  # noqa: PLC0415
        KillBProxy,
        ProxySettings,
        new_event_loop,
        serve,
    )

    configure_logging(arguments.log_level)
    if not is_loopback(host):
        logger.warning(
            "listening on %s, beyond loopback: anything that reaches this port calls KillB "
            "as this service",
            host,
        )
    settings = ProxySettings(
        connect_timeout=arguments.connect_timeout,
        read_timeout=arguments.read_timeout,
        max_connections=arguments.max_connections,
        shutdown_timeout=arguments.shutdown_timeout,
        killb_url=arguments.killb_url,
    )
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(KillBProxy(auth, settings), host, port))
    return 0


def broker_auth(arguments: argparse.Namespace) -> BrokerAuth:
    """The broker client of --broker-url (or $KILLB_BROKER_URL), --region, --api-id, --min-ttl."""
    urls = arguments.broker_url or [os.environ.get(URL_VARIABLE, "")]
    if not any(url.strip(" ,") for url in urls):
        raise UsageError(f"--broker-url or ${URL_VARIABLE} is required")
    if arguments.killb_url:
        try:
            require_safe_destination(arguments.killb_url)
        except BrokerClientError as error:
            raise UsageError(f"--killb-url: {error.message}") from error
    try:
        return BrokerAuth(
            urls, min_ttl=arguments.min_ttl, region=arguments.region, api_id=arguments.api_id
        )
    except RegionNotFound as error:
        raise UsageError("no region for the broker URL: pass --region or set AWS_REGION") from error
    except BrokerClientError as error:  # the AWS config could not even be read for a region
        raise UsageError(error.message) from error
    except ValueError as error:
        raise UsageError(str(error)) from error


def listen_address(arguments: argparse.Namespace) -> tuple[str, int]:
    host, port = arguments.listen or parse_listen(DEFAULT_LISTEN)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host.lower() != "localhost":
            raise UsageError("--listen needs an IP address (or localhost)") from None
    return host, port


def usage_error(message: str) -> int:
    print(json.dumps({"message": message}), file=sys.stderr)
    return 2
