"""A local stand-in for API Gateway: serves a broker handler over HTTP on a loopback port.

Each HTTP request becomes a REST API proxy event (version 1.0) and the handler's answer is written
back. With credentials (as `make local`, the demo and the tests start it) every request must be
SigV4-signed with them for service execute-api and the server's region, as API Gateway's AWS_IAM
authorization demands (local/sigv4_check.py); one that is not gets API Gateway's 403 BROKER.0002
and never reaches the handler. Run as `python local/broker_server.py --help` to serve
functions/broker/app.py by hand.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

if __name__ == "__main__":
    # Run as a script from a clone: the layer's packages are not on the path yet.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "shared"))

from botocore.credentials import ReadOnlyCredentials
from botocore.session import Session as BotocoreSession
from lambda_runtime import ACCOUNT_ID, REGION, LambdaContext, load_function
from served_in_thread import ServedInThread
from sigv4_check import SignatureRefused, SigV4Check

from killb_broker.config import is_loopback
from killb_broker.errors import ConfigurationError

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

STAGE = "local"
SIGV4_PREFIX = "AWS4-HMAC-SHA256 "
# What API Gateway answers when the integration itself fails (an exception in the handler).
GATEWAY_ERROR = b'{"message": "Internal server error"}'
# API Gateway's own 403s, as the template's gateway responses word them.
UNSIGNED = "Missing or unsigned request, or no such route"
BAD_SIGNATURE = "The request signature is not valid"
BROKER_FUNCTION_NAME = "local-broker"


def _gateway_refusal(message: str) -> bytes:
    body = {"errorCode": "BROKER.0002", "message": [message], "statusCode": "403"}
    return json.dumps(body).encode()


def environment_credentials() -> ReadOnlyCredentials:
    """The AWS credentials the environment holds (AWS_ACCESS_KEY_ID..., a profile), frozen: the
    ones callers on this machine sign with, so the local API checks signatures against them."""
    credentials = BotocoreSession().get_credentials()
    if credentials is None:
        raise ValueError(
            "no AWS credentials in the environment to check signatures against "
            "(set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    return credentials.get_frozen_credentials()


def _caller_id(caller_arn: str) -> str:
    """A plausible `identity.caller` for the ARN: the role id and session name, or a user id."""
    resource = caller_arn.split(":", 5)[-1]
    if resource.startswith("assumed-role/"):
        return f"AROALOCALBROKERCALLER:{resource.rsplit('/', 1)[-1]}"
    return "AIDALOCALBROKERCALLER"


def _access_key(authorization: str) -> str | None:
    """The access key id in a SigV4 Authorization header (Credential=KEY/date/region/...)."""
    for part in authorization.removeprefix(SIGV4_PREFIX).split(","):
        name, _, value = part.strip().partition("=")
        if name == "Credential":
            return value.split("/", 1)[0] or None
    return None


def _header(headers: dict[str, list[str]], wanted: str) -> str | None:
    for name, values in headers.items():
        if name.lower() == wanted.lower() and values:
            return values[-1]
    return None


def _identity(
    headers: dict[str, list[str]], source_ip: str, signed_by: str | None, account_id: str
) -> dict[str, Any]:
    """requestContext.identity as API Gateway fills it; all-null but sourceIp when unsigned."""
    authorization = _header(headers, "Authorization") or ""
    caller_id = _caller_id(signed_by) if signed_by else None
    return {
        "accountId": account_id if signed_by else None,
        "accessKey": _access_key(authorization) if signed_by else None,
        "caller": caller_id,
        "user": caller_id,
        "userArn": signed_by,
        "sourceIp": source_ip,
        "userAgent": _header(headers, "User-Agent"),
        "apiKey": None,
        "apiKeyId": None,
        "cognitoAuthenticationProvider": None,
        "cognitoAuthenticationType": None,
        "cognitoIdentityId": None,
        "cognitoIdentityPoolId": None,
        "principalOrgId": None,
    }


def _single(values: dict[str, list[str]]) -> dict[str, str] | None:
    """API Gateway's single-value view: the last value of each name, or None when empty."""
    return {name: items[-1] for name, items in values.items()} or None


class BrokerServer(ServedInThread):
    """A running local API: `.base_url` to call, `.stop()` (or `with`) to end it."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str,
        port: int,
        caller_arn: str | None,
        account_id: str,
        signatures: SigV4Check | None,
        function_name: str = BROKER_FUNCTION_NAME,
    ) -> None:
        if not is_loopback(host):
            raise ValueError("the local broker server listens on a loopback host only")
        if caller_arn is not None and signatures is None:
            raise ValueError("a caller ARN needs credentials to check the callers' signatures")
        self._handler = handler
        self._caller_arn = caller_arn
        self._account_id = account_id
        self._signatures = signatures
        self._function_name = function_name
        # Why each refused request was refused (never a signature or a key), oldest first.
        self.refusals: list[str] = []
        # Each request that reached the handler, as an access log has it: method, path, query.
        self.access_log: list[tuple[str, str, dict[str, list[str]]]] = []
        # A Lambda container handles one event at a time; so does this stand-in, which keeps
        # handlers that hold per-event state (Powertools' resolver does) honest.
        self._container = threading.Lock()
        super().__init__(host, port, self._request_handler_class(), name="local-broker-server")

    def __repr__(self) -> str:
        return f"BrokerServer(base_url={self.base_url!r})"

    def signer(
        self, method: str, target: str, pairs: list[tuple[str, str]], body: bytes
    ) -> str | None:
        """The caller ARN of a request whose signature holds (None without AWS_IAM); raises
        SignatureRefused, as API Gateway refuses it, when it does not."""
        if self._signatures is None:
            return None
        try:
            self._signatures.verify(method, target, pairs, body)
        except SignatureRefused as refused:
            self.refusals.append(str(refused))
            raise
        return self._caller_arn

    def event_for(
        self,
        method: str,
        target: str,
        headers: dict[str, list[str]],
        body: bytes,
        source_ip: str,
        *,
        signed_by: str | None = None,
    ) -> dict[str, Any]:
        """The REST API proxy event (v1.0) API Gateway would send for this HTTP request."""
        parts = urlsplit(target)
        path = parts.path or "/"
        query: dict[str, list[str]] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            query.setdefault(name, []).append(value)
        try:
            text, is_base64 = body.decode(), False
        except UnicodeDecodeError:
            text, is_base64 = base64.b64encode(body).decode(), True
        now = datetime.now(UTC)
        return {
            "resource": "/{proxy+}",  # a catch-all route, as `sam local` has one
            "path": path,
            "httpMethod": method,
            "headers": _single(headers),
            "multiValueHeaders": headers or None,
            "queryStringParameters": _single(query),
            "multiValueQueryStringParameters": query or None,
            "pathParameters": {"proxy": path.lstrip("/")},
            "stageVariables": None,
            "requestContext": {
                "resourceId": "local",
                "resourcePath": "/{proxy+}",
                "httpMethod": method,
                "extendedRequestId": uuid.uuid4().hex[:16],
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(time.time() * 1000),
                "path": f"/{STAGE}{path}",
                "accountId": self._account_id,
                "protocol": "HTTP/1.1",
                "stage": STAGE,
                "domainPrefix": "localhost",
                "domainName": "localhost",
                "requestId": str(uuid.uuid4()),
                "apiId": "local",
                "identity": _identity(headers, source_ip, signed_by, self._account_id),
            },
            "body": text or None,
            "isBase64Encoded": is_base64,
        }

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        query = event.get("multiValueQueryStringParameters") or {}
        self.access_log.append((event["httpMethod"], event["path"], query))
        with self._container:
            return self._handler(event, LambdaContext(self._function_name, remaining_ms=29_000))

    def _request_handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class ProxyRequestHandler(BaseHTTPRequestHandler):
            server_version = "LocalBroker/1"

            def _proxy(self) -> None:
                # API Gateway keeps the names as the client sent them.
                pairs = list(self.headers.items())
                headers: dict[str, list[str]] = {}
                for name, value in pairs:
                    headers.setdefault(name, []).append(value)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    signed_by = server.signer(self.command, self.path, pairs, body)
                except SignatureRefused as refused:
                    status, response_headers = 403, [*REFUSAL_HEADERS]
                    payload = _gateway_refusal(UNSIGNED if refused.missing else BAD_SIGNATURE)
                else:
                    status, response_headers, payload = self._answer(headers, body, signed_by)
                self.send_response(status)
                for name, value in response_headers:
                    if name.lower() not in {"content-length", "connection"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _answer(
                self, headers: dict[str, list[str]], body: bytes, signed_by: str | None
            ) -> tuple[int, list[tuple[str, str]], bytes]:
                event = server.event_for(
                    self.command,
                    self.path,
                    headers,
                    body,
                    self.client_address[0],
                    signed_by=signed_by,
                )
                try:
                    return _http_response(server.invoke(event))
                except Exception:  # a broken handler is API Gateway's 502
                    return 502, [("Content-Type", "application/json")], GATEWAY_ERROR

            # http.server dispatches on do_<METHOD>; every method goes to the handler.
            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _proxy  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the handler logs what matters, and the demo prints its own lines."""

        return ProxyRequestHandler


REFUSAL_HEADERS = (("Content-Type", "application/json"), ("Cache-Control", "no-store"))


def _http_response(response: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of a Lambda proxy response, as API Gateway writes them."""
    status = int(response["statusCode"])
    multi: dict[str, list[str]] = response.get("multiValueHeaders") or {}
    single: dict[str, str] = response.get("headers") or {}
    pairs = [(name, str(value)) for name, values in multi.items() for value in values]
    named = {name.lower() for name in multi}
    pairs += [(name, str(value)) for name, value in single.items() if name.lower() not in named]
    body = response.get("body") or ""
    payload = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    return status, pairs, payload


def serve_broker(
    handler: Handler,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    caller_arn: str | None,
    account_id: str,
    credentials: ReadOnlyCredentials | None = None,
    region: str = REGION,
    function_name: str = BROKER_FUNCTION_NAME,
) -> BrokerServer:
    """Serve `handler` as API Gateway would. Port 0 picks a free one.

    With `credentials` (AWS_IAM): a request SigV4-signed with them for execute-api in `region`
    reaches the handler as `caller_arn`; any other gets API Gateway's 403. Without (an API with
    no authorization, for fake servers): every request reaches the handler with no caller.
    """
    signatures = None if credentials is None else SigV4Check(credentials, region)
    return BrokerServer(
        handler,
        host=host,
        port=port,
        caller_arn=caller_arn,
        account_id=account_id,
        signatures=signatures,
        function_name=function_name,
    )


DEFAULT_CALLER_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/local-caller/local"
BROKER_SETTINGS = "ACCESS_TOKEN_SECRET_ID, REFRESHER_FUNCTION_NAME, ALLOWED_PRINCIPALS"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python local/broker_server.py",
        description="Serve the broker (functions/broker/app.py) over HTTP as API Gateway would, "
        f"until Ctrl-C. Its settings come from the environment, as in Lambda: {BROKER_SETTINGS}, "
        "and AWS_ENDPOINT_URL_SECRETSMANAGER for a local Secrets Manager. A request SigV4-signed "
        "with the environment's AWS credentials for execute-api in --region (the killb-broker "
        "CLI, BrokerAuth, curl --aws-sigv4) arrives as --caller-arn; any other (unsigned, stale, "
        "tampered, another region) gets API Gateway's 403.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="a loopback address (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=3001, help="0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--caller-arn",
        default=DEFAULT_CALLER_ARN,
        help="the IAM caller of signed requests (default: %(default)s)",
    )
    parser.add_argument("--account-id", default=ACCOUNT_ID, help="(default: %(default)s)")
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or REGION,
        help="the region signatures must be for (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"--host {args.host} is not a loopback address: the broker server stays local")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be from 0 to 65535")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        handler: Handler = load_function("broker").lambda_handler
    except ConfigurationError as error:
        print(f"broker_server: the broker's settings are invalid: {error}", file=sys.stderr)
        return 2
    try:
        credentials = environment_credentials()
    except ValueError as error:
        print(f"broker_server: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        server = serve_broker(
            handler,
            host=args.host,
            port=args.port,
            caller_arn=args.caller_arn,
            account_id=args.account_id,
            credentials=credentials,
            region=args.region,
        )
    except OSError as error:
        print(
            f"broker_server: cannot listen on {args.host}:{args.port}: {error.strerror}",
            file=sys.stderr,
        )
        return 1
    with server:
        print(
            f"broker serving on {server.base_url} (requests signed for {args.region} "
            f"as {args.caller_arn})",
            flush=True,
        )
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
