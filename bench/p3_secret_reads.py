"""P3: Secrets Manager GetSecretValue calls per 1,000 warm broker requests spread over one
simulated minute: the real handler over moto, as deployed (settings from the environment only),
the wall clock moved by time-machine, the calls counted by a botocore event hook."""

from __future__ import annotations

from typing import Any

import boto3
import time_machine
from lambda_runtime import LambdaContext

from bench.p1_warm_request import EVENT, load_broker
from bench.simulation import START, fake_aws, handlers_output_to

GOAL = 2
REQUESTS = 1000
MINUTE = 60.0


def main() -> None:
    reads: list[str] = []

    def count_read(**_: Any) -> None:
        reads.append("read")

    context = LambdaContext("bench", remaining_ms=29_000)
    with (
        handlers_output_to(None),
        fake_aws(),
        # Warm: the container answered its first request half a minute before the minute.
        time_machine.travel(START - 30, tick=False) as traveller,
    ):
        # Registered on the default session before the cold start: every client made from it
        # (the handler's own among them) gets the hook, without reaching into the handler.
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register(
            "before-call.secrets-manager.GetSecretValue", count_read
        )
        broker = load_broker().lambda_handler
        assert broker(EVENT, context)["statusCode"] == 200
        reads.clear()
        statuses = set()
        for n in range(REQUESTS):
            traveller.move_to(START + n * MINUTE / REQUESTS)
            statuses.add(broker(EVENT, context)["statusCode"])
        assert statuses == {200}, statuses
    per_thousand = len(reads) * 1000 / REQUESTS
    print(f"{REQUESTS} warm requests over {MINUTE:.0f} simulated seconds: {len(reads)} reads")
    print(f"P3 GetSecretValue per 1,000 warm requests: {per_thousand:g} (goal <= {GOAL})")


if __name__ == "__main__":
    main()
