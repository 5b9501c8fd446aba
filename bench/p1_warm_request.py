"""P1: a warm broker request (cached token, the real handler, a moto-backed secret) divided by the
floor every broker must pay: Powertools' resolver answering a constant body plus one audit line."""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from lambda_runtime import LambdaContext

from bench.simulation import fake_aws, handlers_output_to
from killb_broker.store import access_token_to_json
from killb_broker.tokens import AccessToken
from tests.support import load_event, load_function

GOAL = 1.3
ROUNDS = 31
CALLS_PER_ROUND = 200
SECRET_ID = "killb-bench/access-token"  # noqa: S105 - a secret's name
CALLER_ROLE = "arn:aws:iam::123456789012:role/payments-api"
EVENT = load_event("broker-auth-headers.json")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def floor_handler(null: Any) -> Handler:
    """The least any broker must do: route, answer a constant JSON body, write the one audit
    record (all its keys) that every outcome gets."""
    audit = Logger(service="floor", use_rfc3339=True, logger_handler=logging.StreamHandler(null))
    app = APIGatewayRestResolver()
    body = {
        "headers": {"Authorization": "Bearer constant", "x-api-key": "constant"},
        "expiresAt": "2026-11-28T02:00:00Z",
        "expiresIn": 3600,
        "killbBaseUrl": "https://killb.app",
    }

    @app.get("/v1/auth-headers")
    def auth_headers() -> Response[Any]:
        identity = app.current_event.request_context.identity
        # The audit record every broker outcome must write: these keys, in one line.
        audit.info(
            "broker audit",
            extra={
                "outcome": "issued",
                "status": 200,
                "caller_arn": identity.user_arn,
                "source_ip": identity.source_ip,
                "route": "/v1/auth-headers",
                "min_ttl": 300,
                "token_fingerprint": "0123456789ab",
                "rejected_fingerprint": None,
                "expires_at": body["expiresAt"],
                "reason": "issued",
            },
        )
        return Response(200, "application/json", body, headers={"Cache-Control": "no-store"})

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return app.resolve(event, context)

    return handler


def load_broker() -> ModuleType:
    """The real broker, cold-started over moto, with an hour-long token in its secret."""
    secrets = boto3.client("secretsmanager")
    token = AccessToken(
        "bench-token", int(time.time()) + 3600, api_key="bench-key", base_url="https://killb.app"
    )
    secrets.create_secret(Name=SECRET_ID, SecretString=access_token_to_json(token))
    os.environ |= {
        "ACCESS_TOKEN_SECRET_ID": SECRET_ID,
        "REFRESHER_FUNCTION_NAME": "killb-bench-refresher",
        "ALLOWED_PRINCIPALS": CALLER_ROLE,
    }
    return load_function("broker")


def per_call(handler: Handler, context: Any) -> float:
    started = time.perf_counter()
    for _ in range(CALLS_PER_ROUND):
        handler(EVENT, context)
    return (time.perf_counter() - started) / CALLS_PER_ROUND


def main() -> None:
    context = LambdaContext("bench", remaining_ms=29_000)
    with handlers_output_to(None) as null, fake_aws():
        broker, floor = load_broker().lambda_handler, floor_handler(null)
        answer = broker(EVENT, context)
        assert answer["statusCode"] == 200, answer
        assert json.loads(answer["body"])["headers"]["Authorization"] == "Bearer bench-token"
        broker_times, floor_times, ratios = [], [], []
        for round_number in range(ROUNDS + 1):
            # Alternate which side goes first, so neither always runs on a warmer cache.
            sides = (broker, floor) if round_number % 2 else (floor, broker)
            first, second = (per_call(side, context) for side in sides)
            b, f = (second, first) if round_number % 2 == 0 else (first, second)
            if round_number:  # round 0 warms both up
                broker_times.append(b)
                floor_times.append(f)
                ratios.append(b / f)
    broker_us = statistics.median(broker_times) * 1e6
    floor_us = statistics.median(floor_times) * 1e6
    ratio = statistics.median(ratios)
    print(f"warm broker request: {broker_us:.0f} us; floor: {floor_us:.0f} us (medians)")
    print(f"P1 warm request / floor: {ratio:.2f} (goal <= {GOAL})")


if __name__ == "__main__":
    main()
