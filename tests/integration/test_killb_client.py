"""The KillB auth client against the local KillB sandbox, over real HTTP on loopback."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

from killb_broker import __version__
from killb_broker.errors import (
    InvalidCredentials,
    KillBError,
    KillBUnavailable,
    RateLimited,
    TokenRejected,
    UnexpectedResponse,
)
from killb_broker.killb_api import KillBAuthClient
from killb_broker.tokens import TokenSet
from killb_sandbox import (
    Account,
    Delay,
    Drop,
    Endpoint,
    ErrorResponse,
    KillBSandbox,
    NotJson,
    RateLimit,
    Redirect,
    UnexpectedJson,
)
from killb_sandbox.accounts import SANDBOX_API_KEY, SANDBOX_EMAIL, SANDBOX_PASSWORD

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


@contextlib.contextmanager
def plain_http_listener() -> Iterator[tuple[int, list[int]]]:
    """A loopback port that answers whatever arrives with a plain-HTTP 400; the list holds the
    number of connections accepted so far."""
    connections = [0]
    stopping = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.05)

        def serve() -> None:
            while not stopping.is_set():
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                connections[0] += 1
                with connection:
                    # Read the ClientHello first: closing on unread data would send a reset,
                    # which the client rightly takes for a lost connection, not a TLS failure.
                    connection.settimeout(2)
                    connection.recv(65536)
                    connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1], connections
        finally:
            stopping.set()
            thread.join()


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
        client.logout(client.refresh(login(client).refresh_token).access_token)

    assert [
        (r.endpoint, r.headers.get("x-api-key")) for r in killb_sandbox_with_api_key.requests
    ] == [
        ("login", SANDBOX_API_KEY),
        ("refresh", SANDBOX_API_KEY),
        ("logout", SANDBOX_API_KEY),
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

    # Then the n-th pause is 2^(n-1) s plus some jitter, up to 1 s
    assert len(sleep.pauses) == MAX_RETRIES
    for n, pause in enumerate(sleep.pauses, start=1):
        assert 2 ** (n - 1) < pause <= 2 ** (n - 1) + 1.0


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


# Logout


def test_logout_ends_the_session_at_killb(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    # Given a logged-in session
    tokens = login(client)

    # When the client logs it out
    client.logout(tokens.access_token)

    # Then KillB got the access token as Bearer, and neither of the session's tokens works now
    (request,) = [r for r in killb_sandbox.requests if r.endpoint == "logout"]
    assert (request.method, request.headers["authorization"]) == (
        "POST",
        f"Bearer {tokens.access_token}",
    )
    assert not killb_sandbox.is_valid_access_token(tokens.access_token)
    with pytest.raises(TokenRejected):
        client.refresh(tokens.refresh_token)


def test_logout_logs_one_line_with_the_fingerprint_of_the_token_logged_out(
    client: KillBAuthClient, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = login(client)
    caplog.set_level(logging.INFO)
    caplog.clear()

    client.logout(tokens.access_token)

    (line,) = [r for r in caplog.records if r.getMessage().startswith("KillB call")]
    assert line.__dict__["killb_endpoint"] == "logout"
    assert line.__dict__["token_fingerprint"] == tokens.fingerprint


def test_logout_of_a_revoked_token_is_token_rejected_and_not_retried(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    # Given an access token KillB has revoked
    tokens = login(client)
    killb_sandbox.revoke(tokens.access_token)

    # When the client logs it out, then KillB's refusal is a TokenRejected, asked once
    with pytest.raises(TokenRejected) as rejected:
        client.logout(tokens.access_token)

    assert (rejected.value.status, rejected.value.error_code) == (401, "AUTH.0003")
    assert killb_sandbox.count("logout") == 1


def test_a_logout_refused_with_403_is_token_rejected(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    tokens = login(client)
    killb_sandbox.inject("logout", ErrorResponse(403, "AUTH.0004"), times=MAX_RETRIES + 1)

    with pytest.raises(TokenRejected):
        client.logout(tokens.access_token)

    assert killb_sandbox.count("logout") == 1


@pytest.mark.parametrize("status", [400, 404, 422])
def test_another_4xx_at_logout_is_a_killb_error_and_not_retried(
    killb_sandbox: KillBSandbox, client: KillBAuthClient, status: int
) -> None:
    tokens = login(client)
    killb_sandbox.inject("logout", ErrorResponse(status, "OTHER.0001"), times=MAX_RETRIES + 1)

    with pytest.raises(KillBError) as refused:
        client.logout(tokens.access_token)

    assert type(refused.value) is KillBError
    assert (refused.value.status, refused.value.error_code) == (status, "OTHER.0001")
    assert killb_sandbox.count("logout") == 1


@pytest.mark.parametrize(
    "fault", [ErrorResponse(503), RateLimit(retry_after=0), Drop()], ids=["503", "429", "drop"]
)
def test_a_logout_killb_could_not_answer_is_retried(
    killb_sandbox: KillBSandbox, client: KillBAuthClient, fault: ErrorResponse | RateLimit | Drop
) -> None:
    tokens = login(client)
    killb_sandbox.inject("logout", fault, times=2)

    client.logout(tokens.access_token)

    assert killb_sandbox.count("logout") == 3
    assert not killb_sandbox.is_valid_access_token(tokens.access_token)


def test_a_logout_killb_never_answers_is_killb_unavailable(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    tokens = login(client)
    killb_sandbox.inject("logout", ErrorResponse(502), times=MAX_RETRIES + 1)

    with pytest.raises(KillBUnavailable):
        client.logout(tokens.access_token)

    assert killb_sandbox.count("logout") == MAX_RETRIES + 1


# The token check: GET /api/v2/auth/me


def test_me_answers_the_claims_of_a_token_killb_accepts(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    # Given a logged-in session
    tokens = login(client)

    # When the client asks for the token's claims
    claims = client.me(tokens.access_token)

    # Then KillB got a GET with the token as Bearer, and its claims came back
    (request,) = [r for r in killb_sandbox.requests if r.endpoint == "me"]
    assert (request.method, request.headers["authorization"]) == (
        "GET",
        f"Bearer {tokens.access_token}",
    )
    assert claims["email"] == SANDBOX_EMAIL


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (ErrorResponse(401, "AUTH.0003"), "AUTH.0003"),
        (ErrorResponse(400, "AUTH.0002"), "AUTH.0002"),
    ],
    ids=["401", "auth-0002-at-400"],
)
def test_me_refused_is_token_rejected_and_not_retried(
    killb_sandbox: KillBSandbox, client: KillBAuthClient, fault: ErrorResponse, code: str
) -> None:
    # Given a KillB that refuses the token (a 401, or KillB's token codes at another status)
    tokens = login(client)
    killb_sandbox.inject("me", fault, times=MAX_RETRIES + 1)

    # When the client asks, Then a TokenRejected, asked once
    with pytest.raises(TokenRejected) as rejected:
        client.me(tokens.access_token)
    assert rejected.value.error_code == code
    assert killb_sandbox.count("me") == 1


def test_me_refused_for_the_api_key_is_no_token_refusal(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    # Given a KillB that answers 403 AUTH.0004 (the API key, not the token)
    tokens = login(client)
    killb_sandbox.inject("me", ErrorResponse(403, "AUTH.0004"))

    # When the client asks, Then a plain KillBError: nothing said of the token
    with pytest.raises(KillBError) as refused:
        client.me(tokens.access_token)
    assert type(refused.value) is KillBError


@pytest.mark.parametrize(
    "fault", [ErrorResponse(503), RateLimit(retry_after=0), NotJson()], ids=["503", "429", "html"]
)
def test_me_killb_could_not_answer_is_retried(
    killb_sandbox: KillBSandbox,
    client: KillBAuthClient,
    fault: ErrorResponse | RateLimit | NotJson,
) -> None:
    # Given a KillB that fails the first two checks
    tokens = login(client)
    killb_sandbox.inject("me", fault, times=2)

    # When the client asks, Then the third attempt answers
    assert client.me(tokens.access_token)["email"] == SANDBOX_EMAIL
    assert killb_sandbox.count("me") == 3


def test_me_killb_never_answers_is_killb_unavailable(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    tokens = login(client)
    killb_sandbox.inject("me", NotJson(), times=MAX_RETRIES + 1)

    with pytest.raises(KillBUnavailable):
        client.me(tokens.access_token)


def test_a_token_a_header_cannot_carry_is_not_sent_to_logout(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    broken = "tok-Broken-6a1f\r\nX-Injected: 1"

    with pytest.raises(TokenRejected) as rejected:
        client.logout(broken)

    assert killb_sandbox.count("any") == 0
    assert "tok-Broken-6a1f" not in str(rejected.value)


# Redirects: never followed


def make_call(client: KillBAuthClient, endpoint: Endpoint, tokens: TokenSet) -> None:
    if endpoint == "login":
        login(client)
    elif endpoint == "refresh":
        client.refresh(tokens.refresh_token)
    else:
        client.logout(tokens.access_token)


@pytest.mark.parametrize("status", [302, 307, 308])
@pytest.mark.parametrize("endpoint", ["login", "refresh", "logout"])
def test_a_redirect_is_not_followed_and_is_a_refusal(
    killb_sandbox: KillBSandbox, client: KillBAuthClient, endpoint: Endpoint, status: int
) -> None:
    # Given KillB redirects the call to another server (a second sandbox that would answer)
    tokens = login(client)
    with KillBSandbox({SANDBOX_EMAIL: Account(SANDBOX_PASSWORD)}) as elsewhere:
        path = {"login": "/api/v2/auth/login", "refresh": "/api/v2/auth/refresh"}
        location = elsewhere.base_url + path.get(endpoint, "/api/v2/auth/logout")
        killb_sandbox.inject(endpoint, Redirect(location, status=status), times=MAX_RETRIES + 1)

        # When the client makes that call
        with pytest.raises(KillBError) as refused:
            make_call(client, endpoint, tokens)

        # Then the other server heard nothing (no password, no token), and the call failed
        # at once as a refusal: not a rejected credential or token, not KillB being down
        assert elsewhere.count("any") == 0
    assert type(refused.value) is KillBError
    assert refused.value.status == status
    assert killb_sandbox.count(endpoint) == 1 + (endpoint == "login")


# Plausible answers only

UNSENDABLE_TOKENS = {
    "empty": "",
    "leading-space": " tok-a",
    "trailing-space": "tok-a ",
    "inner-space": "tok a",
    "crlf": "tok-a\r\nX-Injected: 1",
    "lf": "tok-a\n",
    "nul": "tok-a\x00",
    "tab": "tok\ta",
    "non-ascii": "tok-é",
}


@pytest.mark.parametrize("field", ["accessToken", "refreshToken"])
@pytest.mark.parametrize("token", UNSENDABLE_TOKENS.values(), ids=UNSENDABLE_TOKENS.keys())
def test_a_token_outside_visible_ascii_is_an_unexpected_response_after_the_retries(
    killb_sandbox: KillBSandbox, client: KillBAuthClient, field: str, token: str
) -> None:
    # Given KillB answers every login with a token a header cannot carry
    body = {"accessToken": "tok-a", "refreshToken": "tok-r", "expiresIn": 3_600_000}
    killb_sandbox.inject("login", UnexpectedJson(body | {field: token}, 201), MAX_RETRIES + 1)

    # When the client logs in, then it asks again as for any unusable answer, and fails
    with pytest.raises(UnexpectedResponse):
        login(client)
    assert killb_sandbox.count("login") == MAX_RETRIES + 1


def test_an_unusable_token_answer_then_a_good_one_gives_the_good_tokens(
    killb_sandbox: KillBSandbox, client: KillBAuthClient
) -> None:
    body = {"accessToken": "tok-a\r\n", "refreshToken": "tok-r", "expiresIn": 3_600_000}
    killb_sandbox.inject("login", UnexpectedJson(body, 201))

    tokens = login(client)

    assert killb_sandbox.is_valid_access_token(tokens.access_token)
    assert killb_sandbox.count("login") == 2


@pytest.mark.parametrize(
    ("expires_in", "read_as_seconds", "suspicious"),
    [(86_400_000, 86_400, False), (86_400_001, 86_400, True), (1e15, 86_400, True)],
    ids=["24h", "24h-and-1ms", "1e15"],
)
def test_an_expires_in_above_24_hours_is_read_as_24_hours_and_logged_as_suspicious(
    killb_sandbox: KillBSandbox,
    caplog: pytest.LogCaptureFixture,
    expires_in: float,
    read_as_seconds: int,
    suspicious: bool,
) -> None:
    # Given KillB answers with an expiresIn of 24 hours or more
    body = {"accessToken": "tok-Long-5e2a", "refreshToken": "tok-Long-r", "expiresIn": expires_in}
    killb_sandbox.inject("login", UnexpectedJson(body, 201))
    caplog.set_level(logging.INFO)
    with fast_client(killb_sandbox.base_url, clock=ManualClock()) as client:
        # When the client logs in
        tokens = login(client)

    # Then the token lasts 24 hours at most, and a longer claim is logged as suspicious,
    # without the token
    assert tokens.expires_at == int(FIXED_NOW + read_as_seconds)
    warnings = [r for r in caplog.records if "suspicious" in r.getMessage()]
    assert len(warnings) == suspicious
    assert "tok-Long" not in caplog.text


# Timeouts and TLS


def test_the_read_timeout_is_the_client_timeout(killb_sandbox: KillBSandbox) -> None:
    # Given KillB holds its answer back 5 s, and a client with a 0.3 s timeout and no retries
    killb_sandbox.inject("login", Delay(5))
    with fast_client(killb_sandbox.base_url, timeout=0.3, max_retries=0) as client:
        started = time.monotonic()
        with pytest.raises(KillBUnavailable) as unavailable:
            login(client)
        elapsed = time.monotonic() - started

    # Then the attempt timed out after the timeout, not after KillB's 5 s
    assert "timed out" in str(unavailable.value)
    assert 0.3 <= elapsed < 2.0


def test_a_tls_failure_is_not_retried() -> None:
    # Given a server on loopback that answers a TLS handshake with plain HTTP
    with plain_http_listener() as (port, connections):
        with (
            fast_client(f"https://127.0.0.1:{port}") as client,
            pytest.raises(KillBUnavailable) as unavailable,
        ):
            # When the client logs in over https
            login(client)

        # Then the handshake failed once, and the client did not try again
        assert connections == [1]
    assert "TLS" in str(unavailable.value)
    assert unavailable.value.__context__ is None


# The API key


@pytest.mark.parametrize(
    "api_key",
    [
        "ak Spaced-7c1d",
        " ak-Padded-7c1d",
        "ak-Crlf-7c1d\r\nX-Injected: 1",
        "ak-Nul-7c1d\x00",
        "ak-é",
    ],
    ids=["space", "padded", "crlf", "nul", "non-ascii"],
)
def test_an_api_key_a_header_cannot_carry_is_refused_naming_the_field_only(
    api_key: str,
) -> None:
    with pytest.raises(ValueError, match=r"^apiKey") as refused:
        KillBAuthClient("http://127.0.0.1:9", api_key=api_key)

    assert "7c1d" not in str(refused.value)
    assert "ak-" not in str(refused.value)


def test_an_empty_api_key_sends_no_header(killb_sandbox: KillBSandbox) -> None:
    with fast_client(killb_sandbox.base_url, api_key="") as client:
        login(client)

    assert "x-api-key" not in killb_sandbox.requests[0].headers


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
        ended = login(client)
        client.logout(ended.access_token)
        shown += [repr(client), repr(first), repr(second)]
        with pytest.raises(InvalidCredentials) as refused:
            client.login(SANDBOX_EMAIL, "pw-Wrong-0c4b1e")
        with pytest.raises(TokenRejected) as logged_out:
            client.logout(ended.access_token)
        sandbox.inject("login", Redirect("http://127.0.0.1:9/api/v2/auth/login"))
        with pytest.raises(KillBError) as redirected:
            login(client)
        errors: list[BaseException] = [refused.value, logged_out.value, redirected.value]
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
    secrets += [ended.access_token, ended.refresh_token]
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
