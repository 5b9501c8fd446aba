"""The domain's values: KillB's token set, the access token the broker hands out, the credentials.

Secret fields are excluded from repr, so a value can be logged or shown in a traceback safely.
"""

from __future__ import annotations

import hashlib
import json
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
    refresh it now), the broker against minTtl (stale: too short for this caller, so read
    again and refresh on demand) and /v1/health against the default minTtl.
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
        """Valid for min_ttl more whole seconds: the broker may hand it to a caller asking so.

        That is FRESH against a window of min_ttl, or exactly min_ttl left (a caller asking for
        300 s may have a token with 300 s left); and at least one second, so that minTtl=0
        never hands out a token about to expire.
        """
        return self.seconds_left(now) >= max(min_ttl, 1)

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

    def to_secret_string(self) -> str:
        """The access-token secret's JSON: the token, its expiry, the API key if there is one,
        the KillB API root and when KillB last confirmed the token, when known."""
        value: dict[str, str | int] = {"accessToken": self.token, "expiresAt": self.expires_at}
        if self.api_key:
            value["apiKey"] = self.api_key
        if self.base_url:
            value["baseUrl"] = self.base_url
        if self.checked_at is not None:
            value["checkedAt"] = self.checked_at
        return json.dumps(value, separators=(",", ":"))

    @classmethod
    def from_secret_string(cls, secret_string: str | None) -> AccessToken | None:
        """The token in the access-token secret, or None for a placeholder or malformed value.

        A token or API key that a header cannot carry as it is (empty, padded, CR, LF, NUL,
        non-ASCII) is malformed: serving it would let a naive caller inject a header.
        """
        try:
            value = json.loads(secret_string or "")
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        token, expires_at, api_key = (value.get(k) for k in ("accessToken", "expiresAt", "apiKey"))
        if not is_visible_ascii(token) or type(expires_at) is not int:
            return None
        if api_key is not None and api_key != "" and not is_visible_ascii(api_key):
            return None
        # Not secret, and optional (a value written by an older refresher has neither): one that
        # is malformed is dropped, never a reason to refuse the token.
        base_url = value.get("baseUrl")
        checked_at = value.get("checkedAt")
        return cls(
            token=token,
            expires_at=expires_at,
            api_key=api_key or None,
            base_url=base_url if is_visible_ascii(base_url) else None,
            checked_at=checked_at if type(checked_at) is int and checked_at >= 0 else None,
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
