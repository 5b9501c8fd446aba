"""local/lambda_endpoint.py: Lambda's Invoke API on loopback, as boto3 reaches it through
AWS_ENDPOINT_URL_LAMBDA, with the refresher's reserved concurrency of 1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from lambda_endpoint import LambdaEndpoint

NAME = "killb-test-refresher"


class Gate:
    """A handler that holds its run until released, so that a second invoke overlaps it."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        self.started.set()
        self.release.wait(10)
        return {"action": "noop", "function": context.function_name, "event": event}


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def endpoint(gate: Gate, monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaEndpoint]:
    def broken(_event: Any, _context: Any) -> None:
        raise RuntimeError("refresh token abc in the message")

    with LambdaEndpoint({NAME: gate, "broken": broken}) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint.base_url)
        yield endpoint


def lambda_client() -> Any:
    # As the broker builds it: no retries, so a throttled invoke is seen as such.
    return boto3.client("lambda", config=Config(retries={"total_max_attempts": 1}))


def test_an_invoke_runs_the_handler_by_name_or_arn(gate: Gate, endpoint: LambdaEndpoint) -> None:
    gate.release.set()
    arn = f"arn:aws:lambda:eu-west-1:123456789012:function:{NAME}"

    answer = lambda_client().invoke(FunctionName=arn, Payload=json.dumps({"force": True}))

    assert json.loads(answer["Payload"].read()) == {
        "action": "noop",
        "function": NAME,
        "event": {"force": True},
    }
    assert endpoint.payloads(NAME) == [{"force": True}]


def test_a_second_invoke_while_one_runs_is_throttled(gate: Gate, endpoint: LambdaEndpoint) -> None:
    # Given a run under way
    first = threading.Thread(
        target=lambda: lambda_client().invoke(FunctionName=NAME, Payload=b"{}")
    )
    first.start()
    assert gate.started.wait(10)

    # When another invoke comes
    with pytest.raises(ClientError) as raised:
        lambda_client().invoke(FunctionName=NAME, Payload=b'{"force": true}')
    gate.release.set()
    first.join(10)

    # Then it is throttled as Lambda throttles a function at its reserved concurrency
    error = raised.value.response
    assert error["Error"]["Code"] == "TooManyRequestsException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert endpoint.payloads(NAME) == [{}]


def test_a_handler_that_raises_is_a_function_error_without_its_message(
    endpoint: LambdaEndpoint,
) -> None:
    answer = lambda_client().invoke(FunctionName="broken", Payload=b"{}")

    assert answer["FunctionError"] == "Unhandled"
    body = answer["Payload"].read().decode()
    assert json.loads(body)["errorType"] == "RuntimeError"
    assert "abc" not in body


def test_an_unknown_function_is_resource_not_found(endpoint: LambdaEndpoint) -> None:
    with pytest.raises(ClientError) as raised:
        lambda_client().invoke(FunctionName="nobody", Payload=b"{}")

    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
