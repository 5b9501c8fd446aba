"""What the template gives operators: the refresher's events and token check, and the alarms a
broker deploy rolls back on (the broker's own failures, never a 503 during a KillB outage)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.template.iam_questions import Stack
from tests.template.stack import (
    ACCOUNT_ID,
    REGION,
    ROOT,
    STACK_NAME,
    Resources,
    actions,
    identity_statements,
    translated_template,
)
from tests.template.test_template_config import overrides

DEFAULT_BUS = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:event-bus/default"


def refresher_environment(resources: Resources) -> dict[str, Any]:
    variables: dict[str, Any] = resources["RefresherFunction"]["Properties"]["Environment"][
        "Variables"
    ]
    return variables


# -- settings ---------------------------------------------------------------------------------


def test_the_token_check_interval_is_a_parameter_that_zero_turns_off(
    template: dict[str, Any], resources: Resources
) -> None:
    # Given the TokenCheckSeconds parameter
    parameter = template["Parameters"]["TokenCheckSeconds"]

    # Then it is a number of seconds, 1800 unless set, 0 allowed (off), never negative
    assert parameter["Type"] == "Number"
    assert parameter["Default"] == 1800
    assert parameter["MinValue"] == 0
    assert "0 turns the check off" in parameter["Description"]
    # And the refresher reads it as TOKEN_CHECK_SECONDS
    assert refresher_environment(resources)["TOKEN_CHECK_SECONDS"] == {"Ref": "TokenCheckSeconds"}


def test_the_refresher_names_its_stack_in_the_events_it_puts(resources: Resources) -> None:
    assert refresher_environment(resources)["STACK_NAME"] == {"Ref": "AWS::StackName"}


def test_a_token_check_setting_reaches_the_refresher_as_given() -> None:
    # Given a stack deployed with the token check off
    stack = Stack({"TokenCheckSeconds": "0"})

    # When the refresher's environment is resolved as a deploy resolves it
    variables = stack.resolve(refresher_environment(stack.resources))

    # Then the refresher sees 0 and the stack's own name
    assert variables["TOKEN_CHECK_SECONDS"] == "0"
    assert variables["STACK_NAME"] == STACK_NAME


# -- events ------------------------------------------------------------------------------------


def event_statements(stack: Stack) -> list[tuple[str, dict[str, Any]]]:
    """(role, resolved statement) for every identity statement that names an EventBridge action."""
    return [
        (role, stack.resolve(statement))
        for role, statement in identity_statements(stack.resources)
        if any(action.startswith("events:") or action == "*" for action in actions(statement))
    ]


def test_only_the_refresher_may_put_events(default_stack: Stack) -> None:
    # Given every identity statement of the stack's roles that names an EventBridge action
    statements = event_statements(default_stack)

    # Then the refresher's role alone holds one, and it is PutEvents and nothing else
    assert [role for role, _ in statements] == ["RefresherRole"]
    ((_, statement),) = statements
    assert statement["Effect"] == "Allow"
    assert actions(statement) == {"events:PutEvents"}


def test_the_refresher_puts_events_on_the_default_bus_under_its_own_source_only(
    default_stack: Stack,
) -> None:
    ((_, statement),) = event_statements(default_stack)

    assert statement["Resource"] == DEFAULT_BUS
    assert statement["Condition"] == {
        "ForAllValues:StringEquals": {"events:source": "killb.broker"},
        "Null": {"events:source": "false"},
    }


def test_the_refresher_starts_only_once_it_may_put_events(resources: Resources) -> None:
    assert "RefresherEventsPolicy" in resources["RefresherFunction"]["DependsOn"]


def test_the_dashboard_shows_the_brokers_own_500s_beside_the_apis_5xx(resources: Resources) -> None:
    text, _ = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    body = json.loads(text.replace("${AWS::Region}", REGION).replace("${", "{"))

    (widget,) = [w for w in body["widgets"] if "5XXError" in json.dumps(w)]
    names = [metric[1] for metric in widget["properties"]["metrics"]]
    assert names == ["4XXError", "5XXError", "BrokerInternalErrors"]


# -- the alarms a broker deploy rolls back on ----------------------------------------------------


def rollback_alarms(resources: Resources) -> dict[str, dict[str, Any]]:
    group = resources["BrokerFunctionDeploymentGroup"]["Properties"]
    names = [alarm["Name"]["Ref"] for alarm in group["AlarmConfiguration"]["Alarms"]]
    return {name: resources[name]["Properties"] for name in names}


@pytest.mark.parametrize("preference", ["Canary10Percent5Minutes", "Linear10PercentEvery1Minute"])
def test_no_rollback_alarm_counts_the_apis_5xx(preference: str) -> None:
    # Given a gradual broker deploy
    resources = translated_template({"BrokerDeploymentPreference": preference})["Resources"]

    # When the alarms it rolls back on are looked up
    alarms = rollback_alarms(resources)

    # Then none is on API Gateway's 5XX (which counts every 503 of a KillB outage): they are
    # the broker's own Lambda errors and its own 500s
    assert alarms
    assert [name for name, alarm in alarms.items() if alarm["Namespace"] == "AWS/ApiGateway"] == []
    assert {(alarm["Namespace"], alarm["MetricName"]) for alarm in alarms.values()} == {
        ("AWS/Lambda", "Errors"),
        ("KillBCredentialBroker", "BrokerInternalErrors"),
    }


def test_the_apis_5xx_alarm_stays_for_operators_and_says_it_counts_503s(
    resources: Resources,
) -> None:
    # Given the alarm on API Gateway's 5XX
    (name,) = [
        name
        for name, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"]["MetricName"] == "5XXError"
    ]
    description = resources[name]["Properties"]["AlarmDescription"]

    # Then it is not a rollback alarm, and its description says 503s during KillB outages count
    assert name not in rollback_alarms(resources)
    assert "503" in description
    assert "KillB outage" in description
    assert "Not a rollback alarm" in description


def test_the_internal_errors_alarm_watches_the_metric_its_filter_writes(
    resources: Resources,
) -> None:
    # Given the metric filter on the broker's log group and the alarm on its metric
    metric_filter = resources["BrokerInternalErrorsMetricFilter"]["Properties"]
    alarm = resources["BrokerInternalErrorsAlarm"]["Properties"]
    (transformation,) = metric_filter["MetricTransformations"]

    # Then the alarm watches exactly what the filter writes, for this stack (the service field
    # of the broker's log lines is the stack's name), and one 500 in a minute is enough
    assert metric_filter["LogGroupName"] == {"Ref": "BrokerLogGroup"}
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        transformation["MetricNamespace"],
        transformation["MetricName"],
    )
    assert transformation["Dimensions"] == [{"Key": "service", "Value": "$.service"}]
    assert alarm["Dimensions"] == [{"Name": "service", "Value": {"Ref": "AWS::StackName"}}]
    assert (alarm["Period"], alarm["Threshold"], alarm["TreatMissingData"]) == (
        60,
        1,
        "notBreaching",
    )


# -- what the filter pattern matches -------------------------------------------------------------

# A CloudWatch Logs JSON filter pattern made only of `$.field = "text"` and `$.field = number`
# terms joined by &&: the form the template's filters use. Anything else is refused, so a change
# of form fails these tests instead of being half understood.
TERM = re.compile(r'\$\.([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("(?:[^"*\\]*)"|-?[0-9]+(?:\.[0-9]+)?)')


def filter_matches(pattern: str, record: dict[str, Any]) -> bool:
    body = pattern.strip()
    assert body.startswith("{"), pattern
    assert body.endswith("}"), pattern
    terms = [term.strip() for term in body[1:-1].split("&&")]
    for term in terms:
        found = TERM.fullmatch(term)
        assert found is not None, f"not a term this evaluator knows: {term!r}"
        field, literal = found.groups()
        value = record.get(field)
        if literal.startswith('"'):
            # A string term matches a string field only.
            if not (isinstance(value, str) and value == literal[1:-1]):
                return False
        elif not (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and value == float(literal)
        ):
            # A numeric term matches a JSON number only.
            return False
    return True


def audit_line(status: int, outcome: str, **fields: Any) -> dict[str, Any]:
    """One audit record as the broker's logger writes it (a JSON line in its log group)."""
    return {
        "level": "WARNING" if status >= 500 else "INFO",
        "location": "log:60",
        "message": "broker audit",
        "timestamp": "2026-12-06 23:00:00,000+0000",
        "service": STACK_NAME,
        "cold_start": False,
        "outcome": outcome,
        "status": status,
        "caller_arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/payments/session",
        "source_ip": "10.0.0.1",
        "route": "/v1/auth-headers",
        "min_ttl": 300,
        "token_fingerprint": None,
        "rejected_fingerprint": None,
        "expires_at": None,
        "reason": "test",
        **fields,
    }


def internal_errors_pattern(resources: Resources) -> str:
    pattern: str = resources["BrokerInternalErrorsMetricFilter"]["Properties"]["FilterPattern"]
    return pattern


def test_the_filter_counts_a_500_audit_record(resources: Resources) -> None:
    record = audit_line(500, "unavailable", reason="unexpected error")

    assert filter_matches(internal_errors_pattern(resources), record)


def test_the_filter_does_not_count_a_503_audit_record(resources: Resources) -> None:
    # Given the audit record of a 503 BROKER.0003 (no token can be had: KillB is down)
    record = audit_line(503, "unavailable", reason="no token valid for minTtl")

    # Then the broker's internal errors metric does not count it
    assert not filter_matches(internal_errors_pattern(resources), record)


@pytest.mark.parametrize(
    ("status", "outcome"), [(200, "issued"), (400, "invalid"), (403, "refused")]
)
def test_the_filter_does_not_count_other_answers(
    resources: Resources, status: int, outcome: str
) -> None:
    assert not filter_matches(internal_errors_pattern(resources), audit_line(status, outcome))


def test_the_filter_counts_audit_records_only(resources: Resources) -> None:
    # Given a log line that is not an audit record but carries a status of 500 (a KillB answer
    # the refresher logged, say)
    record = {**audit_line(500, "unavailable"), "message": "KillB answered"}

    assert not filter_matches(internal_errors_pattern(resources), record)


def test_the_evaluator_reads_the_tokens_issued_filter_as_cloudwatch_does(
    resources: Resources,
) -> None:
    # The same evaluator on the template's other audit filter: one issued record counts
    pattern = resources["TokensIssuedMetricFilter"]["Properties"]["FilterPattern"]

    assert filter_matches(pattern, audit_line(200, "issued"))
    assert not filter_matches(pattern, audit_line(503, "unavailable"))


def test_the_evaluator_refuses_a_pattern_form_it_does_not_know() -> None:
    with pytest.raises(AssertionError, match="not a term"):
        filter_matches('{ $.status >= 500 || $.message = "x" }', audit_line(500, "unavailable"))


def test_the_audit_record_sample_is_what_the_log_holds() -> None:
    # The samples are JSON lines as CloudWatch Logs stores them: numbers stay numbers
    line = json.dumps(audit_line(500, "unavailable"))

    assert json.loads(line)["status"] == 500


@pytest.mark.parametrize("environment", ["default", "sandbox", "production"])
def test_every_samconfig_environment_checks_its_token(environment: str) -> None:
    # Each stack asks KillB about an unconfirmed token: 0 (off) belongs to no environment here
    assert int(overrides(environment)["TokenCheckSeconds"]) > 0


def test_sam_local_sends_the_refreshers_events_to_the_local_moto_server() -> None:
    # Given the settings `sam local invoke --env-vars local/sam-env.json` gives the refresher
    settings = json.loads((ROOT / "local" / "sam-env.json").read_text())["RefresherFunction"]

    # Then its events go to the same local server as its secrets, never to AWS
    assert settings["AWS_ENDPOINT_URL_EVENTBRIDGE"] == settings["AWS_ENDPOINT_URL_SECRETSMANAGER"]
