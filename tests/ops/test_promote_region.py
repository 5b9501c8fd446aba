"""The promotion command against a moto server: its refusals, the stack update, the first refresh,
and running it twice. moto 5.2.5 has no StopReplicationToReplica, so the secrets that pass that
step here are standalone already (as after a first run); the stack is a stand-in with the real
template's region parameters (moto cannot expand SAM's transform); the refresher's answer is
queued in moto, since its Lambda runs no code without Docker."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from contextlib import redirect_stderr
from dataclasses import dataclass, field

import boto3
import pytest
import requests
from botocore.config import Config
from moto.server import ThreadedMotoServer

from ops.promote_region import (
    Clients,
    PromotionFailed,
    PromotionRefused,
    clients_for,
    main,
    promote,
)
from tests.local.runner import free_port, run_tool

STACK = "killb-broker-sandbox"
PRIMARY_REGION = "us-east-1"
REGION = "us-west-2"
# The real template's parameters that matter here, and one that must survive the update.
STAND_IN_TEMPLATE = json.dumps(
    {
        "Parameters": {
            "KillBEnvironment": {"Type": "String", "Default": "sandbox"},
            "PrimaryRegion": {"Type": "String", "Default": ""},
            "PrimaryKeyId": {"Type": "String", "Default": ""},
            "Promoted": {"Type": "String", "Default": "false"},
        },
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {"BrokerFunctionName": {"Value": f"{STACK}-BrokerFunction-AbC123"}},
    }
)
BROKER = f"{STACK}-BrokerFunction-AbC123"
PRIMARY_REFRESHER = f"arn:aws:lambda:{PRIMARY_REGION}:123456789012:function:{STACK}-refresher"
LOGGED_IN = {
    "action": "logged_in",
    "expiresAt": 1900000000,
    "reason": "the old session was revoked",
}


@dataclass
class World:
    """A moto server holding a replica stack in REGION; what the command said, line by line."""

    url: str
    said: list[str] = field(default_factory=list)

    def stack_parameters(self) -> dict[str, str]:
        cloudformation = boto3.client("cloudformation", region_name=REGION, endpoint_url=self.url)
        (stack,) = cloudformation.describe_stacks(StackName=STACK)["Stacks"]
        return {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}

    def live_refresher(self) -> str:
        """The refresher that the broker's alias `live` invokes."""
        lambda_ = boto3.client("lambda", region_name=REGION, endpoint_url=self.url)
        live = lambda_.get_function_configuration(FunctionName=BROKER, Qualifier="live")
        return str(live["Environment"]["Variables"]["REFRESHER_FUNCTION_NAME"])

    def queue_refresher_answer(self, summary: dict[str, object]) -> None:
        answer = {"results": [json.dumps(summary)], "region": REGION}
        requests.post(f"{self.url}/moto-api/static/lambda-simple/response", json=answer, timeout=5)

    def clients(self, primary_gone: bool) -> Clients:
        """The command's clients, all on moto; the primary's on a closed port when it is gone."""
        closed = f"http://127.0.0.1:{free_port()}"
        quick = Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1})
        return Clients(
            cloudformation=boto3.client(
                "cloudformation", region_name=REGION, endpoint_url=self.url
            ),
            secretsmanager=boto3.client(
                "secretsmanager", region_name=REGION, endpoint_url=self.url
            ),
            lambda_=boto3.client("lambda", region_name=REGION, endpoint_url=self.url),
            primary_secretsmanager=boto3.client(
                "secretsmanager",
                region_name=PRIMARY_REGION,
                endpoint_url=closed if primary_gone else self.url,
                config=quick,
            ),
        )

    def promote(self, *, primary_gone: bool, force: bool = False) -> dict[str, object]:
        return promote(
            STACK,
            REGION,
            force=force,
            clients=lambda _region, _primary: self.clients(primary_gone),
            say=self.said.append,
        )


def code_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return {}\n")
    return buffer.getvalue()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    try:
        # moto keeps its state in the process: each test starts from an empty account
        requests.post(f"{url}/moto-api/reset", timeout=5)
        requests.post(f"{url}/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=5)
        built = World(url)
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName=STACK,
            TemplateBody=STAND_IN_TEMPLATE,
            Parameters=[
                {"ParameterKey": "KillBEnvironment", "ParameterValue": "production"},
                {"ParameterKey": "PrimaryRegion", "ParameterValue": PRIMARY_REGION},
                {"ParameterKey": "PrimaryKeyId", "ParameterValue": "mrk-" + "0" * 32},
            ],
        )
        role = boto3.client("iam").create_role(
            RoleName=f"{STACK}-refresher-{REGION}", AssumeRolePolicyDocument="{}"
        )["Role"]["Arn"]
        lambda_ = boto3.client("lambda", region_name=REGION)
        lambda_.create_function(
            FunctionName=f"{STACK}-refresher",
            Runtime="python3.13",
            Role=role,
            Handler="app.lambda_handler",
            Code={"ZipFile": code_zip()},
        )
        # The broker as SAM deploys it: the alias live on a version that invokes the primary's
        # refresher. Then $LATEST invokes this Region's, as the stack update with Promoted=true
        # leaves it (moto's CloudFormation does not update a function it did not create), while
        # SAM publishes no version for a parameter's change.
        lambda_.create_function(
            FunctionName=BROKER,
            Runtime="python3.13",
            Role=role,
            Handler="app.lambda_handler",
            Code={"ZipFile": code_zip()},
            Environment={"Variables": {"REFRESHER_FUNCTION_NAME": PRIMARY_REFRESHER}},
        )
        version = lambda_.publish_version(FunctionName=BROKER)["Version"]
        lambda_.create_alias(FunctionName=BROKER, Name="live", FunctionVersion=version)
        lambda_.update_function_configuration(
            FunctionName=BROKER,
            Environment={"Variables": {"REFRESHER_FUNCTION_NAME": f"{STACK}-refresher"}},
        )
        yield built
    finally:
        server.stop()


def standalone_secrets_here() -> None:
    secrets = boto3.client("secretsmanager", region_name=REGION)
    for kind in ("credentials", "session", "access-token"):
        secrets.create_secret(Name=f"{STACK}/{kind}", SecretString="{}")


def replicated_secrets() -> None:
    secrets = boto3.client("secretsmanager", region_name=PRIMARY_REGION)
    for kind in ("credentials", "session", "access-token"):
        secrets.create_secret(
            Name=f"{STACK}/{kind}", SecretString="{}", AddReplicaRegions=[{"Region": REGION}]
        )


def test_help_says_what_it_does_and_how_to_force_it() -> None:
    done = run_tool("-m", "ops.promote_region", "--help")

    assert done.returncode == 0
    assert "--stack-name" in done.stdout
    assert "--force" in done.stdout
    assert "docs/deploy.md" in done.stdout


def test_while_the_primary_still_answers_it_refuses_and_changes_nothing(world: World) -> None:
    # Given a replica stack whose secrets still replicate from a primary Region that answers
    replicated_secrets()

    # When the command runs as an operator runs it
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        code = main(["--stack-name", STACK, "--region", REGION])

    # Then it refuses, says why, and the stack and the replicas are as they were
    assert code == 2
    assert "still answers" in stderr.getvalue()
    assert "--force" in stderr.getvalue()
    assert world.stack_parameters()["Promoted"] == "false"
    replica = boto3.client("secretsmanager", region_name=REGION)
    assert replica.describe_secret(SecretId=f"{STACK}/session")["PrimaryRegion"] == PRIMARY_REGION


def test_a_primary_stack_is_refused(world: World) -> None:
    # Given a stack without PrimaryRegion (a primary)
    boto3.client("cloudformation", region_name=REGION).update_stack(
        StackName=STACK,
        UsePreviousTemplate=True,
        Parameters=[{"ParameterKey": "PrimaryRegion", "ParameterValue": ""}],
    )

    # When it is promoted, Then it is refused
    with pytest.raises(PromotionRefused, match="is a primary stack already"):
        world.promote(primary_gone=True)


def test_with_the_primary_gone_the_stack_is_promoted_and_makes_a_first_refresh(
    world: World,
) -> None:
    # Given a replica stack whose secrets are standalone, and a primary Region that is gone
    standalone_secrets_here()
    world.queue_refresher_answer(LOGGED_IN)

    # When it is promoted
    summary = world.promote(primary_gone=True)

    # Then Promoted is set with every other parameter kept, and the refresher logged in afresh
    assert world.stack_parameters() == {
        "KillBEnvironment": "production",
        "PrimaryRegion": PRIMARY_REGION,
        "PrimaryKeyId": "mrk-" + "0" * 32,
        "Promoted": "true",
    }
    assert summary == LOGGED_IN
    assert world.said[0] == f"primary {PRIMARY_REGION}: does not answer"
    assert world.said[1:4] == [
        f"secret {STACK}/{kind}: already standalone"
        for kind in ("credentials", "session", "access-token")
    ]
    assert world.said[4].startswith(f"stack {STACK}: Promoted=true")
    assert world.said[5].startswith(f"broker {BROKER}: alias live on version 2")
    assert world.said[6] == f"refresher {STACK}-refresher: logged_in: the old session was revoked"


def test_after_the_promotion_the_brokers_live_alias_invokes_this_regions_refresher(
    world: World,
) -> None:
    # Given the broker's alias live still on the version that invokes the primary's refresher
    standalone_secrets_here()
    world.queue_refresher_answer(LOGGED_IN)
    assert world.live_refresher() == PRIMARY_REFRESHER

    # When the stack is promoted
    world.promote(primary_gone=True)

    # Then live runs a version that invokes this Region's refresher
    assert world.live_refresher() == f"{STACK}-refresher"


def test_running_it_again_does_not_update_the_stack_again(world: World) -> None:
    # Given a stack promoted once
    standalone_secrets_here()
    world.queue_refresher_answer(LOGGED_IN)
    world.promote(primary_gone=True)
    world.said.clear()
    world.queue_refresher_answer(LOGGED_IN)

    # When the command runs again
    world.promote(primary_gone=True)

    # Then the stack and the alias are left as they are, and the refresher revokes again
    assert f"stack {STACK}: already promoted" in world.said
    assert f"broker {BROKER}: alias live has the current settings already" in world.said
    assert world.stack_parameters()["Promoted"] == "true"
    assert world.said[-1].startswith(f"refresher {STACK}-refresher: logged_in")


def test_force_promotes_while_the_primary_still_answers(world: World) -> None:
    # Given a primary Region that answers (its access-token secret is there)
    standalone_secrets_here()
    boto3.client("secretsmanager", region_name=PRIMARY_REGION).create_secret(
        Name=f"{STACK}/access-token", SecretString="{}"
    )
    world.queue_refresher_answer(LOGGED_IN)

    # When it is promoted with force
    world.promote(primary_gone=False, force=True)

    # Then it says what the primary answered, and promotes
    assert world.said[0] == f"primary {PRIMARY_REGION}: its access-token secret is there"
    assert world.stack_parameters()["Promoted"] == "true"


def test_a_first_refresh_without_a_token_is_a_failure_after_the_promotion(world: World) -> None:
    # Given KillB does not give the promoted refresher a token
    standalone_secrets_here()
    world.queue_refresher_answer({"action": "failed", "expiresAt": None, "reason": "KillB down"})

    # When it is promoted, Then the command fails, saying the promotion itself is done
    with pytest.raises(PromotionFailed, match="promoted, but no new token yet"):
        world.promote(primary_gone=True)
    assert world.stack_parameters()["Promoted"] == "true"


def test_the_primary_is_asked_with_a_short_timeout_and_no_retry() -> None:
    primary = clients_for(REGION, PRIMARY_REGION).primary_secretsmanager
    settings = vars(primary.meta.config)

    assert primary.meta.region_name == PRIMARY_REGION
    assert settings["connect_timeout"] <= 5
    assert settings["read_timeout"] <= 5
    assert settings["retries"] == {"total_max_attempts": 1, "mode": "standard"}


def test_a_secret_that_cannot_stop_replicating_stops_the_promotion_before_the_stack(
    world: World,
) -> None:
    # Given replicas whose replication cannot be stopped: moto 5.2.5 answers
    # StopReplicationToReplica with a 500 (not implemented), as AWS may answer in an outage
    replicated_secrets()

    # When the stack is promoted with the primary gone
    with pytest.raises(PromotionFailed, match=f"secret {STACK}/credentials"):
        world.promote(primary_gone=True)

    # Then the stack is not promoted and the broker still invokes the primary's refresher
    assert world.stack_parameters()["Promoted"] == "false"
    assert world.live_refresher() == PRIMARY_REFRESHER
