"""BrokerAuth calling the local KillB sandbox over real HTTP, with tokens the sandbox issued and a
scripted broker handing them out: a revoked token is reported and replaced, a redirect away
from KillB takes no header along."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from broker_server import BrokerServer

from killb_broker_client import BrokerAuth, fingerprint
from killb_sandbox.accounts import SANDBOX_API_KEY, SANDBOX_EMAIL, SANDBOX_PASSWORD
from killb_sandbox.server import KillBSandbox, Redirect
from tests.client.scripted_broker import ScriptedBroker, issued
from tests.client.scripted_killb import serve_killb


def log_in(sandbox: KillBSandbox) -> str:
    """A fresh session's access token, as the refresher would get it."""
    response = requests.post(
        f"{sandbox.base_url}/api/v2/auth/login",
        json={"email": SANDBOX_EMAIL, "password": SANDBOX_PASSWORD},
        headers={"x-api-key": SANDBOX_API_KEY},
        timeout=5,
    )
    response.raise_for_status()
    return str(response.json()["accessToken"])


@pytest.fixture
def session(broker_api: BrokerServer) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.auth = BrokerAuth(broker_api.base_url)
        yield session


def test_a_token_the_sandbox_revoked_is_reported_and_the_call_succeeds_with_the_next(
    broker: ScriptedBroker,
    killb_sandbox_with_api_key: KillBSandbox,
    session: requests.Session,
) -> None:
    # Given two sessions at KillB, a broker that hands out the first, then the second, and
    # KillB revoking the first token early
    sandbox = killb_sandbox_with_api_key
    first, second = log_in(sandbox), log_in(sandbox)
    broker.script(issued(first, api_key=SANDBOX_API_KEY), issued(second, api_key=SANDBOX_API_KEY))
    sandbox.revoke(first)

    # When the caller lists users with BrokerAuth
    response = session.get(f"{sandbox.base_url}/api/v2/users", timeout=5)

    # Then KillB's 401 led to one report of the first token and one retry, which KillB accepted
    assert response.status_code == 200
    assert [answer.status_code for answer in response.history] == [401]
    assert [(event["queryStringParameters"] or {}).get("rejected") for event in broker.events] == [
        None,
        fingerprint(first),
    ]
    assert sandbox.count("users") == 2


def test_a_token_the_sandbox_accepts_is_sent_once_and_never_reported(
    broker: ScriptedBroker,
    killb_sandbox_with_api_key: KillBSandbox,
    session: requests.Session,
) -> None:
    sandbox = killb_sandbox_with_api_key
    broker.script(issued(log_in(sandbox), api_key=SANDBOX_API_KEY))

    response = session.get(f"{sandbox.base_url}/api/v2/users", timeout=5)

    assert response.status_code == 200
    assert response.history == []
    assert broker.calls == 1
    assert sandbox.count("users") == 1


def test_a_sandbox_redirect_to_another_origin_takes_no_header_along(
    broker: ScriptedBroker,
    killb_sandbox_with_api_key: KillBSandbox,
    session: requests.Session,
) -> None:
    # Given KillB answering the users call with a redirect to another origin
    sandbox = killb_sandbox_with_api_key
    broker.script(issued(log_in(sandbox), api_key=SANDBOX_API_KEY))
    with serve_killb() as elsewhere:
        sandbox.inject("users", Redirect(f"{elsewhere.base_url}/collect"))

        # When the caller's session follows it
        session.get(f"{sandbox.base_url}/api/v2/users", timeout=5)

    # Then the other origin got neither the token nor the API key
    (collected,) = elsewhere.received
    assert collected.path == "/collect"
    assert "authorization" not in collected.headers
    assert "x-api-key" not in collected.headers
