"""The refresh policy: the refresher's rules (docs/spec.md, "Refresher": rules R1-R5, rejected
tokens, revoke) over the token states, as a few plain functions.

Pure: it reaches KillB and Secrets Manager only through the two small interfaces below, and
takes the time as an argument. What must hold across invocations (the login backoff, the
credentials version a session was logged in with, the last rejected-token refresh) lives in the
session secret.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from killb_broker.errors import (
    InvalidCredentials,
    KillBError,
    KillBUnavailable,
    RateLimited,
    StoreError,
    TokenRejected,
)
from killb_broker.observability import logger
from killb_broker.tokens import (
    AccessToken,
    Credentials,
    LoginBackoff,
    NotConfigured,
    Session,
    TokenSet,
    TokenState,
)

# A report of a rejected token forces at most one refresh this often: a KillB that refuses every
# new token too gets one refresh a minute, not one per report.
REJECTED_REFRESH_INTERVAL = 60
_FINGERPRINT = re.compile(r"[0-9a-f]{12}")


class SecretStore(Protocol):
    """What the policy needs of the token store (killb_broker.store.TokenStore)."""

    def read_credentials(self) -> Credentials | NotConfigured: ...
    def read_session(self) -> Session: ...
    def read_access_token(self) -> AccessToken | None: ...
    def write_session(self, session: Session) -> None: ...
    def write_access_token(self, token: AccessToken) -> None: ...


class KillB(Protocol):
    """What the policy needs of KillB (killb_broker.killb_api.KillBAuthClient)."""

    def login(self, email: str, password: str) -> TokenSet: ...
    def refresh(self, refresh_token: str) -> TokenSet: ...
    def logout(self, access_token: str) -> None: ...
    def close(self) -> None: ...


# Builds a KillB client for the credentials' API key (None when they have none).
KillBFactory = Callable[[str | None], KillB]


class Action(StrEnum):
    NOOP = "noop"
    REFRESHED = "refreshed"
    LOGGED_IN = "logged_in"
    FAILED = "failed"


class Event(StrEnum):
    """What happened on the way, named as the metric that counts it."""

    LOGIN = "Logins"
    REFRESH = "Refreshes"
    REFRESH_REJECTED = "RefreshRejected"
    LOGIN_REJECTED = "LoginRejected"
    LOGIN_BACKOFF_ACTIVE = "LoginBackoffActive"
    NOT_CONFIGURED = "NotConfigured"
    KILLB_UNAVAILABLE = "KillBUnavailable"
    KILLB_REFUSED = "KillBRefused"  # a refusal about neither the credentials nor a token
    REJECTED_TOKEN_REFRESH = "RejectedTokenRefreshes"  # noqa: S105 - a metric's name
    REJECTED_TOO_SOON = "RejectedTooSoon"
    REVOCATION = "Revocations"
    LOGOUT = "Logouts"
    LOGOUT_FAILED = "LogoutFailed"


@dataclass(frozen=True, slots=True)
class RefreshSettings:
    refresh_window: int  # seconds: refresh once the access token has less than this left
    login_backoff: int  # seconds: no new login this long after KillB refused the credentials


@dataclass(frozen=True, slots=True)
class Request:
    """What one invocation asks for: a scheduled run (its payload ignored), {"force": true},
    {"force": true, "rejected": "<fingerprint>"} or {"revoke": true}."""

    force: bool = False
    rejected: str | None = None  # the fingerprint of a token KillB refused
    revoke: bool = False
    invalid: str | None = None  # why the event cannot be run; the run fails saying so

    @classmethod
    def from_event(cls, event: Any) -> Request:
        if not isinstance(event, dict):
            return _not_forced("event is not an object", event)
        if "revoke" in event and event["revoke"] is not False:
            # Only a real true: a kill switch must not go off on a truthy string.
            return cls(revoke=True) if event["revoke"] is True else _not_forced("revoke", event)
        if "rejected" in event:
            rejected = event["rejected"]
            if isinstance(rejected, str) and _FINGERPRINT.fullmatch(rejected):
                return cls(force=True, rejected=rejected)
            # Never the value: a caller may have sent the token itself.
            logger.error(
                "rejected is not a token fingerprint (12 lowercase hex digits)",
                extra={"rejected_type": type(rejected).__name__},
            )
            return cls(invalid="invalid rejected fingerprint")
        force = event.get("force", False)
        if not isinstance(force, bool):
            return _not_forced("force", event)
        return cls(force=force)


def _not_forced(what: str, event: Any) -> Request:
    logger.warning(
        f"event is not a scheduled event nor a refresher request ({what}): running as not forced",
        extra={"event_type": type(event).__name__},
    )
    return Request()


@dataclass(frozen=True, slots=True)
class Outcome:
    """One run's result; expires_at is the expiry of the token now in the store, if any."""

    action: Action
    expires_at: int | None
    reason: str
    events: tuple[Event, ...] = ()

    def summary(self) -> dict[str, str | int | None]:
        """The refresher's summary: no secret in it."""
        return {"action": self.action.value, "expiresAt": self.expires_at, "reason": self.reason}

    def metrics(self, now: float) -> list[tuple[str, MetricUnit, int]]:
        """The metrics that count this run: its events, a failure, the token's seconds left."""
        counted = [(event.value, MetricUnit.Count, 1) for event in self.events]
        if self.action is Action.FAILED:
            counted.append(("RefresherFailed", MetricUnit.Count, 1))
        if self.expires_at is not None:
            seconds_left = max(0, int(self.expires_at - now))
            counted.append(("AccessTokenSecondsLeft", MetricUnit.Seconds, seconds_left))
        return counted


def run(
    event: Any, store: SecretStore, connect: KillBFactory, *, now: float, settings: RefreshSettings
) -> Outcome:
    """One invocation: the event read as a Request, and a Secrets Manager failure as a summary
    (the schedule and the broker read summaries; the RefresherFailed alarm counts them)."""
    request = Request.from_event(event)
    try:
        return keep_fresh(store, connect, now=now, request=request, settings=settings)
    except StoreError as error:
        logger.error(f"Secrets Manager failed: {error}", extra={"secret_id": error.secret_id})
        return Outcome(Action.FAILED, None, f"Secrets Manager failed: {error}")


def keep_fresh(
    store: SecretStore,
    connect: KillBFactory,
    *,
    now: float,
    request: Request,
    settings: RefreshSettings,
) -> Outcome:
    """Make sure the store holds a token with more than the refresh window left (R1-R5), or
    answer a rejected-token report or a revoke."""
    session = store.read_session()
    tokens = session.tokens
    known_expiry = tokens.expires_at if tokens else None
    if request.invalid is not None:
        return Outcome(Action.FAILED, known_expiry, request.invalid)
    if request.revoke:
        return _revoke(store, connect, session, now=now, settings=settings)

    force, replaced = request.force, False
    if request.rejected is not None:
        if tokens is None or tokens.fingerprint != request.rejected:
            # Somebody already replaced it: the report changes nothing, as a scheduled run.
            force, replaced = False, True
        elif (too_soon := _too_soon(session, now)) is not None:
            return too_soon
    return _keep_fresh(
        store,
        connect,
        session,
        now=now,
        force=force,
        for_rejected=request.rejected is not None and not replaced,
        replaced=replaced,
        settings=settings,
    )


def _keep_fresh(
    store: SecretStore,
    connect: KillBFactory,
    session: Session,
    *,
    now: float,
    force: bool,
    for_rejected: bool,
    replaced: bool,
    settings: RefreshSettings,
) -> Outcome:
    """R1-R5 for a scheduled or forced run, and for the refresh a rejected token asks for."""
    tokens = session.tokens
    known_expiry = tokens.expires_at if tokens else None
    state = tokens.state(now, settings.refresh_window) if tokens else TokenState.INVALID
    if tokens and state is TokenState.FRESH and not force:
        return _noop(store, tokens, now, replaced=replaced)

    credentials = store.read_credentials()
    if isinstance(credentials, NotConfigured):
        return _not_configured(credentials, known_expiry)
    if (blocked := _backoff_blocks(session, credentials, now, settings, known_expiry)) is not None:
        return blocked

    events = [Event.REJECTED_TOKEN_REFRESH] if for_rejected else []
    if for_rejected:
        session = dataclasses.replace(session, rejected_refresh_at=int(now))
    with contextlib.closing(connect(credentials.api_key)) as killb:
        try:
            return _refresh_or_login(store, killb, session, credentials, now=now, events=events)
        except KillBError as error:
            reason, event = _killb_failure(error)
    if for_rejected:
        _remember_rejected_attempt(store, session)
    return Outcome(Action.FAILED, known_expiry, reason, (*events, event))


def _remember_rejected_attempt(store: SecretStore, session: Session) -> None:
    """A rejected-token refresh that KillB did not answer still counts against the once a
    minute bound: else every report during an outage would try KillB again. Only the attempt's
    time is written; the tokens stay as they were."""
    try:
        store.write_session(session)
    except StoreError:
        logger.warning("Could not record the rejected-token refresh attempt")


def _too_soon(session: Session, now: float) -> Outcome | None:
    """The rejected-token refresh is refused when one already ran within the last minute."""
    last = session.rejected_refresh_at
    if last is None or not 0 <= now - last < REJECTED_REFRESH_INTERVAL:
        return None
    ago = int(now - last)
    logger.warning(
        "Rejected token reported again too soon: no refresh",
        extra={"last_rejected_refresh_at": last},
    )
    return Outcome(
        Action.FAILED,
        session.tokens.expires_at if session.tokens else None,
        f"rejected token: too soon, a rejected-token refresh ran {ago} s ago "
        f"(at most one per {REJECTED_REFRESH_INTERVAL} s)",
        (Event.REJECTED_TOO_SOON,),
    )


def _not_configured(credentials: NotConfigured, known_expiry: int | None) -> Outcome:
    logger.error(
        f"KillB credentials are not configured: {credentials.problem}",
        extra={"secret": "credentials", "problem": credentials.problem},
    )
    return Outcome(
        Action.FAILED,
        known_expiry,
        f"credentials not configured: {credentials.problem}",
        (Event.NOT_CONFIGURED,),
    )


def _backoff_blocks(
    session: Session,
    credentials: Credentials,
    now: float,
    settings: RefreshSettings,
    known_expiry: int | None,
) -> Outcome | None:
    backoff = session.login_backoff
    if not backoff or not backoff.blocks(now, settings.login_backoff, credentials.version_id):
        return None
    # A backoff is written only after the refresh token was refused too: skip both.
    logger.warning(
        "Login backoff active: KillB refused these credentials",
        extra={"rejected_at": backoff.rejected_at},
    )
    return Outcome(
        Action.FAILED,
        known_expiry,
        "login backoff: KillB rejected the "
        "credentials; waiting for the backoff to end or a new credentials version",
        (Event.LOGIN_BACKOFF_ACTIVE,),
    )


def _killb_failure(error: KillBError) -> tuple[str, Event]:
    """A KillB error that ended the run: the summary's reason and the event that counts it."""
    if isinstance(error, RateLimited):
        logger.error(
            "KillB rate-limited the refresher: stored secrets left as they were",
            extra={"error": str(error), "retry_after": error.retry_after},
        )
        wait = f", Retry-After {int(error.retry_after)} s" if error.retry_after else ""
        return f"KillB unavailable: rate-limited{wait}: {error}", Event.KILLB_UNAVAILABLE
    if isinstance(error, KillBUnavailable):
        logger.error(
            "KillB unavailable: stored secrets left as they were", extra={"error": str(error)}
        )
        return f"KillB unavailable: {error}", Event.KILLB_UNAVAILABLE
    # A 422 at login and the like: KillB answered, and said no for another reason than the
    # credentials or a token. Counted apart, as no outage of KillB's.
    logger.error(
        "KillB refused the request: stored secrets left as they were",
        extra={"error": str(error)},
    )
    return f"KillB refused the request: {error}", Event.KILLB_REFUSED


def _noop(store: SecretStore, tokens: TokenSet, now: float, *, replaced: bool) -> Outcome:
    """R2, after checking state first: the access-token secret must hold the session's token
    (the second write may have failed last time); re-publish it if not."""
    published = store.read_access_token()
    if published is None or published.token != tokens.access_token:
        credentials = store.read_credentials()
        api_key = credentials.api_key if isinstance(credentials, Credentials) else None
        logger.warning(
            "Access-token secret is behind the session: publishing the session's token",
            extra={"token": tokens.fingerprint},
        )
        store.write_access_token(AccessToken.from_token_set(tokens, api_key))
    left = int(tokens.expires_at - now)
    if replaced:
        return Outcome(
            Action.NOOP, tokens.expires_at, f"rejected token already replaced: {left} s left"
        )
    return Outcome(Action.NOOP, tokens.expires_at, f"token fresh: {left} s left")


def _refresh_or_login(
    store: SecretStore,
    killb: KillB,
    session: Session,
    credentials: Credentials,
    *,
    now: float,
    events: list[Event],
) -> Outcome:
    """R3 and R4: refresh with the stored refresh token; if KillB rejects it, log in."""
    if session.tokens:
        try:
            fresh = killb.refresh(session.tokens.refresh_token)
        except TokenRejected:
            logger.warning(
                "KillB rejected the refresh token: logging in",
                extra={"token": session.tokens.fingerprint},
            )
            events.append(Event.REFRESH_REJECTED)
        else:
            # Refreshed tokens belong to the session's login: its credentials version stays.
            _publish(store, fresh, session, credentials)
            return Outcome(
                Action.REFRESHED, fresh.expires_at, "refreshed", (*events, Event.REFRESH)
            )
    return _login(store, killb, session, credentials, now=now, events=events)


def _login(
    store: SecretStore,
    killb: KillB,
    session: Session,
    credentials: Credentials,
    *,
    now: float,
    events: list[Event],
    old_session_ended: bool = False,
) -> Outcome:
    """Log in and publish; then log out a session of an older credentials version (best
    effort), unless the caller ended it already."""
    try:
        fresh = killb.login(credentials.email, credentials.password)
    except InvalidCredentials:
        # The backoff is kept in the session secret, so it holds across invocations, duplicates
        # and retries, at one write per backoff period at most.
        logger.error(
            "KillB rejected the credentials: no new login until the backoff ends or "
            "the credentials secret changes",
            extra={"credentials_version": credentials.version_id},
        )
        backoff = LoginBackoff(rejected_at=int(now), credentials_version=credentials.version_id)
        store.write_session(dataclasses.replace(session, login_backoff=backoff))
        known_expiry = session.tokens.expires_at if session.tokens else None
        return Outcome(
            Action.FAILED,
            known_expiry,
            "login rejected: KillB refused the credentials; login backoff started",
            (*events, Event.LOGIN_REJECTED),
        )
    logged_in = Session(
        credentials_version=credentials.version_id,
        rejected_refresh_at=session.rejected_refresh_at,
    )
    _publish(store, fresh, logged_in, credentials)
    events.append(Event.LOGIN)
    reason = "logged in"
    old = session.tokens
    rotated = session.credentials_version not in (None, credentials.version_id)
    if old and rotated and not old_session_ended and old.expires_at > now:
        # The old session stays usable at KillB until it is logged out: end it, now that
        # nobody is handed its token any more.
        ended = _log_out(killb, old, events)
        reason = f"logged in with a new credentials version; {ended}"
    return Outcome(Action.LOGGED_IN, fresh.expires_at, reason, tuple(events))


def _log_out(killb: KillB, tokens: TokenSet, events: list[Event]) -> str:
    """Log a session out at KillB, best effort: a failure is logged and counted, never raised.
    What happened, in words for the summary's reason."""
    try:
        killb.logout(tokens.access_token)
    except KillBUnavailable as error:
        failure = f"KillB could not answer the logout of the old session: {error}"
    except KillBError as error:
        failure = f"KillB refused the logout of the old session: {error}"
    else:
        logger.info("Old session logged out at KillB", extra={"token": tokens.fingerprint})
        events.append(Event.LOGOUT)
        return "old session revoked (logged out at KillB)"
    logger.warning(
        "Logging the old session out failed: it ends when KillB expires it",
        extra={"token": tokens.fingerprint, "error": failure},
    )
    events.append(Event.LOGOUT_FAILED)
    return failure


def _revoke(
    store: SecretStore,
    connect: KillBFactory,
    session: Session,
    *,
    now: float,
    settings: RefreshSettings,
) -> Outcome:
    """{"revoke": true}: log the current session out at KillB, log in afresh, publish. A logout
    that fails still leads to the new login: the reason says so."""
    known_expiry = session.tokens.expires_at if session.tokens else None
    credentials = store.read_credentials()
    if isinstance(credentials, NotConfigured):
        return _not_configured(credentials, known_expiry)
    events = [Event.REVOCATION]
    with contextlib.closing(connect(credentials.api_key)) as killb:
        ended = (
            _log_out(killb, session.tokens, events) if session.tokens else "no session to revoke"
        )
        blocked = _backoff_blocks(session, credentials, now, settings, known_expiry)
        if blocked is not None:
            return dataclasses.replace(
                blocked, reason=f"{ended}; {blocked.reason}", events=(*events, *blocked.events)
            )
        try:
            outcome = _login(
                store, killb, session, credentials, now=now, events=events, old_session_ended=True
            )
        except KillBError as error:
            reason, event = _killb_failure(error)
            return Outcome(Action.FAILED, known_expiry, f"{ended}; {reason}", (*events, event))
    return dataclasses.replace(outcome, reason=f"{ended}; {outcome.reason}")


def _publish(
    store: SecretStore, tokens: TokenSet, session: Session, credentials: Credentials
) -> None:
    """Session first (the new tokens, the backoff cleared, the session's other fields kept),
    then the access token the broker reads."""
    try:
        store.write_session(dataclasses.replace(session, tokens=tokens, login_backoff=None))
    except StoreError:
        # KillB may already have retired the old refresh token: the next run logs in (R3).
        logger.error(
            "Writing the session failed after KillB answered: the next run logs in",
            extra={"token": tokens.fingerprint},
        )
        raise
    try:
        store.write_access_token(AccessToken.from_token_set(tokens, credentials.api_key))
    except StoreError:
        logger.error(
            "Writing the access token failed: the next run publishes it from the session",
            extra={"token": tokens.fingerprint},
        )
        raise
