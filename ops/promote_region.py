"""Make a replica stack the primary when the primary Region is lost (docs/deploy.md, "Several
regions"):

    python -m ops.promote_region --stack-name killb-broker-sandbox --region us-west-2

Each step first looks at what is already done, so running the command again is safe:

1. the primary Region must not answer (DescribeSecret there, a few seconds at most), unless
   --force: two primaries would mean two refreshers on one KillB session;
2. the three secrets here stop replicating (StopReplicationToReplica; a secret that is already
   standalone is left alone);
3. the stack is updated with its own template and parameters but Promoted=true, so its refresher's
   schedule starts and its broker invokes its own refresher; a later `sam deploy` that does not
   name Promoted keeps it;
4. the broker's alias `live` moves to a version published with those settings (SAM publishes
   none for a parameter's change);
5. the refresher here makes the first refresh as a revoke: a new login, published, then the old
   session (the lost primary's, as last replicated) logged out at KillB, so no token of that
   session is handed out again, here or by what is left of the old primary.

Nothing it prints holds a token: the refresher's summary has none.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudformation.type_defs import ParameterTypeDef
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

SECRETS = ("credentials", "session", "access-token")
# How long the primary Region gets to answer: a lost Region times out or refuses at once.
PRIMARY_CHECK_TIMEOUT_SECONDS = 5
# The refresher may take 90 s (its Timeout in template.yaml); the invoke waits longer.
REFRESH_TIMEOUT_SECONDS = 120
UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)

Say = Callable[[str], None]


class PromotionRefused(Exception):
    """A check before any change failed: nothing was changed."""


class PromotionFailed(Exception):
    """A step failed after the checks; the message says which. Running again is safe."""


@dataclass(frozen=True)
class Clients:
    """This Region's clients, and one for Secrets Manager in the primary Region."""

    cloudformation: CloudFormationClient
    secretsmanager: SecretsManagerClient
    lambda_: LambdaClient
    primary_secretsmanager: SecretsManagerClient


def clients_for(region: str, primary_region: str) -> Clients:
    quick = Config(
        connect_timeout=PRIMARY_CHECK_TIMEOUT_SECONDS,
        read_timeout=PRIMARY_CHECK_TIMEOUT_SECONDS,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    # One attempt each: a retried revoke would revoke the session it has just published.
    patient = Config(read_timeout=REFRESH_TIMEOUT_SECONDS, retries={"total_max_attempts": 1})
    return Clients(
        cloudformation=boto3.client("cloudformation", region_name=region),
        secretsmanager=boto3.client("secretsmanager", region_name=region),
        lambda_=boto3.client("lambda", region_name=region, config=patient),
        primary_secretsmanager=boto3.client(
            "secretsmanager", region_name=primary_region, config=quick
        ),
    )


@dataclass(frozen=True)
class StackView:
    parameters: dict[str, str]
    outputs: dict[str, str]


def describe(cloudformation: CloudFormationClient, stack_name: str) -> StackView:
    try:
        (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        raise PromotionRefused(f"no stack {stack_name} here: {error}") from error
    return StackView(
        parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in stack["Parameters"]},
        outputs={o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])},
    )


def primary_answer(primary: SecretsManagerClient, stack_name: str) -> str | None:
    """What the primary Region answered about its access-token secret; None when it did not."""
    try:
        primary.describe_secret(SecretId=f"{stack_name}/access-token")
    except UNREACHABLE:
        return None
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500:
            return None
        return f"it answered {error.response.get('Error', {}).get('Code', status)}"
    return "its access-token secret is there"


def stop_replication(secrets: SecretsManagerClient, stack_name: str, region: str, say: Say) -> None:
    for kind in SECRETS:
        name = f"{stack_name}/{kind}"
        try:
            primary_region = secrets.describe_secret(SecretId=name).get("PrimaryRegion", region)
            if primary_region == region:
                say(f"secret {name}: already standalone")
                continue
            secrets.stop_replication_to_replica(SecretId=name)
        except ClientError as error:
            raise PromotionFailed(f"secret {name}: {error}") from error
        say(f"secret {name}: replication from {primary_region} stopped")


def mark_promoted(
    cloudformation: CloudFormationClient,
    stack_name: str,
    parameters: dict[str, str],
    say: Say,
) -> None:
    if parameters.get("Promoted") == "true":
        say(f"stack {stack_name}: already promoted")
        return
    # Every other parameter keeps its value, and the template stays the one deployed.
    values: list[ParameterTypeDef] = [
        {"ParameterKey": name, "UsePreviousValue": True}
        for name in parameters
        if name != "Promoted"
    ]
    values.append({"ParameterKey": "Promoted", "ParameterValue": "true"})
    try:
        cloudformation.update_stack(
            StackName=stack_name,
            UsePreviousTemplate=True,
            Parameters=values,
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        cloudformation.get_waiter("stack_update_complete").wait(
            StackName=stack_name, WaiterConfig={"Delay": 15, "MaxAttempts": 120}
        )
    except (ClientError, BotoCoreError) as error:
        raise PromotionFailed(f"stack {stack_name}: the update failed: {error}") from error
    say(f"stack {stack_name}: Promoted=true (the refresher's schedule runs, the broker invokes it)")


def put_live_on_latest(lambda_: LambdaClient, function: str, say: Say) -> None:
    """Point the broker's alias `live` at a version with the function's current settings.

    SAM publishes a new version only when the code or the template's text of the function
    changes, not when a parameter's value does: after the update, `live` would still run the
    version that invokes the lost primary's refresher.
    """
    try:
        live = lambda_.get_function_configuration(FunctionName=function, Qualifier="live")
        latest = lambda_.get_function_configuration(FunctionName=function)
        if live.get("Environment") == latest.get("Environment"):
            say(f"broker {function}: alias live has the current settings already")
            return
        lambda_.get_waiter("function_updated_v2").wait(FunctionName=function)
        version = lambda_.publish_version(
            FunctionName=function, Description="promotion: invokes this Region's refresher"
        )["Version"]
        lambda_.update_alias(FunctionName=function, Name="live", FunctionVersion=version)
    except (ClientError, BotoCoreError) as error:
        raise PromotionFailed(
            f"broker {function}: moving the alias live failed: {error}"
        ) from error
    say(f"broker {function}: alias live on version {version} (invokes this Region's refresher)")


def first_refresh(lambda_: LambdaClient, stack_name: str, say: Say) -> dict[str, Any]:
    function = f"{stack_name}-refresher"
    try:
        answer = lambda_.invoke(
            FunctionName=function,
            InvocationType="RequestResponse",
            Payload=json.dumps({"revoke": True}).encode(),
        )
        summary: dict[str, Any] = json.loads(answer["Payload"].read())
    except (ClientError, BotoCoreError, ValueError) as error:
        raise PromotionFailed(f"refresher {function}: the first refresh failed: {error}") from error
    if answer.get("FunctionError") or not isinstance(summary, dict):
        raise PromotionFailed(f"refresher {function}: the first refresh crashed")
    say(f"refresher {function}: {summary.get('action')}: {summary.get('reason')}")
    if summary.get("action") != "logged_in":
        raise PromotionFailed(
            f"refresher {function}: promoted, but no new token yet; its schedule retries"
        )
    return summary


def promote(
    stack_name: str,
    region: str,
    *,
    force: bool = False,
    clients: Callable[[str, str], Clients] = clients_for,
    say: Say = print,
) -> dict[str, Any]:
    """Promote the replica stack STACK_NAME in REGION; return the first refresh's summary."""
    stack = describe(clients(region, region).cloudformation, stack_name)
    primary_region = stack.parameters.get("PrimaryRegion", "")
    if not primary_region:
        raise PromotionRefused(f"stack {stack_name} in {region} is a primary stack already")
    here = clients(region, primary_region)
    answered = primary_answer(here.primary_secretsmanager, stack_name)
    if answered is not None and not force:
        raise PromotionRefused(
            f"the primary Region {primary_region} still answers ({answered}): "
            "nothing changed; --force promotes anyway"
        )
    broker = stack.outputs.get("BrokerFunctionName")
    if not broker:
        raise PromotionRefused(f"stack {stack_name} has no BrokerFunctionName output")
    say(f"primary {primary_region}: {answered or 'does not answer'}")
    stop_replication(here.secretsmanager, stack_name, region, say)
    mark_promoted(here.cloudformation, stack_name, stack.parameters, say)
    put_live_on_latest(here.lambda_, broker, say)
    return first_refresh(here.lambda_, stack_name, say)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.promote_region",
        description=(
            "Make the replica stack STACK in REGION the primary, when the primary Region is "
            "lost: its secrets stop replicating, its refresher's schedule starts, its broker "
            "invokes its own refresher, and a first refresh revokes the lost primary's session. "
            "Safe to run again. Runbook: docs/deploy.md, Several regions."
        ),
    )
    parser.add_argument("--stack-name", required=True, help="the stack's name (same everywhere)")
    parser.add_argument("--region", required=True, help="the replica stack's Region")
    parser.add_argument(
        "--force",
        action="store_true",
        help="promote even though the primary Region still answers (it must then be stopped)",
    )
    arguments = parser.parse_args(argv)
    try:
        promote(arguments.stack_name, arguments.region, force=arguments.force)
    except PromotionRefused as refused:
        print(f"promote_region: refused: {refused}", file=sys.stderr)
        return 2
    except (PromotionFailed, BotoCoreError) as failed:
        print(f"promote_region: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
