"""The refresh policy: the contract's refresher rules 1-5 over the token states, as one function.

Pure: it reaches KillB and Secrets Manager only through the two small interfaces below, and
takes the time as an argument. Where the login backoff lives: in the session secret (see rule 4).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from killb_broker.errors import (
    InvalidCredentials,
    KillBError,
    KillBUnavailable,
    StoreError,
    TokenRejected,
)
from killb_broker.observability import logger
from killb_broker.tokens import (
    AccessToken,
    Credentials,
    LoginBackoff,
    Session,
    TokenSet,
    TokenState,
)


class SecretStore(Protocol):
    """What the policy needs of the token store (killb_broker.store.TokenStore)."""

    def read_credentials(self) -> Credentials | None: ...
    def read_session(self) -> Session: ...
    def read_access_token(self) -> AccessToken | None: ...
    def write_session(self, session: Session) -> None: ...
    def write_access_token(self, token: AccessToken) -> None: ...


class KillB(Protocol):
    """What the policy needs of KillB (killb_broker.client.KillBAuthClient)."""

    def login(self, email: str, password: str) -> TokenSet: ...
    def refresh(self, refresh_token: str) -> TokenSet: ...
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


@dataclass(frozen=True, slots=True)
class RefreshSettings:
    refresh_window: int  # seconds: refresh once the access token has less than this left
    login_backoff: int  # seconds: no new login this long after KillB refused the credentials


@dataclass(frozen=True, slots=True)
class Outcome:
    """One run's result; expires_at is the expiry of the token now in the store, if any."""

    action: Action
    expires_at: int | None
    reason: str
    events: tuple[Event, ...] = ()

    def summary(self) -> dict[str, str | int | None]:
        """The contract's summary: no secret in it."""
        return {"action": self.action.value, "expiresAt": self.expires_at, "reason": self.reason}


def keep_fresh(
    store: SecretStore,
    connect: KillBFactory,
    *,
    now: float,
    force: bool,
    settings: RefreshSettings,
) -> Outcome:
    """Make sure the store holds a token with more than the refresh window left (rules 1-5)."""
    session = store.read_session()
    tokens = session.tokens
    known_expiry = tokens.expires_at if tokens else None
    state = tokens.state(now, settings.refresh_window) if tokens else TokenState.INVALID

    if tokens and state is TokenState.FRESH and not force:
        return _noop(store, tokens, now)

    credentials = store.read_credentials()
    if credentials is None:
        logger.error(
            "KillB credentials are not configured: the credentials secret needs a "
            "non-empty email and password",
            extra={"secret": "credentials"},
        )
        return Outcome(
            Action.FAILED, known_expiry, "credentials not configured", (Event.NOT_CONFIGURED,)
        )

    backoff = session.login_backoff
    if backoff and backoff.blocks(now, settings.login_backoff, credentials.version_id):
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

    events: list[Event] = []
    with contextlib.closing(connect(credentials.api_key)) as killb:
        try:
            return _refresh_or_login(store, killb, session, credentials, now=now, events=events)
        except KillBUnavailable as error:
            logger.error(
                "KillB unavailable: stored secrets left as they were", extra={"error": str(error)}
            )
            reason = f"KillB unavailable: {error}"
        except KillBError as error:
            logger.error(
                "KillB refused the request: stored secrets left as they were",
                extra={"error": str(error)},
            )
            reason = f"KillB refused the request: {error}"
    return Outcome(Action.FAILED, known_expiry, reason, (*events, Event.KILLB_UNAVAILABLE))


def _noop(store: SecretStore, tokens: TokenSet, now: float) -> Outcome:
    """Rule 2, after checking state first: the access-token secret must hold the session's
    token (the second write may have failed last time); re-publish it if not."""
    published = store.read_access_token()
    if published is None or published.token != tokens.access_token:
        credentials = store.read_credentials()
        api_key = credentials.api_key if credentials else None
        logger.warning(
            "Access-token secret is behind the session: publishing the session's token",
            extra={"token": tokens.fingerprint},
        )
        store.write_access_token(AccessToken.from_token_set(tokens, api_key))
    left = int(tokens.expires_at - now)
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
    """Rules 3 and 4: refresh with the stored refresh token; if KillB rejects it, log in."""
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
            _publish(store, fresh, credentials)
            return Outcome(
                Action.REFRESHED, fresh.expires_at, "refreshed", (*events, Event.REFRESH)
            )
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
        store.write_session(Session(tokens=session.tokens, login_backoff=backoff))
        known_expiry = session.tokens.expires_at if session.tokens else None
        return Outcome(
            Action.FAILED,
            known_expiry,
            "login rejected: KillB refused the credentials; login backoff started",
            (*events, Event.LOGIN_REJECTED),
        )
    _publish(store, fresh, credentials)
    return Outcome(Action.LOGGED_IN, fresh.expires_at, "logged in", (*events, Event.LOGIN))


def _publish(store: SecretStore, tokens: TokenSet, credentials: Credentials) -> None:
    """Session first (new tokens, backoff cleared), then the access token the broker reads."""
    try:
        store.write_session(Session(tokens=tokens))
    except StoreError:
        # KillB may already have retired the old refresh token: the next run logs in (rule 3).
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
