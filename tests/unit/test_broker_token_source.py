"""Where the broker's token comes from: memory while young and long enough, else the secret, else
one forced run of the refresher; a token a caller reported rejected is replaced, never served.
Secrets Manager is moto (or botocore's Stubber for its failures); the Lambda invoke is stubbed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.stub import Stubber
from moto import mock_aws

from killb_broker.errors import TokenUnavailable
from killb_broker.refresher_invoke import Refresher
from killb_broker.store import access_token_to_json
from killb_broker.token_source import (
    MAX_CACHE_AGE,
    RETRY_AFTER_NOTHING_TO_DO,
    RETRY_AFTER_REFRESH_ATTEMPTED,
    TokenSource,
)
from killb_broker.tokens import AccessToken, fingerprint
from tests.refresher_invoke import force_invoke, refresher_answers, refresher_throttled

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

NOW = 1_795_827_600
SECRET_ID = "killb/access-token"
REFRESHER = "killb-refresher"
FORCE_INVOKE = force_invoke(REFRESHER)


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SecretsManager:
    """A moto Secrets Manager client holding the access-token secret, counting its reads."""

    client: Any
    reads: list[str] = field(default_factory=list)

    def put(self, value: str) -> None:
        self.client.put_secret_value(SecretId=SECRET_ID, SecretString=value)

    def put_token(self, name: str, expires_at: int) -> None:
        self.put(access_token_to_json(AccessToken(token=f"access-{name}", expires_at=expires_at)))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def secrets() -> Iterator[SecretsManager]:
    with mock_aws():
        client = boto3.client("secretsmanager")
        client.create_secret(Name=SECRET_ID, SecretString="placeholder")
        store = SecretsManager(client)
        client.meta.events.register(
            "before-call.secrets-manager.GetSecretValue",
            lambda **_: store.reads.append(SECRET_ID),
        )
        yield store


@dataclass
class RefresherStub:
    """The refresher's Lambda client, stubbed in boto3; records every invoke's parameters."""

    client: LambdaClient
    stubber: Stubber
    invokes: list[dict[str, Any]] = field(default_factory=list)

    def on_invoke(self, action: Callable[[], None]) -> None:
        """Run action (e.g. the refresher writing a new token) when the invoke is made."""

        def run_action(**_: Any) -> None:
            action()

        self.client.meta.events.register("before-parameter-build.lambda.Invoke", run_action)

    def answers(
        self, action: str, *, function_error: str | None = None, rejected: str | None = None
    ) -> None:
        refresher_answers(
            self.stubber, REFRESHER, action, function_error=function_error, rejected=rejected
        )

    def throttled(self, rejected: str | None = None) -> None:
        refresher_throttled(self.stubber, REFRESHER, rejected)


@pytest.fixture
def lambda_stub(secrets: SecretsManager) -> Iterator[RefresherStub]:
    client = boto3.client("lambda")
    stub = RefresherStub(client, Stubber(client))
    client.meta.events.register(
        "before-parameter-build.lambda.Invoke", lambda params, **_: stub.invokes.append(params)
    )
    with stub.stubber:
        yield stub


def source(secrets: SecretsManager, clock: Clock, stub: RefresherStub | None = None) -> TokenSource:
    refresher = Refresher(stub.client, REFRESHER) if stub else None
    return TokenSource(secrets.client, SECRET_ID, refresher=refresher, clock=clock)


def source_that_read(
    secrets: SecretsManager, clock: Clock, name: str, expires_at: int
) -> TokenSource:
    """A token source that has read this token once, and now holds it in memory."""
    secrets.put_token(name, expires_at)
    tokens = source(secrets, clock)
    tokens.lasting(300)
    return tokens


def unavailable(tokens: TokenSource, min_ttl: int) -> TokenUnavailable:
    """The TokenUnavailable that asking for a token lasting min_ttl raises."""
    with pytest.raises(TokenUnavailable) as raised:
        tokens.lasting(min_ttl)
    return raised.value


def test_second_request_within_the_cache_bound_reads_no_secret(
    secrets: SecretsManager, clock: Clock
) -> None:
    # Given a token with an hour left, read once
    tokens = source_that_read(secrets, clock, "one", NOW + 3600)
    # When another request comes just inside the bound
    clock.advance(MAX_CACHE_AGE - 1)
    token = tokens.lasting(300)
    # Then it is served from memory
    assert token.token == "access-one"
    assert len(secrets.reads) == 1


def test_request_after_the_cache_bound_reads_the_secret_again(
    secrets: SecretsManager, clock: Clock
) -> None:
    tokens = source_that_read(secrets, clock, "one", NOW + 3600)
    # When the refresher rotated the token and the cached copy grew old
    secrets.put_token("two", NOW + 7200)
    clock.advance(MAX_CACHE_AGE)
    token = tokens.lasting(300)
    # Then the new token is read and served
    assert token.token == "access-two"
    assert len(secrets.reads) == 2


def test_a_token_replaced_in_the_secret_reaches_callers_within_a_minute(
    secrets: SecretsManager, clock: Clock
) -> None:
    # Given a warm container serving token one, and the refresher replacing it early
    tokens = source_that_read(secrets, clock, "one", NOW + 3600)
    secrets.put_token("two", NOW + 3600)
    # When callers keep asking for a minute / Then they get token one, then token two
    clock.advance(59)
    assert tokens.lasting(300).token == "access-one"
    clock.advance(1)
    assert tokens.lasting(300).token == "access-two"


def test_clock_stepping_back_does_not_keep_the_cached_copy_forever(
    secrets: SecretsManager, clock: Clock
) -> None:
    tokens = source_that_read(secrets, clock, "one", NOW + 3600)
    clock.advance(-3600)
    tokens.lasting(300)
    assert len(secrets.reads) == 2


def test_cached_token_too_short_for_min_ttl_is_read_again_past_the_cache(
    secrets: SecretsManager, clock: Clock
) -> None:
    # Given a cached token with 10 minutes left, and a newer one already in the secret
    tokens = source_that_read(secrets, clock, "old", NOW + 600)
    secrets.put_token("new", NOW + 3600)
    # When a caller needs 15 minutes, still inside the cache bound
    token = tokens.lasting(900)
    # Then the secret is read again and no refresher is needed
    assert token.token == "access-new"
    assert len(secrets.reads) == 2


def test_short_token_invokes_the_refresher_once_with_force(
    secrets: SecretsManager, clock: Clock, lambda_stub: RefresherStub
) -> None:
    # Given a token with 2 minutes left, and a refresher that writes a new one when run
    secrets.put_token("old", NOW + 120)
    lambda_stub.answers("refreshed")
    lambda_stub.on_invoke(lambda: secrets.put_token("new", NOW + 3600))
    # When a caller needs 5 minutes
    token = source(secrets, clock, lambda_stub).lasting(300)
    # Then the refresher ran once, forced, and the new token is served
    assert lambda_stub.invokes == [FORCE_INVOKE]
    assert token.token == "access-new"


def test_throttled_refresher_is_not_an_error_when_the_secret_got_refreshed_meanwhile(
    secrets: SecretsManager, clock: Clock, lambda_stub: RefresherStub
) -> None:
    # Given a short token, and a refresher already running (throttled) that writes a new one
    secrets.put_token("old", NOW + 60)
    lambda_stub.throttled()
    lambda_stub.on_invoke(lambda: secrets.put_token("new", NOW + 3600))
    # When a caller needs 5 minutes / Then the read after the throttled invoke serves the new one
    assert source(secrets, clock, lambda_stub).lasting(300).token == "access-new"
    assert len(lambda_stub.invokes) == 1


def test_throttled_refresher_and_a_still_short_token_is_unavailable_for_a_few_seconds(
    secrets: SecretsManager, clock: Clock, lambda_stub: RefresherStub
) -> None:
    secrets.put_token("old", NOW + 60)
    lambda_stub.throttled()
    error = unavailable(source(secrets, clock, lambda_stub), 300)
    assert error.retry_after == RETRY_AFTER_REFRESH_ATTEMPTED
    # The secret was read after the throttled invoke, not only before it; no second invoke
    assert len(secrets.reads) == 2
    assert len(lambda_stub.invokes) == 1


def test_refresher_function_error_is_logged_and_the_secret_read_again(
    secrets: SecretsManager, clock: Clock, lambda_stub: RefresherStub
) -> None:
    secrets.put_token("old", NOW + 60)
    lambda_stub.answers("crash", function_error="Unhandled")
    error = unavailable(source(secrets, clock, lambda_stub), 300)
    assert error.retry_after == RETRY_AFTER_REFRESH_ATTEMPTED
    assert len(secrets.reads) == 2


def test_refresher_that_fails_to_refresh_leaves_the_token_unavailable(
    secrets: SecretsManager, clock: Clock, lambda_stub: RefresherStub
) -> None:
    secrets.put("placeholder")
    lambda_stub.answers("failed")
    unavailable(source(secrets, clock, lambda_stub), 0)
    assert len(lambda_stub.invokes) == 1


def test_short_token_without_a_refresher_is_unavailable_for_longer(
    secrets: SecretsManager, clock: Clock
) -> None:
    secrets.put_token("old", NOW + 60)
    assert unavailable(source(secrets, clock), 300).retry_after == RETRY_AFTER_NOTHING_TO_DO


@pytest.mark.parametrize(("seconds_left", "served"), [(299, False), (300, False), (301, True)])
def test_a_token_is_served_only_with_more_than_min_ttl_left(
    secrets: SecretsManager, clock: Clock, seconds_left: int, served: bool
) -> None:
    # Given a token with about the default minTtl left, and no refresher
    secrets.put_token("edge", NOW + seconds_left)
    tokens = source(secrets, clock)
    # When a default request asks / Then it is served only when fresh against 300 s, the rule
    # by which /v1/health says "ok" (tests/unit/test_broker_health.py)
    if served:
        assert tokens.lasting(300).token == "access-edge"
    else:
        unavailable(tokens, 300)


def test_min_ttl_zero_never_serves_an_expired_token(secrets: SecretsManager, clock: Clock) -> None:
    secrets.put_token("gone", NOW)
    unavailable(source(secrets, clock), 0)


def test_missing_secret_is_unavailable_without_invoking_the_refresher(
    secrets: SecretsManager, clock: Clock, lambda_stub: RefresherStub
) -> None:
    # Given no access-token secret at all: a refresh could not write one either
    secrets.client.delete_secret(SecretId=SECRET_ID, ForceDeleteWithoutRecovery=True)
    error = unavailable(source(secrets, clock, lambda_stub), 300)
    assert error.retry_after == RETRY_AFTER_NOTHING_TO_DO
    assert lambda_stub.invokes == []


SECRETS_MANAGER_FAILURES = [
    pytest.param("AccessDeniedException", 400, RETRY_AFTER_NOTHING_TO_DO, id="access-denied"),
    pytest.param("DecryptionFailure", 400, RETRY_AFTER_NOTHING_TO_DO, id="kms-decrypt"),
    pytest.param("ResourceNotFoundException", 400, RETRY_AFTER_NOTHING_TO_DO, id="not-found"),
    pytest.param("ThrottlingException", 400, RETRY_AFTER_REFRESH_ATTEMPTED, id="throttled"),
    pytest.param("InternalServiceError", 500, RETRY_AFTER_REFRESH_ATTEMPTED, id="internal"),
    pytest.param("ServiceUnavailable", 503, RETRY_AFTER_REFRESH_ATTEMPTED, id="503"),
    pytest.param("SomethingNew", 502, RETRY_AFTER_REFRESH_ATTEMPTED, id="any-5xx"),
]


@pytest.mark.parametrize(("code", "status", "retry_after"), SECRETS_MANAGER_FAILURES)
def test_each_secrets_manager_refusal_is_unavailable_not_a_crash(
    clock: Clock, code: str, status: int, retry_after: int
) -> None:
    # Given Secrets Manager answering the read with this error (after botocore's retries)
    client = boto3.client("secretsmanager")
    stubber = Stubber(client)
    stubber.add_client_error("get_secret_value", code, "no", status)
    # When a caller asks / Then no token can be had now, and the caller is told when to retry
    with stubber:
        error = unavailable(TokenSource(client, SECRET_ID, clock=clock), 300)
    assert error.retry_after == retry_after


def test_a_secret_scheduled_for_deletion_is_unavailable_not_a_crash(
    secrets: SecretsManager, clock: Clock, lambda_stub: RefresherStub
) -> None:
    # Given the access-token secret scheduled for deletion (moto answers as Secrets Manager)
    secrets.client.delete_secret(SecretId=SECRET_ID, RecoveryWindowInDays=7)
    # When a caller asks / Then no token, no refresher run (it could not write one either)
    error = unavailable(source(secrets, clock, lambda_stub), 300)
    assert error.retry_after == RETRY_AFTER_NOTHING_TO_DO
    assert lambda_stub.invokes == []


@pytest.mark.parametrize(
    "failure",
    [
        EndpointConnectionError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com"),
        ConnectTimeoutError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com"),
        ConnectionClosedError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com"),
    ],
    ids=type,
)
def test_secrets_manager_out_of_reach_is_unavailable_for_a_few_seconds(
    clock: Clock, failure: Exception
) -> None:
    # Given a Secrets Manager that cannot be reached (after botocore's retries)
    client = boto3.client("secretsmanager")

    def fail(**_: Any) -> None:
        raise failure

    client.meta.events.register("before-send.secrets-manager.GetSecretValue", fail)
    # When a caller asks / Then a retry soon, and nothing of botocore's error is carried along
    error = unavailable(TokenSource(client, SECRET_ID, clock=clock), 300)
    assert error.retry_after == RETRY_AFTER_REFRESH_ATTEMPTED
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_current_token_while_secrets_manager_fails_is_none(clock: Clock) -> None:
    client = boto3.client("secretsmanager")
    stubber = Stubber(client)
    stubber.add_client_error("get_secret_value", "ThrottlingException", "slow down", 400)
    with stubber:
        assert TokenSource(client, SECRET_ID, clock=clock).current() is None


@pytest.mark.parametrize("expires_at", [NOW + 86_400 + 1, 10**30, -1])
def test_token_with_an_implausible_expiry_is_never_served(
    secrets: SecretsManager, clock: Clock, expires_at: int
) -> None:
    # Given a secret whose expiresAt is more than a day ahead, or before 1970
    secrets.put_token("odd", expires_at)
    # When a caller asks for any minTtl / Then that token is not handed out
    unavailable(source(secrets, clock), 0)


def test_token_expiring_a_full_day_ahead_is_served(secrets: SecretsManager, clock: Clock) -> None:
    secrets.put_token("day", NOW + 86_400)
    assert source(secrets, clock).lasting(1800).token == "access-day"


def test_current_token_comes_from_memory_while_young(secrets: SecretsManager, clock: Clock) -> None:
    tokens = source_that_read(secrets, clock, "one", NOW + 3600)
    current = tokens.current()
    assert current is not None
    assert current.token == "access-one"
    assert len(secrets.reads) == 1


def test_current_token_of_a_missing_secret_is_none(secrets: SecretsManager, clock: Clock) -> None:
    secrets.client.delete_secret(SecretId=SECRET_ID, ForceDeleteWithoutRecovery=True)
    assert source(secrets, clock).current() is None


# --- rejected tokens ----------------------------------------------------------------------------

OLD = fingerprint("access-old")


def test_a_reported_token_in_hand_is_replaced_through_the_refresher(
    secrets: SecretsManager, clock: Clock, lambda_stub: RefresherStub
) -> None:
    # Given a warm container holding token old, with an hour left, and a refresher that replaces
    # it when told it was rejected
    secrets.put_token("old", NOW + 3600)
    tokens = source(secrets, clock, lambda_stub)
    tokens.lasting(300)
    lambda_stub.answers("refreshed", rejected=OLD)
    lambda_stub.on_invoke(lambda: secrets.put_token("new", NOW + 3600))
    # When a caller reports old as rejected
    token = tokens.lasting(300, rejected=OLD)
    # Then the refresher was run once for that token, and the new one is served
    assert lambda_stub.invokes == [force_invoke(REFRESHER, OLD)]
    assert token.token == "access-new"


def test_a_report_reads_the_secret_past_the_cache_first(
    secrets: SecretsManager, clock: Clock, lambda_stub: RefresherStub
) -> None:
    # Given a warm container still holding old, while the secret already holds new
    secrets.put_token("old", NOW + 3600)
    tokens = source(secrets, clock, lambda_stub)
    tokens.lasting(300)
    secrets.put_token("new", NOW + 3600)
    # When a caller reports old / Then new is served with no refresher run
    assert tokens.lasting(300, rejected=OLD).token == "access-new"
    assert lambda_stub.invokes == []
    assert len(secrets.reads) == 2


def test_a_report_of_another_token_changes_nothing(
    secrets: SecretsManager, clock: Clock, lambda_stub: RefresherStub
) -> None:
    secrets.put_token("current", NOW + 3600)
    token = source(secrets, clock, lambda_stub).lasting(300, rejected=OLD)
    assert token.token == "access-current"
    assert lambda_stub.invokes == []


def test_a_reported_token_the_refresher_did_not_replace_is_never_served(
    secrets: SecretsManager, clock: Clock, lambda_stub: RefresherStub
) -> None:
    # Given a refresher that declines to replace it (too soon after the last report)
    secrets.put_token("old", NOW + 3600)
    lambda_stub.answers("failed", rejected=OLD)
    # When a caller reports old / Then no token now, retry in a few seconds
    error = unavailable_for_report(source(secrets, clock, lambda_stub), OLD)
    assert error.retry_after == RETRY_AFTER_REFRESH_ATTEMPTED
    assert len(lambda_stub.invokes) == 1


def test_a_reported_token_while_the_refresher_runs_is_read_again(
    secrets: SecretsManager, clock: Clock, lambda_stub: RefresherStub
) -> None:
    # Given the refresher already running (throttled) and writing a new token meanwhile
    secrets.put_token("old", NOW + 3600)
    lambda_stub.throttled(rejected=OLD)
    lambda_stub.on_invoke(lambda: secrets.put_token("new", NOW + 3600))
    # When a caller reports old / Then the read after the throttled invoke serves new
    assert source(secrets, clock, lambda_stub).lasting(300, rejected=OLD).token == "access-new"


def test_a_reported_token_without_a_refresher_is_unavailable_for_longer(
    secrets: SecretsManager, clock: Clock
) -> None:
    secrets.put_token("old", NOW + 3600)
    error = unavailable_for_report(source(secrets, clock), OLD)
    assert error.retry_after == RETRY_AFTER_NOTHING_TO_DO


def unavailable_for_report(tokens: TokenSource, rejected: str) -> TokenUnavailable:
    with pytest.raises(TokenUnavailable) as raised:
        tokens.lasting(300, rejected=rejected)
    return raised.value
