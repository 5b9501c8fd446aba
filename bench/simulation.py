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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TextIO
from urllib.parse import unquote

import boto3
import time_machine
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import EndpointConnectionError
from lambda_runtime import ACCOUNT_ID, LambdaContext
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

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.type_defs import ReplicaRegionTypeTypeDef

DAY = 86_400
START = 1_795_827_600  # 2026-11-28T01:00:00Z: any fixed moment will do
SECRET_IDS = {
    "CREDENTIALS_SECRET_ID": "killb-sim/credentials",
    "SESSION_SECRET_ID": "killb-sim/session",
    "ACCESS_TOKEN_SECRET_ID": "killb-sim/access-token",
}
REFRESHER_NAME = "killb-sim-refresher"
# A region loss moves the primary's work to a replica stack of the same name in another region.
PRIMARY_REGION = "us-east-1"
REPLICA_REGION = "eu-west-1"
REPLICA_REFRESHER_NAME = "killb-sim-refresher-eu-west-1"
# The promotion's first run, as the promotion command makes it: a revoke, which logs in afresh
# (the new primary's own session), publishes, then logs the lost primary's session out.
PROMOTION_EVENT = {"revoke": True}
TOKEN_LIFETIME = 3600  # seconds: the sandbox's, as KillB's
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
class RegionLoss:
    """The primary region lost: its broker, refresher and secrets out of reach for `duration`
    seconds from `at` (seconds after the start); an operator promotes the replica region
    `promote_after` seconds into the loss."""

    at: float = 3.5 * DAY
    duration: float = 2 * 3600
    promote_after: float = 15 * 60


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
    token_check: int | None = None  # TOKEN_CHECK_SECONDS; None: the default (1800)
    region_loss: RegionLoss | None = None  # the primary region lost for a while
    brokers: int = 1  # broker URLs each caller lists: 1 (the primary's) or 2 (and the replica's)


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
    token_checks: int = 0  # GET /api/v2/auth/me (TOKEN_CHECK_SECONDS)
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
    # The physical limit: requests a broker knowing the future could have served (a token KillB
    # issued while it was up, lasting the request's minTtl, not the one KillB refused early).
    servable: int = 0
    # Seconds from each early revocation to the first request served a good token again.
    heal_seconds: list[float] = field(default_factory=list)
    # The region loss: when the replica region's first token reached a caller, and how many
    # requests were served a token the lost primary minted after the promotion (must be none).
    first_token_from_new_primary: float | None = None
    served_minted_by_lost_primary: int = 0
    minted_by_lost_primary_after_promotion: int = 0
    requests_in_region_loss: int = 0
    served_in_region_loss: int = 0

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

    @property
    def limit_share(self) -> float:
        """The share of requests a broker knowing the future could have served."""
        return _share(self.servable, self.requests)

    @property
    def of_limit(self) -> float:
        """What we served over what could have been served."""
        return _share(self.served, self.servable)

    def heal_percentile(self, percent: float) -> float | None:
        """The heal time at this percentile (nearest rank), None when nothing was revoked."""
        if not self.heal_seconds:
            return None
        ranked = sorted(self.heal_seconds)
        return ranked[min(len(ranked) - 1, max(0, round(percent / 100 * len(ranked)) - 1))]

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
            f"physical limit (a broker knowing the future): {self.limit_share:.4%} servable; "
            f"served over the limit: {self.of_limit:.5f}",
            f"from an early revocation to the first caller served a good token: "
            f"p50 {_seconds(self.heal_percentile(50))}, p99 {_seconds(self.heal_percentile(99))} "
            f"({len(self.heal_seconds)} revocations)",
            *self._region_lines(),
        ]

    def _region_lines(self) -> list[str]:
        loss = self.scenario.region_loss
        if loss is None:
            return []
        return [
            f"region loss: primary lost {loss.duration / 60:.0f} min, replica promoted after "
            f"{loss.promote_after / 60:.0f} min; callers listing {self.scenario.brokers} "
            f"broker(s): {_share(self.served_in_region_loss, self.requests_in_region_loss):.4%} "
            f"of {self.requests_in_region_loss} requests in the loss served; first token from "
            f"the new primary {_seconds(self.first_token_from_new_primary)} after the loss; "
            f"tokens the lost primary minted after the promotion: "
            f"{self.minted_by_lost_primary_after_promotion} ({self.served_minted_by_lost_primary} "
            f"requests served one)",
        ]


def _no_wait(seconds: float) -> None:
    """A retry's wait: nothing sleeps on the simulated clock."""


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} s"


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
        self._report.token_checks += 1
        return self._client.me(access_token)

    def close(self) -> None:
        self._client.close()


class InProcessLambda:
    """Lambda's Invoke, answered here by running the refresher of the region the function name
    (or ARN) names: a botocore before-call hook, so the broker's own client, however the handler
    builds it, reaches this instead of AWS. A lost region's function cannot be reached."""

    def __init__(self, simulation: Simulation) -> None:
        self._simulation = simulation

    def __call__(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        # The URL path is /2015-03-31/functions/<name or ARN>/invocations.
        function = unquote(str(params.get("url_path", ""))).split("/functions/")[-1]
        function = function.removesuffix("/invocations")
        region = self._simulation.region_of_function(function)
        if region.lost:
            raise EndpointConnectionError(
                endpoint_url=f"https://lambda.{region.name}.amazonaws.com"
            )
        summary = self._simulation.run_refresher(
            json.loads(params["body"]), region, forced_by_broker=True
        )
        http = AWSResponse(params.get("url", ""), 200, HTTPHeaders(), None)
        return http, {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(summary).encode())}


@dataclass
class Region:
    """One region's stack: its token store (the secrets there), its refresher and its broker."""

    name: str
    store: TokenStore
    refresher_name: str
    broker: Any = None  # the broker's handler module, cold-started for this region
    scheduled: bool = True  # the refresher runs on its schedule
    lost: bool = False  # nothing of the region can be reached
    # The refresher's Notifier keeps the hourly bound of failure notices in its memory: one warm
    # container all week (its reserved concurrency is 1).
    failing: FailingRuns = field(default_factory=FailingRuns)


def _arn(region: Region) -> str:
    """A region's refresher, as the ARN a broker of another region invokes."""
    return f"arn:aws:lambda:{region.name}:{ACCOUNT_ID}:function:{region.refresher_name}"


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
    """One stack (moto, sandbox, the refresh policy, the broker) driven through a scenario; with
    a region loss, a replica stack in a second region too."""

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
        self.config = RefresherConfig.from_env({**SECRET_IDS, "KILLB_BASE_URL": sandbox.base_url})
        self.settings = RefreshSettings(
            refresh_window=self.config.refresh_window_seconds,
            login_backoff=self.config.login_backoff_seconds,
            base_url=self.config.killb_base_url,
            token_check=(
                self.config.token_check_seconds
                if scenario.token_check is None
                else scenario.token_check
            ),
        )
        self.context = LambdaContext("simulation", remaining_ms=29_000)
        # A primary with a replica region asks it, before any KillB call, whether it was
        # promoted (REPLICA_REGIONS, as the template sets it).
        replicas = (REPLICA_REGION,) if scenario.region_loss is not None else ()
        self.primary = Region(PRIMARY_REGION, self._store(PRIMARY_REGION, replicas), REFRESHER_NAME)
        self.regions = [self.primary]
        if scenario.region_loss is not None:
            self.regions.append(
                Region(
                    REPLICA_REGION,
                    self._store(REPLICA_REGION),
                    REPLICA_REFRESHER_NAME,
                    scheduled=False,  # a replica stack's schedule is off until promotion
                )
            )
        self._hook_default_session()
        self.primary.broker = self._load_broker(self.primary, REFRESHER_NAME)
        if len(self.regions) > 1:
            # A replica stack's broker invokes the primary's refresher, across regions.
            self.regions[1].broker = self._load_broker(self.regions[1], _arn(self.primary))
        self.promoted_at: float | None = None
        self.minted: dict[str, tuple[str, float]] = {}  # fingerprint -> (region, when)
        self.revoked_at: list[float] = []  # early revocations not yet healed

    # Wiring

    def _store(self, region: str, replica_regions: tuple[str, ...] = ()) -> TokenStore:
        # A session of its own: the hooks on the default session below are the broker's.
        secrets = boto3.session.Session().client("secretsmanager", region_name=region)
        secrets.meta.events.register(
            "before-call.secrets-manager.PutSecretValue", self._count_write
        )
        return TokenStore(
            secrets,
            credentials_secret_id=self.config.credentials_secret_id,
            session_secret_id=self.config.session_secret_id,
            access_token_secret_id=self.config.access_token_secret_id,
            replica_regions=replica_regions,
        )

    def _count_write(self, **_: Any) -> None:
        self.report.secret_writes += 1

    def _count_read(self, **_: Any) -> None:
        self.report.secret_reads_by_broker += 1

    def _hook_default_session(self) -> None:
        """The brokers' AWS calls, seen through hooks on the default session, which every client
        built from it copies: their secret reads counted, their refresher invokes run here."""
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        events = boto3.DEFAULT_SESSION.events
        events.register("before-call.secrets-manager.GetSecretValue", self._count_read)
        # botocore takes a before-call hook's answer as the call's; its stubs say hooks return None.
        events.register("before-call.lambda.Invoke", InProcessLambda(self))  # type: ignore[arg-type]

    def _load_broker(self, region: Region, refresher: str) -> Any:
        """The broker's handler of a region, cold-started as deployed (settings from the
        environment only)."""
        os.environ.update(
            ACCESS_TOKEN_SECRET_ID=SECRET_IDS["ACCESS_TOKEN_SECRET_ID"],
            REFRESHER_FUNCTION_NAME=refresher,
            ALLOWED_PRINCIPALS="",
            AWS_REGION=region.name,
            AWS_DEFAULT_REGION=region.name,
        )
        try:
            return load_function("broker")
        finally:
            os.environ.update(AWS_REGION=PRIMARY_REGION, AWS_DEFAULT_REGION=PRIMARY_REGION)

    def region_of_function(self, function: str) -> Region:
        """The region whose refresher a function name or ARN names."""
        for region in self.regions:
            named = function.endswith(region.refresher_name)
            if named and (":lambda:" not in function or f":lambda:{region.name}:" in function):
                return region
        raise ValueError(f"no refresher named {function!r} in the simulation")

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

    def in_outage(self, at: float | None = None) -> bool:
        now = time.time() if at is None else at
        return any(start <= now < end for start, end in self.outages)

    def in_region_loss(self) -> bool:
        return self.primary.lost

    def killb_accepts(self, token: str) -> bool:
        return self.sandbox.is_valid_access_token(token)

    def servable(self, at: float, wanted: int) -> bool:
        """The physical limit, for one KillB session per account (the broker's design): while
        KillB is up a token can be had at once; during an outage only a token obtained before
        it began, still lasting minTtl, and not revoked early since: a broker knowing the future
        refreshes right before each outage, and a revocation during one leaves it nothing."""
        outage = next(((start, end) for start, end in self.outages if start <= at < end), None)
        if outage is None:
            return True
        start = outage[0]
        if start <= START or start + TOKEN_LIFETIME < at + wanted:
            return False
        return not any(start <= revoked <= at for revoked in self.plan.token_revocations)

    def run_refresher(
        self, event: Any, region: Region | None = None, *, forced_by_broker: bool = False
    ) -> Any:
        """One refresher run; during an outage every KillB request it makes gets a fault."""
        region = region or self.primary
        faults: list[tuple[str, Fault]] = []
        self.sandbox.clear_faults()
        if self.in_outage():
            faults = [self.rng.choice(OUTAGE_FAULTS) for _ in range(20)]
            for _, fault in faults:
                self.sandbox.inject("any", fault)
        before = len(self.sandbox.requests)
        # What the refresher's handler does with an event, on the simulated clock.
        now = time.time()
        outcome = run(event, region.store, self.connect, now=now, settings=self.settings)
        if Event.REJECTED_TOKEN_REFRESH in outcome.events:
            last, self.report.last_rejected_attempt = self.report.last_rejected_attempt, now
            self.report.rejected_attempts_within_a_minute += last is not None and now - last < 60
            self.report.rejected_refresh_attempts += 1
            self.report.rejected_refreshes += outcome.action in (Action.REFRESHED, Action.LOGGED_IN)
        self.report.rejected_too_soon += Event.REJECTED_TOO_SOON in outcome.events
        # What the Notifier would send, every event taken by EventBridge.
        told = region.failing.select(outcome.notices, now)
        for notice in told:
            region.failing.told(notice, now)
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
        self._check_secret(region, now)
        return outcome.summary()

    def _check_secret(self, region: Region, now: float) -> None:
        value = region.store.read_access_token()
        if value is None and self.report.logins:
            self.report.secret_always_valid_json = False
        if value is not None and value.fingerprint not in self.minted:
            self.minted[value.fingerprint] = (region.name, now)
            promoted = self.promoted_at is not None
            if promoted and region is self.primary:
                self.report.minted_by_lost_primary_after_promotion += 1

    def ask_broker(
        self, region: Region, wanted: int, rejected: str | None = None
    ) -> tuple[int, str | None, int]:
        """(status, token, seconds left) of one GET /v1/auth-headers through a region's handler;
        status 0 when the region cannot be reached."""
        if region.lost:
            return 0, None, 0
        query = {"minTtl": str(wanted)} | ({"rejected": rejected} if rejected else {})
        event = CALLER_EVENT | {
            "queryStringParameters": query,
            "multiValueQueryStringParameters": {name: [value] for name, value in query.items()},
        }
        response = region.broker.lambda_handler(event, self.context)
        if response["statusCode"] != 200:
            return response["statusCode"], None, 0
        body = json.loads(response["body"])
        token = str(body["headers"]["Authorization"]).removeprefix("Bearer ")
        self.report.issued_fingerprints.add(fingerprint(token))
        return 200, token, int(body["expiresIn"])

    def ask_brokers(self, wanted: int, rejected: str | None = None) -> tuple[int, str | None, int]:
        """What a caller's client does with its list of brokers: the first that answers, moving
        on after no answer or a 5xx, never after a 4xx (the 60 s a client keeps the broker that
        answered changes no answer here, only which one is asked first)."""
        answer: tuple[int, str | None, int] = (0, None, 0)
        for region in self.regions[: self.scenario.brokers]:
            answer = self.ask_broker(region, wanted, rejected)
            if answer[0] != 0 and answer[0] < 500:
                return answer
        return answer

    def serve(self, wanted: int) -> None:
        """One caller request: headers from the broker, then its KillB call with them."""
        now = time.time()
        status, token, left = self.ask_brokers(wanted)
        if (
            token is not None
            and not self.killb_accepts(token)
            and self.scenario.callers == "report"
        ):
            self.report.rejected_reports += 1
            status, token, left = self.ask_brokers(wanted, rejected=fingerprint(token))
        self.report.requests += 1
        self.report.requests_up_to_1500 += wanted <= 1500
        self.report.requests_killb_up += not self.in_outage()
        self.report.servable += self.servable(now, wanted)
        in_loss = self.in_region_loss()
        self.report.requests_in_region_loss += in_loss
        accepted = token is not None and self.killb_accepts(token)
        if status == 200 and left >= wanted and accepted:
            assert token is not None
            self._served(token, now, wanted, in_loss)
            return
        self.report.unserved_statuses[status] = self.report.unserved_statuses.get(status, 0) + 1
        if status == 200 and not accepted:
            self.report.refused_by_killb += 1
        down = "in an outage" if self.in_outage() else "KillB up"
        self.report.unserved_killb_up += not self.in_outage()
        self.report.unserved.append(f"minTtl={wanted} ({down})")

    def _served(self, token: str, now: float, wanted: int, in_loss: bool) -> None:
        self.report.served += 1
        self.report.served_up_to_1500 += wanted <= 1500
        self.report.served_in_region_loss += in_loss
        self.report.heal_seconds.extend(now - revoked for revoked in self.revoked_at)
        self.revoked_at.clear()
        minted_in, minted_when = self.minted.get(fingerprint(token), (PRIMARY_REGION, 0.0))
        if self.promoted_at is not None:
            if minted_in == PRIMARY_REGION and minted_when >= self.promoted_at:
                self.report.served_minted_by_lost_primary += 1
            if minted_in == REPLICA_REGION and self.report.first_token_from_new_primary is None:
                loss = self.scenario.region_loss
                assert loss is not None
                self.report.first_token_from_new_primary = now - (START + loss.at)

    def promote(self) -> None:
        """What the promotion command does to the replica region, the primary out of reach: the
        secrets stop replicating, the broker invokes its own refresher, the schedule starts, and
        a first run makes the region's own session.

        moto has no StopReplicationToReplica: the public calls RemoveRegionsFromReplication (on
        the primary) and CreateSecret (in the replica region, with the replica's value) stand in
        for it, leaving the same state: a standalone secret of the same name holding that value.
        """
        replica = self.regions[1]
        primary_secrets = boto3.session.Session().client(
            "secretsmanager", region_name=PRIMARY_REGION
        )
        replica_secrets = boto3.session.Session().client(
            "secretsmanager", region_name=REPLICA_REGION
        )
        for secret_id in SECRET_IDS.values():
            value = replica_secrets.get_secret_value(SecretId=secret_id)["SecretString"]
            primary_secrets.remove_regions_from_replication(
                SecretId=secret_id, RemoveReplicaRegions=[REPLICA_REGION]
            )
            replica_secrets.create_secret(Name=secret_id, SecretString=value)
        replica.broker = self._load_broker(replica, replica.refresher_name)
        replica.scheduled = True
        self.promoted_at = time.time()
        self.run_refresher(PROMOTION_EVENT, replica)

    def run(self) -> Report:
        end = START + self.scenario.days * DAY
        refresh_revocations = deque(self.plan.refresh_revocations)
        token_revocations = deque(self.plan.token_revocations)
        requests = deque(self.plan.requests)
        milestones = deque(self._region_milestones())
        next_run = float(START)
        while next_run < end:
            upcoming = min(next_run, requests[0][0] if requests else end)
            if milestones and milestones[0][0] <= upcoming:
                at, milestone = milestones.popleft()
                self._move_to(at, refresh_revocations, token_revocations)
                milestone()
                continue
            if requests and requests[0][0] < next_run:
                at, wanted = requests.popleft()
                self._move_to(at, refresh_revocations, token_revocations)
                self.serve(wanted)
                continue
            self._move_to(next_run, refresh_revocations, token_revocations)
            for region in self.regions:
                if region.scheduled and not region.lost:
                    self.run_refresher(SCHEDULED_EVENT, region)
            next_run += self.scenario.schedule_seconds
        # Whatever the week did, one quiet run later the store holds a token KillB accepts.
        self.outages.clear()
        serving = self.regions[-1] if self.promoted_at is not None else self.primary
        self.run_refresher(SCHEDULED_EVENT, serving)
        token = serving.store.read_access_token()
        self.report.final_token_valid = token is not None and self.sandbox.is_valid_access_token(
            token.token
        )
        return self.report

    def _region_milestones(self) -> list[tuple[float, Callable[[], None]]]:
        loss = self.scenario.region_loss
        if loss is None:
            return []
        lost_at = START + loss.at

        def lose() -> None:
            self.primary.lost = True

        def come_back() -> None:
            # The old primary's stack runs again, schedule and all: only its refresher's check
            # that it was superseded keeps it from minting tokens.
            self.primary.lost = False

        return [
            (lost_at, lose),
            (lost_at + loss.promote_after, self.promote),
            (lost_at + loss.duration, come_back),
        ]

    def _move_to(self, at: float, refresh: deque[float], tokens: deque[float]) -> None:
        self.traveller.move_to(at)
        while refresh and refresh[0] <= at:
            refresh.popleft()
            self.sandbox.revoke_refresh_tokens()
            self.report.revocations += 1
        while tokens and tokens[0] <= at:
            tokens.popleft()
            serving = self.regions[-1] if self.promoted_at is not None else self.primary
            published = serving.store.read_access_token()
            if published is not None:
                self.sandbox.revoke(published.token)
                self.report.token_revocations += 1
                self.revoked_at.append(at)


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


def create_secrets(scenario: Scenario) -> None:
    """The three secrets as the template creates them, with the operator's credentials put;
    with a region loss to come, replicated to the replica region (ReplicaRegions)."""
    secrets = boto3.client("secretsmanager", region_name=PRIMARY_REGION)
    replicas: list[ReplicaRegionTypeTypeDef] = (
        [{"Region": REPLICA_REGION}] if scenario.region_loss is not None else []
    )
    credentials = json.dumps({"email": SANDBOX_EMAIL, "password": SANDBOX_PASSWORD})
    for secret_id, value in (
        (SECRET_IDS["CREDENTIALS_SECRET_ID"], credentials),
        (SECRET_IDS["SESSION_SECRET_ID"], "{}"),
        (SECRET_IDS["ACCESS_TOKEN_SECRET_ID"], "{}"),
    ):
        if replicas:
            secrets.create_secret(Name=secret_id, SecretString=value, AddReplicaRegions=replicas)
        else:
            secrets.create_secret(Name=secret_id, SecretString=value)


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
        create_secrets(scenario)
        return Simulation(scenario, sandbox, traveller).run()


def compare(scenario: Scenario, log: TextIO | None = None) -> tuple[Report, Report]:
    """The scenario's week twice, from the same seed: callers that report, callers that keep."""
    reporting = simulate(replace(scenario, callers="report"), log)
    keeping = simulate(replace(scenario, callers="keep"), log)
    return reporting, keeping


# The week with a region loss: the primary region gone for two hours mid-week, the replica
# promoted after 15 minutes; callers that report, listing two brokers or one.
REGION_LOSS_WEEK = Scenario(region_loss=RegionLoss())


def region_loss(scenario: Scenario = REGION_LOSS_WEEK) -> tuple[Report, Report]:
    """The region-loss week twice, from the same seed: callers listing both brokers, and
    callers listing the primary's alone."""
    return simulate(replace(scenario, brokers=2)), simulate(replace(scenario, brokers=1))


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
    print(
        f"Against the physical limit ({reporting.limit_share:.3%} servable): callers that "
        f"report {reporting.of_limit:.5f}, callers that never report {keeping.of_limit:.5f} "
        f"(goal >= 0.999 each); revocation to a good token: reporting p50 "
        f"{_seconds(reporting.heal_percentile(50))} p99 {_seconds(reporting.heal_percentile(99))}"
        f", silent p50 {_seconds(keeping.heal_percentile(50))} p99 "
        f"{_seconds(keeping.heal_percentile(99))}"
    )
    # Silent callers heal only when the refresher replaces the token: at the default
    # TOKEN_CHECK_SECONDS (1800) the check never comes due (a token is refreshed at 1800 s of
    # age, before it could be); checked at every run, they heal within one schedule period.
    checked = simulate(replace(Scenario(), callers="keep", token_check=300))
    print(
        f"Callers that never report, the token checked at every run (TOKEN_CHECK_SECONDS=300): "
        f"{checked.served_share:.3%} served, {checked.of_limit:.5f} of the limit; revocation "
        f"to a good token p50 {_seconds(checked.heal_percentile(50))} p99 "
        f"{_seconds(checked.heal_percentile(99))}; KillB calls {checked.refreshes + checked.logins}"
        f" and {checked.token_checks} checks"
    )
    two, one = region_loss()
    for report in (two, one):
        for line in report.lines():
            print(line)
    # Callers listing the old primary alone stay unserved after it returns too: superseded, it
    # mints nothing until an operator fails back, which the week does not play.
    print(
        f"Region loss week, served with a token KillB accepts: {two.served_share:.3%} by callers "
        f"listing two brokers (goal >= 99.9%); during the two-hour loss "
        f"{_share(two.served_in_region_loss, two.requests_in_region_loss):.1%} of them, and "
        f"{_share(one.served_in_region_loss, one.requests_in_region_loss):.1%} of callers listing "
        f"the primary alone; first token from the new primary "
        f"{_seconds(two.first_token_from_new_primary)} after the loss; requests served a token "
        f"the lost primary minted after the promotion: {two.served_minted_by_lost_primary} "
        f"(goal 0)"
    )


if __name__ == "__main__":
    main()
