"""The domain's values: KillB's token set, the access token the broker hands out, the credentials.

Secret fields are excluded from repr, so a value can be logged or shown in a traceback safely.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeIs


def fingerprint(token: str) -> str:
    """The first 12 hex digits of the token's SHA-256: tells tokens apart in logs, safely."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def is_fingerprint(value: object) -> TypeIs[str]:
    """True for a token fingerprint as fingerprint() writes it: 12 lowercase hex digits."""
    return (
        isinstance(value, str) and len(value) == 12 and all(c in "0123456789abcdef" for c in value)
    )


def is_visible_ascii(value: object) -> TypeIs[str]:
    """True for a non-empty str of visible ASCII only (0x21-0x7E): what a header value or a
    token may be. A space, CR, LF, NUL, a non-ASCII letter or a padded end all fail it."""
    return isinstance(value, str) and value != "" and all("!" <= c <= "~" for c in value)


# The longest a KillB token is believed to live. A stored expiry further ahead than this is not a
# token's expiry but a fault (an absurd expiresIn, a hand edit): such a token is never served.
MAX_TOKEN_LIFETIME = 86_400


class TokenState(StrEnum):
    """google-auth's three states of a token, measured against a window of seconds.

    The one vocabulary of freshness: the refresher measures against its refresh window (stale:
    refresh it now), the broker against minTtl (only a fresh token is handed out; a stale one is
    too short for this caller, so read again and refresh on demand) and /v1/health against the
    default minTtl (fresh: "ok", stale: "refreshing", invalid: "expired").
    """

    FRESH = "fresh"  # more than the window left: use it as it is
    STALE = "stale"  # still valid, but the window or less left: use it only after a refresh
    INVALID = "invalid"  # expired: never hand it out

    @classmethod
    def of(cls, seconds_left: float, window: float) -> TokenState:
        if seconds_left <= 0:
            return cls.INVALID
        if seconds_left <= window:
            return cls.STALE
        return cls.FRESH


@dataclass(frozen=True, slots=True)
class TokenSet:
    """What a KillB login or refresh returns, with an absolute expiry (Unix seconds)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: int
    obtained_at: int

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.access_token)

    def state(self, now: float, refresh_window: int) -> TokenState:
        return TokenState.of(self.expires_at - now, refresh_window)


@dataclass(frozen=True, slots=True)
class AccessToken:
    """What the access-token secret holds and the broker hands out: never the refresh token."""

    token: str = field(repr=False)
    expires_at: int
    api_key: str | None = field(default=None, repr=False)
    # The KillB API root the token belongs to (the refresher's KILLB_BASE_URL); not a secret.
    base_url: str | None = None
    # When KillB last confirmed the token (issued it, or answered /api/v2/auth/me with it).
    checked_at: int | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.token)

    def seconds_left(self, now: float) -> int:
        """Whole seconds of validity left (negative once expired)."""
        return int(self.expires_at - now)

    def state(self, now: float, window: int) -> TokenState:
        """The token's state against a window, in the whole seconds the API speaks."""
        return TokenState.of(self.seconds_left(now), window)

    def lasts(self, min_ttl: int, now: float) -> bool:
        """FRESH against a window of min_ttl: more than min_ttl whole seconds left. The broker's
        one rule for handing the token to a caller asking for min_ttl, and /v1/health's "ok" at
        the default minTtl, so that "ok" means a default request is served this token as it is.
        (minTtl=0 thus still needs a whole second left.)"""
        return self.state(now, min_ttl) is TokenState.FRESH

    def is_plausible(self, now: float) -> bool:
        """An expiry KillB could have given: not before 1970, at most MAX_TOKEN_LIFETIME ahead."""
        return 0 <= self.expires_at <= now + MAX_TOKEN_LIFETIME

    @classmethod
    def from_token_set(
        cls,
        tokens: TokenSet,
        api_key: str | None,
        *,
        base_url: str | None = None,
        checked_at: int | None = None,
    ) -> AccessToken:
        return cls(
            token=tokens.access_token,
            expires_at=tokens.expires_at,
            api_key=api_key,
            base_url=base_url,
            checked_at=checked_at,
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """The operator's KillB login, from the credentials secret; version_id tells a rotation."""

    email: str = field(repr=False)
    password: str = field(repr=False)
    api_key: str | None = field(default=None, repr=False)
    version_id: str = ""


@dataclass(frozen=True, slots=True)
class NotConfigured:
    """The credentials secret holds no usable login; problem says what is wrong, never a value."""

    problem: str  # e.g. "not JSON", "missing field password", "empty field email"


@dataclass(frozen=True, slots=True)
class LoginBackoff:
    """KillB refused these credentials at this time: no new login until the backoff ends."""

    rejected_at: int
    credentials_version: str

    def blocks(self, now: float, backoff_seconds: int, credentials_version: str) -> bool:
        """True while a login with the same credentials version is still inside the backoff."""
        return (
            credentials_version == self.credentials_version
            and now < self.rejected_at + backoff_seconds
        )


@dataclass(frozen=True, slots=True)
class Session:
    """The session secret: the latest token set (if any) and the login backoff (if any).

    credentials_version is the credentials secret's version the tokens were logged in with (a
    login with another version logs this session out); rejected_refresh_at is when a report of a
    rejected token last forced a refresh (at most one such refresh a minute).
    """

    tokens: TokenSet | None = None
    login_backoff: LoginBackoff | None = None
    credentials_version: str | None = None
    rejected_refresh_at: int | None = None
