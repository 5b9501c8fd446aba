"""Fixtures of the client tests: scripted brokers (a first, and a second for several-broker
tests) served over real HTTP on loopback by local/broker_server.py, as API Gateway would serve
them: every request must be SigV4-signed with the tests' AWS credentials (tests/conftest.py sets
them, a session token included)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.credentials import ReadOnlyCredentials
from broker_server import BrokerServer, serve_broker

from tests.client.scripted_broker import (
    ACCOUNT_ID,
    CALLER_ARN,
    SECOND_TOKEN,
    ScriptedBroker,
    issued,
)

# The credentials tests/conftest.py puts in the environment: what callers here sign with, and so
# what the local API Gateway checks signatures against. Fixed here, so a test that takes the
# caller's credentials away (to see the client's error) still has a broker to not reach.
CALLER_CREDENTIALS = ReadOnlyCredentials("testing", "testing", "testing")


def serve_scripted(broker: ScriptedBroker, region: str = "us-east-1") -> BrokerServer:
    """A scripted broker behind a local API Gateway of `region` that checks SigV4 as API
    Gateway does."""
    return serve_broker(
        broker,
        caller_arn=CALLER_ARN,
        account_id=ACCOUNT_ID,
        credentials=CALLER_CREDENTIALS,
        region=region,
    )


@pytest.fixture
def broker() -> ScriptedBroker:
    return ScriptedBroker()


@pytest.fixture
def broker_api(broker: ScriptedBroker) -> Iterator[BrokerServer]:
    with serve_scripted(broker) as api:
        yield api


@pytest.fixture
def second() -> ScriptedBroker:
    """A second broker (another region), whose token is SECOND_TOKEN."""
    broker = ScriptedBroker()
    broker.script(issued(SECOND_TOKEN))
    return broker


@pytest.fixture
def second_api(second: ScriptedBroker) -> Iterator[BrokerServer]:
    with serve_scripted(second) as api:
        yield api
