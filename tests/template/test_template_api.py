"""The broker's API as deployed: AWS_IAM on every method, the routes of docs/spec.md, API Gateway's
own answers in the broker's error shape, access logs without headers, who may call."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.template.stack import ACCOUNT_ID, Resources, evaluate, translated_template

CONTRACT_ROUTES = {"/v1/auth-headers": {"get"}, "/v1/health": {"get"}}

# API Gateway's own answers -> (status, errorCode) in docs/spec.md's error table.
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
    conditions = {
        "CallersDefaultToThisAccount": not parameters.get("AllowedCallerPrincipals"),
        "IsPrivateApi": parameters.get("ApiEndpointType") == "PRIVATE",
    }
    policy = evaluate(body["x-amazon-apigateway-policy"], parameters, conditions)
    (allow,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    (deny,) = [s for s in policy["Statement"] if s["Sid"] == "EveryoneElseIsDenied"]
    return {
        "allowed": allow["Principal"]["AWS"],
        "deny_unless_arn": deny["Condition"]["StringNotLike"]["aws:PrincipalArn"],
        "deny_unless_account": deny["Condition"]["StringNotEquals"]["aws:PrincipalAccount"],
    }


def test_api_serves_exactly_the_spec_routes(resources: Resources) -> None:
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
def test_gateway_answer_has_the_broker_error_shape(
    resources: Resources, response_type: str
) -> None:
    # Given API Gateway's own answer of this type
    answer = api_body(resources)["x-amazon-apigateway-gateway-responses"][response_type]

    # When its body template is read as JSON (it has no variables to fill in)
    body = json.loads(answer["responseTemplates"]["application/json"])

    # Then it has KillB's error shape, with the status and code of docs/spec.md's error table
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


PRIVATE = {
    "ApiEndpointType": "PRIVATE",
    "ApiVpcEndpointIds": "vpce-0a1b2c3d4e5f60789,vpce-0123456789abcdef0",
}


def test_a_private_api_is_reached_only_through_the_listed_vpc_endpoints() -> None:
    # Given the template translated for a PRIVATE API with two VPC endpoints
    resources = translated_template(PRIVATE)["Resources"]
    conditions = {"CallersDefaultToThisAccount": True, "IsPrivateApi": True}

    # Then the API's endpoint is private on those endpoints, and the resource policy denies
    # every request that does not come through one of them
    endpoint = evaluate(
        resources["BrokerApi"]["Properties"]["EndpointConfiguration"], PRIVATE, conditions
    )
    assert endpoint == {
        "Types": ["PRIVATE"],
        "VpcEndpointIds": PRIVATE["ApiVpcEndpointIds"].split(","),
    }
    policy = evaluate(api_body(resources)["x-amazon-apigateway-policy"], PRIVATE, conditions)
    (deny,) = [s for s in policy["Statement"] if s["Sid"] == "OnlyThroughTheVpcEndpoints"]
    assert (deny["Effect"], deny["Principal"], deny["Resource"]) == ("Deny", "*", "execute-api:/*")
    assert deny["Condition"] == {
        "StringNotEquals": {"aws:SourceVpce": PRIVATE["ApiVpcEndpointIds"].split(",")}
    }


def test_a_regional_api_has_no_vpc_endpoint_condition(resources: Resources) -> None:
    conditions = {"CallersDefaultToThisAccount": True, "IsPrivateApi": False}

    policy = evaluate(api_body(resources)["x-amazon-apigateway-policy"], {}, conditions)

    assert [s["Sid"] for s in policy["Statement"]] == [
        "AllowedCallersInvoke",
        "EveryoneElseIsDenied",
    ]
    endpoint = evaluate(
        resources["BrokerApi"]["Properties"]["EndpointConfiguration"],
        {"ApiEndpointType": "REGIONAL", "ApiVpcEndpointIds": ""},
        conditions,
    )
    assert endpoint == {"Types": ["REGIONAL"]}


def test_private_without_vpc_endpoints_is_refused_before_deploying() -> None:
    # Given the rule for a private API, as CloudFormation receives it (after SAM's transform)
    rule = translated_template()["Rules"]["PrivateApiNeedsVpcEndpoints"]

    # Then it applies to PRIVATE and asserts a non-empty endpoint list
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ApiEndpointType"}, "PRIVATE"]}
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ApiVpcEndpointIds"}, ""]}]}


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("vpce-0a1b2c3d4e5f60789", True),
        ("vpce-0a1b2c3d4e5f60789,vpce-01234567", True),
        ("vpce-0a1b2c3d4e5f60789, vpce-01234567", False),
        ("vpce-*", False),
        ("*", False),
    ],
)
def test_api_vpc_endpoint_ids_accepts_only_endpoint_ids(
    template: dict[str, Any], value: str, accepted: bool
) -> None:
    pattern = template["Parameters"]["ApiVpcEndpointIds"]["AllowedPattern"]

    assert bool(re.fullmatch(pattern, value)) is accepted


def test_the_api_invokes_the_brokers_live_alias(resources: Resources) -> None:
    # Given the Lambda permissions that let API Gateway invoke the broker
    permissions = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"
    ]

    # Then each is on the alias "live", and every route's integration calls that alias
    assert permissions
    for permission in permissions:
        assert permission["FunctionName"] == {"Ref": "BrokerFunctionAliaslive"}
        assert permission["Principal"] == "apigateway.amazonaws.com"
    assert resources["BrokerFunctionAliaslive"]["Properties"]["Name"] == "live"
    for methods in api_body(resources)["paths"].values():
        for operation in methods.values():
            uri = json.dumps(operation["x-amazon-apigateway-integration"]["uri"])
            assert "BrokerFunctionAliaslive" in uri


@pytest.mark.parametrize(
    "preference", ["AllAtOnce", "Canary10Percent5Minutes", "Linear10PercentEvery1Minute"]
)
def test_broker_deploys_shift_the_alias_and_roll_back_on_its_error_alarms(preference: str) -> None:
    resources = translated_template({"BrokerDeploymentPreference": preference})["Resources"]

    group = resources["BrokerFunctionDeploymentGroup"]["Properties"]
    assert group["DeploymentConfigName"]["Fn::Sub"][1] == {"ConfigName": preference}
    assert group["AutoRollbackConfiguration"]["Enabled"] is True
    assert "DEPLOYMENT_STOP_ON_ALARM" in group["AutoRollbackConfiguration"]["Events"]
    alarms = {alarm["Name"]["Ref"] for alarm in group["AlarmConfiguration"]["Alarms"]}
    assert alarms == {"BrokerErrorsAlarm", "BrokerInternalErrorsAlarm"}
