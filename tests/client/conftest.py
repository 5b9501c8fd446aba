"""Fixtures of the client tests: a scripted broker served over real HTTP on loopback by
local/broker_server.py, as API Gateway would serve it: every request must be SigV4-signed with the
tests' AWS credentials (tests/conftest.py sets them, a session token included)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from broker_server import BrokerServer, environment_credentials, serve_broker

from tests.client.scripted_broker import ACCOUNT_ID, CALLER_ARN, ScriptedBroker


@pytest.fixture
def broker() -> ScriptedBroker:
    return ScriptedBroker()


@pytest.fixture
def broker_api(broker: ScriptedBroker) -> Iterator[BrokerServer]:
    credentials = environment_credentials()
    with serve_broker(
        broker, caller_arn=CALLER_ARN, account_id=ACCOUNT_ID, credentials=credentials
    ) as api:
        yield api
