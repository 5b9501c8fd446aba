"""The region to sign for, in each API Gateway host form, and the API id a VPC endpoint host needs
(docs/spec.md, "The Python caller client")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.credentials import Credentials
from botocore.session import Session as BotocoreSession
from broker_server import BrokerServer, serve_broker

from killb_broker_client import BrokerAuth, BrokerClientError
from killb_broker_client.cli import main
from killb_broker_client.signing import API_ID_HEADER, broker_endpoint, region_in_host
from tests.client.loopback_routes import routed_session
from tests.client.scripted_broker import ACCOUNT_ID, CALLER_ARN, ScriptedBroker
from tests.client.test_broker_auth import authorization_fields, header

API_ID = "a1b2c3d4e5"
VPCE_ID = "vpce-0123456789abcdef0"
DEFAULT_URL = f"https://{API_ID}.execute-api.eu-west-1.amazonaws.com/prod"
ALIAS_URL = f"https://{API_ID}-{VPCE_ID}.execute-api.eu-west-1.amazonaws.com/prod"
VPCE_HOST = f"{VPCE_ID}-x1y2z3w4.execute-api.eu-west-1.vpce.amazonaws.com"
VPCE_URL = f"https://{VPCE_HOST}/prod"


@pytest.mark.parametrize(
    ("host", "region"),
    [
        (f"{API_ID}.execute-api.eu-west-1.amazonaws.com", "eu-west-1"),
        (f"{API_ID}.execute-api.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
        (f"{API_ID}.execute-api.cn-north-1.amazonaws.com.cn", "cn-north-1"),
        (f"{API_ID}-{VPCE_ID}.execute-api.ap-southeast-2.amazonaws.com", "ap-southeast-2"),
        (f"{API_ID}-{VPCE_ID}.execute-api.cn-northwest-1.amazonaws.com.cn", "cn-northwest-1"),
        (f"{VPCE_ID}-x1y2z3w4.execute-api.sa-east-1.vpce.amazonaws.com", "sa-east-1"),
        (f"{VPCE_ID}-x1y2z3w4-sa-east-1a.execute-api.sa-east-1.vpce.amazonaws.com", "sa-east-1"),
        (f"{VPCE_ID}-x1y2z3w4.execute-api.cn-north-1.vpce.amazonaws.com.cn", "cn-north-1"),
        ("vpce-1a2b3c4d-abcdefgh.execute-api.us-east-2.vpce.amazonaws.com", "us-east-2"),
    ],
    ids=[
        "default",
        "default-govcloud",
        "default-china",
        "endpoint-alias",
        "endpoint-alias-china",
        "vpce",
        "vpce-zonal",
        "vpce-china",
        "vpce-short-id",
    ],
)
def test_each_api_gateway_host_form_names_its_region(host: str, region: str) -> None:
    assert region_in_host(host) == region


@pytest.mark.parametrize(
    "host",
    [
        "broker.example.com",
        "127.0.0.1",
        f"{API_ID}.execute-api.eu-west-1.example.com",
        f"{API_ID}.lambda-url.eu-west-1.on.aws",
    ],
)
def test_a_host_of_no_api_gateway_form_names_no_region(host: str) -> None:
    assert region_in_host(host) is None


def test_an_endpoint_alias_signs_for_its_own_region_not_aws_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given AWS_REGION us-east-1, and a private API's endpoint alias in eu-west-1
    monkeypatch.setenv("AWS_REGION", "us-east-1")

    # When BrokerAuth is set up for it without a region
    auth = BrokerAuth(ALIAS_URL)

    # Then it signs for eu-west-1, and sends no API id header (the alias names the API)
    assert auth.region == "eu-west-1"
    assert auth.brokers.endpoints[0].routing_headers == {}


def test_a_vpce_host_without_the_api_id_knows_its_region_but_refuses_each_call(
    broker_api: BrokerServer,
) -> None:
    # Given a VPC endpoint host and no API id (routed to a local broker, which would answer)
    with routed_session({VPCE_HOST: broker_api.base_url}) as session:
        auth = BrokerAuth(VPCE_URL, session=session)

        # When the caller asks for headers
        with pytest.raises(BrokerClientError) as raised:
            auth.headers()

    # Then the region was found, but nothing was sent: the error says to pass the API id
    assert auth.region == "eu-west-1"
    assert "api_id" in str(raised.value)
    assert raised.value.url == VPCE_URL


def test_the_cli_names_the_api_id_flag_for_a_vpce_host(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["headers", "--url", VPCE_URL])

    assert status == 1
    assert "--api-id" in json.loads(capsys.readouterr().err)["message"]


@pytest.mark.parametrize("api_id", ["A1B2C3D4E5", "a1b2\r\nx: y", ""])
def test_a_malformed_api_id_is_refused(api_id: str) -> None:
    with pytest.raises(ValueError, match="api_id"):
        BrokerAuth(VPCE_URL, api_id=api_id)


def test_a_vpce_host_gets_the_api_id_header_and_its_region() -> None:
    endpoint = broker_endpoint(VPCE_URL, api_id=API_ID, botocore_session=BotocoreSession())

    assert endpoint.region == "eu-west-1"
    assert endpoint.routing_headers == {API_ID_HEADER: API_ID}


@pytest.mark.parametrize("url", [DEFAULT_URL, ALIAS_URL])
def test_the_api_id_is_sent_to_a_vpce_host_only(url: str) -> None:
    endpoint = broker_endpoint(url, api_id=API_ID, botocore_session=BotocoreSession())

    assert endpoint.routing_headers == {}


@pytest.mark.parametrize("url", [DEFAULT_URL, ALIAS_URL, VPCE_URL])
def test_an_explicit_region_wins_over_every_host_form(url: str) -> None:
    auth = BrokerAuth(url, region="us-west-2", api_id=API_ID)

    assert auth.region == "us-west-2"


VPCE_CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", "session-token")


@pytest.fixture
def vpce_api(broker: ScriptedBroker) -> Iterator[BrokerServer]:
    """The broker behind a local API Gateway of eu-west-1 that checks SigV4 as API Gateway does,
    against the credentials the caller signs with."""
    with serve_broker(
        broker,
        caller_arn=CALLER_ARN,
        account_id=ACCOUNT_ID,
        credentials=VPCE_CREDENTIALS.get_frozen_credentials(),
        region="eu-west-1",
    ) as api:
        yield api


def vpce_call(broker: ScriptedBroker, broker_api: BrokerServer) -> dict[str, Any]:
    """The event the broker received for a header fetch through the VPC endpoint's host."""
    with routed_session({VPCE_HOST: broker_api.base_url}) as session:
        BrokerAuth(VPCE_URL, api_id=API_ID, session=session, credentials=VPCE_CREDENTIALS).headers()
    return broker.events[0]


def test_a_call_through_a_vpce_host_names_the_api_and_signs_that_header(
    broker: ScriptedBroker, vpce_api: BrokerServer
) -> None:
    # Given a broker reached through a VPC endpoint's own host name
    # When the caller asks for headers
    event = vpce_call(broker, vpce_api)

    # Then the call names the API, is sent to that host, and signs both, for the host's region
    assert header(event, API_ID_HEADER) == API_ID
    assert header(event, "Host") == VPCE_HOST
    fields = authorization_fields(header(event, "Authorization"))
    assert {"host", API_ID_HEADER} <= set(fields["SignedHeaders"].split(";"))
    assert "/eu-west-1/execute-api/aws4_request" in fields["Credential"]


def test_a_call_through_a_vpce_host_verifies_as_api_gateway_checks_it(
    broker: ScriptedBroker, vpce_api: BrokerServer
) -> None:
    # Given a local API Gateway of eu-west-1 that checks every signature as API Gateway does
    # When the caller asks for headers through the VPC endpoint's host
    vpce_call(broker, vpce_api)

    # Then the gateway verified the signature and let the request through
    assert vpce_api.refusals == []
    assert broker.calls == 1
