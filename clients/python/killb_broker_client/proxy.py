"""`killb-broker proxy`: KillB for any language, with no code. A service sends its KillB calls to
http://127.0.0.1:8787/api/v2/...; the proxy forwards each one to the broker's killbBaseUrl with the
broker's current headers and streams the answer back.

Like an API proxy with auto-auth (Vault Proxy) or a credential-injecting filter (Envoy): one
upstream only, the credentials replaced (never merged), hop-by-hop headers dropped, bodies
streamed both ways, a health route of its own, and no secret in any line it logs.

Getting headers from BrokerAuth is blocking (requests): a usable cached answer is used on the
event loop as it is, and only a fetch from the broker goes to a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from killb_broker_client.auth import (
    BrokerAuth,
    IssuedHeaders,
)
from killb_broker_client.errors import BrokerClientError, BrokerUnavailable

logger = logging.getLogger(__name__)

HEALTH_ROUTE = "/_broker/health"
# A body up to this size is kept, so the request can be sent again after a 401; a larger one is
# streamed up as it arrives and a 401 to it is answered as it is (after telling the broker).
REPLAY_LIMIT = 1024 * 1024
CHUNK_SIZE = 64 * 1024
# When the broker's 503 says nothing about when to come back.
DEFAULT_RETRY_AFTER = 5

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded (nor those that
# Connection names).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Replaced by the broker's headers, whatever the caller put there.
CALLER_CREDENTIALS = frozenset({"authorization", "x-api-key", "cookie"})
# Set again for the upstream request by the HTTP client: the host, the body's framing.
REFRAMED = frozenset({"host", "content-length", "expect"})

INVALID_REQUEST = "BROKER.0001"
NO_TOKEN = "BROKER.0003"  # noqa: S105 - an error code
NOT_ALLOWED = "BROKER.0005"
KILLB_UNREACHABLE = "BROKER.0006"


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """Limits and fallbacks of one proxy. Timeouts are in seconds.

    killb_url: KillB's root for a broker whose answer names no killbBaseUrl; a broker that names
    one always wins, so a token is never sent to another KillB environment than its own.
    """

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_connections: int = 100
    shutdown_timeout: float = 30.0
    killb_url: str | None = None


class ProxyRefusal(Exception):
    """An answer the proxy gives itself, in the contract's error shape. The message is shown
    to the caller: it never holds a token."""

    def __init__(
        self, status: int, error_code: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.retry_after = retry_after

    def response(self) -> web.Response:
        body = {
            "errorCode": self.error_code,
            "message": [self.message],
            "statusCode": str(self.status),
        }
        headers = {"Cache-Control": "no-store"}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return web.json_response(body, status=self.status, headers=headers)


def refusal_of(request: web.BaseRequest) -> ProxyRefusal | None:
    """Why the proxy will not forward this request at all, or None."""
    if request.method == "CONNECT":
        return ProxyRefusal(
            400,
            INVALID_REQUEST,
            "CONNECT is not forwarded: this proxy only sends requests to KillB",
        )
    if not request.raw_path.startswith("/"):
        # An absolute-form target (GET http://host/...) asks for a forward proxy to any host.
        return ProxyRefusal(
            400,
            INVALID_REQUEST,
            "only origin-form targets (/path?query) are forwarded, and only to KillB",
        )
    return None


def not_forwarded(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """The lower-case names of headers that stay on this hop: hop-by-hop ones, and those the
    Connection header names."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", ())
        for token in value.split(",")
        if token.strip()
    }
    return HOP_BY_HOP | named


def upstream_headers(request: web.BaseRequest, issued: IssuedHeaders) -> CIMultiDict[str]:
    """The caller's headers for KillB: without this hop's, without the caller's credentials,
    with the broker's."""
    dropped = not_forwarded(request.headers) | CALLER_CREDENTIALS | REFRAMED
    headers: CIMultiDict[str] = CIMultiDict(
        (name, value) for name, value in request.headers.items() if name.lower() not in dropped
    )
    if request.content_length is not None and request.content_length > REPLAY_LIMIT:
        # Streamed up with the length the caller announced, not re-chunked.
        headers["Content-Length"] = str(request.content_length)
    headers.update(issued.headers)
    return headers


async def request_body(request: web.BaseRequest) -> bytes | AsyncIterator[bytes]:
    """The whole body when it is at most REPLAY_LIMIT (it can be sent twice), else a stream of
    it that reads from the caller as the upstream takes it."""
    if not request.body_exists:
        return b""
    if request.content_length is not None and request.content_length > REPLAY_LIMIT:
        return _stream(b"", request.content)
    buffered = bytearray()
    while len(buffered) <= REPLAY_LIMIT:
        chunk = await request.content.readany()
        if not chunk:
            return bytes(buffered)
        buffered += chunk
    return _stream(bytes(buffered), request.content)


async def _stream(prefix: bytes, rest: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    if prefix:
        yield prefix
    async for chunk in rest.iter_chunked(CHUNK_SIZE):
        yield chunk


def answer_headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """KillB's answer headers for the caller: without this hop's."""
    dropped = not_forwarded(headers)
    return CIMultiDict(
        (name, value) for name, value in headers.items() if name.lower() not in dropped
    )


def transport_cause(error: BaseException) -> str:
    """What went wrong on the way to KillB, in a few words (never a header or a URL's query)."""
    if isinstance(error, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return "timed out"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "connection refused or host not reachable"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "connection closed without an answer"
    return type(error).__name__


class KillBProxy:
    """The proxy's request handler, its upstream connection pool and its broker client."""

    def __init__(self, auth: BrokerAuth, settings: ProxySettings | None = None) -> None:
        self.auth = auth
        self.settings = settings or ProxySettings()
        self._issued: IssuedHeaders | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.settings.max_connections),
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.settings.connect_timeout,
                sock_read=self.settings.read_timeout,
            ),
            # The body goes back byte for byte, compressed as KillB sent it.
            auto_decompress=False,
            # KillB's cookies are the caller's business: none kept here, none added.
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer one caller request, and log it in one line (no query, no header)."""
        started = time.perf_counter()
        token: str | None = None
        status = 500
        try:
            response, token = await self._answer(request)
            status = response.status
            return response
        except ProxyRefusal as refusal:
            status = refusal.status
            logger.warning("refused: %s", refusal.message)
            return refusal.response()
        finally:
            logger.info(
                "%s %s %d %.1fms token=%s",
                request.method,
                request.raw_path.split("?", 1)[0],
                status,
                (time.perf_counter() - started) * 1000,
                token or "-",
            )

    async def _answer(self, request: web.BaseRequest) -> tuple[web.StreamResponse, str | None]:
        refusal = refusal_of(request)
        if refusal is not None:
            raise refusal
        if request.path == HEALTH_ROUTE:
            return await self._health(request), None
        if request.headers.get("Expect", "").lower() == "100-continue":
            # The caller waits for this before sending its body (curl does, above 1 MiB).
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await request_body(request)
        issued = await self._current()
        upstream = await self._send(request, issued, body)
        if upstream.status != 401:
            return await self._relay(request, upstream), issued.fingerprint
        refused_body = await upstream.read()
        replacement = await self._current(rejected=issued.fingerprint)
        if isinstance(body, bytes) and replacement.fingerprint != issued.fingerprint:
            logger.info(
                "KillB refused token %s: retrying once with %s",
                issued.fingerprint,
                replacement.fingerprint,
            )
            upstream = await self._send(request, replacement, body)
            return await self._relay(request, upstream), replacement.fingerprint
        # A streamed body cannot be sent twice: the broker has been told, the caller retries.
        return await self._relay(request, upstream, refused_body), issued.fingerprint

    async def _current(self, *, rejected: str | None = None) -> IssuedHeaders:
        """The broker's current answer: the cached one on the loop, a fetch on a thread."""
        issued = self._issued
        if rejected is None and issued is not None and issued.usable():
            return issued
        try:
            issued = await asyncio.to_thread(self.auth.issued, rejected=rejected)
        except BrokerUnavailable as error:
            retry_after = DEFAULT_RETRY_AFTER
            if error.retry_after is not None:
                retry_after = max(1, round(error.retry_after))
            raise ProxyRefusal(
                503,
                NO_TOKEN,
                f"no KillB token from the broker now: {error.message}",
                retry_after=retry_after,
            ) from error
        except BrokerClientError as error:
            raise ProxyRefusal(
                503,
                NO_TOKEN,
                f"no KillB token from the broker: {error}",
                retry_after=DEFAULT_RETRY_AFTER,
            ) from error
        self._issued = issued
        return issued

    def _upstream_url(self, request: web.BaseRequest, issued: IssuedHeaders) -> URL:
        base = issued.killb_base_url or self.settings.killb_url
        if not base:
            raise ProxyRefusal(
                503,
                NO_TOKEN,
                "the broker's answer names no killbBaseUrl (its refresher predates it): "
                "start the proxy with --killb-url",
                retry_after=DEFAULT_RETRY_AFTER,
            )
        # https:// (or http:// to loopback) only: BrokerAuth checks the broker's killbBaseUrl,
        # the command line checks --killb-url.
        return URL(base.rstrip("/") + request.raw_path, encoded=True)

    async def _send(
        self,
        request: web.BaseRequest,
        issued: IssuedHeaders,
        body: bytes | AsyncIterator[bytes],
    ) -> aiohttp.ClientResponse:
        if self._session is None:
            raise RuntimeError("the proxy is not started")
        url = self._upstream_url(request, issued)
        try:
            return await self._session.request(
                request.method,
                url,
                headers=upstream_headers(request, issued),
                data=body if body != b"" else None,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ProxyRefusal(
                502, KILLB_UNREACHABLE, f"KillB could not be reached ({transport_cause(error)})"
            ) from error

    async def _relay(
        self,
        request: web.BaseRequest,
        upstream: aiohttp.ClientResponse,
        already_read: bytes | None = None,
    ) -> web.StreamResponse:
        """KillB's answer back to the caller, without this hop's headers: streamed, or in one
        write when it is known to be small (most KillB answers: one send instead of three)."""
        headers = answer_headers(upstream.headers)
        length = upstream.content_length
        small = length is not None and length <= CHUNK_SIZE and request.method != "HEAD"
        if already_read is None and small:
            already_read = await self._read_small(upstream)
        if already_read is not None:
            headers.popall("Content-Length", None)  # set again for the body as read
            return web.Response(
                status=upstream.status, reason=upstream.reason, body=already_read, headers=headers
            )
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        response.headers.extend(headers)
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(CHUNK_SIZE):
                await response.write(chunk)
            await response.write_eof()
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as error:
            # Part of the answer is out: the caller learns by the connection closing early.
            logger.warning("answer cut short: %s", transport_cause(error))
            if request.transport is not None:
                request.transport.close()
        finally:
            upstream.release()
        return response

    async def _read_small(self, upstream: aiohttp.ClientResponse) -> bytes:
        try:
            return await upstream.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ProxyRefusal(
                502, KILLB_UNREACHABLE, f"KillB's answer was cut short ({transport_cause(error)})"
            ) from error
        finally:
            upstream.release()

    async def _health(self, request: web.BaseRequest) -> web.Response:
        if request.method != "GET":
            raise ProxyRefusal(405, NOT_ALLOWED, f"{HEALTH_ROUTE} answers GET only")
        try:
            health = await asyncio.to_thread(self.auth.health)
        except BrokerClientError as error:
            raise ProxyRefusal(
                503,
                NO_TOKEN,
                f"the broker's health is unknown: {error}",
                retry_after=DEFAULT_RETRY_AFTER,
            ) from error
        return web.json_response(health.to_json(), headers={"Cache-Control": "no-store"})


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (Linux, macOS): it serves about twice the
    requests per second of asyncio's own on the same CPU (docs/benchmarks.md, P8). asyncio's
    own elsewhere."""
    try:
        import uvloop  # noqa: PLC0415 - optional: not on Windows
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class RunningProxy:
    """A proxy serving on a loopback port in a thread of its own: for tests, benchmarks and
    anything in-process. `base_url` to call, `stop()` (or `with`) to end it."""

    def __init__(self, proxy: KillBProxy, host: str = "127.0.0.1", port: int = 0) -> None:
        self.proxy = proxy
        self._loop = new_event_loop()
        self._runner: web.ServerRunner | None = None
        started = threading.Event()
        self._address: tuple[str, int] | None = None
        self._thread = threading.Thread(
            target=self._serve, args=(host, port, started), name="killb-proxy", daemon=True
        )
        self._thread.start()
        started.wait(timeout=10)
        if self._address is None:
            raise RuntimeError("the proxy did not start")

    def _serve(self, host: str, port: int, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner, self._address = self._loop.run_until_complete(
            start_server(self.proxy, host, port)
        )
        started.set()
        self._loop.run_forever()

    @property
    def base_url(self) -> str:
        if self._address is None:
            raise RuntimeError("the proxy is not started")
        host, port = self._address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def stop(self) -> None:
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        asyncio.run_coroutine_threadsafe(stop_server(self.proxy, runner), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> RunningProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def start_server(
    proxy: KillBProxy, host: str, port: int
) -> tuple[web.ServerRunner, tuple[str, int]]:
    """Start the upstream pool and listen; returns the runner and the address bound."""
    await proxy.start()
    server = web.Server(
        proxy.handle,
        access_log=None,  # aiohttp's access log would print the query: the proxy logs its own
        max_line_size=8190,
        max_field_size=8190,
        max_headers=100,
    )
    runner = web.ServerRunner(server, shutdown_timeout=proxy.settings.shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    return runner, (str(bound[0]), int(bound[1]))


async def stop_server(proxy: KillBProxy, runner: web.ServerRunner) -> None:
    """Stop listening, let requests in flight finish (up to shutdown_timeout), then close."""
    await runner.cleanup()
    await proxy.close()


async def serve(proxy: KillBProxy, host: str, port: int) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stopping.set)
    runner, (bound_host, bound_port) = await start_server(proxy, host, port)
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    logger.info("proxy listening on http://%s:%d", shown, bound_port)
    await stopping.wait()
    logger.info(
        "stopping: requests in flight get up to %gs to finish", proxy.settings.shutdown_timeout
    )
    await stop_server(proxy, runner)
    logger.info("stopped")


@contextmanager
def running_proxy(
    auth: BrokerAuth, settings: ProxySettings | None = None, host: str = "127.0.0.1"
) -> Iterator[RunningProxy]:
    """A proxy for auth on a free loopback port, stopped on exit."""
    with RunningProxy(KillBProxy(auth, settings), host) as proxy:
        yield proxy
