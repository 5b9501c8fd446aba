"""P9: what the KillB SDK adapter adds to a call. The same SDK call (`User.get_by_query`) against
the local KillB sandbox, through the adapter with the broker's answer cached, and through the
plain SDK holding a fixed token; rounds alternate which goes first."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import killb.api_requests
import requests
from botocore.credentials import ReadOnlyCredentials
from broker_server import serve_broker
from killb.api_requests import ApiRequests
from killb.user import User

from killb_broker_client.killb_sdk import Client
from killb_sandbox.accounts import SANDBOX_EMAIL, SANDBOX_PASSWORD
from killb_sandbox.server import Account, KillBSandbox
from tests.client.scripted_broker import ACCOUNT_ID, CALLER_ARN, ScriptedBroker, issued

GOAL = 1.05
ROUNDS = 21
CALLS_PER_ROUND = 100
QUERY = {"email": "ana@example.test"}
# Fake AWS credentials: the adapter signs with them, the local API Gateway checks them.
BENCH_KEY = "bench"
BENCH_CREDENTIALS = ReadOnlyCredentials(BENCH_KEY, BENCH_KEY, None)


def fixed_token_sdk(sandbox: KillBSandbox, token: str) -> User:
    """The plain SDK's User service over an ApiRequests holding a token that never expires."""
    api_requests = ApiRequests(
        environment="SANDBOX", email=SANDBOX_EMAIL, password=""
    )  # never used: no login
    api_requests.base_url = f"{sandbox.base_url}/api/v2"
    api_requests.access_token = token
    api_requests.headers["Authorization"] = f"Bearer {token}"
    api_requests.token_expiry = datetime.now() + timedelta(days=1)
    return User(api_requests)


def seconds_per_round(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    for _ in range(CALLS_PER_ROUND):
        call()
    return time.perf_counter() - started


def ratio(adapter: Callable[[], Any], plain: Callable[[], Any]) -> float:
    """Median over ROUNDS of adapter time / plain time, alternating which goes first."""
    ratios = []
    for round_number in range(ROUNDS):
        if round_number % 2 == 0:
            a, p = seconds_per_round(adapter), seconds_per_round(plain)
        else:
            p, a = seconds_per_round(plain), seconds_per_round(adapter)
        ratios.append(a / p)
    return statistics.median(ratios)


def main() -> None:
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        del os.environ[name]
    os.environ["AWS_ACCESS_KEY_ID"] = BENCH_KEY
    os.environ["AWS_SECRET_ACCESS_KEY"] = BENCH_KEY
    os.environ["AWS_REGION"] = "us-east-1"
    broker = ScriptedBroker()
    with (
        KillBSandbox({SANDBOX_EMAIL: Account(password=SANDBOX_PASSWORD)}) as sandbox,
        serve_broker(
            broker, caller_arn=CALLER_ARN, account_id=ACCOUNT_ID, credentials=BENCH_CREDENTIALS
        ) as broker_api,
    ):
        token = requests.post(
            f"{sandbox.base_url}/api/v2/auth/login",
            json={"email": SANDBOX_EMAIL, "password": SANDBOX_PASSWORD},
            timeout=5,
        ).json()["accessToken"]
        answer = issued(token, api_key=None)
        answer["body"] = json.dumps(
            {**json.loads(answer["body"]), "killbBaseUrl": sandbox.base_url}
        )
        broker.script(answer)
        adapter = Client(broker_api.base_url)
        adapter.User.get_by_query(QUERY)  # the broker's answer is cached from here on
        plain = fixed_token_sdk(sandbox, token)

        as_shipped = ratio(
            lambda: adapter.User.get_by_query(QUERY), lambda: plain.get_by_query(QUERY)
        )
        # The plain SDK opens a connection per call (module-level requests.request); over one
        # kept-alive session, as the adapter uses, only the adapter's own work differs.
        shared = requests.Session()
        original = killb.api_requests.re
        killb.api_requests.re = shared
        try:
            same_transport = ratio(
                lambda: adapter.User.get_by_query(QUERY), lambda: plain.get_by_query(QUERY)
            )
        finally:
            killb.api_requests.re = original
        print(f"adapter / plain SDK as shipped (a connection per call): {as_shipped:.3f}")
        print(
            f"P9 adapter overhead: adapter / plain SDK over a kept-alive session, fixed token: "
            f"{same_transport:.3f} (goal <= {GOAL})"
        )


if __name__ == "__main__":
    main()
