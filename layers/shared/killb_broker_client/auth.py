"""BrokerAuth: KillB auth headers from the broker, kept until shortly before the token expires.

One fetch at a time: when many threads find the cache empty, one asks the broker and the others
wait for its answer (or its error). A 503 or 429 is retried a bounded number of times, after the
Retry-After the broker sent.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from botocore.credentials import Credentials
from botocore.session import Session as BotocoreSession
from requests.auth import AuthBase
from requests.models import PreparedRequest

from killb_broker_client.errors import (
    BrokerAccessDenied,
    BrokerClientError,
    BrokerRequestInvalid,
    BrokerUnavailable,
)
from killb_broker_client.signing import broker_base_url, region_of, sigv4_headers

logger = logging.getLogger(__name__)

AUTH_HEADERS_PATH = "/v1/auth-headers"
MIN_TTL_LIMIT = 1800  # the broker's own bound on minTtl
CONNECT_TIMEOUT = 5.0
# Longer than API Gateway's 29 s integration timeout, so the gateway's answer arrives first.
READ_TIMEOUT = 31.0
# Names the client in API Gateway's access log and the broker's events.
USER_AGENT = "killb-broker-client/0.1.0"
# A 503 without Retry-After: wait this long, doubling each time.
FIRST_RETRY_DELAY = 0.5


def fingerprint(token: str) -> str:
    """The first 12 hex digits of the token's SHA-256, as the broker logs it."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class IssuedHeaders:
    """Headers the broker issued, and the monotonic moment after which they are not used."""

    headers: dict[str, str] = field(repr=False)
    use_until: float

    def usable(self) -> bool:
        return time.monotonic() < self.use_until


def _keep_signature(request: PreparedRequest) -> PreparedRequest:
    """Request-level auth for the broker call, so neither session.auth nor ~/.netrc replaces
    the SigV4 Authorization header (and a session whose auth is a BrokerAuth cannot recurse)."""
    return request


class BrokerAuth(AuthBase):
    """`session.auth = BrokerAuth(api_url)`: each request carries the broker's current headers.

    min_ttl: seconds the token must be valid for when the broker issues it (0..1800).
    refresh_margin: stop using cached headers this many seconds before the token expires.
    retries: further attempts after a 503 or 429; max_retry_after: longest Retry-After waited.
    """

    def __init__(
        self,
        api_url: str,
        *,
        min_ttl: int = 300,
        region: str | None = None,
        session: requests.Session | None = None,
        credentials: Credentials | None = None,
        refresh_margin: int = 60,
        retries: int = 2,
        max_retry_after: float = 10.0,
    ) -> None:
        if type(min_ttl) is not int or not 0 <= min_ttl <= MIN_TTL_LIMIT:
            raise ValueError(f"min_ttl must be a whole number of seconds from 0 to {MIN_TTL_LIMIT}")
        if refresh_margin < 0 or retries < 0 or max_retry_after < 0:
            raise ValueError("refresh_margin, retries and max_retry_after must not be negative")
        self.api_url = broker_base_url(api_url)
        self.min_ttl = min_ttl
        self.refresh_margin = refresh_margin
        self.retries = retries
        self.max_retry_after = max_retry_after
        self._botocore = BotocoreSession()
        self.region = region_of(self.api_url, region, self._botocore)
        self._session = session or requests.Session()
        self._credentials = credentials
        self._lock = threading.Lock()
        self._issued: IssuedHeaders | None = None
        self._in_flight: Future[IssuedHeaders] | None = None

    def __repr__(self) -> str:
        return (
            f"BrokerAuth(api_url={self.api_url!r}, min_ttl={self.min_ttl}, region={self.region!r})"
        )

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        r.headers.update(self.headers())
        return r

    def headers(self) -> dict[str, str]:
        """Authorization (and x-api-key when the account has one), from cache or the broker."""
        issued = self._issued
        if issued is None or not issued.usable():
            issued = self._single_flight()
        return dict(issued.headers)

    def _single_flight(self) -> IssuedHeaders:
        with self._lock:
            if self._issued is not None and self._issued.usable():
                return self._issued
            flight = self._in_flight
            leader = flight is None
            if flight is None:
                flight = self._in_flight = Future()
        if not leader:
            return flight.result()
        try:
            issued = self._fetch()
        except BaseException as error:
            with self._lock:
                self._in_flight = None
            flight.set_exception(error)
            raise
        with self._lock:
            self._issued, self._in_flight = issued, None
        flight.set_result(issued)
        return issued

    def _fetch(self) -> IssuedHeaders:
        url = f"{self.api_url}{AUTH_HEADERS_PATH}?minTtl={self.min_ttl}"
        attempt = 0
        while True:
            sent_at = time.monotonic()
            response = self._get(url)
            if response.status_code == 200:
                return self._issued_from(response, sent_at)
            error = error_from(response)
            if not isinstance(error, BrokerUnavailable) or attempt >= self.retries:
                raise error
            delay = error.retry_after
            if delay is None:
                delay = FIRST_RETRY_DELAY * 2**attempt
            if delay > self.max_retry_after:
                raise error  # the broker says not soon: let the caller decide, do not block
            logger.info(
                "broker unavailable, retrying",
                extra={"status": error.status, "errorCode": error.error_code, "delay": delay},
            )
            time.sleep(delay)
            attempt += 1

    def _get(self, url: str) -> requests.Response:
        signed = sigv4_headers("GET", url, self._aws_credentials(), self.region)
        try:
            return self._session.get(
                url,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT, **signed},
                auth=_keep_signature,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                allow_redirects=False,
            )
        except requests.RequestException as error:
            raise BrokerClientError(
                f"the broker could not be reached ({type(error).__name__})"
            ) from error

    def _aws_credentials(self) -> Credentials:
        if self._credentials is None:
            self._credentials = self._botocore.get_credentials()
        if self._credentials is None:
            raise BrokerClientError("no AWS credentials found to sign the broker call")
        return self._credentials

    def _issued_from(self, response: requests.Response, sent_at: float) -> IssuedHeaders:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        headers = body.get("headers") if isinstance(body, dict) else None
        expires_in = body.get("expiresIn") if isinstance(body, dict) else None
        if (
            not isinstance(headers, dict)
            or not all(isinstance(v, str) for v in headers.values())
            or "Authorization" not in headers
            or type(expires_in) is not int
        ):
            raise BrokerClientError("the broker's answer is not the documented JSON", status=200)
        token = headers["Authorization"].removeprefix("Bearer ")
        logger.debug(
            "auth headers received",
            extra={"fingerprint": fingerprint(token), "expiresIn": expires_in},
        )
        # expiresIn counts from the broker's answer; measured from when the call was sent, on
        # this machine's monotonic clock, a skewed wall clock cannot keep an expired token.
        return IssuedHeaders(headers=headers, use_until=sent_at + expires_in - self.refresh_margin)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds (fractions accepted) or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return None if math.isnan(seconds) else max(seconds, 0.0)


def error_from(response: requests.Response) -> BrokerClientError:
    """The typed error for a broker (or API Gateway) error answer, with its errorCode."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error_code = message = None
    if isinstance(body, dict):
        code, text = body.get("errorCode"), body.get("message")
        error_code = code if isinstance(code, str) else None
        if isinstance(text, list):
            message = "; ".join(str(part) for part in text)
        elif isinstance(text, str):
            message = text  # API Gateway's own answers carry a plain string
    status = response.status_code
    message = (message or f"the broker answered HTTP {status}")[:300]
    if status in {429, 503}:
        return BrokerUnavailable(
            message,
            status=status,
            error_code=error_code,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    kinds: dict[int, type[BrokerClientError]] = {
        400: BrokerRequestInvalid,
        403: BrokerAccessDenied,
    }
    return kinds.get(status, BrokerClientError)(message, status=status, error_code=error_code)


_shared: dict[tuple[str, int, str | None], BrokerAuth] = {}
_shared_lock = threading.Lock()


def get_auth_headers(
    api_url: str, *, min_ttl: int = 300, region: str | None = None
) -> dict[str, str]:
    """The broker's current headers for code that does not use requests; cached per process."""
    key = (broker_base_url(api_url), min_ttl, region)
    with _shared_lock:
        auth = _shared.get(key)
        if auth is None:
            auth = _shared[key] = BrokerAuth(api_url, min_ttl=min_ttl, region=region)
    return auth.headers()
