"""A simulated week (or day) of the whole system on a controlled clock: the refresher on its
schedule, the broker on a steady request stream, KillB outages and revoked refresh tokens.

Nothing sleeps on the simulated clock. Secrets Manager is moto in-process, KillB is the local
sandbox over loopback; the broker's on-demand refresher invoke runs the refresher handler here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TextIO

import boto3
from lambda_runtime import LambdaContext
from moto import mock_aws

from killb_broker.broker import Refresher, TokenSource
from killb_broker.client import KillBAuthClient
from killb_broker.errors import TokenRejected
from killb_broker.observability import logger
from killb_broker.policy import KillB
from killb_broker.tokens import TokenSet
from killb_sandbox.pytest_plugin import SANDBOX_EMAIL, SANDBOX_PASSWORD
from killb_sandbox.server import (
    Account,
    Delay,
    Drop,
    ErrorResponse,
    Fault,
    KillBSandbox,
    NotJson,
    RateLimit,
    UnexpectedJson,
)
from tests.support import load_event, load_function

DAY = 86_400
START = 1_795_827_600  # 2026-11-28T01:00:00Z: any fixed moment will do
SECRET_IDS = {
    "CREDENTIALS_SECRET_ID": "killb-sim/credentials",
    "SESSION_SECRET_ID": "killb-sim/session",
    "ACCESS_TOKEN_SECRET_ID": "killb-sim/access-token",
}
REFRESHER_NAME = "killb-sim-refresher"
CALLER_EVENT = "broker-auth-headers.json"

# A real (not simulated) wait stands for "KillB answered after the client gave up": the client's
# timeout is short so the week stays fast (yet long enough that a busy machine does not fake a
# timeout); the answer comes later and spends the refresh token.
CLIENT_TIMEOUT = 0.25
SLOW_ANSWER = Delay(seconds=0.5)

# During an outage every KillB request gets one of these, at random.
OUTAGE_FAULTS: tuple[tuple[str, Fault], ...] = (
    ("500", ErrorResponse(500, error_code=None)),
    ("502", ErrorResponse(502)),
    ("503", ErrorResponse(503)),
    ("429", RateLimit(retry_after=30)),
    ("429-no-retry-after", RateLimit(retry_after=None)),
    ("drop", Drop()),
    ("non-json", NotJson()),
    ("unexpected-json", UnexpectedJson({"accessToken": "x"})),
    ("timeout", SLOW_ANSWER),
)


class SimClock:
    """The simulated wall clock, shared by the sandbox, the KillB client and both handlers."""

    def __init__(self, now: float = START) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Scenario:
    days: float = 7
    seed: int = 7
    schedule_seconds: int = 300  # the refresher's rate
    request_every: int | None = 30  # one broker request this often; None: no broker traffic
    outage_share: float = 0.05  # of the whole time, KillB is down this much in all
    max_outage_seconds: int = 1500
    revocations_per_day: float = 0.5  # KillB refuses every refresh token issued before
    killb_timeout: float = CLIENT_TIMEOUT  # seconds, real: the KillB client's timeouts


@dataclass
class Report:
    """What the run counted. Served means a 200 whose token KillB accepts for minTtl seconds."""

    scenario: Scenario
    requests: int = 0
    served: int = 0
    requests_up_to_1500: int = 0
    served_up_to_1500: int = 0
    unserved_statuses: dict[int, int] = field(default_factory=dict)
    unserved: list[str] = field(default_factory=list)  # minTtl, and whether KillB was down
    refresher_runs: int = 0
    forced_runs: int = 0
    logins: int = 0
    refreshes: int = 0
    refresh_rejections: int = 0
    killb_requests: int = 0
    secret_writes: int = 0
    secret_reads_by_broker: int = 0
    revocations: int = 0
    slow_answers_to_refresh: int = 0
    outage_seconds: int = 0
    outages: int = 0
    faults_served: dict[str, int] = field(default_factory=dict)
    secret_always_valid_json: bool = True
    final_token_valid: bool = False

    @property
    def served_share(self) -> float:
        return _share(self.served, self.requests)

    @property
    def served_share_up_to_1500(self) -> float:
        return _share(self.served_up_to_1500, self.requests_up_to_1500)

    def lines(self) -> list[str]:
        days = self.scenario.days
        return [
            f"simulated {days:g} days, seed {self.scenario.seed}: {self.outages} outages, "
            f"{self.outage_seconds / 60:.0f} min down ({self.outage_seconds / (days * DAY):.1%}), "
            f"{self.revocations} revocations",
            f"faults served by KillB: {dict(sorted(self.faults_served.items()))}",
            f"broker requests: {self.requests}, served for their minTtl: "
            f"{self.served_share:.4%} (minTtl <= 1500: {self.served_share_up_to_1500:.4%}); "
            f"not served: {self.unserved_statuses} {self.unserved[:12]}",
            f"refresher runs: {self.refresher_runs} scheduled, {self.forced_runs} by the broker",
            f"logins: {self.logins} (1 + {self.refresh_rejections} refused refresh tokens, after "
            f"{self.revocations} revocations and {self.slow_answers_to_refresh} refresh answers "
            f"KillB sent after the client had timed out)",
            f"KillB calls: {self.refreshes + self.logins} ({self.refreshes} refreshes), "
            f"{self.killb_requests} HTTP requests with retries",
            f"secret writes: {self.secret_writes} ({self.secret_writes / days:.0f}/day); broker "
            f"secret reads: {self.secret_reads_by_broker} ({self.secret_reads_by_broker / days:.0f}"
            f"/day)",
        ]


def _share(part: int, whole: int) -> float:
    """part / whole; no requests at all counts as all served."""
    return part / whole if whole else 1.0


class CountingKillB:
    """The real KillB client, counting the outcomes the report needs."""

    def __init__(self, client: KillBAuthClient, report: Report) -> None:
        self._client = client
        self._report = report

    def login(self, email: str, password: str) -> TokenSet:
        tokens = self._client.login(email, password)
        self._report.logins += 1
        return tokens

    def refresh(self, refresh_token: str) -> TokenSet:
        try:
            tokens = self._client.refresh(refresh_token)
        except TokenRejected:
            self._report.refresh_rejections += 1
            raise
        self._report.refreshes += 1
        return tokens

    def close(self) -> None:
        self._client.close()


class InProcessLambda:
    """A Lambda client whose invoke runs the refresher handler here, as the deployed one would."""

    def __init__(self, run: Any) -> None:
        self._run = run

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:  # noqa: N803
        summary = self._run(json.loads(Payload), forced_by_broker=True)
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(summary).encode())}


def plan_outages(scenario: Scenario, rng: random.Random) -> list[tuple[float, float]]:
    """Non-overlapping (start, end) outages adding up to outage_share of the time."""
    duration = scenario.days * DAY
    wanted, planned = scenario.outage_share * duration, 0.0
    outages: list[tuple[float, float]] = []
    while planned < wanted:
        length = min(rng.uniform(60, scenario.max_outage_seconds), wanted - planned + 1)
        start = START + rng.uniform(0, duration - length)
        if all(end + 60 < start or start + length + 60 < begin for begin, end in outages):
            outages.append((start, start + length))
            planned += length
    return sorted(outages)


def min_ttl(rng: random.Random) -> int:
    """Callers mostly take the default; some want nothing, some a long-lived token."""
    roll = rng.random()
    if roll < 0.6:
        return 300
    if roll < 0.7:
        return 0
    return rng.randint(0, 1800)


class Simulation:
    """One stack (moto, sandbox, both handlers) driven through a scenario."""

    def __init__(self, scenario: Scenario, sandbox: KillBSandbox, clock: SimClock) -> None:
        self.scenario = scenario
        self.sandbox = sandbox
        self.clock = clock
        self.rng = random.Random(scenario.seed)
        self.report = Report(scenario)
        self.outages = plan_outages(scenario, self.rng)
        self.report.outages = len(self.outages)
        self.report.outage_seconds = round(sum(end - start for start, end in self.outages))
        self.context = LambdaContext("simulation")
        self.refresher = self._load_refresher()
        self.broker = self._load_broker()

    # Wiring

    def _load_refresher(self) -> ModuleType:
        os.environ.update(SECRET_IDS)
        os.environ["KILLB_BASE_URL"] = self.sandbox.base_url
        app = load_function("refresher")
        report, clock, base_url = self.report, self.clock, self.sandbox.base_url
        timeout = self.scenario.killb_timeout

        def killb_client(api_key: str | None) -> KillB:
            client = KillBAuthClient(
                base_url,
                api_key=api_key,
                timeout=timeout,
                max_retries=2,
                backoff_factor=0.001,
                max_retry_after=0.001,
                deadline=10,
                clock=clock,
            )
            return CountingKillB(client, report)

        setattr(app, "killb_client", killb_client)  # noqa: B010 - the module's documented seam
        setattr(app, "clock", clock)  # noqa: B010

        def count_write(**_: Any) -> None:
            report.secret_writes += 1

        app.STORE._client.meta.events.register(
            "before-call.secrets-manager.PutSecretValue", count_write
        )
        return app

    def _load_broker(self) -> ModuleType:
        os.environ["ACCESS_TOKEN_SECRET_ID"] = SECRET_IDS["ACCESS_TOKEN_SECRET_ID"]
        os.environ["REFRESHER_FUNCTION_NAME"] = REFRESHER_NAME
        os.environ["ALLOWED_PRINCIPALS"] = ""
        app = load_function("broker")
        source = app.broker.token_source
        app.broker.token_source = TokenSource(
            source.secrets,
            SECRET_IDS["ACCESS_TOKEN_SECRET_ID"],
            refresher=Refresher(InProcessLambda(self.run_refresher), REFRESHER_NAME),
            clock=self.clock,
        )

        def count_read(**_: Any) -> None:
            self.report.secret_reads_by_broker += 1

        source.secrets.meta.events.register(
            "before-call.secrets-manager.GetSecretValue", count_read
        )
        return app

    # The world

    def in_outage(self) -> bool:
        now = self.clock.now
        return any(start <= now < end for start, end in self.outages)

    def run_refresher(self, event: Any, *, forced_by_broker: bool = False) -> Any:
        """One refresher run; during an outage every KillB request it makes gets a fault."""
        faults: list[tuple[str, Fault]] = []
        self.sandbox.clear_faults()
        if self.in_outage():
            faults = [self.rng.choice(OUTAGE_FAULTS) for _ in range(20)]
            for _, fault in faults:
                self.sandbox.inject("any", fault)
        before = len(self.sandbox.requests)
        summary = self.refresher.lambda_handler(event, self.context)
        taken = self.sandbox.requests[before:]
        self.sandbox.clear_faults()
        for (kind, fault), request in zip(faults, taken, strict=False):
            self.report.faults_served[kind] = self.report.faults_served.get(kind, 0) + 1
            if fault is SLOW_ANSWER and request.endpoint == "refresh":
                self.report.slow_answers_to_refresh += 1
        if any(fault is SLOW_ANSWER for _, fault in faults[: len(taken)]):
            # Real time: let KillB's late answer land (and spend the refresh token) first.
            time.sleep(SLOW_ANSWER.seconds * 1.5)
        self.report.killb_requests += len(taken)
        if forced_by_broker:
            self.report.forced_runs += 1
        else:
            self.report.refresher_runs += 1
        self._check_secret()
        return summary

    def _check_secret(self) -> None:
        value = self.refresher.STORE.read_access_token()
        if value is None and self.report.logins:
            self.report.secret_always_valid_json = False

    def ask_broker(self) -> None:
        wanted = min_ttl(self.rng)
        event = load_event(CALLER_EVENT)
        event["queryStringParameters"] = {"minTtl": str(wanted)}
        event["multiValueQueryStringParameters"] = {"minTtl": [str(wanted)]}
        response = self.broker.lambda_handler(event, self.context)
        self.report.requests += 1
        self.report.requests_up_to_1500 += wanted <= 1500
        served = False
        if response["statusCode"] == 200:
            body = json.loads(response["body"])
            token = body["headers"]["Authorization"].removeprefix("Bearer ")
            served = body["expiresIn"] >= wanted and self.sandbox.is_valid_access_token(token)
        if served:
            self.report.served += 1
            self.report.served_up_to_1500 += wanted <= 1500
        else:
            status = response["statusCode"]
            self.report.unserved_statuses[status] = self.report.unserved_statuses.get(status, 0) + 1
            down = "in an outage" if self.in_outage() else "KillB up"
            self.report.unserved.append(f"minTtl={wanted} ({down})")

    def run(self) -> Report:
        scenario = self.scenario
        end = START + scenario.days * DAY
        revocations = sorted(
            START + self.rng.uniform(0, end - START)
            for _ in range(round(scenario.revocations_per_day * scenario.days))
        )
        next_run, next_request = float(START), float(START + 7)
        while next_run < end:
            if scenario.request_every is not None and next_request < next_run:
                self.clock.now = next_request
                self._revoke_due(revocations)
                self.ask_broker()
                next_request += scenario.request_every
                continue
            self.clock.now = next_run
            self._revoke_due(revocations)
            self.run_refresher(load_event("refresher-scheduled.json"))
            next_run += scenario.schedule_seconds
        # Whatever the week did, one quiet run later the store holds a token KillB accepts.
        self.outages.clear()
        self.run_refresher(load_event("refresher-scheduled.json"))
        token = self.refresher.STORE.read_access_token()
        self.report.final_token_valid = token is not None and self.sandbox.is_valid_access_token(
            token.token
        )
        return self.report

    def _revoke_due(self, revocations: list[float]) -> None:
        while revocations and revocations[0] <= self.clock.now:
            revocations.pop(0)
            self.sandbox.revoke_refresh_tokens()
            self.report.revocations += 1


@contextlib.contextmanager
def fake_aws() -> Iterator[None]:
    """moto, with fake credentials, and no endpoint variable that could lead anywhere real."""
    saved = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETSMANAGER",
                 "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_LAMBDA"):  # fmt: skip
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto's fake
        AWS_SESSION_TOKEN="testing",  # noqa: S106 - moto's fake
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )
    try:
        with mock_aws():
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def create_secrets() -> None:
    """The three secrets as the template creates them, with the operator's credentials put."""
    secrets = boto3.client("secretsmanager")
    credentials = json.dumps({"email": SANDBOX_EMAIL, "password": SANDBOX_PASSWORD})
    secrets.create_secret(Name=SECRET_IDS["CREDENTIALS_SECRET_ID"], SecretString=credentials)
    secrets.create_secret(Name=SECRET_IDS["SESSION_SECRET_ID"], SecretString="{}")
    secrets.create_secret(Name=SECRET_IDS["ACCESS_TOKEN_SECRET_ID"], SecretString="{}")


@contextlib.contextmanager
def handlers_output_to(log: TextIO | None) -> Iterator[TextIO]:
    """The shared Logger's lines and the metrics' EMF lines (stdout) go to log (None: nowhere)."""
    with contextlib.ExitStack() as stack:
        stream = log if log is not None else stack.enter_context(open(os.devnull, "w"))
        handler = logger.registered_handler
        saved = handler.stream  # type: ignore[attr-defined]
        handler.stream = stream  # type: ignore[attr-defined]
        stack.callback(setattr, handler, "stream", saved)
        stack.enter_context(contextlib.redirect_stdout(stream))
        yield stream


def simulate(scenario: Scenario, log: TextIO | None = None) -> Report:
    """Run the scenario from an empty stack; the handlers' log lines go to log (default: none)."""
    clock = SimClock()
    account = {SANDBOX_EMAIL: Account(password=SANDBOX_PASSWORD)}
    with (
        handlers_output_to(log),
        fake_aws(),
        KillBSandbox(account, clock=clock) as sandbox,
    ):
        create_secrets()
        return Simulation(scenario, sandbox, clock).run()


def main() -> None:
    report = simulate(Scenario())
    for line in report.lines():
        print(line)
    print(
        f"Simulated week: served {report.served_share:.2%} (goal 100%), logins {report.logins} "
        f"(goal 1), KillB calls {report.refreshes + report.logins}, "
        f"secret writes/day {report.secret_writes / report.scenario.days:.0f}"
    )


if __name__ == "__main__":
    main()
