"""BrokerAuth against a scripted broker over real HTTP: signing, caching, single-flight, retries,
errors."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
import requests
from botocore.credentials import Credentials
from broker_server import BrokerServer, serve_broker

from killb_broker_client import (
    BrokerAccessDenied,
    BrokerAuth,
    BrokerClientError,
    BrokerRequestInvalid,
    BrokerUnavailable,
    get_auth_headers,
)
from killb_broker_client.auth import fingerprint
from tests.client.scripted_broker import (
    ACCESS_TOKEN,
    ACCOUNT_ID,
    API_KEY,
    CALLER_ARN,
    ScriptedBroker,
    issued,
    json_response,
    refused,
)


def header(event: dict[str, Any], name: str) -> str:
    values = {key.lower(): value for key, value in event["headers"].items()}
    return str(values[name.lower()])


def authorization_fields(authorization: str) -> dict[str, str]:
    """Credential, SignedHeaders and Signature of a SigV4 Authorization header."""
    fields = authorization.removeprefix("AWS4-HMAC-SHA256 ").split(", ")
    return dict(field.split("=", 1) for field in fields)


def test_headers_are_the_ones_the_broker_issued(broker_api: BrokerServer) -> None:
    # Given a broker that issues a token and an API key
    auth = BrokerAuth(broker_api.base_url)

    # When the caller asks for headers
    headers = auth.headers()

    # Then they are the broker's, unchanged
    assert headers == {"Authorization": f"Bearer {ACCESS_TOKEN}", "x-api-key": API_KEY}


def test_no_api_key_header_when_the_broker_sends_none(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given an account without an API key
    broker.script(issued(api_key=None))

    # When the caller asks for headers
    headers = BrokerAuth(broker_api.base_url).headers()

    # Then only Authorization is there
    assert headers == {"Authorization": f"Bearer {ACCESS_TOKEN}"}


def test_broker_call_asks_for_the_callers_min_ttl(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a caller that needs the token for ten minutes
    auth = BrokerAuth(broker_api.base_url, min_ttl=600)

    # When it asks for headers
    auth.headers()

    # Then the broker was asked for exactly that, on its route
    event = broker.events[0]
    assert (event["httpMethod"], event["path"]) == ("GET", "/v1/auth-headers")
    assert event["multiValueQueryStringParameters"] == {"minTtl": ["600"]}


def test_broker_call_is_sigv4_signed_for_execute_api(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given the fake AWS credentials of the test environment and region us-east-1
    # When the caller asks for headers
    BrokerAuth(broker_api.base_url).headers()

    # Then the broker call carries a SigV4 signature scoped to execute-api in that region
    event = broker.events[0]
    authorization = header(event, "Authorization")
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/us-east-1/execute-api/aws4_request" in authorization
    assert header(event, "X-Amz-Date")
    assert header(event, "X-Amz-Security-Token") == "testing"


def test_the_local_api_gateway_accepts_the_clients_signature_for_its_credentials_and_region(
    broker: ScriptedBroker,
) -> None:
    # Given a local API Gateway that checks signatures against explicit credentials in eu-west-1
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", "session-token")
    with serve_broker(
        broker,
        caller_arn=CALLER_ARN,
        account_id=ACCOUNT_ID,
        credentials=credentials.get_frozen_credentials(),
        region="eu-west-1",
    ) as api:
        # When the caller signs with the same credentials for that region
        headers = BrokerAuth(api.base_url, credentials=credentials, region="eu-west-1").headers()

    # Then the signature held and the broker answered
    sent = authorization_fields(header(broker.events[0], "Authorization"))
    assert sent["Credential"].startswith("AKIDEXAMPLE/")
    assert "host" in sent["SignedHeaders"].split(";")
    assert headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert api.refusals == []


def test_a_signature_with_another_secret_is_refused_by_the_local_api_gateway(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a caller holding the right key id but another secret
    auth = BrokerAuth(
        broker_api.base_url, credentials=Credentials("testing", "not-the-secret", "testing")
    )

    # When it asks for headers
    with pytest.raises(BrokerAccessDenied):
        auth.headers()

    # Then the gateway refused it before the broker saw it
    assert broker.events == []
    assert broker_api.refusals == ["the signature does not match the request"]


def test_the_broker_sees_the_signed_call_as_an_iam_caller(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # When the caller asks for headers
    BrokerAuth(broker_api.base_url).headers()

    # Then the local API Gateway passed the caller's identity on to the broker
    identity = broker.events[0]["requestContext"]["identity"]
    assert (identity["userArn"], identity["accountId"]) == (CALLER_ARN, ACCOUNT_ID)


def test_second_call_is_served_from_the_cache(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given headers fetched once, for a token valid for an hour
    auth = BrokerAuth(broker_api.base_url)
    first = auth.headers()

    # When the caller asks again
    second = auth.headers()

    # Then no second broker request was made
    assert second == first
    assert broker.calls == 1


def test_cached_headers_are_used_while_the_token_lasts_min_ttl(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given headers for a token with 400 s left, for a caller that needs 300 s
    broker.script(issued("first-token", expires_in=400), issued("next-token"))
    auth = BrokerAuth(broker_api.base_url, min_ttl=300)
    first = auth.headers()

    # When the caller asks again at once (the token still lasts the 300 s)
    second = auth.headers()

    # Then the cached headers serve it
    assert broker.calls == 1
    assert second == first


def test_headers_whose_token_no_longer_lasts_min_ttl_are_fetched_again(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given headers for a token with 200 s left, for a caller that needs 300 s
    broker.script(issued("short-lived-token", expires_in=200), issued("next-token"))
    auth = BrokerAuth(broker_api.base_url, min_ttl=300)
    first = auth.headers()

    # When the caller asks again
    second = auth.headers()

    # Then the broker was asked again, for the same minTtl, and the newer token is used
    assert broker.calls == 2
    assert [event["queryStringParameters"] for event in broker.events] == [{"minTtl": "300"}] * 2
    assert first["Authorization"] == "Bearer short-lived-token"
    assert second["Authorization"] == "Bearer next-token"


def ask_at_once(
    broker: ScriptedBroker, auth: BrokerAuth, threads: int
) -> tuple[list[dict[str, str]], list[BrokerClientError]]:
    """The headers and errors of `threads` threads asking at once, while the broker holds its
    first answer until the others have piled up behind it."""
    broker.release.clear()
    results: list[dict[str, str]] = []
    errors: list[BrokerClientError] = []
    start = threading.Barrier(threads)

    def ask() -> None:
        start.wait()
        try:
            results.append(auth.headers())
        except BrokerClientError as error:
            errors.append(error)

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    assert broker.first_request.wait(timeout=10)
    # Give the other threads time to pile up behind the first; a broken single-flight would
    # send their requests now, and they would be counted once the broker answers.
    threading.Event().wait(0.3)
    broker.release.set()
    for worker in workers:
        worker.join(timeout=10)
    return results, errors


def test_many_threads_share_one_broker_request(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker that holds its first answer until every thread is asking
    auth = BrokerAuth(broker_api.base_url)

    # When 20 threads ask for headers at once
    results, errors = ask_at_once(broker, auth, 20)

    # Then one broker request served all of them
    assert broker.calls == 1
    assert len(results) == 20
    assert all(result == results[0] for result in results)
    assert errors == []


def test_threads_waiting_on_a_failed_fetch_get_its_error(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker that refuses the caller, slowly
    broker.script(refused(403, "BROKER.0002", "Caller not allowed"))
    auth = BrokerAuth(broker_api.base_url)

    # When five threads ask at once
    results, errors = ask_at_once(broker, auth, 5)

    # Then all of them get the one refusal, from one request
    assert broker.calls == 1
    assert [type(error) for error in errors] == [BrokerAccessDenied] * 5
    assert results == []


def test_503_is_retried_after_retry_after(broker: ScriptedBroker, broker_api: BrokerServer) -> None:
    # Given a broker that has no fresh token for a moment, then has one
    broker.script(refused(503, "BROKER.0003", "No token available", retry_after="0.2"), issued())
    auth = BrokerAuth(broker_api.base_url)

    # When the caller asks for headers
    headers = auth.headers()

    # Then it retried once, no sooner than Retry-After (a lower bound: a slow machine only
    # makes the gap longer), and got the headers
    assert headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert broker.calls == 2
    assert broker.received_at[1] - broker.received_at[0] >= 0.2


def test_503_after_the_last_retry_raises_broker_unavailable(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker that stays without a token
    broker.script(refused(503, "BROKER.0003", "No token available", retry_after="0"))
    auth = BrokerAuth(broker_api.base_url, retries=2)

    # When the caller asks for headers
    with pytest.raises(BrokerUnavailable) as raised:
        auth.headers()

    # Then it tried three times in all and surfaces the broker's errorCode
    assert broker.calls == 3
    assert (raised.value.status, raised.value.error_code) == (503, "BROKER.0003")
    assert raised.value.retry_after == 0


def test_retry_after_longer_than_the_cap_is_not_waited_for(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker that says to come back in 30 s
    broker.script(refused(503, "BROKER.0003", "No token available", retry_after="30"))
    auth = BrokerAuth(broker_api.base_url, max_retry_after=5)

    # When the caller asks for headers
    with pytest.raises(BrokerUnavailable) as raised:
        auth.headers()

    # Then it does not block for 30 s: one request, and the wait is the caller's to decide
    assert broker.calls == 1
    assert raised.value.retry_after == 30


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (refused(400, "BROKER.0001", "Bad minTtl"), (BrokerRequestInvalid, 400, "BROKER.0001")),
        (refused(403, "BROKER.0002", "Not allowed"), (BrokerAccessDenied, 403, "BROKER.0002")),
        (refused(404, "BROKER.0004", "No such route"), (BrokerClientError, 404, "BROKER.0004")),
        (refused(500, "BROKER.0000", "Internal error"), (BrokerClientError, 500, "BROKER.0000")),
        (
            json_response(403, {"message": "Missing Authentication Token"}),
            (BrokerAccessDenied, 403, None),
        ),
    ],
    ids=["400", "403", "404", "500", "gateway-403"],
)
def test_error_answers_raise_typed_errors_with_the_error_code(
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    answer: dict[str, Any],
    expected: tuple[type[BrokerClientError], int, str | None],
) -> None:
    # Given a broker (or API Gateway) that refuses
    broker.script(answer)

    # When the caller asks for headers
    with pytest.raises(BrokerClientError) as raised:
        BrokerAuth(broker_api.base_url).headers()

    # Then the error's type, status and errorCode are the answer's, and it was not retried
    assert (type(raised.value), raised.value.status, raised.value.error_code) == expected
    assert broker.calls == 1


def test_error_message_is_the_brokers(broker: ScriptedBroker, broker_api: BrokerServer) -> None:
    # Given a broker that refuses the caller
    broker.script(refused(403, "BROKER.0002", "Caller not allowed"))

    # When the caller asks for headers
    with pytest.raises(BrokerAccessDenied) as raised:
        BrokerAuth(broker_api.base_url).headers()

    # Then the message says what the broker said, with its code
    assert str(raised.value) == "Caller not allowed (BROKER.0002, HTTP 403)"


def test_a_200_that_is_not_the_documented_json_is_an_error(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker that answers 200 with something else
    broker.script(json_response(200, {"token": ACCESS_TOKEN}))

    # When the caller asks for headers
    with pytest.raises(BrokerClientError) as raised:
        BrokerAuth(broker_api.base_url).headers()

    # Then it is refused, and the message does not echo the body
    assert raised.value.status == 200
    assert ACCESS_TOKEN not in str(raised.value)


def test_unreachable_broker_error_names_the_url_and_the_cause() -> None:
    # Given a broker that has stopped
    with serve_broker(lambda _e, _c: issued(), caller_arn=None, account_id=ACCOUNT_ID) as api:
        url = api.base_url

    # When the caller asks for headers
    with pytest.raises(BrokerClientError) as raised:
        BrokerAuth(url, retries=0).headers()

    # Then the error says which URL could not be reached and why, with no status
    assert str(raised.value) == f"could not reach {url}/v1/auth-headers (connection refused)"
    assert raised.value.status is None


def test_requests_session_auth_adds_the_headers_to_each_request(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a KillB stand-in that records the headers it receives
    seen: list[dict[str, Any]] = []

    def killb(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        seen.append(event["headers"])
        return json_response(200, {"data": []})

    # When a session with BrokerAuth calls it twice
    with (
        serve_broker(killb, caller_arn=None, account_id=ACCOUNT_ID) as killb_api,
        requests.Session() as session,
    ):
        session.auth = BrokerAuth(broker_api.base_url)
        for _ in range(2):
            session.get(f"{killb_api.base_url}/api/v2/users", timeout=5).raise_for_status()

    # Then both calls carried the broker's headers, fetched once
    for headers in seen:
        assert headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
        assert headers["x-api-key"] == API_KEY
    assert broker.calls == 1


def test_session_whose_auth_is_broker_auth_can_also_call_the_broker(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given one session used both for the broker call and, with BrokerAuth, for other calls
    session = requests.Session()
    auth = BrokerAuth(broker_api.base_url, session=session)
    session.auth = auth

    # When headers are fetched
    headers = auth.headers()

    # Then the broker call kept its SigV4 signature (no recursion, no overwritten header)
    assert headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert header(broker.events[0], "Authorization").startswith("AWS4-HMAC-SHA256 ")
    session.close()


def test_get_auth_headers_reuses_one_cache_per_url_and_min_ttl(
    broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given code that does not use requests
    # When it asks twice for the same URL and minTtl, then once for another minTtl
    first = get_auth_headers(broker_api.base_url, min_ttl=300)
    second = get_auth_headers(broker_api.base_url + "/", min_ttl=300)
    get_auth_headers(broker_api.base_url, min_ttl=900)

    # Then the first two share one broker request and the third makes its own
    assert first == second == {"Authorization": f"Bearer {ACCESS_TOKEN}", "x-api-key": API_KEY}
    assert [event["queryStringParameters"]["minTtl"] for event in broker.events] == ["300", "900"]


def test_no_token_or_api_key_in_logs_repr_or_errors(
    broker: ScriptedBroker, broker_api: BrokerServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a fetch, a retry and a refusal, all logged at DEBUG
    caplog.set_level(logging.DEBUG)
    broker.script(
        refused(503, "BROKER.0003", "No token available", retry_after="0"),
        issued(expires_in=300),  # lasts minTtl exactly: not kept for a second use
        refused(403, "BROKER.0002", "Caller not allowed"),
    )
    auth = BrokerAuth(broker_api.base_url, min_ttl=300)
    auth.headers()
    with pytest.raises(BrokerAccessDenied) as raised:
        auth.headers()

    # Then neither the token nor the API key shows anywhere, but the fingerprint does
    shown = caplog.text + repr(auth) + str(raised.value) + repr(raised.value)
    shown += "".join(str(record.__dict__) for record in caplog.records)
    assert ACCESS_TOKEN not in shown
    assert API_KEY not in shown
    assert fingerprint(ACCESS_TOKEN) in shown


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/prod", "eu-west-1"),
        ("https://a1b2c3d4e5.execute-api.us-gov-west-1.amazonaws.com/prod/", "us-gov-west-1"),
        ("https://a1b2c3d4e5.execute-api.cn-north-1.amazonaws.com.cn/prod", "cn-north-1"),
    ],
)
def test_region_is_read_from_the_api_url(url: str, region: str) -> None:
    # Given an API Gateway default URL
    # When BrokerAuth is set up without a region
    auth = BrokerAuth(url)

    # Then it signs for the URL's region
    assert auth.region == region


def test_region_of_a_loopback_url_comes_from_aws_region(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a local demo URL and AWS_REGION set
    monkeypatch.setenv("AWS_REGION", "sa-east-1")

    # When BrokerAuth is set up without a region
    auth = BrokerAuth("http://127.0.0.1:8080")

    # Then it signs for AWS_REGION
    assert auth.region == "sa-east-1"


def test_explicit_region_wins_over_the_url() -> None:
    auth = BrokerAuth(
        "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/prod", region="us-west-2"
    )

    assert auth.region == "us-west-2"


@pytest.mark.parametrize(
    "url",
    [
        "http://broker.example.com/prod",
        "ftp://127.0.0.1/prod",
        "https://broker.example.com/prod?stage=x",
        "/prod/v1/auth-headers",
    ],
)
def test_insecure_or_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="broker URL"):
        BrokerAuth(url, region="us-east-1")


@pytest.mark.parametrize("min_ttl", [-1, 1801])
def test_min_ttl_outside_the_brokers_range_is_refused(min_ttl: int) -> None:
    with pytest.raises(ValueError, match="min_ttl"):
        BrokerAuth("http://127.0.0.1:8080", min_ttl=min_ttl)
