"""The broker's logic: who may call, which access token to hand out, and the audit of each one.

The token comes from memory while it is young and lasts long enough, else from the access-token
secret, else from one on-demand run of the refresher. Nothing here knows HTTP or KillB.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeIs

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from killb_broker.aws import secretsmanager_client
from killb_broker.config import BrokerConfig
from killb_broker.errors import (
    CallerNotAllowed,
    InvalidRequest,
    SecretAccessDenied,
    SecretNotFound,
    StoreError,
    TokenUnavailable,
)
from killb_broker.observability import logger, metrics
from killb_broker.tokens import AccessToken

DEFAULT_MIN_TTL = 300
MAX_MIN_TTL = 1800

# A warm container trusts its copy of the secret for at most this long (60 s is the ceiling the
# design allows). A container then reads Secrets Manager about once a minute however busy it is:
# 1000 requests in a minute cost one read, where P3 allows two; and a token the refresher
# replaced early reaches every caller within a minute.
MAX_CACHE_AGE = 60

# Retry-After after the refresher was invoked (or was already running: throttled): a refresh is
# one KillB call, so the secret is usually rewritten within seconds.
RETRY_AFTER_REFRESH_ATTEMPTED = 5
# Retry-After when this broker can do nothing itself (no refresher to invoke, the secret is
# missing or unreadable): only the schedule or an operator fixes that, and quicker retries
# would only cost Secrets Manager reads.
RETRY_AFTER_NOTHING_TO_DO = 30

# The audit record's message; the template's TokensIssued metric filter counts these lines.
AUDIT_MESSAGE = "auth headers issued"

# The refresher's input for "refresh now", whatever its refresh window says.
_FORCE_REFRESH = json.dumps({"force": True}).encode()


class SecretReader(Protocol):
    """The one Secrets Manager call the broker makes (a boto3 secretsmanager client fits)."""

    def get_secret_value(self, *, SecretId: str) -> Mapping[str, Any]: ...  # noqa: N803


class FunctionInvoker(Protocol):
    """The one Lambda call the broker makes (a boto3 lambda client fits)."""

    # boto3's keyword names, so that a real client fits the protocol.
    def invoke(
        self,
        *,
        FunctionName: str,  # noqa: N803
        InvocationType: Literal["RequestResponse"],  # noqa: N803
        Payload: bytes,  # noqa: N803
    ) -> Mapping[str, Any]: ...


def parse_min_ttl(query: Mapping[str, Sequence[str]]) -> int:
    """The minTtl of a query (every value of each parameter): whole seconds 0..1800, else 300."""
    if set(query) - {"minTtl"}:
        raise InvalidRequest("unknown query parameter: only minTtl is accepted")
    values = set(query.get("minTtl", ()))
    if not values:
        return DEFAULT_MIN_TTL
    if len(values) > 1:
        raise InvalidRequest("minTtl given more than once with different values")
    (raw,) = values
    # isascii() first: str.isdigit() alone accepts digits of other scripts, which int() parses.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or int(raw) > MAX_MIN_TTL:
        raise InvalidRequest(f"minTtl must be a whole number of seconds from 0 to {MAX_MIN_TTL}")
    return int(raw)


def _arn(arn: str, service: str) -> tuple[str, str, str] | None:
    """(partition, account, resource) of arn:PARTITION:SERVICE::ACCOUNT:RESOURCE, else None."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2:4] != [service, ""]:
        return None
    partition, account, resource = parts[1], parts[4], parts[5]
    return (partition, account, resource) if partition and account else None


def _role(arn: str) -> tuple[str, str, str] | None:
    """(partition, account, role name) of arn:PART:iam::ACCT:role/[path/]NAME, else None."""
    parsed = _arn(arn, "iam")
    if parsed is None:
        return None
    partition, account, resource = parsed
    kind, _, path_and_name = resource.partition("/")
    name = path_and_name.rsplit("/", 1)[-1]
    return (partition, account, name) if kind == "role" and name else None


def _assumed_role(arn: str) -> tuple[str, str, str] | None:
    """(partition, account, role name) of arn:PART:sts::ACCT:assumed-role/NAME/SESSION, or None."""
    parsed = _arn(arn, "sts")
    if parsed is None:
        return None
    partition, account, resource = parsed
    segments = resource.split("/")
    if len(segments) != 3 or segments[0] != "assumed-role" or not all(segments):
        return None
    return partition, account, segments[1]


def principal_matches(allowed: str, caller_arn: str) -> bool:
    """True when caller_arn is the allowed ARN, or a session of the allowed role.

    Assumed-role ARNs carry the role's name but not its path, so a role is matched by
    partition, account and name. Any other ARN (a user, a session) matches only itself.
    """
    if caller_arn == allowed:
        return True
    role = _role(allowed)
    return role is not None and role == _assumed_role(caller_arn)


@functools.lru_cache(maxsize=16)  # one token is served thousands of times: format it once
def rfc3339(unix_seconds: int) -> str:
    """2026-11-28T02:00:00Z: UTC, whole seconds, Z suffix."""
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _lasts(token: AccessToken | None, min_ttl: int, now: float) -> TypeIs[AccessToken]:
    # At least one whole second, so that minTtl=0 never hands out a token about to expire.
    return token is not None and token.seconds_left(now) >= max(min_ttl, 1)


@dataclass(frozen=True, slots=True)
class _Reading:
    """What the secret held (None: no usable token) and when it was read."""

    token: AccessToken | None
    read_at: float


class Refresher:
    """The refresher function, run once synchronously to force a refresh."""

    def __init__(self, client: FunctionInvoker, function_name: str) -> None:
        self.client = client
        self.function_name = function_name

    def force_refresh(self) -> None:
        """Run the refresher now. Its failure is not the broker's: the secret is read again."""
        try:
            response = self.client.invoke(
                FunctionName=self.function_name,
                InvocationType="RequestResponse",
                Payload=_FORCE_REFRESH,
            )
        except (ClientError, BotoCoreError) as error:
            # TooManyRequestsException: the refresher (reserved concurrency 1) is already running.
            code = error.response["Error"].get("Code") if isinstance(error, ClientError) else None
            logger.warning(
                "refresher invoke failed",
                extra={"function": self.function_name, "error_code": code or type(error).__name__},
            )
            return
        if response.get("FunctionError"):
            logger.warning(
                "refresher run failed",
                extra={"function": self.function_name, "function_error": response["FunctionError"]},
            )
            return
        logger.info(
            "refresher invoked",
            extra={"function": self.function_name, "action": _refresher_action(response)},
        )


def _refresher_action(response: Mapping[str, Any]) -> str | None:
    """The summary's action ("refreshed", "failed", ...): the only part of the answer logged."""
    payload = response.get("Payload")
    try:
        summary = json.loads(payload.read()) if payload is not None else None
    except (ValueError, AttributeError):
        return None
    action = summary.get("action") if isinstance(summary, dict) else None
    return action if isinstance(action, str) else None


class TokenSource:
    """The access token of one secret: from memory while young, else read; refreshed on demand.

    One per container; Lambda gives a container one request at a time, so it needs no lock.
    """

    def __init__(
        self,
        secrets: SecretReader,
        secret_id: str,
        *,
        refresher: Refresher | None = None,
        max_cache_age: float = MAX_CACHE_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secrets = secrets
        self.refresher = refresher
        self._secret_id = secret_id
        self._max_cache_age = max_cache_age
        self._clock = clock
        self._reading: _Reading | None = None

    def now(self) -> float:
        return self._clock()

    def current(self) -> AccessToken | None:
        """The token in hand (from memory while young), or None when there is none to be had."""
        reading = self._young_reading()
        if reading is None:
            try:
                reading = self._read()
            except StoreError as error:
                logger.warning("access-token secret unreadable", extra={"error": str(error)})
                return None
        return reading.token

    def lasting(self, min_ttl: int) -> AccessToken:
        """A token with at least min_ttl seconds left, or TokenUnavailable saying when to retry."""
        reading = self._young_reading()
        if reading is not None and _lasts(reading.token, min_ttl, self._clock()):
            return reading.token
        try:
            # Past the cache: the refresher may have written a newer token since.
            token = self._read().token
            if _lasts(token, min_ttl, self._clock()):
                return token
            if self.refresher is None:
                raise TokenUnavailable(
                    f"no token lasts {min_ttl} s and no refresher is configured",
                    retry_after=RETRY_AFTER_NOTHING_TO_DO,
                )
            self.refresher.force_refresh()
            token = self._read().token
        except StoreError as error:
            raise TokenUnavailable(str(error), retry_after=RETRY_AFTER_NOTHING_TO_DO) from error
        if _lasts(token, min_ttl, self._clock()):
            return token
        raise TokenUnavailable(
            f"no token lasts {min_ttl} s after invoking the refresher",
            retry_after=RETRY_AFTER_REFRESH_ATTEMPTED,
        )

    def _young_reading(self) -> _Reading | None:
        reading = self._reading
        # A wall clock that stepped back must not keep a reading young forever.
        if reading is None or not 0 <= self._clock() - reading.read_at < self._max_cache_age:
            return None
        return reading

    def _read(self) -> _Reading:
        try:
            response = self.secrets.get_secret_value(SecretId=self._secret_id)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise SecretNotFound(
                    "access-token secret not found", secret_id=self._secret_id
                ) from error
            if code in {"AccessDeniedException", "DecryptionFailure"}:
                raise SecretAccessDenied(
                    f"access-token secret not readable ({code})", secret_id=self._secret_id
                ) from error
            raise
        reading = _Reading(
            AccessToken.from_secret_string(response.get("SecretString")), self._clock()
        )
        self._reading = reading
        return reading


class Broker:
    """The two operations of the API, for a caller named by its IAM ARN."""

    def __init__(
        self,
        token_source: TokenSource,
        allowed_principals: Sequence[str] = (),
        *,
        local_caller_arn: str | None = None,
    ) -> None:
        self.token_source = token_source
        self._allowed_principals = tuple(allowed_principals)
        self._local_caller_arn = local_caller_arn
        # A warm container sees the same few callers again and again: decide each once.
        self._admits = functools.lru_cache(maxsize=1024)(self._matches_allowed)

    @classmethod
    def from_config(cls, config: BrokerConfig) -> Broker:
        """A broker with its own boto3 clients: created once per container, at cold start."""
        secrets = secretsmanager_client(connect_timeout=2, read_timeout=5, max_attempts=3)
        refresher = None
        if config.refresher_function_name:
            lambda_client = boto3.client(
                "lambda",
                config=Config(
                    connect_timeout=2,
                    # The broker has 29 s (API Gateway's limit). A refresh is one KillB call; a
                    # refresher still busy after 20 s is fighting KillB, and the caller is better
                    # served by a 503 with Retry-After than by a gateway timeout. The run goes on.
                    read_timeout=20,
                    # No retries: a retried invoke is a second refresh, and a throttled one means
                    # the refresher is already running; either way the broker reads the secret.
                    retries={"mode": "standard", "total_max_attempts": 1},
                ),
            )
            refresher = Refresher(lambda_client, config.refresher_function_name)
        token_source = TokenSource(secrets, config.access_token_secret_id, refresher=refresher)
        return cls(
            token_source, config.allowed_principals, local_caller_arn=config.local_caller_arn
        )

    def _matches_allowed(self, caller_arn: str) -> bool:
        return any(principal_matches(allowed, caller_arn) for allowed in self._allowed_principals)

    def authorize(self, caller_arn: str | None) -> str:
        """The caller's ARN, if API Gateway vouched for one and ALLOWED_PRINCIPALS admits it."""
        if not caller_arn and self._local_caller_arn:
            logger.warning(
                "no IAM caller identity in the event: sam local cannot emulate AWS_IAM, so the "
                "caller is taken from LOCAL_CALLER_ARN",
                extra={"caller_arn": self._local_caller_arn},
            )
            caller_arn = self._local_caller_arn
        if not caller_arn:
            raise CallerNotAllowed("no IAM caller identity")
        if self._allowed_principals and not self._admits(caller_arn):
            logger.warning("caller not allowed", extra={"caller_arn": caller_arn})
            raise CallerNotAllowed("caller not allowed")
        return caller_arn

    def auth_headers(
        self,
        caller_arn: str | None,
        source_ip: str | None,
        query: Mapping[str, Sequence[str]],
    ) -> dict[str, Any]:
        """GET /v1/auth-headers: the headers a KillB request needs, valid for minTtl, audited."""
        caller = self.authorize(caller_arn)
        min_ttl = parse_min_ttl(query)
        try:
            token = self.token_source.lasting(min_ttl)
        except TokenUnavailable as error:
            metrics.add_metric(name="TokenUnavailable", unit="Count", value=1)
            logger.warning(
                "no access token available",
                extra={"reason": str(error), "min_ttl": min_ttl, "retry_after": error.retry_after},
            )
            raise
        headers = {"Authorization": f"Bearer {token.token}"}
        if token.api_key:
            headers["x-api-key"] = token.api_key
        expires_at = rfc3339(token.expires_at)
        logger.info(
            AUDIT_MESSAGE,
            extra={
                "caller_arn": caller,
                "source_ip": source_ip,
                "token_fingerprint": token.fingerprint,
                "expires_at": expires_at,
                "min_ttl": min_ttl,
            },
        )
        return {
            "headers": headers,
            "expiresAt": expires_at,
            "expiresIn": token.seconds_left(self.token_source.now()),
        }

    def health(self, caller_arn: str | None) -> dict[str, Any]:
        """GET /v1/health: the state of the token in hand, without the token."""
        self.authorize(caller_arn)
        token = self.token_source.current()
        if token is None:
            return {"status": "missing", "expiresAt": None, "expiresIn": None}
        left = token.seconds_left(self.token_source.now())
        status = "ok" if left > DEFAULT_MIN_TTL else "refreshing" if left > 0 else "expired"
        return {"status": status, "expiresAt": rfc3339(token.expires_at), "expiresIn": max(left, 0)}
