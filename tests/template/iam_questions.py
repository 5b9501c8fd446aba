"""The security model's questions, as requests for a policy engine, on the translated template.

`python -m tests.template.iam_questions FILE` writes, for each stack configuration below, every
question of docs/iam-answers.md as the AWS requests it is made of, each with the policies AWS
would weigh: the principal's identity policies and the resource's policy (secret, key, API,
function), with every intrinsic resolved to the names a deploy would give. The engine under
tests/template/iam answers them (`make iam`).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from tests.template.stack import ACCOUNT_ID, REGION, STACK_NAME, as_list, translated_template

OTHER_ACCOUNT = "210987654321"
UNLISTED_ACCOUNT = "999988887777"
API_ID = "abc123defg"
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
# Several regions: the primary in REGION replicates to REPLICA_REGION, where a replica stack of
# the same name replicates the primary's multi-Region key MULTI_REGION_KEY_ID.
REPLICA_REGION = "eu-west-1"
UNLISTED_REGION = "ap-south-1"
MULTI_REGION_KEY_ID = "mrk-1234abcd12ab34cd56ef1234567890ab"
VPC_ENDPOINT = "vpce-0a1b2c3d4e5f60789"
EVENT_SOURCE = "killb.broker"  # the source of the refresher's events (docs/spec.md)
PAYMENTS_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/payments"
# Developers' roles that a dev stack may name to run the functions with sam local.
BROKER_DEVELOPER = f"arn:aws:iam::{ACCOUNT_ID}:role/developer"
REFRESHER_DEVELOPER = f"arn:aws:iam::{ACCOUNT_ID}:role/dev/refresher-developer"

# The stack configurations the table has a column for.
CONFIGURATIONS: dict[str, dict[str, str]] = {
    "default": {},
    "private": {
        "ApiEndpointType": "PRIVATE",
        "ApiVpcEndpointIds": VPC_ENDPOINT,
        "AllowedCallerPrincipals": f"{PAYMENTS_ROLE},{OTHER_ACCOUNT}",
        "BrokerDeploymentPreference": "Canary10Percent5Minutes",
    },
    "local": {
        "LocalBrokerPrincipalArns": BROKER_DEVELOPER,
        "LocalRefresherPrincipalArns": REFRESHER_DEVELOPER,
    },
    "primary": {"MultiRegionKey": "true", "ReplicaRegions": REPLICA_REGION},
}
# Replica stacks in REPLICA_REGION, beside the "primary" configuration's stack.
REPLICA_CONFIGURATIONS: dict[str, dict[str, str]] = {
    "replica": {"PrimaryRegion": REGION, "PrimaryKeyId": MULTI_REGION_KEY_ID},
    "promoted": {"PrimaryRegion": REGION, "PrimaryKeyId": MULTI_REGION_KEY_ID, "Promoted": "true"},
}

Request = dict[str, Any]
Document = dict[str, Any]


class Stack:
    """The translated template with every intrinsic resolved as one deploy would resolve it."""

    def __init__(
        self,
        parameters: Mapping[str, str],
        patch: Callable[[Any], None] | None = None,
        region: str = REGION,
    ):
        self.region = region
        translated = translated_template(parameters)
        if patch is not None:
            patch(translated)
        self.resources: dict[str, dict[str, Any]] = translated["Resources"]
        defaults = {
            name: str(spec.get("Default", ""))
            for name, spec in translated.get("Parameters", {}).items()
        }
        # A CommaDelimitedList parameter's Ref is a list, as CloudFormation resolves it.
        given = {**defaults, **parameters}
        lists = {
            name: given[name].split(",")
            for name, spec in translated.get("Parameters", {}).items()
            if spec.get("Type") == "CommaDelimitedList"
        }
        self.values: dict[str, Any] = {
            **defaults,
            **parameters,
            **lists,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Region": region,
            "AWS::Partition": "aws",
            "AWS::StackName": STACK_NAME,
            "AWS::URLSuffix": "amazonaws.com",
        }
        # Resolved on first use: a condition may name another (Fn::Or of two Conditions).
        self._condition_bodies: dict[str, Any] = translated.get("Conditions", {})
        self._resolved_conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._resolved_conditions:
            self._resolved_conditions[name] = bool(self.resolve(self._condition_bodies[name]))
        return self._resolved_conditions[name]

    def physical_name(self, logical_id: str) -> str:
        return f"{STACK_NAME}-{logical_id}-AbC123"[:64]

    def ref(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        resource = self.resources[name]
        properties = resource.get("Properties", {})
        # A name the template fixes (a multi-Region stack's roles and refresher) is the name.
        fixed = {"AWS::IAM::Role": "RoleName", "AWS::Lambda::Function": "FunctionName"}
        if resource["Type"] in fixed and properties.get(fixed[resource["Type"]]) is not None:
            name_given = self.resolve(properties[fixed[resource["Type"]]])
            if name_given is not None:
                return name_given
        refs: dict[str, Callable[[], Any]] = {
            "AWS::SecretsManager::Secret": lambda: (
                f"arn:aws:secretsmanager:{self.region}:{ACCOUNT_ID}:secret:"
                f"{self.resolve(properties['Name'])}-AbC123"
            ),
            "AWS::Lambda::Alias": lambda: (
                f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:"
                f"{self.ref(properties['FunctionName']['Ref'])}:{properties['Name']}"
            ),
            "AWS::KMS::Key": lambda: KEY_ID,
            "AWS::KMS::ReplicaKey": lambda: MULTI_REGION_KEY_ID,
            "AWS::SNS::Topic": lambda: (
                f"arn:aws:sns:{self.region}:{ACCOUNT_ID}:{self.physical_name(name)}"
            ),
            "AWS::ApiGateway::RestApi": lambda: API_ID,
            "AWS::Logs::LogGroup": lambda: self.resolve(properties["LogGroupName"]),
        }
        return refs.get(resource["Type"], lambda: self.physical_name(name))()

    def get_att(self, name: str, attribute: str) -> Any:
        if attribute != "Arn":
            return f"{name}.{attribute}"
        kind = self.resources[name]["Type"]
        prefix = {
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT_ID}:role/",
            "AWS::Lambda::Function": f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:",
            "AWS::SQS::Queue": f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{self.region}:{ACCOUNT_ID}:log-group:",
            "AWS::KMS::Key": f"arn:aws:kms:{self.region}:{ACCOUNT_ID}:key/",
            "AWS::KMS::ReplicaKey": f"arn:aws:kms:{self.region}:{ACCOUNT_ID}:key/",
        }[kind]
        suffix = ":*" if kind == "AWS::Logs::LogGroup" else ""
        return f"{prefix}{self.ref(name)}{suffix}"

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(inner) for inner in value]
            return [inner for inner in items if inner is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key in self._intrinsics:
                return self._intrinsics[key](self, inner)
        resolved = {key: self.resolve(inner) for key, inner in value.items()}
        return {key: inner for key, inner in resolved.items() if inner is not None}

    def _ref(self, inner: str) -> Any:
        return None if inner == "AWS::NoValue" else self.ref(inner)

    def _get_att(self, inner: Any) -> Any:
        name, attribute = inner if isinstance(inner, list) else inner.split(".", 1)
        return self.get_att(name, attribute)

    def _fn_sub(self, inner: Any) -> str:
        text, extra = (inner[0], inner[1]) if isinstance(inner, list) else (inner, {})
        local = {name: self.resolve(v) for name, v in extra.items()}
        return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub(m.group(1), local), text)

    def _fn_if(self, inner: Any) -> Any:
        condition, when_true, when_false = inner
        return self.resolve(when_true if self.condition(condition) else when_false)

    def _fn_split(self, inner: Any) -> list[str]:
        separator, text = inner
        return str(self.resolve(text)).split(separator)

    def _fn_join(self, inner: Any) -> str:
        separator, items = inner
        return str(separator).join(str(item) for item in self.resolve(items))

    def _fn_equals(self, inner: Any) -> bool:
        left, right = self.resolve(inner)
        return bool(left == right)

    def _fn_not(self, inner: Any) -> bool:
        return not self.resolve(inner[0])

    def _fn_or(self, inner: Any) -> bool:
        return any(self.resolve(inner))

    def _fn_and(self, inner: Any) -> bool:
        return all(self.resolve(inner))

    def _fn_select(self, inner: Any) -> Any:
        index, items = inner
        return self.resolve(items)[int(index)]

    def _condition(self, inner: str) -> bool:
        return self.condition(inner)

    _intrinsics: ClassVar[dict[str, Callable[[Stack, Any], Any]]] = {
        "Ref": _ref,
        "Fn::GetAtt": _get_att,
        "Fn::Sub": _fn_sub,
        "Fn::If": _fn_if,
        "Fn::Split": _fn_split,
        "Fn::Join": _fn_join,
        "Fn::Equals": _fn_equals,
        "Fn::Not": _fn_not,
        "Fn::Or": _fn_or,
        "Fn::And": _fn_and,
        "Fn::Select": _fn_select,
        "Condition": _condition,
    }

    def _sub(self, name: str, local: Mapping[str, Any]) -> str:
        if name in local:
            return str(local[name])
        if "." in name:
            logical_id, attribute = name.split(".", 1)
            return str(self.get_att(logical_id, attribute))
        return str(self.ref(name))

    # -- the policies AWS would weigh -------------------------------------------------------------

    def identity_policies(self, role: str) -> list[Document]:
        """The role's inline and attached policies (AWS managed ones hold no secret or key use:
        tests/template/test_template_iam.py pins which those are)."""
        documents = [
            policy["PolicyDocument"]
            for policy in self.resources[role]["Properties"].get("Policies", [])
        ]
        for resource in self.resources.values():
            if resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
                roles = [r["Ref"] for r in resource["Properties"].get("Roles", [])]
                if role in roles:
                    documents.append(resource["Properties"]["PolicyDocument"])
        return [self.resolve(document) for document in documents]

    def role_arn(self, role: str) -> str:
        return str(self.get_att(role, "Arn"))

    def secret_policy(self, secret: str) -> Document | None:
        for resource in self.resources.values():
            if resource["Type"] != "AWS::SecretsManager::ResourcePolicy":
                continue
            properties = resource["Properties"]
            if properties["SecretId"] == {"Ref": secret}:
                return dict(self.resolve(properties["ResourcePolicy"]))
        return None

    def key_policy(self) -> Document:
        return dict(self.resolve(self.resources["SecretsKey"]["Properties"]["KeyPolicy"]))

    # -- the secrets as this Region holds them (a replica stack overrides these) -----------------

    @property
    def primary(self) -> Stack:
        """The stack whose refresher writes the secrets: this one, but in a replica stack."""
        return self

    def secret_arn(self, secret: str) -> str:
        return str(self.ref(secret))

    def secrets_key_arn(self) -> str:
        return str(self.get_att("SecretsKey", "Arn"))

    def secrets_key_policy(self) -> Document:
        return self.key_policy()

    def api_policy(self) -> Document:
        """The API's resource policy as API Gateway stores it (execute-api:/ expanded)."""
        body = self.resources["BrokerApi"]["Properties"]["Body"]
        document = self.resolve(body["x-amazon-apigateway-policy"])
        prefix = f"arn:aws:execute-api:{self.region}:{ACCOUNT_ID}:{API_ID}/"
        for statement in document["Statement"]:
            statement["Resource"] = [
                prefix + r.removeprefix("execute-api:/") for r in as_list(statement["Resource"])
            ]
        return dict(document)

    def function_policy(self, function_ref: str) -> Document:
        """The resource policy Lambda builds from the stack's permissions on this function."""
        statements = []
        for logical_id, resource in self.resources.items():
            if resource["Type"] != "AWS::Lambda::Permission":
                continue
            properties = resource["Properties"]
            if self.resolve(properties["FunctionName"]) != function_ref:
                continue
            statement: Document = {
                "Sid": logical_id,
                "Effect": "Allow",
                "Principal": {"Service": properties["Principal"]},
                "Action": properties["Action"],
                "Resource": function_ref,
            }
            if "SourceArn" in properties:
                source = self.resolve(properties["SourceArn"])
                statement["Condition"] = {"ArnLike": {"AWS:SourceArn": source}}
            statements.append(statement)
        return {"Version": "2012-10-17", "Statement": statements}


class ReplicaStack(Stack):
    """A replica stack in REPLICA_REGION: its secrets are the primary stack's replicas (their
    ARNs in this Region, the primary's resource policies, which replicate), encrypted with this
    stack's replica key."""

    def __init__(self, parameters: Mapping[str, str], primary: Stack):
        super().__init__(parameters, region=REPLICA_REGION)
        self._primary = primary

    @property
    def primary(self) -> Stack:
        return self._primary

    def secret_policy(self, secret: str) -> Document | None:
        return self._primary.secret_policy(secret)

    def secret_arn(self, secret: str) -> str:
        arn = self._primary.secret_arn(secret)
        return arn.replace(f":{self._primary.region}:", f":{self.region}:", 1)

    def secrets_key_arn(self) -> str:
        return str(self.get_att("SecretReplicasKey", "Arn"))

    def secrets_key_policy(self) -> Document:
        key = self.resources["SecretReplicasKey"]["Properties"]["KeyPolicy"]
        return dict(self.resolve(key))


def session_of(role_arn: str) -> str:
    account, name = re.fullmatch(r"arn:aws:iam::(\d{12}):role/(.+)", role_arn).groups()  # type: ignore[union-attr]
    return f"arn:aws:sts::{account}:assumed-role/{name.rsplit('/', 1)[-1]}/session"


def role_principal(role_arn: str) -> dict[str, Any]:
    """A role's session as the request principal, with the global keys AWS would set."""
    account = role_arn.split(":")[4]
    return {
        "principal": session_of(role_arn),
        "context": {"aws:PrincipalArn": role_arn, "aws:PrincipalAccount": account},
    }


def allow_everything(*services: str) -> list[Document]:
    return [
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": [f"{s}:*" for s in services], "Resource": "*"}
            ],
        }
    ]


def questions(stack: Stack) -> dict[str, list[Request]]:
    """Question id -> the requests it is made of; the answer is yes when all are allowed."""
    key_arn = stack.secrets_key_arn()
    secrets = {
        "credentials": "CredentialsSecret",
        "session": "SessionSecret",
        "access-token": "AccessTokenSecret",
    }
    refresher, broker = "RefresherRole", "BrokerRole"
    admin_role = f"arn:aws:iam::{ACCOUNT_ID}:role/Administrator"
    admin: dict[str, Any] = {
        **role_principal(admin_role),
        "identity": allow_everything("secretsmanager", "kms", "lambda", "execute-api"),
    }
    via_secrets_manager = f"secretsmanager.{stack.region}.amazonaws.com"

    def of_role(role: str) -> dict[str, Any]:
        return {**role_principal(stack.role_arn(role)), "identity": stack.identity_policies(role)}

    def secret_request(
        who: dict[str, Any], action: str, secret: str, context: Mapping[str, Any] | None = None
    ) -> Request:
        arn = stack.secret_arn(secrets[secret])
        return request(who, action, arn, stack.secret_policy(secrets[secret]), context)

    def key_request(
        who: dict[str, Any], action: str, secret: str | None, via: str | None = via_secrets_manager
    ) -> Request:
        context: dict[str, Any] = {"kms:CallerAccount": who["context"]["aws:PrincipalAccount"]}
        if via is not None:
            context["kms:ViaService"] = via
        if secret is not None:
            context["kms:EncryptionContext:SecretARN"] = stack.secret_arn(secrets[secret])
        return request(who, action, key_arn, stack.secrets_key_policy(), context)

    def reads(who: dict[str, Any], secret: str) -> list[Request]:
        return [
            secret_request(who, "secretsmanager:GetSecretValue", secret),
            key_request(who, "kms:Decrypt", secret),
        ]

    def writes(who: dict[str, Any], secret: str) -> list[Request]:
        return [
            secret_request(who, "secretsmanager:PutSecretValue", secret),
            key_request(who, "kms:GenerateDataKey", secret),
        ]

    def invokes(who: dict[str, Any], function: str) -> list[Request]:
        arn = stack.get_att(function, "Arn")
        return [request(who, "lambda:InvokeFunction", arn, None)]

    table: dict[str, list[Request]] = {}
    for secret in secrets:
        table[f"broker-reads-{secret}"] = [
            secret_request(of_role(broker), "secretsmanager:GetSecretValue", secret)
        ]
        table[f"broker-decrypts-{secret}"] = [key_request(of_role(broker), "kms:Decrypt", secret)]
        table[f"broker-writes-{secret}"] = writes(of_role(broker), secret)
    table["broker-invokes-refresher"] = invokes(of_role(broker), "RefresherFunction")
    table["broker-invokes-the-primary-regions-refresher"] = [
        request(
            of_role(broker),
            "lambda:InvokeFunction",
            f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{STACK_NAME}-refresher",
            None,
        )
    ]
    table["broker-invokes-itself"] = invokes(of_role(broker), "BrokerFunction")
    table["broker-invokes-its-live-alias"] = [
        request(
            of_role(broker), "lambda:InvokeFunction", stack.ref("BrokerFunctionAliaslive"), None
        )
    ]
    for secret in secrets:
        table[f"refresher-reads-{secret}"] = reads(of_role(refresher), secret)
        table[f"refresher-writes-{secret}"] = writes(of_role(refresher), secret)
    # The primary stack's refresher (itself, but in a replica stack) on this Region's secrets.
    primary_refresher = {
        **role_principal(stack.primary.role_arn(refresher)),
        "identity": stack.primary.identity_policies(refresher),
    }
    table["primary-refresher-reads-credentials-here"] = reads(primary_refresher, "credentials")
    table["primary-refresher-encrypts-access-token-here"] = [
        key_request(primary_refresher, "kms:GenerateDataKey", "access-token")
    ]
    table["scheduler-invokes-refresher"] = invokes(of_role("SchedulerRole"), "RefresherFunction")
    table["scheduler-invokes-broker"] = invokes(of_role("SchedulerRole"), "BrokerFunction")
    table.update(event_questions(stack, of_role(refresher), of_role(broker)))
    for secret in secrets:
        table[f"admin-reads-{secret}"] = reads(admin, secret)
    table["admin-decrypts-credentials-directly"] = [
        key_request(admin, "kms:Decrypt", "credentials", via=None)
    ]
    table["admin-puts-new-credentials"] = writes(admin, "credentials")
    table["admin-replicates-credentials-to-another-region"] = [
        secret_request(
            admin,
            "secretsmanager:ReplicateSecretToRegions",
            "credentials",
            {"secretsmanager:AddReplicaRegions": [UNLISTED_REGION]},
        )
    ]
    table["admin-replicates-credentials-to-the-replica-region"] = [
        secret_request(
            admin,
            "secretsmanager:ReplicateSecretToRegions",
            "credentials",
            {"secretsmanager:AddReplicaRegions": [REPLICA_REGION]},
        )
    ]
    # A role an administrator creates under the name a replica stack in an unlisted Region would
    # give its broker: the replicated policies name exact Regions, not a pattern.
    lookalike = {
        **role_principal(f"arn:aws:iam::{ACCOUNT_ID}:role/{STACK_NAME}-broker-{UNLISTED_REGION}"),
        "identity": allow_everything("secretsmanager", "kms"),
    }
    table["unlisted-regions-broker-role-reads-access-token"] = reads(lookalike, "access-token")
    table["admin-creates-a-key-grant"] = [
        request(admin, "kms:CreateGrant", key_arn, stack.key_policy())
    ]
    # Developers hold secretsmanager:* but no KMS permission of their own: a read or write
    # then passes only where the stack's own policies name their role.
    developers = {
        "broker-developer": BROKER_DEVELOPER,
        "refresher-developer": REFRESHER_DEVELOPER,
    }
    for name, role_arn in developers.items():
        developer = {**role_principal(role_arn), "identity": allow_everything("secretsmanager")}
        for secret in secrets:
            table[f"{name}-reads-{secret}"] = reads(developer, secret)
        for secret in ("session", "access-token"):
            table[f"{name}-writes-{secret}"] = writes(developer, secret)
        table[f"{name}-decrypts-credentials-directly"] = [
            key_request(developer, "kms:Decrypt", "credentials", via=None)
        ]
    return table | api_questions(stack) | service_questions(stack)


def event_questions(
    stack: Stack, refresher: Mapping[str, Any], broker: Mapping[str, Any]
) -> dict[str, list[Request]]:
    """Who may put events on which bus, under which source (EventBridge authorizes each entry
    of a PutEvents call with its source and detail-type as context keys)."""
    bus = f"arn:aws:events:{stack.region}:{ACCOUNT_ID}:event-bus/"

    def puts(who: Mapping[str, Any], bus_name: str, source: str) -> list[Request]:
        context = {"events:source": source, "events:detail-type": "Refresh Failed"}
        return [request(who, "events:PutEvents", bus + bus_name, None, context)]

    return {
        "refresher-puts-its-event-on-the-default-bus": puts(refresher, "default", EVENT_SOURCE),
        "refresher-puts-its-event-on-another-bus": puts(refresher, "operations", EVENT_SOURCE),
        "refresher-puts-an-event-of-another-source": puts(refresher, "default", "aws.ec2"),
        "broker-puts-an-event": puts(broker, "default", EVENT_SOURCE),
    }


def api_questions(stack: Stack) -> dict[str, list[Request]]:
    route = f"arn:aws:execute-api:{stack.region}:{ACCOUNT_ID}:{API_ID}/api/GET/v1/auth-headers"
    invoke_anything: list[Document] = allow_everything("execute-api")
    through_endpoint = {"aws:SourceVpce": VPC_ENDPOINT}

    def caller(role_arn: str, extra: Mapping[str, str]) -> list[Request]:
        who = {**role_principal(role_arn), "identity": invoke_anything}
        return [request(who, "execute-api:Invoke", route, stack.api_policy(), dict(extra))]

    return {
        "payments-role-calls-the-api": caller(PAYMENTS_ROLE, through_endpoint),
        "another-role-of-this-account-calls-the-api": caller(
            f"arn:aws:iam::{ACCOUNT_ID}:role/other-app", through_endpoint
        ),
        "listed-other-account-calls-the-api": caller(
            f"arn:aws:iam::{OTHER_ACCOUNT}:role/caller", through_endpoint
        ),
        "unlisted-other-account-calls-the-api": caller(
            f"arn:aws:iam::{UNLISTED_ACCOUNT}:role/caller", through_endpoint
        ),
        "payments-role-calls-from-outside-the-vpc-endpoints": caller(PAYMENTS_ROLE, {}),
    }


def service_questions(stack: Stack) -> dict[str, list[Request]]:
    key_arn = stack.get_att("SecretsKey", "Arn")
    logs = f"logs.{stack.region}.amazonaws.com"
    log_group = f"arn:aws:logs:{stack.region}:{ACCOUNT_ID}:log-group:"
    alias = stack.ref("BrokerFunctionAliaslive")
    api_source = f"arn:aws:execute-api:{stack.region}:{ACCOUNT_ID}:{API_ID}/api/GET/v1/auth-headers"

    def service(
        name: str, action: str, resource: str, policy: Document, context: Mapping[str, str]
    ) -> Request:
        who = {"principal": name, "context": {}, "identity": []}
        return request(who, action, resource, policy, dict(context))

    def logs_use(group: str) -> list[Request]:
        context = {"kms:EncryptionContext:aws:logs:arn": log_group + group}
        return [service(logs, "kms:GenerateDataKey", key_arn, stack.key_policy(), context)]

    def alarm_use(account: str, alarm: str) -> list[Request]:
        context = {
            "aws:SourceAccount": account,
            "aws:SourceArn": f"arn:aws:cloudwatch:{stack.region}:{account}:alarm:{alarm}",
        }
        return [
            service(
                "cloudwatch.amazonaws.com",
                "kms:GenerateDataKey",
                key_arn,
                stack.key_policy(),
                context,
            )
        ]

    def alarm_publishes(account: str, alarm: str) -> list[Request]:
        topic = stack.ref("AlarmTopic")
        policy = stack.resolve(stack.resources["AlarmTopicPolicy"]["Properties"]["PolicyDocument"])
        context = {
            "aws:SourceAccount": account,
            "aws:SourceArn": f"arn:aws:cloudwatch:{stack.region}:{account}:alarm:{alarm}",
        }
        return [service("cloudwatch.amazonaws.com", "sns:Publish", topic, policy, context)]

    def api_gateway_invokes(source: str) -> list[Request]:
        policy = stack.function_policy(alias)
        return [
            service(
                "apigateway.amazonaws.com",
                "lambda:InvokeFunction",
                alias,
                policy,
                {"aws:SourceArn": source},
            )
        ]

    return {
        "logs-encrypts-the-brokers-log-group": logs_use(f"/aws/lambda/{STACK_NAME}/broker"),
        "logs-encrypts-another-log-group": logs_use("/aws/lambda/someone-else"),
        "cloudwatch-publishes-this-stacks-alarm": alarm_use(
            ACCOUNT_ID, f"{STACK_NAME}-RefresherFailedAlarm-AbC123"
        ),
        "cloudwatch-publishes-another-accounts-alarm": alarm_use(
            OTHER_ACCOUNT, f"{STACK_NAME}-RefresherFailedAlarm-AbC123"
        ),
        "cloudwatch-publishes-another-stacks-alarm": alarm_use(
            ACCOUNT_ID, "someone-else-Alarm-AbC123"
        ),
        "cloudwatch-notifies-the-topic-for-this-stacks-alarm": alarm_publishes(
            ACCOUNT_ID, f"{STACK_NAME}-BrokerErrorsAlarm-AbC123"
        ),
        "cloudwatch-notifies-the-topic-for-another-accounts-alarm": alarm_publishes(
            OTHER_ACCOUNT, f"{STACK_NAME}-BrokerErrorsAlarm-AbC123"
        ),
        "api-gateway-invokes-the-broker-alias-for-this-api": api_gateway_invokes(api_source),
        "api-gateway-invokes-the-broker-alias-for-another-api": api_gateway_invokes(
            api_source.replace(API_ID, "zzz999zzzz")
        ),
    }


def request(
    who: Mapping[str, Any],
    action: str,
    resource: str,
    resource_policy: Document | None,
    context: Mapping[str, Any] | None = None,
) -> Request:
    account = resource.split(":")[4] or ACCOUNT_ID
    return {
        "principal": who["principal"],
        "action": action,
        "resource": resource,
        "resourceAccount": account,
        "context": {**who["context"], **(context or {})},
        "identityPolicies": who["identity"],
        "resourcePolicy": resource_policy,
    }


def widened_broker(translated: Any) -> None:
    """A deliberate mistake: the broker's policy and the credentials secret's let it read the
    password. The test of the engine shows this turns an answer red."""
    resources = translated["Resources"]
    broker = resources["BrokerPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    broker[0]["Resource"] = [{"Ref": "AccessTokenSecret"}, {"Ref": "CredentialsSecret"}]
    deny = resources["CredentialsSecretPolicy"]["Properties"]["ResourcePolicy"]["Statement"][0]
    deny["Condition"]["StringNotEquals"]["aws:PrincipalArn"] = [
        {"Fn::GetAtt": ["RefresherRole", "Arn"]},
        {"Fn::GetAtt": ["BrokerRole", "Arn"]},
    ]


def export() -> dict[str, Any]:
    stacks = {name: Stack(parameters) for name, parameters in CONFIGURATIONS.items()}
    for name, parameters in REPLICA_CONFIGURATIONS.items():
        stacks[name] = ReplicaStack(parameters, primary=stacks["primary"])
    exported = {name: questions(stack) for name, stack in stacks.items()}
    exported["widened"] = questions(Stack({}, patch=widened_broker))
    return exported


def main(argv: list[str]) -> None:
    Path(argv[1]).write_text(json.dumps(export(), indent=1, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv)
