"""A local Lambda endpoint: the Invoke API (`POST /2015-03-31/functions/{name}/invocations`)
served over HTTP on loopback, each invoke running a handler in this process as Lambda runs it.

boto3 reaches it through AWS_ENDPOINT_URL_LAMBDA, so the broker invokes the local refresher
exactly as a deployed broker invokes the deployed one. Each function runs one invoke at a time,
as the refresher's ReservedConcurrentExecutions: 1 makes Lambda do: a second invoke while one
runs is throttled (429 TooManyRequestsException).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from lambda_runtime import LambdaContext
from served_in_thread import ServedInThread

from killb_broker.config import is_loopback

Handler = Callable[[Any, Any], Any]

INVOKE_PATH = "/2015-03-31/functions/"
# A refresher run may take a few KillB calls with retries (the template's timeout is 60 s).
REMAINING_MS = 60_000


@dataclass(frozen=True)
class Invocation:
    """One invoke the endpoint answered: the function, its payload and what became of it."""

    function_name: str
    payload: Any
    outcome: str  # "ok", "error" (the handler raised) or "throttled"


def function_name_of(target: str) -> str:
    """The function's name in a plain name, a partial ARN (123456789012:function:name) or a full
    ARN (arn:aws:lambda:region:account:function:name[:qualifier])."""
    parts = target.split(":")
    if "function" in parts:
        return parts[parts.index("function") + 1]
    return target


class LambdaEndpoint(ServedInThread):
    """Serves `functions` (name -> handler) as Lambda's Invoke API; `.base_url`, `.stop()`."""

    def __init__(
        self, functions: Mapping[str, Handler], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if not is_loopback(host):
            raise ValueError("the local Lambda endpoint listens on a loopback host only")
        self._functions = dict(functions)
        # One slot per function: its reserved concurrency of 1.
        self._slots = {name: threading.Lock() for name in self._functions}
        self._record = threading.Lock()
        self.invocations: list[Invocation] = []
        super().__init__(host, port, self._request_handler_class(), name="local-lambda-endpoint")

    def __repr__(self) -> str:
        return f"LambdaEndpoint(base_url={self.base_url!r})"

    def payloads(self, function_name: str) -> list[Any]:
        """The payload of every invoke of that function that ran, oldest first."""
        with self._record:
            return [
                call.payload
                for call in self.invocations
                if call.function_name == function_name and call.outcome != "throttled"
            ]

    @contextmanager
    def occupied(self, function_name: str) -> Iterator[None]:
        """Holds the function's one concurrency slot, as a long run would: every invoke
        meanwhile is throttled."""
        slot = self._slots[function_name]
        slot.acquire()
        try:
            yield
        finally:
            slot.release()

    def run(self, function_name: str, payload: Any) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body of Lambda's answer to a synchronous invoke."""
        handler = self._functions.get(function_name)
        if handler is None:
            return _error(404, "ResourceNotFoundException", f"Function not found: {function_name}")
        slot = self._slots[function_name]
        if not slot.acquire(blocking=False):
            self._remember(function_name, payload, "throttled")
            return _error(
                429,
                "TooManyRequestsException",
                "Rate Exceeded.",
                Reason="ReservedFunctionConcurrentInvocationLimitExceeded",
            )
        try:
            context = LambdaContext(function_name, remaining_ms=REMAINING_MS)
            try:
                result = handler(payload, context)
            except Exception as error:
                self._remember(function_name, payload, "error")
                # Lambda puts the message in the answer; the type alone is enough here, and
                # keeps whatever the message holds out of the caller's hands.
                body = {"errorType": type(error).__name__, "errorMessage": "the handler raised"}
                headers = {"X-Amz-Function-Error": "Unhandled"}
                return 200, headers, json.dumps(body).encode()
        finally:
            slot.release()
        self._remember(function_name, payload, "ok")
        return 200, {"X-Amz-Executed-Version": "$LATEST"}, json.dumps(result).encode()

    def _remember(self, function_name: str, payload: Any, outcome: str) -> None:
        with self._record:
            self.invocations.append(Invocation(function_name, payload, outcome))

    def _request_handler_class(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class InvokeRequestHandler(BaseHTTPRequestHandler):
            server_version = "LocalLambda/1"

            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if not (path.startswith(INVOKE_PATH) and path.endswith("/invocations")):
                    self._send(*_error(404, "UnknownOperationException", "Unknown operation"))
                    return
                target = unquote(path.removeprefix(INVOKE_PATH).removesuffix("/invocations"))
                try:
                    payload = json.loads(body or b"{}")
                except ValueError:
                    self._send(
                        *_error(400, "InvalidRequestContentException", "Could not parse JSON")
                    )
                    return
                kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
                name = function_name_of(target)
                if kind == "Event":
                    threading.Thread(target=endpoint.run, args=(name, payload), daemon=True).start()
                    self._send(202, {}, b"")
                    return
                self._send(*endpoint.run(name, payload))

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: each function logs its own runs."""

        return InvokeRequestHandler


def _error(status: int, code: str, message: str, **extra: str) -> tuple[int, dict[str, str], bytes]:
    """An error of the Invoke API, as botocore reads it (x-amzn-ErrorType names the code)."""
    body = {"Type": "User", "message": message, **extra}
    return status, {"x-amzn-ErrorType": code}, json.dumps(body).encode()
