"""Fixtures of the client tests: scripted brokers (a first, and a second for several-broker
tests) served over real HTTP on loopback by local/broker_server.py, as API Gateway would serve
them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from broker_server import BrokerServer, serve_broker

from tests.client.scripted_broker import (
    ACCOUNT_ID,
    CALLER_ARN,
    SECOND_TOKEN,
    ScriptedBroker,
    issued,
)


@pytest.fixture
def broker() -> ScriptedBroker:
    return ScriptedBroker()


@pytest.fixture
def broker_api(broker: ScriptedBroker) -> Iterator[BrokerServer]:
    with serve_broker(broker, caller_arn=CALLER_ARN, account_id=ACCOUNT_ID) as api:
        yield api


@pytest.fixture
def second() -> ScriptedBroker:
    """A second broker (another region), whose token is SECOND_TOKEN."""
    broker = ScriptedBroker()
    broker.script(issued(SECOND_TOKEN))
    return broker


@pytest.fixture
def second_api(second: ScriptedBroker) -> Iterator[BrokerServer]:
    with serve_broker(second, caller_arn=CALLER_ARN, account_id=ACCOUNT_ID) as api:
        yield api
