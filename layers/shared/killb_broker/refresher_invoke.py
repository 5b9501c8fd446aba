"""The broker's one call to the refresher function: run it now, synchronously, to force a refresh
(of a token a caller reported as rejected, or of one too short for its minTtl), with the Lambda
client's settings that call needs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from killb_broker.observability import logger

# The refresher's inputs for "refresh now, whatever the refresh window says" (and "only if the
# stored token is this one"), in the exact bytes the refresher and its tests expect.
_FORCE_REFRESH = json.dumps({"force": True}).encode()


def _force_refresh_of(rejected: str) -> bytes:
    return json.dumps({"force": True, "rejected": rejected}).encode()


class FunctionInvoker(Protocol):
    """The one Lambda call the broker makes (a boto3 lambda client fits)."""

    # boto3's keyword names, so that a real client fits the protocol.
    def invoke(
        self,
        *,
        FunctionName: str,  # noqa: N803
        InvocationType: Literal["RequestResponse"],  # noqa: N803
        Payload: bytes,  # noqa: N803
    ) -> Mapping[str, Any]: ...


def lambda_client(region: str | None = None) -> FunctionInvoker:
    """A Lambda client for the refresher's region (None: this function's own region)."""
    return boto3.client(
        "lambda",
        region_name=region,
        config=Config(
            connect_timeout=2,
            # The broker has 29 s (API Gateway's limit). A refresh is one KillB call; a
            # refresher still busy after 20 s is fighting KillB, and the caller is better served
            # by a 503 with Retry-After than by a gateway timeout. The run goes on.
            read_timeout=20,
            # No retries: a retried invoke is a second refresh, and a throttled one means the
            # refresher is already running; either way the broker reads the secret again.
            retries={"mode": "standard", "total_max_attempts": 1},
        ),
    )


class Refresher:
    """The refresher function, run once synchronously to force a refresh."""

    def __init__(
        self, client: FunctionInvoker | None, function_name: str, *, region: str | None = None
    ) -> None:
        """The function by name or ARN, with a client, or None to build one for `region` (the
        region of an ARN naming another region's refresher) on the first invoke: most
        containers never invoke, and a Lambda client costs its service model's load."""
        self._client = client
        self.function_name = function_name
        self.region = region

    @property
    def client(self) -> FunctionInvoker:
        if self._client is None:
            self._client = lambda_client(self.region)
        return self._client

    @client.setter
    def client(self, client: FunctionInvoker) -> None:
        self._client = client

    def force_refresh(self, rejected: str | None = None) -> None:
        """Run the refresher now (only to replace the token `rejected`, when given).

        Its failure is not the broker's: the broker reads the secret again either way. A
        throttled invoke (TooManyRequestsException) means a run is already under way (the
        refresher's reserved concurrency is 1), which is as good as this one.
        """
        payload = _FORCE_REFRESH if rejected is None else _force_refresh_of(rejected)
        try:
            response = self.client.invoke(
                FunctionName=self.function_name,
                InvocationType="RequestResponse",
                Payload=payload,
            )
        except (ClientError, BotoCoreError) as error:
            code = error.response["Error"].get("Code") if isinstance(error, ClientError) else None
            logger.warning(
                "refresher invoke failed",
                extra={"function": self.function_name, "error_code": code or type(error).__name__},
            )
            return
        if response.get("FunctionError"):
            logger.warning(
                "refresher run failed",
                extra={"function": self.function_name, "function_error": response["FunctionError"]},
            )
            return
        logger.info(
            "refresher invoked",
            extra={"function": self.function_name, "action": _refresher_action(response)},
        )


def _refresher_action(response: Mapping[str, Any]) -> str | None:
    """The summary's action ("refreshed", "failed", ...): the only part of the answer logged."""
    payload = response.get("Payload")
    try:
        summary = json.loads(payload.read()) if payload is not None else None
    except (ValueError, AttributeError):
        return None
    action = summary.get("action") if isinstance(summary, dict) else None
    return action if isinstance(action, str) else None
