"""BrokerAuth.issued(): the broker's whole answer, killbBaseUrl included, cached as the headers
are; an older broker without killbBaseUrl still works; a killbBaseUrl no caller should follow is
a clear error (docs/spec.md, "The Python caller client")."""

from __future__ import annotations

import pytest
from broker_server import BrokerServer

from killb_broker_client import BrokerAuth, BrokerClientError, fingerprint
from tests.client.scripted_broker import ACCESS_TOKEN, API_KEY, ScriptedBroker, issued

SANDBOX_URL = "https://teste-94u93qnn.uc.gateway.dev"


def test_issued_carries_the_headers_expiry_and_killb_base_url(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker that names where KillB is for its token
    broker.script(issued(killb_base_url=SANDBOX_URL))

    # When the caller asks for the whole answer
    answer = BrokerAuth(broker_api.base_url).issued()

    # Then it holds the headers, the token's fingerprint and expiry, and the KillB URL
    assert answer.headers == {"Authorization": f"Bearer {ACCESS_TOKEN}", "x-api-key": API_KEY}
    assert answer.fingerprint == fingerprint(ACCESS_TOKEN)
    assert answer.killb_base_url == SANDBOX_URL
    assert answer.expires_at is not None
    assert answer.expires_at.endswith("Z")


def test_an_older_broker_without_killb_base_url_still_works(
    broker_api: BrokerServer,
) -> None:
    # Given a broker that sends no killbBaseUrl (the scripted default)
    answer = BrokerAuth(broker_api.base_url).issued()

    # Then the headers are there, and the KillB URL is unknown
    assert answer.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert answer.killb_base_url is None


def test_issued_is_cached_as_the_headers_are(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    broker.script(issued(killb_base_url=SANDBOX_URL))
    auth = BrokerAuth(broker_api.base_url)

    first = auth.issued()
    headers = auth.headers()
    second = auth.issued()

    assert broker.calls == 1
    assert first == second
    assert headers == first.headers


def test_changing_the_headers_issued_returns_does_not_change_the_cache(
    broker_api: BrokerServer,
) -> None:
    auth = BrokerAuth(broker_api.base_url)

    auth.issued().headers["Authorization"] = "Bearer something-else"

    assert auth.headers()["Authorization"] == f"Bearer {ACCESS_TOKEN}"


def test_issued_with_a_rejected_fingerprint_reports_it(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a token in the cache that KillB then refused
    broker.script(issued(killb_base_url=SANDBOX_URL), issued("next-token"))
    auth = BrokerAuth(broker_api.base_url)
    auth.issued()

    # When the caller asks for the answer with that token's fingerprint
    answer = auth.issued(rejected=fingerprint(ACCESS_TOKEN))

    # Then the broker was told, and the answer holds the new token
    assert broker.events[1]["queryStringParameters"]["rejected"] == fingerprint(ACCESS_TOKEN)
    assert answer.headers["Authorization"] == "Bearer next-token"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (f"{SANDBOX_URL}/", SANDBOX_URL),
        ("https://killb.app", "https://killb.app"),
        ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
        ("http://localhost:8081/", "http://localhost:8081"),
    ],
)
def test_a_killb_base_url_over_https_or_to_loopback_is_kept_without_a_trailing_slash(
    broker: ScriptedBroker, broker_api: BrokerServer, sent: str, kept: str
) -> None:
    broker.script(issued(killb_base_url=sent))

    assert BrokerAuth(broker_api.base_url).issued().killb_base_url == kept


@pytest.mark.parametrize(
    "sent",
    [
        "ftp://killb.app",
        "killb.app",
        "https://user:pw@killb.app",
        "https://killb.app/?x=1",
        "https://killb.app/#top",
        "https://killb.app\r\nx-api-key: stolen",
        "",
        42,
        ["https://killb.app"],
    ],
    ids=[
        "ftp",
        "no-scheme",
        "user-info",
        "query",
        "fragment",
        "crlf",
        "empty",
        "number",
        "list",
    ],
)
def test_a_killb_base_url_no_caller_should_follow_is_an_error_that_does_not_echo_it(
    broker: ScriptedBroker, broker_api: BrokerServer, sent: object
) -> None:
    # Given a broker whose killbBaseUrl is not one to send KillB headers to
    broker.script(issued(killb_base_url=sent))

    # When the caller asks for headers
    with pytest.raises(BrokerClientError) as raised:
        BrokerAuth(broker_api.base_url).headers()

    # Then the answer is refused as a malformed broker answer, naming the field but not its value
    assert raised.value.status == 200
    assert "killbBaseUrl" in str(raised.value)
    assert str(sent) not in str(raised.value) or sent == ""
    assert ACCESS_TOKEN not in str(raised.value)


def test_a_plain_http_killb_base_url_beyond_loopback_is_not_used_but_the_headers_are(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker naming a KillB only a container reaches, over plain http (a refresher under
    # `sam local` calls http://host.docker.internal:4010)
    broker.script(issued(killb_base_url="http://host.docker.internal:4010"))

    # When the caller asks for the whole answer
    answer = BrokerAuth(broker_api.base_url).issued()

    # Then the headers are good, and no KillB URL is given to send them to
    assert answer.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert answer.killb_base_url is None
