"""BrokerAuth: KillB auth headers from the broker, kept while the token still lasts minTtl.

One fetch at a time: when many threads find the cache empty, one asks the broker and the others
wait for its answer (or its error). Given several brokers (failover.py), a fetch asks them in
turn until one answers. A 503 or 429 is retried a bounded number of times, after the
Retry-After the broker sent.

On the KillB side, the headers travel only where they are safe (https://, or a loopback host),
never follow a redirect to another origin, and a 401 for the token sent is reported to the broker
with the next fetch, then the request is sent once more with the new token (as google-auth's
AuthorizedSession does after a refresh).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from botocore.credentials import Credentials
from botocore.exceptions import NoCredentialsError
from botocore.session import Session as BotocoreSession
from requests.auth import AuthBase
from requests.models import PreparedRequest

from killb_broker_client.credentials import with_aws_trouble_as_client_error
from killb_broker_client.errors import (
    BrokerAccessDenied,
    BrokerClientError,
    BrokerRequestInvalid,
    BrokerUnavailable,
    BrokerUnreachable,
    InsecureRequest,
)
from killb_broker_client.failover import BrokerList, broker_urls, moves_on
from killb_broker_client.signing import (
    MISSING_API_ID,
    BrokerEndpoint,
    broker_base_url,
    broker_endpoint,
    is_loopback,
    sigv4_headers,
)

logger = logging.getLogger(__name__)

AUTH_HEADERS_PATH = "/v1/auth-headers"
HEALTH_PATH = "/v1/health"
MIN_TTL_LIMIT = 1800  # the broker's own bound on minTtl
CONNECT_TIMEOUT = 5.0
# Longer than API Gateway's 29 s integration timeout, so the gateway's answer arrives first.
READ_TIMEOUT = 31.0
# Names the client in API Gateway's access log and the broker's events.
USER_AGENT = "killb-broker-client/0.1.0"
# A 503 without Retry-After: wait this long, doubling each time.
FIRST_RETRY_DELAY = 0.5
HEALTH_STATUSES = frozenset({"ok", "refreshing", "expired", "missing"})

FINGERPRINT = re.compile(r"[0-9a-f]{12}")
# What a header value may hold and still be sent as the broker issued it: visible ASCII only
# (no space, CR, LF, NUL or anything beyond ASCII), as the broker itself checks its tokens.
VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
BEARER = "Bearer "
# The headers BrokerAuth puts on a request, dropped together when a redirect leaves the origin.
BROKER_HEADERS = ("Authorization", "x-api-key")
DEFAULT_PORTS = {"http": 80, "https": 443}


def fingerprint(token: str) -> str:
    """The first 12 hex digits of the token's SHA-256, as the broker logs it."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def check_fingerprint(value: str) -> str:
    """A rejected token's fingerprint, as the broker takes it (12 lowercase hex digits)."""
    if not isinstance(value, str) or not FINGERPRINT.fullmatch(value):
        # Never echoed: a caller who passes the token itself by mistake must not see it printed.
        raise ValueError("rejected must be a token fingerprint: 12 lowercase hex digits")
    return value


@dataclass(frozen=True, slots=True)
class IssuedHeaders:
    """The broker's answer: the headers it issued, the monotonic moment after which they are
    not used, when the token expires, and where KillB is for that token.

    killb_base_url: the KillB API root the token belongs to (sandbox or production), None when
    the broker is older than that field. expires_at: the broker's RFC 3339 expiresAt.
    """

    headers: dict[str, str] = field(repr=False)
    fingerprint: str
    use_until: float
    killb_base_url: str | None = None
    expires_at: str | None = None

    def usable(self) -> bool:
        return time.monotonic() < self.use_until


@dataclass(frozen=True, slots=True)
class BrokerHealth:
    """The broker's GET /v1/health: whether it holds a usable token, and until when."""

    status: str
    expires_at: str | None
    expires_in: int | None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "expiresAt": self.expires_at, "expiresIn": self.expires_in}


def _keep_signature(request: PreparedRequest) -> PreparedRequest:
    """Request-level auth for the broker call, so neither session.auth nor ~/.netrc replaces
    the SigV4 Authorization header (and a session whose auth is a BrokerAuth cannot recurse)."""
    return request


class BrokerAuth(AuthBase):
    """`session.auth = BrokerAuth(broker_url)`: each request carries the broker's current headers.

    broker_url: the broker API's URL (stage included), or an ordered list of them (several
    regions; a comma-separated string is a list too). Each is signed for its own region: the
    one its host names, else AWS_REGION and the profile's. One that cannot be reached, times out
    or answers 5xx passes the call to the next; the one that answered is kept first for 60 s,
    then the first is tried again; a 4xx is the answer and never moves on. When every broker
    fails, the last one's error is raised.
    min_ttl: seconds the token must still be valid for whenever a request carries it (0..1800).
    The broker is asked for a token that lasts that long, and cached headers are dropped once
    their token has less than that left.
    region: the region to sign for, for every broker URL (it wins over what a host names).
    api_id: the broker API's id, sent as x-apigw-api-id to a VPC endpoint host
    (vpce-....execute-api.REGION.vpce.amazonaws.com), which serves many APIs.
    retries: further attempts after a 503 or 429; max_retry_after: longest Retry-After waited.
    timeout: the connect and read timeouts of a broker call, in seconds.
    clock: the monotonic clock the 60 s a broker is kept are measured on.

    Requests must go to https://, or to a loopback host: a plain http:// request to any other
    host raises InsecureRequest before anything is sent. Trouble with the caller's AWS
    credentials raises AwsCredentialsError.
    """

    def __init__(
        self,
        broker_url: str | Sequence[str],
        *,
        min_ttl: int = 300,
        region: str | None = None,
        api_id: str | None = None,
        session: requests.Session | None = None,
        credentials: Credentials | None = None,
        retries: int = 2,
        max_retry_after: float = 10.0,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if type(min_ttl) is not int or not 0 <= min_ttl <= MIN_TTL_LIMIT:
            raise ValueError(f"min_ttl must be a whole number of seconds from 0 to {MIN_TTL_LIMIT}")
        if retries < 0 or max_retry_after < 0:
            raise ValueError("retries and max_retry_after must not be negative")
        self._botocore = BotocoreSession()
        self.brokers = BrokerList(
            [
                broker_endpoint(url, region=region, api_id=api_id, botocore_session=self._botocore)
                for url in broker_urls(broker_url)
            ]
        )
        # The first broker's URL and region, as a single-broker caller knows them.
        self.api_url = self.brokers.endpoints[0].url
        self.region = self.brokers.endpoints[0].region
        self.min_ttl = min_ttl
        self.retries = retries
        self.max_retry_after = max_retry_after
        self.timeout = timeout
        self._clock = clock
        self._session = session or requests.Session()
        self._credentials = credentials
        self._lock = threading.Lock()
        self._issued: IssuedHeaders | None = None
        self._in_flight: Future[IssuedHeaders] | None = None
        # The fingerprint KillB refused, told to the broker with the next fetch.
        self._rejected: str | None = None

    def __repr__(self) -> str:
        urls = [endpoint.url for endpoint in self.brokers.endpoints]
        shown = urls[0] if len(urls) == 1 else urls
        return f"BrokerAuth(broker_url={shown!r}, min_ttl={self.min_ttl}, region={self.region!r})"

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        require_safe_destination(r.url or "")
        r.headers.update(self.headers())
        # One hook per caller request; requests shares it with the redirects it follows, so the
        # whole chain gets one retry at most.
        r.hooks["response"].append(_ResponseHook(self))
        return r

    def headers(self, *, rejected: str | None = None) -> dict[str, str]:
        """Authorization (and x-api-key when the account has one), from cache or the broker.

        rejected: the fingerprint of a token KillB refused. Cached headers holding it are
        dropped and the broker is told, so it hands out another token.
        """
        return self.issued(rejected=rejected).headers

    def issued(self, *, rejected: str | None = None) -> IssuedHeaders:
        """The broker's whole current answer (headers, expiry, killbBaseUrl), cached as
        headers() is; rejected as for headers()."""
        if rejected is not None:
            self._reject(check_fingerprint(rejected))
        issued = self._current()
        return replace(issued, headers=dict(issued.headers))

    def health(self) -> BrokerHealth:
        """The broker's GET /v1/health (no token in it), signed as the header fetch is, from the
        first broker that answers."""
        endpoint, response = self._ask(HEALTH_PATH)
        if response.status_code != 200:
            raise error_from(response, endpoint.url)
        body = _json_object(response)
        status, expires_at, expires_in = (
            body.get("status"),
            body.get("expiresAt"),
            body.get("expiresIn"),
        )
        if (
            status not in HEALTH_STATUSES
            or not (expires_at is None or isinstance(expires_at, str))
            or not (expires_in is None or type(expires_in) is int)
        ):
            raise BrokerClientError(
                "the broker's answer is not the documented JSON", status=200, url=endpoint.url
            )
        return BrokerHealth(str(status), expires_at, expires_in)

    def _current(self) -> IssuedHeaders:
        issued = self._issued
        if issued is None or not issued.usable():
            issued = self._single_flight()
        return issued

    def _reject(self, rejected: str) -> None:
        with self._lock:
            if self._issued is not None and self._issued.fingerprint != rejected:
                return  # already replaced: the broker has nothing to learn from this report
            self._issued = None
            self._rejected = rejected

    def _headers_after_rejection(self, rejected: str) -> dict[str, str] | None:
        """Headers with another token than the rejected one, or None when the broker has none.

        Reported only while the cache still holds the rejected token: when another thread
        already replaced it, the replacement is used without a second report.
        """
        self._reject(rejected)
        issued = self._current()
        return None if issued.fingerprint == rejected else dict(issued.headers)

    def _single_flight(self) -> IssuedHeaders:
        with self._lock:
            if self._issued is not None and self._issued.usable():
                return self._issued
            flight = self._in_flight
            leader = flight is None
            if flight is None:
                flight = self._in_flight = Future()
            rejected = self._rejected
        if not leader:
            return flight.result()
        try:
            issued = self._fetch(rejected)
        except BaseException as error:
            with self._lock:
                self._in_flight = None
            flight.set_exception(error)
            raise
        with self._lock:
            self._issued, self._in_flight = issued, None
            if self._rejected == rejected:
                self._rejected = None
        flight.set_result(issued)
        return issued

    def _fetch(self, rejected: str | None) -> IssuedHeaders:
        """The broker's answer, asking again after a 503 or 429 (its Retry-After, when short
        enough); any other error is raised at once."""
        path = f"{AUTH_HEADERS_PATH}?minTtl={self.min_ttl}"
        if rejected is not None:
            path += f"&rejected={rejected}"
            logger.info("reporting a token KillB rejected", extra={"rejected": rejected})
        attempt = 0
        while True:
            # Before the first broker is asked: a failover only makes the headers' use end
            # sooner, never later than the token lasts.
            sent_at = time.monotonic()
            try:
                endpoint, response = self._ask(path)
                if response.status_code == 200:
                    return self._issued_from(response, sent_at, endpoint.url)
                raise error_from(response, endpoint.url)
            except BrokerUnavailable as unavailable:
                error = unavailable
            if attempt >= self.retries:
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

    def _ask(self, path: str) -> tuple[BrokerEndpoint, requests.Response]:
        """The first answer that is not a 5xx, asking the brokers in BrokerList's order; when
        each cannot be reached or answers 5xx, the last one's error is raised."""
        last_error = BrokerClientError("no broker URL given")
        for endpoint in self.brokers.candidates(self._clock()):
            try:
                response = self._get(endpoint, path)
            except BrokerUnreachable as unreachable:
                last_error = unreachable
            else:
                if not moves_on(response.status_code):
                    self.brokers.answered(endpoint, self._clock())
                    return endpoint, response
                last_error = error_from(response, endpoint.url)
            if len(self.brokers.endpoints) > 1:
                logger.warning(
                    "broker failed, asking the next one",
                    extra={
                        "url": endpoint.url,
                        "status": last_error.status,
                        "errorCode": last_error.error_code,
                        "error": last_error.message,
                    },
                )
        raise last_error

    def _get(self, endpoint: BrokerEndpoint, path: str) -> requests.Response:
        if endpoint.api_id_missing:
            raise BrokerClientError(MISSING_API_ID, url=endpoint.url)
        url = f"{endpoint.url}{path}"
        signed = with_aws_trouble_as_client_error(
            self._botocore,
            lambda: sigv4_headers(
                "GET", url, self._aws_credentials(), endpoint.region, endpoint.routing_headers
            ),
        )
        try:
            return self._session.get(
                url,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT, **signed},
                auth=_keep_signature,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            shown = url.split("?", 1)[0]
            raise BrokerUnreachable(
                f"could not reach {shown} ({transport_cause(error)})", url=endpoint.url
            ) from error

    def _aws_credentials(self) -> Credentials:
        """The caller's credentials (botocore's chain), loaded once; botocore refreshes them."""
        if self._credentials is None:
            self._credentials = self._botocore.get_credentials()
        if self._credentials is None:
            raise NoCredentialsError
        return self._credentials

    def _issued_from(
        self, response: requests.Response, sent_at: float, broker_url: str
    ) -> IssuedHeaders:
        body = _json_object(response)
        headers, expires_in = body.get("headers"), body.get("expiresIn")
        expires_at = body.get("expiresAt")
        if (
            not isinstance(headers, dict)
            or not all(isinstance(v, str) for v in headers.values())
            or "Authorization" not in headers
            or type(expires_in) is not int
            or not (expires_at is None or isinstance(expires_at, str))
        ):
            raise BrokerClientError(
                "the broker's answer is not the documented JSON", status=200, url=broker_url
            )
        token = carriable_token(headers)
        killb_base_url = checked_killb_base_url(body.get("killbBaseUrl"), broker_url)
        token_fingerprint = fingerprint(token)
        logger.debug(
            "auth headers received",
            extra={
                "fingerprint": token_fingerprint,
                "expiresIn": expires_in,
                "killbBaseUrl": killb_base_url,
            },
        )
        # expiresIn counts from the broker's answer; measured from when the call was sent, on
        # this machine's monotonic clock, a skewed wall clock cannot keep an expired token.
        return IssuedHeaders(
            headers=headers,
            fingerprint=token_fingerprint,
            use_until=sent_at + expires_in - self.min_ttl,
            killb_base_url=killb_base_url,
            expires_at=expires_at,
        )


def checked_killb_base_url(value: object, broker_url: str) -> str | None:
    """The broker's killbBaseUrl, without a trailing slash; None when the broker sent none
    (an older broker), or a plain http:// URL beyond loopback (one only a container can reach,
    under `sam local`). A value that is not an http(s):// URL with a host and no user info,
    query or fragment makes the whole answer an error: headers must never be sent to a KillB
    the broker did not name clearly. The value is not repeated in the error."""
    if value is None:
        return None
    problem = "the broker's killbBaseUrl is not an https:// URL (http:// only to loopback)"
    if not isinstance(value, str) or not VISIBLE_ASCII.fullmatch(value):
        raise BrokerClientError(problem, status=200, url=broker_url)
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise BrokerClientError(problem, status=200, url=broker_url)
    if parts.username or parts.password:
        raise BrokerClientError(problem, status=200, url=broker_url)
    if parts.query or parts.fragment:
        raise BrokerClientError(
            "the broker's killbBaseUrl carries a query or a fragment", status=200, url=broker_url
        )
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        # A KillB over plain http beyond loopback is one only a container can reach (a refresher
        # under `sam local` calls http://host.docker.internal): nothing here may send headers
        # there, but the headers themselves are good. Not used, and said once per answer.
        logger.warning(
            "the broker's killbBaseUrl is plain http beyond loopback: not used",
            extra={"broker": broker_url},
        )
        return None
    return value.rstrip("/")


class _ResponseHook:
    """The response hook of one caller request: keeps the headers from leaving the origin on a
    redirect, and answers a 401 for the token sent with one report and one retry."""

    def __init__(self, auth: BrokerAuth) -> None:
        self._auth = auth
        self._retried = False

    def __call__(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.is_redirect:
            forget_headers_if_leaving(response, response.request)
        elif response.status_code == 401 and not self._retried:
            self._retried = True
            return self._retry_with_another_token(response, **kwargs)
        return response

    def _retry_with_another_token(
        self, response: requests.Response, **kwargs: Any
    ) -> requests.Response:
        request = response.request
        sent = request.headers.get("Authorization") or ""
        # No Bearer here: the header was dropped on a redirect or replaced by the caller, so
        # this 401 is not about a token BrokerAuth sent.
        if not sent.startswith(BEARER) or not isinstance(request.body, bytes | str | None):
            return response  # a streamed body cannot be sent twice
        # requests' own adapters set it; a stand-in transport (a test double) may not.
        connection = getattr(response, "connection", None)
        if connection is None:
            return response
        new_headers = self._auth._headers_after_rejection(fingerprint(sent.removeprefix(BEARER)))
        if new_headers is None:
            return response
        # Read and release the first answer, so the retry may reuse its connection.
        _ = response.content
        response.close()
        retry = request.copy()
        retry.headers.update(new_headers)
        # requests follows the retry's redirects by copying the first request: it must carry
        # the new headers, and lose them when the redirect leaves the origin.
        request.headers.update(new_headers)
        retried: requests.Response = connection.send(retry, **kwargs)
        retried.history.append(response)
        retried.request = retry
        if retried.is_redirect:
            forget_headers_if_leaving(retried, request)
        return retried


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(scheme)


def forget_headers_if_leaving(redirect: requests.Response, follows_from: PreparedRequest) -> None:
    """Drop the broker's headers from the request requests will copy for a redirect that leaves
    the origin (another host, port or scheme): requests itself drops only Authorization."""
    target = urljoin(redirect.url, redirect.headers.get("location", ""))
    if origin(target) == origin(redirect.url):
        return
    for name in BROKER_HEADERS:
        follows_from.headers.pop(name, None)


def require_safe_destination(url: str) -> None:
    """The KillB headers go over https://, or in clear only to this machine (loopback)."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    if scheme == "https" or (scheme == "http" and is_loopback(host)):
        return
    raise InsecureRequest(
        f"KillB auth headers are sent only over https:// or to a loopback host, "
        f"not to {scheme}://{host}"
    )


def carriable_token(headers: dict[str, str]) -> str:
    """The Bearer token, once every header is one a request can carry as it is."""
    for name, value in headers.items():
        if not HEADER_NAME.fullmatch(name):
            raise BrokerClientError(
                "the broker sent a header name no request can carry", status=200
            )
        is_authorization = name.lower() == "authorization"
        if is_authorization and not value.startswith(BEARER):
            raise BrokerClientError("the broker's Authorization is not a Bearer token", status=200)
        carried = value.removeprefix(BEARER) if is_authorization else value
        if not VISIBLE_ASCII.fullmatch(carried):
            raise BrokerClientError(
                f"the broker's {name} header is empty or holds characters no request can "
                "carry (space, CR, LF, NUL, non-ASCII)",
                status=200,
            )
    return headers["Authorization"].removeprefix(BEARER)


# What went wrong on the way to the broker, in a few words; the first match along the chain of
# causes wins (requests wraps urllib3, which wraps the socket's own error).
TRANSPORT_CAUSES: tuple[tuple[type[BaseException], str], ...] = (
    (requests.exceptions.ConnectTimeout, "connection timed out"),
    (requests.exceptions.ReadTimeout, "no answer within the read timeout"),
    (requests.exceptions.SSLError, "TLS handshake failed"),
    (requests.exceptions.InvalidURL, "invalid URL"),
    (ConnectionRefusedError, "connection refused"),
    (http.client.RemoteDisconnected, "connection closed without an answer"),
    (ConnectionResetError, "connection reset"),
    (socket.gaierror, "host name not resolved"),
    (TimeoutError, "timed out"),
)


def transport_cause(error: BaseException) -> str:
    pending, seen = [error], set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        for kind, cause in TRANSPORT_CAUSES:
            if isinstance(current, kind):
                return cause
        linked = (current.__cause__, current.__context__, getattr(current, "reason", None))
        pending += [item for item in (*linked, *current.args) if isinstance(item, BaseException)]
    return type(error).__name__


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}


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


def error_from(response: requests.Response, broker_url: str | None = None) -> BrokerClientError:
    """The typed error for a broker (or API Gateway) error answer, with its errorCode, and the
    broker (API root) that gave it."""
    body = _json_object(response)
    code, text = body.get("errorCode"), body.get("message")
    error_code = code if isinstance(code, str) else None
    message = None
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
            url=broker_url,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    kinds: dict[int, type[BrokerClientError]] = {
        400: BrokerRequestInvalid,
        403: BrokerAccessDenied,
    }
    return kinds.get(status, BrokerClientError)(
        message, status=status, error_code=error_code, url=broker_url
    )


URL_VARIABLE = "KILLB_BROKER_URL"

_shared: dict[tuple[tuple[str, ...], int, str | None, str | None], BrokerAuth] = {}
_shared_lock = threading.Lock()


def get_auth_headers(
    broker_url: str | Sequence[str] | None = None,
    *,
    min_ttl: int = 300,
    region: str | None = None,
    api_id: str | None = None,
    rejected: str | None = None,
) -> dict[str, str]:
    """The broker's current headers for code that does not use requests; cached per process.

    broker_url: one broker URL or an ordered list, as BrokerAuth takes them; by default
    $KILLB_BROKER_URL (one URL, or several separated by commas).
    Send them only over https:// (or to loopback). rejected: the fingerprint of a token KillB
    answered 401 to (fingerprint() of the Bearer token), so the broker hands out another.
    """
    if broker_url is None:
        broker_url = os.environ.get(URL_VARIABLE, "")
        if not broker_url.strip():
            raise ValueError(f"no broker URL: pass broker_url or set {URL_VARIABLE}")
    urls = tuple(broker_base_url(url) for url in broker_urls(broker_url))
    key = (urls, min_ttl, region, api_id)
    with _shared_lock:
        auth = _shared.get(key)
        if auth is None:
            auth = _shared[key] = BrokerAuth(urls, min_ttl=min_ttl, region=region, api_id=api_id)
    return auth.headers(rejected=rejected)
