"""The refresh policy's rules, one behaviour per test, against an in-memory store and a scripted
KillB (no AWS, no network)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

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
from killb_broker.policy import Action, Event, KillB, Outcome, RefreshSettings, keep_fresh
from killb_broker.tokens import AccessToken, Credentials, LoginBackoff, Session, TokenSet

NOW = 1_800_000_000
SETTINGS = RefreshSettings(refresh_window=1800, login_backoff=900)
CREDENTIALS = Credentials(email="ops@example.test", password="pw-unit-1", version_id="v1")


def token_set(name: str, *, expires_in: int = 3600, now: int = NOW) -> TokenSet:
    return TokenSet(
        access_token=f"access-{name}",
        refresh_token=f"refresh-{name}",
        expires_at=now + expires_in,
        obtained_at=now,
    )


@dataclass
class FakeStore:
    """The three secrets in memory; records writes in order and can fail one kind of write."""

    credentials: Credentials | None = CREDENTIALS
    session: Session = field(default_factory=Session)
    access_token: AccessToken | None = None
    writes: list[str] = field(default_factory=list)
    credentials_reads: int = 0
    failing_write: str | None = None

    def read_credentials(self) -> Credentials | None:
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

    def publish(self, tokens: TokenSet, api_key: str | None = None) -> None:
        """Given: a run that succeeded earlier left these tokens in both secrets."""
        self.session = Session(tokens=tokens)
        self.access_token = AccessToken.from_token_set(tokens, api_key)


@dataclass
class FakeKillB:
    """Answers each call with the next scripted token set or error; records the calls."""

    answers: list[TokenSet | KillBError] = field(default_factory=list)
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

    def close(self) -> None:
        self.closed += 1

    def _answer(self) -> TokenSet:
        answer = self.answers.pop(0)
        if isinstance(answer, KillBError):
            raise answer
        return answer


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def killb() -> Iterator[FakeKillB]:
    fake = FakeKillB()
    yield fake
    assert not fake.answers, "a scripted KillB answer was never asked for"


def run(store: FakeStore, killb: FakeKillB, *, now: float = NOW, force: bool = False) -> Outcome:
    return keep_fresh(store, killb.connect, now=now, force=force, settings=SETTINGS)


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
    assert store.session == Session(tokens=token_set("a"))
    assert store.access_token == AccessToken("access-a", NOW + 3600)
    assert outcome == Outcome(Action.LOGGED_IN, NOW + 3600, "logged in", (Event.LOGIN,))


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
    assert store.session.tokens == token_set("b", now=now)
    assert store.access_token == AccessToken("access-b", now + 3600)
    assert outcome == Outcome(Action.REFRESHED, now + 3600, "refreshed", (Event.REFRESH,))


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


def test_credentials_not_configured_fail_without_a_killb_call(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given a credentials secret with no usable email and password
    store.credentials = None

    # When the refresher runs
    outcome = run(store, killb)

    # Then no KillB client is even built, nothing is written, and the reason says so
    assert killb.api_keys == []
    assert store.writes == []
    assert outcome.action is Action.FAILED
    assert "not configured" in outcome.reason
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
        tokens=token_set("a"), login_backoff=LoginBackoff(NOW + 2000, "v1")
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

    # Then it fails, says why, and writes nothing
    assert store.writes == []
    assert outcome.action is Action.FAILED
    assert "KillB unavailable" in outcome.reason
    assert outcome.expires_at == NOW + 3600
    assert outcome.events == (Event.KILLB_UNAVAILABLE,)


def test_killb_refusing_the_login_otherwise_fails_as_refused(
    store: FakeStore, killb: FakeKillB
) -> None:
    # Given KillB answers the login with a 4xx that is not a credentials rejection
    killb.answers = [KillBError("KillB refused the login", status=422)]

    # When the refresher runs
    outcome = run(store, killb)

    # Then it fails without starting a backoff
    assert store.writes == []
    assert outcome.action is Action.FAILED
    assert "refused" in outcome.reason


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
    assert store.access_token == AccessToken("access-a", NOW + 3600, "ak-unit-1")


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
    assert store.access_token == AccessToken("access-a", NOW + 3600, "ak-unit-1")
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
    assert store.access_token == AccessToken("access-a", NOW + 3600)


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


def test_summary_holds_only_the_contract_fields() -> None:
    # Given an outcome
    outcome = Outcome(Action.REFRESHED, NOW, "refreshed", (Event.REFRESH,))

    # When it is turned into the summary, Then it has exactly the contract's shape
    assert outcome.summary() == {"action": "refreshed", "expiresAt": NOW, "reason": "refreshed"}
