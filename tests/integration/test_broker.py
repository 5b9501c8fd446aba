"""The broker API (docs/spec.md, "Broker API"), row by row, through its Lambda handler and the
very files in events/.

Secrets Manager is moto; the refresher the broker invokes is a scripted function behind the local
Lambda endpoint (local/lambda_endpoint.py), which the broker's own Lambda client reaches through
AWS_ENDPOINT_URL_LAMBDA, as a deployed broker reaches Lambda. An invoke nobody scripted fails the
test. The handler is configured by its environment only; the tests see its AWS calls through
hooks on boto3's default session (tests/support.py's SessionHooks).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from lambda_endpoint import LambdaEndpoint
from moto import mock_aws
from openapi_schema_validator import OAS30Validator

from killb_broker.audit import AUDIT_MESSAGE
from killb_broker.errors import ConfigurationError
from killb_broker.observability import logger
from killb_broker.store import access_token_to_json
from killb_broker.tokens import AccessToken, fingerprint
from killb_sandbox.server import Delay
from tests.client.openapi_document import SPEC, resolved
from tests.refresher_harness import Refresher as RefresherHarness
from tests.support import SessionHooks, load_event, load_function

SECRET_ID = "killb/access-token"
REFRESHER = "killb-refresher"
CALLER = "arn:aws:sts::123456789012:assumed-role/payments-api/i-0abc"
CALLER_ROLE = "arn:aws:iam::123456789012:role/service-role/payments-api"
API_KEY = "key-integration-7f3a"


def force_invoke(function_name: str, rejected: str | None = None) -> dict[str, Any]:
    """The parameters of an invoke the broker may make: RequestResponse, {"force": true}, or
    {"force": true, "rejected": "<fingerprint>"} for a token a caller reported."""
    payload = {"force": True} if rejected is None else {"force": True, "rejected": rejected}
    return {
        "FunctionName": function_name,
        "InvocationType": "RequestResponse",
        "Payload": json.dumps(payload).encode(),
    }


FORCE_INVOKE = force_invoke(REFRESHER)
SM_URL = "https://secretsmanager.us-east-1.amazonaws.com"
MISSING = {"status": "missing", "expiresAt": None, "expiresIn": None, "checkedAt": None}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    text: str


@dataclass(frozen=True)
class Step:
    """What the scripted refresher does on its next invoke, and the payload it must be given."""

    payload: dict[str, Any]
    action: str | None  # the summary's action; None: the invoke is throttled


@dataclass
class ScriptedRefresher:
    """The refresher function, scripted: each invoke takes the next step, in order."""

    steps: list[Step] = field(default_factory=list)
    unexpected: list[Any] = field(default_factory=list)

    def __call__(self, event: Any, _context: Any) -> dict[str, Any]:
        if not self.steps or self.steps[0].action is None or self.steps[0].payload != event:
            self.unexpected.append(event)
            raise AssertionError("an invoke nobody scripted")
        step = self.steps.pop(0)
        return {"action": step.action, "expiresAt": None, "reason": "test"}


@dataclass
class DeployedBroker:
    """One warm broker container over a moto Secrets Manager, its refresher scripted."""

    app: ModuleType
    secrets: Any
    context: Any
    lambda_endpoint: LambdaEndpoint
    refresher: ScriptedRefresher
    reads: list[str] = field(default_factory=list)
    invokes: list[dict[str, Any]] = field(default_factory=list)
    invoke_actions: list[Callable[[], object]] = field(default_factory=list)
    hooks: SessionHooks | None = None
    # The function's one slot, held from a throttled invoke's start to its answer.
    busy: AbstractContextManager[None] | None = None

    def call(self, event: dict[str, Any]) -> Answer:
        response = self.app.lambda_handler(event, self.context)
        return Answer(
            status=response["statusCode"],
            headers=response["headers"],
            body=json.loads(response["body"]),
            text=response["body"],
        )

    def put(self, value: str) -> None:
        self.secrets.put_secret_value(SecretId=SECRET_ID, SecretString=value)

    def put_token(
        self, name: str, seconds_left: int, *, api_key: str | None = API_KEY, **fields: Any
    ) -> int:
        expires_at = int(time.time()) + seconds_left
        token = AccessToken(
            token=f"access-{name}", expires_at=expires_at, api_key=api_key, **fields
        )
        self.put(access_token_to_json(token))
        return expires_at

    def on_invoke(self, action: Callable[[], object]) -> None:
        """Run action (the refresher writing a new token, say) when the broker invokes it."""
        self.invoke_actions.append(action)

    def refresher_answers(self, action: str, rejected: str | None = None) -> None:
        """The next invoke (which must be the forced one, for `rejected` when given) returns a
        summary with this action."""
        self.refresher.steps.append(Step(_force_payload(rejected), action))

    def refresher_throttled(self, rejected: str | None = None) -> None:
        """The next invoke (which must be the forced one) is throttled: a run is under way, and
        holds the function's one concurrency slot while the broker's invoke arrives."""
        self.refresher.steps.append(Step(_force_payload(rejected), None))

    def secrets_manager_fails(self, failure: Exception) -> None:
        """Every read of the handler's own Secrets Manager client fails so, from now on."""

        def fail(**_: Any) -> None:
            raise failure

        assert self.hooks is not None
        self.hooks.add("before-send.secrets-manager.GetSecretValue", fail)

    def invoking(self, params: dict[str, Any], **_: Any) -> None:
        """The broker is about to invoke the refresher: record it, run the actions, and when the
        script says so, hold the function's slot so that Lambda (the endpoint) throttles it."""
        self.invokes.append(params)
        for action in self.invoke_actions:
            action()
        step = self.refresher.steps[0] if self.refresher.steps else None
        if step is not None and step.action is None:
            if step.payload != json.loads(params["Payload"]):
                self.refresher.unexpected.append(json.loads(params["Payload"]))
            self.refresher.steps.pop(0)
            busy = self.lambda_endpoint.occupied(REFRESHER)
            busy.__enter__()
            self.busy = busy

    def invoked(self, **_: Any) -> None:
        busy, self.busy = self.busy, None
        if busy is not None:
            busy.__exit__(None, None, None)


def _force_payload(rejected: str | None) -> dict[str, Any]:
    return {"force": True} if rejected is None else {"force": True, "rejected": rejected}


@pytest.fixture
def broker_log() -> Iterator[io.StringIO]:
    """Every log line of the broker, formatted as in CloudWatch (JSON, with all extra keys)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    service_logger = logging.getLogger(logger.name)
    service_logger.addHandler(handler)
    yield stream
    service_logger.removeHandler(handler)


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("secretsmanager")
        client.create_secret(Name=SECRET_ID, SecretString="placeholder")
        yield client


@pytest.fixture
def deploy(
    aws: Any, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, broker_log: io.StringIO
) -> Iterator[Callable[..., DeployedBroker]]:
    """Cold-start the broker with the given settings, as the template would set them."""
    refresher_function = ScriptedRefresher()
    hooks = SessionHooks()
    with LambdaEndpoint({REFRESHER: refresher_function}) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint.base_url)

        def start(
            *,
            refresher: str | None = REFRESHER,
            allowed: str = CALLER_ROLE,
            env: dict[str, str] | None = None,
        ) -> DeployedBroker:
            for name, value in (env or {}).items():
                monkeypatch.setenv(name, value)
            monkeypatch.setenv("ACCESS_TOKEN_SECRET_ID", SECRET_ID)
            monkeypatch.setenv("ALLOWED_PRINCIPALS", allowed)
            if refresher:
                monkeypatch.setenv("REFRESHER_FUNCTION_NAME", refresher)
            else:
                monkeypatch.delenv("REFRESHER_FUNCTION_NAME", raising=False)
            deployed = DeployedBroker(
                app=load_function("broker"),
                secrets=aws,
                context=lambda_context,
                lambda_endpoint=endpoint,
                refresher=refresher_function,
                hooks=hooks,
            )
            hooks.add(
                "before-call.secrets-manager.GetSecretValue",
                lambda **_: deployed.reads.append(SECRET_ID),
            )
            hooks.add("before-parameter-build.lambda.Invoke", deployed.invoking)
            hooks.add("after-call.lambda.Invoke", deployed.invoked)
            return deployed

        try:
            yield start
        finally:
            hooks.close()
    # An invoke nobody scripted fails the test that made it, and so does a scripted one the
    # broker never made.
    assert refresher_function.unexpected == []
    assert refresher_function.steps == []


def with_query(event_name: str, multi_value: dict[str, list[str]]) -> dict[str, Any]:
    event = load_event(event_name)
    event["multiValueQueryStringParameters"] = multi_value
    event["queryStringParameters"] = {name: values[-1] for name, values in multi_value.items()}
    return event


def with_route(event_name: str, method: str, path: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event(event_name))
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    event["path"] = path
    event["requestContext"]["path"] = f"/prod{path}"
    return event


def assert_error(answer: Answer, status: int, error_code: str) -> None:
    assert answer.status == status
    assert answer.body == {
        "errorCode": error_code,
        "message": answer.body["message"],
        "statusCode": str(status),
    }
    assert answer.body["message"]
    assert all(isinstance(line, str) for line in answer.body["message"])


def log_records(log: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.getvalue().splitlines()]


# --- 200 -------------------------------------------------------------------------------------


def test_auth_headers_hand_out_the_bearer_token_and_api_key(
    deploy: Callable[..., DeployedBroker],
) -> None:
    # Given a token with an hour left and an API key in the secret
    broker = deploy()
    expires_at = broker.put_token("one", 3600)
    # When an allowed caller asks for headers
    before = time.time()
    answer = broker.call(load_event("broker-auth-headers.json"))
    after = time.time()
    # Then both headers, the RFC 3339 expiry and the whole seconds left come back
    assert answer.status == 200
    assert answer.body["headers"] == {"Authorization": "Bearer access-one", "x-api-key": API_KEY}
    assert answer.body["expiresAt"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at))
    assert int(expires_at - after) <= answer.body["expiresIn"] <= int(expires_at - before)
    assert set(answer.body) == {"headers", "expiresAt", "expiresIn"}


def test_auth_headers_carry_no_api_key_when_the_secret_has_none(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy()
    broker.put_token("one", 3600, api_key=None)
    answer = broker.call(load_event("broker-auth-headers.json"))
    assert answer.body["headers"] == {"Authorization": "Bearer access-one"}


@pytest.mark.parametrize(
    "event_name",
    [
        "broker-auth-headers.json",
        "broker-auth-headers-min-ttl.json",
        "broker-health.json",
        "broker-no-identity.json",
    ],
)
def test_every_answer_is_json_that_no_cache_keeps(
    deploy: Callable[..., DeployedBroker], event_name: str
) -> None:
    broker = deploy()
    broker.put_token("one", 3600)
    answer = broker.call(load_event(event_name))
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Cache-Control"] == "no-store"


def test_error_answers_are_json_that_no_cache_keeps(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy(refresher=None)
    for event in (
        with_query("broker-auth-headers.json", {"minTtl": ["abc"]}),
        with_route("broker-auth-headers.json", "GET", "/v1/nope"),
        with_route("broker-auth-headers.json", "POST", "/v1/auth-headers"),
        load_event("broker-auth-headers.json"),  # placeholder secret: 503
    ):
        answer = broker.call(event)
        assert answer.status >= 400
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.headers["Cache-Control"] == "no-store"


def test_warm_container_serves_the_second_request_from_memory(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy()
    broker.put_token("one", 3600)
    broker.call(load_event("broker-auth-headers.json"))
    answer = broker.call(load_event("broker-auth-headers.json"))
    assert answer.status == 200
    assert broker.reads == [SECRET_ID]


# --- minTtl and the on-demand refresh ----------------------------------------------------------


def test_token_shorter_than_min_ttl_is_refreshed_on_demand_once(
    deploy: Callable[..., DeployedBroker],
) -> None:
    # Given a token with 10 minutes left, and a refresher that writes a fresh one when invoked
    broker = deploy()
    broker.put_token("old", 600)
    broker.refresher_answers("refreshed")
    broker.on_invoke(lambda: broker.put_token("new", 3600))
    # When a caller needs 15 minutes (the min-ttl event asks for 900 s)
    answer = broker.call(load_event("broker-auth-headers-min-ttl.json"))
    # Then the secret was read, the refresher forced once, the secret read again: the new token
    assert answer.status == 200
    assert answer.body["headers"]["Authorization"] == "Bearer access-new"
    assert broker.invokes == [FORCE_INVOKE]
    assert broker.reads == [SECRET_ID, SECRET_ID]


def test_cached_token_too_short_is_read_again_before_invoking_anything(
    deploy: Callable[..., DeployedBroker],
) -> None:
    # Given a warm container holding a 10-minute token, and a newer token already in the secret
    broker = deploy()
    broker.put_token("old", 600)
    broker.call(load_event("broker-auth-headers.json"))
    broker.put_token("new", 3600)
    # When a caller needs 15 minutes
    answer = broker.call(load_event("broker-auth-headers-min-ttl.json"))
    # Then the secret is read past the cache, and the refresher is left alone
    assert answer.body["headers"]["Authorization"] == "Bearer access-new"
    assert broker.reads == [SECRET_ID, SECRET_ID]
    assert broker.invokes == []


def test_throttled_refresher_then_a_refreshed_secret_is_a_200(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy()
    broker.put_token("old", 60)
    broker.refresher_throttled()
    broker.on_invoke(lambda: broker.put_token("new", 3600))
    answer = broker.call(load_event("broker-auth-headers.json"))
    assert answer.status == 200
    assert answer.body["headers"]["Authorization"] == "Bearer access-new"


def test_throttled_refresher_and_a_still_short_token_is_a_503_to_retry_soon(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy()
    broker.put_token("old", 60)
    broker.refresher_throttled()
    answer = broker.call(load_event("broker-auth-headers.json"))
    assert_error(answer, 503, "BROKER.0003")
    assert answer.headers["Retry-After"] == "5"
    assert len(broker.invokes) == 1
    assert broker.reads == [SECRET_ID, SECRET_ID]


def test_placeholder_secret_that_the_refresher_cannot_fill_is_a_503(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy()
    broker.refresher_answers("failed")
    answer = broker.call(load_event("broker-auth-headers.json"))
    assert_error(answer, 503, "BROKER.0003")
    assert answer.headers["Retry-After"] == "5"


def test_short_token_without_a_refresher_is_a_503_to_retry_later(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy(refresher=None)
    broker.put_token("old", 60)
    answer = broker.call(load_event("broker-auth-headers.json"))
    assert_error(answer, 503, "BROKER.0003")
    assert answer.headers["Retry-After"] == "30"


NO_REFRESHER = (
    "no refresher is configured (REFRESHER_FUNCTION_NAME is empty): the token is replaced only "
    "by the schedule"
)


def test_a_short_token_without_a_refresher_is_a_503_that_says_why(
    deploy: Callable[..., DeployedBroker],
) -> None:
    # Given a broker deployed without REFRESHER_FUNCTION_NAME, and a token too short
    broker = deploy(refresher=None)
    broker.put_token("old", 60)
    # When a caller asks / Then the 503 says nothing here can refresh it, only the schedule
    answer = broker.call(load_event("broker-auth-headers.json"))
    assert_error(answer, 503, "BROKER.0003")
    assert NO_REFRESHER in answer.body["message"]


def test_a_reported_token_without_a_refresher_is_a_503_that_says_why(
    deploy: Callable[..., DeployedBroker],
) -> None:
    # Given a broker without a refresher, and a caller reporting the token in hand
    broker = deploy(refresher=None)
    broker.put_token("old", 3600)
    # When the report comes / Then a 503 saying why, and never the reported token
    answer = broker.call(rejected_event(fingerprint("access-old")))
    assert_error(answer, 503, "BROKER.0003")
    assert NO_REFRESHER in answer.body["message"]
    assert "access-old" not in answer.text


def test_a_503_with_a_refresher_configured_does_not_blame_the_settings(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy()
    broker.put_token("old", 60)
    broker.refresher_answers("failed")
    answer = broker.call(load_event("broker-auth-headers.json"))
    assert_error(answer, 503, "BROKER.0003")
    assert "REFRESHER_FUNCTION_NAME" not in answer.text


def test_missing_secret_is_a_503_not_a_500(deploy: Callable[..., DeployedBroker], aws: Any) -> None:
    broker = deploy()
    aws.delete_secret(SecretId=SECRET_ID, ForceDeleteWithoutRecovery=True)
    answer = broker.call(load_event("broker-auth-headers.json"))
    assert_error(answer, 503, "BROKER.0003")
    assert "Retry-After" in answer.headers
    assert broker.invokes == []


# --- 400 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"minTtl": ["1.5"]},
        {"minTtl": ["-1"]},
        {"minTtl": ["1801"]},
        {"minTtl": ["abc"]},
        {"minTtl": [""]},
        {"minTtl": ["60", "600"]},
        {"minTtl": ["60"], "scope": ["all"]},
    ],
)
def test_invalid_query_is_a_400(
    deploy: Callable[..., DeployedBroker], query: dict[str, list[str]]
) -> None:
    broker = deploy()
    broker.put_token("one", 3600)
    answer = broker.call(with_query("broker-auth-headers.json", query))
    assert_error(answer, 400, "BROKER.0001")


def test_single_valued_query_is_read_when_api_gateway_sends_no_multi_value_form(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy()
    broker.put_token("one", 3600)
    event = load_event("broker-auth-headers.json")
    event["queryStringParameters"] = {"minTtl": "1801"}
    assert_error(broker.call(event), 400, "BROKER.0001")


# --- 403 --------------------------------------------------------------------------------------


def test_request_without_iam_identity_is_a_403_before_any_secret_read(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy(allowed="")
    broker.put_token("one", 3600)
    answer = broker.call(load_event("broker-no-identity.json"))
    assert_error(answer, 403, "BROKER.0002")
    assert broker.reads == []


def test_request_whose_event_has_no_identity_at_all_is_a_403(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy(allowed="")
    event = load_event("broker-auth-headers.json")
    del event["requestContext"]["identity"]
    assert_error(broker.call(event), 403, "BROKER.0002")


def test_health_without_iam_identity_is_a_403(deploy: Callable[..., DeployedBroker]) -> None:
    broker = deploy(allowed="")
    event = load_event("broker-no-identity.json")
    event["path"] = event["resource"] = "/v1/health"
    assert_error(broker.call(event), 403, "BROKER.0002")


@pytest.mark.parametrize(
    "allowed",
    [
        "arn:aws:iam::123456789012:role/ledger",
        "arn:aws:iam::210987654321:role/payments-api",
        "arn:aws:iam::123456789012:user/payments-api",
        "arn:aws:sts::123456789012:assumed-role/payments-api/i-0def",
    ],
)
def test_caller_not_in_allowed_principals_is_a_403(
    deploy: Callable[..., DeployedBroker], allowed: str
) -> None:
    broker = deploy(allowed=allowed)
    broker.put_token("one", 3600)
    for event_name in ("broker-auth-headers.json", "broker-health.json"):
        assert_error(broker.call(load_event(event_name)), 403, "BROKER.0002")
    assert broker.reads == []


@pytest.mark.parametrize(
    "allowed",
    [
        "",
        CALLER,
        CALLER_ROLE,
        f"arn:aws:iam::123456789012:user/ops-alice, {CALLER_ROLE}",
    ],
)
def test_allowed_caller_gets_headers(deploy: Callable[..., DeployedBroker], allowed: str) -> None:
    broker = deploy(allowed=allowed)
    broker.put_token("one", 3600)
    assert broker.call(load_event("broker-auth-headers.json")).status == 200


# --- 404, 405, 500 ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/nope", "/v1/auth-headers/extra", "/v2/health", "/"])
def test_unknown_route_is_a_404(deploy: Callable[..., DeployedBroker], path: str) -> None:
    broker = deploy()
    answer = broker.call(with_route("broker-auth-headers.json", "GET", path))
    assert_error(answer, 404, "BROKER.0004")


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/auth-headers"), ("DELETE", "/v1/auth-headers"), ("PUT", "/v1/health")],
)
def test_known_route_with_another_method_is_a_405(
    deploy: Callable[..., DeployedBroker], method: str, path: str
) -> None:
    broker = deploy()
    answer = broker.call(with_route("broker-auth-headers.json", method, path))
    assert_error(answer, 405, "BROKER.0005")
    assert answer.headers["Allow"] == "GET"


def test_unexpected_failure_is_a_500_with_no_detail_in_the_body(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    # Given a Secrets Manager client that fails in a way nobody planned for
    broker = deploy()

    def explode(**_: Any) -> None:
        raise RuntimeError("socket reset by gremlins")

    assert broker.hooks is not None
    broker.hooks.add("before-call.secrets-manager.GetSecretValue", explode)
    # When a caller asks
    answer = broker.call(load_event("broker-auth-headers.json"))
    # Then a bare 500, and the detail only in the log
    assert answer.body == {
        "errorCode": "BROKER.0000",
        "message": ["internal error"],
        "statusCode": "500",
    }
    assert "gremlins" not in answer.text
    assert "gremlins" in broker_log.getvalue()


# --- health -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds_left", "status"),
    [(3600, "ok"), (120, "refreshing"), (-10, "expired")],
)
def test_health_tells_the_state_of_the_token_without_the_token(
    deploy: Callable[..., DeployedBroker], seconds_left: int, status: str
) -> None:
    broker = deploy()
    expires_at = broker.put_token("one", seconds_left)
    before = time.time()
    answer = broker.call(load_event("broker-health.json"))
    after = time.time()
    assert answer.status == 200
    assert answer.body["status"] == status
    assert answer.body["expiresAt"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at))
    lowest, highest = int(expires_at - after), int(expires_at - before)
    assert max(lowest, 0) <= answer.body["expiresIn"] <= max(highest, 0)
    assert "access-one" not in answer.text
    assert API_KEY not in answer.text
    assert broker.invokes == []


@pytest.mark.parametrize("value", ["placeholder", "{}", '{"accessToken": "", "expiresAt": 1}'])
def test_health_of_a_placeholder_secret_is_missing(
    deploy: Callable[..., DeployedBroker], value: str
) -> None:
    broker = deploy()
    broker.put(value)
    answer = broker.call(load_event("broker-health.json"))
    assert answer.body == MISSING


def test_health_of_an_absent_secret_is_missing(
    deploy: Callable[..., DeployedBroker], aws: Any
) -> None:
    broker = deploy()
    aws.delete_secret(SecretId=SECRET_ID, ForceDeleteWithoutRecovery=True)
    answer = broker.call(load_event("broker-health.json"))
    assert answer.status == 200
    assert answer.body["status"] == "missing"


# --- where KillB is, when KillB last confirmed the token ---------------------------------------


def test_auth_headers_tell_the_killb_base_url_the_token_belongs_to(
    deploy: Callable[..., DeployedBroker],
) -> None:
    # Given a token the refresher published with its KILLB_BASE_URL
    broker = deploy()
    broker.put_token("one", 3600, base_url="https://killb.app")
    # When a caller asks for headers / Then the answer says where to send them
    answer = broker.call(load_event("broker-auth-headers.json"))
    assert answer.status == 200
    assert answer.body["killbBaseUrl"] == "https://killb.app"
    assert set(answer.body) == {"headers", "expiresAt", "expiresIn", "killbBaseUrl"}


def test_a_token_published_without_a_base_url_is_still_served_without_one(
    deploy: Callable[..., DeployedBroker],
) -> None:
    # Given a secret written by an older refresher, as it wrote them
    broker = deploy()
    expires_at = int(time.time()) + 3600
    broker.put(json.dumps({"accessToken": "access-old-format", "expiresAt": expires_at}))
    # When a caller asks / Then a 200 without killbBaseUrl
    answer = broker.call(load_event("broker-auth-headers.json"))
    assert answer.status == 200
    assert "killbBaseUrl" not in answer.body


def test_health_tells_when_killb_last_confirmed_the_token(
    deploy: Callable[..., DeployedBroker],
) -> None:
    # Given a token KillB confirmed at a known moment
    broker = deploy()
    checked_at = int(time.time()) - 600
    broker.put_token("one", 3600, checked_at=checked_at)
    # When health is asked / Then checkedAt is that moment, in RFC 3339 UTC like expiresAt
    body = broker.call(load_event("broker-health.json")).body
    assert body["checkedAt"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(checked_at))
    assert body["status"] == "ok"


@pytest.mark.parametrize(
    ("event_name", "schema"),
    [("broker-auth-headers.json", "AuthHeaders"), ("broker-health.json", "Health")],
)
def test_answers_with_every_field_match_the_openapi_document(
    deploy: Callable[..., DeployedBroker], event_name: str, schema: str
) -> None:
    broker = deploy()
    broker.put_token("one", 3600, base_url="https://killb.app", checked_at=int(time.time()))
    body = broker.call(load_event(event_name)).body
    OAS30Validator(resolved(SPEC["components"]["schemas"][schema])).validate(body)


def test_health_of_a_token_never_checked_says_checked_at_null(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy()
    broker.put_token("one", 3600)
    body = broker.call(load_event("broker-health.json")).body
    assert set(body) == {"status", "expiresAt", "expiresIn", "checkedAt"}
    assert body["checkedAt"] is None


# --- audit and secrecy ------------------------------------------------------------------------


AUDIT_KEYS = {
    "outcome",
    "status",
    "caller_arn",
    "source_ip",
    "route",
    "min_ttl",
    "token_fingerprint",
    "rejected_fingerprint",
    "expires_at",
    "reason",
}


def audits(log: io.StringIO) -> list[dict[str, Any]]:
    """The audit records, each cut to the keys of the audit's one shape."""
    records = [r for r in log_records(log) if r["message"] == AUDIT_MESSAGE]
    assert all(set(r) >= AUDIT_KEYS for r in records), records
    return [{key: r[key] for key in AUDIT_KEYS} for r in records]


def test_each_200_is_audited_once_with_caller_ip_fingerprint_and_expiry(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    broker = deploy()
    broker.put_token("one", 3600)
    answer = broker.call(load_event("broker-auth-headers-min-ttl.json"))
    assert audits(broker_log) == [
        {
            "outcome": "issued",
            "status": 200,
            "caller_arn": CALLER,
            "source_ip": "10.0.12.34",
            "route": "GET /v1/auth-headers",
            "min_ttl": 900,
            "token_fingerprint": fingerprint("access-one"),
            "rejected_fingerprint": None,
            "expires_at": answer.body["expiresAt"],
            "reason": "issued",
        }
    ]


def test_a_request_without_identity_is_audited_as_refused(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    broker = deploy(allowed="")
    broker.call(load_event("broker-no-identity.json"))
    (record,) = audits(broker_log)
    assert record["outcome"] == "refused"
    assert record["caller_arn"] is None
    assert record["source_ip"] == "10.0.12.34"
    assert record["min_ttl"] is None


def test_a_caller_not_allowed_is_audited_as_refused_by_its_arn(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    broker = deploy(allowed="arn:aws:iam::123456789012:role/ledger")
    broker.call(load_event("broker-health.json"))
    (record,) = audits(broker_log)
    assert (record["outcome"], record["caller_arn"]) == ("refused", CALLER)
    assert record["route"] == "GET /v1/health"


def test_a_request_no_token_can_serve_is_audited_as_unavailable(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    broker = deploy(refresher=None)
    broker.put_token("old", 60)
    broker.call(load_event("broker-auth-headers.json"))
    (record,) = audits(broker_log)
    assert record["outcome"] == "unavailable"
    assert (record["caller_arn"], record["min_ttl"]) == (CALLER, 300)
    assert record["token_fingerprint"] is None
    assert record["reason"]


@pytest.mark.parametrize(
    "event",
    [
        with_query("broker-auth-headers.json", {"minTtl": ["abc"]}),
        with_route("broker-auth-headers.json", "GET", "/v1/nope"),
        with_route("broker-auth-headers.json", "POST", "/v1/auth-headers"),
        {"warmer": True},
    ],
    ids=["bad-query", "no-route", "bad-method", "not-rest"],
)
def test_a_request_the_api_does_not_accept_is_audited_as_invalid(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO, event: dict[str, Any]
) -> None:
    broker = deploy()
    broker.call(copy.deepcopy(event))
    (record,) = audits(broker_log)
    assert record["outcome"] == "invalid"
    assert record["reason"]


def test_an_unexpected_failure_is_audited_with_status_500(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    # Given a Secrets Manager client that fails in a way nobody planned for
    broker = deploy()
    broker.secrets_manager_fails(RuntimeError("socket reset by gremlins"))
    # When a caller asks / Then its one audit record says 500: the broker's own failure, which
    # the canary's rollback alarm counts
    assert broker.call(load_event("broker-auth-headers.json")).status == 500
    (record,) = audits(broker_log)
    assert (record["status"], record["outcome"]) == (500, "unavailable")


def test_no_token_now_is_audited_with_status_503_never_500(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    # Given a token too short, and a refresher that cannot get a new one (KillB down)
    broker = deploy()
    broker.put_token("old", 60)
    broker.refresher_answers("failed")
    # When a caller asks / Then the audit says 503: not a failure of the broker's own
    assert broker.call(load_event("broker-auth-headers.json")).status == 503
    (record,) = audits(broker_log)
    assert (record["status"], record["outcome"]) == (503, "unavailable")


def test_every_audit_record_carries_the_status_answered(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    # Given a broker that answers a 200, a 400, a 403, a 404, a 405 and a 400 for a non-REST event
    broker = deploy(allowed=CALLER_ROLE)
    broker.put_token("one", 3600)
    events = [
        load_event("broker-auth-headers.json"),
        with_query("broker-auth-headers.json", {"minTtl": ["abc"]}),
        load_event("broker-no-identity.json"),
        with_route("broker-auth-headers.json", "GET", "/v1/nope"),
        with_route("broker-auth-headers.json", "POST", "/v1/auth-headers"),
        {"warmer": True},
    ]
    # When each is asked / Then each audit record holds the status its answer had
    statuses = [broker.call(copy.deepcopy(event)).status for event in events]
    assert statuses == [200, 400, 403, 404, 405, 400]
    assert [record["status"] for record in audits(broker_log)] == statuses


def test_a_healthy_health_check_hands_out_nothing_and_is_not_audited(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    broker = deploy()
    broker.put_token("one", 3600)
    assert broker.call(load_event("broker-health.json")).status == 200
    assert audits(broker_log) == []


def test_log_lines_carry_api_gateways_request_id_as_correlation_id(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    broker = deploy()
    broker.put_token("one", 3600)
    event = load_event("broker-auth-headers.json")
    broker.call(event)
    records = log_records(broker_log)
    assert records
    assert {r.get("correlation_id") for r in records} == {event["requestContext"]["requestId"]}


def test_refused_and_failed_requests_are_not_audited_as_issued(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    broker = deploy(refresher=None)
    broker.call(load_event("broker-no-identity.json"))
    broker.call(load_event("broker-auth-headers.json"))  # placeholder secret: 503
    assert all(r["outcome"] != "issued" for r in audits(broker_log))


def test_no_token_or_api_key_reaches_the_logs(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    # Given a refresh on demand, a 200, a health check, a 503 and a 403 in one container
    broker = deploy()
    broker.put_token("old", 60)
    broker.refresher_answers("refreshed")
    # Each new token has 1000 s: enough for the default minTtl, too short for 1800 (the 503).
    broker.on_invoke(lambda: broker.put_token("new", 1000))
    broker.call(load_event("broker-auth-headers.json"))
    broker.call(load_event("broker-health.json"))
    broker.call(load_event("broker-no-identity.json"))
    broker.refresher_throttled()
    assert broker.call(with_query("broker-auth-headers.json", {"minTtl": ["1800"]})).status == 503
    # Then the logs hold fingerprints, and never a token or the API key
    logs = broker_log.getvalue()
    assert fingerprint("access-new") in logs
    for secret in ("access-old", "access-new", API_KEY):
        assert secret not in logs


# --- configuration ----------------------------------------------------------------------------


def test_missing_secret_id_fails_the_cold_start_with_one_line_naming_it(
    aws: Any, monkeypatch: pytest.MonkeyPatch, broker_log: io.StringIO
) -> None:
    monkeypatch.delenv("ACCESS_TOKEN_SECRET_ID", raising=False)
    with pytest.raises(ConfigurationError):
        load_function("broker")
    records = log_records(broker_log)
    assert len(records) == 1
    assert records[0]["level"] == "ERROR"
    assert "ACCESS_TOKEN_SECRET_ID" in records[0]["message"]


# --- hardening: whatever Secrets Manager does, whatever the secret holds -----------------------


def aws_error(code: str, status: int = 400) -> ClientError:
    """Secrets Manager's answer with this error code and HTTP status."""
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "GetSecretValue")


SECRETS_MANAGER_FAILURES = [
    pytest.param(aws_error("ThrottlingException"), id="throttled"),
    pytest.param(aws_error("InternalServiceError", 500), id="internal-error"),
    pytest.param(aws_error("ServiceUnavailable", 503), id="service-unavailable"),
    pytest.param(EndpointConnectionError(endpoint_url=SM_URL), id="connection-refused"),
    pytest.param(ConnectionClosedError(endpoint_url=SM_URL), id="connection-lost"),
    pytest.param(ReadTimeoutError(endpoint_url=SM_URL), id="read-timeout"),
    pytest.param(ConnectTimeoutError(endpoint_url=SM_URL), id="connect-timeout"),
    pytest.param(aws_error("AccessDeniedException"), id="access-denied"),
    pytest.param(aws_error("DecryptionFailure"), id="kms-decrypt-failure"),
]


@pytest.mark.parametrize("failure", SECRETS_MANAGER_FAILURES)
def test_secrets_manager_failing_is_a_503_with_retry_after(
    deploy: Callable[..., DeployedBroker], failure: Exception
) -> None:
    # Given a Secrets Manager that fails every read (after botocore's retries)
    broker = deploy(refresher=None)
    broker.secrets_manager_fails(failure)
    # When a caller asks for headers / Then "no token now, retry later", not a 500
    answer = broker.call(load_event("broker-auth-headers.json"))
    assert_error(answer, 503, "BROKER.0003")
    assert answer.headers["Retry-After"].isdigit()


@pytest.mark.parametrize("failure", SECRETS_MANAGER_FAILURES)
def test_health_keeps_answering_while_secrets_manager_fails(
    deploy: Callable[..., DeployedBroker], failure: Exception
) -> None:
    broker = deploy()
    broker.secrets_manager_fails(failure)
    answer = broker.call(load_event("broker-health.json"))
    assert answer.status == 200
    assert answer.body == MISSING


def test_a_secret_scheduled_for_deletion_is_a_503_and_health_missing(
    deploy: Callable[..., DeployedBroker], aws: Any
) -> None:
    broker = deploy()
    aws.delete_secret(SecretId=SECRET_ID, RecoveryWindowInDays=7)
    answer = broker.call(load_event("broker-auth-headers.json"))
    assert_error(answer, 503, "BROKER.0003")
    assert "Retry-After" in answer.headers
    assert broker.call(load_event("broker-health.json")).body["status"] == "missing"
    assert broker.invokes == []


@pytest.mark.parametrize(
    "expires_at",
    ['"soon"', "1.5e9", "1795831200.5", "1e400", str(10**30), str(-(10**30)), "true", "null"],
)
def test_a_stored_expiry_that_is_no_unix_time_is_a_503_and_health_missing(
    deploy: Callable[..., DeployedBroker], expires_at: str
) -> None:
    # Given a secret whose expiresAt is not a whole number, or absurdly far from now
    broker = deploy(refresher=None)
    broker.put(f'{{"accessToken": "access-odd", "expiresAt": {expires_at}}}')
    # When callers ask / Then no token is served and nothing crashes formatting the expiry
    assert_error(broker.call(load_event("broker-auth-headers.json")), 503, "BROKER.0003")
    health = broker.call(load_event("broker-health.json"))
    assert health.body == MISSING


def test_a_stored_expiry_more_than_a_day_ahead_is_not_served(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy(refresher=None)
    broker.put_token("year-33000", 10**15 // 1000)
    assert_error(broker.call(load_event("broker-auth-headers.json")), 503, "BROKER.0003")
    assert broker.call(load_event("broker-health.json")).body["status"] == "missing"


def test_a_stored_expiry_in_the_past_is_expired_for_health(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy(refresher=None)
    broker.put_token("gone", -3 * 86_400)
    assert_error(broker.call(load_event("broker-auth-headers.json")), 503, "BROKER.0003")
    assert broker.call(load_event("broker-health.json")).body["status"] == "expired"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("accessToken", ""),
        ("accessToken", "   "),
        ("accessToken", "access-one\r\nX-Injected: yes"),
        ("accessToken", "access-one\u0000"),
        ("accessToken", "access-\u00fcne"),
        ("apiKey", "key\r\nX-Injected: yes"),
        ("apiKey", " key"),
    ],
)
def test_a_stored_token_or_api_key_a_header_cannot_carry_is_never_served(
    deploy: Callable[..., DeployedBroker], field: str, value: str
) -> None:
    # Given a secret whose token or API key would break (or inject) a header
    broker = deploy(refresher=None)
    stored = {"accessToken": "access-one", "expiresAt": int(time.time()) + 3600, "apiKey": "k"}
    secret_string = json.dumps(stored).replace(f'"{stored[field]}"', f'"{value}"', 1)
    broker.put(secret_string)
    # When a caller asks / Then no Bearer header is built from it
    answer = broker.call(load_event("broker-auth-headers.json"))
    assert_error(answer, 503, "BROKER.0003")
    assert broker.call(load_event("broker-health.json")).body["status"] == "missing"


NOT_REST_EVENTS = [
    pytest.param(load_event("broker-http-api-v2.json"), id="http-api-v2"),
    pytest.param({}, id="empty"),
    pytest.param({"warmer": True}, id="warmer"),
    pytest.param({"key1": "value1", "key2": "value2", "key3": "value3"}, id="console-test"),
    pytest.param([], id="list"),
    pytest.param("ping", id="string"),
    pytest.param(None, id="null"),
    pytest.param({"httpMethod": "GET", "path": ["/v1/health"]}, id="path-not-a-string"),
    pytest.param(
        {"httpMethod": "GET", "path": "/v1/health", "requestContext": "x"}, id="context-not-a-map"
    ),
    pytest.param({"httpMethod": "GET", "path": "/v1/health", "headers": []}, id="headers-a-list"),
]


@pytest.mark.parametrize("event", NOT_REST_EVENTS)
def test_an_event_that_is_not_a_rest_request_gets_a_400_not_a_function_error(
    deploy: Callable[..., DeployedBroker], event: Any
) -> None:
    # Given an event API Gateway's REST proxy would never send
    broker = deploy()
    broker.put_token("one", 3600)
    # When the handler is invoked with it / Then it answers in the documented error shape
    answer = broker.call(copy.deepcopy(event))
    assert_error(answer, 400, "BROKER.0001")
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Cache-Control"] == "no-store"
    assert broker.reads == []


# --- rejected tokens --------------------------------------------------------------------------


def rejected_event(fingerprint_reported: str, min_ttl: str | None = None) -> dict[str, Any]:
    query = {"rejected": [fingerprint_reported]} | ({"minTtl": [min_ttl]} if min_ttl else {})
    return with_query("broker-auth-headers-rejected.json", query)


def test_a_revoked_token_the_refresher_cleared_is_never_handed_out_again(
    deploy: Callable[..., DeployedBroker],
) -> None:
    # Given a warm broker that handed out token old
    broker = deploy()
    broker.put_token("old", 3600)
    assert broker.call(load_event("broker-auth-headers.json")).status == 200
    # And a revoke that got no new token: the refresher logged old out and cleared the secret
    broker.put("{}")
    broker.refresher_answers("failed")
    # When a caller KillB refused reports old
    answer = broker.call(rejected_event(fingerprint("access-old")))
    # Then a 503 to retry later, never old; and health says no token is to be had
    assert_error(answer, 503, "BROKER.0003")
    assert "Retry-After" in answer.headers
    assert "access-old" not in answer.text
    assert broker.call(load_event("broker-health.json")).body == MISSING


def test_a_cleared_secret_is_a_503_and_health_missing_for_a_new_container(
    deploy: Callable[..., DeployedBroker],
) -> None:
    # Given the access-token secret a failed revoke left behind, and a refresher that still fails
    broker = deploy()
    broker.put("{}")
    broker.refresher_answers("failed")
    # When a caller asks, and health is asked / Then 503 and missing
    assert_error(broker.call(load_event("broker-auth-headers.json")), 503, "BROKER.0003")
    assert broker.call(load_event("broker-health.json")).body == MISSING


def test_the_rejected_event_reports_a_fingerprint() -> None:
    event = load_event("broker-auth-headers-rejected.json")
    assert list(event["multiValueQueryStringParameters"]) == ["rejected"]


def test_a_reported_token_in_hand_is_replaced_and_never_served_again(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    # Given a warm broker that handed out token old, which KillB then refused
    broker = deploy()
    broker.put_token("old", 3600)
    broker.call(load_event("broker-auth-headers.json"))
    old = fingerprint("access-old")
    broker.refresher_answers("refreshed", rejected=old)
    broker.on_invoke(lambda: broker.put_token("new", 3600))
    # When a caller reports old
    answer = broker.call(rejected_event(old))
    # Then the refresher was run once for old, and the caller gets new
    assert answer.status == 200
    assert answer.body["headers"]["Authorization"] == "Bearer access-new"
    assert broker.invokes == [force_invoke(REFRESHER, old)]
    # And the report is audited with what was reported and what was issued
    report = audits(broker_log)[-1]
    assert report["rejected_fingerprint"] == old
    assert report["token_fingerprint"] == fingerprint("access-new")
    assert report["outcome"] == "issued"


def test_a_report_of_an_old_token_changes_nothing(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    broker = deploy()
    broker.put_token("current", 3600)
    answer = broker.call(rejected_event(fingerprint("access-long-gone")))
    assert answer.body["headers"]["Authorization"] == "Bearer access-current"
    assert broker.invokes == []
    assert audits(broker_log)[-1]["rejected_fingerprint"] == fingerprint("access-long-gone")


def test_a_reported_token_the_refresher_cannot_replace_is_a_503_soon(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    broker = deploy()
    broker.put_token("old", 3600)
    broker.refresher_answers("failed", rejected=fingerprint("access-old"))
    answer = broker.call(rejected_event(fingerprint("access-old")))
    assert_error(answer, 503, "BROKER.0003")
    assert answer.headers["Retry-After"] == "5"
    assert "access-old" not in answer.text
    report = audits(broker_log)[-1]
    assert (report["outcome"], report["rejected_fingerprint"]) == (
        "unavailable",
        fingerprint("access-old"),
    )


def test_a_reported_token_while_the_refresher_runs_reads_the_secret_again(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy()
    broker.put_token("old", 3600)
    broker.refresher_throttled(rejected=fingerprint("access-old"))
    broker.on_invoke(lambda: broker.put_token("new", 3600))
    answer = broker.call(rejected_event(fingerprint("access-old")))
    assert answer.body["headers"]["Authorization"] == "Bearer access-new"


@pytest.mark.parametrize("reported", ["", "ABCDEF012345", "abc", "0123456789abc", "zzzzzzzzzzzz"])
def test_a_malformed_fingerprint_is_a_400(
    deploy: Callable[..., DeployedBroker], reported: str
) -> None:
    broker = deploy()
    broker.put_token("one", 3600)
    assert_error(broker.call(rejected_event(reported)), 400, "BROKER.0001")
    assert broker.invokes == []


def test_each_report_is_counted(
    deploy: Callable[..., DeployedBroker], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a broker, When two callers report an old token / Then two RejectedTokenReports
    broker = deploy()
    broker.put_token("current", 3600)
    capsys.readouterr()
    broker.call(rejected_event(fingerprint("access-old")))
    broker.call(rejected_event(fingerprint("access-old"), min_ttl="60"))
    broker.call(load_event("broker-auth-headers.json"))
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    assert [m.get("RejectedTokenReports") for m in emitted] == [[1.0], [1.0]]


# --- sam local -------------------------------------------------------------------------------

SAM_LOCAL = {"AWS_SAM_LOCAL": "true", "LOCAL_CALLER_ARN": CALLER}


def test_sam_local_serves_an_event_without_identity_as_the_local_caller(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO
) -> None:
    # Given the broker in sam local's container, which cannot emulate AWS_IAM
    broker = deploy(env=SAM_LOCAL)
    broker.put_token("one", 3600)
    # When a request without any IAM identity comes in (what `sam local start-api` sends)
    answer = broker.call(load_event("broker-no-identity.json"))
    # Then LOCAL_CALLER_ARN stands in for the caller, and the log says why
    assert answer.status == 200
    assert answer.body["headers"]["Authorization"] == "Bearer access-one"
    warnings = [r for r in log_records(broker_log) if r["level"] == "WARNING"]
    assert any("sam local cannot emulate AWS_IAM" in r["message"] for r in warnings)


def test_sam_local_still_checks_the_local_caller_against_allowed_principals(
    deploy: Callable[..., DeployedBroker],
) -> None:
    broker = deploy(env=SAM_LOCAL, allowed="arn:aws:iam::123456789012:role/ledger")
    broker.put_token("one", 3600)
    assert_error(broker.call(load_event("broker-no-identity.json")), 403, "BROKER.0002")


def test_sam_local_keeps_the_identity_an_event_carries(
    deploy: Callable[..., DeployedBroker],
) -> None:
    # Given a local caller who is allowed, and an event naming another caller who is not
    broker = deploy(env=SAM_LOCAL, allowed=CALLER)
    broker.put_token("one", 3600)
    event = load_event("broker-auth-headers.json")
    event["requestContext"]["identity"]["userArn"] = "arn:aws:iam::123456789012:user/ops-alice"
    # Then the event's identity decides: the local caller is only for events without one
    assert_error(broker.call(event), 403, "BROKER.0002")


@pytest.mark.parametrize("sam_local", [None, "false"])
def test_without_sam_local_the_local_caller_changes_nothing(
    deploy: Callable[..., DeployedBroker], broker_log: io.StringIO, sam_local: str | None
) -> None:
    # Given LOCAL_CALLER_ARN set where Lambda runs (no AWS_SAM_LOCAL=true)
    env = {"LOCAL_CALLER_ARN": CALLER} | ({"AWS_SAM_LOCAL": sam_local} if sam_local else {})
    broker = deploy(env=env)
    broker.put_token("one", 3600)
    # When a request without identity comes in / Then it is refused as always, before any read
    assert_error(broker.call(load_event("broker-no-identity.json")), 403, "BROKER.0002")
    assert broker.reads == []
    # And the cold start said once that the setting is ignored
    ignored = [r for r in log_records(broker_log) if "LOCAL_CALLER_ARN" in r["message"]]
    assert len(ignored) == 1
    assert ignored[0]["level"] == "WARNING"


def test_sam_local_with_a_malformed_local_caller_fails_the_cold_start(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCESS_TOKEN_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("AWS_SAM_LOCAL", "true")
    monkeypatch.setenv("LOCAL_CALLER_ARN", "payments-api")
    with pytest.raises(ConfigurationError, match="LOCAL_CALLER_ARN"):
        load_function("broker")


def test_a_refresher_that_is_neither_a_name_nor_an_arn_fails_the_cold_start_naming_it(
    aws: Any, monkeypatch: pytest.MonkeyPatch, broker_log: io.StringIO
) -> None:
    monkeypatch.setenv("ACCESS_TOKEN_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("REFRESHER_FUNCTION_NAME", "arn:aws:lambda:eu-west-1:refresher")
    with pytest.raises(ConfigurationError, match="REFRESHER_FUNCTION_NAME"):
        load_function("broker")
    (record,) = log_records(broker_log)
    assert record["level"] == "ERROR"
    assert "REFRESHER_FUNCTION_NAME" in record["message"]


def test_malformed_allowed_principals_fail_the_cold_start(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCESS_TOKEN_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("ALLOWED_PRINCIPALS", "payments-api")
    with pytest.raises(ConfigurationError, match="ALLOWED_PRINCIPALS"):
        load_function("broker")


# --- many callers, one rejected token, the real refresher -------------------------------------

REPORTING_CALLERS = 8


@pytest.fixture
def refresher_endpoint(
    refresher: RefresherHarness, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LambdaEndpoint]:
    """The harness's refresher handler behind the local Lambda endpoint, one run at a time, as
    the brokers' REFRESHER_FUNCTION_NAME resolves it."""
    with LambdaEndpoint({REFRESHER: refresher.app.lambda_handler}) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint.base_url)
        monkeypatch.setenv("REFRESHER_FUNCTION_NAME", REFRESHER)
        monkeypatch.setenv("ALLOWED_PRINCIPALS", "")
        yield endpoint


def test_many_callers_reporting_one_token_at_once_cause_one_refresh(
    refresher: RefresherHarness, refresher_endpoint: LambdaEndpoint, lambda_context: Any
) -> None:
    # Given a logged-in stack, and broker containers that each handed out its token
    refresher.run()
    old = refresher.access_token()
    containers = [load_function("broker") for _ in range(REPORTING_CALLERS)]
    for app in containers:
        assert (
            app.lambda_handler(load_event("broker-auth-headers.json"), lambda_context)["statusCode"]
            == 200
        )
    # And KillB slow to answer the refresh, so that the reports overlap the refresher's run
    refresher.sandbox.inject("refresh", Delay(seconds=0.5))
    # When KillB refuses that token and every caller reports it at the same moment
    refresher.sandbox.revoke(old)
    start = threading.Barrier(REPORTING_CALLERS)
    event = rejected_event(fingerprint(old))

    def report(app: ModuleType) -> dict[str, Any]:
        start.wait()
        answer: dict[str, Any] = app.lambda_handler(copy.deepcopy(event), lambda_context)
        return answer

    with ThreadPoolExecutor(REPORTING_CALLERS) as pool:
        answers = list(pool.map(report, containers))
    # Then KillB saw one refresh, and no caller got the rejected token back
    assert refresher.sandbox.count("refresh") == 1
    new = refresher.access_token()
    assert new != old
    for answer in answers:
        assert answer["statusCode"] in (200, 503), answer
        if answer["statusCode"] == 200:
            assert json.loads(answer["body"])["headers"]["Authorization"] == f"Bearer {new}"
        else:
            assert answer["headers"]["Retry-After"] == "5"
    assert any(answer["statusCode"] == 200 for answer in answers)
    payloads = refresher_endpoint.payloads(REFRESHER)
    assert payloads
    assert all(p == {"force": True, "rejected": fingerprint(old)} for p in payloads)
    # And when the callers that were told to retry do, they get the new token, still no refresh
    for app, answer in zip(containers, answers, strict=True):
        if answer["statusCode"] == 503:
            retried = app.lambda_handler(copy.deepcopy(event), lambda_context)
            assert json.loads(retried["body"])["headers"]["Authorization"] == f"Bearer {new}"
    assert refresher.sandbox.count("refresh") == 1
    assert refresher.sandbox.count("login") == 1
