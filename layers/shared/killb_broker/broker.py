"""The broker's two operations, GET /v1/auth-headers and GET /v1/health, for a caller named by
its IAM ARN. Nothing here knows HTTP, Lambda or KillB: the handler wires the parts
(killb_broker.callers, killb_broker.token_source, killb_broker.refresher_invoke) and maps
errors to answers; every request ends in one audit record (killb_broker.audit).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from killb_broker.audit import AUDIT_MESSAGE, AuditRecord
from killb_broker.callers import Callers, principal_matches
from killb_broker.errors import InvalidRequest, TokenUnavailable
from killb_broker.observability import metrics
from killb_broker.refresher_invoke import Refresher
from killb_broker.token_source import TokenSource
from killb_broker.tokens import TokenState, is_fingerprint

__all__ = [
    "AUDIT_MESSAGE",
    "DEFAULT_MIN_TTL",
    "MAX_MIN_TTL",
    "Broker",
    "Callers",
    "Refresher",
    "TokenSource",
    "parse_query",
    "principal_matches",
    "rfc3339",
]

DEFAULT_MIN_TTL = 300
MAX_MIN_TTL = 1800
QUERY_PARAMETERS = frozenset({"minTtl", "rejected"})

# /v1/health's status for each state of the token in hand against the default minTtl, the
# state that decides whether a request is served it (AccessToken.lasts): "ok", a request with
# the default minTtl gets it as it is; "refreshing", still valid, but such a request would make
# the broker refresh it first; "expired", no request gets it.
HEALTH_STATUS = {
    TokenState.FRESH: "ok",
    TokenState.STALE: "refreshing",
    TokenState.INVALID: "expired",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The range RFC 3339 can write (four-digit years), in Unix seconds.
_FIRST_MOMENT = int((datetime(1, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds())
_LAST_MOMENT = int((datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH).total_seconds())


@dataclass(frozen=True, slots=True)
class AuthHeadersQuery:
    """The query of GET /v1/auth-headers."""

    min_ttl: int = DEFAULT_MIN_TTL
    rejected: str | None = None  # the fingerprint of a token KillB refused


# Most requests carry no query at all.
_DEFAULT_QUERY = AuthHeadersQuery()


def _one_value(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = set(query.get(name, ()))
    if len(values) > 1:
        raise InvalidRequest(f"{name} given more than once with different values")
    return next(iter(values), None)


def parse_query(query: Mapping[str, Sequence[str]]) -> AuthHeadersQuery:
    """The query (every value of each parameter): minTtl in whole seconds 0..1800 (default 300),
    rejected a fingerprint (12 lowercase hex digits); any other parameter is refused."""
    if not query:
        return _DEFAULT_QUERY
    if set(query) - QUERY_PARAMETERS:
        raise InvalidRequest("unknown query parameter: only minTtl and rejected are accepted")
    raw = _one_value(query, "minTtl")
    min_ttl = DEFAULT_MIN_TTL
    if raw is not None:
        # isascii() first: str.isdigit() alone accepts digits of other scripts, which int() parses.
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or int(raw) > MAX_MIN_TTL:
            raise InvalidRequest(
                f"minTtl must be a whole number of seconds from 0 to {MAX_MIN_TTL}"
            )
        min_ttl = int(raw)
    rejected = _one_value(query, "rejected")
    if rejected is not None and not is_fingerprint(rejected):
        raise InvalidRequest("rejected must be a token fingerprint: 12 lowercase hex digits")
    return AuthHeadersQuery(min_ttl, rejected)


@functools.lru_cache(maxsize=16)  # one token is served thousands of times: format it once
def rfc3339(unix_seconds: int) -> str:
    """2026-11-28T02:00:00Z: UTC, whole seconds, Z suffix. Never raises: a moment beyond what
    RFC 3339 can write (before year 1, after 9999) is written as the nearest one it can."""
    moment = _EPOCH + timedelta(seconds=min(max(unix_seconds, _FIRST_MOMENT), _LAST_MOMENT))
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


class Broker:
    """The two operations of the API. Each fills in the request's audit record as it learns."""

    def __init__(self, token_source: TokenSource, callers: Callers | None = None) -> None:
        self.token_source = token_source
        self.callers = callers or Callers()

    def _admit(self, caller_arn: str | None, audit: AuditRecord) -> str:
        audit.caller_arn = self.callers.identify(caller_arn)
        return self.callers.admit(audit.caller_arn)

    def auth_headers(
        self, caller_arn: str | None, query: Mapping[str, Sequence[str]], audit: AuditRecord
    ) -> dict[str, Any]:
        """GET /v1/auth-headers: the headers a KillB request needs, valid for minTtl.

        A request reporting the token in hand as rejected is not given it: the refresher is made
        to replace it (once; many reports of one token end in one refresh, the refresher sees to
        that). Other requests get the token in hand until it is replaced.
        """
        self._admit(caller_arn, audit)
        request = parse_query(query)
        audit.min_ttl, audit.rejected_fingerprint = request.min_ttl, request.rejected
        if request.rejected is not None:
            metrics.add_metric(name="RejectedTokenReports", unit="Count", value=1)
        try:
            token = self.token_source.lasting(request.min_ttl, request.rejected)
        except TokenUnavailable:
            metrics.add_metric(name="TokenUnavailable", unit="Count", value=1)
            raise
        headers = {"Authorization": f"Bearer {token.token}"}
        if token.api_key:
            headers["x-api-key"] = token.api_key
        expires_at = rfc3339(token.expires_at)
        audit.token_fingerprint, audit.expires_at = token.fingerprint, expires_at
        answer: dict[str, Any] = {
            "headers": headers,
            "expiresAt": expires_at,
            "expiresIn": token.seconds_left(self.token_source.now()),
        }
        # Where the token is good (the refresher's KILLB_BASE_URL); a token published by an
        # older refresher does not say, and is served without it.
        if token.base_url:
            answer["killbBaseUrl"] = token.base_url
        return answer

    def health(self, caller_arn: str | None, audit: AuditRecord) -> dict[str, Any]:
        """GET /v1/health: the state of the token in hand, without the token.

        "missing" when no usable token can be read now (none stored, a malformed or implausible
        one, or Secrets Manager failing); else HEALTH_STATUS of its state. checkedAt: when KillB
        last confirmed the token in hand, null when unknown.
        """
        self._admit(caller_arn, audit)
        token = self.token_source.current()
        if token is None:
            return {"status": "missing", "expiresAt": None, "expiresIn": None, "checkedAt": None}
        now = self.token_source.now()
        return {
            "status": HEALTH_STATUS[token.state(now, DEFAULT_MIN_TTL)],
            "expiresAt": rfc3339(token.expires_at),
            "expiresIn": max(token.seconds_left(now), 0),
            "checkedAt": None if token.checked_at is None else rfc3339(token.checked_at),
        }
