"""Fuzzing the broker: generated API Gateway events (methods, paths, query strings, headers,
identities, whole events) against the real handler over moto. Whatever comes in, the answer is
the documented one (docs/spec.md, "Broker API"): no 5xx but a 503 BROKER.0003, every error in
KillB's shape, Cache-Control: no-store always."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from killb_broker.store import access_token_to_json
from killb_broker.tokens import AccessToken
from killb_sandbox.accounts import SANDBOX_API_KEY, SANDBOX_PASSWORD
from tests.support import load_event, load_function

SECRET_ID = "killb-fuzz/access-token"
ALLOWED_ROLE = "arn:aws:iam::123456789012:role/payments-api"
ALLOWED_SESSION = "arn:aws:sts::123456789012:assumed-role/payments-api/i-0abc"
TOKEN_SECONDS_LEFT = 1000  # a minTtl above this sends the broker to the refresher, then 503
ERROR_CODES = {400: "BROKER.0001", 403: "BROKER.0002", 404: "BROKER.0004",
               405: "BROKER.0005", 503: "BROKER.0003"}  # fmt: skip
ROUTES = ("/v1/auth-headers", "/v1/health")
BASE_EVENT = load_event("broker-auth-headers.json")

# Together > 1,000 generated requests; derandomized so CI sees the same ones every run.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


Answer = tuple[int, dict[str, str], Any]  # status, headers, body
Broker = Callable[[dict[str, Any]], Answer]


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch, lambda_context: Any) -> Iterator[Broker]:
    """A warm broker with a token of 1000 s; its refresher invoke reaches no function (moto).
    Called with an event, it answers (status, headers, body)."""
    with mock_aws():
        token = AccessToken(
            "fuzz-access-9c1e77d2", int(time.time()) + TOKEN_SECONDS_LEFT, api_key="fuzz-key-52ab"
        )
        boto3.client("secretsmanager").create_secret(
            Name=SECRET_ID, SecretString=access_token_to_json(token)
        )
        monkeypatch.setenv("ACCESS_TOKEN_SECRET_ID", SECRET_ID)
        monkeypatch.setenv("REFRESHER_FUNCTION_NAME", "killb-fuzz-refresher")
        monkeypatch.setenv("ALLOWED_PRINCIPALS", ALLOWED_ROLE)
        app = load_function("broker")

        def answer(request: dict[str, Any]) -> Answer:
            response = app.lambda_handler(request, lambda_context)
            return response["statusCode"], response["headers"], json.loads(response["body"])

        yield answer


# Hypothesis also draws on string constants of the code it has loaded, the sandbox's password
# among them: a caller ARN that happens to be a secret would be logged (the audit names every
# caller) and fail the leak check, though no secret of the broker's leaked.
texts = st.text(max_size=40).filter(
    lambda text: SANDBOX_PASSWORD not in text and SANDBOX_API_KEY not in text
)
min_ttl_values = st.one_of(
    st.integers(-100, 5000).map(str),
    # Digits of other scripts (Arabic-Indic, full-width) that int() would parse.
    st.sampled_from(["", " 300", "300.0", "1e3", "0x10", "+5", "-0", "1" * 12]),
    st.sampled_from(["\u0663\u0660\u0660", "\uff13\uff10\uff10"]),
    texts,
)
queries = st.one_of(
    st.none(),
    st.dictionaries(
        st.one_of(st.just("minTtl"), st.sampled_from(["mintTtl", "MINTTL", "x"]), texts),
        st.lists(min_ttl_values, min_size=1, max_size=3),
        max_size=3,
    ),
)
methods = st.one_of(
    st.sampled_from(["GET", "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8),
)
paths = st.one_of(
    st.sampled_from(
        [*ROUTES, *ROUTES, "/", "/v1", "/v1/auth-headers/", "/V1/HEALTH", "/v2/health"]
    ),
    texts.map(lambda text: "/" + text),
    st.sampled_from(ROUTES).flatmap(lambda route: texts.map(lambda tail: route + tail)),
)
headers = st.dictionaries(
    st.one_of(
        st.sampled_from(["Authorization", "Cache-Control", "X-Forwarded-For", "Host"]), texts
    ),
    texts,
    max_size=4,
)
caller_arns = st.one_of(
    st.sampled_from([ALLOWED_SESSION, ALLOWED_SESSION, ALLOWED_ROLE, None, "",
                     "arn:aws:sts::123456789012:assumed-role/reporting/i-0def",
                     "arn:aws:iam::123456789012:user/payments-api",
                     "arn:aws:sts::123456789012:assumed-role/payments-api",
                     "arn:aws:sts::999999999999:assumed-role/payments-api/i-0abc",
                     "arn:aws-cn:sts::123456789012:assumed-role/payments-api/x",
                     "arn:aws:sts::123456789012:assumed-role//i-0abc", "*", "arn:*"]),
    texts,
)  # fmt: skip
identities = st.one_of(
    st.just("no requestContext"),
    st.just("no identity"),
    st.fixed_dictionaries({"userArn": caller_arns, "sourceIp": st.one_of(st.none(), texts)}),
)


def event(
    method: str,
    path: str,
    query: dict[str, list[str]] | None,
    extra_headers: dict[str, str],
    identity: Any,
) -> dict[str, Any]:
    built = copy.deepcopy(BASE_EVENT)
    built["httpMethod"] = built["requestContext"]["httpMethod"] = method
    built["path"] = path
    built["requestContext"]["path"] = f"/prod{path}"
    built["multiValueQueryStringParameters"] = query
    built["queryStringParameters"] = (
        {name: values[-1] for name, values in query.items()} if query is not None else None
    )
    built["headers"] |= extra_headers
    built["multiValueHeaders"] |= {name: [value] for name, value in extra_headers.items()}
    if identity == "no requestContext":
        del built["requestContext"]
    elif identity == "no identity":
        del built["requestContext"]["identity"]
    else:
        built["requestContext"]["identity"] |= identity
    return built


def assert_documented(status: int, response_headers: dict[str, str], body: Any) -> None:
    assert response_headers.get("Cache-Control") == "no-store"
    assert status < 500 or status == 503, body
    if status == 200:
        assert isinstance(body, dict)
        assert set(body) in ({"headers", "expiresAt", "expiresIn"},
                             {"headers", "expiresAt", "expiresIn", "killbBaseUrl"},
                             {"status", "expiresAt", "expiresIn", "checkedAt"})  # fmt: skip
        return
    assert body == {
        "errorCode": ERROR_CODES[status],
        "message": body["message"],
        "statusCode": str(status),
    }
    assert body["message"]
    assert all(isinstance(line, str) for line in body["message"])
    if status == 503:
        assert response_headers["Retry-After"].isdigit()


@FUZZ
@given(query=queries)
def test_any_query_string_gets_a_documented_answer(
    broker: Broker, query: dict[str, list[str]] | None
) -> None:
    # Given an allowed caller, When it asks for headers with any query string
    status, response_headers, body = broker(
        event("GET", "/v1/auth-headers", query, {}, {"userArn": ALLOWED_SESSION})
    )
    # Then the answer is the documented one: 200, 400 for a bad query, 503 for a minTtl too long
    assert_documented(status, response_headers, body)
    assert status in (200, 400, 503)


@FUZZ
@given(method=methods, path=paths)
def test_any_method_and_path_gets_a_documented_answer(
    broker: Broker, method: str, path: str
) -> None:
    # Given an allowed caller, When it sends any method to any path
    status, response_headers, body = broker(
        event(method, path, None, {}, {"userArn": ALLOWED_SESSION})
    )
    # Then a known route with GET answers 200, another method 405, anything else 404
    assert_documented(status, response_headers, body)
    if path in ROUTES:
        assert status == (200 if method == "GET" else 405)
        if status == 405:
            assert response_headers["Allow"] == "GET"


@FUZZ
@given(extra_headers=headers, query=queries)
def test_any_headers_get_a_documented_answer(
    broker: Broker, extra_headers: dict[str, str], query: dict[str, list[str]] | None
) -> None:
    # Given an allowed caller, When its request carries any headers
    status, response_headers, body = broker(
        event("GET", "/v1/auth-headers", query, extra_headers, {"userArn": ALLOWED_SESSION}),
    )
    # Then the headers change nothing about the shape of the answer
    assert_documented(status, response_headers, body)


@FUZZ
@given(identity=identities, path=st.sampled_from(ROUTES))
def test_any_identity_gets_a_documented_answer(broker: Broker, identity: Any, path: str) -> None:
    # Given any identity API Gateway might pass on (none, odd ARNs, other callers)
    status, response_headers, body = broker(event("GET", path, None, {}, identity))
    # Then only the allowed role's sessions get a 200; everyone else a 403
    assert_documented(status, response_headers, body)
    allowed = isinstance(identity, dict) and identity["userArn"] in (ALLOWED_SESSION, ALLOWED_ROLE)
    assert status == (200 if allowed else 403)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
event_keys = st.sampled_from(
    [
        "httpMethod",
        "path",
        "resource",
        "requestContext",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "body",
        "isBase64Encoded",
        "version",
        "rawPath",
    ]
)


@FUZZ
@given(event=st.one_of(json_values, st.dictionaries(event_keys, json_values, max_size=6)))
def test_any_event_at_all_gets_a_documented_answer(broker: Broker, event: Any) -> None:
    # Given any JSON the function might be invoked with (a console test, a warmer, another
    # trigger), When the handler gets it / Then an answer in the documented shape, no exception
    status, response_headers, body = broker(event)
    assert_documented(status, response_headers, body)


@FUZZ
@given(key=event_keys, value=json_values)
def test_a_rest_event_with_any_one_field_replaced_gets_a_documented_answer(
    broker: Broker, key: str, value: Any
) -> None:
    # Given a real REST event with one field replaced by anything
    built = copy.deepcopy(BASE_EVENT)
    built[key] = value
    # When the handler gets it / Then an answer in the documented shape, no exception
    status, response_headers, body = broker(built)
    assert_documented(status, response_headers, body)
