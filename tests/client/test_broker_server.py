"""local/broker_server.py turns HTTP requests into API Gateway REST proxy events and back."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from broker_server import serve_broker

from killb_broker_client import BrokerAuth
from tests.client.scripted_broker import ACCOUNT_ID, CALLER_ARN, issued, json_response


class Recorder:
    """A handler that keeps each event and answers with a set response."""

    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.answer = answer or json_response(200, {"ok": True})
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], _context: Any) -> dict[str, Any]:
        self.events.append(event)
        return self.answer


def test_unsigned_request_reaches_the_handler_without_a_caller_identity() -> None:
    # Given a server that would vouch for a caller of signed requests
    handler = Recorder()
    with serve_broker(handler, caller_arn=CALLER_ARN, account_id=ACCOUNT_ID) as api:
        # When a request comes without a SigV4 signature
        requests.get(f"{api.base_url}/v1/health", timeout=5)

    # Then the event names no caller, only where the request came from
    identity = handler.events[0]["requestContext"]["identity"]
    assert (identity["userArn"], identity["accountId"], identity["caller"]) == (None, None, None)
    assert identity["sourceIp"] == "127.0.0.1"


def test_signed_request_carries_the_configured_caller() -> None:
    handler = Recorder(issued())
    with serve_broker(handler, caller_arn=CALLER_ARN, account_id=ACCOUNT_ID) as api:
        BrokerAuth(api.base_url).headers()

    identity = handler.events[0]["requestContext"]["identity"]
    assert (identity["userArn"], identity["accountId"]) == (CALLER_ARN, ACCOUNT_ID)
    assert identity["accessKey"] == "testing"
    assert identity["caller"].endswith(":i-0abc")


def test_signed_request_without_a_configured_caller_has_no_identity() -> None:
    handler = Recorder(issued())
    with serve_broker(handler, caller_arn=None, account_id=ACCOUNT_ID) as api:
        BrokerAuth(api.base_url).headers()

    assert handler.events[0]["requestContext"]["identity"]["userArn"] is None


def test_event_has_the_rest_proxy_shape() -> None:
    # Given a request with a repeated query parameter and a body
    handler = Recorder()
    with serve_broker(handler, caller_arn=CALLER_ARN, account_id=ACCOUNT_ID) as api:
        # When it is sent
        requests.post(f"{api.base_url}/v1/auth-headers?minTtl=1&minTtl=2", data="{}", timeout=5)

    # Then the event is what API Gateway's REST proxy integration sends
    event = handler.events[0]
    assert (event["httpMethod"], event["path"], event["body"]) == ("POST", "/v1/auth-headers", "{}")
    assert event["queryStringParameters"] == {"minTtl": "2"}
    assert event["multiValueQueryStringParameters"] == {"minTtl": ["1", "2"]}
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["stage"] == "local"
    assert event["requestContext"]["requestId"]
    assert event["headers"]["Content-Length"] == "2"


def test_handler_response_is_written_back_with_all_its_headers() -> None:
    # Given a handler answering in the multi-value form, as Powertools does for REST events
    answer = {
        "statusCode": 405,
        "multiValueHeaders": {"Allow": ["GET"], "Cache-Control": ["no-store"]},
        "headers": {"Content-Type": "application/json", "Allow": "GET"},
        "body": json.dumps({"errorCode": "BROKER.0005"}),
        "isBase64Encoded": False,
    }
    with serve_broker(Recorder(answer), caller_arn=None, account_id=ACCOUNT_ID) as api:
        response = requests.delete(f"{api.base_url}/v1/health", timeout=5)

    assert response.status_code == 405
    assert response.json() == {"errorCode": "BROKER.0005"}
    assert response.headers["Allow"] == "GET"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Type"] == "application/json"


def test_a_failing_handler_is_a_502_as_api_gateway_gives() -> None:
    def broken(_event: dict[str, Any], _context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    with serve_broker(broken, caller_arn=None, account_id=ACCOUNT_ID) as api:
        response = requests.get(f"{api.base_url}/v1/health", timeout=5)

    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}


def test_only_loopback_hosts_are_served() -> None:
    with pytest.raises(ValueError, match="loopback"):
        serve_broker(Recorder(), host="0.0.0.0", caller_arn=None, account_id=ACCOUNT_ID)  # noqa: S104
