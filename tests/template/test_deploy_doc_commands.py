"""docs/deploy.md's commands, run as written where they can run here: the shell blocks under a
stand-in `aws` that records each call, the CloudFormation snippet under cfn-lint, and the
parameter overrides through SAM CLI's own parser."""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file  # type: ignore[import-untyped]
from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]
from samcli.cli.types import CfnParameterOverridesType  # type: ignore[import-untyped]
from samcli.commands.deploy.deploy_context import DeployContext  # type: ignore[import-untyped]

from tests.template.stack import ROOT

DEPLOY = (ROOT / "docs" / "deploy.md").read_text()
FENCE = re.compile(r"^ *```(\w*)\n(.*?)^ *```", re.DOTALL | re.MULTILINE)
STACK = "killb-broker-sandbox"
ROLE_ARN = "arn:aws:iam::123456789012:role/developer"
BASH = shutil.which("bash") or "/bin/bash"

# Stands in for the AWS CLI: records each call (arguments and the credentials in its
# environment) as a JSON line, and answers the few calls whose output the blocks read.
FAKE_AWS = r"""#!PYTHON
import json, os, sys
args = sys.argv[1:]
with open(os.environ["AWS_CALLS"], "a") as calls:
    calls.write(json.dumps({"args": args, "key": os.environ.get("AWS_ACCESS_KEY_ID")}) + "\n")
command = args[:2]
if command == ["sts", "assume-role"]:
    print("ASIAROLEKEY\tROLESECRET\tROLESESSION")
elif command in (["secretsmanager", "get-resource-policy"], ["kms", "get-key-policy"]):
    print(json.dumps({"Statement": [{"Condition": {"StringNotEquals": {
        "aws:PrincipalArn": ["arn:aws:iam::123456789012:role/killb-broker-sandbox-RefresherRole"]
    }}}]}))
elif command == ["secretsmanager", "get-secret-value"]:
    sys.stderr.write("An error occurred (AccessDeniedException) when calling the "
                     "GetSecretValue operation: denied\n")
    sys.exit(254)
"""


def blocks(language: str, section: str | None = None) -> list[str]:
    text = DEPLOY if section is None else DEPLOY.split(section, 1)[1].split("\n## ", 1)[0]
    return [body for lang, body in FENCE.findall(text) if lang == language]


def block_with(language: str, needle: str, section: str | None = None) -> str:
    (found,) = [body for body in blocks(language, section) if needle in body]
    return found


def run_with_fake_aws(script: str, tmp_path: Path, **env: str) -> list[dict[str, Any]]:
    """Runs a shell block as written, with `aws` answered by the stand-in above."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "aws"
    fake.write_text(FAKE_AWS.replace("PYTHON", sys.executable))
    fake.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    calls.write_text("")
    environment = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "AWS_CALLS": str(calls),
        "STACK": STACK,
        **env,
    }
    completed = subprocess.run(  # noqa: S603 - the repository's own docs, in a stand-in world
        [BASH, "-c", script],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert "command not found" not in completed.stderr, completed.stderr
    return [
        json.loads(line) | {"stdout": completed.stdout} for line in calls.read_text().splitlines()
    ]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# -- every shell block is at least valid shell -------------------------------------------------


@pytest.mark.parametrize("script", blocks("bash"), ids=lambda s: s.strip().splitlines()[0][:50])
def test_every_shell_block_of_the_deploy_doc_parses(script: str) -> None:
    completed = subprocess.run(  # noqa: S603 - bash only parses, runs nothing
        [BASH, "-n"], input=script, capture_output=True, text=True, check=False
    )

    assert completed.returncode == 0, completed.stderr


# -- the metrics check runs on Linux and macOS alike ---------------------------------------------


def test_no_command_needs_gnu_date() -> None:
    # GNU date's -d (and --date) do not exist in macOS's BSD date
    assert not re.search(r"\bdate\b[^\n|;]*\s(-d|--date)\b", DEPLOY)


def test_the_metrics_check_asks_for_the_last_half_hour_in_utc(tmp_path: Path) -> None:
    # Given the metrics check as written
    script = block_with("bash", "get-metric-statistics")

    # When it runs
    (call,) = run_with_fake_aws(script, tmp_path)

    # Then it asks for the 30 minutes up to now, as UTC timestamps the AWS CLI accepts
    start, end = (
        datetime.datetime.strptime(option(call["args"], name), "%Y-%m-%dT%H:%M:%SZ")
        for name in ("--start-time", "--end-time")
    )
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert abs((end - now).total_seconds()) < 60
    assert (end - start).total_seconds() == pytest.approx(1800, abs=60)


# -- events for operators -----------------------------------------------------------------------

SECTION = "## Events for operators"


def event(detail_type: str, stack: str = STACK) -> dict[str, Any]:
    """An event as the refresher puts it on the default bus (docs/spec.md, events)."""
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type,
        "source": "killb.broker",
        "account": "123456789012",
        "time": "2026-12-06T23:00:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {
            "stack": stack,
            "reason": "KillB unavailable",
            "fingerprint": "3f2a9c0d1b4e",
            "expiresAt": 1796000000,
        },
    }


def pattern_matches(pattern: dict[str, Any], value: dict[str, Any]) -> bool:
    """EventBridge's matching for the forms the docs use: nested objects of lists of exact
    strings. Any other form (prefix, anything-but, numeric, ...) is refused."""
    for key, wanted in pattern.items():
        if key not in value:
            return False
        if isinstance(wanted, dict):
            if not (isinstance(value[key], dict) and pattern_matches(wanted, value[key])):
                return False
            continue
        assert isinstance(wanted, list), wanted
        assert all(isinstance(item, str) for item in wanted), f"not an exact-match list: {wanted}"
        found = value[key] if isinstance(value[key], list) else [value[key]]
        if not set(found) & set(wanted):
            return False
    return True


@pytest.fixture(scope="module")
def cli_rule(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The put-rule and put-targets calls of the CLI example, run as written."""
    script = block_with("bash", "aws events put-rule", SECTION)
    calls = run_with_fake_aws(script, tmp_path_factory.mktemp("rule"))
    by_command = {" ".join(call["args"][:2]): call["args"] for call in calls}
    assert set(by_command) == {"events put-rule", "events put-targets"}
    return by_command


@pytest.fixture(scope="module")
def snippet() -> str:
    return block_with("yaml", "AWS::Events::Rule", SECTION)


@pytest.fixture(scope="module")
def snippet_template(snippet: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("snippet") / "operator-events.yaml"
    path.write_text(snippet)
    template: dict[str, Any] = json.loads(json.dumps(cfn_yaml.load(str(path))))
    return template


def cli_pattern(cli_rule: dict[str, Any]) -> dict[str, Any]:
    pattern: dict[str, Any] = json.loads(option(cli_rule["events put-rule"], "--event-pattern"))
    return pattern


@pytest.mark.parametrize("detail_type", ["Refresh Failed", "Session Revoked"])
def test_the_cli_rule_matches_each_event_it_names(
    cli_rule: dict[str, Any], detail_type: str
) -> None:
    assert pattern_matches(cli_pattern(cli_rule), event(detail_type))


@pytest.mark.parametrize("detail_type", ["Refresh Recovered", "Token Rejected"])
def test_the_cli_rule_lets_other_events_pass(cli_rule: dict[str, Any], detail_type: str) -> None:
    assert not pattern_matches(cli_pattern(cli_rule), event(detail_type))


def test_the_cli_rule_ignores_another_stacks_events(cli_rule: dict[str, Any]) -> None:
    other = event("Refresh Failed", stack="killb-broker-production")

    assert not pattern_matches(cli_pattern(cli_rule), other)


def test_the_cli_rule_ignores_the_same_detail_type_from_another_source(
    cli_rule: dict[str, Any],
) -> None:
    assert not pattern_matches(cli_pattern(cli_rule), {**event("Refresh Failed"), "source": "x"})


def test_the_cli_targets_the_rule_it_made(cli_rule: dict[str, Any]) -> None:
    rule = option(cli_rule["events put-rule"], "--name")

    assert option(cli_rule["events put-targets"], "--rule") == rule
    assert rule == f"{STACK}-operator-events"
    assert option(cli_rule["events put-targets"], "--targets").startswith(
        "Id=operators,Arn=arn:aws:sns:"
    )


def test_the_cloudformation_snippet_passes_cfn_lint(snippet: str, tmp_path: Path) -> None:
    path = tmp_path / "operator-events.yaml"
    path.write_text(snippet)

    matches = lint_file(path)

    assert [str(match) for match in matches] == []


def test_the_cloudformation_rule_is_the_cli_rule(
    snippet_template: dict[str, Any], cli_rule: dict[str, Any]
) -> None:
    # Given the snippet's rule, for the stack the CLI example names
    rule = snippet_template["Resources"]["OperatorEventsRule"]["Properties"]
    text = json.dumps(rule["EventPattern"]).replace('{"Ref": "BrokerStackName"}', f'"{STACK}"')

    # Then it matches exactly what the CLI rule matches, on the default bus
    assert json.loads(text) == cli_pattern(cli_rule)
    assert rule["EventBusName"] == "default"


def test_the_chat_message_is_json_whatever_the_reason(snippet_template: dict[str, Any]) -> None:
    # Given the input transformer of the snippet's target
    (target,) = snippet_template["Resources"]["OperatorEventsRule"]["Properties"]["Targets"]
    transformer = target["InputTransformer"]
    sample = event("Session Revoked")

    # When EventBridge fills in the placeholders from an event
    message = transformer["InputTemplate"]
    for name, path in transformer["InputPathsMap"].items():
        value: Any = sample
        for part in path.removeprefix("$.").split("."):
            value = value[part]
        message = message.replace(f"<{name}>", value)

    # Then SNS receives the custom-notification JSON Chatbot shows, naming the stack and why
    notification = json.loads(message)
    assert notification["version"] == "1.0"
    assert notification["source"] == "custom"
    assert notification["content"]["title"] == f"KillB broker {STACK}: Session Revoked"
    assert notification["content"]["description"] == "KillB unavailable"
    assert set(transformer["InputPathsMap"]) == {"type", "stack", "reason"}


def test_only_the_rule_may_publish_to_the_snippets_topic(snippet_template: dict[str, Any]) -> None:
    policy = snippet_template["Resources"]["OperatorTopicPolicy"]["Properties"]["PolicyDocument"]

    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sns:Publish"
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["OperatorEventsRule", "Arn"]}}
    }


def test_the_snippet_deploy_command_sets_the_snippets_parameters(
    snippet_template: dict[str, Any], tmp_path: Path
) -> None:
    script = block_with("bash", "aws cloudformation deploy", SECTION)

    (call,) = run_with_fake_aws(script, tmp_path)

    args = call["args"]
    overrides = dict(item.split("=", 1) for item in args[args.index("--parameter-overrides") + 1 :])
    assert overrides["BrokerStackName"] == STACK
    assert set(overrides) <= set(snippet_template["Parameters"])
    assert option(args, "--template-file") == "operator-events.yaml"


# -- taking a developer role's access away -------------------------------------------------------

ACCESS_AWAY = "### Taking a developer role's access away"
LOCAL_PARAMETERS = ("LocalBrokerPrincipalArns", "LocalRefresherPrincipalArns")


def overrides_of(command: str) -> tuple[str, ...]:
    """The words after --parameter-overrides, as the shell hands them to sam."""
    words = shlex.split(command.replace("\\\n", " "))
    start = words.index("--parameter-overrides") + 1
    end = next((i for i in range(start, len(words)) if words[i].startswith("--")), len(words))
    return tuple(words[start:end])


def sam_parses(words: tuple[str, ...]) -> dict[str, str]:
    parsed: dict[str, str] = CfnParameterOverridesType().convert(words, None, None)
    return parsed


def test_the_documented_command_sets_both_parameters_to_empty() -> None:
    # Given the command the docs give
    command = block_with("bash", "sam deploy", ACCESS_AWAY)
    assert command.strip().startswith("sam deploy --config-env ")

    # When SAM CLI parses its overrides as the shell hands them over
    overrides = sam_parses(overrides_of(command))

    # Then both parameters are empty, and nothing else is overridden
    assert overrides == dict.fromkeys(LOCAL_PARAMETERS, "")


def test_sam_sends_the_empty_values_and_keeps_every_other_parameter(
    template: dict[str, Any],
) -> None:
    # Given the documented overrides, parsed by SAM CLI
    overrides = sam_parses(overrides_of(block_with("bash", "sam deploy", ACCESS_AWAY)))

    # When SAM builds the change set's parameters from the template
    parameters = DeployContext.merge_parameters(template, overrides)

    # Then the two are sent empty, and every other parameter keeps its previous value
    sent = {p["ParameterKey"]: p for p in parameters}
    for name in LOCAL_PARAMETERS:
        assert sent[name] == {"ParameterKey": name, "ParameterValue": ""}
    others = [p for name, p in sent.items() if name not in LOCAL_PARAMETERS]
    assert others
    assert all(p.get("UsePreviousValue") is True for p in others)


def test_without_the_quotes_sam_refuses_the_empty_value() -> None:
    # What the docs warn about: the shell strips the "" of LocalBrokerPrincipalArns=""
    words = tuple(shlex.split('LocalBrokerPrincipalArns="" LocalRefresherPrincipalArns=""'))

    with pytest.raises(Exception, match="not a valid format"):
        sam_parses(words)


def test_a_bare_empty_value_in_a_list_is_skipped_and_keeps_the_old_value() -> None:
    overrides = sam_parses(("LocalBrokerPrincipalArns= KillBEnvironment=sandbox",))

    assert "LocalBrokerPrincipalArns" not in overrides


def test_the_access_check_finds_no_role_and_reads_as_the_role(tmp_path: Path) -> None:
    # Given the check as written, against a stack whose policies no longer name the role
    script = block_with("bash", "get-resource-policy", ACCESS_AWAY)

    # When it runs (with the caller's own credentials in the environment)
    calls = run_with_fake_aws(script, tmp_path, AWS_ACCESS_KEY_ID="CALLERKEY")

    # Then it looks at each secret's policy and the key's, counting no mention of the role
    commands = [" ".join(call["args"][:2]) for call in calls]
    assert commands == [
        "secretsmanager get-resource-policy",
        "secretsmanager get-resource-policy",
        "secretsmanager get-resource-policy",
        "kms get-key-policy",
        "sts assume-role",
        "secretsmanager get-secret-value",
    ]
    assert calls[0]["stdout"].split() == ["0", "0", "0", "0"]
    # And it tries the read with the role's credentials, never printing a value
    read = calls[-1]
    assert read["key"] == "ASIAROLEKEY"
    assert option(read["args"], "--query") == "Name"
    assert option(calls[4]["args"], "--role-arn") == ROLE_ARN
    assert all(call["key"] == "CALLERKEY" for call in calls[:5])


# -- the README's credentials step leaves no copy behind ---------------------------------------


def test_the_readme_credentials_step_leaves_no_file_behind(tmp_path: Path) -> None:
    # Given the README's deploy block, an editor that writes the credentials, and sam stood in
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deploy", 1)[1].split("\n## ", 1)[0]
    (script,) = [body for lang, body in FENCE.findall(section) if lang == "bash"]
    editor = tmp_path / "editor"
    editor.write_text('#!/bin/sh\necho \'{"email": "ops@example.com", "password": "pw"}\' > "$1"\n')
    editor.chmod(0o755)
    sam = tmp_path / "bin" / "sam"
    sam.parent.mkdir()
    sam.write_text("#!/bin/sh\nexit 0\n")
    sam.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()

    # When it runs in a working directory of its own
    calls = run_with_fake_aws(
        f"cd {shlex.quote(str(work))}\n{script}", tmp_path, EDITOR=str(editor)
    )

    # Then the secret is put from the file, and the file is gone afterwards
    (put,) = calls
    assert put["args"][:2] == ["secretsmanager", "put-secret-value"]
    assert option(put["args"], "--secret-string") == "file://creds.json"
    assert list(work.iterdir()) == []
