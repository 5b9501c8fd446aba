"""The local KillB sandbox behaves as KillB does, injects faults on demand, and runs as a CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from killb_sandbox import (
    Account,
    Delay,
    Drop,
    Endpoint,
    ErrorResponse,
    KillBSandbox,
    RateLimit,
    Redirect,
)
from killb_sandbox.accounts import SANDBOX_API_KEY, SANDBOX_EMAIL, SANDBOX_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sandbox(clock: ManualClock) -> Iterator[KillBSandbox]:
    """The plugin's account, on a sandbox whose clock the test moves."""
    accounts = {SANDBOX_EMAIL: Account(SANDBOX_PASSWORD)}
    with KillBSandbox(accounts, token_lifetime_ms=60_000, clock=clock) as started:
        yield started


def post(sandbox: KillBSandbox, path: str, body: Any, **headers: str) -> requests.Response:
    return requests.post(f"{sandbox.base_url}{path}", json=body, headers=headers, timeout=5)


def login(sandbox: KillBSandbox, **headers: str) -> requests.Response:
    body = {"email": SANDBOX_EMAIL, "password": SANDBOX_PASSWORD}
    return post(sandbox, "/api/v2/auth/login", body, **headers)


def refresh(sandbox: KillBSandbox, refresh_token: str) -> requests.Response:
    return post(sandbox, "/api/v2/auth/refresh", {"refreshToken": refresh_token})


def users(sandbox: KillBSandbox, access_token: str, **headers: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token}", **headers}
    return requests.get(f"{sandbox.base_url}/api/v2/users", headers=headers, timeout=5)


def logout(sandbox: KillBSandbox, access_token: str | None, **headers: str) -> requests.Response:
    if access_token is not None:
        headers = {"Authorization": f"Bearer {access_token}", **headers}
    url = f"{sandbox.base_url}/api/v2/auth/logout"
    return requests.post(url, headers=headers, timeout=5, allow_redirects=False)


def error_code(answer: requests.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["errorCode"]


def killb_error(status: int, error_code: str, message: str) -> dict[str, Any]:
    return {"errorCode": error_code, "message": [message], "statusCode": str(status)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# KillB's behaviour


def test_login_issues_tokens_with_expires_in_in_milliseconds(sandbox: KillBSandbox) -> None:
    answer = login(sandbox)

    assert answer.status_code == 201
    body = answer.json()
    assert body["expiresIn"] == 60_000
    assert body["accessToken"] != body["refreshToken"]
    assert sandbox.is_valid_access_token(body["accessToken"])


def test_a_wrong_password_is_refused_with_auth_0001(sandbox: KillBSandbox) -> None:
    answer = post(sandbox, "/api/v2/auth/login", {"email": SANDBOX_EMAIL, "password": "nope"})

    assert answer.status_code == 401
    assert answer.json() == killb_error(401, "AUTH.0001", "Invalid credentials")


def test_an_unknown_email_is_refused_with_auth_0001(sandbox: KillBSandbox) -> None:
    body = {"email": "nobody@example.test", "password": SANDBOX_PASSWORD}
    answer = post(sandbox, "/api/v2/auth/login", body)

    assert (answer.status_code, answer.json()["errorCode"]) == (401, "AUTH.0001")


def test_refresh_issues_new_tokens(sandbox: KillBSandbox) -> None:
    first = login(sandbox).json()

    answer = refresh(sandbox, first["refreshToken"])

    assert answer.status_code == 201
    assert sandbox.is_valid_access_token(answer.json()["accessToken"])


def test_a_refresh_token_works_once(sandbox: KillBSandbox) -> None:
    first = login(sandbox).json()
    refresh(sandbox, first["refreshToken"])

    answer = refresh(sandbox, first["refreshToken"])

    assert answer.status_code == 401
    assert answer.json() == killb_error(401, "AUTH.0003", "Invalid token")


def test_a_refresh_token_past_its_day_is_expired(sandbox: KillBSandbox, clock: ManualClock) -> None:
    first = login(sandbox).json()
    clock.now += 24 * 3600

    answer = refresh(sandbox, first["refreshToken"])

    assert (answer.status_code, answer.json()["errorCode"]) == (401, "AUTH.0002")


def test_revoked_refresh_tokens_are_invalid(sandbox: KillBSandbox) -> None:
    first = login(sandbox).json()
    sandbox.revoke_refresh_tokens()

    answer = refresh(sandbox, first["refreshToken"])

    assert (answer.status_code, answer.json()["errorCode"]) == (401, "AUTH.0003")


def test_users_answers_a_valid_bearer_token(sandbox: KillBSandbox) -> None:
    answer = users(sandbox, login(sandbox).json()["accessToken"])

    assert answer.status_code == 200
    assert answer.json()["users"]


def test_users_refuses_an_unknown_token(sandbox: KillBSandbox) -> None:
    answer = users(sandbox, "not-a-token")

    assert (answer.status_code, answer.json()["errorCode"]) == (401, "AUTH.0003")


def test_users_refuses_an_expired_token(sandbox: KillBSandbox, clock: ManualClock) -> None:
    access_token = login(sandbox).json()["accessToken"]
    clock.now += 60

    answer = users(sandbox, access_token)

    assert (answer.status_code, answer.json()["errorCode"]) == (401, "AUTH.0002")
    assert not sandbox.is_valid_access_token(access_token)


def test_the_token_lifetime_can_be_changed(sandbox: KillBSandbox) -> None:
    sandbox.set_token_lifetime_ms(5_000)

    assert login(sandbox).json()["expiresIn"] == 5_000


def test_an_account_with_an_api_key_refuses_requests_without_it(
    killb_sandbox_with_api_key: KillBSandbox,
) -> None:
    answer = login(killb_sandbox_with_api_key)

    assert answer.status_code == 403
    assert answer.json() == killb_error(403, "AUTH.0004", "Invalid API key")


def test_an_account_with_an_api_key_needs_it_on_every_request(
    killb_sandbox_with_api_key: KillBSandbox,
) -> None:
    # Given a login made with the API key
    logged_in = login(killb_sandbox_with_api_key, **{"x-api-key": SANDBOX_API_KEY})

    # When the users list is asked for without it, then it is refused
    answer = users(killb_sandbox_with_api_key, logged_in.json()["accessToken"])

    assert logged_in.status_code == 201
    assert (answer.status_code, answer.json()["errorCode"]) == (403, "AUTH.0004")


def test_an_unknown_path_is_404_in_killbs_shape(killb_sandbox: KillBSandbox) -> None:
    answer = requests.get(f"{killb_sandbox.base_url}/api/v2/nothing", timeout=5)

    assert answer.status_code == 404
    assert set(answer.json()) == {"errorCode", "message", "statusCode"}


# Logout and revocation


def test_logout_ends_the_session_access_and_refresh_token_alike(sandbox: KillBSandbox) -> None:
    # Given a logged-in session
    tokens = login(sandbox).json()

    # When it is logged out with its access token
    answer = logout(sandbox, tokens["accessToken"])

    # Then the logout succeeds, and neither of the session's tokens works afterwards
    assert answer.status_code == 200
    assert error_code(users(sandbox, tokens["accessToken"])) == (401, "AUTH.0003")
    assert error_code(refresh(sandbox, tokens["refreshToken"])) == (401, "AUTH.0003")
    assert not sandbox.is_valid_access_token(tokens["accessToken"])


def test_logout_ends_every_token_the_session_was_refreshed_into(sandbox: KillBSandbox) -> None:
    # Given a session refreshed once: two access tokens, both still within their lifetime
    first = login(sandbox).json()
    second = refresh(sandbox, first["refreshToken"]).json()

    # When the session is logged out with its latest access token
    logout(sandbox, second["accessToken"])

    # Then the earlier access token of the same session is refused too
    assert error_code(users(sandbox, first["accessToken"])) == (401, "AUTH.0003")
    assert error_code(refresh(sandbox, second["refreshToken"])) == (401, "AUTH.0003")


def test_logout_leaves_other_sessions_alone(sandbox: KillBSandbox) -> None:
    # Given two sessions of the same account
    ended, other = login(sandbox).json(), login(sandbox).json()

    # When one is logged out
    logout(sandbox, ended["accessToken"])

    # Then the other still works, access and refresh token alike
    assert users(sandbox, other["accessToken"]).status_code == 200
    assert refresh(sandbox, other["refreshToken"]).status_code == 201


@pytest.mark.parametrize("access_token", ["not-a-token", None], ids=["unknown", "no-bearer"])
def test_logout_refuses_an_unknown_or_missing_bearer_token(
    sandbox: KillBSandbox, access_token: str | None
) -> None:
    answer = logout(sandbox, access_token)

    assert answer.json() == killb_error(401, "AUTH.0003", "Invalid token")


def test_logout_of_an_account_with_an_api_key_needs_the_key(
    killb_sandbox_with_api_key: KillBSandbox,
) -> None:
    # Given a session of an account that requires x-api-key
    sandbox = killb_sandbox_with_api_key
    access_token = login(sandbox, **{"x-api-key": SANDBOX_API_KEY}).json()["accessToken"]

    # When it is logged out without the key, Then KillB refuses; with it, KillB logs it out
    assert error_code(logout(sandbox, access_token)) == (403, "AUTH.0004")
    assert users(sandbox, access_token, **{"x-api-key": SANDBOX_API_KEY}).status_code == 200
    assert logout(sandbox, access_token, **{"x-api-key": SANDBOX_API_KEY}).status_code == 200


def test_a_logged_out_token_cannot_log_out_again(sandbox: KillBSandbox) -> None:
    access_token = login(sandbox).json()["accessToken"]
    logout(sandbox, access_token)

    assert error_code(logout(sandbox, access_token)) == (401, "AUTH.0003")


def test_a_revoked_access_token_is_refused_but_its_refresh_token_works(
    sandbox: KillBSandbox,
) -> None:
    # Given a session whose access token KillB revokes early
    tokens = login(sandbox).json()

    sandbox.revoke(tokens["accessToken"])

    # Then the access token is refused for the users list and for a logout, still listed as
    # issued, and the session's refresh token gets a working access token
    assert error_code(users(sandbox, tokens["accessToken"])) == (401, "AUTH.0003")
    assert error_code(logout(sandbox, tokens["accessToken"])) == (401, "AUTH.0003")
    assert not sandbox.is_valid_access_token(tokens["accessToken"])
    assert tokens["accessToken"] in sandbox.issued_access_tokens()
    renewed = refresh(sandbox, tokens["refreshToken"]).json()
    assert users(sandbox, renewed["accessToken"]).status_code == 200


def test_revoking_one_access_token_leaves_the_others_valid(sandbox: KillBSandbox) -> None:
    revoked, kept = login(sandbox).json(), login(sandbox).json()

    sandbox.revoke(revoked["accessToken"])

    assert users(sandbox, kept["accessToken"]).status_code == 200


# Faults


# The token's claims: GET /api/v2/auth/me


def me(sandbox: KillBSandbox, access_token: str, **headers: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token}", **headers}
    return requests.get(f"{sandbox.base_url}/api/v2/auth/me", headers=headers, timeout=5)


def test_me_answers_a_live_token_with_its_claims(sandbox: KillBSandbox) -> None:
    # Given a token just issued
    token = login(sandbox).json()["accessToken"]

    # When its claims are asked for
    answer = me(sandbox, token)

    # Then 200 with who it is and the token's issued-at and expiry, in seconds
    assert answer.status_code == 200
    claims = answer.json()
    assert claims["email"] == SANDBOX_EMAIL
    assert (claims["iat"], claims["exp"]) == (int(T0), int(T0) + 60)
    assert {"id", "customerId", "roles", "permissions", "active"} <= set(claims)
    assert sandbox.count("me") == 1


def test_me_refuses_a_revoked_token_with_auth_0003(sandbox: KillBSandbox) -> None:
    # Given a token KillB revoked early
    token = login(sandbox).json()["accessToken"]
    sandbox.revoke(token)

    # When its claims are asked for, Then 401 AUTH.0003
    assert me(sandbox, token).json() == killb_error(401, "AUTH.0003", "Invalid token")


def test_me_refuses_a_logged_out_or_unknown_token_with_auth_0003(sandbox: KillBSandbox) -> None:
    # Given a token whose session was logged out, and a token KillB never issued
    token = login(sandbox).json()["accessToken"]
    logout(sandbox, token)

    # When their claims are asked for, Then both are 401 AUTH.0003
    assert error_code(me(sandbox, token)) == (401, "AUTH.0003")
    assert error_code(me(sandbox, "never-issued")) == (401, "AUTH.0003")


def test_me_refuses_an_expired_token_with_auth_0002(
    sandbox: KillBSandbox, clock: ManualClock
) -> None:
    # Given a token whose 60 s have passed
    token = login(sandbox).json()["accessToken"]
    clock.now += 60

    # When its claims are asked for, Then 401 AUTH.0002
    assert error_code(me(sandbox, token)) == (401, "AUTH.0002")


def test_a_fault_answers_as_many_requests_as_told_then_killb_is_back(
    killb_sandbox: KillBSandbox,
) -> None:
    killb_sandbox.inject("login", ErrorResponse(503), times=2)

    statuses = [login(killb_sandbox).status_code for _ in range(3)]

    assert statuses == [503, 503, 201]


def test_a_500_fault_can_come_without_an_error_code(killb_sandbox: KillBSandbox) -> None:
    killb_sandbox.inject("login", ErrorResponse(500))

    assert login(killb_sandbox).json() == {"message": ["Injected failure"], "statusCode": "500"}


def test_a_fault_for_one_endpoint_leaves_the_others_alone(killb_sandbox: KillBSandbox) -> None:
    killb_sandbox.inject("refresh", ErrorResponse(503))

    assert login(killb_sandbox).status_code == 201


def test_a_fault_for_any_endpoint_answers_the_next_request(killb_sandbox: KillBSandbox) -> None:
    killb_sandbox.inject("any", ErrorResponse(502))

    assert users(killb_sandbox, "whatever").status_code == 502


def test_a_rate_limit_carries_retry_after_and_rate_limit_headers(
    killb_sandbox: KillBSandbox,
) -> None:
    killb_sandbox.inject("login", RateLimit(retry_after=3, limit=10))

    answer = login(killb_sandbox)

    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "3"
    assert answer.headers["X-RateLimit-Limit"] == "10"
    assert answer.headers["X-RateLimit-Remaining"] == "0"


def test_a_dropped_connection_gets_no_answer(killb_sandbox: KillBSandbox) -> None:
    killb_sandbox.inject("login", Drop())

    with pytest.raises(requests.ConnectionError):
        login(killb_sandbox)


def test_a_delay_holds_the_answer_back(killb_sandbox: KillBSandbox) -> None:
    killb_sandbox.inject("login", Delay(5))

    with pytest.raises(requests.Timeout):
        requests.post(
            f"{killb_sandbox.base_url}/api/v2/auth/login",
            json={"email": SANDBOX_EMAIL, "password": SANDBOX_PASSWORD},
            timeout=0.2,
        )


@pytest.mark.parametrize("endpoint", ["login", "refresh", "logout", "users"])
def test_a_redirect_fault_answers_3xx_with_the_location(
    killb_sandbox: KillBSandbox, endpoint: Endpoint
) -> None:
    # Given a redirect to another host injected on one endpoint
    tokens = login(killb_sandbox).json()
    elsewhere = "http://127.0.0.1:9/api/v2/auth/login"
    killb_sandbox.inject(endpoint, Redirect(elsewhere, status=308))
    methods = {"login": "POST", "refresh": "POST", "logout": "POST", "users": "GET"}
    paths = {"login": "auth/login", "refresh": "auth/refresh", "logout": "auth/logout"}

    # When that endpoint is asked, without following redirects
    answer = requests.request(
        methods[endpoint],
        f"{killb_sandbox.base_url}/api/v2/{paths.get(endpoint, 'users')}",
        json={"email": SANDBOX_EMAIL, "password": SANDBOX_PASSWORD},
        headers={"Authorization": f"Bearer {tokens['accessToken']}"},
        timeout=5,
        allow_redirects=False,
    )

    # Then it answers the 3xx with the Location, and the next request is served normally
    assert (answer.status_code, answer.headers["Location"]) == (308, elsewhere)
    assert killb_sandbox.count(endpoint) == 1 + (endpoint == "login")
    assert login(killb_sandbox).status_code == 201


def test_a_redirect_defaults_to_307(killb_sandbox: KillBSandbox) -> None:
    killb_sandbox.inject("login", Redirect("http://127.0.0.1:9/"))

    answer = requests.post(
        f"{killb_sandbox.base_url}/api/v2/auth/login", timeout=5, allow_redirects=False
    )

    assert answer.status_code == 307


def test_clear_faults_forgets_the_faults_not_yet_used(killb_sandbox: KillBSandbox) -> None:
    killb_sandbox.inject("login", ErrorResponse(503), times=5)

    killb_sandbox.clear_faults()

    assert login(killb_sandbox).status_code == 201


# What a test asserts on


def test_every_request_is_recorded(killb_sandbox: KillBSandbox) -> None:
    login(killb_sandbox, **{"X-Trace": "t-1"})

    (recorded,) = killb_sandbox.requests
    assert (recorded.method, recorded.path, recorded.endpoint) == (
        "POST",
        "/api/v2/auth/login",
        "login",
    )
    assert recorded.headers["x-trace"] == "t-1"
    assert recorded.json == {"email": SANDBOX_EMAIL, "password": SANDBOX_PASSWORD}


def test_count_tells_requests_per_endpoint(killb_sandbox: KillBSandbox) -> None:
    tokens = login(killb_sandbox).json()
    renewed = refresh(killb_sandbox, tokens["refreshToken"]).json()
    users(killb_sandbox, renewed["accessToken"])
    users(killb_sandbox, renewed["accessToken"])
    logout(killb_sandbox, renewed["accessToken"])

    counts = [killb_sandbox.count(e) for e in ("login", "refresh", "users", "logout", "any")]
    assert counts == [1, 1, 2, 1, 5]


def test_the_sandbox_refuses_to_serve_beyond_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        KillBSandbox().start(host="192.0.2.10")


def test_the_sandbox_serves_beyond_loopback_only_when_allowed() -> None:
    # Given a sandbox told it may bind every interface (as `sam local` needs, for the Docker
    # bridge)
    sandbox = KillBSandbox({SANDBOX_EMAIL: Account(SANDBOX_PASSWORD)})
    sandbox.start(host="0.0.0.0", allow_non_loopback=True)  # noqa: S104 - the point of the test
    try:
        port = sandbox.base_url.rsplit(":", 1)[1]

        # When a client logs in through one of those interfaces
        answer = requests.post(
            f"http://127.0.0.1:{port}/api/v2/auth/login",
            json={"email": SANDBOX_EMAIL, "password": SANDBOX_PASSWORD},
            timeout=5,
        )
    finally:
        sandbox.stop()

    # Then it is served
    assert answer.status_code == 201


# The command line


def run_cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "local")}
    return subprocess.Popen(  # noqa: S603 - our own module, no shell
        [sys.executable, "-m", "killb_sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_the_cli_serves_the_account_until_terminated() -> None:
    # Given the sandbox started from the command line on a free port
    port = free_port()
    process = run_cli(
        "--port", str(port), "--email", SANDBOX_EMAIL, "--password", SANDBOX_PASSWORD
    )  # fmt: skip
    try:
        assert process.stdout is not None
        announced = process.stdout.readline()
        base_url = f"http://127.0.0.1:{port}"

        # When a client logs in to the URL it announced
        body = {"email": SANDBOX_EMAIL, "password": SANDBOX_PASSWORD}
        answer = requests.post(f"{base_url}/api/v2/auth/login", json=body, timeout=5)
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=10)

    # Then it served the login, printed its URL but not the password, and stopped cleanly
    assert base_url in announced
    assert SANDBOX_PASSWORD not in announced
    assert answer.status_code == 201
    assert exit_code == 0


def test_the_cli_refuses_a_host_beyond_loopback() -> None:
    process = run_cli("--port", "0", "--host", "192.0.2.10", "--email", "e", "--password", "p")

    _, stderr = process.communicate(timeout=10)

    assert process.returncode == 2
    assert "loopback" in stderr
