"""The broker's on-demand invoke of the refresher, stubbed in boto3 (botocore's Stubber) for the
unit tests of the token source, which are given their Lambda client: the
two invokes the broker may make, and the answers a test makes the refresher give to them."""

from __future__ import annotations

import io
import json
from typing import Any

from botocore.response import StreamingBody
from botocore.stub import Stubber


def force_invoke(function_name: str, rejected: str | None = None) -> dict[str, Any]:
    """The parameters of an invoke the broker may make: RequestResponse, {"force": true}, or
    {"force": true, "rejected": "<fingerprint>"} for a token a caller reported."""
    payload = {"force": True} if rejected is None else {"force": True, "rejected": rejected}
    return {
        "FunctionName": function_name,
        "InvocationType": "RequestResponse",
        "Payload": json.dumps(payload).encode(),
    }


def refresher_answers(
    stubber: Stubber,
    function_name: str,
    action: str,
    *,
    function_error: str | None = None,
    rejected: str | None = None,
) -> None:
    """The next invoke (which must be the forced one, for `rejected` when given) returns a
    summary with this action."""
    body = json.dumps({"action": action, "expiresAt": None, "reason": "test"}).encode()
    response: dict[str, Any] = {
        "StatusCode": 200,
        "Payload": StreamingBody(io.BytesIO(body), len(body)),
    }
    if function_error:
        response["FunctionError"] = function_error
    stubber.add_response("invoke", response, force_invoke(function_name, rejected))


def refresher_throttled(stubber: Stubber, function_name: str, rejected: str | None = None) -> None:
    """The next invoke (which must be the forced one) is throttled: a run is under way."""
    stubber.add_client_error(
        "invoke",
        "TooManyRequestsException",
        "Rate Exceeded.",
        429,
        expected_params=force_invoke(function_name, rejected),
    )
