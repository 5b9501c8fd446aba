"""Both functions in SAM's own Lambda container, driven by SAM CLI as a user drives it, against a
local Secrets Manager and the KillB sandbox (local/sam-env.json).

One story in order: the refresher's invokes build the session the broker's invokes then read, as
they would on a fresh stack (pytest runs a module's tests top to bottom).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import requests

from killb_broker_client import BrokerAuth
from tests.samlocal.conftest import REGION, ROOT, LocalAws

# Every file in events/, and the function this module invokes it with.
INVOKED_EVENTS = {
    "refresher-scheduled.json": "RefresherFunction",
    "refresher-force.json": "RefresherFunction",
    "refresher-rejected.json": "RefresherFunction",
    "refresher-revoke.json": "RefresherFunction",
    "broker-auth-headers.json": "BrokerFunction",
    "broker-auth-headers-min-ttl.json": "BrokerFunction",
    "broker-auth-headers-rejected.json": "BrokerFunction",
    "broker-http-api-v2.json": "BrokerFunction",
    "broker-health.json": "BrokerFunction",
    "broker-no-identity.json": "BrokerFunction",
}


def test_every_event_file_is_invoked_here() -> None:
    assert sorted(path.name for path in (ROOT / "events").glob("*.json")) == sorted(INVOKED_EVENTS)


def test_a_scheduled_invoke_on_a_fresh_stack_logs_in(sam_invoke: Any, local_aws: LocalAws) -> None:
    # Given a stack whose session secret holds no session (the fixture's placeholders)
    # When SAM invokes the refresher with the scheduled event
    run = sam_invoke("RefresherFunction", "refresher-scheduled.json")

    # Then it logged in to the sandbox and published the token
    assert run.answer.get("action") == "logged_in", run.answer
    assert run.answer["expiresAt"] == local_aws.stored("ACCESS_TOKEN_SECRET_ID")["expiresAt"]


def test_a_second_scheduled_invoke_is_a_noop(sam_invoke: Any, local_aws: LocalAws) -> None:
    # Given the session the previous invoke stored
    before = local_aws.stored("ACCESS_TOKEN_SECRET_ID")

    # When the scheduled event comes again, as a duplicate delivery would
    run = sam_invoke("RefresherFunction", "refresher-scheduled.json")

    # Then the token is fresh: nothing to do, nothing written
    assert run.answer.get("action") == "noop", run.answer
    assert local_aws.stored("ACCESS_TOKEN_SECRET_ID") == before


def test_a_forced_invoke_refreshes(sam_invoke: Any, local_aws: LocalAws) -> None:
    before = local_aws.stored("ACCESS_TOKEN_SECRET_ID")["accessToken"]

    run = sam_invoke("RefresherFunction", "refresher-force.json")

    assert run.answer.get("action") == "refreshed", run.answer
    assert local_aws.stored("ACCESS_TOKEN_SECRET_ID")["accessToken"] != before


def test_a_rejected_report_for_another_token_is_a_noop(
    sam_invoke: Any, local_aws: LocalAws
) -> None:
    # Given a stored token whose fingerprint is not the one events/refresher-rejected.json names
    before = local_aws.stored("ACCESS_TOKEN_SECRET_ID")

    run = sam_invoke("RefresherFunction", "refresher-rejected.json")

    # Then somebody already replaced that token: nothing to do
    assert run.answer.get("action") == "noop", run.answer
    assert local_aws.stored("ACCESS_TOKEN_SECRET_ID") == before


def test_a_revoke_logs_the_session_out_and_logs_in_afresh(
    sam_invoke: Any, local_aws: LocalAws
) -> None:
    before = local_aws.stored("ACCESS_TOKEN_SECRET_ID")["accessToken"]

    run = sam_invoke("RefresherFunction", "refresher-revoke.json")

    assert run.answer.get("action") == "logged_in", run.answer
    assert local_aws.stored("ACCESS_TOKEN_SECRET_ID")["accessToken"] != before


def test_the_broker_invoked_with_an_iam_caller_hands_out_the_stored_token(
    sam_invoke: Any, local_aws: LocalAws
) -> None:
    stored = local_aws.stored("ACCESS_TOKEN_SECRET_ID")

    run = sam_invoke("BrokerFunction", "broker-auth-headers.json")

    assert run.answer["statusCode"] == 200, run.answer
    assert run.body["headers"] == {
        "Authorization": f"Bearer {stored['accessToken']}",
        "x-api-key": stored["apiKey"],
    }


def test_the_broker_invoked_with_a_min_ttl_hands_out_the_stored_token(
    sam_invoke: Any, local_aws: LocalAws
) -> None:
    stored = local_aws.stored("ACCESS_TOKEN_SECRET_ID")

    run = sam_invoke("BrokerFunction", "broker-auth-headers-min-ttl.json")

    assert run.answer["statusCode"] == 200, run.answer
    assert run.body["headers"]["Authorization"] == f"Bearer {stored['accessToken']}"


def test_a_rejected_report_for_another_token_still_gets_the_stored_token(
    sam_invoke: Any, local_aws: LocalAws
) -> None:
    # Given a stored token whose fingerprint is not the one the event reports as rejected
    stored = local_aws.stored("ACCESS_TOKEN_SECRET_ID")

    run = sam_invoke("BrokerFunction", "broker-auth-headers-rejected.json")

    # Then the report changes nothing: the token in hand is handed out
    assert run.answer["statusCode"] == 200, run.answer
    assert run.body["headers"]["Authorization"] == f"Bearer {stored['accessToken']}"


def test_an_http_api_v2_event_gets_a_400_in_the_error_shape(sam_invoke: Any) -> None:
    run = sam_invoke("BrokerFunction", "broker-http-api-v2.json")

    assert run.answer["statusCode"] == 400, run.answer
    assert run.body["errorCode"] == "BROKER.0001"


def test_the_broker_health_invoke_says_ok(sam_invoke: Any) -> None:
    run = sam_invoke("BrokerFunction", "broker-health.json")

    assert run.answer["statusCode"] == 200, run.answer
    assert run.body["status"] == "ok"


def test_the_broker_invoked_without_identity_refuses_with_403(sam_invoke: Any) -> None:
    # Given no LOCAL_CALLER_ARN in local/sam-env.json, and an event with no IAM caller
    run = sam_invoke("BrokerFunction", "broker-no-identity.json")

    # Then the broker refuses, as it does behind API Gateway
    assert run.answer["statusCode"] == 403, run.answer
    assert run.body["errorCode"] == "BROKER.0002"


def test_start_api_serves_the_cli_the_stored_token_for_the_local_caller(
    sam_api: str, local_aws: LocalAws
) -> None:
    # Given `sam local start-api` with LOCAL_CALLER_ARN set (SAM cannot emulate AWS_IAM)
    stored = local_aws.stored("ACCESS_TOKEN_SECRET_ID")

    # When the caller's command line asks it for headers
    done = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "killb_broker_client", "headers", "--api-url", sam_api,
         "--region", REGION],
        cwd=ROOT,
        env=local_aws.sam_environment(PYTHONPATH=str(ROOT / "clients" / "python")),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip

    # Then it prints the stored token's headers
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["Authorization"] == f"Bearer {stored['accessToken']}"


def test_start_api_lets_broker_auth_call_killb(sam_api: str, local_aws: LocalAws) -> None:
    # Given BrokerAuth pointed at `sam local start-api`
    with requests.Session() as session:
        session.auth = BrokerAuth(sam_api, region=REGION)

        # When it calls KillB's user list with the broker's headers
        answer = session.get(f"{local_aws.killb_url}/api/v2/users", timeout=120)

    # Then KillB accepts them
    assert answer.status_code == 200, answer.text


def test_start_api_answers_an_unsigned_request_for_the_local_caller(
    sam_api: str, local_aws: LocalAws
) -> None:
    # Given `sam local start-api` with LOCAL_CALLER_ARN set; When curl asks it, unsigned
    answer = requests.get(f"{sam_api}/v1/auth-headers", timeout=120)

    # Then the broker answers for the local caller with the stored token
    assert answer.status_code == 200, answer.text
    token = local_aws.stored("ACCESS_TOKEN_SECRET_ID")["accessToken"]
    assert answer.json()["headers"]["Authorization"] == f"Bearer {token}"
