"""The KillB auth client against the local KillB sandbox, over real HTTP on loopback."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

from killb_broker import __version__
from killb_broker.client import KillBAuthClient
from killb_broker.errors import (
    InvalidCredentials,
    KillBError,
    KillBUnavailable,
    RateLimited,
    TokenRejected,
    UnexpectedResponse,
)
from killb_broker.tokens import TokenSet
from killb_sandbox import (
    Account,
    Delay,
    Drop,
    ErrorResponse,
    KillBSandbox,
    NotJson,
    RateLimit,
    UnexpectedJson,
)
from killb_sandbox.pytest_plugin import SANDBOX_API_KEY, SANDBOX_EMAIL, SANDBOX_PASSWORD

MAX_RETRIES = 3
FIXED_NOW = 1_800_000_000.75


class RecordedSleep:
    """A sleep that records each pause asked for and returns at once."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)


def format_datetime_gmt(unix_time: float) -> str:
    return format_datetime(datetime.fromtimestamp(unix_time, UTC), usegmt=True)


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = FIXED_NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fast_client(base_url: str, **settings: Any) -> KillBAuthClient:
    """A client with the production logic and test-sized timeouts and backoff."""
    options: dict[str, Any] = {
        "timeout": 0.5,
        "max_retries": MAX_RETRIES,
        "backoff_factor": 0.01,
        "deadline": 5.0,
    }
    return KillBAuthClient(base_url, **(options | settings))


@pytest.fixture
def client(killb_sandbox: KillBSandbox) -> Iterator[KillBAuthClient]:
    with fast_client(killb_sandbox.base_url) as killb:
        yield killb


def login(client: KillBAuthClient) -> TokenSet:
    return client.login(SANDBOX_EMAIL, SANDBOX_PASSWORD)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# Success and what goes over the wire


def test_login_returns_the_tokens_killb_issued(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    tokens = login(client)

    assert killb_sandbox.is_valid_access_token(tokens.access_token)
    assert killb_sandbox.requests[0].json == {
        "email": SANDBOX_EMAIL,
        "password": SANDBOX_PASSWORD,
    }


def test_expires_in_milliseconds_become_an_absolute_expiry_in_seconds(
    killb_sandbox: KillBSandbox,
) -> None:
    # Given KillB issues tokens for 90.5 s (expiresIn 90500, in milliseconds)
    killb_sandbox.set_token_lifetime_ms(90_500)
    with fast_client(killb_sandbox.base_url, clock=ManualClock()) as client:
        # When the client logs in at a fixed moment
        tokens = login(client)

    # Then the expiry is that moment plus 90.5 s, in whole seconds (not plus 90500 s)
    assert tokens.obtained_at == int(FIXED_NOW)
    assert tokens.expires_at == int(FIXED_NOW + 90.5)


def test_refresh_rotates_the_tokens(killb_sandbox: KillBSandbox, client: KillBAuthClient) -> None:
    first = login(client)

    second = client.refresh(first.refresh_token)

    assert second.refresh_token != first.refresh_token
    assert killb_sandbox.is_valid_access_token(second.access_token)
    assert killb_sandbox.requests[-1].json == {"refreshToken": first.refresh_token}


def test_a_used_refresh_token_is_rejected(client: KillBAuthClient) -> None:
    # Given a refresh token that was already used once
    first = login(client)
    client.refresh(first.refresh_token)

    # When it is used again, then KillB refuses it as an invalid token
    with pytest.raises(TokenRejected) as rejected:
        client.refresh(first.refresh_token)
    assert rejected.value.error_code == "AUTH.0003"


def test_every_request_names_the_client_and_sends_json(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    client.refresh(login(client).refresh_token)

    for request in killb_sandbox.requests:
        assert request.headers["user-agent"] == f"killb-credential-broker/{__version__}"
        assert request.headers["content-type"] == "application/json"


def test_the_api_key_is_sent_when_given(killb_sandbox_with_api_key: KillBSandbox) -> None:
    with fast_client(killb_sandbox_with_api_key.base_url, api_key=SANDBOX_API_KEY) as client:
        client.refresh(login(client).refresh_token)

    assert [r.headers.get("x-api-key") for r in killb_sandbox_with_api_key.requests] == [
        SANDBOX_API_KEY,
        SANDBOX_API_KEY,
    ]


def test_no_api_key_header_is_sent_without_an_api_key(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    login(client)

    assert "x-api-key" not in killb_sandbox.requests[0].headers


# KillB's refusals: typed errors, never retried


def test_a_wrong_password_is_invalid_credentials_and_not_retried(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    with pytest.raises(InvalidCredentials) as refused:
        client.login(SANDBOX_EMAIL, "not-the-password")

    assert (refused.value.status, refused.value.error_code) == (401, "AUTH.0001")
    assert killb_sandbox.count("login") == 1


def test_a_missing_api_key_is_refused_at_login(killb_sandbox_with_api_key: KillBSandbox) -> None:
    with (
        fast_client(killb_sandbox_with_api_key.base_url) as client,
        pytest.raises(InvalidCredentials) as refused,
    ):
        login(client)

    assert refused.value.status == 403


@pytest.mark.parametrize("status", [400, 401, 403])
def test_a_login_refused_with_status_is_invalid_credentials_and_not_retried(
    killb_sandbox: KillBSandbox, client: KillBAuthClient, status: int
) -> None:
    killb_sandbox.inject("login", ErrorResponse(status), times=MAX_RETRIES + 1)

    with pytest.raises(InvalidCredentials):
        login(client)

    assert killb_sandbox.count("login") == 1


def test_auth_0001_with_another_4xx_is_invalid_credentials(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    killb_sandbox.inject("login", ErrorResponse(422, "AUTH.0001"))

    with pytest.raises(InvalidCredentials):
        login(client)


@pytest.mark.parametrize("status", [404, 409, 422])
def test_another_4xx_at_login_is_a_killb_error_and_not_retried(
    killb_sandbox: KillBSandbox, client: KillBAuthClient, status: int
) -> None:
    killb_sandbox.inject("login", ErrorResponse(status, "OTHER.0001"), times=MAX_RETRIES + 1)

    with pytest.raises(KillBError) as refused:
        login(client)

    assert type(refused.value) is KillBError
    assert (refused.value.status, refused.value.error_code) == (status, "OTHER.0001")
    assert killb_sandbox.count("login") == 1


def test_a_revoked_refresh_token_is_rejected(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    tokens = login(client)
    killb_sandbox.revoke_refresh_tokens()

    with pytest.raises(TokenRejected) as rejected:
        client.refresh(tokens.refresh_token)

    assert (rejected.value.status, rejected.value.error_code) == (401, "AUTH.0003")


def test_an_expired_refresh_token_is_rejected() -> None:
    # Given a refresh token whose 24 hours have passed
    clock = ManualClock()
    with (
        KillBSandbox({SANDBOX_EMAIL: Account(SANDBOX_PASSWORD)}, clock=clock) as sandbox,
        fast_client(sandbox.base_url) as client,
    ):
        tokens = login(client)
        clock.now += 25 * 3600

        # When it is used, then KillB refuses it as expired
        with pytest.raises(TokenRejected) as rejected:
            client.refresh(tokens.refresh_token)
    assert rejected.value.error_code == "AUTH.0002"


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_any_other_4xx_at_refresh_is_token_rejected_and_not_retried(
    killb_sandbox: KillBSandbox, client: KillBAuthClient, status: int
) -> None:
    tokens = login(client)
    killb_sandbox.inject("refresh", ErrorResponse(status), times=MAX_RETRIES + 1)

    with pytest.raises(TokenRejected):
        client.refresh(tokens.refresh_token)

    assert killb_sandbox.count("refresh") == 1


# KillB unavailable: retried with backoff, then typed errors


def test_a_5xx_is_retried_until_killb_answers(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    killb_sandbox.inject("login", ErrorResponse(502), times=2)

    tokens = login(client)

    assert killb_sandbox.is_valid_access_token(tokens.access_token)
    assert killb_sandbox.count("login") == 3


@pytest.mark.parametrize(
    ("fault", "error_code"),
    [
        (ErrorResponse(500), None),
        (ErrorResponse(503, "SERVER.0001"), "SERVER.0001"),
        (NotJson(status=502), None),
    ],
)
def test_a_5xx_after_every_retry_is_killb_unavailable(
    killb_sandbox: KillBSandbox,
    client: KillBAuthClient,
    fault: ErrorResponse | NotJson,
    error_code: str | None,
) -> None:
    killb_sandbox.inject("login", fault, times=MAX_RETRIES + 1)

    with pytest.raises(KillBUnavailable) as unavailable:
        login(client)

    assert (unavailable.value.status, unavailable.value.error_code) == (fault.status, error_code)
    assert killb_sandbox.count("login") == MAX_RETRIES + 1


def test_a_5xx_at_refresh_is_killb_unavailable_not_a_rejection(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    tokens = login(client)
    killb_sandbox.inject("refresh", ErrorResponse(500), times=MAX_RETRIES + 1)

    with pytest.raises(KillBUnavailable):
        client.refresh(tokens.refresh_token)


def test_a_retry_after_longer_than_the_call_can_wait_ends_it_at_once(
    killb_sandbox: KillBSandbox,
) -> None:
    # Given KillB asks to wait an hour, far past what the call can still wait
    killb_sandbox.inject("login", RateLimit(retry_after=3600), times=MAX_RETRIES + 1)
    with fast_client(killb_sandbox.base_url, deadline=60.0) as client:
        # When the client logs in
        started = time.monotonic()
        with pytest.raises(RateLimited) as limited:
            login(client)
        elapsed = time.monotonic() - started

    # Then it gives up at once, after that one request, saying it was rate-limited and for how long
    assert killb_sandbox.count("login") == 1
    assert elapsed < 1.0
    assert limited.value.retry_after == 3600
    assert "rate-limited" in str(limited.value)


def test_a_retry_after_past_the_deadline_gives_up_at_once(killb_sandbox: KillBSandbox) -> None:
    # Given a Retry-After of 30 s and a call that may last 1 s
    killb_sandbox.inject("login", RateLimit(retry_after=30), times=MAX_RETRIES + 1)
    with (
        fast_client(killb_sandbox.base_url, deadline=1.0) as client,
        pytest.raises(RateLimited),
    ):
        login(client)

    assert killb_sandbox.count("login") == 1


def test_no_retry_starts_before_retry_after_has_passed(killb_sandbox: KillBSandbox) -> None:
    # Given KillB asks to wait 2 s, and the backoff alone would not wait at all
    killb_sandbox.inject("login", RateLimit(retry_after=2))
    with fast_client(killb_sandbox.base_url, backoff_factor=0) as client:
        # When the client logs in
        login(client)

    # Then the second request reached KillB no sooner than 2 s after the first
    first, second = killb_sandbox.requests
    assert second.at - first.at >= 2.0


def test_a_retry_after_given_as_an_http_date_is_waited_out(killb_sandbox: KillBSandbox) -> None:
    # Given KillB asks to wait until a moment 30 s from the client's now, as an HTTP-date
    now = 1_800_000_000.0
    killb_sandbox.inject("login", RateLimit(retry_after=format_datetime_gmt(now + 30)))
    sleep = RecordedSleep()
    with fast_client(
        killb_sandbox.base_url, clock=ManualClock(now), sleep=sleep, deadline=60.0
    ) as client:
        # When the client logs in
        login(client)

    # Then it paused exactly until that moment before asking again
    assert sleep.pauses == [30.0]
    assert killb_sandbox.count("login") == 2


def test_an_unreadable_retry_after_falls_back_to_the_backoff(killb_sandbox: KillBSandbox) -> None:
    killb_sandbox.inject("login", RateLimit(retry_after="in a while"))
    sleep = RecordedSleep()
    with fast_client(killb_sandbox.base_url, backoff_factor=0.01, sleep=sleep) as client:
        login(client)

    (pause,) = sleep.pauses
    assert 0.01 <= pause <= 0.02


def test_the_backoff_grows_exponentially_with_jitter(killb_sandbox: KillBSandbox) -> None:
    # Given KillB failing every attempt, a backoff factor of 1 s, and a sleep that only records
    killb_sandbox.inject("login", ErrorResponse(503), times=MAX_RETRIES + 1)
    sleep = RecordedSleep()
    with (
        fast_client(killb_sandbox.base_url, backoff_factor=1.0, sleep=sleep, deadline=60) as client,
        pytest.raises(KillBUnavailable),
    ):
        login(client)

    # Then the n-th pause is 2^(n-1) s plus up to 1 s of jitter
    assert len(sleep.pauses) == MAX_RETRIES
    for n, pause in enumerate(sleep.pauses, start=1):
        assert 2 ** (n - 1) <= pause <= 2 ** (n - 1) + 1.0
    assert len(set(sleep.pauses)) == MAX_RETRIES


def test_a_backoff_that_would_pass_the_deadline_ends_the_call_now(
    killb_sandbox: KillBSandbox,
) -> None:
    killb_sandbox.inject("login", ErrorResponse(503), times=MAX_RETRIES + 1)
    sleep = RecordedSleep()
    with (
        fast_client(killb_sandbox.base_url, backoff_factor=10.0, sleep=sleep, deadline=5) as client,
        pytest.raises(KillBUnavailable),
    ):
        login(client)

    assert sleep.pauses == []
    assert killb_sandbox.count("login") == 1


@pytest.mark.parametrize("retry_after", [1, None], ids=["retry-after", "no-retry-after"])
def test_a_429_after_every_retry_is_rate_limited_with_killbs_retry_after(
    killb_sandbox: KillBSandbox, retry_after: int | None
) -> None:
    killb_sandbox.inject("login", RateLimit(retry_after=retry_after), times=MAX_RETRIES + 1)
    sleep = RecordedSleep()
    with (
        fast_client(killb_sandbox.base_url, sleep=sleep) as client,
        pytest.raises(RateLimited) as limited,
    ):
        login(client)

    assert limited.value.status == 429
    assert limited.value.retry_after == retry_after
    assert killb_sandbox.count("login") == MAX_RETRIES + 1
    if retry_after is not None:
        assert sleep.pauses == [retry_after] * MAX_RETRIES


def test_a_slow_answer_is_retried_after_the_read_timeout(killb_sandbox: KillBSandbox) -> None:
    killb_sandbox.inject("login", Delay(5), times=2)
    with fast_client(killb_sandbox.base_url, timeout=0.2) as client:
        tokens = login(client)

    assert killb_sandbox.is_valid_access_token(tokens.access_token)
    assert killb_sandbox.count("login") == 3


def test_the_deadline_bounds_the_attempts_when_killb_hangs(killb_sandbox: KillBSandbox) -> None:
    # Given KillB never answers in time, and retries enough to outlast a 0.5 s deadline
    killb_sandbox.inject("login", Delay(5), times=50)
    with (
        fast_client(killb_sandbox.base_url, timeout=0.2, max_retries=40, deadline=0.5) as client,
        pytest.raises(KillBUnavailable) as unavailable,
    ):
        login(client)

    # Then the deadline, not the retry count, ended the call
    assert "timed out" in str(unavailable.value)
    assert 1 <= killb_sandbox.count("login") < 10


def test_connection_refused_is_killb_unavailable() -> None:
    with (
        fast_client(f"http://127.0.0.1:{free_port()}") as client,
        pytest.raises(KillBUnavailable),
    ):
        login(client)


def test_a_dropped_connection_is_retried(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    killb_sandbox.inject("login", Drop(), times=2)

    tokens = login(client)

    assert killb_sandbox.is_valid_access_token(tokens.access_token)
    assert killb_sandbox.count("login") == 3


def test_a_connection_dropped_on_every_attempt_is_killb_unavailable(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    killb_sandbox.inject("login", Drop(), times=MAX_RETRIES + 1)

    with pytest.raises(KillBUnavailable):
        login(client)

    assert killb_sandbox.count("login") == MAX_RETRIES + 1


def test_a_200_that_is_not_json_is_asked_again(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    killb_sandbox.inject("login", NotJson(status=200))

    tokens = login(client)

    assert killb_sandbox.is_valid_access_token(tokens.access_token)
    assert killb_sandbox.count("login") == 2


def test_a_200_that_is_never_json_is_an_unexpected_response(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    killb_sandbox.inject("login", NotJson(status=200), times=MAX_RETRIES + 1)

    with pytest.raises(UnexpectedResponse) as unexpected:
        login(client)

    assert isinstance(unexpected.value, KillBUnavailable)
    assert killb_sandbox.count("login") == MAX_RETRIES + 1


@pytest.mark.parametrize(
    "body",
    [
        ["not", "an", "object"],
        {"accessToken": "a", "refreshToken": "r"},
        {"accessToken": "", "refreshToken": "r", "expiresIn": 3_600_000},
        {"accessToken": "a", "refreshToken": None, "expiresIn": 3_600_000},
        {"accessToken": "a", "refreshToken": "r", "expiresIn": "3600000"},
        {"accessToken": "a", "refreshToken": "r", "expiresIn": True},
        {"accessToken": "a", "refreshToken": "r", "expiresIn": 0},
        {"accessToken": "a", "refreshToken": "r", "expiresIn": -1000},
    ],
    ids=[
        "list",
        "no-expiresIn",
        "empty-accessToken",
        "null-refreshToken",
        "string-expiresIn",
        "bool-expiresIn",
        "zero-expiresIn",
        "negative-expiresIn",
    ],
)
def test_a_token_answer_of_the_wrong_shape_is_an_unexpected_response(
    killb_sandbox: KillBSandbox, client: KillBAuthClient, body: object
) -> None:
    killb_sandbox.inject("login", UnexpectedJson(body, status=201), times=MAX_RETRIES + 1)

    with pytest.raises(UnexpectedResponse):
        login(client)


# No secret anywhere


def test_no_secret_reaches_logs_reprs_or_errors(
    killb_sandbox_with_api_key: KillBSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    # Given every kind of call, successful and failed, with logs captured at DEBUG
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    sandbox = killb_sandbox_with_api_key
    with fast_client(sandbox.base_url, api_key=SANDBOX_API_KEY) as client:
        first = login(client)
        second = client.refresh(first.refresh_token)
        shown += [repr(client), repr(first), repr(second)]
        with pytest.raises(InvalidCredentials) as refused:
            client.login(SANDBOX_EMAIL, "pw-Wrong-0c4b1e")
        errors: list[BaseException] = [refused.value]
        for fault in (ErrorResponse(503), Drop(), NotJson(status=200)):
            sandbox.inject("any", fault, times=MAX_RETRIES + 1)
            with pytest.raises(KillBUnavailable) as unavailable:
                client.refresh(second.refresh_token)
            errors.append(unavailable.value)
        shown += [f"{error} {error!r} {error.__context__!r}" for error in errors]

    # Then no password, API key, token or email shows in any of it
    shown += [caplog.text, *(str(record.__dict__) for record in caplog.records)]
    everything = "\n".join(shown)
    secrets = [SANDBOX_PASSWORD, "pw-Wrong-0c4b1e", SANDBOX_API_KEY, SANDBOX_EMAIL]
    secrets += [first.access_token, first.refresh_token, second.access_token, second.refresh_token]
    for secret in secrets:
        assert secret not in everything
    assert "KillB call" in caplog.text  # the client did log


def test_a_connection_failure_carries_no_requests_exception(client: KillBAuthClient) -> None:
    # requests' exceptions hold the request itself: its body has the password
    with (
        fast_client(f"http://127.0.0.1:{free_port()}") as unreachable,
        pytest.raises(KillBUnavailable) as unavailable,
    ):
        login(unreachable)

    assert unavailable.value.__cause__ is None
    assert unavailable.value.__context__ is None


def test_each_call_logs_one_line_with_the_token_fingerprint(
    client: KillBAuthClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    tokens = login(client)

    lines = [r for r in caplog.records if r.getMessage().startswith("KillB call")]
    assert len(lines) == 1
    assert lines[0].__dict__["token_fingerprint"] == tokens.fingerprint
    assert lines[0].__dict__["attempts"] == 1
