"""The template as CloudFormation will see it, offline: template.yaml translated by
aws-sam-translator (no AWS call), plus small readers for the IAM policies and intrinsics in it."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]
from samtranslator.translator.managed_policy_translator import (  # type: ignore[import-untyped]
    ManagedPolicyLoader,
)
from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"

# What a deploy of stack STACK_NAME in ACCOUNT_ID / REGION would substitute.
STACK_NAME = "killb-broker-test"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"

Resources = dict[str, dict[str, Any]]
Statement = dict[str, Any]


class OfflineManagedPolicies(ManagedPolicyLoader):  # type: ignore[misc]
    """The template names managed policies by ARN, so SAM never needs IAM's list of them."""

    def __init__(self) -> None:
        super().__init__(iam_client=None)

    def load(self) -> dict[str, str]:
        return {}


def source_template() -> dict[str, Any]:
    """template.yaml as written (short-form intrinsics such as !Ref read as {"Ref": ...})."""
    template: dict[str, Any] = json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE))))
    return template


def translated_template(parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The plain CloudFormation that `sam deploy` would send, with these parameter values.

    Local CodeUri / ContentUri folders become S3 locations, as `sam package` makes them.
    """
    template = source_template()
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = f"s3://artifacts/{key.lower()}.zip"
    previous_region = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = REGION  # the translator reads the region from boto3
    try:
        translated: dict[str, Any] = transform(
            template, dict(parameters or {}), OfflineManagedPolicies()
        )
    finally:
        if previous_region is None:
            del os.environ["AWS_DEFAULT_REGION"]
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous_region
    return translated


def samconfig() -> dict[str, Any]:
    with SAMCONFIG.open("rb") as file:
        return tomllib.load(file)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def referenced_ids(value: Any) -> set[str]:
    """Logical ids a value points at through Ref, Fn::GetAtt or ${...} in Fn::Sub."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else str(inner).split(".")[0]
                found.add(target)
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                found |= {part.split("}")[0].split(".")[0] for part in text.split("${")[1:]}
                if isinstance(inner, list):
                    found |= referenced_ids(inner[1])
            else:
                found |= referenced_ids(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= referenced_ids(inner)
    return found


def identity_statements(resources: Resources) -> Iterator[tuple[str, Statement]]:
    """(role logical id, statement) for every identity-policy statement attached to a role."""
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                for statement in as_list(policy["PolicyDocument"]["Statement"]):
                    yield logical_id, statement
        elif resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            for role in properties.get("Roles", []):
                for statement in as_list(properties["PolicyDocument"]["Statement"]):
                    yield role["Ref"], statement


def statements_of_role(resources: Resources, role: str) -> list[Statement]:
    return [statement for owner, statement in identity_statements(resources) if owner == role]


def actions(statement: Statement) -> set[str]:
    return {str(action) for action in as_list(statement.get("Action", []))}


def key_policy_statements(resources: Resources, principal_id: str) -> list[Statement]:
    """The key policy statements whose AWS principal is this logical id (a role)."""
    key_policy = resources["SecretsKey"]["Properties"]["KeyPolicy"]
    return [
        statement
        for statement in key_policy["Statement"]
        if principal_id in referenced_ids(statement.get("Principal", {}).get("AWS", []))
    ]


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """A Fn::Sub string with the pseudo parameters (and given variables) filled in."""
    values = {
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::StackName": STACK_NAME,
        **variables,
    }
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    return text


def secret_arn(resources: Resources, logical_id: str, suffix: str = "AbC123") -> str:
    """The ARN Secrets Manager would give this secret (its name plus six random characters)."""
    name = substitute(resources[logical_id]["Properties"]["Name"]["Fn::Sub"], {})
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:{name}-{suffix}"


NO_VALUE = object()  # AWS::NoValue: the list item or property is left out


def evaluate(value: Any, parameters: Mapping[str, str], conditions: Mapping[str, bool]) -> Any:
    """Resolve the few intrinsics the API's resource policy uses: Ref, Fn::If, Fn::Split."""
    if isinstance(value, list):
        items = [evaluate(inner, parameters, conditions) for inner in value]
        return [inner for inner in items if inner is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return {"AWS::AccountId": ACCOUNT_ID, "AWS::NoValue": NO_VALUE, **parameters}[value["Ref"]]
    if set(value) == {"Fn::If"}:
        condition, when_true, when_false = value["Fn::If"]
        chosen = when_true if conditions[condition] else when_false
        return evaluate(chosen, parameters, conditions)
    if set(value) == {"Fn::Split"}:
        separator, text = value["Fn::Split"]
        return str(evaluate(text, parameters, conditions)).split(separator)
    resolved = {key: evaluate(inner, parameters, conditions) for key, inner in value.items()}
    return {key: inner for key, inner in resolved.items() if inner is not NO_VALUE}
