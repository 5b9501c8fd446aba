"""A fake KillB on loopback: login, refresh with single-use rotating refresh tokens, logout, the
token's claims (/auth/me), the users list, KillB's error shape and codes, revocation and faults a
test injects, and a record of every request received.
"""

from __future__ import annotations

import hmac
import ipaddress
import itertools
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, urlsplit

LOGIN_PATH = "/api/v2/auth/login"
REFRESH_PATH = "/api/v2/auth/refresh"
LOGOUT_PATH = "/api/v2/auth/logout"
ME_PATH = "/api/v2/auth/me"
USERS_PATH = "/api/v2/users"
QUOTATIONS_PATH = "/api/v2/quotations"
ENDPOINTS = {
    LOGIN_PATH: "login",
    REFRESH_PATH: "refresh",
    LOGOUT_PATH: "logout",
    ME_PATH: "me",
    USERS_PATH: "users",
    QUOTATIONS_PATH: "quotations",
}

INVALID_CREDENTIALS = "AUTH.0001"
TOKEN_EXPIRED = "AUTH.0002"  # noqa: S105 - an error code
TOKEN_INVALID = "AUTH.0003"  # noqa: S105 - an error code
INVALID_API_KEY = "AUTH.0004"
REFRESH_TOKEN_LIFETIME_MS = 24 * 3_600_000
QUOTATION_RATE = 0.058  # a fixed exchange rate for the quotations the sandbox answers

FAKE_USERS = (
    {"id": "usr_0001", "email": "ana@example.test", "name": "Ana Example"},
    {"id": "usr_0002", "email": "luis@example.test", "name": "Luis Example"},
)

Endpoint = Literal["login", "refresh", "logout", "me", "users", "quotations", "any"]

# Every token any sandbox in this process issued, so a leak check can search logs for them all.
_EVERY_TOKEN_ISSUED: set[str] = set()
_EVERY_TOKEN_LOCK = threading.Lock()


def every_token_issued() -> frozenset[str]:
    """Every access and refresh token any sandbox in this process has issued so far."""
    with _EVERY_TOKEN_LOCK:
        return frozenset(_EVERY_TOKEN_ISSUED)


@dataclass(frozen=True, slots=True)
class Account:
    """A KillB account; with an api_key, every request for it must carry x-api-key."""

    password: str = field(repr=False)
    api_key: str | None = field(default=None, repr=False)


# The faults a test can inject. Each answers one request instead of the normal answer.
@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """An error status in KillB's shape; error_code None leaves errorCode out (as KillB's 500s)."""

    status: int = 500
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """429 with Retry-After and X-RateLimit-* headers. retry_after: seconds, a string sent as it
    is (an HTTP-date, something unreadable), or None for no Retry-After."""

    retry_after: int | str | None = 1
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Delay:
    """Wait this long, then answer normally (a slow KillB, or a read timeout for the client)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the connection without an answer."""


@dataclass(frozen=True, slots=True)
class NotJson:
    """An answer whose body is not JSON (a proxy's error page, a truncated 200)."""

    status: int = 200
    body: str = "<html><body>Bad gateway</body></html>"


@dataclass(frozen=True, slots=True)
class UnexpectedJson:
    """JSON, but not the shape KillB documents (a missing field, expiresIn as a string...)."""

    body: Any
    status: int = 200


@dataclass(frozen=True, slots=True)
class Redirect:
    """A 3xx pointing elsewhere (a moved API, a hijacked DNS name): a client must not follow it."""

    location: str
    status: int = 307


Fault = ErrorResponse | RateLimit | Delay | Drop | NotJson | UnexpectedJson | Redirect


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request the sandbox received; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None
    at: float

    @property
    def endpoint(self) -> str | None:
        return ENDPOINTS.get(self.path)


@dataclass(slots=True)
class _Grant:
    """A token's owner, the session it belongs to (a login and the refreshes that follow it)."""

    email: str
    session: int
    expires_at: float
    issued_at: float = 0.0


@dataclass(slots=True)
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _killb_error(status: int, error_code: str | None, message: str) -> _Answer:
    body: dict[str, Any] = {"message": [message], "statusCode": str(status)}
    if error_code:
        body = {"errorCode": error_code, **body}
    return _Answer(status, json.dumps(body).encode())


def _json_answer(status: int, value: dict[str, Any]) -> _Answer:
    return _Answer(status, json.dumps(value).encode())


def is_loopback(host: str) -> bool:
    # Its own check, not killb_broker's: the sandbox stands in for KillB and imports none of it.
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class KillBSandbox:
    """A real HTTP server on loopback that behaves as KillB's auth API does.

    Thread-safe: the server answers each request on its own thread, tests call in from theirs.
    """

    def __init__(
        self,
        accounts: dict[str, Account] | None = None,
        *,
        token_lifetime_ms: int = 3_600_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.accounts = dict(accounts or {})
        self.token_lifetime_ms = token_lifetime_ms
        self.clock = clock
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._access_tokens: dict[str, _Grant] = {}
        self._refresh_tokens: dict[str, _Grant] = {}
        self._revoked: set[str] = set()  # access tokens KillB refuses before they expire
        self._sessions = itertools.count(1)
        self._faults: list[tuple[Endpoint, Fault]] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Life cycle

    def start(
        self, host: str = "127.0.0.1", port: int = 0, *, allow_non_loopback: bool = False
    ) -> str:
        """Serve on host:port (port 0: a free one) in a daemon thread; returns the base URL.

        A host beyond loopback (the Docker bridge address, for `sam local`) only with
        allow_non_loopback: the sandbox accepts any password it was given, to anyone who asks.
        """
        if not is_loopback(host) and not allow_non_loopback:
            raise ValueError("the KillB sandbox serves on a loopback host only")
        if self._server is not None:
            raise RuntimeError("the KillB sandbox is already started")
        server_class = _IPv6Server if ":" in host else _Server
        self._server = server_class((host, port), _handler_for(self))
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long stop() may wait for the serving loop
            name="killb-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes answers held back by a Delay
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server, self._thread = None, None

    def __enter__(self) -> Self:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the KillB sandbox is not started")
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    # What a test controls

    def inject(self, endpoint: Endpoint, fault: Fault, times: int = 1) -> None:
        """The next `times` requests to endpoint ("any": to any path) get this fault."""
        with self._lock:
            self._faults.extend([(endpoint, fault)] * times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token issued so far is refused from now on (AUTH.0003)."""
        with self._lock:
            self._refresh_tokens.clear()

    def set_token_lifetime_ms(self, ms: int) -> None:
        """The expiresIn of the access tokens issued from now on."""
        with self._lock:
            self.token_lifetime_ms = ms

    def revoke(self, access_token: str) -> None:
        """KillB refuses this access token from now on (AUTH.0003), as if revoked early; the
        session's refresh token still works."""
        with self._lock:
            self._revoked.add(access_token)

    # What a test asserts on

    def count(self, endpoint: Endpoint) -> int:
        """How many requests reached endpoint (one of ENDPOINTS' names; "any": all)."""
        with self._lock:
            return sum(1 for r in self.requests if endpoint in ("any", r.endpoint))

    def issued_access_tokens(self) -> list[str]:
        """Every access token issued so far, in order; revoked and expired ones too."""
        with self._lock:
            return list(self._access_tokens)

    def is_valid_access_token(self, token: str) -> bool:
        with self._lock:
            grant = self._access_tokens.get(token)
            return (
                grant is not None and token not in self._revoked and grant.expires_at > self.clock()
            )

    # The server's side

    def _record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        try:
            value = json.loads(body) if body else None
        except ValueError:
            value = None
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    method=method,
                    path=path,
                    headers=headers,
                    json=value if isinstance(value, dict) else None,
                    at=self.clock(),
                )
            )

    def _take_fault(self, path: str) -> Fault | None:
        endpoint = ENDPOINTS.get(path)
        with self._lock:
            for index, (target, fault) in enumerate(self._faults):
                if target in ("any", endpoint):
                    del self._faults[index]
                    return fault
        return None

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _answer(  # noqa: PLR0911 - one return per route
        self, method: str, path: str, headers: dict[str, str], body: bytes, query: str = ""
    ) -> _Answer:
        if method == "POST" and path == QUOTATIONS_PATH:
            return self._quotation(headers, body)
        if method == "POST" and path == LOGIN_PATH:
            return self._login(headers, body)
        if method == "POST" and path == REFRESH_PATH:
            return self._refresh(headers, body)
        if method == "POST" and path == LOGOUT_PATH:
            return self._logout(headers)
        if method == "GET" and path == ME_PATH:
            return self._me(headers)
        if method == "GET" and path == USERS_PATH:
            return self._users(headers, query)
        return _killb_error(404, "NOT_FOUND.0001", f"Cannot {method} {path}")

    def _login(self, headers: dict[str, str], body: bytes) -> _Answer:
        request = _login_fields(headers, body)
        email, password = request.get("email"), request.get("password")
        if not isinstance(email, str) or not isinstance(password, str):
            return _killb_error(400, "VALIDATION.0001", "email and password must be strings")
        account = self.accounts.get(email)
        if account is not None and not _api_key_matches(account, headers):
            return _killb_error(403, INVALID_API_KEY, "Invalid API key")
        if account is None or not hmac.compare_digest(password, account.password):
            return _killb_error(401, INVALID_CREDENTIALS, "Invalid credentials")
        return self._issue(email, next(self._sessions))

    def _refresh(self, headers: dict[str, str], body: bytes) -> _Answer:
        token = _json_body(body).get("refreshToken")
        if not isinstance(token, str) or not token:
            return _killb_error(400, "VALIDATION.0001", "refreshToken must be a string")
        with self._lock:
            grant = self._refresh_tokens.get(token)
            if grant is None:
                return _killb_error(401, TOKEN_INVALID, "Invalid token")
            if not _api_key_matches(self.accounts[grant.email], headers):
                return _killb_error(403, INVALID_API_KEY, "Invalid API key")
            del self._refresh_tokens[token]  # single use: spent, whatever comes next
        if grant.expires_at <= self.clock():
            return _killb_error(401, TOKEN_EXPIRED, "Token expired")
        return self._issue(grant.email, grant.session)

    def _logout(self, headers: dict[str, str]) -> _Answer:
        """Ends the Bearer token's session: its access and refresh tokens are refused after."""
        grant = self._bearer(headers)
        if isinstance(grant, _Answer):
            return grant
        with self._lock:
            session = grant.session
            self._revoked.update(t for t, g in self._access_tokens.items() if g.session == session)
            for token in [t for t, g in self._refresh_tokens.items() if g.session == session]:
                del self._refresh_tokens[token]
        return _json_answer(200, {"message": ["Logged out"], "statusCode": "200"})

    def _me(self, headers: dict[str, str]) -> _Answer:
        """The Bearer token's claims, as KillB's MeResponseDto has them; KillB's refusal of a
        revoked or unknown token (AUTH.0003) or an expired one (AUTH.0002)."""
        grant = self._bearer(headers)
        if isinstance(grant, _Answer):
            return grant
        return _json_answer(200, _claims(grant))

    def _users(self, headers: dict[str, str], query: str = "") -> _Answer:
        """The users, or those matching the query's fields (GET /api/v2/users?email=...)."""
        grant = self._bearer(headers)
        if isinstance(grant, _Answer):
            return grant
        wanted = dict(parse_qsl(query))
        users = [u for u in FAKE_USERS if all(u.get(k) == v for k, v in wanted.items())]
        return _json_answer(200, {"users": users})

    def _quotation(self, headers: dict[str, str], body: bytes) -> _Answer:
        """POST /api/v2/quotations: a quotation for the request's currencies and amount."""
        grant = self._bearer(headers)
        if isinstance(grant, _Answer):
            return grant
        request = _json_body(body)
        amount = request.get("amount")
        if not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
            return _killb_error(400, "VALIDATION.0001", "amount must be a positive number")
        quotation = {
            "id": f"quo_{secrets.token_hex(6)}",
            "fromCurrency": request.get("fromCurrency"),
            "toCurrency": request.get("toCurrency"),
            "fromAmount": amount,
            "toAmount": round(amount * QUOTATION_RATE, 2),
            "rate": QUOTATION_RATE,
            "expiresAt": int(self.clock()) + 30,
        }
        return _json_answer(201, quotation)

    def _bearer(self, headers: dict[str, str]) -> _Grant | _Answer:
        """The grant of the request's Bearer access token, or KillB's refusal of it."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        with self._lock:
            grant = self._access_tokens.get(token) if scheme.lower() == "bearer" else None
            revoked = token in self._revoked
        if grant is None or revoked:
            return _killb_error(401, TOKEN_INVALID, "Invalid token")
        if not _api_key_matches(self.accounts[grant.email], headers):
            return _killb_error(403, INVALID_API_KEY, "Invalid API key")
        if grant.expires_at <= self.clock():
            return _killb_error(401, TOKEN_EXPIRED, "Token expired")
        return grant

    def _issue(self, email: str, session: int) -> _Answer:
        now = self.clock()
        access_token, refresh_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with _EVERY_TOKEN_LOCK:
            _EVERY_TOKEN_ISSUED.update((access_token, refresh_token))
        with self._lock:
            lifetime_ms = self.token_lifetime_ms
            self._access_tokens[access_token] = _Grant(
                email, session, now + lifetime_ms / 1000, issued_at=now
            )
            self._refresh_tokens[refresh_token] = _Grant(
                email, session, now + REFRESH_TOKEN_LIFETIME_MS / 1000
            )
        return _json_answer(
            201,
            {"accessToken": access_token, "expiresIn": lifetime_ms, "refreshToken": refresh_token},
        )


def _claims(grant: _Grant) -> dict[str, Any]:
    """What KillB's GET /api/v2/auth/me answers for a live token: who it is, and the token's
    issued-at and expiry in whole seconds (fixed ids: the sandbox has one customer)."""
    created = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(grant.issued_at))
    return {
        "id": f"usr_{grant.session:04d}",
        "email": grant.email,
        "customerId": "cus_0001",
        "roles": ["role_api"],
        "permissions": ["user:read", "ramp:read", "quotation:create"],
        "createdAt": created,
        "updatedAt": created,
        "active": True,
        "iat": int(grant.issued_at),
        "exp": int(grant.expires_at),
        "origin": "API",
    }


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _login_fields(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The login's fields from JSON, or from a form body (the KillB Python SDK posts a form)."""
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return dict(parse_qsl(body.decode("utf-8", "replace")))
    return _json_body(body)


def _api_key_matches(account: Account, headers: dict[str, str]) -> bool:
    if account.api_key is None:
        return True
    return hmac.compare_digest(headers.get("x-api-key", ""), account.api_key)


def _fault_answer(fault: Fault) -> _Answer | None:
    """The answer a fault gives instead of the normal one; None: answer normally (a Delay)."""
    match fault:
        case ErrorResponse(status, error_code):
            return _killb_error(status, error_code, "Injected failure")
        case RateLimit(retry_after, limit):
            answer = _killb_error(429, "RATE_LIMIT.0001", "Too many requests")
            answer.headers |= {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": "0"}
            if retry_after is not None:
                answer.headers |= {"Retry-After": str(retry_after)}
                answer.headers |= {"X-RateLimit-Reset": str(retry_after)}
            return answer
        case NotJson(status, text):
            return _Answer(status, text.encode(), {"Content-Type": "text/html"})
        case UnexpectedJson(body, status):
            return _Answer(status, json.dumps(body).encode())
        case Redirect(location, status):
            return _Answer(status, b"", {"Location": location})
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout) is expected here; not worth a traceback.
        pass


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


def _handler_for(sandbox: KillBSandbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as requests' sessions use it
        server_version = "KillBSandbox/1.0"
        # Headers and body go out in two writes: without this, delayed ACKs add ~40 ms to each.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read the recorded requests instead

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            target = urlsplit(self.path)
            path = target.path
            headers = {name.lower(): value for name, value in self.headers.items()}
            sandbox._record(self.command, path, headers, body)
            fault = sandbox._take_fault(path)
            if isinstance(fault, Drop):
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if isinstance(fault, Delay):
                sandbox._wait(fault.seconds)
            answer = (_fault_answer(fault) if fault else None) or sandbox._answer(
                self.command, path, headers, body, target.query
            )
            self.send_response(answer.status)
            for name, value in ({"Content-Type": "application/json"} | answer.headers).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

    return Handler
