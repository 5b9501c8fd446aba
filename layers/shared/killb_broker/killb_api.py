"""KillB's auth API over HTTP: log in, refresh, log out, ask whether a token is still good, and
turn every answer into a TokenSet (or the token's claims) or one of the project's errors. Knows
nothing of AWS; the only module that imports requests.

Every call goes through one retry loop, `KillBAuthClient._send`, which a reader can follow top to
bottom: one attempt (`_attempt`), what the answer means (`_read_*`), and the pause before the next
attempt, decided in one place (`_pause`). urllib3 retries nothing and follows no redirect.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter

from killb_broker import __version__
from killb_broker.config import secure_base_url
from killb_broker.errors import (
    InvalidCredentials,
    KillBError,
    KillBUnavailable,
    RateLimited,
    TokenRejected,
    UnexpectedResponse,
)
from killb_broker.observability import logger
from killb_broker.tokens import TokenSet, fingerprint, is_visible_ascii

LOGIN_PATH = "/api/v2/auth/login"
REFRESH_PATH = "/api/v2/auth/refresh"
LOGOUT_PATH = "/api/v2/auth/logout"
ME_PATH = "/api/v2/auth/me"
USER_AGENT = f"killb-credential-broker/{__version__}"

INVALID_CREDENTIALS = "AUTH.0001"
# KillB's codes for a token it refuses: expired, invalid (revoked, unknown).
TOKEN_REFUSED_CODES = frozenset({"AUTH.0002", "AUTH.0003"})
# A longer expiresIn is not believed (a KillB bug, a proxy's rewrite): read as 24 hours.
MAX_EXPIRES_IN_MS = 86_400_000

# KillB's codes look like AUTH.0001; anything else in that field is not repeated in our messages.
_ERROR_CODE = re.compile(r"[A-Z][A-Z_]{0,15}\.[0-9]{1,6}")


class _Failure(StrEnum):
    """Why a request got no HTTP answer, in words that hold no URL and no connection detail."""

    TIMED_OUT = "timed out"
    CONNECTION = "failed to connect, or lost the connection"
    TLS = "failed the TLS handshake or the certificate check"  # a retry will not mend it
    OTHER = "could not be sent"

    @classmethod
    def of(cls, error: requests.RequestException) -> _Failure:
        # SSLError is a ConnectionError, so it is asked first.
        if isinstance(error, requests.exceptions.SSLError):
            return cls.TLS
        if isinstance(error, requests.Timeout):
            return cls.TIMED_OUT
        if isinstance(error, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
            return cls.CONNECTION
        return cls.OTHER

    @property
    def retryable(self) -> bool:
        return self in (_Failure.TIMED_OUT, _Failure.CONNECTION)


class KillBAuthClient:
    """Logs in to KillB, refreshes, checks and logs out its sessions, with timeouts, one bounded
    retry loop and typed errors.

    One call makes at most 1 + max_retries attempts. Retried: 5xx, 429, a timeout, a refused or
    dropped connection, and an answer that is not the JSON KillB documents. The pause before a
    retry is KillB's Retry-After when it sent one, else exponential backoff with jitter; a pause
    that would end after `deadline` seconds (counted from the call's start) ends the call at
    once, with the last error (RateLimited, with its retry_after, for a 429).

    Never retried: KillB's refusals (4xx) and a TLS failure. A redirect (3xx) is never followed,
    so a password, refresh token or access token never goes to another host: it is a refusal
    (KillBError, not retried), since asking again gets the same redirect; an operator has to
    look at KILLB_BASE_URL or at KillB.

    Not for use by several threads at once (as requests.Session).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff_factor: float = 0.5,
        deadline: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        allow_docker_host: bool = False,
    ) -> None:
        """timeout is both the connect and the read timeout of each attempt. An empty api_key
        means none; one an HTTP header cannot carry is a ValueError naming the field only.
        allow_docker_host: base_url may be http://host.docker.internal:PORT (under sam local).
        sleep: how retry waits are waited; by default time.sleep, looked up at each wait."""
        if api_key and not is_visible_ascii(api_key):
            raise ValueError("apiKey: holds characters an HTTP header cannot carry")
        self.base_url = secure_base_url(base_url, allow_docker_host=allow_docker_host)
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_factor = backoff_factor
        self.deadline = deadline
        self._clock = clock
        self._sleep = sleep or _wait
        self._session = requests.Session()
        adapter = HTTPAdapter(max_retries=0)  # the loop in _send is the only one
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers.update(
            {
                "User-Agent": USER_AGENT,
                "Content-Type": "application/json",
                "Accept": "application/json",
            }
        )
        if api_key:
            self._session.headers["x-api-key"] = api_key

    def __repr__(self) -> str:
        api_key = "set" if self._api_key else "none"
        return f"KillBAuthClient(base_url={self.base_url!r}, api_key={api_key})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def login(self, email: str, password: str) -> TokenSet:
        """A new session for the account. InvalidCredentials when KillB refuses the login."""
        body = {"email": email, "password": password}
        return self._send("login", LOGIN_PATH, self._read_tokens, body=body)

    def refresh(self, refresh_token: str) -> TokenSet:
        """New tokens for a refresh token. TokenRejected when KillB refuses it: log in instead."""
        body = {"refreshToken": refresh_token}
        return self._send("refresh", REFRESH_PATH, self._read_tokens, body=body)

    def logout(self, access_token: str) -> None:
        """Ends the access token's session at KillB: its access and refresh tokens stop working.

        TokenRejected when KillB refuses the token (401/403: already revoked, expired or
        unknown), KillBError for another refusal, KillBUnavailable when KillB gives no answer.
        """
        headers = self._bearer("logout", access_token)
        self._send("logout", LOGOUT_PATH, self._read_logout, headers=headers, about=access_token)

    def me(self, access_token: str) -> dict[str, Any]:
        """The token's claims as KillB reads them (id, email, customerId, iat, exp...): KillB
        still accepts the token.

        TokenRejected when KillB refuses the token (401, AUTH.0002, AUTH.0003), KillBError for
        another refusal, KillBUnavailable when KillB gives no usable answer (after the retries).
        """
        headers = self._bearer("me", access_token)
        return self._send(
            "me", ME_PATH, self._read_claims, method="GET", headers=headers, about=access_token
        )

    def _bearer(self, endpoint: str, access_token: str) -> dict[str, str]:
        """The Authorization header for a call made with an access token."""
        if not is_visible_ascii(access_token):
            # Stored tokens are checked on the way in; this keeps a bad one out of a header.
            error = TokenRejected("the access token cannot be sent in a header: not sent")
            self._log(endpoint, time.monotonic(), 0, None, None, error=error)
            raise error
        return {"Authorization": f"Bearer {access_token}"}

    # The one retry loop

    def _send[T](
        self,
        endpoint: str,
        path: str,
        read: Callable[[str, requests.Response, float], T],
        *,
        method: str = "POST",
        body: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        about: str | None = None,
    ) -> T:
        """One call, retried as the class says; `about` is the token the call is about, whose
        fingerprint the log line carries (a new token set's own, when the call returns one)."""
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            answer = self._attempt(method, path, body, headers)
            status = answer.status_code if isinstance(answer, requests.Response) else None
            if isinstance(answer, _Failure):
                error: KillBError = KillBUnavailable(f"KillB {endpoint} {answer}")
                retryable, retry_after = answer.retryable, None
            else:
                answered_at = self._clock()
                try:
                    result = read(endpoint, answer, answered_at)
                except KillBError as refused_or_unusable:
                    error = refused_or_unusable
                else:
                    token = result.access_token if isinstance(result, TokenSet) else about
                    self._log(endpoint, started, attempts, status, token)
                    return result
                # Everything KillB did not answer usably is worth asking again; refusals are not.
                retryable = isinstance(error, KillBUnavailable)
                retry_after = _retry_after(answer, answered_at)
            pause = self._pause(attempts, retry_after, started) if retryable else None
            if pause is None:
                self._log(endpoint, started, attempts, status, about, error=error)
                raise error
            self._sleep(pause)

    def _attempt(
        self, method: str, path: str, body: dict[str, str] | None, headers: dict[str, str] | None
    ) -> requests.Response | _Failure:
        try:
            return self._session.request(
                method,
                self.base_url + path,
                data=json.dumps(body) if body is not None else None,
                headers=headers,
                timeout=(self.timeout, self.timeout),
                allow_redirects=False,  # a redirect must not carry the password elsewhere
            )
        except requests.RequestException as error:
            # Returned, not raised: requests' exception holds the request, its body and headers,
            # and must be neither the cause nor the context of the error the caller sees.
            return _Failure.of(error)

    def _pause(self, attempts: int, retry_after: float | None, started: float) -> float | None:
        """Seconds to wait before the next attempt, or None: stop now.

        KillB's Retry-After when it sent one (never less), else exponential backoff with jitter.
        """
        if attempts > self.max_retries:
            return None
        if retry_after is not None:
            pause = retry_after
        else:
            jitter = random.uniform(0, self.backoff_factor)  # noqa: S311 - jitter, not a secret
            pause = self.backoff_factor * 2.0 ** (attempts - 1) + jitter
        if time.monotonic() + pause > started + self.deadline:
            return None
        return pause

    # What an answer means

    def _read_tokens(
        self, endpoint: str, response: requests.Response, answered_at: float
    ) -> TokenSet:
        _raise_unless_success(endpoint, response, answered_at)
        body = _json_object(response) or {}
        access_token, refresh_token, expires_in = (
            body.get(key) for key in ("accessToken", "refreshToken", "expiresIn")
        )
        if (
            not is_visible_ascii(access_token)
            or not is_visible_ascii(refresh_token)
            or isinstance(expires_in, bool)
            or not isinstance(expires_in, int | float)
            or not math.isfinite(expires_in)
            or expires_in <= 0
        ):
            raise UnexpectedResponse(
                "KillB's answer is not the token JSON it documents", status=response.status_code
            )
        if expires_in > MAX_EXPIRES_IN_MS:
            logger.warning(
                "KillB's expiresIn is suspicious: more than 24 hours, read as 24 hours",
                extra={
                    "killb_endpoint": endpoint,
                    "expires_in_ms": expires_in,
                    "token_fingerprint": fingerprint(access_token),
                },
            )
            expires_in = MAX_EXPIRES_IN_MS
        # expiresIn is in milliseconds (KillB's own Python SDK reads it as seconds).
        return TokenSet(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_at=int(answered_at + expires_in / 1000),
            obtained_at=int(answered_at),
        )

    def _read_logout(self, endpoint: str, response: requests.Response, answered_at: float) -> None:
        _raise_unless_success(endpoint, response, answered_at)  # the body says nothing more

    def _read_claims(
        self, endpoint: str, response: requests.Response, answered_at: float
    ) -> dict[str, Any]:
        _raise_unless_success(endpoint, response, answered_at)
        claims = _json_object(response)
        if claims is None:
            raise UnexpectedResponse(
                "KillB's answer is not the claims JSON it documents", status=response.status_code
            )
        return claims

    def _log(
        self,
        endpoint: str,
        started: float,
        attempts: int,
        status: int | None,
        token: str | None,
        *,
        error: KillBError | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "killb_endpoint": endpoint,
            "killb_status": status,
            "attempts": attempts,
            "duration_ms": round((time.monotonic() - started) * 1000),
        }
        if token is not None:
            fields["token_fingerprint"] = fingerprint(token)
        if error is None:
            logger.info("KillB call succeeded", extra=fields)
        else:
            # The error's message is ours: status and errorCode only, never KillB's text.
            fields |= {"error": type(error).__name__, "error_message": str(error)}
            logger.warning("KillB call failed", extra=fields)


def _wait(seconds: float) -> None:
    time.sleep(seconds)


def _raise_unless_success(endpoint: str, response: requests.Response, answered_at: float) -> None:
    """Nothing for 200/201; otherwise the error that KillB's answer means for this endpoint."""
    status = response.status_code
    if status in (200, 201):
        return
    error_code = _error_code(response)
    if status == 429:
        raise RateLimited(
            f"KillB rate-limited the {endpoint}",
            status=status,
            error_code=error_code,
            retry_after=_retry_after(response, answered_at),
        )
    if status >= 500:
        raise KillBUnavailable(
            f"KillB failed to answer the {endpoint}", status=status, error_code=error_code
        )
    if 300 <= status < 400:
        raise KillBError(f"KillB redirected the {endpoint} elsewhere: not followed", status=status)
    if 400 <= status < 500:
        raise _refusal(endpoint, status, error_code)
    raise UnexpectedResponse(
        f"KillB answered the {endpoint} with an unexpected status", status=status
    )


def _refusal(endpoint: str, status: int, error_code: str | None) -> KillBError:
    """What a 4xx means: the credentials, the token, or some other refusal."""
    if endpoint == "login":
        if status in (400, 401, 403) or error_code == INVALID_CREDENTIALS:
            return InvalidCredentials(
                "KillB refused the login", status=status, error_code=error_code
            )
        return KillBError("KillB refused the login", status=status, error_code=error_code)
    if endpoint == "refresh":
        # Any refusal of a refresh token has one answer: log in again.
        return TokenRejected(
            "KillB refused the refresh token", status=status, error_code=error_code
        )
    # At the token check only a refusal of the token itself counts: a 403 for the API key
    # (AUTH.0004) says nothing of the token.
    token_refused = (
        status == 401 or error_code in TOKEN_REFUSED_CODES
        if endpoint == "me"
        else status in (401, 403)
    )
    if token_refused:
        return TokenRejected("KillB refused the access token", status=status, error_code=error_code)
    return KillBError(f"KillB refused the {endpoint}", status=status, error_code=error_code)


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        value = json.loads(response.content)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _error_code(response: requests.Response) -> str | None:
    code = (_json_object(response) or {}).get("errorCode")
    if isinstance(code, str) and _ERROR_CODE.fullmatch(code):
        return code
    return None


def _retry_after(response: requests.Response, now: float) -> float | None:
    """KillB's Retry-After in seconds (delta-seconds or an HTTP-date), uncapped; None when
    absent or unreadable (the backoff decides then)."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000" reads as no zone; HTTP dates are GMT
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)
