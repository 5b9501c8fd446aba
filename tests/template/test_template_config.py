"""The functions' settings, the parameters, samconfig.toml and the alarms: what docs/spec.md and
the on-call engineer rely on, and no secret anywhere."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest

from tests.template.iam_questions import Stack
from tests.template.stack import ROOT, Resources, referenced_ids, samconfig

CONTRACT_ENVIRONMENT = {
    "RefresherFunction": {
        "KILLB_BASE_URL",
        "CREDENTIALS_SECRET_ID",
        "SESSION_SECRET_ID",
        "ACCESS_TOKEN_SECRET_ID",
        "REFRESH_WINDOW_SECONDS",
        "LOGIN_BACKOFF_SECONDS",
        "KILLB_TIMEOUT_SECONDS",
        "TOKEN_CHECK_SECONDS",
        "STACK_NAME",
        "REPLICA_REGIONS",
    },
    "BrokerFunction": {"ACCESS_TOKEN_SECRET_ID", "REFRESHER_FUNCTION_NAME", "ALLOWED_PRINCIPALS"},
}
# Declared, empty, only so that `sam local --env-vars` can set them (SAM passes a container only
# the variables a function declares).
SAM_LOCAL_ENVIRONMENT = {
    "RefresherFunction": {"AWS_ENDPOINT_URL_SECRETSMANAGER", "AWS_ENDPOINT_URL_EVENTBRIDGE"},
    "BrokerFunction": {"AWS_ENDPOINT_URL_SECRETSMANAGER", "LOCAL_CALLER_ARN"},
}
POWERTOOLS_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_LOG_LEVEL",
}
KILLB_BASE_URLS = {
    "sandbox": "https://teste-94u93qnn.uc.gateway.dev",
    "production": "https://killb.app",
}
# Names and values that would betray a secret put where it does not belong.
SECRET_NAME = re.compile(r"password|passwd|secret|token|api_?key|credential", re.IGNORECASE)
SECRET_VALUE = re.compile(r"[A-Za-z0-9+/_=-]{32,}|AKIA[0-9A-Z]{16}|eyJ[A-Za-z0-9_-]{10,}")
# Names the contract fixes that look like a secret's and are not: a number of seconds.
NOT_SECRETS = {"TokenCheckSeconds"}


def looks_secret(name: str) -> bool:
    return name not in NOT_SECRETS and SECRET_NAME.search(name) is not None


def alarms(resources: Resources) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def alarm_on(resources: Resources, metric: str) -> dict[str, Any]:
    (found,) = [a for a in alarms(resources).values() if a["MetricName"] == metric]
    return found


def overrides(environment: str) -> dict[str, str]:
    """A samconfig environment's parameter_overrides as name -> value."""
    text = samconfig()[environment]["deploy"]["parameters"]["parameter_overrides"]
    return dict(re.findall(r'(\w+)="([^"]*)"', text))


@pytest.mark.parametrize("function", sorted(CONTRACT_ENVIRONMENT))
def test_function_has_the_specs_environment_and_no_other_setting(
    resources: Resources, function: str
) -> None:
    variables = resources[function]["Properties"]["Environment"]["Variables"]

    expected = CONTRACT_ENVIRONMENT[function] | SAM_LOCAL_ENVIRONMENT[function]
    assert set(variables) == expected | POWERTOOLS_ENVIRONMENT


@pytest.mark.parametrize("function", sorted(SAM_LOCAL_ENVIRONMENT))
def test_the_sam_local_settings_are_empty_in_a_deployed_stack(
    resources: Resources, function: str
) -> None:
    variables = resources[function]["Properties"]["Environment"]["Variables"]

    assert {name: variables[name] for name in SAM_LOCAL_ENVIRONMENT[function]} == dict.fromkeys(
        SAM_LOCAL_ENVIRONMENT[function], ""
    )


@pytest.mark.parametrize("function", sorted(CONTRACT_ENVIRONMENT))
def test_function_runs_python313_on_arm64_with_tracing(resources: Resources, function: str) -> None:
    properties = resources[function]["Properties"]

    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Handler"] == "app.lambda_handler"
    assert properties["TracingConfig"] == {"Mode": "Active"}


def test_metrics_are_kept_apart_per_stack(resources: Resources) -> None:
    variables = resources["RefresherFunction"]["Properties"]["Environment"]["Variables"]

    # The namespace is fixed in the code; the stack name as service dimension keeps stacks apart
    assert variables["POWERTOOLS_SERVICE_NAME"] == {"Fn::Sub": "${AWS::StackName}"}


def test_secret_ids_point_at_the_stacks_own_secrets(default_stack: Stack) -> None:
    resources = default_stack.resources
    refresher = resources["RefresherFunction"]["Properties"]["Environment"]["Variables"]
    broker = resources["BrokerFunction"]["Properties"]["Environment"]["Variables"]

    def resolved(value: Any) -> Any:
        return default_stack.resolve(value)

    assert resolved(refresher["CREDENTIALS_SECRET_ID"]) == default_stack.ref("CredentialsSecret")
    assert resolved(refresher["SESSION_SECRET_ID"]) == default_stack.ref("SessionSecret")
    assert resolved(refresher["ACCESS_TOKEN_SECRET_ID"]) == default_stack.ref("AccessTokenSecret")
    assert resolved(broker["ACCESS_TOKEN_SECRET_ID"]) == default_stack.ref("AccessTokenSecret")
    assert resolved(broker["REFRESHER_FUNCTION_NAME"]) == default_stack.ref("RefresherFunction")


def test_refresher_never_runs_twice_at_once(resources: Resources) -> None:
    assert resources["RefresherFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1


def test_a_failed_refresher_run_is_not_retried_by_lambda(resources: Resources) -> None:
    (config,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        and referenced_ids(r["Properties"]["FunctionName"]) == {"RefresherFunction"}
    ]

    assert config["MaximumRetryAttempts"] == 0


def test_function_timeouts_fit_a_run_and_api_gateway(resources: Resources) -> None:
    assert resources["RefresherFunction"]["Properties"]["Timeout"] >= 70
    assert resources["BrokerFunction"]["Properties"]["Timeout"] <= 29


def test_schedule_gives_up_on_a_delivery_before_the_next_run(
    resources: Resources, template: dict[str, Any]
) -> None:
    # Given the shortest schedule the ScheduleExpression parameter allows (2 minutes)
    pattern = template["Parameters"]["ScheduleExpression"]["AllowedPattern"]
    assert re.fullmatch(pattern, "rate(2 minutes)")
    assert not re.fullmatch(pattern, "rate(1 minutes)")
    (schedule,) = [r for r in resources.values() if r["Type"] == "AWS::Scheduler::Schedule"]

    # Then its retries end before the next run, and an undelivered run is dead-lettered
    target = schedule["Properties"]["Target"]
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] < 120
    assert referenced_ids(target["DeadLetterConfig"]["Arn"]) == {"RefresherDeadLetterQueue"}
    queue = resources["RefresherDeadLetterQueue"]["Properties"]
    assert referenced_ids(queue["KmsMasterKeyId"]) == {"SecretsKey"}


def test_killb_base_url_follows_the_killb_environment(template: dict[str, Any]) -> None:
    mapping = template["Mappings"]["KillB"]

    assert {name: urls["BaseUrl"] for name, urls in mapping.items()} == KILLB_BASE_URLS


def test_every_parameter_is_described_and_constrained(template: dict[str, Any]) -> None:
    for name, parameter in template["Parameters"].items():
        assert parameter.get("Description"), name
        bounded = parameter["Type"] == "Number" and "MinValue" in parameter
        assert "AllowedValues" in parameter or "AllowedPattern" in parameter or bounded, name


def test_the_names_that_look_secret_and_are_not_are_numbers(template: dict[str, Any]) -> None:
    for name in NOT_SECRETS:
        assert template["Parameters"][name]["Type"] == "Number", name


def test_parameters_default_to_no_secret(template: dict[str, Any]) -> None:
    for name, parameter in template["Parameters"].items():
        assert not looks_secret(name), name
        assert not SECRET_VALUE.search(str(parameter.get("Default", ""))), name


def test_credentials_secret_starts_as_an_empty_placeholder(resources: Resources) -> None:
    value = json.loads(resources["CredentialsSecret"]["Properties"]["SecretString"])

    assert value == {"email": "", "password": ""}


@pytest.mark.parametrize("secret", ["SessionSecret", "AccessTokenSecret"])
def test_refresher_written_secret_starts_as_no_session(resources: Resources, secret: str) -> None:
    assert resources[secret]["Properties"]["SecretString"] == "{}"


def test_samconfig_has_a_stack_per_killb_environment() -> None:
    config = samconfig()

    assert config["version"] == 0.1
    # A replica environment deploys its primary's stack (same name) in another Region
    stacks = {
        env: config[env]["global"]["parameters"]["stack_name"]
        for env in config
        if env != "version" and not env.endswith("-replica")
    }
    assert set(stacks) == {"default", "sandbox", "production"}
    assert len(set(stacks.values())) == 3
    assert overrides("sandbox")["KillBEnvironment"] == "sandbox"
    assert overrides("production")["KillBEnvironment"] == "production"


@pytest.mark.parametrize("environment", ["default", "sandbox", "production"])
def test_samconfig_deploys_with_iam_capability_and_a_managed_bucket(environment: str) -> None:
    deploy = samconfig()[environment]["deploy"]["parameters"]

    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True


def test_production_deploy_waits_for_a_reviewed_change_set() -> None:
    assert samconfig()["production"]["deploy"]["parameters"]["confirm_changeset"] is True


@pytest.mark.parametrize("environment", ["default", "sandbox", "production"])
def test_samconfig_overrides_only_known_parameters_with_no_secret(
    template: dict[str, Any], environment: str
) -> None:
    for name, value in overrides(environment).items():
        assert name in template["Parameters"], name
        assert not looks_secret(name), name
        assert not SECRET_VALUE.search(value), name


def test_samconfig_holds_no_secret_looking_value() -> None:
    def values(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [v for inner in node.values() for v in values(inner)]
        return [str(node)]

    for value in values(samconfig()):
        # A replica environment names the primary's KMS key id: an identifier, not a secret
        checked = re.sub(r'PrimaryKeyId="mrk-[0-9a-f]{32}"', 'PrimaryKeyId="mrk-id"', value)
        assert not SECRET_VALUE.search(checked), value


def test_every_alarm_notifies_the_alarm_topic(resources: Resources) -> None:
    for name, alarm in alarms(resources).items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name


def test_failed_refresher_runs_raise_an_alarm(resources: Resources) -> None:
    # The refresher returns "failed" instead of raising: Lambda's Errors never sees those runs.
    alarm = alarm_on(resources, "RefresherFailed")

    assert alarm["Namespace"] == "KillBCredentialBroker"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": {"Ref": "AWS::StackName"}}]
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_a_token_running_out_raises_an_alarm_even_with_no_data(default_stack: Stack) -> None:
    alarm = alarm_on(default_stack.resources, "AccessTokenSecondsLeft")

    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert 300 <= alarm["Threshold"] <= 1800
    assert default_stack.resolve(alarm["TreatMissingData"]) == "breaching"


def test_each_function_crashing_raises_an_alarm(resources: Resources) -> None:
    watched = {
        dimension["Value"]["Ref"]
        for alarm in alarms(resources).values()
        if (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
        for dimension in alarm["Dimensions"]
        if dimension["Name"] == "FunctionName"
    }

    assert watched == {"RefresherFunction", "BrokerFunction"}


@pytest.mark.parametrize(
    ("namespace", "metric"),
    [
        ("AWS/Lambda", "Throttles"),
        ("AWS/ApiGateway", "5XXError"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    ],
)
def test_operational_failures_raise_an_alarm(
    resources: Resources, namespace: str, metric: str
) -> None:
    assert alarm_on(resources, metric)["Namespace"] == namespace


def test_alarm_topic_and_logs_are_encrypted_with_the_stacks_key(resources: Resources) -> None:
    assert referenced_ids(resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"]) == {"SecretsKey"}
    log_groups = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Logs::LogGroup"]
    assert len(log_groups) == 3
    for log_group in log_groups:
        assert referenced_ids(log_group["KmsKeyId"]) == {"SecretsKey"}
        assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_outputs_give_the_operator_everything_to_wire_up(template: dict[str, Any]) -> None:
    assert {
        "ApiBaseUrl",
        "AuthHeadersEndpoint",
        "CredentialsSecretArn",
        "SessionSecretArn",
        "AccessTokenSecretArn",
        "RefresherFunctionName",
        "BrokerFunctionName",
        "AlarmTopicArn",
        "AuthHeadersRouteArn",
        "HealthRouteArn",
        "DashboardUrl",
    } <= set(template["Outputs"])


def test_route_arn_outputs_name_each_route_of_the_api(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]

    for output, route in [("AuthHeadersRouteArn", "auth-headers"), ("HealthRouteArn", "health")]:
        assert outputs[output]["Value"]["Fn::Sub"].endswith(f"${{BrokerApi}}/api/GET/v1/{route}")


def test_rejected_token_reports_that_keep_coming_raise_an_alarm(resources: Resources) -> None:
    # Given the alarm on the broker's RejectedTokenReports metric
    alarm = alarm_on(resources, "RejectedTokenReports")

    # Then it watches this stack's metric and fires only when reports come period after period
    assert alarm["Namespace"] == "KillBCredentialBroker"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": {"Ref": "AWS::StackName"}}]
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] >= 2
    assert alarm["TreatMissingData"] == "notBreaching"


def test_refresher_errors_alarm_sends_secrets_manager_failures_to_the_failed_alarm(
    resources: Resources,
) -> None:
    # A Secrets Manager failure makes the refresher return "failed": RefresherFailed, not Errors
    errors = resources["RefresherErrorsAlarm"]["Properties"]["AlarmDescription"]

    assert "Secrets Manager" in errors
    assert "refresher failed alarm" in errors
    assert "crashed or timed out" in errors


DASHBOARD_METRICS = {
    ("KillBCredentialBroker", "AccessTokenSecondsLeft"),
    ("KillBCredentialBroker", "Logins"),
    ("KillBCredentialBroker", "Refreshes"),
    ("KillBCredentialBroker", "RefresherFailed"),
    ("KillBCredentialBroker", "LoginRejected"),
    ("KillBCredentialBroker", "KillBRefused"),
    ("KillBCredentialBroker", "RejectedTokenReports"),
    ("AWS/ApiGateway", "4XXError"),
    ("AWS/ApiGateway", "5XXError"),
    ("AWS/ApiGateway", "Latency"),
}


def test_dashboard_shows_the_token_the_refresher_and_the_callers(resources: Resources) -> None:
    # Given the dashboard's body as CloudFormation would substitute it
    text, variables = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert variables == {"ApiName": {"Fn::Sub": "${AWS::StackName}-broker"}}
    body = json.loads(
        text.replace("${AWS::Region}", "us-east-1")
        .replace("${AWS::StackName}", "killb-broker-test")
        .replace("${ApiName}", "killb-broker-test-broker")
    )

    # Then its widgets plot each metric on-call needs, for this stack (or this stack's API)
    shown = set()
    for widget in body["widgets"]:
        for metric in widget["properties"]["metrics"]:
            namespace, name, *dimensions = [part for part in metric if isinstance(part, str)]
            assert dimensions[1] in {"killb-broker-test", "killb-broker-test-broker"}, metric
            shown.add((namespace, name))
    assert shown >= DASHBOARD_METRICS


def test_tokens_issued_are_counted_from_the_brokers_audit_line(resources: Resources) -> None:
    # Given the metric filter on the broker's log group (one audit record per request)
    metric_filter = resources["TokensIssuedMetricFilter"]["Properties"]

    # Then it counts the audit records of issued tokens only, on the broker's own log group
    assert (
        metric_filter["FilterPattern"] == '{ $.message = "broker audit" && $.outcome = "issued" }'
    )
    assert referenced_ids(metric_filter["LogGroupName"]) == {"BrokerLogGroup"}
    (transformation,) = metric_filter["MetricTransformations"]
    assert (transformation["MetricNamespace"], transformation["MetricName"]) == (
        "KillBCredentialBroker",
        "TokensIssued",
    )


def test_serverless_repo_metadata_describes_a_publishable_app(template: dict[str, Any]) -> None:
    # Given the Serverless Application Repository metadata and the project's own version
    application = template["Metadata"]["AWS::ServerlessRepo::Application"]
    with (ROOT / "pyproject.toml").open("rb") as file:
        version = tomllib.load(file)["project"]["version"]

    # Then it has what the repository requires, its files exist, and its version is the project's
    assert application["Name"] == "killb-credential-broker"
    assert application["Description"]
    assert application["Author"]
    assert application["SpdxLicenseId"] == "Apache-2.0"
    assert "Apache License" in (ROOT / application["LicenseUrl"]).read_text()
    assert "Version 2.0" in (ROOT / application["LicenseUrl"]).read_text()
    assert (ROOT / application["ReadmeUrl"]).is_file()
    assert application["SemanticVersion"] == version
    assert re.fullmatch(r"\d+\.\d+\.\d+", application["SemanticVersion"])
    assert re.fullmatch(r"https://\S+", application["SourceCodeUrl"])
    labels = application["Labels"]
    assert 0 < len(labels) <= 10
    assert all(re.fullmatch(r"[a-zA-Z0-9+\-_:\\/@]{1,127}", label) for label in labels)
