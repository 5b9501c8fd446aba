"""Fixtures of the client tests: a scripted broker served over real HTTP on loopback by
local/broker_server.py, as API Gateway would serve it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from broker_server import BrokerServer, serve_broker

from tests.client.scripted_broker import ACCOUNT_ID, CALLER_ARN, ScriptedBroker


@pytest.fixture
def broker() -> ScriptedBroker:
    return ScriptedBroker()


@pytest.fixture
def broker_api(broker: ScriptedBroker) -> Iterator[BrokerServer]:
    with serve_broker(broker, caller_arn=CALLER_ARN, account_id=ACCOUNT_ID) as api:
        yield api
