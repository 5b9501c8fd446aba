"""A plain HTTP upstream on loopback for the proxy's tests and benchmark: it records what reached
it (headers, the body's length and digest, its framing) and answers from a few fixed routes.

GET  /fixed   a small fixed JSON answer (the benchmark's upstream)
GET  /stream  a chunked answer: its first part, then the rest once `release` is set
GET  /hop     an answer carrying hop-by-hop headers, which must not reach the caller
GET  /hop-stream  the same headers on a chunked answer (the proxy streams it)
any  other    200 {"ok": true} after reading the body (Content-Length or chunked)
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

FIXED_ANSWER = json.dumps({"ok": True, "rate": 0.058}).encode()
STREAM_FIRST_PART = b"first part;"
STREAM_REST = b"the rest."
# The /hop answer's headers that stay on that hop (the last two named by its Connection).
HOP_HEADERS = {
    "Connection": "keep-alive, X-Upstream-Hop",
    "X-Upstream-Hop": "1",
    "Keep-Alive": "timeout=5",
    "Proxy-Authenticate": 'Basic realm="upstream"',
}


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body_length: int
    body_sha256: str


class EchoUpstream:
    """Serve on a free loopback port in a daemon thread; `with` starts and stops it."""

    def __init__(self) -> None:
        self.received: list[ReceivedRequest] = []
        self.release = threading.Event()  # lets /stream send the rest of its answer
        self.body_started = threading.Event()  # set once a request's first MiB arrived
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connections under 64 concurrent callers (the
    # benchmark), and each drop costs the caller a SYN retransmit of a second or more.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer is expected in these tests


def _handler_for(upstream: EchoUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def _read_body(self) -> tuple[int, str]:
            digest, length = hashlib.sha256(), 0
            for chunk in self._body_chunks():
                digest.update(chunk)
                length += len(chunk)
                if length > 1024 * 1024:
                    upstream.body_started.set()
            return length, digest.hexdigest()

        def _body_chunks(self) -> Any:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return
                    yield self.rfile.read(size)
                    self.rfile.readline()
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                chunk = self.rfile.read(min(remaining, 256 * 1024))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

        def _serve(self) -> None:
            length, digest = self._read_body()
            upstream.received.append(
                ReceivedRequest(
                    method=self.command,
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body_length=length,
                    body_sha256=digest,
                )
            )
            if self.path in {"/stream", "/hop-stream"}:
                self._stream(HOP_HEADERS if self.path == "/hop-stream" else {})
                return
            headers = dict(HOP_HEADERS) if self.path == "/hop" else {}
            headers["X-Kept"] = "1"
            body = FIXED_ANSWER if self.path == "/fixed" else b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _stream(self, extra_headers: dict[str, str]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Kept", "1")
            for name, value in extra_headers.items():
                self.send_header(name, value)
            self.end_headers()
            for part, wait in ((STREAM_FIRST_PART, True), (STREAM_REST, False)):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                self.wfile.flush()
                if wait and not extra_headers:
                    upstream.release.wait(timeout=10)
            self.wfile.write(b"0\r\n\r\n")

    return Handler


if __name__ == "__main__":
    # `python -m tests.client.echo_upstream`: serve in a process of its own (the proxy benchmark)
    # and print the base URL, until the process is ended.
    with EchoUpstream() as served:
        print(served.base_url, flush=True)
        threading.Event().wait()
