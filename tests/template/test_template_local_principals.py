"""Developers' roles on a dev stack (LocalBrokerPrincipalArns, LocalRefresherPrincipalArns): with
the parameters empty the policies are the functions' alone; set, each named role gets what the
function it stands in for has, and nothing more."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Any

import pytest

from tests.template.iam_questions import BROKER_DEVELOPER, REFRESHER_DEVELOPER, Stack
from tests.template.stack import as_list, samconfig
from tests.template.test_template_config import overrides

LOCAL_PARAMETERS = ("LocalBrokerPrincipalArns", "LocalRefresherPrincipalArns")
SECRETS = {
    "CredentialsSecret": "credentials",
    "SessionSecret": "session",
    "AccessTokenSecret": "access-token",
}
FUNCTION_READERS = {
    "CredentialsSecret": {"RefresherRole"},
    "SessionSecret": {"RefresherRole"},
    "AccessTokenSecret": {"RefresherRole", "BrokerRole"},
}


def readers(stack: Stack, secret: str) -> set[str]:
    """The principal ARNs the secret's resource policy does not deny GetSecretValue."""
    policy = stack.secret_policy(secret)
    assert policy is not None
    (deny,) = [s for s in policy["Statement"] if s["Action"] == "secretsmanager:GetSecretValue"]
    return set(as_list(deny["Condition"]["StringNotEquals"]["aws:PrincipalArn"]))


def key_grants(stack: Stack, principal_arn: str) -> dict[str, set[str]]:
    """KMS action -> the secrets whose encryption context a statement naming this ARN allows."""
    grants: dict[str, set[str]] = {}
    for statement in stack.key_policy()["Statement"]:
        if principal_arn not in as_list(statement.get("Principal", {}).get("AWS", [])):
            continue
        condition = statement["Condition"]
        assert condition["StringEquals"] == {
            "kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"
        }
        patterns = as_list(condition["StringLike"]["kms:EncryptionContext:SecretARN"])
        matched = {
            name
            for secret, name in SECRETS.items()
            if any(fnmatchcase(str(stack.ref(secret)), pattern) for pattern in patterns)
        }
        for action in as_list(statement["Action"]):
            grants.setdefault(action, set()).update(matched)
    return grants


def function_policies(stack: Stack) -> dict[str, Any]:
    return {
        "key": stack.key_policy(),
        **{secret: stack.secret_policy(secret) for secret in SECRETS},
    }


def test_with_the_local_parameters_empty_only_the_functions_roles_read_a_secret(
    default_stack: Stack,
) -> None:
    # Given the stack with every parameter at its default
    # Then each secret's readers are its functions' roles, and no key statement is a local one
    for secret, roles in FUNCTION_READERS.items():
        assert readers(default_stack, secret) == {default_stack.role_arn(r) for r in roles}
    sids = [statement["Sid"] for statement in default_stack.key_policy()["Statement"]]
    assert not [sid for sid in sids if sid.startswith("Local")]


def test_empty_local_parameters_give_the_same_policies_as_the_defaults(
    default_stack: Stack,
) -> None:
    # Given a deploy that passes both parameters explicitly empty
    explicit = Stack(dict.fromkeys(LOCAL_PARAMETERS, ""))

    # Then its key and secret policies are the default stack's, statement for statement
    assert function_policies(explicit) == function_policies(default_stack)


def test_a_local_broker_role_reads_the_access_token_secret_and_nothing_else() -> None:
    # Given a dev stack that names a developer's role for the broker
    stack = Stack({"LocalBrokerPrincipalArns": BROKER_DEVELOPER})

    # Then the access-token secret admits it, the other two do not
    assert BROKER_DEVELOPER in readers(stack, "AccessTokenSecret")
    assert BROKER_DEVELOPER not in readers(stack, "CredentialsSecret")
    assert BROKER_DEVELOPER not in readers(stack, "SessionSecret")
    # And the key lets it decrypt the access token through Secrets Manager, and only that
    assert key_grants(stack, BROKER_DEVELOPER) == {"kms:Decrypt": {"access-token"}}


def test_a_local_refresher_role_gets_the_refreshers_secrets_and_nothing_else() -> None:
    # Given a dev stack that names a developer's role for the refresher
    stack = Stack({"LocalRefresherPrincipalArns": REFRESHER_DEVELOPER})

    # Then all three secrets admit it, and the key lets it decrypt all three and create data
    # keys for the two the refresher writes, through Secrets Manager only
    for secret in SECRETS:
        assert REFRESHER_DEVELOPER in readers(stack, secret), secret
    assert key_grants(stack, REFRESHER_DEVELOPER) == {
        "kms:Decrypt": {"credentials", "session", "access-token"},
        "kms:GenerateDataKey": {"session", "access-token"},
    }


def test_naming_local_roles_adds_them_and_keeps_every_other_reader(default_stack: Stack) -> None:
    # Given a dev stack naming two broker developers and one refresher developer
    second = "arn:aws:iam::123456789012:role/team/other-developer"
    stack = Stack(
        {
            "LocalBrokerPrincipalArns": f"{BROKER_DEVELOPER},{second}",
            "LocalRefresherPrincipalArns": REFRESHER_DEVELOPER,
        }
    )

    # Then each secret's readers are the default's plus exactly the roles named for it
    assert readers(stack, "AccessTokenSecret") == readers(default_stack, "AccessTokenSecret") | {
        BROKER_DEVELOPER,
        second,
        REFRESHER_DEVELOPER,
    }
    for secret in ("CredentialsSecret", "SessionSecret"):
        assert readers(stack, secret) == readers(default_stack, secret) | {REFRESHER_DEVELOPER}
    # And the function roles' own key statements are untouched
    default_statements = default_stack.key_policy()["Statement"]
    assert [s for s in stack.key_policy()["Statement"] if not s["Sid"].startswith("Local")] == (
        default_statements
    )


@pytest.mark.parametrize("parameter", LOCAL_PARAMETERS)
@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("arn:aws:iam::123456789012:role/developer", True),
        ("arn:aws:iam::123456789012:role/dev/team/developer", True),
        (
            "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/eu-west-1/"
            "AWSReservedSSO_Developer_0123456789abcdef",
            True,
        ),
        ("arn:aws:iam::123456789012:role/a,arn:aws-us-gov:iam::123456789012:role/b", True),
        ("arn:aws:sts::123456789012:assumed-role/developer/me", False),
        ("arn:aws:iam::123456789012:user/alice", False),
        ("arn:aws:iam::123456789012:root", False),
        ("123456789012", False),
        ("*", False),
        ("arn:aws:iam::123456789012:role/*", False),
        ("arn:aws:iam::123456789012:role/a, arn:aws:iam::123456789012:role/b", False),
        ("arn:aws:iam::123456789012:role/a,", False),
    ],
)
def test_local_parameters_take_role_arns_only(
    template: dict[str, Any], parameter: str, value: str, accepted: bool
) -> None:
    pattern = template["Parameters"][parameter]["AllowedPattern"]

    assert (re.fullmatch(pattern, value) is not None) is accepted


def test_production_never_names_a_local_role() -> None:
    assert "production" in samconfig()
    assert not set(overrides("production")) & set(LOCAL_PARAMETERS)
