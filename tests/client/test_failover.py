"""Several brokers: which one is asked, when the next one is, and for how long the one that
answered is kept (docs/spec.md, "The Python caller client"). Over real HTTP with two local
brokers, and BrokerList alone with the time given."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.session import Session as BotocoreSession
from broker_server import BrokerServer

from killb_broker_client import (
    BrokerAccessDenied,
    BrokerAuth,
    BrokerUnavailable,
    BrokerUnreachable,
    get_auth_headers,
)
from killb_broker_client.failover import BrokerList, broker_urls
from killb_broker_client.signing import broker_endpoint
from tests.client.conftest import serve_scripted
from tests.client.loopback_routes import routed_session
from tests.client.scripted_broker import (
    ACCESS_TOKEN,
    SECOND_TOKEN,
    ScriptedBroker,
    issued,
    refused,
    stopped_broker_url,
)
from tests.client.test_broker_auth import authorization_fields, header


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stopped_first_broker_passes_the_call_to_the_second(
    second: ScriptedBroker, second_api: BrokerServer
) -> None:
    # Given a first broker whose port is closed, and a second that answers
    auth = BrokerAuth([stopped_broker_url(), second_api.base_url])

    # When the caller asks for headers
    headers = auth.headers()

    # Then the second broker's headers come back
    assert headers["Authorization"] == f"Bearer {SECOND_TOKEN}"
    assert second.calls == 1


def test_a_broker_that_stops_mid_run_passes_later_calls_to_the_second(
    broker: ScriptedBroker, second: ScriptedBroker, second_api: BrokerServer
) -> None:
    # Given two brokers, the first answering with headers that are never cached
    broker.script(issued(expires_in=0))
    second.script(issued(SECOND_TOKEN, expires_in=0))
    first_api = serve_scripted(broker)
    auth = BrokerAuth([first_api.base_url, second_api.base_url], min_ttl=0)
    assert auth.headers()["Authorization"] == f"Bearer {ACCESS_TOKEN}"

    # When the first broker stops, and the caller asks again
    first_api.stop()
    headers = auth.headers()

    # Then the second broker answers it
    assert headers["Authorization"] == f"Bearer {SECOND_TOKEN}"
    assert (broker.calls, second.calls) == (1, 1)


@pytest.mark.parametrize(
    "answer",
    [
        refused(500, "BROKER.0000", "Internal error"),
        refused(503, "BROKER.0003", "No token available", retry_after="30"),
        refused(502, "BROKER.0000", "Bad gateway"),
    ],
    ids=["500", "503-no-token", "502"],
)
def test_a_5xx_from_the_first_broker_passes_the_call_to_the_second(
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    second: ScriptedBroker,
    second_api: BrokerServer,
    answer: dict[str, Any],
) -> None:
    # Given a first broker that answers 5xx (a 503 BROKER.0003 too: the other region may hold
    # a token), and a second that answers
    broker.script(answer)
    auth = BrokerAuth([broker_api.base_url, second_api.base_url])

    # When the caller asks for headers
    headers = auth.headers()

    # Then each broker was asked once, and the second one's headers come back at once
    assert headers["Authorization"] == f"Bearer {SECOND_TOKEN}"
    assert (broker.calls, second.calls) == (1, 1)


def test_a_403_from_the_first_broker_is_raised_and_the_second_is_not_asked(
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    second: ScriptedBroker,
    second_api: BrokerServer,
) -> None:
    # Given a first broker that refuses this caller
    broker.script(refused(403, "BROKER.0002", "Caller not allowed"))
    auth = BrokerAuth([broker_api.base_url, second_api.base_url])

    # When the caller asks for headers
    with pytest.raises(BrokerAccessDenied) as raised:
        auth.headers()

    # Then the refusal is raised as it is, from the first broker; the second was never asked
    assert (raised.value.error_code, raised.value.url) == ("BROKER.0002", broker_api.base_url)
    assert second.calls == 0


def test_a_429_from_the_first_broker_is_retried_there_not_passed_on(
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    second: ScriptedBroker,
    second_api: BrokerServer,
) -> None:
    # Given a first broker that throttles once, then answers
    broker.script(refused(429, "BROKER.0007", "Too many requests", retry_after="0"), issued())
    auth = BrokerAuth([broker_api.base_url, second_api.base_url])

    # When the caller asks for headers
    headers = auth.headers()

    # Then the retry loop asked the first broker again; the second was never asked
    assert headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert (broker.calls, second.calls) == (2, 0)


def test_a_first_broker_that_times_out_passes_the_call_to_the_second(
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    second: ScriptedBroker,
    second_api: BrokerServer,
) -> None:
    # Given a first broker that holds its answer past the caller's read timeout
    broker.release.clear()
    auth = BrokerAuth([broker_api.base_url, second_api.base_url], timeout=(5.0, 0.3))

    # When the caller asks for headers
    try:
        headers = auth.headers()
    finally:
        broker.release.set()

    # Then the second broker answered it
    assert headers["Authorization"] == f"Bearer {SECOND_TOKEN}"
    assert second.calls == 1


def test_when_every_broker_fails_the_last_error_is_raised(
    second: ScriptedBroker, second_api: BrokerServer
) -> None:
    # Given a first broker that is down and a second without a token
    second.script(refused(503, "BROKER.0003", "No token available", retry_after="30"))
    auth = BrokerAuth([stopped_broker_url(), second_api.base_url], retries=0)

    # When the caller asks for headers
    with pytest.raises(BrokerUnavailable) as raised:
        auth.headers()

    # Then the error is the second broker's, the last one asked
    assert (raised.value.status, raised.value.error_code) == (503, "BROKER.0003")
    assert raised.value.url == second_api.base_url


def test_when_every_broker_is_down_the_error_names_the_last_one() -> None:
    first, last = stopped_broker_url(), stopped_broker_url()

    with pytest.raises(BrokerUnreachable) as raised:
        BrokerAuth([first, last]).headers()

    assert str(raised.value) == f"could not reach {last}/v1/auth-headers (connection refused)"
    assert raised.value.url == last


def test_when_every_broker_has_no_token_the_whole_list_is_retried_after_retry_after(
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    second: ScriptedBroker,
    second_api: BrokerServer,
) -> None:
    # Given two regions without a token for a moment, the first then getting one
    no_token = refused(503, "BROKER.0003", "No token available", retry_after="0")
    broker.script(no_token, issued())
    second.script(no_token)
    auth = BrokerAuth([broker_api.base_url, second_api.base_url])

    # When the caller asks for headers
    headers = auth.headers()

    # Then after both refused, the retry asked the first again and got its token
    assert headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert (broker.calls, second.calls) == (2, 1)


def test_the_broker_that_answered_is_kept_for_60_seconds_then_the_first_is_tried_again(
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    second: ScriptedBroker,
    second_api: BrokerServer,
) -> None:
    # Given a first broker that fails once and then answers, headers never cached, a fake clock
    broker.script(refused(500, "BROKER.0000", "Internal error"), issued(expires_in=0))
    second.script(issued(SECOND_TOKEN, expires_in=0))
    clock = FakeClock()
    auth = BrokerAuth([broker_api.base_url, second_api.base_url], min_ttl=0, clock=clock)
    auth.headers()  # the first fails, the second answers

    # When the caller asks again 59 s later
    clock.now += 59
    kept = auth.headers()

    # Then the second broker is asked directly; the first is not
    assert kept["Authorization"] == f"Bearer {SECOND_TOKEN}"
    assert (broker.calls, second.calls) == (1, 2)

    # And when it asks once 60 s have passed since the second was chosen
    clock.now += 1
    back = auth.headers()

    # Then the first broker is tried again, and answers
    assert back["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert (broker.calls, second.calls) == (2, 2)


def test_each_broker_url_signs_for_its_own_region(
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    second: ScriptedBroker,
) -> None:
    # Given a broker in us-east-1 that fails and one in eu-west-1 (their API Gateway hosts
    # routed to the two local brokers)
    broker.script(refused(500, "BROKER.0000", "Internal error"))
    east, west = (
        "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
        "f6g7h8i9j0.execute-api.eu-west-1.amazonaws.com",
    )
    # When the caller asks for headers, each broker behind a gateway checking its own region
    with serve_scripted(second, region="eu-west-1") as west_api:
        routes = {east: broker_api.base_url, west: west_api.base_url}
        with routed_session(routes) as session:
            urls = [f"https://{east}/prod", f"https://{west}/prod"]
            BrokerAuth(urls, session=session).headers()

    # Then each call was signed for its broker's region
    for event, region in ((broker.events[0], "us-east-1"), (second.events[0], "eu-west-1")):
        credential = authorization_fields(header(event, "Authorization"))["Credential"]
        assert f"/{region}/execute-api/aws4_request" in credential


def test_get_auth_headers_reads_a_comma_separated_list_from_killb_broker_url(
    second: ScriptedBroker, second_api: BrokerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given KILLB_BROKER_URL naming a stopped broker, then one that answers
    monkeypatch.setenv("KILLB_BROKER_URL", f"{stopped_broker_url()}, {second_api.base_url}")

    # When code asks for headers without naming a broker
    headers = get_auth_headers()

    # Then the second broker answered
    assert headers["Authorization"] == f"Bearer {SECOND_TOKEN}"


def test_get_auth_headers_without_a_url_or_killb_broker_url_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KILLB_BROKER_URL", raising=False)

    with pytest.raises(ValueError, match="KILLB_BROKER_URL"):
        get_auth_headers()


def test_broker_urls_split_commas_and_drop_blanks_and_repeats() -> None:
    urls = broker_urls(["https://a.example/p, https://b.example/p", "https://a.example/p", " "])

    assert urls == ["https://a.example/p", "https://b.example/p"]


def test_an_empty_list_of_brokers_is_refused() -> None:
    with pytest.raises(ValueError, match="no broker URL"):
        BrokerAuth([])


def test_a_bad_url_anywhere_in_the_list_is_refused() -> None:
    with pytest.raises(ValueError, match="https"):
        BrokerAuth(["https://broker.example.com/prod", "http://broker.example.org/prod"])


def broker_list(*urls: str) -> BrokerList:
    session = BotocoreSession()
    return BrokerList(
        [broker_endpoint(url, region="us-east-1", botocore_session=session) for url in urls]
    )


def test_the_configured_order_holds_until_another_broker_answers() -> None:
    brokers = broker_list("https://a.example/p", "https://b.example/p", "https://c.example/p")

    assert [endpoint.url for endpoint in brokers.candidates(0.0)] == [
        "https://a.example/p",
        "https://b.example/p",
        "https://c.example/p",
    ]


def test_a_kept_broker_comes_first_then_the_others_in_their_order() -> None:
    brokers = broker_list("https://a.example/p", "https://b.example/p", "https://c.example/p")
    brokers.answered(brokers.endpoints[2], now=0.0)

    assert [endpoint.url for endpoint in brokers.candidates(59.9)] == [
        "https://c.example/p",
        "https://a.example/p",
        "https://b.example/p",
    ]
    assert brokers.candidates(60.0)[0].url == "https://a.example/p"


def test_answering_again_does_not_extend_the_60_seconds() -> None:
    # Given the second broker kept since t=0, answering again at t=50
    brokers = broker_list("https://a.example/p", "https://b.example/p")
    brokers.answered(brokers.endpoints[1], now=0.0)
    brokers.answered(brokers.endpoints[1], now=50.0)

    # Then at t=60 the first is tried again: a busy caller still returns to it
    assert brokers.candidates(60.0)[0].url == "https://a.example/p"


def test_the_first_broker_answering_ends_the_keeping() -> None:
    brokers = broker_list("https://a.example/p", "https://b.example/p")
    brokers.answered(brokers.endpoints[1], now=0.0)
    brokers.answered(brokers.endpoints[0], now=10.0)

    assert brokers.candidates(11.0)[0].url == "https://a.example/p"
