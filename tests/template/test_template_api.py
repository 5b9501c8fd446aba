"""The broker's API as deployed: AWS_IAM on every method, the contract's routes, API Gateway's
own answers in the contract's error shape, access logs without headers, who may call."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.template.stack import ACCOUNT_ID, Resources, evaluate, translated_template

CONTRACT_ROUTES = {"/v1/auth-headers": {"get"}, "/v1/health": {"get"}}

# API Gateway's own answers -> (status, errorCode) in the contract's table.
GATEWAY_ANSWERS = {
    "MISSING_AUTHENTICATION_TOKEN": ("403", "BROKER.0002"),
    "INVALID_SIGNATURE": ("403", "BROKER.0002"),
    "EXPIRED_TOKEN": ("403", "BROKER.0002"),
    "ACCESS_DENIED": ("403", "BROKER.0002"),
    "UNAUTHORIZED": ("403", "BROKER.0002"),
    "RESOURCE_NOT_FOUND": ("404", "BROKER.0004"),
    "THROTTLED": ("429", "BROKER.0003"),
    "INTEGRATION_TIMEOUT": ("503", "BROKER.0003"),
    "BAD_REQUEST_PARAMETERS": ("400", "BROKER.0001"),
    "DEFAULT_4XX": ("400", "BROKER.0001"),
    "DEFAULT_5XX": ("500", "BROKER.0000"),
}


def api_body(resources: Resources) -> dict[str, Any]:
    body: dict[str, Any] = resources["BrokerApi"]["Properties"]["Body"]
    return body


def stage(resources: Resources) -> dict[str, Any]:
    (found,) = [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    properties: dict[str, Any] = found["Properties"]
    return properties


def resource_policy_callers(parameters: dict[str, str]) -> dict[str, list[str]]:
    """The resource policy's allowed principals and the deny's exceptions, for these values."""
    body = api_body(translated_template(parameters)["Resources"])
    conditions = {"CallersDefaultToThisAccount": not parameters.get("AllowedCallerPrincipals")}
    policy = evaluate(body["x-amazon-apigateway-policy"], parameters, conditions)
    (allow,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    (deny,) = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    return {
        "allowed": allow["Principal"]["AWS"],
        "deny_unless_arn": deny["Condition"]["StringNotLike"]["aws:PrincipalArn"],
        "deny_unless_account": deny["Condition"]["StringNotEquals"]["aws:PrincipalAccount"],
    }


def test_api_serves_exactly_the_contract_routes(resources: Resources) -> None:
    paths = api_body(resources)["paths"]

    assert {path: set(methods) for path, methods in paths.items()} == CONTRACT_ROUTES


def test_every_api_method_requires_a_sigv4_signature(resources: Resources) -> None:
    body = api_body(resources)

    # Then every method names the AWS_IAM scheme, and that scheme is SigV4
    for path, methods in body["paths"].items():
        for method, operation in methods.items():
            assert operation["security"] == [{"AWS_IAM": []}], (path, method)
    scheme = body["components"]["securitySchemes"]["AWS_IAM"]
    assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4"


def test_api_invokes_the_broker_with_its_own_permission_not_the_callers(
    resources: Resources,
) -> None:
    # SAM's default for AWS_IAM would pass the caller's credentials on to Lambda.
    for methods in api_body(resources)["paths"].values():
        for operation in methods.values():
            assert "credentials" not in operation["x-amazon-apigateway-integration"]


@pytest.mark.parametrize("response_type", sorted(GATEWAY_ANSWERS))
def test_gateway_answer_has_the_contract_error_shape(
    resources: Resources, response_type: str
) -> None:
    # Given API Gateway's own answer of this type
    answer = api_body(resources)["x-amazon-apigateway-gateway-responses"][response_type]

    # When its body template is read as JSON (it has no variables to fill in)
    body = json.loads(answer["responseTemplates"]["application/json"])

    # Then it has exactly KillB's error shape, with the status and code of the contract's table
    status, error_code = GATEWAY_ANSWERS[response_type]
    assert set(body) == {"errorCode", "message", "statusCode"}
    assert re.fullmatch(r"BROKER\.\d{4}", body["errorCode"])
    assert body["errorCode"] == error_code
    assert body["statusCode"] == status == answer["statusCode"]
    assert isinstance(body["message"], list)
    assert all(isinstance(line, str) and line for line in body["message"])


@pytest.mark.parametrize("response_type", sorted(GATEWAY_ANSWERS))
def test_gateway_answer_is_never_cached(resources: Resources, response_type: str) -> None:
    answer = api_body(resources)["x-amazon-apigateway-gateway-responses"][response_type]

    assert answer["responseParameters"]["gatewayresponse.header.Cache-Control"] == "'no-store'"


@pytest.mark.parametrize("response_type", ["THROTTLED", "INTEGRATION_TIMEOUT"])
def test_retryable_gateway_answer_says_when_to_retry(
    resources: Resources, response_type: str
) -> None:
    answer = api_body(resources)["x-amazon-apigateway-gateway-responses"][response_type]

    retry_after = answer["responseParameters"]["gatewayresponse.header.Retry-After"]
    assert re.fullmatch(r"'[1-9][0-9]*'", retry_after)


def test_access_log_records_the_caller_and_no_header(resources: Resources) -> None:
    # Given the stage's access log format
    log_format = stage(resources)["AccessLogSetting"]["Format"]

    # Then it is one JSON object per request, with who called what, and no request header at all
    record = json.loads(log_format)
    assert {
        "requestId",
        "ip",
        "caller",
        "user",
        "userArn",
        "requestTime",
        "httpMethod",
        "resourcePath",
        "status",
        "protocol",
        "responseLength",
    } <= set(record)
    assert "header" not in log_format.lower()
    assert "authorization" not in log_format.lower()


def test_stage_is_throttled_traced_and_keeps_no_execution_logs(resources: Resources) -> None:
    properties = stage(resources)

    (settings,) = properties["MethodSettings"]
    assert settings["ResourcePath"] == "/*"
    assert settings["HttpMethod"] == "*"
    assert settings["ThrottlingRateLimit"] > 0
    assert settings["ThrottlingBurstLimit"] >= settings["ThrottlingRateLimit"]
    assert settings["DataTraceEnabled"] is False
    assert properties["TracingEnabled"] is True


def test_resource_policy_admits_only_this_account_by_default() -> None:
    callers = resource_policy_callers({})

    assert callers == {
        "allowed": [ACCOUNT_ID],
        "deny_unless_arn": [ACCOUNT_ID],
        "deny_unless_account": [ACCOUNT_ID],
    }


def test_resource_policy_admits_only_the_listed_callers_when_given() -> None:
    # Given a role of this account and another account as the allowed callers
    listed = f"arn:aws:iam::{ACCOUNT_ID}:role/payments,210987654321"

    # When the template is translated with them
    callers = resource_policy_callers({"AllowedCallerPrincipals": listed})

    # Then exactly they are allowed, and everyone else (this account's other roles too) denied
    expected = [f"arn:aws:iam::{ACCOUNT_ID}:role/payments", "210987654321"]
    assert callers == {
        "allowed": expected,
        "deny_unless_arn": expected,
        "deny_unless_account": expected,
    }


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("210987654321", True),
        (f"arn:aws:iam::{ACCOUNT_ID}:role/payments,210987654321", True),
        (f"arn:aws:iam::{ACCOUNT_ID}:role/team/payments", True),
        (f"arn:aws:iam::{ACCOUNT_ID}:role/payments, 210987654321", False),
        (f"arn:aws:iam::{ACCOUNT_ID}:role/*", False),
        ("*", False),
        (f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/payments/session", False),
    ],
)
def test_allowed_caller_principals_accepts_only_what_a_resource_policy_can_name(
    template: dict[str, Any], value: str, accepted: bool
) -> None:
    pattern = template["Parameters"]["AllowedCallerPrincipals"]["AllowedPattern"]

    assert bool(re.fullmatch(pattern, value)) is accepted
