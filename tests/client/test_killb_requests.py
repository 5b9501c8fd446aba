"""BrokerAuth on the caller's KillB requests, over real HTTP: where the headers may go, what a
redirect may take along, and how a 401 for the token sent is reported and retried once."""

from __future__ import annotations

import io
import threading
import traceback
from collections.abc import Iterator

import pytest
import requests
from broker_server import BrokerServer

from killb_broker_client import (
    BrokerAuth,
    BrokerClientError,
    BrokerUnavailable,
    InsecureRequest,
    fingerprint,
    get_auth_headers,
)
from tests.client.scripted_broker import (
    ACCESS_TOKEN,
    API_KEY,
    ScriptedBroker,
    issued,
    issued_headers,
    refused,
)
from tests.client.scripted_killb import ScriptedKillB, redirect, serve_killb, token_refused

NEXT_TOKEN = "kb-access-token-next-7d6c5b4a"


@pytest.fixture
def killb() -> Iterator[ScriptedKillB]:
    with serve_killb() as fake:
        yield fake


@pytest.fixture
def elsewhere() -> Iterator[ScriptedKillB]:
    """Whatever a redirect points at: the same host on another port, so another origin."""
    with serve_killb() as fake:
        yield fake


@pytest.fixture
def session(broker_api: BrokerServer) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.auth = BrokerAuth(broker_api.base_url)
        yield session


def reported(broker: ScriptedBroker) -> list[str | None]:
    """The rejected fingerprint each broker request carried (None: no report)."""
    return [(event["queryStringParameters"] or {}).get("rejected") for event in broker.events]


# Where the headers may go


@pytest.mark.parametrize(
    "url",
    [
        "https://killb.app/api/v2/users",
        "http://127.0.0.1:8080/api/v2/users",
        "http://127.10.20.30/api/v2/users",
        "http://localhost:3000/",
        "http://LOCALHOST/",
        "http://[::1]:8080/api/v2/users",
    ],
)
def test_https_and_loopback_requests_carry_the_headers(broker_api: BrokerServer, url: str) -> None:
    # Given a request prepared for a safe destination (prepared only: nothing is sent)
    request = requests.Request("GET", url).prepare()

    # When BrokerAuth signs it
    BrokerAuth(broker_api.base_url)(request)

    # Then it carries the broker's headers
    assert request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.headers["x-api-key"] == API_KEY


@pytest.mark.parametrize(
    "url",
    [
        "http://killb.app/api/v2/users",
        "http://10.0.0.8/api/v2/users",
        "http://127.0.0.1.example.com/",
        "http://localhost.example.com/",
        "http://0.0.0.0:8080/",
        "ftp://127.0.0.1/users",
    ],
)
def test_plain_http_to_another_host_is_refused_before_anything_is_sent(
    broker: ScriptedBroker, broker_api: BrokerServer, url: str
) -> None:
    # Given a request in clear to a host that is not this machine
    request = requests.Request("GET", url).prepare()

    # When BrokerAuth is asked to sign it
    with pytest.raises(InsecureRequest) as raised:
        BrokerAuth(broker_api.base_url)(request)

    # Then it refuses, names the scheme and host, and did not even fetch a token
    assert "https://" in str(raised.value)
    assert "Authorization" not in request.headers
    assert broker.calls == 0


def test_a_refused_request_through_a_session_raises_and_sends_nothing(
    broker: ScriptedBroker, session: requests.Session
) -> None:
    with pytest.raises(InsecureRequest):
        session.get("http://killb.example.com/api/v2/users", timeout=5)

    assert broker.calls == 0


# Redirects


def test_a_redirect_to_another_origin_takes_neither_the_token_nor_the_api_key(
    killb: ScriptedKillB,
    elsewhere: ScriptedKillB,
    session: requests.Session,
) -> None:
    # Given a KillB call answered with a redirect to another origin
    killb.script = [redirect(f"{elsewhere.base_url}/collect")]

    # When the caller's session follows it
    response = session.get(f"{killb.base_url}/api/v2/users", timeout=5)

    # Then KillB got both headers, and the other origin neither
    assert response.status_code == 200
    assert killb.received[0].headers["x-api-key"] == API_KEY
    assert killb.received[0].bearer == ACCESS_TOKEN
    (collected,) = elsewhere.received
    assert collected.path == "/collect"
    assert "authorization" not in collected.headers
    assert "x-api-key" not in collected.headers


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_no_kind_of_redirect_carries_the_api_key_away(
    killb: ScriptedKillB,
    elsewhere: ScriptedKillB,
    session: requests.Session,
    status: int,
) -> None:
    killb.script = [redirect(f"{elsewhere.base_url}/collect", status)]

    session.post(f"{killb.base_url}/api/v2/users", data=b"{}", timeout=5)

    (collected,) = elsewhere.received
    assert "x-api-key" not in collected.headers
    assert "authorization" not in collected.headers


def test_a_redirect_within_the_origin_keeps_the_headers(
    killb: ScriptedKillB, session: requests.Session
) -> None:
    # Given a KillB call redirected to another path of the same origin (relative Location)
    killb.script = [redirect("/api/v2/users?page=2")]

    # When the session follows it
    session.get(f"{killb.base_url}/api/v2/users", timeout=5)

    # Then the second request carries the headers too
    assert [request.headers.get("x-api-key") for request in killb.received] == [API_KEY] * 2
    assert killb.bearers == [ACCESS_TOKEN] * 2


def test_a_401_from_the_other_origin_is_not_retried_nor_reported(
    broker: ScriptedBroker,
    killb: ScriptedKillB,
    elsewhere: ScriptedKillB,
    session: requests.Session,
) -> None:
    # Given a redirect to another origin, which answers 401 (it never saw the token)
    killb.script = [redirect(f"{elsewhere.base_url}/collect")]
    elsewhere.script = [token_refused()]

    # When the session follows the redirect
    response = session.get(f"{killb.base_url}/api/v2/users", timeout=5)

    # Then the 401 comes back as it is: one broker fetch, no report, no retry
    assert response.status_code == 401
    assert len(elsewhere.received) == 1
    assert reported(broker) == [None]


def test_the_retry_after_a_401_loses_its_headers_on_a_redirect_to_another_origin(
    broker: ScriptedBroker,
    killb: ScriptedKillB,
    elsewhere: ScriptedKillB,
    session: requests.Session,
) -> None:
    # Given KillB refusing the first token, then redirecting the retry to another origin
    broker.script(issued(), issued(NEXT_TOKEN))
    killb.script = [token_refused(), redirect(f"{elsewhere.base_url}/collect")]

    # When the session sends the request
    session.get(f"{killb.base_url}/api/v2/users", timeout=5)

    # Then the retry carried the new token to KillB, and the other origin got neither header
    assert killb.bearers == [ACCESS_TOKEN, NEXT_TOKEN]
    assert "authorization" not in elsewhere.received[0].headers
    assert "x-api-key" not in elsewhere.received[0].headers


# A 401 for the token sent


def test_a_401_for_the_token_sent_is_reported_and_retried_with_a_new_token(
    broker: ScriptedBroker,
    killb: ScriptedKillB,
    session: requests.Session,
) -> None:
    # Given KillB refusing the token the broker issued first, and the broker holding another
    broker.script(issued(), issued(NEXT_TOKEN))
    killb.refused_tokens = {ACCESS_TOKEN}

    # When the caller calls KillB
    response = session.get(f"{killb.base_url}/api/v2/users", timeout=5)

    # Then the next fetch reported the refused token, and the retry with the new one got 200
    assert response.status_code == 200
    assert reported(broker) == [None, fingerprint(ACCESS_TOKEN)]
    assert [event["queryStringParameters"]["minTtl"] for event in broker.events] == ["300"] * 2
    assert killb.bearers == [ACCESS_TOKEN, NEXT_TOKEN]
    assert [answer.status_code for answer in response.history] == [401]


def test_the_new_token_serves_the_requests_after_the_retry(
    broker: ScriptedBroker,
    killb: ScriptedKillB,
    session: requests.Session,
) -> None:
    broker.script(issued(), issued(NEXT_TOKEN))
    killb.refused_tokens = {ACCESS_TOKEN}
    session.get(f"{killb.base_url}/api/v2/users", timeout=5)

    session.get(f"{killb.base_url}/api/v2/users", timeout=5)

    assert killb.bearers == [ACCESS_TOKEN, NEXT_TOKEN, NEXT_TOKEN]
    assert broker.calls == 2


def test_a_second_401_is_returned_without_another_retry(
    broker: ScriptedBroker,
    killb: ScriptedKillB,
    session: requests.Session,
) -> None:
    # Given a KillB that refuses every token
    broker.script(issued(), issued(NEXT_TOKEN), issued("kb-access-token-third"))
    killb.refused_tokens = {ACCESS_TOKEN, NEXT_TOKEN, "kb-access-token-third"}

    # When the caller calls KillB
    response = session.get(f"{killb.base_url}/api/v2/users", timeout=5)

    # Then it sent the request twice, not more, and the caller sees the 401
    assert response.status_code == 401
    assert killb.bearers == [ACCESS_TOKEN, NEXT_TOKEN]
    assert broker.calls == 2


def test_a_401_after_the_retry_was_redirected_is_not_retried_again(
    broker: ScriptedBroker, killb: ScriptedKillB, session: requests.Session
) -> None:
    # Given KillB refusing the first token, redirecting the retry within its origin, and
    # refusing the redirected request as well
    broker.script(issued(), issued(NEXT_TOKEN), issued("kb-access-token-third"))
    killb.script = [token_refused(), redirect("/api/v2/users?page=2"), token_refused()]

    # When the caller calls KillB
    response = session.get(f"{killb.base_url}/api/v2/users", timeout=5)

    # Then the one retry was spent: the last 401 comes back, with no third token fetched
    assert response.status_code == 401
    assert killb.bearers == [ACCESS_TOKEN, NEXT_TOKEN, NEXT_TOKEN]
    assert broker.calls == 2


def test_a_late_401_for_a_token_already_replaced_is_retried_without_a_report(
    broker: ScriptedBroker,
    killb: ScriptedKillB,
    session: requests.Session,
) -> None:
    # Given a request prepared with the first token, whose answer arrives after another
    # request already reported that token and got a new one
    broker.script(issued(), issued(NEXT_TOKEN))
    killb.refused_tokens = {ACCESS_TOKEN}
    url = f"{killb.base_url}/api/v2/users"
    late = session.prepare_request(requests.Request("GET", url))
    session.get(url, timeout=5)

    # When the late request is sent and refused
    response = session.send(late, timeout=5)

    # Then it is retried once with the current token, and the broker heard one report only
    assert response.status_code == 200
    assert killb.bearers == [ACCESS_TOKEN, NEXT_TOKEN, ACCESS_TOKEN, NEXT_TOKEN]
    assert reported(broker) == [None, fingerprint(ACCESS_TOKEN)]


def test_threads_refused_at_once_share_one_report(
    broker: ScriptedBroker, session: requests.Session, killb: ScriptedKillB
) -> None:
    # Given five requests prepared with the token KillB now refuses, and a broker that holds
    # its answer to the report while the other refusals come in
    url = f"{killb.base_url}/api/v2/users"
    prepared = [session.prepare_request(requests.Request("GET", url)) for _ in range(5)]
    broker.script(issued(), issued(NEXT_TOKEN))
    killb.refused_tokens = {ACCESS_TOKEN}
    broker.release.clear()
    statuses: list[int] = []

    def send(request: requests.PreparedRequest) -> None:
        with requests.Session() as own:
            statuses.append(own.send(request, timeout=10).status_code)

    # When the five are sent at once
    workers = [threading.Thread(target=send, args=(request,)) for request in prepared]
    for worker in workers:
        worker.start()
    threading.Event().wait(0.3)
    broker.release.set()
    for worker in workers:
        worker.join(timeout=10)

    # Then each got 200 on its retry, and the broker heard of the token once
    assert statuses == [200] * 5
    assert reported(broker) == [None, fingerprint(ACCESS_TOKEN)]
    assert sorted(killb.bearers, key=str) == sorted([ACCESS_TOKEN] * 5 + [NEXT_TOKEN] * 5)


def test_the_retry_sends_the_same_body_again(
    broker: ScriptedBroker,
    killb: ScriptedKillB,
    session: requests.Session,
) -> None:
    broker.script(issued(), issued(NEXT_TOKEN))
    killb.refused_tokens = {ACCESS_TOKEN}

    session.post(f"{killb.base_url}/api/v2/transfers", json={"amount": "10.00"}, timeout=5)

    assert [request.body for request in killb.received] == ['{"amount": "10.00"}'] * 2


def test_a_streamed_body_is_not_sent_twice(
    broker: ScriptedBroker,
    killb: ScriptedKillB,
    session: requests.Session,
) -> None:
    # Given a request whose body is a stream: once read, it cannot be sent again
    broker.script(issued(), issued(NEXT_TOKEN))
    killb.refused_tokens = {ACCESS_TOKEN}

    # When KillB refuses its token
    response = session.post(f"{killb.base_url}/api/v2/transfers", data=io.BytesIO(b"{}"), timeout=5)

    # Then the 401 comes back, and nothing was reported or sent again
    assert response.status_code == 401
    assert len(killb.received) == 1
    assert broker.calls == 1


def test_a_broker_without_another_token_raises_and_the_next_fetch_reports_again(
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    killb: ScriptedKillB,
) -> None:
    # Given a broker that cannot replace the refused token for now, and then can
    broker.script(
        issued(),
        refused(503, "BROKER.0003", "No token available", retry_after="30"),
        issued(NEXT_TOKEN),
    )
    killb.refused_tokens = {ACCESS_TOKEN}
    session = requests.Session()
    session.auth = BrokerAuth(broker_api.base_url, max_retry_after=1)
    url = f"{killb.base_url}/api/v2/users"

    # When the caller calls KillB, then calls again
    with pytest.raises(BrokerUnavailable):
        session.get(url, timeout=5)
    response = session.get(url, timeout=5)

    # Then the first call surfaces the broker's 503, and the second still reports the token
    assert response.status_code == 200
    assert reported(broker) == [None, fingerprint(ACCESS_TOKEN), fingerprint(ACCESS_TOKEN)]
    assert killb.bearers == [ACCESS_TOKEN, NEXT_TOKEN]
    session.close()


def test_get_auth_headers_reports_a_rejected_token_once(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given headers handed out once
    broker.script(issued(), issued(NEXT_TOKEN))
    first = get_auth_headers(broker_api.base_url)

    # When the caller reports their token, then reports it again
    second = get_auth_headers(broker_api.base_url, rejected=fingerprint(ACCESS_TOKEN))
    third = get_auth_headers(broker_api.base_url, rejected=fingerprint(ACCESS_TOKEN))

    # Then the first report fetched another token; the second, for a token already replaced,
    # changed nothing
    assert first["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert second["Authorization"] == third["Authorization"] == f"Bearer {NEXT_TOKEN}"
    assert reported(broker) == [None, fingerprint(ACCESS_TOKEN)]


@pytest.mark.parametrize(
    "rejected", [ACCESS_TOKEN, "ABCDEF012345", "abc", fingerprint(ACCESS_TOKEN) + "0"]
)
def test_a_malformed_rejected_fingerprint_is_refused_without_echoing_it(
    broker: ScriptedBroker, broker_api: BrokerServer, rejected: str
) -> None:
    with pytest.raises(ValueError, match="12 lowercase hex digits") as raised:
        get_auth_headers(broker_api.base_url, rejected=rejected)

    assert rejected not in str(raised.value)
    assert broker.calls == 0


# Headers a request cannot carry


PLANTED = "planted-token-4b9e2c"


@pytest.mark.parametrize(
    ("authorization", "api_key"),
    [
        (f"Bearer {PLANTED}\r\nX-Injected: 1", None),
        (f"Bearer {PLANTED}\n", None),
        (f"Bearer {PLANTED}\x00", None),
        (f"Bearer {PLANTED}é", None),
        (f"Bearer  {PLANTED}", None),
        (f"Bearer {PLANTED} ", None),
        ("Bearer ", None),
        (PLANTED, None),
        (f"Bearer {ACCESS_TOKEN}", f"{PLANTED}\r\n"),
        (f"Bearer {ACCESS_TOKEN}", f"{PLANTED}\x00"),
        (f"Bearer {ACCESS_TOKEN}", ""),
    ],
    ids=[
        "crlf",
        "lf",
        "nul",
        "non-ascii",
        "two-spaces",
        "trailing-space",
        "empty-token",
        "no-bearer",
        "api-key-crlf",
        "api-key-nul",
        "api-key-empty",
    ],
)
def test_headers_a_request_cannot_carry_are_refused_and_never_shown(
    broker: ScriptedBroker,
    killb: ScriptedKillB,
    session: requests.Session,
    authorization: str,
    api_key: str | None,
) -> None:
    # Given a broker whose answer holds a header no request can carry
    headers = {"Authorization": authorization} | ({} if api_key is None else {"x-api-key": api_key})
    broker.script(issued_headers(headers))

    # When the caller calls KillB
    with pytest.raises(BrokerClientError) as raised:
        session.get(f"{killb.base_url}/api/v2/users", timeout=5)

    # Then nothing was sent, and neither the message, the repr nor the traceback (with its
    # chained causes) holds what the broker sent
    assert killb.received == []
    assert raised.value.status == 200
    shown = str(raised.value) + repr(raised.value)
    shown += "".join(traceback.format_exception(raised.value))
    assert PLANTED not in shown
    assert ACCESS_TOKEN not in shown
