"""The refresh policy: the refresher's rules (docs/spec.md, "Refresher": rules R1-R5, rejected
tokens, revoke, the token check, telling operators) over the token states, as a few plain
functions.

Pure: it reaches KillB and Secrets Manager only through the two small interfaces below, and
takes the time as an argument. It does not send the events operators are told of: it returns
them in its Outcome (as Notices), and the handler sends them (killb_broker.notifications, which
also keeps "Refresh Failed" to one an hour, so a failing run writes no secret). What must hold
across invocations (the login backoff, the credentials version a session was logged in with, the
last rejected-token refresh) lives in the session secret.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
    is_fingerprint,
)

# A report of a rejected token forces at most one refresh this often: a KillB that refuses every
# new token too gets one refresh a minute, not one per report.
REJECTED_REFRESH_INTERVAL = 60


class SecretStore(Protocol):
    """What the policy needs of the token store; implemented by killb_broker.store.TokenStore."""

    def read_credentials(self) -> Credentials | NotConfigured: ...
    def read_session(self) -> Session: ...
    def read_access_token(self) -> AccessToken | None: ...
    def write_session(self, session: Session) -> None: ...
    def write_access_token(self, token: AccessToken) -> None: ...
    def clear_access_token(self) -> None: ...
    def superseded_by(self) -> str | None: ...


class KillB(Protocol):
    """What the policy needs of KillB; implemented by killb_broker.killb_api.KillBAuthClient."""

    def login(self, email: str, password: str) -> TokenSet: ...
    def refresh(self, refresh_token: str) -> TokenSet: ...
    def logout(self, access_token: str) -> None: ...
    def me(self, access_token: str) -> dict[str, Any]: ...
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
    SUPERSEDED = "Superseded"  # a replica region was promoted: this stack calls KillB no more
    TOKEN_CHECK = "TokenChecks"  # noqa: S105 - a metric's name
    TOKEN_CHECK_REFUSED = "TokenCheckRefused"  # noqa: S105 - a metric's name
    TOKEN_CHECK_UNANSWERED = "TokenCheckUnanswered"  # noqa: S105 - a metric's name


class DetailType(StrEnum):
    """The detail-types of the events operators are told of (docs/spec.md, "Telling operators")."""

    REFRESH_FAILED = "Refresh Failed"
    REFRESH_RECOVERED = "Refresh Recovered"
    SESSION_REVOKED = "Session Revoked"
    CREDENTIALS_REJECTED = "Credentials Rejected"
    TOKEN_REJECTED = "Token Rejected"  # noqa: S105 - a detail-type


@dataclass(frozen=True, slots=True)
class Notice:
    """One event to put on EventBridge: what happened, why, and the token it is about (by
    fingerprint, never the token) with that token's expiry."""

    detail_type: DetailType
    reason: str
    fingerprint: str | None = None
    expires_at: int | None = None

    def detail(self, stack: str) -> dict[str, str | int | None]:
        """The event's detail, exactly the shape docs/spec.md fixes; no secret in it."""
        return {
            "stack": stack,
            "reason": self.reason,
            "fingerprint": self.fingerprint,
            "expiresAt": self.expires_at,
        }


class Trigger(StrEnum):
    """Why a run may refresh: decides whether a fresh token is refreshed all the same, whether
    the refresh counts against the once-a-minute bound of rejected tokens, and whether a token
    KillB has not confirmed for a while is checked."""

    SCHEDULED = "scheduled"  # refresh only a stale token; check a fresh one when due
    FORCED = "forced"  # {"force": true}: refresh now
    REJECTED = "rejected"  # a report of the stored token: refresh now, once a minute at most
    REJECTED_REPLACED = "rejected-replaced"  # a report of a token replaced since: as scheduled
    CHECK_REFUSED = "check-refused"  # KillB refused the stored token at the check: as REJECTED

    @property
    def forces(self) -> bool:
        return self in (Trigger.FORCED, Trigger.REJECTED, Trigger.CHECK_REFUSED)

    @property
    def for_rejected(self) -> bool:
        return self in (Trigger.REJECTED, Trigger.CHECK_REFUSED)


@dataclass(frozen=True, slots=True)
class RefreshSettings:
    refresh_window: int  # seconds: refresh once the access token has less than this left
    login_backoff: int  # seconds: no new login this long after KillB refused the credentials
    base_url: str | None = None  # KILLB_BASE_URL, published with every token
    token_check: int = 0  # seconds a token may go unconfirmed by KillB; 0: never checked


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
            if is_fingerprint(rejected):
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
    """One run's result; expires_at is the expiry of the token now in the store, if any, and
    fingerprint the fingerprint of a token this run published. events are counted as metrics,
    notices are told to operators."""

    action: Action
    expires_at: int | None
    reason: str
    events: tuple[Event, ...] = ()
    notices: tuple[Notice, ...] = ()
    # The published token's fingerprint, for a recovery's notice: derived from the token, so it
    # takes no part in comparing outcomes.
    fingerprint: str | None = dataclasses.field(default=None, compare=False)

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
    answer a rejected-token report or a revoke; then say what operators must be told."""
    session = store.read_session()
    tokens = session.tokens
    if request.invalid is not None:
        return Outcome(Action.FAILED, tokens.expires_at if tokens else None, request.invalid)
    if (promoted := store.superseded_by()) is not None:
        return _superseded(promoted, tokens)
    if request.revoke:
        outcome = _revoke(store, connect, session, now=now, settings=settings)
    else:
        trigger = Trigger.FORCED if request.force else Trigger.SCHEDULED
        if request.rejected is not None:
            if tokens is None or tokens.fingerprint != request.rejected:
                # Somebody already replaced it: the report changes nothing, as a scheduled run.
                trigger = Trigger.REJECTED_REPLACED
            elif (too_soon := _too_soon(session, now)) is not None:
                return too_soon
            else:
                trigger = Trigger.REJECTED
        outcome = _refresh_as_needed(
            store, connect, session, now=now, trigger=trigger, settings=settings
        )
    return _with_notices(session, outcome)


def _refresh_as_needed(
    store: SecretStore,
    connect: KillBFactory,
    session: Session,
    *,
    now: float,
    trigger: Trigger,
    settings: RefreshSettings,
) -> Outcome:
    """R1-R5 for a scheduled or forced run, and for the refresh a rejected token asks for."""
    tokens = session.tokens
    known_expiry = tokens.expires_at if tokens else None
    state = tokens.state(now, settings.refresh_window) if tokens else TokenState.INVALID
    if tokens and state is TokenState.FRESH and not trigger.forces:
        return _noop(store, connect, session, tokens, now=now, trigger=trigger, settings=settings)

    credentials = store.read_credentials()
    if isinstance(credentials, NotConfigured):
        return _not_configured(credentials, known_expiry)
    if (blocked := _backoff_blocks(session, credentials, now, settings, known_expiry)) is not None:
        return blocked

    events = [Event.REJECTED_TOKEN_REFRESH] if trigger.for_rejected else []
    if trigger.for_rejected:
        session = dataclasses.replace(session, rejected_refresh_at=int(now))
    with contextlib.closing(connect(credentials.api_key)) as killb:
        try:
            return _refresh_or_login(
                store, killb, session, credentials, now=now, events=events, settings=settings
            )
        except KillBError as error:
            reason, event = _killb_failure(error)
    if trigger.for_rejected:
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


def _superseded(promoted: str, tokens: TokenSet | None) -> Outcome:
    """A replica region was promoted while this one was out of reach: it is the primary now,
    and this stack calls KillB no more (no refresh, login, check or logout), so no token is
    minted here any longer. Failing back makes this region a replica again (docs/deploy.md,
    "Several regions")."""
    logger.error(
        "This stack was superseded: a replica region was promoted to primary; no KillB call",
        extra={"promoted_region": promoted},
    )
    return Outcome(
        Action.FAILED,
        tokens.expires_at if tokens else None,
        f"superseded: the replica in {promoted} was promoted to primary; this stack no longer "
        "refreshes (fail back to make it a replica again)",
        (Event.SUPERSEDED,),
    )


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


def _noop(
    store: SecretStore,
    connect: KillBFactory,
    session: Session,
    tokens: TokenSet,
    *,
    now: float,
    trigger: Trigger,
    settings: RefreshSettings,
) -> Outcome:
    """R2, after checking state first: the access-token secret must hold the session's token
    (the second write may have failed last time) and the KillB root it belongs to; re-publish
    it if not. Then, on a scheduled run, the token check when it is due."""
    published = store.read_access_token()
    if (
        published is None
        or published.token != tokens.access_token
        or published.base_url != settings.base_url
    ):
        same_token = published is not None and published.token == tokens.access_token
        credentials = store.read_credentials()
        if isinstance(credentials, Credentials):
            api_key = credentials.api_key
        else:
            # Credentials blanked since: the published token keeps the key it was issued with.
            api_key = published.api_key if published and same_token else None
        logger.warning(
            "Access-token secret is behind the session: publishing the session's token",
            extra={"token": tokens.fingerprint},
        )
        published = AccessToken.from_token_set(
            tokens,
            api_key,
            base_url=settings.base_url,
            checked_at=published.checked_at if published and same_token else _issued(tokens),
        )
        store.write_access_token(published)
    left = int(tokens.expires_at - now)
    if trigger is Trigger.REJECTED_REPLACED:
        return Outcome(
            Action.NOOP, tokens.expires_at, f"rejected token already replaced: {left} s left"
        )
    if trigger is Trigger.SCHEDULED and _check_due(published.checked_at, now, settings):
        return _check_token(store, connect, session, published, now=now, settings=settings)
    return Outcome(Action.NOOP, tokens.expires_at, f"token fresh: {left} s left")


def _issued(tokens: TokenSet) -> int | None:
    """When KillB issued the tokens: a token it has just issued counts as confirmed. None for
    a session written by hand, which has no such time."""
    return tokens.obtained_at or None


def _check_due(checked_at: int | None, now: float, settings: RefreshSettings) -> bool:
    """KillB last confirmed the token longer ago than TOKEN_CHECK_SECONDS (never: long ago)."""
    if settings.token_check <= 0:
        return False
    return checked_at is None or now - checked_at > settings.token_check


def _check_token(
    store: SecretStore,
    connect: KillBFactory,
    session: Session,
    published: AccessToken,
    *,
    now: float,
    settings: RefreshSettings,
) -> Outcome:
    """The token check: ask KillB whether it still accepts the stored token. Confirmed: the
    access-token secret records when. Refused: handled as a rejected report of that token.
    Anything else: KillB unavailable, nothing changes."""
    left = published.seconds_left(now)
    credentials = store.read_credentials()
    api_key = credentials.api_key if isinstance(credentials, Credentials) else published.api_key
    with contextlib.closing(connect(api_key)) as killb:
        try:
            killb.me(published.token)
        except TokenRejected as error:
            refusal = str(error)
        except KillBError as error:
            logger.warning(
                "Token check: KillB gave no usable answer; nothing changes",
                extra={"token": published.fingerprint, "error": str(error)},
            )
            return Outcome(
                Action.NOOP,
                published.expires_at,
                f"token fresh: {left} s left; token check not answered: {error}",
                (Event.TOKEN_CHECK, Event.TOKEN_CHECK_UNANSWERED),
            )
        else:
            store.write_access_token(dataclasses.replace(published, checked_at=int(now)))
            logger.info(
                "Token check: KillB confirmed the token", extra={"token": published.fingerprint}
            )
            return Outcome(
                Action.NOOP,
                published.expires_at,
                f"token fresh: {left} s left; KillB confirmed it",
                (Event.TOKEN_CHECK,),
            )
    # An audit record: which token KillB refused, by fingerprint.
    logger.info("token check refused", extra={"token": published.fingerprint, "error": refusal})
    checked = (Event.TOKEN_CHECK, Event.TOKEN_CHECK_REFUSED)
    if (too_soon := _too_soon(session, now)) is not None:
        return dataclasses.replace(too_soon, events=(*checked, *too_soon.events))
    outcome = _refresh_as_needed(
        store, connect, session, now=now, trigger=Trigger.CHECK_REFUSED, settings=settings
    )
    return dataclasses.replace(
        outcome,
        reason=f"token check refused: {outcome.reason}",
        events=(*checked, *outcome.events),
    )


def _refresh_or_login(
    store: SecretStore,
    killb: KillB,
    session: Session,
    credentials: Credentials,
    *,
    now: float,
    events: list[Event],
    settings: RefreshSettings,
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
            _publish(store, fresh, session, credentials, settings)
            return Outcome(
                Action.REFRESHED,
                fresh.expires_at,
                "refreshed",
                (*events, Event.REFRESH),
                fingerprint=fresh.fingerprint,
            )
    return _login(store, killb, session, credentials, now=now, events=events, settings=settings)


def _login(
    store: SecretStore,
    killb: KillB,
    session: Session,
    credentials: Credentials,
    *,
    now: float,
    events: list[Event],
    settings: RefreshSettings,
    old_session_ended: bool = False,
) -> Outcome:
    """Log in and publish; then log out a session of an older credentials version (best
    effort), unless the caller ends it itself."""
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
    _publish(store, fresh, logged_in, credentials, settings)
    events.append(Event.LOGIN)
    reason = "logged in"
    old = session.tokens
    rotated = session.credentials_version not in (None, credentials.version_id)
    if old and rotated and not old_session_ended and old.expires_at > now:
        # The old session stays usable at KillB until it is logged out: end it, now that
        # nobody is handed its token any more.
        ended = _log_out(killb, old, events)
        reason = f"logged in with a new credentials version; {ended}"
    return Outcome(
        Action.LOGGED_IN, fresh.expires_at, reason, tuple(events), fingerprint=fresh.fingerprint
    )


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
        return "old session logged out at KillB"
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
    """{"revoke": true}: log in afresh and publish, then log the old session out, so that
    callers never hold a revoked token while a new one can be had. When none can be had, the
    old session is logged out all the same and its tokens are cleared from both secrets, so that
    a revoked token is never handed out again; the next scheduled run logs in (R1)."""
    old = session.tokens
    credentials = store.read_credentials()
    api_key = credentials.api_key if isinstance(credentials, Credentials) else None
    ending: list[Event] = []
    with contextlib.closing(connect(api_key)) as killb:
        attempt = _fresh_login(store, killb, session, credentials, now=now, settings=settings)
        if attempt.action is Action.LOGGED_IN:
            ended = _log_out(killb, old, ending) if old else "no session to revoke"
            return dataclasses.replace(
                attempt,
                reason=f"old session revoked: new tokens published; {ended}",
                events=(Event.REVOCATION, *attempt.events, *ending),
            )
        if old is None:
            return dataclasses.replace(
                attempt,
                reason=f"no session to revoke; no new token: {attempt.reason}",
                events=(Event.REVOCATION, *attempt.events),
            )
        try:
            _clear_tokens(store)
        finally:
            # Logged out even when clearing failed: KillB then refuses the token it still holds.
            ended = _log_out(killb, old, ending)
    logger.warning(
        "Session revoked without a new token: its tokens are cleared from both secrets",
        extra={"token": old.fingerprint},
    )
    return Outcome(
        Action.FAILED,
        None,
        f"old session revoked: its tokens cleared ({ended}); no new token: {attempt.reason}",
        (Event.REVOCATION, *attempt.events, *ending),
    )


def _fresh_login(
    store: SecretStore,
    killb: KillB,
    session: Session,
    credentials: Credentials | NotConfigured,
    *,
    now: float,
    settings: RefreshSettings,
) -> Outcome:
    """A revoke's login, under R4's backoff: logged_in with the new tokens published, or failed
    saying why no new token came."""
    known_expiry = session.tokens.expires_at if session.tokens else None
    if isinstance(credentials, NotConfigured):
        return _not_configured(credentials, known_expiry)
    if (blocked := _backoff_blocks(session, credentials, now, settings, known_expiry)) is not None:
        return blocked
    events: list[Event] = []
    try:
        return _login(
            store,
            killb,
            session,
            credentials,
            now=now,
            events=events,
            settings=settings,
            old_session_ended=True,
        )
    except KillBError as error:
        reason, event = _killb_failure(error)
        return Outcome(Action.FAILED, known_expiry, reason, (*events, event))


def _clear_tokens(store: SecretStore) -> None:
    """No token in either secret: the broker answers 503 and /v1/health says missing. The
    session secret keeps only what the login backoff needs."""
    latest = store.read_session()
    store.write_session(Session(login_backoff=latest.login_backoff))
    store.clear_access_token()


def _publish(
    store: SecretStore,
    tokens: TokenSet,
    session: Session,
    credentials: Credentials,
    settings: RefreshSettings,
) -> None:
    """Session first (the new tokens, the backoff cleared, the session's other fields kept),
    then the access token the broker reads, with the KillB root it belongs to and
    the moment KillB issued it (a new token counts as confirmed)."""
    published = dataclasses.replace(session, tokens=tokens, login_backoff=None)
    try:
        store.write_session(published)
    except StoreError:
        # KillB may already have retired the old refresh token: the next run logs in (R3).
        logger.error(
            "Writing the session failed after KillB answered: the next run logs in",
            extra={"token": tokens.fingerprint},
        )
        raise
    access_token = AccessToken.from_token_set(
        tokens, credentials.api_key, base_url=settings.base_url, checked_at=_issued(tokens)
    )
    try:
        store.write_access_token(access_token)
    except StoreError:
        logger.error(
            "Writing the access token failed: the next run publishes it from the session",
            extra={"token": tokens.fingerprint},
        )
        raise


# Telling operators


def _with_notices(session: Session, outcome: Outcome) -> Outcome:
    """The events operators may be told of, read off what the run did. Each is about one token:
    the one revoked, refused or still in service (from the session the run began with), or for
    a recovery the one just published. Every run that needed a token and got none yields a
    Refresh Failed, every run that got one a Refresh Recovered candidate: the Notifier
    (killb_broker.notifications) decides which of those two go out."""
    old = session.tokens
    about_old = (old.fingerprint, old.expires_at) if old else (None, None)
    happened = set(outcome.events)
    notices = [
        Notice(detail_type, outcome.reason, *about_old)
        for event, detail_type in (
            (Event.REVOCATION, DetailType.SESSION_REVOKED),
            (Event.LOGIN_REJECTED, DetailType.CREDENTIALS_REJECTED),
            (Event.REJECTED_TOKEN_REFRESH, DetailType.TOKEN_REJECTED),
        )
        if event in happened
    ]
    if outcome.action in (Action.REFRESHED, Action.LOGGED_IN):
        notices.append(
            Notice(
                DetailType.REFRESH_RECOVERED,
                outcome.reason,
                outcome.fingerprint,
                outcome.expires_at,
            )
        )
    elif outcome.action is Action.FAILED and Event.REJECTED_TOO_SOON not in happened:
        # A run that needed a token and got none; the token still in service, if any.
        in_service = old.fingerprint if old and outcome.expires_at is not None else None
        notices.append(
            Notice(DetailType.REFRESH_FAILED, outcome.reason, in_service, outcome.expires_at)
        )
    return dataclasses.replace(outcome, notices=tuple(notices)) if notices else outcome
