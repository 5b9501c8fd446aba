"""The broker's invoke of the refresher over real HTTP: a Lambda endpoint on loopback (named by
AWS_ENDPOINT_URL_LAMBDA, as boto3 reads it) records each Invoke request as it arrives, signed.
A refresher named by the ARN of another region is invoked in that region."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest

from killb_broker.config import BrokerConfig
from killb_broker.refresher_invoke import Refresher

PRIMARY_REFRESHER = "arn:aws:lambda:eu-west-1:123456789012:function:killb-broker-refresher"


@dataclass
class Invoke:
    path: str
    authorization: str
    payload: object


@dataclass
class LambdaEndpoint:
    """A Lambda Invoke API on loopback: answers every invoke with a refresher's summary."""

    url: str
    invokes: list[Invoke] = field(default_factory=list)


@pytest.fixture
def lambda_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaEndpoint]:
    invokes: list[Invoke] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            invokes.append(
                Invoke(unquote(self.path), self.headers.get("Authorization", ""), json.loads(body))
            )
            answer = json.dumps({"action": "refreshed", "expiresAt": None, "reason": "test"})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", url)
    yield LambdaEndpoint(url, invokes)
    server.shutdown()
    server.server_close()


def refresher_of(function: str) -> Refresher:
    """The refresher as the broker's cold start builds it from REFRESHER_FUNCTION_NAME."""
    config = BrokerConfig.from_env(
        {"ACCESS_TOKEN_SECRET_ID": "killb/access-token", "REFRESHER_FUNCTION_NAME": function}
    )
    assert config.refresher_function_name is not None
    return Refresher(None, config.refresher_function_name, region=config.refresher_region)


def test_a_refresher_named_by_another_regions_arn_is_invoked_in_that_region(
    lambda_endpoint: LambdaEndpoint,
) -> None:
    # Given a replica stack's broker in us-east-1, whose refresher is the primary's, by ARN
    refresher = refresher_of(PRIMARY_REFRESHER)
    # When it forces a refresh
    refresher.force_refresh()
    # Then the invoke names that function and is signed for eu-west-1's Lambda
    (invoke,) = lambda_endpoint.invokes
    assert invoke.path == f"/2015-03-31/functions/{PRIMARY_REFRESHER}/invocations"
    assert "/eu-west-1/lambda/aws4_request" in invoke.authorization
    assert invoke.payload == {"force": True}


def test_a_refresher_named_by_name_is_invoked_in_the_brokers_own_region(
    lambda_endpoint: LambdaEndpoint,
) -> None:
    refresher = refresher_of("killb-broker-refresher")
    refresher.force_refresh("0123456789ab")
    (invoke,) = lambda_endpoint.invokes
    assert invoke.path == "/2015-03-31/functions/killb-broker-refresher/invocations"
    assert "/us-east-1/lambda/aws4_request" in invoke.authorization
    assert invoke.payload == {"force": True, "rejected": "0123456789ab"}
