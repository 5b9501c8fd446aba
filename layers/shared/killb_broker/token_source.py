"""Where the broker's access token comes from: memory while young and long enough, else the
access-token secret (killb_broker.store reads it), else one on-demand run of the refresher."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeIs

from killb_broker.errors import StoreError, StoreUnavailable, TokenUnavailable
from killb_broker.observability import logger
from killb_broker.refresher_invoke import Refresher
from killb_broker.store import SecretReader, read_access_token
from killb_broker.tokens import AccessToken

# A warm container trusts its copy of the secret for at most this long. A container then reads
# Secrets Manager about once a minute however busy it is (1000 requests in a minute cost one
# read), and a token the refresher replaced early reaches every caller within a minute.
MAX_CACHE_AGE = 60

# Retry-After after the refresher was invoked (or was already running: throttled), or after
# Secrets Manager was briefly unavailable: either is usually over within seconds.
RETRY_AFTER_REFRESH_ATTEMPTED = 5
# Retry-After when this broker can do nothing itself (no refresher to invoke, the secret is
# missing or unreadable): only the schedule or an operator fixes that, and quicker retries
# would only cost Secrets Manager reads.
RETRY_AFTER_NOTHING_TO_DO = 30
# Told to the caller of such a 503: why waiting is all it can do.
NO_REFRESHER = (
    "no refresher is configured (REFRESHER_FUNCTION_NAME is empty): the token is replaced only "
    "by the schedule"
)


@dataclass(frozen=True, slots=True)
class _Reading:
    """What the secret held (None: no usable token) and when it was read."""

    token: AccessToken | None
    read_at: float


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
        """The token in hand (from memory while young); None when none can be read now."""
        reading = self._young_reading()
        if reading is None:
            try:
                reading = self._read()
            except StoreError as error:
                logger.warning("access-token secret unreadable", extra={"error": str(error)})
                return None
        return reading.token

    def lasting(self, min_ttl: int, rejected: str | None = None) -> AccessToken:
        """A token with more than min_ttl seconds left (AccessToken.lasts) and not the
        fingerprint `rejected` (one a caller reported KillB refused), or TokenUnavailable saying
        when to retry."""
        if rejected is None:
            reading = self._young_reading()
            if reading is not None and self._serves(reading.token, min_ttl, None):
                return reading.token
        try:
            # Past the cache: the refresher may have written a newer token since.
            token = self._read().token
            if self._serves(token, min_ttl, rejected):
                return token
            in_hand_rejected = token is not None and token.fingerprint == rejected
            if self.refresher is None:
                raise TokenUnavailable(
                    "the token in hand was reported rejected"
                    if in_hand_rejected
                    else f"no token lasts more than {min_ttl} s",
                    retry_after=RETRY_AFTER_NOTHING_TO_DO,
                    explanation=NO_REFRESHER,
                )
            self.refresher.force_refresh(rejected if in_hand_rejected else None)
            token = self._read().token
        except StoreError as error:
            retry_after = (
                RETRY_AFTER_REFRESH_ATTEMPTED
                if isinstance(error, StoreUnavailable)
                else RETRY_AFTER_NOTHING_TO_DO
            )
            raise TokenUnavailable(str(error), retry_after=retry_after) from None
        if self._serves(token, min_ttl, rejected):
            return token
        raise TokenUnavailable(
            f"no token lasts more than {min_ttl} s after invoking the refresher",
            retry_after=RETRY_AFTER_REFRESH_ATTEMPTED,
        )

    def _serves(
        self, token: AccessToken | None, min_ttl: int, rejected: str | None
    ) -> TypeIs[AccessToken]:
        return (
            token is not None
            and token.lasts(min_ttl, self._clock())
            and (rejected is None or token.fingerprint != rejected)
        )

    def _young_reading(self) -> _Reading | None:
        reading = self._reading
        # A wall clock that stepped back must not keep a reading young forever.
        if reading is None or not 0 <= self._clock() - reading.read_at < self._max_cache_age:
            return None
        return reading

    def _read(self) -> _Reading:
        token = read_access_token(self.secrets, self._secret_id)
        now = self._clock()
        if token is not None and not token.is_plausible(now):
            logger.warning(
                "access-token secret holds an implausible expiresAt: token not served",
                extra={"token_fingerprint": token.fingerprint, "expires_at": token.expires_at},
            )
            token = None
        reading = _Reading(token, now)
        self._reading = reading
        return reading
