"""The refresh policy's rules, one behaviour per test, against an in-memory store and a scripted
KillB (no AWS, no network)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from killb_broker.errors import (
    InvalidCredentials,
    KillBError,
    KillBUnavailable,
    RateLimited,
    SecretAccessDenied,
    TokenRejected,
    UnexpectedResponse,
)
from killb_broker.policy import (
    Action,
    DetailType,
    Event,
    KillB,
    Notice,
    Outcome,
    RefreshSettings,
    Request,
    keep_fresh,
)
from killb_broker.policy import run as run_event
from killb_broker.tokens import (
    AccessToken,
    Credentials,
    LoginBackoff,
    NotConfigured,
    Session,
    TokenSet,
)

NOW = 1_800_000_000
LOGGED_OUT = object()  # a scripted answer: KillB accepted the logout
BASE_URL = "https://killb.example.test"
SETTINGS = RefreshSettings(refresh_window=1800, login_backoff=900, base_url=BASE_URL)
CREDENTIALS = Credentials(email="ops@example.test", password="pw-unit-1", version_id="v1")


def token_set(name: str, *, expires_in: int = 3600, now: int = NOW) -> TokenSet:
    return TokenSet(
        access_token=f"access-{name}",
        refresh_token=f"refresh-{name}",
        expires_at=now + expires_in,
        obtained_at=now,
    )


def published(
    name: str, *, expires_in: int = 3600, now: int = NOW, api_key: str | None = None
) -> AccessToken:
    """The access token a run publishes for token_set(name): with the KillB root it belongs to,
    and confirmed at the moment KillB issued it."""
    tokens = token_set(name, expires_in=expires_in, now=now)
    return AccessToken.from_token_set(tokens, api_key, base_url=BASE_URL, checked_at=now)


def recovery(name: str, reason: str, *, now: int = NOW) -> Notice:
    """The Refresh Recovered candidate of a run that published token_set(name): the Notifier
    sends it only after a failure it told of."""
    tokens = token_set(name, now=now)
    return Notice(DetailType.REFRESH_RECOVERED, reason, tokens.fingerprint, tokens.expires_at)


@dataclass
class FakeStore:
    """The three secrets in memory; records writes in order and can fail one kind of write."""

    credentials: Credentials | NotConfigured = CREDENTIALS
    session: Session = field(default_factory=Session)
    access_token: AccessToken | None = None
    writes: list[str] = field(default_factory=list)
    credentials_reads: int = 0
    failing_write: str | None = None
    promoted_region: str | None = None  # a replica region promoted to primary

    def read_credentials(self) -> Credentials | NotConfigured:
        self.credentials_reads += 1
        return self.credentials

    def read_session(self) -> Session:
        return self.session

    def read_access_token(self) -> AccessToken | None:
        return self.access_token

    def write_session(self, session: Session) -> None:
        if self.failing_write == "session":
            raise SecretAccessDenied("PutSecretValue: access denied", secret_id="session")
        self.writes.append("session")
        self.session = session

    def write_access_token(self, token: AccessToken) -> None:
        if self.failing_write == "access_token":
            raise SecretAccessDenied("PutSecretValue: access denied", secret_id="access-token")
        self.writes.append("access_token")
        self.access_token = token

    def superseded_by(self) -> str | None:
        return self.promoted_region

    def clear_access_token(self) -> None:
        if self.failing_write == "access_token":
            raise SecretAccessDenied("PutSecretValue: access denied", secret_id="access-token")
        self.writes.append("access_token")
        self.access_token = None

    def publish(
        self, tokens: TokenSet, api_key: str | None = None, credentials_version: str = "v1"
    ) -> None:
        """Given: a run that succeeded earlier left these tokens in both secrets."""
        self.session = Session(tokens=tokens, credentials_version=credentials_version)
        self.access_token = AccessToken.from_token_set(
            tokens, api_key, base_url=BASE_URL, checked_at=tokens.obtained_at
        )


@dataclass
class FakeKillB:
    """Answers each call with the next scripted token set or error; records the calls."""

    answers: list[TokenSet | KillBError | object] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    api_keys: list[str | None] = field(default_factory=list)
    closed: int = 0

    def connect(self, api_key: str | None) -> KillB:
        self.api_keys.append(api_key)
        return self

    def login(self, email: str, password: str) -> TokenSet:
        self.calls.append(("login", email))
        return self._answer()

    def refresh(self, refresh_token: str) -> TokenSet:
        self.calls.append(("refresh", refresh_token))
        return self._answer()

    def logout(self, access_token: str) -> None:
        self.calls.append(("logout", access_token))
        answer = self.answers.pop(0)
        if isinstance(answer, KillBError):
            raise answer
        assert answer is LOGGED_OUT, "a logout was asked for where a token set was scripted"

    def me(self, access_token: str) -> dict[str, Any]:
        self.calls.append(("me", access_token))
        answer = self.answers.pop(0)
        if isinstance(answer, KillBError):
            raise answer
        assert isinstance(answer, dict), "a token check was asked for where a claim set was not"
        return answer

    def close(self) -> None:
        self.closed += 1

    def _answer(self) -> TokenSet:
        answer = self.answers.pop(0)
        if isinstance(answer, KillBError):
            raise answer
        assert isinstance(answer, TokenSet)
        return answer


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def killb() -> Iterator[FakeKillB]:
    fake = FakeKillB()
    yield fake
    assert not fake.answers, "a scripted KillB answer was never asked for"


def run(
    store: FakeStore,
    killb: FakeKillB,
    *,
    now: float = NOW,
    force: bool = False,
    request: Request | None = None,
) -> Outcome:
    request = request or Request(force=force)
    return keep_fresh(store, killb.connect, now=now, request=request, settings=SETTINGS)


def logged_in(
    tokens: TokenSet, version: str = "v1", *, rejected_refresh_at: int | None = None
) -> Session:
    """The session a login with credentials version `version` writes."""
    return Session(
        tokens=tokens, credentials_version=version, rejected_refresh_at=rejected_refresh_at
    )


def test_no_session_logs_in_and_writes_session_then_access_token(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given no session yet
    killb.answers = [token_set("a")]

    # When the refresher runs
    outcome = run(store, killb)

    # Then it logs in and writes the session first, then the access token
    assert killb.calls == [("login", "ops@example.test")]
    assert store.writes == ["session", "access_token"]
    assert store.session == logged_in(token_set("a"))
    assert store.access_token == published("a")
    assert outcome == Outcome(
        Action.LOGGED_IN, NOW + 3600, "logged in", (Event.LOGIN,), (recovery("a", "logged in"),)
    )


def test_fresh_token_is_a_noop_without_killb_credentials_or_writes(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a token with more than the refresh window left
    store.publish(token_set("a"))

    # When the refresher runs, not forced
    outcome = run(store, killb, now=NOW + 1000)

    # Then nothing is called, read or written beyond the session and the access token
    assert killb.api_keys == []
    assert store.credentials_reads == 0
    assert store.writes == []
    assert outcome.action is Action.NOOP
    assert outcome.expires_at == NOW + 3600


@pytest.mark.parametrize(
    ("now", "force"),
    [(NOW + 2000, False), (NOW + 4000, False), (NOW, True)],
    ids=["stale", "expired", "fresh-but-forced"],
)
def test_token_is_refreshed_with_the_stored_refresh_token(
    store: FakeStore, killb: FakeKillB, now: int, force: bool
) -> None:
    # Given a token issued at NOW: inside the refresh window, expired, or fresh and forced
    store.publish(token_set("a"))
    killb.answers = [token_set("b", now=now)]

    # When the refresher runs
    outcome = run(store, killb, now=now, force=force)

    # Then it refreshes (no login first) and keeps the new refresh token
    assert killb.calls == [("refresh", "refresh-a")]
    assert store.session == logged_in(token_set("b", now=now))
    assert store.access_token == published("b", now=now)
    assert outcome == Outcome(
        Action.REFRESHED,
        now + 3600,
        "refreshed",
        (Event.REFRESH,),
        (recovery("b", "refreshed", now=now),),
    )


def test_refresh_token_rejected_falls_back_to_login(store: FakeStore, killb: FakeKillB) -> None:
    # Given a stale token whose refresh token KillB no longer accepts
    store.publish(token_set("a"))
    killb.answers = [TokenRejected("refresh refused", status=401), token_set("b")]

    # When the refresher runs
    outcome = run(store, killb, now=NOW + 2000)

    # Then it logs in and publishes the login's tokens
    assert killb.calls == [("refresh", "refresh-a"), ("login", "ops@example.test")]
    assert store.session.tokens == token_set("b")
    assert outcome.action is Action.LOGGED_IN
    assert outcome.events == (Event.REFRESH_REJECTED, Event.LOGIN)


def test_credentials_not_configured_fail_without_a_killb_call_saying_what_is_wrong(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a credentials secret whose password is empty
    store.credentials = NotConfigured("empty field password")

    # When the refresher runs
    outcome = run(store, killb)

    # Then no KillB client is even built, nothing is written, and the reason says what is wrong
    assert killb.api_keys == []
    assert store.writes == []
    assert outcome.summary() == {
        "action": "failed",
        "expiresAt": None,
        "reason": "credentials not configured: empty field password",
    }
    assert outcome.events == (Event.NOT_CONFIGURED,)


def test_rejected_credentials_start_a_backoff_kept_in_the_session(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a stale session whose refresh token and credentials KillB both reject
    store.publish(token_set("a"))
    killb.answers = [TokenRejected("refused", status=401), InvalidCredentials("no", status=401)]

    # When the refresher runs
    outcome = run(store, killb, now=NOW + 2000)

    # Then the session keeps its tokens and records the backoff; the access token is untouched
    assert store.writes == ["session"]
    assert store.session == Session(
        tokens=token_set("a"),
        login_backoff=LoginBackoff(NOW + 2000, "v1"),
        credentials_version="v1",
    )
    assert outcome.action is Action.FAILED
    assert outcome.events == (Event.REFRESH_REJECTED, Event.LOGIN_REJECTED)


def test_login_backoff_blocks_the_next_run_without_a_killb_call(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given KillB rejected these credentials 100 s ago
    store.session = Session(login_backoff=LoginBackoff(NOW - 100, "v1"))

    # When the refresher runs again
    outcome = run(store, killb)

    # Then no KillB call and no write happen
    assert killb.api_keys == []
    assert store.writes == []
    assert outcome.action is Action.FAILED
    assert "login backoff" in outcome.reason
    assert outcome.events == (Event.LOGIN_BACKOFF_ACTIVE,)


def test_login_backoff_blocks_a_forced_run(store: FakeStore, killb: FakeKillB) -> None:
    # Given KillB rejected these credentials 100 s ago
    store.session = Session(login_backoff=LoginBackoff(NOW - 100, "v1"))

    # When the refresher is forced
    outcome = run(store, killb, force=True)

    # Then the backoff still holds
    assert killb.api_keys == []
    assert outcome.action is Action.FAILED


def test_login_backoff_ends_after_the_backoff_period(store: FakeStore, killb: FakeKillB) -> None:
    # Given KillB rejected these credentials exactly LOGIN_BACKOFF_SECONDS ago
    store.session = Session(login_backoff=LoginBackoff(NOW - 900, "v1"))
    killb.answers = [token_set("a")]

    # When the refresher runs
    outcome = run(store, killb)

    # Then it logs in again, and the success clears the backoff
    assert killb.calls == [("login", "ops@example.test")]
    assert outcome.action is Action.LOGGED_IN
    assert store.session.login_backoff is None


def test_new_credentials_version_ends_the_backoff_at_once(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a backoff for version v1, and the operator has since put version v2
    store.session = Session(login_backoff=LoginBackoff(NOW - 10, "v1"))
    store.credentials = Credentials(email="ops@example.test", password="pw-unit-2", version_id="v2")
    killb.answers = [token_set("a")]

    # When the refresher runs
    outcome = run(store, killb)

    # Then it logs in with the new credentials
    assert killb.calls == [("login", "ops@example.test")]
    assert outcome.action is Action.LOGGED_IN


@pytest.mark.parametrize(
    "error",
    [
        KillBUnavailable("KillB did not answer", status=503),
        RateLimited("KillB rate limit", retry_after=2),
        UnexpectedResponse("not the JSON KillB documents", status=200),
    ],
    ids=["5xx", "429", "non-json"],
)
def test_killb_unavailable_fails_and_leaves_the_secrets_untouched(
    store: FakeStore, killb: FakeKillB, error: KillBError
) -> None:
    # Given a stale session and a KillB that gives no usable answer
    store.publish(token_set("a"))
    killb.answers = [error]

    # When the refresher runs
    outcome = run(store, killb, now=NOW + 2000)

    # Then it fails, says why, and writes nothing: the tokens stay
    assert store.writes == []
    assert store.session.tokens == token_set("a")
    assert store.access_token == published("a")
    assert outcome.action is Action.FAILED
    assert "KillB unavailable" in outcome.reason
    assert outcome.expires_at == NOW + 3600
    assert outcome.events == (Event.KILLB_UNAVAILABLE,)


def test_killb_refusing_the_login_otherwise_is_counted_as_refused_not_unavailable(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given KillB answers the login with a 4xx that is not a credentials rejection
    killb.answers = [KillBError("KillB refused the login", status=422)]

    # When the refresher runs
    outcome = run(store, killb)

    # Then it fails without starting a backoff, counted as a refusal
    assert store.writes == []
    assert store.session.login_backoff is None
    assert outcome.action is Action.FAILED
    assert "refused" in outcome.reason
    assert outcome.events == (Event.KILLB_REFUSED,)


def test_rate_limited_fails_saying_rate_limited(store: FakeStore, killb: FakeKillB) -> None:
    # Given KillB rate-limits the login with a Retry-After longer than the run can wait
    killb.answers = [RateLimited("KillB said wait", retry_after=3600)]

    # When the refresher runs
    outcome = run(store, killb)

    # Then it fails at once, the reason saying rate-limited and for how long
    assert outcome.action is Action.FAILED
    assert "rate-limited" in outcome.reason
    assert "3600 s" in outcome.reason
    assert outcome.events == (Event.KILLB_UNAVAILABLE,)


def test_refresh_rejected_then_login_unavailable_reports_both(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given KillB rejects the refresh token, then cannot answer the login
    store.publish(token_set("a"))
    killb.answers = [TokenRejected("refused", status=401), KillBUnavailable("down", status=502)]

    # When the refresher runs
    outcome = run(store, killb, now=NOW + 2000)

    # Then both are counted, and nothing is written
    assert outcome.events == (Event.REFRESH_REJECTED, Event.KILLB_UNAVAILABLE)
    assert store.writes == []


def test_killb_client_carries_the_api_key_and_is_closed(store: FakeStore, killb: FakeKillB) -> None:
    # Given credentials that hold an API key
    store.credentials = Credentials("ops@example.test", "pw-unit-1", "ak-unit-1", "v1")
    killb.answers = [token_set("a")]

    # When the refresher logs in
    run(store, killb)

    # Then the client was built with the key, closed after use, and the access token holds it
    assert killb.api_keys == ["ak-unit-1"]
    assert killb.closed == 1
    assert store.access_token == published("a", api_key="ak-unit-1")


def test_access_token_secret_behind_the_session_is_republished_without_killb(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given the last run wrote the session but not the access token
    store.publish(token_set("a"), api_key="ak-unit-1")
    store.access_token = AccessToken("access-old", NOW - 10)
    store.credentials = Credentials("ops@example.test", "pw-unit-1", "ak-unit-1", "v1")

    # When the refresher runs with the session still fresh
    outcome = run(store, killb)

    # Then the access token is re-published from the session, with the API key, no KillB call
    assert killb.api_keys == []
    assert store.writes == ["access_token"]
    assert store.access_token == published("a", api_key="ak-unit-1")
    assert outcome.action is Action.NOOP


def test_session_write_failing_after_a_refresh_propagates_and_skips_the_access_token(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a store that cannot write the session
    store.publish(token_set("a"))
    store.failing_write = "session"
    killb.answers = [token_set("b")]

    # When the refresher refreshes, then Then the store error propagates
    with pytest.raises(SecretAccessDenied):
        run(store, killb, now=NOW + 2000)

    # And the access token still holds the old token (never a token the session lacks)
    assert store.access_token == published("a")


def test_access_token_write_failing_propagates_after_the_session_is_written(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a store that cannot write the access token
    store.failing_write = "access_token"
    killb.answers = [token_set("a")]

    # When the refresher logs in, Then the store error propagates
    with pytest.raises(SecretAccessDenied):
        run(store, killb)

    # And the session already holds the new tokens for the next run to publish
    assert store.session.tokens == token_set("a")


def test_summary_holds_only_action_expires_at_and_reason() -> None:
    # Given an outcome
    outcome = Outcome(Action.REFRESHED, NOW, "refreshed", (Event.REFRESH,))

    # When it is turned into the summary, Then it has exactly those three fields, no events
    assert outcome.summary() == {"action": "refreshed", "expiresAt": NOW, "reason": "refreshed"}


# Events: what each invocation asks for


@pytest.mark.parametrize(
    ("event", "request_"),
    [
        ({"version": "0", "detail-type": "Scheduled Event", "detail": {}}, Request()),
        ({"force": True}, Request(force=True)),
        ({"force": True, "rejected": "0123456789ab"}, Request(force=True, rejected="0123456789ab")),
        ({"revoke": True}, Request(revoke=True)),
        ({"revoke": False, "force": True}, Request(force=True)),
        ({"revoke": "yes"}, Request()),
        ({"force": "yes"}, Request()),
        (["force"], Request()),
    ],
    ids=[
        "scheduled",
        "force",
        "rejected",
        "revoke",
        "revoke-false",
        "revoke-not-boolean",
        "force-not-boolean",
        "not-an-object",
    ],
)
def test_event_is_read_as_a_request(event: object, request_: Request) -> None:
    # Given an event, When it is read, Then it asks for what it says (and only a real true revokes)
    assert Request.from_event(event) == request_


@pytest.mark.parametrize(
    "rejected",
    ["0123456789AB", "0123456789a", "0123456789abc", "not-hex-at-all", 12, None],
    ids=["upper-case", "too-short", "too-long", "not-hex", "number", "null"],
)
def test_malformed_rejected_fingerprint_fails_without_killb(
    store: FakeStore, killb: FakeKillB, rejected: object
) -> None:
    # Given a fresh token, and an event whose rejected is not 12 lowercase hex digits
    store.publish(token_set("a"))

    # When the refresher runs it
    outcome = run_event(
        {"force": True, "rejected": rejected}, store, killb.connect, now=NOW, settings=SETTINGS
    )

    # Then it fails saying so, with no KillB client built and nothing written
    assert outcome == Outcome(Action.FAILED, NOW + 3600, "invalid rejected fingerprint")
    assert killb.api_keys == []
    assert store.writes == []


# Rejected tokens


def rejected(tokens: TokenSet) -> Request:
    return Request(force=True, rejected=tokens.fingerprint)


def test_report_of_the_stored_token_refreshes_it_and_records_when(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a fresh token that KillB refused
    store.publish(token_set("a"))
    killb.answers = [token_set("b", now=NOW + 10)]

    # When a report of it arrives
    outcome = run(store, killb, now=NOW + 10, request=rejected(token_set("a")))

    # Then it is refreshed, and the session records the time of this rejected-token refresh
    assert killb.calls == [("refresh", "refresh-a")]
    assert outcome.action is Action.REFRESHED
    assert outcome.events == (Event.REJECTED_TOKEN_REFRESH, Event.REFRESH)
    assert store.session == logged_in(token_set("b", now=NOW + 10), rejected_refresh_at=NOW + 10)
    assert store.access_token == published("b", now=NOW + 10)


def test_report_of_the_stored_token_logs_in_when_the_refresh_is_refused(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a token KillB refused, and its refresh token too
    store.publish(token_set("a"))
    killb.answers = [TokenRejected("refused", status=401), token_set("b")]

    # When a report of it arrives
    outcome = run(store, killb, request=rejected(token_set("a")))

    # Then it logs in
    assert killb.calls == [("refresh", "refresh-a"), ("login", "ops@example.test")]
    assert outcome.action is Action.LOGGED_IN
    assert outcome.events == (Event.REJECTED_TOKEN_REFRESH, Event.REFRESH_REJECTED, Event.LOGIN)
    assert store.session == logged_in(token_set("b"), rejected_refresh_at=NOW)


def test_report_of_a_token_already_replaced_is_a_noop(store: FakeStore, killb: FakeKillB) -> None:
    # Given the store holds token b, and a caller reports the older token a
    store.publish(token_set("b"))

    # When the report arrives
    outcome = run(store, killb, request=rejected(token_set("a")))

    # Then nothing is asked of KillB nor written; the reason says it was already replaced
    assert killb.api_keys == []
    assert store.writes == []
    assert outcome == Outcome(
        Action.NOOP, NOW + 3600, "rejected token already replaced: 3600 s left"
    )


def test_report_of_a_replaced_token_still_publishes_the_session_token(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given the access-token secret still holds token a (its last write failed), the session b
    store.publish(token_set("b"))
    store.access_token = AccessToken("access-a", NOW + 3600)

    # When a caller reports token a
    outcome = run(store, killb, request=rejected(token_set("a")))

    # Then the session's token b is published, with no KillB call
    assert killb.api_keys == []
    assert store.access_token == published("b")
    assert outcome.action is Action.NOOP


@pytest.mark.parametrize("seconds_later", [0, 1, 59])
def test_second_report_within_a_minute_fails_as_too_soon(
    store: FakeStore, killb: FakeKillB, seconds_later: int
) -> None:
    # Given a rejected-token refresh ran at NOW, and KillB refuses the new token too
    store.session = logged_in(token_set("b"), rejected_refresh_at=NOW)
    store.access_token = AccessToken("access-b", NOW + 3600)

    # When a report of the new token arrives within 60 s
    outcome = run(store, killb, now=NOW + seconds_later, request=rejected(token_set("b")))

    # Then no KillB call: the run fails, saying too soon
    assert killb.api_keys == []
    assert store.writes == []
    assert outcome.action is Action.FAILED
    assert "too soon" in outcome.reason
    assert outcome.events == (Event.REJECTED_TOO_SOON,)


def test_report_a_minute_after_the_last_rejected_refresh_refreshes_again(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a rejected-token refresh ran 60 s ago
    store.session = logged_in(token_set("b"), rejected_refresh_at=NOW - 60)
    killb.answers = [token_set("c")]

    # When a report of the new token arrives
    outcome = run(store, killb, request=rejected(token_set("b")))

    # Then it refreshes again
    assert outcome.action is Action.REFRESHED
    assert store.session.rejected_refresh_at == NOW


def test_rejected_refresh_that_killb_cannot_answer_keeps_the_tokens_and_counts_the_attempt(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a reported token, and a KillB that cannot answer
    store.publish(token_set("a"))
    killb.answers = [KillBUnavailable("down", status=503)]

    # When the report arrives
    outcome = run(store, killb, request=rejected(token_set("a")))

    # Then the tokens stay as they were; only the attempt's time is written to the session
    assert outcome.action is Action.FAILED
    assert outcome.events == (Event.REJECTED_TOKEN_REFRESH, Event.KILLB_UNAVAILABLE)
    assert store.session == logged_in(token_set("a"), rejected_refresh_at=NOW)
    assert store.access_token == published("a")


def test_report_during_an_outage_is_too_soon_a_second_time(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a report that KillB could not answer 30 s ago
    store.publish(token_set("a"))
    killb.answers = [KillBUnavailable("down", status=503)]
    run(store, killb, request=rejected(token_set("a")))
    calls = list(killb.calls)

    # When the same token is reported again within the minute
    outcome = run(store, killb, now=NOW + 30, request=rejected(token_set("a")))

    # Then KillB is not asked again: every report of an outage would otherwise retry KillB
    assert killb.calls == calls
    assert outcome.events == (Event.REJECTED_TOO_SOON,)


def test_report_inside_the_login_backoff_makes_no_killb_call(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given KillB refused these credentials 100 s ago, and the stored token is reported
    store.publish(token_set("a"))
    store.session = Session(
        tokens=token_set("a"), login_backoff=LoginBackoff(NOW - 100, "v1"), credentials_version="v1"
    )

    # When the report arrives
    outcome = run(store, killb, request=rejected(token_set("a")))

    # Then the backoff holds
    assert killb.api_keys == []
    assert outcome.events == (Event.LOGIN_BACKOFF_ACTIVE,)


# Revoke


def test_revoke_logs_in_and_publishes_then_logs_the_old_session_out(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a fresh session
    store.publish(token_set("a"))
    killb.answers = [token_set("b"), LOGGED_OUT]

    # When revoke arrives
    outcome = run(store, killb, request=Request(revoke=True))

    # Then a login publishes new tokens first, and only then is the old session logged out
    assert killb.calls == [("login", "ops@example.test"), ("logout", "access-a")]
    assert store.writes == ["session", "access_token"]
    assert store.session == logged_in(token_set("b"))
    assert store.access_token == published("b")
    assert outcome.action is Action.LOGGED_IN
    assert "old session revoked" in outcome.reason
    assert outcome.events == (Event.REVOCATION, Event.LOGIN, Event.LOGOUT)


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (TokenRejected("KillB refused the logout", status=401), "refused the logout"),
        (KillBUnavailable("KillB logout timed out"), "could not answer the logout"),
    ],
    ids=["refused", "unavailable"],
)
def test_revoke_whose_logout_fails_keeps_the_new_login_saying_so(
    store: FakeStore, killb: FakeKillB, error: KillBError, said: str
) -> None:
    # Given a session, and a KillB that logs in but refuses or cannot answer the logout
    store.publish(token_set("a"))
    killb.answers = [token_set("b"), error]

    # When revoke arrives
    outcome = run(store, killb, request=Request(revoke=True))

    # Then the new login stands, and the reason reports the failed logout
    assert outcome.action is Action.LOGGED_IN
    assert said in outcome.reason
    assert outcome.events == (Event.REVOCATION, Event.LOGIN, Event.LOGOUT_FAILED)
    assert store.session.tokens == token_set("b")


def test_revoke_whose_login_fails_logs_out_and_clears_the_tokens(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a session, and a KillB that cannot answer the login but accepts the logout
    store.publish(token_set("a"))
    killb.answers = [KillBUnavailable("down", status=502), LOGGED_OUT]

    # When revoke arrives
    outcome = run(store, killb, request=Request(revoke=True))

    # Then the old session is logged out all the same, and neither secret holds its tokens
    assert killb.calls == [("login", "ops@example.test"), ("logout", "access-a")]
    assert store.access_token is None
    assert store.session.tokens is None
    assert outcome.action is Action.FAILED
    assert outcome.expires_at is None
    assert "old session revoked" in outcome.reason
    assert "KillB unavailable" in outcome.reason
    assert outcome.events == (Event.REVOCATION, Event.KILLB_UNAVAILABLE, Event.LOGOUT)


def test_revoke_inside_the_login_backoff_keeps_only_the_backoff(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a session, and a login backoff started 100 s ago
    store.publish(token_set("a"))
    backoff = LoginBackoff(NOW - 100, "v1")
    store.session = dataclasses.replace(store.session, login_backoff=backoff)
    killb.answers = [LOGGED_OUT]

    # When revoke arrives
    outcome = run(store, killb, request=Request(revoke=True))

    # Then no login is tried, the session is logged out, and the session keeps the backoff only
    assert killb.calls == [("logout", "access-a")]
    assert store.session == Session(login_backoff=backoff)
    assert store.access_token is None
    assert outcome.action is Action.FAILED
    assert "login backoff" in outcome.reason


def test_revoke_whose_credentials_are_refused_logs_out_and_keeps_the_new_backoff(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a session, and a KillB that refuses the credentials at the new login
    store.publish(token_set("a"))
    killb.answers = [InvalidCredentials("no", status=401), LOGGED_OUT]

    # When revoke arrives
    outcome = run(store, killb, request=Request(revoke=True))

    # Then the old session is logged out, its tokens cleared, the backoff kept
    assert killb.calls == [("login", "ops@example.test"), ("logout", "access-a")]
    assert store.session.tokens is None
    assert store.session.login_backoff == LoginBackoff(NOW, "v1")
    assert store.access_token is None
    assert outcome.events == (Event.REVOCATION, Event.LOGIN_REJECTED, Event.LOGOUT)


def test_revoke_with_credentials_not_configured_still_ends_the_old_session(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a session, and credentials that are not configured
    store.publish(token_set("a"))
    store.credentials = NotConfigured("missing field email")
    killb.answers = [LOGGED_OUT]

    # When revoke arrives
    outcome = run(store, killb, request=Request(revoke=True))

    # Then no login, but the old session is logged out and cleared; the reason says why
    assert killb.calls == [("logout", "access-a")]
    assert store.access_token is None
    assert outcome.action is Action.FAILED
    assert "credentials not configured: missing field email" in outcome.reason


def test_revoke_with_no_stored_session_logs_in_and_sends_no_logout(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given no session yet
    killb.answers = [token_set("a")]

    # When revoke arrives
    outcome = run(store, killb, request=Request(revoke=True))

    # Then it logs in and publishes, and asks KillB for no logout
    assert killb.calls == [("login", "ops@example.test")]
    assert store.access_token == published("a")
    assert outcome.action is Action.LOGGED_IN


def test_revoke_whose_clearing_fails_still_logs_the_session_out(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a session, a KillB that cannot answer the login, and a store that cannot write
    store.publish(token_set("a"))
    store.failing_write = "session"
    killb.answers = [KillBUnavailable("down", status=502), LOGGED_OUT]

    # When revoke arrives, Then the store's error propagates, after the logout
    with pytest.raises(SecretAccessDenied):
        run(store, killb, request=Request(revoke=True))
    assert killb.calls[-1] == ("logout", "access-a")


# Logout on a new credentials version

V2 = Credentials(email="ops@example.test", password="pw-unit-2", version_id="v2")


def test_login_with_a_new_credentials_version_logs_the_old_session_out_after_publishing(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a stale session of credentials v1 whose refresh KillB refuses, and credentials v2
    store.publish(token_set("a"), credentials_version="v1")
    store.credentials = V2
    killb.answers = [TokenRejected("refused", status=401), token_set("b"), LOGGED_OUT]

    # When the refresher runs
    outcome = run(store, killb, now=NOW + 2000)

    # Then it logs in with v2, publishes, and only then logs the old session out
    assert killb.calls == [
        ("refresh", "refresh-a"),
        ("login", "ops@example.test"),
        ("logout", "access-a"),
    ]
    assert store.writes == ["session", "access_token"]
    assert store.session == logged_in(token_set("b"), "v2")
    assert outcome.action is Action.LOGGED_IN
    assert outcome.events == (Event.REFRESH_REJECTED, Event.LOGIN, Event.LOGOUT)


def test_failed_logout_of_the_old_session_never_fails_the_run(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a login with credentials v2 while a v1 session is stored, and a logout KillB refuses
    store.publish(token_set("a"), credentials_version="v1")
    store.credentials = V2
    killb.answers = [
        TokenRejected("refused", status=401),
        token_set("b"),
        KillBUnavailable("down", status=503),
    ]

    # When the refresher runs
    outcome = run(store, killb, now=NOW + 2000)

    # Then the run is a login all the same, the failed logout counted
    assert outcome.action is Action.LOGGED_IN
    assert outcome.events == (Event.REFRESH_REJECTED, Event.LOGIN, Event.LOGOUT_FAILED)
    assert store.access_token == published("b")


@pytest.mark.parametrize(
    ("version", "now"),
    [("v2", NOW + 2000), (None, NOW + 2000), ("v1", NOW + 4000)],
    ids=["same-version", "version-unknown", "old-token-expired"],
)
def test_login_logs_nothing_out_unless_a_live_session_of_another_version_is_stored(
    store: FakeStore, killb: FakeKillB, version: str | None, now: int
) -> None:
    # Given a stored session of the same version, of an unknown one, or already expired
    store.session = Session(tokens=token_set("a"), credentials_version=version)
    store.credentials = V2
    killb.answers = [TokenRejected("refused", status=401), token_set("b", now=now)]

    # When the refresher logs in with v2
    outcome = run(store, killb, now=now)

    # Then no logout is attempted
    assert [call for call, _ in killb.calls] == ["refresh", "login"]
    assert outcome.events == (Event.REFRESH_REJECTED, Event.LOGIN)


def test_metrics_count_events_failure_and_seconds_left() -> None:
    # Given a failed run that still has a token with 100 s left
    outcome = Outcome(Action.FAILED, NOW + 100, "x", (Event.REJECTED_TOO_SOON,))

    # When its metrics are read, Then each is named as the dashboard counts it
    assert [(name, value) for name, _, value in outcome.metrics(NOW)] == [
        ("RejectedTooSoon", 1),
        ("RefresherFailed", 1),
        ("AccessTokenSecondsLeft", 100),
    ]


# The token check: a scheduled run asks KillB whether it still accepts a token it has not
# confirmed for TOKEN_CHECK_SECONDS

CHECKING = dataclasses.replace(SETTINGS, token_check=600)
CLAIMS = {"id": "usr_0001", "email": "ops@example.test"}


def check_run(store: FakeStore, killb: FakeKillB, *, now: float, force: bool = False) -> Outcome:
    return keep_fresh(
        store, killb.connect, now=now, request=Request(force=force), settings=CHECKING
    )


def test_published_token_carries_the_killb_root_and_when_killb_issued_it(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given no session, When the refresher logs in 5 s after KillB's answer time
    killb.answers = [token_set("a", now=NOW - 5)]
    run(store, killb)

    # Then the access token holds KILLB_BASE_URL, and checkedAt is the moment KillB issued it
    assert store.access_token is not None
    assert store.access_token.base_url == BASE_URL
    assert store.access_token.checked_at == NOW - 5


def test_republished_token_keeps_the_killb_root_and_its_issue_time(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given the access-token secret behind the session (its last write failed)
    store.publish(token_set("a", now=NOW - 100))
    store.access_token = AccessToken("access-old", NOW + 10)

    # When a scheduled run finds the session fresh
    run(store, killb)

    # Then the session's token is published with baseUrl and checkedAt
    assert store.access_token == published("a", now=NOW - 100)


def test_token_published_by_an_older_refresher_gains_its_killb_root_keeping_its_key(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given the session's token published without baseUrl, and credentials since blanked
    store.publish(token_set("a"), api_key="ak-unit-1")
    assert store.access_token is not None
    store.access_token = dataclasses.replace(store.access_token, base_url=None)
    store.credentials = NotConfigured("empty field password")

    # When a scheduled run finds the session fresh
    outcome = run(store, killb)

    # Then the same token is published with KILLB_BASE_URL, its API key and checkedAt kept
    assert killb.api_keys == []
    assert store.access_token == published("a", api_key="ak-unit-1")
    assert outcome.action is Action.NOOP


def test_check_not_due_makes_no_killb_call(store: FakeStore, killb: FakeKillB) -> None:
    # Given a token KillB issued 600 s ago, and a check every 600 s
    store.publish(token_set("a"))

    # When a scheduled run comes exactly 600 s after, Then nothing is asked nor written
    outcome = check_run(store, killb, now=NOW + 600)
    assert killb.calls == []
    assert store.writes == []
    assert outcome.events == ()


def test_check_confirmed_records_when_without_a_new_token(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a token KillB last confirmed 601 s ago, and KillB still accepting it
    store.publish(token_set("a"))
    killb.answers = [CLAIMS]

    # When a scheduled run comes
    outcome = check_run(store, killb, now=NOW + 601)

    # Then KillB was asked with that token, and only checkedAt changed
    assert killb.calls == [("me", "access-a")]
    assert store.writes == ["access_token"]
    assert store.access_token == dataclasses.replace(published("a"), checked_at=NOW + 601)
    assert outcome.action is Action.NOOP
    assert "confirmed" in outcome.reason
    assert outcome.events == (Event.TOKEN_CHECK,)


def test_check_of_a_token_never_confirmed_is_due_at_once(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given an access-token secret without checkedAt (written by an older refresher)
    store.publish(token_set("a"))
    assert store.access_token is not None
    store.access_token = dataclasses.replace(store.access_token, checked_at=None)
    killb.answers = [CLAIMS]

    # When a scheduled run comes, Then the token is checked
    check_run(store, killb, now=NOW + 1)
    assert killb.calls == [("me", "access-a")]


@pytest.mark.parametrize(
    "error",
    [
        KillBUnavailable("KillB failed", status=503),
        RateLimited("KillB rate limit", retry_after=2),
        UnexpectedResponse("not JSON", status=200),
        KillBError("KillB refused the token check", status=403, error_code="AUTH.0004"),
    ],
    ids=["5xx", "429", "non-json", "other-refusal"],
)
def test_check_killb_cannot_answer_changes_nothing(
    store: FakeStore, killb: FakeKillB, error: KillBError
) -> None:
    # Given a token due for its check, and a KillB that gives no usable answer
    store.publish(token_set("a"))
    killb.answers = [error]

    # When a scheduled run comes
    outcome = check_run(store, killb, now=NOW + 601)

    # Then nothing is written, and the run is still a noop
    assert store.writes == []
    assert outcome.action is Action.NOOP
    assert outcome.events == (Event.TOKEN_CHECK, Event.TOKEN_CHECK_UNANSWERED)
    assert outcome.notices == ()


def test_check_refused_is_handled_as_a_rejected_report(store: FakeStore, killb: FakeKillB) -> None:
    # Given a token due for its check, which KillB refuses; its refresh token still works
    store.publish(token_set("a"))
    killb.answers = [TokenRejected("refused", status=401, error_code="AUTH.0003"), token_set("b")]

    # When a scheduled run comes
    outcome = check_run(store, killb, now=NOW + 601)

    # Then it refreshes, records the rejected-token refresh, and tells operators
    assert killb.calls == [("me", "access-a"), ("refresh", "refresh-a")]
    assert outcome.action is Action.REFRESHED
    assert outcome.events == (
        Event.TOKEN_CHECK,
        Event.TOKEN_CHECK_REFUSED,
        Event.REJECTED_TOKEN_REFRESH,
        Event.REFRESH,
    )
    assert store.session.rejected_refresh_at == NOW + 601
    assert [n.detail_type for n in outcome.notices] == [
        DetailType.TOKEN_REJECTED,
        DetailType.REFRESH_RECOVERED,
    ]
    assert outcome.notices[0].fingerprint == token_set("a").fingerprint


def test_check_refused_within_a_minute_of_a_rejected_refresh_is_too_soon(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a rejected-token refresh 30 s ago, and a never-confirmed token KillB refuses
    store.publish(token_set("a"))
    store.session = dataclasses.replace(store.session, rejected_refresh_at=NOW - 30)
    assert store.access_token is not None
    store.access_token = dataclasses.replace(store.access_token, checked_at=None)
    killb.answers = [TokenRejected("refused", status=401)]

    # When a scheduled run comes, Then no refresh: the once-a-minute bound holds
    outcome = check_run(store, killb, now=NOW)
    assert killb.calls == [("me", "access-a")]
    assert outcome.action is Action.FAILED
    assert "too soon" in outcome.reason


@pytest.mark.parametrize("force", [True, False], ids=["forced", "check-off"])
def test_only_a_scheduled_run_with_the_check_on_asks_killb(
    store: FakeStore, killb: FakeKillB, force: bool
) -> None:
    # Given a token never confirmed
    store.publish(token_set("a"))
    assert store.access_token is not None
    store.access_token = dataclasses.replace(store.access_token, checked_at=None)
    killb.answers = [token_set("b")] if force else []

    # When a forced run comes (check on), or a scheduled one with TOKEN_CHECK_SECONDS=0
    if force:
        check_run(store, killb, now=NOW + 1, force=True)
    else:
        run(store, killb, now=NOW + 1)

    # Then KillB hears no token check
    assert ("me", "access-a") not in killb.calls


# Telling operators: the notices a run returns


def test_every_run_that_gets_no_token_yields_refresh_failed_and_writes_nothing(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a stale session, and a KillB that cannot answer two runs 5 minutes apart
    store.publish(token_set("a"))
    killb.answers = [KillBUnavailable("down", status=503), KillBUnavailable("down", status=503)]

    # When the refresher runs twice
    outcomes = [run(store, killb, now=NOW + 2000), run(store, killb, now=NOW + 2300)]

    # Then each yields a Refresh Failed about the token still in service (the Notifier keeps
    # them to one an hour), and no secret is written for them
    assert [outcome.notices for outcome in outcomes] == [
        (Notice(DetailType.REFRESH_FAILED, o.reason, token_set("a").fingerprint, NOW + 3600),)
        for o in outcomes
    ]
    assert store.writes == []


def test_every_run_that_gets_a_token_yields_a_recovery_candidate(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given no session, and a KillB that logs in
    killb.answers = [token_set("a")]

    # When the refresher runs
    outcome = run(store, killb)

    # Then a Refresh Recovered candidate names the new token with the run's reason (the
    # Notifier sends it only after a failure it told)
    assert outcome.notices == (
        Notice(
            DetailType.REFRESH_RECOVERED,
            "logged in",
            token_set("a").fingerprint,
            NOW + 3600,
        ),
    )


def test_rejected_credentials_are_told(store: FakeStore, killb: FakeKillB) -> None:
    # Given no session, and KillB refusing the credentials
    killb.answers = [InvalidCredentials("no", status=401)]

    # When the refresher runs
    outcome = run(store, killb)

    # Then operators hear of the rejected credentials, and of the failed run
    assert [n.detail_type for n in outcome.notices] == [
        DetailType.CREDENTIALS_REJECTED,
        DetailType.REFRESH_FAILED,
    ]


def test_revoke_is_told_about_the_revoked_token(store: FakeStore, killb: FakeKillB) -> None:
    # Given a session
    store.publish(token_set("a"))
    killb.answers = [token_set("b"), LOGGED_OUT]

    # When revoke arrives
    outcome = run(store, killb, request=Request(revoke=True))

    # Then one Session Revoked names the revoked token (beside the new token's recovery
    # candidate)
    assert outcome.notices == (
        Notice(
            DetailType.SESSION_REVOKED,
            outcome.reason,
            token_set("a").fingerprint,
            NOW + 3600,
        ),
        recovery("b", outcome.reason),
    )


def test_too_soon_and_noop_runs_tell_nobody(store: FakeStore, killb: FakeKillB) -> None:
    # Given a fresh session with a rejected-token refresh 10 s ago
    store.publish(token_set("a"))
    store.session = dataclasses.replace(store.session, rejected_refresh_at=NOW - 10)

    # When a scheduled run and a report too soon arrive
    noop = run(store, killb)
    too_soon = run(store, killb, request=rejected(token_set("a")))

    # Then neither has anything to tell, and nothing is written
    assert (noop.notices, too_soon.notices) == ((), ())
    assert store.writes == []


def test_notice_detail_has_exactly_the_fixed_shape() -> None:
    # Given a notice, When its detail is built for a stack
    notice = Notice(DetailType.TOKEN_REJECTED, "refreshed", "0123456789ab", NOW)

    # Then it has the four fields docs/spec.md fixes, and nothing else
    assert notice.detail("killb-broker-sandbox") == {
        "stack": "killb-broker-sandbox",
        "reason": "refreshed",
        "fingerprint": "0123456789ab",
        "expiresAt": NOW,
    }


@pytest.mark.parametrize(
    "request_",
    [Request(), Request(force=True), Request(revoke=True)],
    ids=["scheduled", "forced", "revoke"],
)
def test_a_stack_whose_replica_region_was_promoted_calls_killb_no_more(
    store: FakeStore, killb: FakeKillB, request_: Request
) -> None:
    # Given a stale session, and the replica in eu-west-1 promoted to primary while this
    # region was out of reach
    store.publish(token_set("a", expires_in=600))
    store.writes.clear()
    store.promoted_region = "eu-west-1"

    # When any run arrives, a revoke included
    outcome = run(store, killb, request=request_)

    # Then it makes no KillB call and writes nothing: no token is minted here any more
    assert killb.calls == []
    assert store.writes == []
    assert outcome.action is Action.FAILED
    assert outcome.reason.startswith("superseded: the replica in eu-west-1 was promoted")
    assert outcome.events == (Event.SUPERSEDED,)
