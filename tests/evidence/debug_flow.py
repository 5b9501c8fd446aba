"""A whole login / forced refresh / broker flow in a fresh interpreter set up as Lambda sets one
up at DEBUG: the root logger at DEBUG with a handler to stdout before anything is imported, the
log level variables in the environment (set by tests/evidence/test_debug_logging.py). Secrets
Manager is moto in-process, KillB the local sandbox over HTTP.

Run as `python -m tests.evidence.debug_flow RESULT.json [--libraries-loud]`: everything the flow
logs goes to stdout, and RESULT.json gets the secrets it used (for the leak check) and the
broker's status. --libraries-loud puts the library loggers back to NOTSET after the handlers are
loaded, to show what they would write without observability's cap.
"""

from __future__ import annotations

import logging
import sys

# What Lambda's runtime does before it imports the handler when ApplicationLogLevel is DEBUG.
logging.getLogger().setLevel(logging.DEBUG)
logging.getLogger().addHandler(logging.StreamHandler(sys.stdout))

import json  # noqa: E402 - after the root logger, as in Lambda
import os  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import boto3  # noqa: E402
from lambda_runtime import LambdaContext, load_function  # noqa: E402
from moto import mock_aws  # noqa: E402

from killb_sandbox.server import Account, KillBSandbox, every_token_issued  # noqa: E402

EMAIL = "debug-flow@example.test"
PASSWORD = "pw-DebugFlow-3e8b71"
API_KEY = "ak-DebugFlow-90c4d2"
# What a signed API Gateway request carries: the caller's signature and session token.
SIGNATURE = "5d1f" * 16
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEDebugFlowSessionToken0123456789abcdef"
EVENT_MARKER = "debug-flow-event-4b7e0a"
SECRET_IDS = {
    "CREDENTIALS_SECRET_ID": "debug-flow/credentials",
    "SESSION_SECRET_ID": "debug-flow/session",
    "ACCESS_TOKEN_SECRET_ID": "debug-flow/access-token",
}
EVENTS = Path(__file__).resolve().parent.parent.parent / "events"
LIBRARIES = ("botocore", "boto3", "s3transfer", "urllib3", "requests", "aws_lambda_powertools")


def broker_event() -> dict[str, Any]:
    """The sample /v1/auth-headers event, as signed by a caller with temporary credentials."""
    event: dict[str, Any] = json.loads((EVENTS / "broker-auth-headers.json").read_text())
    signed = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEACCESSKEY/20261128/us-east-1/"
        f"execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature={SIGNATURE}",
        "X-Amz-Security-Token": SESSION_TOKEN,
    }
    event["headers"] |= signed
    event["multiValueHeaders"] |= {name: [value] for name, value in signed.items()}
    return event


def main(result_path: str, libraries_loud: bool) -> None:
    account = Account(password=PASSWORD, api_key=API_KEY)
    with KillBSandbox({EMAIL: account}) as sandbox, mock_aws():
        os.environ |= SECRET_IDS | {"KILLB_BASE_URL": sandbox.base_url}
        # The cold starts first: in Lambda nothing of this process writes a secret before them.
        refresher = load_function("refresher")
        broker = load_function("broker")
        if libraries_loud:
            for name in LIBRARIES:
                logging.getLogger(name).setLevel(logging.NOTSET)

        # The operator's part: the stack's secrets, the credentials put.
        secrets = boto3.client("secretsmanager")
        credentials = {"email": EMAIL, "password": PASSWORD, "apiKey": API_KEY}
        secrets.create_secret(
            Name=SECRET_IDS["CREDENTIALS_SECRET_ID"], SecretString=json.dumps(credentials)
        )
        for name in ("SESSION_SECRET_ID", "ACCESS_TOKEN_SECRET_ID"):
            secrets.create_secret(Name=SECRET_IDS[name], SecretString="{}")
        context = LambdaContext(function_name="debug-flow")
        scheduled = json.loads((EVENTS / "refresher-scheduled.json").read_text())
        login = refresher.lambda_handler({**scheduled, "executionId": EVENT_MARKER}, context)
        forced = refresher.lambda_handler({"force": True}, context)
        response = broker.lambda_handler(broker_event(), context)

    result = {
        "levels": [logging.getLogger().level, refresher.logger.log_level],
        "actions": [login["action"], forced["action"]],
        "broker_status": response["statusCode"],
        "secrets": {
            PASSWORD: "password",
            API_KEY: "API key",
            SIGNATURE: "request signature",
            SESSION_TOKEN: "caller's session token",
            EVENT_MARKER: "the refresher's event",
        },
        "tokens": sorted(every_token_issued()),
    }
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], "--libraries-loud" in sys.argv[2:])
