"""A simulated week (or day) of the whole system on a controlled clock: the refresh policy on the
refresher's schedule, the broker's handler on a steady stream of callers, KillB outages, revoked
refresh tokens, and access tokens KillB refuses early.

time-machine moves the wall clock (time.time) that every part reads, so nothing sleeps on
simulated time. Secrets Manager is moto in-process, KillB is the local sandbox over loopback. The
broker is its handler as deployed (settings from the environment only); a refresher run is what
the refresher's handler does with an event (the settings parsed from the environment, then
`policy.run` over the token store), with the KillB client's waits between retries taking no
time; the broker's invoke of the refresher runs it here. docs/benchmarks.md says what the figures
mean.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TextIO

import boto3
import time_machine
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from lambda_runtime import LambdaContext
from moto import mock_aws

from killb_broker.config import RefresherConfig
from killb_broker.errors import TokenRejected
from killb_broker.killb_api import KillBAuthClient
from killb_broker.notifications import FailingRuns
from killb_broker.observability import logger
from killb_broker.policy import Action, DetailType, Event, KillB, RefreshSettings, run
from killb_broker.store import TokenStore
from killb_broker.tokens import TokenSet, fingerprint
from killb_sandbox.accounts import SANDBOX_EMAIL, SANDBOX_PASSWORD
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
CALLER_EVENT = load_event("broker-auth-headers.json")
SCHEDULED_EVENT = load_event("refresher-scheduled.json")  # the scheduler's, as sam local gets it

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

# What a caller does when KillB refuses the token the broker gave it: "report" asks the broker
# again with rejected=<its fingerprint> and retries once with the token it gets; "keep" is the
# caller without that support, which fails the call and keeps getting the same token until the
# schedule replaces it.
Callers = Literal["report", "keep"]


@dataclass(frozen=True)
class Scenario:
    days: float = 7
    seed: int = 7
    schedule_seconds: int = 300  # the refresher's rate
    request_every: int | None = 30  # one caller request this often; None: no broker traffic
    outage_share: float = 0.05  # of the whole time, KillB is down this much in all
    max_outage_seconds: int = 1500
    refresh_revocations_per_day: float = 0.5  # KillB refuses every refresh token issued before
    token_revocations_per_day: float = 3  # KillB refuses the access token in use from then on
    killb_timeout: float = CLIENT_TIMEOUT  # seconds, real: the KillB client's timeouts
    callers: Callers = "report"


@dataclass(frozen=True)
class Plan:
    """The seeded world of a scenario: the same for every caller behaviour run over it."""

    outages: tuple[tuple[float, float], ...]
    refresh_revocations: tuple[float, ...]
    token_revocations: tuple[float, ...]
    requests: tuple[tuple[float, int], ...]  # (when, minTtl)


@dataclass
class Report:
    """What the run counted. Served means a 200 whose token KillB accepts and that lasts minTtl."""

    scenario: Scenario
    requests: int = 0
    served: int = 0
    requests_up_to_1500: int = 0
    served_up_to_1500: int = 0
    refused_by_killb: int = 0  # requests whose final token KillB refused
    requests_killb_up: int = 0  # requests made while KillB was answering
    unserved_killb_up: int = 0  # of those, the ones not served
    unserved_statuses: dict[int, int] = field(default_factory=dict)
    unserved: list[str] = field(default_factory=list)  # minTtl, and whether KillB was down
    refresher_runs: int = 0
    forced_runs: int = 0
    rejected_reports: int = 0
    rejected_refresh_attempts: int = 0  # refresher runs a report caused that called KillB
    rejected_refreshes: int = 0  # of those, the ones that got a new token
    rejected_attempts_within_a_minute: int = 0  # of those, the ones < 60 s after the one before
    last_rejected_attempt: float | None = None
    rejected_too_soon: int = 0
    # Runs that told operators of failing runs (at most one an hour), none a secret write.
    failure_notices: int = 0
    logins: int = 0
    refreshes: int = 0
    refresh_rejections: int = 0
    killb_requests: int = 0
    secret_writes: int = 0
    secret_reads_by_broker: int = 0
    revocations: int = 0  # of the refresh tokens
    token_revocations: int = 0  # of the access token in use
    # Refresh tokens KillB refused, by fingerprint: True when KillB had been sent that token
    # before (an answer the client never got spent it: a timeout, on a busy machine too).
    refused_refresh_tokens: dict[str, bool] = field(default_factory=dict)
    outage_seconds: int = 0
    outages: int = 0
    faults_served: dict[str, int] = field(default_factory=dict)
    secret_always_valid_json: bool = True
    final_token_valid: bool = False
    issued_fingerprints: set[str] = field(default_factory=set)

    @property
    def lost_refresh_answers(self) -> int:
        return sum(self.refused_refresh_tokens.values())

    @property
    def served_share(self) -> float:
        return _share(self.served, self.requests)

    @property
    def served_share_killb_up(self) -> float:
        """The share served of the requests made while KillB was answering."""
        served = self.requests_killb_up - self.unserved_killb_up
        return _share(served, self.requests_killb_up)

    @property
    def served_share_up_to_1500(self) -> float:
        return _share(self.served_up_to_1500, self.requests_up_to_1500)

    def lines(self) -> list[str]:
        days = self.scenario.days
        return [
            f"simulated {days:g} days, seed {self.scenario.seed}, callers that "
            f"{self.scenario.callers}: {self.outages} outages, {self.outage_seconds / 60:.0f} min "
            f"down ({self.outage_seconds / (days * DAY):.1%}), {self.revocations} refresh-token "
            f"revocations, {self.token_revocations} access tokens revoked early",
            f"faults served by KillB: {dict(sorted(self.faults_served.items()))}",
            f"caller requests: {self.requests}, served with a token KillB accepts for their "
            f"minTtl: {self.served_share:.4%} (minTtl <= 1500: "
            f"{self.served_share_up_to_1500:.4%}; while KillB was up: "
            f"{self.served_share_killb_up:.4%}); refused by KillB: {self.refused_by_killb}; "
            f"not served: {self.unserved_statuses}, {self.unserved_killb_up} of them while "
            f"KillB was up {self.unserved[:6]}",
            f"rejected-token reports: {self.rejected_reports}, refresher runs they caused: "
            f"{self.rejected_refresh_attempts} ({self.rejected_refreshes} got a new token, "
            f"{self.rejected_attempts_within_a_minute} within a minute of the one before), "
            f"refused as too soon: {self.rejected_too_soon}",
            f"refresher runs: {self.refresher_runs} scheduled, {self.forced_runs} by the broker",
            f"logins: {self.logins} (1 + {self.refresh_rejections} refused refresh tokens, after "
            f"{self.revocations} revocations and {self.lost_refresh_answers} refresh answers "
            f"the client never got)",
            f"KillB calls: {self.refreshes + self.logins} ({self.refreshes} refreshes), "
            f"{self.killb_requests} HTTP requests with retries",
            f"secret writes: {self.secret_writes} ({self.secret_writes / days:.0f}/day); broker "
            f"secret reads: {self.secret_reads_by_broker} ({self.secret_reads_by_broker / days:.0f}"
            f"/day)",
        ]


def _no_wait(seconds: float) -> None:
    """A retry's wait: nothing sleeps on the simulated clock."""


def _share(part: int, whole: int) -> float:
    """part / whole; no requests at all counts as all served."""
    return part / whole if whole else 1.0


class CountingKillB:
    """The real KillB client, counting the outcomes the report needs."""

    def __init__(self, client: KillBAuthClient, report: Report, sandbox: KillBSandbox) -> None:
        self._client = client
        self._report = report
        self._sandbox = sandbox

    def login(self, email: str, password: str) -> TokenSet:
        tokens = self._client.login(email, password)
        self._report.logins += 1
        return tokens

    def refresh(self, refresh_token: str) -> TokenSet:
        try:
            tokens = self._client.refresh(refresh_token)
        except TokenRejected:
            self._report.refresh_rejections += 1
            sent = sum(
                1
                for request in list(self._sandbox.requests)
                if request.endpoint == "refresh"
                and (request.json or {}).get("refreshToken") == refresh_token
            )
            # The first refusal says why; a repeat (the login after it failed) says nothing more.
            self._report.refused_refresh_tokens.setdefault(fingerprint(refresh_token), sent > 1)
            raise
        self._report.refreshes += 1
        return tokens

    def logout(self, access_token: str) -> None:
        self._client.logout(access_token)

    def me(self, access_token: str) -> dict[str, Any]:
        return self._client.me(access_token)

    def close(self) -> None:
        self._client.close()


class InProcessLambda:
    """Lambda's Invoke, answered here by running the refresher: a botocore before-call hook, so
    the broker's own client, however the handler builds it, reaches this instead of AWS."""

    def __init__(self, run: Any) -> None:
        self._run = run

    def __call__(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        summary = self._run(json.loads(params["body"]), forced_by_broker=True)
        http = AWSResponse(params.get("url", ""), 200, HTTPHeaders(), None)
        return http, {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(summary).encode())}


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


def plan(scenario: Scenario) -> Plan:
    """The scenario's world from its seed alone, so two caller behaviours meet the same week."""
    rng = random.Random(scenario.seed)
    duration = scenario.days * DAY
    outages = plan_outages(scenario, rng)

    def moments(per_day: float) -> tuple[float, ...]:
        return tuple(
            sorted(START + rng.uniform(0, duration) for _ in range(round(per_day * scenario.days)))
        )

    refresh_revocations = moments(scenario.refresh_revocations_per_day)
    token_revocations = moments(scenario.token_revocations_per_day)
    requests: list[tuple[float, int]] = []
    if scenario.request_every is not None:
        at = float(START + 7)
        while at < START + duration:
            requests.append((at, min_ttl(rng)))
            at += scenario.request_every
    return Plan(tuple(outages), refresh_revocations, token_revocations, tuple(requests))


class Simulation:
    """One stack (moto, sandbox, the refresh policy, the broker) driven through a scenario."""

    def __init__(
        self, scenario: Scenario, sandbox: KillBSandbox, traveller: time_machine.Traveller
    ) -> None:
        self.scenario = scenario
        self.sandbox = sandbox
        self.traveller = traveller
        self.plan = plan(scenario)
        # Faults are drawn from their own stream: the plan stays the same whatever the run does.
        self.rng = random.Random(f"{scenario.seed}-faults")
        self.report = Report(scenario)
        self.outages = list(self.plan.outages)
        self.report.outages = len(self.outages)
        self.report.outage_seconds = round(sum(end - start for start, end in self.outages))
        # A session of its own: the hooks on the default session below are the broker's.
        self.secrets = boto3.session.Session().client("secretsmanager")
        self.secrets.meta.events.register(
            "before-call.secrets-manager.PutSecretValue", self._count_write
        )
        self.config = RefresherConfig.from_env({**SECRET_IDS, "KILLB_BASE_URL": sandbox.base_url})
        self.settings = RefreshSettings(
            refresh_window=self.config.refresh_window_seconds,
            login_backoff=self.config.login_backoff_seconds,
        )
        # The refresher's Notifier keeps the hourly bound of failure notices in its memory: one
        # warm container all week (its reserved concurrency is 1).
        self.failing = FailingRuns()
        self.store = TokenStore(
            self.secrets,
            credentials_secret_id=self.config.credentials_secret_id,
            session_secret_id=self.config.session_secret_id,
            access_token_secret_id=self.config.access_token_secret_id,
        )
        self.context = LambdaContext("simulation", remaining_ms=29_000)
        self.broker = self._load_broker()

    # Wiring

    def _count_write(self, **_: Any) -> None:
        self.report.secret_writes += 1

    def _count_read(self, **_: Any) -> None:
        self.report.secret_reads_by_broker += 1

    def _load_broker(self) -> Any:
        """The broker's handler, cold-started as deployed; its AWS calls seen through hooks on
        the default session, which every client built from it copies."""
        os.environ["ACCESS_TOKEN_SECRET_ID"] = SECRET_IDS["ACCESS_TOKEN_SECRET_ID"]
        os.environ["REFRESHER_FUNCTION_NAME"] = REFRESHER_NAME
        os.environ["ALLOWED_PRINCIPALS"] = ""
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        events = boto3.DEFAULT_SESSION.events
        events.register("before-call.secrets-manager.GetSecretValue", self._count_read)
        # botocore takes a before-call hook's answer as the call's; its stubs say hooks return None.
        invoke = InProcessLambda(self.run_refresher)
        events.register("before-call.lambda.Invoke", invoke)  # type: ignore[arg-type]
        return load_function("broker")

    def connect(self, api_key: str | None) -> KillB:
        """The KillB client of one refresher run, as deployed but for its timeout, and with
        its waits between retries taking no time."""
        client = KillBAuthClient(
            self.config.killb_base_url,
            api_key=api_key,
            timeout=self.scenario.killb_timeout,
            sleep=_no_wait,
        )
        return CountingKillB(client, self.report, self.sandbox)

    # The world

    def in_outage(self) -> bool:
        now = time.time()
        return any(start <= now < end for start, end in self.outages)

    def killb_accepts(self, token: str) -> bool:
        return self.sandbox.is_valid_access_token(token)

    def run_refresher(self, event: Any, *, forced_by_broker: bool = False) -> Any:
        """One refresher run; during an outage every KillB request it makes gets a fault."""
        faults: list[tuple[str, Fault]] = []
        self.sandbox.clear_faults()
        if self.in_outage():
            faults = [self.rng.choice(OUTAGE_FAULTS) for _ in range(20)]
            for _, fault in faults:
                self.sandbox.inject("any", fault)
        before = len(self.sandbox.requests)
        # What the refresher's handler does with an event, on the simulated clock.
        now = time.time()
        outcome = run(event, self.store, self.connect, now=now, settings=self.settings)
        if Event.REJECTED_TOKEN_REFRESH in outcome.events:
            last, self.report.last_rejected_attempt = self.report.last_rejected_attempt, now
            self.report.rejected_attempts_within_a_minute += last is not None and now - last < 60
            self.report.rejected_refresh_attempts += 1
            self.report.rejected_refreshes += outcome.action in (Action.REFRESHED, Action.LOGGED_IN)
        self.report.rejected_too_soon += Event.REJECTED_TOO_SOON in outcome.events
        # What the Notifier would send, every event taken by EventBridge.
        told = self.failing.select(outcome.notices, now)
        for notice in told:
            self.failing.told(notice, now)
        self.report.failure_notices += any(
            notice.detail_type is DetailType.REFRESH_FAILED for notice in told
        )
        taken = self.sandbox.requests[before:]
        self.sandbox.clear_faults()
        for kind, _ in faults[: len(taken)]:
            self.report.faults_served[kind] = self.report.faults_served.get(kind, 0) + 1
        if any(fault is SLOW_ANSWER for _, fault in faults[: len(taken)]):
            # Real time: let KillB's late answer land (and spend the refresh token) first.
            time.sleep(SLOW_ANSWER.seconds * 1.5)
        self.report.killb_requests += len(taken)
        if forced_by_broker:
            self.report.forced_runs += 1
        else:
            self.report.refresher_runs += 1
        self._check_secret()
        return outcome.summary()

    def _check_secret(self) -> None:
        value = self.store.read_access_token()
        if value is None and self.report.logins:
            self.report.secret_always_valid_json = False

    def ask_broker(self, wanted: int, rejected: str | None = None) -> tuple[int, str | None, int]:
        """(status, token, seconds left) of one GET /v1/auth-headers through the handler."""
        query = {"minTtl": str(wanted)} | ({"rejected": rejected} if rejected else {})
        event = CALLER_EVENT | {
            "queryStringParameters": query,
            "multiValueQueryStringParameters": {name: [value] for name, value in query.items()},
        }
        response = self.broker.lambda_handler(event, self.context)
        if response["statusCode"] != 200:
            return response["statusCode"], None, 0
        body = json.loads(response["body"])
        token = str(body["headers"]["Authorization"]).removeprefix("Bearer ")
        self.report.issued_fingerprints.add(fingerprint(token))
        return 200, token, int(body["expiresIn"])

    def serve(self, wanted: int) -> None:
        """One caller request: headers from the broker, then its KillB call with them."""
        status, token, left = self.ask_broker(wanted)
        if (
            token is not None
            and not self.killb_accepts(token)
            and self.scenario.callers == "report"
        ):
            self.report.rejected_reports += 1
            status, token, left = self.ask_broker(wanted, rejected=fingerprint(token))
        self.report.requests += 1
        self.report.requests_up_to_1500 += wanted <= 1500
        self.report.requests_killb_up += not self.in_outage()
        accepted = token is not None and self.killb_accepts(token)
        if status == 200 and left >= wanted and accepted:
            self.report.served += 1
            self.report.served_up_to_1500 += wanted <= 1500
            return
        self.report.unserved_statuses[status] = self.report.unserved_statuses.get(status, 0) + 1
        if status == 200 and not accepted:
            self.report.refused_by_killb += 1
        down = "in an outage" if self.in_outage() else "KillB up"
        self.report.unserved_killb_up += not self.in_outage()
        self.report.unserved.append(f"minTtl={wanted} ({down})")

    def run(self) -> Report:
        end = START + self.scenario.days * DAY
        refresh_revocations = deque(self.plan.refresh_revocations)
        token_revocations = deque(self.plan.token_revocations)
        requests = deque(self.plan.requests)
        next_run = float(START)
        while next_run < end:
            if requests and requests[0][0] < next_run:
                at, wanted = requests.popleft()
                self._move_to(at, refresh_revocations, token_revocations)
                self.serve(wanted)
                continue
            self._move_to(next_run, refresh_revocations, token_revocations)
            self.run_refresher(SCHEDULED_EVENT)
            next_run += self.scenario.schedule_seconds
        # Whatever the week did, one quiet run later the store holds a token KillB accepts.
        self.outages.clear()
        self.run_refresher(SCHEDULED_EVENT)
        token = self.store.read_access_token()
        self.report.final_token_valid = token is not None and self.sandbox.is_valid_access_token(
            token.token
        )
        return self.report

    def _move_to(self, at: float, refresh: deque[float], tokens: deque[float]) -> None:
        self.traveller.move_to(at)
        while refresh and refresh[0] <= at:
            refresh.popleft()
            self.sandbox.revoke_refresh_tokens()
            self.report.revocations += 1
        while tokens and tokens[0] <= at:
            tokens.popleft()
            published = self.store.read_access_token()
            if published is not None:
                self.sandbox.revoke(published.token)
                self.report.token_revocations += 1


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
    """Run the scenario from an empty stack; the log lines go to log (default: none)."""
    account = {SANDBOX_EMAIL: Account(password=SANDBOX_PASSWORD)}
    with (
        handlers_output_to(log),
        fake_aws(),
        time_machine.travel(START, tick=False) as traveller,
        # The sandbox's clock is time.time, which time-machine moves.
        KillBSandbox(account, clock=time.time) as sandbox,
    ):
        create_secrets()
        return Simulation(scenario, sandbox, traveller).run()


def compare(scenario: Scenario, log: TextIO | None = None) -> tuple[Report, Report]:
    """The scenario's week twice, from the same seed: callers that report, callers that keep."""
    reporting = simulate(replace(scenario, callers="report"), log)
    keeping = simulate(replace(scenario, callers="keep"), log)
    return reporting, keeping


def main() -> None:
    reporting, keeping = compare(Scenario())
    for report in (reporting, keeping):
        for line in report.lines():
            print(line)
    print(
        f"callers that report vs keep: {reporting.refused_by_killb} vs {keeping.refused_by_killb} "
        f"requests with a token KillB refused; {reporting.rejected_reports} reports caused "
        f"{reporting.rejected_refresh_attempts} refresher runs calling KillB, "
        f"{reporting.rejected_refreshes} new tokens ({reporting.rejected_too_soon} refused as too "
        f"soon); logins {reporting.logins} vs {keeping.logins}; KillB calls "
        f"{reporting.refreshes + reporting.logins} vs {keeping.refreshes + keeping.logins}; "
        f"secret writes/day {reporting.secret_writes / reporting.scenario.days:.0f}"
    )
    ratio = reporting.served_share / keeping.served_share
    print(
        f"Simulated week, served with a token KillB accepts: {reporting.served_share:.3%} by "
        f"callers that report (goal >= 99.9%), {keeping.served_share:.3%} by callers that keep "
        f"it; ratio {ratio:.3f}"
    )


if __name__ == "__main__":
    main()
