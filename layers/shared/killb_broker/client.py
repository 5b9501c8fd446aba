"""KillB's auth API over HTTP: log in, refresh, and turn every answer into a TokenSet or one of
the project's errors. Knows nothing of AWS; the only module that imports requests/urllib3.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    InvalidHeader,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

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
from killb_broker.tokens import TokenSet

LOGIN_PATH = "/api/v2/auth/login"
REFRESH_PATH = "/api/v2/auth/refresh"
USER_AGENT = f"killb-credential-broker/{__version__}"

INVALID_CREDENTIALS = "AUTH.0001"

RETRYABLE_STATUSES = frozenset({429, *range(500, 600)})
# KillB's codes look like AUTH.0001; anything else in that field is not repeated in our messages.
_ERROR_CODE = re.compile(r"[A-Z][A-Z_]{0,15}\.[0-9]{1,6}")


@dataclass(slots=True)
class _CallBudget:
    """What one login or refresh may still spend, shared by every copy of its Retry."""

    deadline_at: float  # time.monotonic() after which no new attempt starts
    max_retries: int
    retries_used: int = 0

    @property
    def retries_left(self) -> int:
        return self.max_retries - self.retries_used


class _BoundedRetry(Retry):
    """urllib3's Retry, bounded by the call's deadline and with Retry-After capped.

    urllib3 copies a Retry on every increment (Retry.new), so the budget is shared by reference.
    """

    # Only status_forcelist decides: 413 with Retry-After is a 4xx and is never retried.
    RETRY_AFTER_STATUS_CODES = frozenset()

    def __init__(
        self, *args: Any, budget: _CallBudget, max_retry_after: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.budget = budget
        self.max_retry_after = max_retry_after

    def new(self, **kw: Any) -> Self:
        kw.setdefault("budget", self.budget)
        kw.setdefault("max_retry_after", self.max_retry_after)
        return super().new(**kw)

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), self.max_retry_after)

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:
            return None  # an unreadable Retry-After falls back to the exponential backoff

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        next_sleep = retry.get_backoff_time()
        if response is not None and self.respect_retry_after_header:
            next_sleep = self.get_retry_after(response) or next_sleep
        if time.monotonic() + next_sleep > self.budget.deadline_at:
            reason = error or ResponseError("the call's deadline would pass")
            raise MaxRetryError(_pool, url, reason) from reason
        self.budget.retries_used += 1
        return retry


class KillBAuthClient:
    """Logs in to KillB and refreshes its tokens, with timeouts, bounded retries and typed errors.

    One call (login or refresh) makes at most 1 + max_retries attempts, and none starts after
    `deadline` seconds. Not for use by several threads at once (as requests.Session).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff_factor: float = 0.5,
        max_retry_after: float = 20.0,
        deadline: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = secure_base_url(base_url)
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_factor = backoff_factor
        self.max_retry_after = max_retry_after
        self.deadline = deadline
        self._clock = clock
        self._adapter = HTTPAdapter()
        self._session = requests.Session()
        self._session.mount("https://", self._adapter)
        self._session.mount("http://", self._adapter)
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
        return self._call("login", LOGIN_PATH, {"email": email, "password": password})

    def refresh(self, refresh_token: str) -> TokenSet:
        """New tokens for a refresh token. TokenRejected when KillB refuses it: log in instead."""
        return self._call("refresh", REFRESH_PATH, {"refreshToken": refresh_token})

    def _call(self, endpoint: str, path: str, body: dict[str, str]) -> TokenSet:
        started = time.monotonic()
        budget = _CallBudget(deadline_at=started + self.deadline, max_retries=self.max_retries)
        status: int | None = None
        try:
            while True:
                response = self._post(endpoint, path, body, budget)
                status = response.status_code
                try:
                    tokens = self._tokens_or_error(endpoint, response, answered_at=self._clock())
                    break
                except UnexpectedResponse:
                    # Not KillB's JSON is "KillB unavailable", as a 5xx is: ask again, bounded.
                    if not self._may_retry(budget):
                        raise
                    self._sleep_before_retry(budget)
        except KillBError as error:
            self._log(endpoint, started, budget, status, error=error)
            raise
        self._log(endpoint, started, budget, status, fingerprint=tokens.fingerprint)
        return tokens

    def _post(
        self, endpoint: str, path: str, body: dict[str, str], budget: _CallBudget
    ) -> requests.Response:
        # The Retry carries this call's budget, so it is set on the adapter per call.
        self._adapter.max_retries = _BoundedRetry(
            total=budget.retries_left,
            connect=budget.retries_left,
            read=budget.retries_left,
            status=budget.retries_left,
            other=0,  # a TLS failure will not go away on a retry
            allowed_methods=None,  # POST too: a repeated login or refresh is harmless
            status_forcelist=RETRYABLE_STATUSES,
            backoff_factor=self.backoff_factor,
            backoff_jitter=self.backoff_factor,
            backoff_max=self.deadline,
            respect_retry_after_header=True,
            raise_on_status=False,
            budget=budget,
            max_retry_after=self.max_retry_after,
        )
        try:
            return self._session.post(
                self.base_url + path,
                data=json.dumps(body),
                timeout=(self.timeout, self.timeout),
                allow_redirects=False,  # a redirect must not carry the password elsewhere
            )
        except requests.RequestException as error:
            failure = _failure(error)
        # Raised out here, so the requests exception (which holds the request, its body and
        # headers) is neither the cause nor the context of ours.
        raise KillBUnavailable(
            f"KillB {endpoint} {failure} after {budget.retries_used + 1} attempts"
        )

    def _may_retry(self, budget: _CallBudget) -> bool:
        return budget.retries_left > 0 and (
            time.monotonic() + self._backoff(budget) <= budget.deadline_at
        )

    def _backoff(self, budget: _CallBudget) -> float:
        # urllib3's formula: no sleep before the first retry, then factor * 2^n.
        if budget.retries_used == 0:
            return 0.0
        return self.backoff_factor * 2.0**budget.retries_used

    def _sleep_before_retry(self, budget: _CallBudget) -> None:
        pause = self._backoff(budget)
        if pause:
            pause += random.random() * self.backoff_factor  # noqa: S311 - jitter, not a secret
            time.sleep(max(0.0, min(pause, budget.deadline_at - time.monotonic())))
        budget.retries_used += 1

    def _tokens_or_error(
        self, endpoint: str, response: requests.Response, answered_at: float
    ) -> TokenSet:
        status = response.status_code
        if status in (200, 201):
            return _token_set(response, answered_at)
        error_code = _error_code(response)
        if status == 429:
            raise RateLimited(
                f"KillB rate-limited the {endpoint}",
                status=status,
                error_code=error_code,
                retry_after=_retry_after(response),
            )
        if status >= 500:
            raise KillBUnavailable(
                f"KillB failed to answer the {endpoint}", status=status, error_code=error_code
            )
        if 400 <= status < 500:
            if endpoint == "login":
                if status in (400, 401, 403) or error_code == INVALID_CREDENTIALS:
                    raise InvalidCredentials(
                        "KillB refused the login", status=status, error_code=error_code
                    )
                raise KillBError("KillB refused the login", status=status, error_code=error_code)
            # Any refusal of a refresh token has one answer: log in again.
            raise TokenRejected(
                "KillB refused the refresh token", status=status, error_code=error_code
            )
        raise UnexpectedResponse(
            f"KillB answered the {endpoint} with an unexpected status", status=status
        )

    def _log(
        self,
        endpoint: str,
        started: float,
        budget: _CallBudget,
        status: int | None,
        *,
        fingerprint: str | None = None,
        error: KillBError | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "killb_endpoint": endpoint,
            "killb_status": status,
            "attempts": budget.retries_used + 1,
            "duration_ms": round((time.monotonic() - started) * 1000),
        }
        if fingerprint:
            logger.info("KillB call succeeded", extra={**fields, "token_fingerprint": fingerprint})
        else:
            # The error's message is ours: status and errorCode only, never KillB's text.
            fields |= {"error": type(error).__name__, "error_message": str(error)}
            logger.warning("KillB call failed", extra=fields)


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        value = json.loads(response.content)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _token_set(response: requests.Response, answered_at: float) -> TokenSet:
    body = _json_object(response) or {}
    access_token, refresh_token, expires_in = (
        body.get(key) for key in ("accessToken", "refreshToken", "expiresIn")
    )
    if (
        not isinstance(access_token, str)
        or not access_token
        or not isinstance(refresh_token, str)
        or not refresh_token
        or isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not math.isfinite(expires_in)
        or expires_in <= 0
    ):
        raise UnexpectedResponse(
            "KillB's answer is not the token JSON it documents", status=response.status_code
        )
    # expiresIn is in milliseconds (KillB's own Python SDK reads it as seconds).
    return TokenSet(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_at=int(answered_at + expires_in / 1000),
        obtained_at=int(answered_at),
    )


def _error_code(response: requests.Response) -> str | None:
    code = (_json_object(response) or {}).get("errorCode")
    if isinstance(code, str) and _ERROR_CODE.fullmatch(code):
        return code
    return None


def _retry_after(response: requests.Response) -> float | None:
    """KillB's Retry-After in seconds, uncapped: the caller decides how long to stay away."""
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


def _failure(error: requests.RequestException) -> str:
    """What went wrong, in words that hold no URL and no detail of the connection."""
    if isinstance(error, requests.Timeout):
        return "timed out"
    reason = (
        error.args[0].reason if error.args and isinstance(error.args[0], MaxRetryError) else None
    )
    if isinstance(reason, ReadTimeoutError) or (
        isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError)
    ):
        return "timed out"
    return "failed to connect, or lost the connection,"
