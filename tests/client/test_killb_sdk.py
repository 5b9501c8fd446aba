"""The KillB SDK adapter (killb_broker_client.killb_sdk) against the local KillB sandbox and a
scripted broker, over real HTTP; and, beside each fix, the plain SDK (killb-sdk-python 1.0.4)
showing the bug it removes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import killb.client
import pytest
import requests
from broker_server import BrokerServer
from killb.account import Account as SdkAccount
from killb.api_requests import ApiRequests
from killb.exceptions import AuthenticationError, KillBApiError
from killb.quotations import Quotation
from killb.ramp import Ramps
from killb.savings import Savings
from killb.user import User

from killb_broker_client import fingerprint
from killb_broker_client.killb_sdk import BrokerTokenUnavailable, Client
from killb_sandbox.accounts import SANDBOX_EMAIL, SANDBOX_PASSWORD
from killb_sandbox.server import Account, KillBSandbox
from tests.client.scripted_broker import ScriptedBroker, issued, refused

HOUR = 3600
QUOTATION = {"fromCurrency": "MXN", "toCurrency": "USDC", "amount": 1000}


class Clock:
    """The sandbox's clock, moved by the test: a token's hour passes in no time."""

    def __init__(self) -> None:
        self.now = datetime.now().timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> Iterator[KillBSandbox]:
    with KillBSandbox({SANDBOX_EMAIL: Account(password=SANDBOX_PASSWORD)}, clock=clock) as started:
        yield started


def login(sandbox: KillBSandbox) -> str:
    """A fresh access token of the sandbox's account, as the refresher would obtain it."""
    response = requests.post(
        f"{sandbox.base_url}/api/v2/auth/login",
        json={"email": SANDBOX_EMAIL, "password": SANDBOX_PASSWORD},
        timeout=5,
    )
    return str(response.json()["accessToken"])


def issued_for(token: str, killb_base_url: str, expires_in: int = HOUR) -> dict[str, Any]:
    """The broker's 200 for token, naming where KillB is."""
    answer = issued(token, api_key=None, expires_in=expires_in)
    body = json.loads(answer["body"])
    answer["body"] = json.dumps({**body, "killbBaseUrl": killb_base_url})
    return answer


@pytest.fixture
def plain_sdk_at(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The plain SDK's Client, its SANDBOX environment pointed at the local sandbox (the only
    change: the SDK has no setting for its URL)."""

    def client_for(sandbox: KillBSandbox, password: str = SANDBOX_PASSWORD) -> killb.client.Client:
        root = f"{sandbox.base_url}/api/v2"

        def get_base_url(self: ApiRequests) -> str:
            self.base_url = root
            return root

        monkeypatch.setattr(ApiRequests, "get_base_url", get_base_url)
        return killb.client.Client(environment="SANDBOX", email=SANDBOX_EMAIL, password=password)

    return client_for


# The adapter keeps the SDK's API


def test_client_has_the_sdks_services(broker_api: BrokerServer) -> None:
    # When a service builds the adapter's Client
    client = Client(broker_api.base_url)

    # Then it is a killb.client.Client with the SDK's own services
    assert isinstance(client, killb.client.Client)
    assert isinstance(client.Account, SdkAccount)
    assert isinstance(client.User, User)
    assert isinstance(client.Quotation, Quotation)
    assert isinstance(client.Savings, Savings)
    assert isinstance(client.Ramps, Ramps)


def test_service_call_goes_to_the_brokers_killb_with_its_headers(
    sandbox: KillBSandbox, broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker issuing a sandbox token, and naming the sandbox as KillB
    token = login(sandbox)
    broker.script(issued_for(token, sandbox.base_url))
    client = Client(broker_api.base_url)

    # When the service asks for users by query, as it would with the SDK
    answer = client.User.get_by_query({"email": "ana@example.test"})

    # Then KillB answered it, with the broker's token and without any login
    assert [user["id"] for user in answer["users"]] == ["usr_0001"]
    assert sandbox.requests[-1].headers["authorization"] == f"Bearer {token}"
    assert sandbox.count("login") == 1  # the test's own, for the broker's token


def test_quotation_is_created_through_the_adapter(
    sandbox: KillBSandbox, broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker issuing a sandbox token
    broker.script(issued_for(login(sandbox), sandbox.base_url))

    # When the service creates a quotation
    quotation = Client(broker_api.base_url).Quotation.create(QUOTATION)

    # Then KillB's answer comes back as the SDK returns it
    assert quotation["fromAmount"] == 1000
    assert quotation["id"].startswith("quo_")


def test_broker_url_comes_from_the_environment(
    sandbox: KillBSandbox,
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given KILLB_BROKER_URL set, and no broker_url given
    broker.script(issued_for(login(sandbox), sandbox.base_url))
    monkeypatch.setenv("KILLB_BROKER_URL", broker_api.base_url)

    # When the service calls KillB
    answer = Client().User.get_by_query({})

    # Then the broker of the environment was asked
    assert broker.calls == 1
    assert len(answer["users"]) == 2


def test_no_broker_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given neither broker_url nor KILLB_BROKER_URL
    monkeypatch.delenv("KILLB_BROKER_URL", raising=False)

    # When the service builds the Client, then the error names both
    with pytest.raises(ValueError, match="KILLB_BROKER_URL"):
        Client()


# Bug 1: expiresIn read as seconds


def test_plain_sdk_keeps_a_one_hour_token_for_41_days_and_fails_after_an_hour(
    sandbox: KillBSandbox, clock: Clock, plain_sdk_at: Any
) -> None:
    # Given the plain SDK logged in to a KillB whose tokens last an hour
    plain = plain_sdk_at(sandbox)

    # Then it believes the token lasts about 41 days
    assert plain.api_requests.token_expiry - datetime.now() > timedelta(days=41)

    # And once the hour has passed, every call fails: it keeps the dead token
    clock.advance(HOUR + 1)
    with pytest.raises(AuthenticationError):
        plain.User.get_by_query({})


def test_adapter_replaces_a_token_that_died_after_its_hour(
    sandbox: KillBSandbox, clock: Clock, broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given the adapter used a one-hour token, and the broker holds the next one
    first = login(sandbox)
    broker.script(issued_for(first, sandbox.base_url))
    client = Client(broker_api.base_url)
    client.User.get_by_query({})

    # When the hour has passed (KillB now refuses the first token) and the service calls again
    clock.advance(HOUR + 1)
    second = login(sandbox)
    broker.script(issued_for(first, sandbox.base_url), issued_for(second, sandbox.base_url))
    answer = client.User.get_by_query({})

    # Then the call worked, with the new token
    assert len(answer["users"]) == 2
    assert sandbox.requests[-1].headers["authorization"] == f"Bearer {second}"


# Bug 2: production over plain http


def test_plain_sdks_production_url_is_plain_http() -> None:
    # Given the plain SDK for PRODUCTION
    plain = ApiRequests(environment="PRODUCTION", email=SANDBOX_EMAIL, password="unused")

    # Then its URL is plain http: the token would travel in clear
    assert plain.get_base_url().startswith("http://")


def test_adapter_sends_to_the_brokers_https_killb(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker naming production KillB
    broker.script(issued_for("kb-token-prod", "https://killb.app"))

    # Then the adapter's API root is production over https
    assert Client(broker_api.base_url).api_requests.get_base_url() == "https://killb.app/api/v2"


def test_adapter_refuses_a_killb_over_plain_http(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker naming a KillB over plain http, not on loopback
    broker.script(issued_for("kb-token-clear", "http://killb.app"))

    # When the service calls KillB, then nothing is sent, and the SDK's error says why
    with pytest.raises(KillBApiError, match="https"):
        Client(broker_api.base_url).User.get_by_query({})


# Bug 3: a refused login taken for a token


def test_plain_sdk_takes_a_refused_login_for_a_token(
    sandbox: KillBSandbox, plain_sdk_at: Any
) -> None:
    # When the plain SDK logs in with a wrong password, KillB answers 401, and the SDK, whose
    # check `status_code >= 200` always passes, fails on the missing accessToken instead
    with pytest.raises(KeyError, match="accessToken"):
        plain_sdk_at(sandbox, password="wrong-password")


def test_adapter_needs_no_password_and_never_logs_in(
    sandbox: KillBSandbox, broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker issuing a sandbox token (the test's own login obtains it)
    broker.script(issued_for(login(sandbox), sandbox.base_url))

    # When the service builds the Client and calls KillB
    Client(broker_api.base_url).Quotation.create(QUOTATION)

    # Then the adapter made no login of its own
    assert sandbox.count("login") == 1


def test_broker_refusal_is_the_sdks_authentication_error(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker that refuses this caller
    broker.script(refused(403, "BROKER.0002", "Caller is not allowed"))

    # When the service calls KillB, then the SDK's AuthenticationError says the broker refused
    with pytest.raises(BrokerTokenUnavailable, match=r"BROKER\.0002") as raised:
        Client(broker_api.base_url).User.get_by_query({})
    assert isinstance(raised.value, AuthenticationError)


def test_no_new_token_after_a_refusal_is_the_sdks_authentication_error(
    sandbox: KillBSandbox, broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a token KillB has revoked, and a broker that has no other one for now
    revoked = login(sandbox)
    sandbox.revoke(revoked)
    broker.script(
        issued_for(revoked, sandbox.base_url),
        refused(503, "BROKER.0003", "No token available", retry_after="30"),
    )

    # When the service calls KillB, then the SDK's AuthenticationError says the broker has none
    with pytest.raises(BrokerTokenUnavailable, match=r"BROKER\.0003"):
        Client(broker_api.base_url).User.get_by_query({})


# Bug 4: a 401 never retried


def test_plain_sdk_never_retries_a_refused_token(sandbox: KillBSandbox, plain_sdk_at: Any) -> None:
    # Given the plain SDK whose token KillB has revoked
    plain = plain_sdk_at(sandbox)
    sandbox.revoke(plain.api_requests.access_token)

    # When the service calls KillB, then it fails at once, after one request
    with pytest.raises(AuthenticationError):
        plain.User.get_by_query({})
    assert sandbox.count("users") == 1


def test_adapter_reports_a_refused_token_and_retries_once(
    sandbox: KillBSandbox, broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker that issued a token KillB has since revoked, and holds a new one
    revoked, fresh = login(sandbox), login(sandbox)
    sandbox.revoke(revoked)
    broker.script(issued_for(revoked, sandbox.base_url), issued_for(fresh, sandbox.base_url))

    # When the service creates a quotation
    quotation = Client(broker_api.base_url).Quotation.create(QUOTATION)

    # Then the broker was told which token KillB refused, and the retry worked
    assert quotation["id"].startswith("quo_")
    assert (broker.events[1]["queryStringParameters"] or {}).get("rejected") == fingerprint(revoked)
    assert sandbox.count("quotations") == 2


def test_second_refusal_in_a_row_is_the_sdks_error_without_a_third_request(
    sandbox: KillBSandbox, broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker whose tokens KillB refuses, the new one as well
    first, second = login(sandbox), login(sandbox)
    sandbox.revoke(first)
    sandbox.revoke(second)
    broker.script(issued_for(first, sandbox.base_url), issued_for(second, sandbox.base_url))

    # When the service calls KillB
    with pytest.raises(AuthenticationError) as raised:
        Client(broker_api.base_url).User.get_by_query({})

    # Then the SDK's own error, after two requests, with no token in its message
    assert sandbox.count("users") == 2
    assert first not in str(raised.value)
    assert second not in str(raised.value)
