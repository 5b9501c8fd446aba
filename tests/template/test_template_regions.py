"""Several regions, read from the translated template: a single-region stack stays as it was, a
primary replicates its secrets under replicas of a multi-Region key, and a replica stack reads
those replicas and invokes the primary's refresher until it is promoted."""

from __future__ import annotations

from typing import Any

import pytest

from tests.template.iam_questions import (
    CONFIGURATIONS,
    KEY_ID,
    MULTI_REGION_KEY_ID,
    REPLICA_CONFIGURATIONS,
    REPLICA_REGION,
    Stack,
)
from tests.template.stack import (
    ACCOUNT_ID,
    REGION,
    STACK_NAME,
    as_list,
    samconfig,
    translated_template,
)

SECRETS = ("CredentialsSecret", "SessionSecret", "AccessTokenSecret")
PRIMARY = CONFIGURATIONS["primary"]
REPLICA = REPLICA_CONFIGURATIONS["replica"]
PROMOTED = REPLICA_CONFIGURATIONS["promoted"]
ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/{STACK_NAME}"
PRIMARY_REFRESHER = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{STACK_NAME}-refresher"


@pytest.fixture(scope="module")
def primary() -> Stack:
    return Stack(PRIMARY)


@pytest.fixture(scope="module")
def replica() -> Stack:
    return Stack(REPLICA, region=REPLICA_REGION)


@pytest.fixture(scope="module")
def promoted() -> Stack:
    return Stack(PROMOTED, region=REPLICA_REGION)


def exists(stack: Stack, logical_id: str) -> bool:
    condition = stack.resources[logical_id].get("Condition")
    return condition is None or stack.condition(condition)


def resolved(stack: Stack, logical_id: str, *path: str) -> Any:
    """A property of a resource as the deploy would resolve it (None when left out)."""
    value: Any = stack.resources[logical_id]["Properties"]
    for key in path:
        if key not in value:
            return None
        value = value[key]
    return stack.resolve(value)


def schedule_state(stack: Stack) -> Any:
    (schedule,) = [
        logical_id
        for logical_id, resource in stack.resources.items()
        if resource["Type"] == "AWS::Scheduler::Schedule"
    ]
    return resolved(stack, schedule, "State")


def broker_variables(stack: Stack) -> dict[str, Any]:
    variables: dict[str, Any] = resolved(stack, "BrokerFunction", "Environment", "Variables")
    return variables


def readers(stack: Stack, secret: str) -> set[str]:
    policy = stack.secret_policy(secret)
    assert policy is not None
    deny = policy["Statement"][0]
    return set(as_list(deny["Condition"]["StringNotEquals"]["aws:PrincipalArn"]))


def test_a_single_region_stack_replicates_nothing_and_names_nothing(default_stack: Stack) -> None:
    # Given every parameter at its default
    # Then no secret has replicas, the key is single-Region, and no role or function is renamed
    for secret in SECRETS:
        assert exists(default_stack, secret)
        assert resolved(default_stack, secret, "ReplicaRegions") is None
    assert resolved(default_stack, "SecretsKey", "MultiRegion") is None
    assert not exists(default_stack, "SecretReplicasKey")
    for role in ("RefresherRole", "BrokerRole", "SchedulerRole"):
        assert resolved(default_stack, role, "RoleName") is None
    assert resolved(default_stack, "RefresherFunction", "FunctionName") is None
    assert schedule_state(default_stack) is None
    key_actions = default_stack.key_policy()["Statement"][0]["Action"]
    assert "kms:ReplicateKey" not in key_actions


def test_replica_regions_replicate_each_secret_under_the_keys_replica_there() -> None:
    # Given a primary that replicates to two Regions
    stack = Stack({"MultiRegionKey": "true", "ReplicaRegions": "eu-west-1,us-west-2"})

    # Then each secret names both, each with the key's id in that Region
    for secret in SECRETS:
        assert resolved(stack, secret, "ReplicaRegions") == [
            {"Region": region, "KmsKeyId": f"arn:aws:kms:{region}:{ACCOUNT_ID}:key/{KEY_ID}"}
            for region in ("eu-west-1", "us-west-2")
        ]


def test_one_replica_region_replicates_there_only(primary: Stack) -> None:
    for secret in SECRETS:
        replicas = resolved(primary, secret, "ReplicaRegions")
        assert [replica["Region"] for replica in replicas] == [REPLICA_REGION]


def test_replica_regions_alone_make_the_key_multi_region() -> None:
    stack = Stack({"ReplicaRegions": REPLICA_REGION})

    assert resolved(stack, "SecretsKey", "MultiRegion") is True


def test_a_multi_region_primary_has_a_multi_region_key_the_deployer_may_replicate(
    primary: Stack,
) -> None:
    assert resolved(primary, "SecretsKey", "MultiRegion") is True
    assert "kms:ReplicateKey" in primary.key_policy()["Statement"][0]["Action"]


def test_a_multi_region_stack_fixes_its_role_and_refresher_names(primary: Stack) -> None:
    # The replicated secret policies and replica stacks' brokers rely on these names
    assert primary.role_arn("RefresherRole") == f"{ROLE}-refresher-{REGION}"
    assert primary.role_arn("BrokerRole") == f"{ROLE}-broker-{REGION}"
    assert primary.role_arn("SchedulerRole") == f"{ROLE}-scheduler-{REGION}"
    assert primary.get_att("RefresherFunction", "Arn") == PRIMARY_REFRESHER


def test_replicated_secret_policies_name_the_roles_of_every_region(primary: Stack) -> None:
    # Given a primary replicating to REPLICA_REGION
    # Then each secret's readers are its functions' roles in both Regions, by their fixed names
    refreshers = {f"{ROLE}-refresher-{REGION}", f"{ROLE}-refresher-{REPLICA_REGION}"}
    brokers = {f"{ROLE}-broker-{REGION}", f"{ROLE}-broker-{REPLICA_REGION}"}
    assert readers(primary, "CredentialsSecret") == refreshers
    assert readers(primary, "SessionSecret") == refreshers
    assert readers(primary, "AccessTokenSecret") == refreshers | brokers


def test_with_two_replica_regions_the_policies_name_the_roles_of_all_three() -> None:
    # Given a primary replicating to two Regions
    stack = Stack({"MultiRegionKey": "true", "ReplicaRegions": "eu-west-1,us-west-2"})

    # Then the access token's readers are both functions' roles in each of the three Regions
    regions = (REGION, "eu-west-1", "us-west-2")
    assert readers(stack, "AccessTokenSecret") == {
        f"{ROLE}-{function}-{region}" for function in ("refresher", "broker") for region in regions
    }
    assert readers(stack, "CredentialsSecret") == {f"{ROLE}-refresher-{r}" for r in regions}


def test_replication_is_denied_to_any_region_but_the_replica_regions(primary: Stack) -> None:
    for secret in SECRETS:
        policy = primary.secret_policy(secret)
        assert policy is not None
        no_replicas = policy["Statement"][1]
        assert no_replicas["Action"] == "secretsmanager:ReplicateSecretToRegions"
        assert no_replicas["Condition"] == {
            "ForAnyValue:StringNotEquals": {"secretsmanager:AddReplicaRegions": [REPLICA_REGION]}
        }


def test_a_replica_stack_has_no_secrets_of_its_own(replica: Stack) -> None:
    for logical_id, resource in replica.resources.items():
        if resource["Type"].startswith("AWS::SecretsManager::"):
            assert not exists(replica, logical_id), logical_id


def test_a_replica_stack_replicates_the_primarys_key(replica: Stack) -> None:
    assert exists(replica, "SecretReplicasKey")
    assert resolved(replica, "SecretReplicasKey", "PrimaryKeyArn") == (
        f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{MULTI_REGION_KEY_ID}"
    )
    # Its logs, dead letters and alarms keep a key of their own, single-Region
    assert resolved(replica, "SecretsKey", "MultiRegion") is None


def test_the_replica_key_policy_names_this_stacks_roles_and_the_primarys_refresher(
    replica: Stack,
) -> None:
    policy = replica.resolve(replica.resources["SecretReplicasKey"]["Properties"]["KeyPolicy"])
    principals = {
        statement["Sid"]: statement["Principal"]["AWS"] for statement in policy["Statement"]
    }

    assert principals == {
        "AccountAdministers": f"arn:aws:iam::{ACCOUNT_ID}:root",
        "AccountReplicatesThisStacksSecrets": f"arn:aws:iam::{ACCOUNT_ID}:root",
        "PrimaryRefresherReplicatesItsWrites": f"{ROLE}-refresher-{REGION}",
        "RefresherReadsItsSecrets": f"{ROLE}-refresher-{REPLICA_REGION}",
        "RefresherWritesSessionAndAccessToken": f"{ROLE}-refresher-{REPLICA_REGION}",
        "BrokerReadsOnlyTheAccessToken": f"{ROLE}-broker-{REPLICA_REGION}",
    }


def test_a_replica_stacks_refresher_is_not_scheduled(replica: Stack) -> None:
    assert schedule_state(replica) == "DISABLED"


def test_a_promoted_replica_stacks_refresher_is_scheduled(promoted: Stack) -> None:
    assert schedule_state(promoted) is None  # ENABLED, the schedule's default


def test_a_replica_stacks_broker_reads_the_replica_and_invokes_the_primarys_refresher(
    replica: Stack,
) -> None:
    variables = broker_variables(replica)

    assert variables["ACCESS_TOKEN_SECRET_ID"] == f"{STACK_NAME}/access-token"
    assert variables["REFRESHER_FUNCTION_NAME"] == PRIMARY_REFRESHER
    grants = replica.identity_policies("BrokerRole")[0]["Statement"]
    (invoke,) = [s for s in grants if s["Action"] == "lambda:InvokeFunction"]
    assert invoke["Resource"] == PRIMARY_REFRESHER


def test_a_promoted_replica_stacks_broker_invokes_its_own_refresher(promoted: Stack) -> None:
    assert broker_variables(promoted)["REFRESHER_FUNCTION_NAME"] == f"{STACK_NAME}-refresher"


def test_sam_publishes_no_new_broker_version_when_only_promoted_changes() -> None:
    # Given the replica stack before and after promotion, as SAM translates them
    def versions(parameters: dict[str, str]) -> list[str]:
        resources = translated_template(parameters)["Resources"]
        return [name for name, r in resources.items() if r["Type"] == "AWS::Lambda::Version"]

    # Then the broker's version is the same resource: the alias live would keep invoking the
    # primary's refresher, which is why ops.promote_region moves live itself
    assert versions(REPLICA) == versions(PROMOTED)


def test_a_replica_stacks_refresher_reads_the_replicas_by_name(replica: Stack) -> None:
    variables = resolved(replica, "RefresherFunction", "Environment", "Variables")

    assert variables["CREDENTIALS_SECRET_ID"] == f"{STACK_NAME}/credentials"
    assert variables["SESSION_SECRET_ID"] == f"{STACK_NAME}/session"
    assert variables["ACCESS_TOKEN_SECRET_ID"] == f"{STACK_NAME}/access-token"


@pytest.mark.parametrize(
    ("parameters", "treat_missing_data"),
    [(REPLICA, "notBreaching"), (PROMOTED, "breaching"), ({}, "breaching")],
)
def test_the_token_alarm_ignores_missing_data_only_while_the_refresher_does_not_run(
    parameters: dict[str, str], treat_missing_data: str
) -> None:
    stack = Stack(parameters, region=REPLICA_REGION if parameters else REGION)

    assert resolved(stack, "AccessTokenExpiringAlarm", "TreatMissingData") == treat_missing_data


def test_the_key_id_a_replica_stack_needs_is_an_output(template: dict[str, Any]) -> None:
    assert "SecretsKeyId" in template["Outputs"]
    for output in ("CredentialsSecretArn", "SessionSecretArn", "AccessTokenSecretArn"):
        assert template["Outputs"][output]["Condition"] == "IsPrimary"


def test_a_replica_stack_without_the_primary_key_is_refused(template: dict[str, Any]) -> None:
    rule = template["Rules"]["ReplicaStackNeedsThePrimaryKey"]

    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "PrimaryRegion"}, ""]}]}
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "PrimaryKeyId"}, ""]}]} in [
        assertion["Assert"] for assertion in rule["Assertions"]
    ]


def test_samconfig_has_a_replica_environment_that_never_sets_promoted() -> None:
    # Given the example replica environment
    environment = samconfig()["sandbox-replica"]
    deploy = environment["deploy"]["parameters"]

    # Then it deploys the sandbox stack's name in its own Region, with fixed role names, as a
    # replica; Promoted is left to the promotion command, so a later deploy keeps it
    assert environment["global"]["parameters"]["stack_name"] == "killb-broker-sandbox"
    assert deploy["region"] != samconfig()["sandbox"]["deploy"]["parameters"].get("region")
    assert deploy["capabilities"] == "CAPABILITY_NAMED_IAM"
    assert 'PrimaryRegion="' in deploy["parameter_overrides"]
    assert 'PrimaryKeyId="' in deploy["parameter_overrides"]
    assert "Promoted" not in deploy["parameter_overrides"]


def refresher_variables(stack: Stack) -> dict[str, Any]:
    variables: dict[str, Any] = resolved(stack, "RefresherFunction", "Environment", "Variables")
    return variables


def test_a_primarys_refresher_asks_its_replica_regions_whether_one_was_promoted(
    primary: Stack,
) -> None:
    # Given a primary replicating to another region, Then its refresher knows which regions to
    # ask, and may read the session secret's metadata there (no value)
    assert refresher_variables(primary)["REPLICA_REGIONS"] == REPLICA_REGION
    grants = primary.identity_policies("RefresherRole")[0]["Statement"]
    (describe,) = [s for s in grants if s["Action"] == "secretsmanager:DescribeSecret"]
    assert describe["Resource"] == (
        f"arn:aws:secretsmanager:*:{ACCOUNT_ID}:secret:{STACK_NAME}/session-??????"
    )


@pytest.mark.parametrize("stack_name", ["replica", "promoted"])
def test_a_replica_stacks_refresher_asks_no_region(
    stack_name: str, request: pytest.FixtureRequest
) -> None:
    # Given a replica stack, promoted or not, Then its refresher has no replica region to ask
    stack: Stack = request.getfixturevalue(stack_name)
    assert refresher_variables(stack)["REPLICA_REGIONS"] == ""
