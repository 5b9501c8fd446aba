"""P2: cold import time of each handler in fresh processes, against the libraries it cannot do
without: the broker against boto3 + a secretsmanager client + Logger + the resolver, the
refresher against boto3 + requests + Logger. Medians of alternating runs."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

from bench import ROOT

RUNS = 25  # cold starts vary by tens of ms on a shared machine: more runs, steadier medians
BROKER_GOAL, REFRESHER_GOAL = 1.15, 1.2

# Each snippet prints the seconds its imports took, inside the process (interpreter start-up is
# the same for every side and is left out).
_TIMED = "import time\nstarted = time.perf_counter()\n{body}\nprint(time.perf_counter() - started)"


def handler_import(function: str) -> str:
    """The snippet that imports functions/<function>/app.py as Lambda would, over the layer."""
    folders = [str(ROOT / "layers" / "shared"), str(ROOT / "functions" / function)]
    return f"import sys\nsys.path[:0] = {folders!r}\nimport app\n"


BROKER, REFRESHER = handler_import("broker"), handler_import("refresher")

BROKER_FLOOR = """
import boto3
boto3.client("secretsmanager")
from aws_lambda_powertools import Logger
Logger()
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
APIGatewayRestResolver()
"""

REFRESHER_FLOOR = """
import boto3
boto3.client("secretsmanager")
import requests
from aws_lambda_powertools import Logger
Logger()
"""


def environment() -> dict[str, str]:
    """The functions' settings, fake credentials, and AWS endpoints that lead nowhere."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "PYTHON")) and name != "VIRTUAL_ENV"
    }
    return env | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # creating a client makes no call
        # Lambda's /opt and /var/task are read-only: the layer's modules get no cached bytecode.
        "PYTHONDONTWRITEBYTECODE": "1",
        "POWERTOOLS_SERVICE_NAME": "killb-credential-broker",
        "POWERTOOLS_METRICS_NAMESPACE": "KillBCredentialBroker",
        "KILLB_BASE_URL": "https://killb.app",
        "CREDENTIALS_SECRET_ID": "killb/credentials",
        "SESSION_SECRET_ID": "killb/session",
        "ACCESS_TOKEN_SECRET_ID": "killb/access-token",
        "REFRESHER_FUNCTION_NAME": "killb-refresher",
        "ALLOWED_PRINCIPALS": "arn:aws:iam::123456789012:role/payments-api",
    }


def import_seconds(body: str, env: dict[str, str]) -> float:
    done = subprocess.run(  # noqa: S603 - our own interpreter and our own snippet
        [sys.executable, "-c", _TIMED.format(body=body)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    env = environment()
    sides = {"broker": BROKER, "broker floor": BROKER_FLOOR,
             "refresher": REFRESHER, "refresher floor": REFRESHER_FLOOR}  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in sides}
    for run in range(RUNS + 1):
        order = list(sides) if run % 2 else list(reversed(sides))
        for name in order:
            seconds = import_seconds(sides[name], env)
            if run:  # run 0 warms the OS's file cache
                times[name].append(seconds)
    median = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(", ".join(f"{name}: {ms:.0f} ms" for name, ms in median.items()) + " (medians)")
    refresher = median["refresher"] / median["refresher floor"]
    print(f"P2 refresher import / floor: {refresher:.2f} (goal <= {REFRESHER_GOAL})")
    broker = median["broker"] / median["broker floor"]
    print(f"P2 broker import / floor: {broker:.2f} (goal <= {BROKER_GOAL})")


if __name__ == "__main__":
    main()
