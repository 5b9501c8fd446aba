"""An HTTP server answering on a daemon thread of its own, for the local stand-ins (the API
Gateway, the Lambda endpoint): started when built, stopped by stop() or at the end of a `with`."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class ServedInThread:
    """Serves `handler_class` on host:port (0: a free port) until stopped; `.base_url`."""

    def __init__(
        self, host: str, port: int, handler_class: type[BaseHTTPRequestHandler], *, name: str
    ) -> None:
        server_class = _IPv6Server if ":" in host else _Server
        self._httpd = server_class((host, port), handler_class)
        shown_host = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown_host}:{self._httpd.server_port}"
        # A short poll so that stop() returns at once, not after serve_forever's default 0.5 s.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=name,
            daemon=True,
        )
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
