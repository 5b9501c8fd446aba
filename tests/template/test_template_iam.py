"""Least privilege, read from the translated template: who may read which secret, use the key,
and invoke the refresher."""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest

from tests.template.iam_questions import Stack
from tests.template.stack import (
    Resources,
    actions,
    as_list,
    identity_statements,
    key_policy_statements,
    referenced_ids,
    secret_arn,
    statements_of_role,
    substitute,
)

SECRETS = ("CredentialsSecret", "SessionSecret", "AccessTokenSecret")


def secrets_manager_grants(resources: Resources, role: str) -> dict[str, set[str]]:
    """Secret logical id -> the Secrets Manager actions this role's policies allow on it."""
    grants: dict[str, set[str]] = {}
    for statement in statements_of_role(resources, role):
        wanted = {action for action in actions(statement) if action.startswith("secretsmanager:")}
        if statement["Effect"] != "Allow" or not wanted:
            continue
        # A replica stack's branch names the replicas by ARN (test_template_regions.py)
        for secret in referenced_ids(statement["Resource"]) & set(SECRETS):
            grants.setdefault(secret, set()).update(wanted)
    return grants


def encryption_context_patterns(statement: dict[str, object]) -> list[str]:
    condition = statement["Condition"]
    assert isinstance(condition, dict)
    patterns = condition["StringLike"]["kms:EncryptionContext:SecretARN"]
    return [substitute(pattern["Fn::Sub"], {}) for pattern in as_list(patterns)]


def decryptable_secrets(resources: Resources, role: str) -> set[str]:
    """The secrets whose ARN matches an encryption-context pattern of a Decrypt grant to role."""
    readable: set[str] = set()
    for statement in key_policy_statements(resources, role):
        if "kms:Decrypt" not in actions(statement) or "StringLike" not in statement["Condition"]:
            continue
        for pattern in encryption_context_patterns(statement):
            readable |= {
                secret for secret in SECRETS if fnmatchcase(secret_arn(resources, secret), pattern)
            }
    return readable


def test_broker_role_cannot_read_the_credentials_or_session_secret(resources: Resources) -> None:
    # Given the broker's role, When its Secrets Manager grants are collected
    grants = secrets_manager_grants(resources, "BrokerRole")

    # Then neither the credentials nor the session secret is among them
    assert "CredentialsSecret" not in grants
    assert "SessionSecret" not in grants


def test_broker_role_only_reads_the_access_token_secret(resources: Resources) -> None:
    grants = secrets_manager_grants(resources, "BrokerRole")

    assert grants == {"AccessTokenSecret": {"secretsmanager:GetSecretValue"}}


def test_broker_key_grant_decrypts_only_the_access_token_through_secrets_manager(
    resources: Resources,
) -> None:
    # Given the key policy statements that name the broker's role
    statements = key_policy_statements(resources, "BrokerRole")

    # Then it may only decrypt, only through Secrets Manager, only for the access-token secret
    assert [actions(statement) for statement in statements] == [{"kms:Decrypt"}]
    via_service = statements[0]["Condition"]["StringEquals"]["kms:ViaService"]
    assert substitute(via_service["Fn::Sub"], {}) == "secretsmanager.us-east-1.amazonaws.com"
    assert decryptable_secrets(resources, "BrokerRole") == {"AccessTokenSecret"}


def test_broker_key_grant_does_not_match_a_lookalike_secret(resources: Resources) -> None:
    # Given a secret whose name only starts like the access-token secret's
    lookalike = secret_arn(resources, "AccessTokenSecret", suffix="old-AbC123")
    (statement,) = key_policy_statements(resources, "BrokerRole")

    # Then the broker's encryption-context pattern does not match it
    assert not any(fnmatchcase(lookalike, p) for p in encryption_context_patterns(statement))


def test_refresher_reads_all_three_secrets_and_writes_only_session_and_access_token(
    resources: Resources,
) -> None:
    grants = secrets_manager_grants(resources, "RefresherRole")

    assert grants == {
        "CredentialsSecret": {"secretsmanager:GetSecretValue"},
        "SessionSecret": {"secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"},
        "AccessTokenSecret": {"secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"},
    }


def test_refresher_key_grants_encrypt_only_the_secrets_it_writes(resources: Resources) -> None:
    # Given the key policy statements that let the refresher create data keys via Secrets Manager
    writes = [
        statement
        for statement in key_policy_statements(resources, "RefresherRole")
        if "kms:GenerateDataKey" in actions(statement)
        and "StringLike" in statement.get("Condition", {})
    ]

    # Then they match the session and access-token secrets, never the credentials
    patterns = [
        pattern for statement in writes for pattern in encryption_context_patterns(statement)
    ]
    writable = {
        secret
        for secret in SECRETS
        if any(fnmatchcase(secret_arn(resources, secret), pattern) for pattern in patterns)
    }
    assert writable == {"SessionSecret", "AccessTokenSecret"}
    assert decryptable_secrets(resources, "RefresherRole") == set(SECRETS)


@pytest.mark.parametrize("service", ["secretsmanager", "kms"])
def test_no_identity_policy_allows_the_service_on_every_resource(
    resources: Resources, service: str
) -> None:
    # Given every statement of every role's policies
    # Then none grants a Secrets Manager or KMS action on "*", nor the service's wildcard action
    for role, statement in identity_statements(resources):
        granted = {action for action in actions(statement) if action.startswith(f"{service}:")}
        if not granted:
            continue
        assert "*" not in as_list(statement["Resource"]), (role, statement)
        assert f"{service}:*" not in granted, (role, statement)


def test_managed_policies_grant_neither_secrets_nor_keys(resources: Resources) -> None:
    # Given the AWS managed policies attached to the roles (their text is not in the template)
    attached = {
        arn if isinstance(arn, str) else substitute(arn["Fn::Sub"], {})
        for resource in resources.values()
        if resource["Type"] == "AWS::IAM::Role"
        for arn in resource["Properties"].get("ManagedPolicyArns", [])
    }

    # Then they are the tracing, API-logging and CodeDeploy-for-Lambda ones only (CodeDeploy's
    # shifts the broker's alias and reads its alarms), which touch neither service
    assert attached == {
        "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
        "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
        "arn:aws:iam::aws:policy/service-role/AWSCodeDeployRoleForLambda",
    }


def test_only_the_scheduler_and_the_broker_may_invoke_the_refresher(resources: Resources) -> None:
    # Given every identity statement that allows invoking a Lambda function
    invokers = {
        role
        for role, statement in identity_statements(resources)
        if statement["Effect"] == "Allow"
        and actions(statement) & {"lambda:InvokeFunction", "lambda:*", "*"}
        and "RefresherFunction" in referenced_ids(statement["Resource"])
    }

    # Then exactly the scheduler's and the broker's roles may invoke the refresher
    assert invokers == {"SchedulerRole", "BrokerRole"}


def test_no_resource_policy_opens_the_refresher_to_anyone(resources: Resources) -> None:
    # Given the Lambda resource policies and function URLs in the stack
    opened = [
        logical_id
        for logical_id, resource in resources.items()
        if resource["Type"] in {"AWS::Lambda::Permission", "AWS::Lambda::Url"}
        and "RefresherFunction" in referenced_ids(resource["Properties"])
    ]

    # Then none names the refresher
    assert opened == []


def test_the_schedule_runs_the_refresher_with_the_scheduler_role(resources: Resources) -> None:
    (schedule,) = [r for r in resources.values() if r["Type"] == "AWS::Scheduler::Schedule"]

    target = schedule["Properties"]["Target"]
    assert referenced_ids(target["Arn"]) == {"RefresherFunction"}
    assert referenced_ids(target["RoleArn"]) == {"SchedulerRole"}


def test_the_broker_role_holds_no_permission_beyond_its_job(resources: Resources) -> None:
    granted = {
        action
        for statement in statements_of_role(resources, "BrokerRole")
        for action in actions(statement)
    }

    assert granted == {
        "secretsmanager:GetSecretValue",
        "lambda:InvokeFunction",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }


def test_the_secrets_are_encrypted_with_the_stacks_rotating_key(resources: Resources) -> None:
    assert resources["SecretsKey"]["Properties"]["EnableKeyRotation"] is True
    for secret in SECRETS:
        assert referenced_ids(resources[secret]["Properties"]["KmsKeyId"]) == {"SecretsKey"}


READERS = {
    "CredentialsSecret": {"RefresherRole"},
    "SessionSecret": {"RefresherRole"},
    "AccessTokenSecret": {"RefresherRole", "BrokerRole"},
}


def secret_policies(resources: Resources) -> dict[str, dict[str, object]]:
    """Secret logical id -> the properties of the resource policy attached to it."""
    found: dict[str, dict[str, object]] = {}
    for resource in resources.values():
        if resource["Type"] == "AWS::SecretsManager::ResourcePolicy":
            (secret,) = referenced_ids(resource["Properties"]["SecretId"])
            assert secret not in found, secret
            found[secret] = resource["Properties"]
    return found


def account_key_statements(resources: Resources) -> list[dict[str, object]]:
    statements = resources["SecretsKey"]["Properties"]["KeyPolicy"]["Statement"]
    return [s for s in statements if ":root" in str(s.get("Principal", {}).get("AWS", ""))]


@pytest.mark.parametrize("secret", sorted(READERS))
def test_secret_value_is_denied_to_everyone_but_its_named_readers(
    resources: Resources, default_stack: Stack, secret: str
) -> None:
    # Given the resource policy attached to the secret
    policy = secret_policies(resources)[secret]

    # Then it blocks public policies and denies GetSecretValue to every principal whose ARN is
    # not one of the secret's readers' roles
    assert policy["BlockPublicPolicy"] is True
    document = policy["ResourcePolicy"]
    assert isinstance(document, dict)
    deny, no_replicas = document["Statement"]
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == (
        "Deny",
        "*",
        "secretsmanager:GetSecretValue",
    )
    assert set(deny["Condition"]) == {"StringNotEquals"}
    resolved = default_stack.secret_policy(secret)
    assert resolved is not None
    exceptions = resolved["Statement"][0]["Condition"]["StringNotEquals"]["aws:PrincipalArn"]
    assert set(as_list(exceptions)) == {default_stack.role_arn(role) for role in READERS[secret]}
    assert (no_replicas["Effect"], no_replicas["Principal"], no_replicas["Action"]) == (
        "Deny",
        "*",
        "secretsmanager:ReplicateSecretToRegions",
    )
    assert "Condition" not in resolved["Statement"][1]


def test_the_account_administers_the_key_without_decrypting_or_granting(
    resources: Resources,
) -> None:
    # Given the key policy statements for the account (CloudFormation, administrators, IAM)
    statements = account_key_statements(resources)
    (admin,) = [s for s in statements if "Condition" not in s]

    # Then the unconditional one holds no cryptographic action, no wildcard and no grants
    granted = actions(admin)
    assert "kms:*" not in granted
    assert not granted & {"kms:Decrypt", "kms:Encrypt", "kms:CreateGrant", "kms:ReEncrypt*"}
    assert not any(
        a.startswith(("kms:Create", "kms:Generate", "kms:ReEncrypt"))
        for a in granted - {"kms:CreateAlias"}
    )
    assert {"kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:Describe*"} <= granted


def test_the_account_uses_the_key_only_through_aws_services(resources: Resources) -> None:
    # Given the account's conditional key statements
    conditional = [s for s in account_key_statements(resources) if "Condition" in s]

    # Then every one requires a service in between (no direct Decrypt of a data key)
    assert conditional
    for statement in conditional:
        condition = statement["Condition"]
        assert isinstance(condition, dict)
        assert "kms:ViaService" in condition["StringEquals"]
        assert condition["StringEquals"]["kms:CallerAccount"] == {"Ref": "AWS::AccountId"}


def test_cloudwatch_uses_the_key_only_for_this_stacks_alarms(resources: Resources) -> None:
    statements = resources["SecretsKey"]["Properties"]["KeyPolicy"]["Statement"]
    (statement,) = [
        s for s in statements if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]

    condition = statement["Condition"]
    assert condition["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    source_arn = substitute(condition["ArnLike"]["aws:SourceArn"]["Fn::Sub"], {})
    assert source_arn == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:killb-broker-test-*"


def test_only_this_stacks_alarms_publish_to_the_alarm_topic(resources: Resources) -> None:
    (statement,) = resources["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]

    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    source_arn = substitute(statement["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"], {})
    assert source_arn == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:killb-broker-test-*"
