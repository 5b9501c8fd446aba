"""P3: Secrets Manager GetSecretValue calls per 1,000 warm broker requests spread over one
simulated minute (the real handler over moto; the calls counted by a botocore event hook)."""

from __future__ import annotations

from lambda_runtime import LambdaContext

from bench.p1_warm_request import EVENT, SECRET_ID, load_broker
from bench.simulation import START, SimClock, fake_aws, handlers_output_to
from killb_broker.broker import TokenSource
from killb_broker.tokens import AccessToken

GOAL = 2
REQUESTS = 1000
MINUTE = 60.0


def main() -> None:
    clock = SimClock(START)
    reads: list[str] = []
    context = LambdaContext("bench", remaining_ms=29_000)
    with handlers_output_to(None), fake_aws():
        app = load_broker()
        broker = app.lambda_handler
        source = app.broker.token_source
        # The token in the secret, on the simulated clock: an hour left.
        token = AccessToken("bench-token", int(START) + 3600, api_key="bench-key")
        source.secrets.put_secret_value(SecretId=SECRET_ID, SecretString=token.to_secret_string())
        app.broker.token_source = TokenSource(
            source.secrets, SECRET_ID, refresher=source.refresher, clock=clock
        )
        source.secrets.meta.events.register(
            "before-call.secrets-manager.GetSecretValue", lambda **_: reads.append("read")
        )
        # Warm: the container answered its first request half a minute before the minute.
        clock.now = START - 30
        assert broker(EVENT, context)["statusCode"] == 200
        reads.clear()
        statuses = set()
        for n in range(REQUESTS):
            clock.now = START + n * MINUTE / REQUESTS
            statuses.add(broker(EVENT, context)["statusCode"])
        assert statuses == {200}, statuses
    per_thousand = len(reads) * 1000 / REQUESTS
    print(f"{REQUESTS} warm requests over {MINUTE:.0f} simulated seconds: {len(reads)} reads")
    print(f"P3 GetSecretValue per 1,000 warm requests: {per_thousand:g} (goal <= {GOAL})")


if __name__ == "__main__":
    main()
