"""docs/deploy.md drifts from the template: these tests fail when its tables, outputs or alarm
names stop matching what the stack has."""

from __future__ import annotations

import re
from typing import Any

from tests.template.stack import ROOT, Resources, samconfig

DEPLOY = (ROOT / "docs" / "deploy.md").read_text()


def table_names(heading: str) -> list[str]:
    """The backquoted names in the first column of the first table under this heading."""
    section = DEPLOY.split(heading, 1)[1]
    return re.findall(r"^\| `([A-Za-z0-9]+)` \|", section.split("\n## ", 1)[0], re.MULTILINE)


def test_the_parameter_table_lists_every_template_parameter(template: dict[str, Any]) -> None:
    assert sorted(table_names("| parameter | default | meaning |")) == sorted(
        template["Parameters"]
    )


def test_the_alarm_table_lists_every_alarm_of_the_stack(resources: Resources) -> None:
    alarms = [name for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"]

    assert sorted(table_names("## Alarms")) == sorted(alarms)
    assert f"All {['six', 'seven', 'eight', 'nine'][len(alarms) - 6]} notify" in DEPLOY


def test_every_output_the_docs_query_exists(template: dict[str, Any]) -> None:
    queried = set(re.findall(r"OutputKey==\\?'([A-Za-z]+)'", DEPLOY))
    named = set(re.findall(r"`([A-Za-z]+(?:Arn|Url|Name))` output", DEPLOY))

    assert queried
    assert queried | named <= set(template["Outputs"])


def test_the_docs_need_aws_cli_v2_and_fix_no_region() -> None:
    assert "AWS CLI v2" in DEPLOY
    assert "us-east-1" not in DEPLOY.split("## What it costs")[0]
    for environment in ("default", "sandbox", "production"):
        assert "region" not in samconfig()[environment]["global"]["parameters"]


def test_the_revoke_runbook_is_one_command() -> None:
    runbook = DEPLOY.split("## A token or the password leaked", 1)[1].split("\n## ", 1)[0]

    assert "--payload '{\"revoke\": true}'" in runbook
    assert "--cli-binary-format raw-in-base64-out" in runbook
    assert "rejected=" in runbook


def test_the_docs_say_the_password_cannot_be_read_back() -> None:
    assert "password cannot be read back, by design" in DEPLOY
