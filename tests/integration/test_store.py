"""The token store against Secrets Manager (moto): parsing, writes, idempotency, errors."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import (
    BotoCoreError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.stub import Stubber
from moto import mock_aws

from killb_broker.aws import secretsmanager_client
from killb_broker.errors import SecretAccessDenied, SecretNotFound, StoreError, StoreUnavailable
from killb_broker.store import TokenStore
from killb_broker.tokens import (
    AccessToken,
    Credentials,
    LoginBackoff,
    NotConfigured,
    Session,
    TokenSet,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

CREDENTIALS_ID = "killb-test/credentials"
SESSION_ID = "killb-test/session"
ACCESS_TOKEN_ID = "killb-test/access-token"
TOKENS = TokenSet(
    access_token="access-store-1",
    refresh_token="refresh-store-1",
    expires_at=1_800_003_600,
    obtained_at=1_800_000_000,
)


@pytest.fixture
def client() -> Iterator[SecretsManagerClient]:
    """The stack's three secrets, as the template creates them: placeholders only."""
    with mock_aws():
        client = secretsmanager_client()
        client.create_secret(
            Name=CREDENTIALS_ID, SecretString=json.dumps({"email": "", "password": ""})
        )
        client.create_secret(Name=SESSION_ID, SecretString="{}")
        client.create_secret(Name=ACCESS_TOKEN_ID, SecretString="{}")
        yield client


@pytest.fixture
def store(client: SecretsManagerClient) -> TokenStore:
    return TokenStore(
        client,
        credentials_secret_id=CREDENTIALS_ID,
        session_secret_id=SESSION_ID,
        access_token_secret_id=ACCESS_TOKEN_ID,
    )


def current(client: SecretsManagerClient, secret_id: str) -> tuple[str, str]:
    answer = client.get_secret_value(SecretId=secret_id)
    return answer["SecretString"], answer["VersionId"]


def version_count(client: SecretsManagerClient, secret_id: str) -> int:
    return len(client.list_secret_version_ids(SecretId=secret_id)["Versions"])


def test_credentials_are_read_with_their_version(
    client: SecretsManagerClient, store: TokenStore
) -> None:
    # Given the operator put an email, password and API key
    put = client.put_secret_value(
        SecretId=CREDENTIALS_ID,
        SecretString=json.dumps({"email": "ops@example.test", "password": "pw-1", "apiKey": "ak"}),
    )

    # When the store reads them, Then every field and the version id come back
    assert store.read_credentials() == Credentials(
        email="ops@example.test", password="pw-1", api_key="ak", version_id=put["VersionId"]
    )


def test_credentials_without_an_api_key_have_none(
    client: SecretsManagerClient, store: TokenStore
) -> None:
    # Given credentials with no apiKey
    client.put_secret_value(
        SecretId=CREDENTIALS_ID,
        SecretString=json.dumps({"email": "ops@example.test", "password": "pw-1"}),
    )

    # When read, Then api_key is None
    credentials = store.read_credentials()
    assert isinstance(credentials, Credentials)
    assert credentials.api_key is None


@pytest.mark.parametrize(
    "secret_string",
    [
        json.dumps({"email": "", "password": ""}),
        json.dumps({"email": "ops@example.test"}),
        json.dumps({"email": "ops@example.test", "password": "   "}),
        json.dumps({"email": 7, "password": "pw-1"}),
        json.dumps(["ops@example.test", "pw-1"]),
        "REPLACE-ME",
    ],
    ids=["placeholder", "no-password", "blank-password", "email-not-text", "array", "not-json"],
)
def test_credentials_without_email_and_password_are_not_configured(
    client: SecretsManagerClient, store: TokenStore, secret_string: str
) -> None:
    # Given a credentials secret without a usable email and password
    client.put_secret_value(SecretId=CREDENTIALS_ID, SecretString=secret_string)

    # When read, Then the store says "not configured"
    assert isinstance(store.read_credentials(), NotConfigured)


@pytest.mark.parametrize("secret_string", ["{}", "placeholder", '{"accessToken": "a"}', "[]"])
def test_session_placeholder_means_no_session(
    client: SecretsManagerClient, store: TokenStore, secret_string: str
) -> None:
    # Given a session secret that is not the session JSON
    client.put_secret_value(SecretId=SESSION_ID, SecretString=secret_string)

    # When read, Then there are no tokens and no backoff
    assert store.read_session() == Session()


def test_session_round_trips_tokens_and_backoff(store: TokenStore) -> None:
    # Given a session with tokens and a login backoff
    session = Session(tokens=TOKENS, login_backoff=LoginBackoff(1_800_000_100, "v-1"))

    # When it is written and read back, Then it is the same session
    store.write_session(session)
    assert store.read_session() == session


def test_session_json_has_the_documented_fields(
    client: SecretsManagerClient, store: TokenStore
) -> None:
    # Given a session with tokens only
    store.write_session(Session(tokens=TOKENS))

    # When the secret is read raw, Then it holds the documented fields and no backoff
    assert json.loads(current(client, SESSION_ID)[0]) == {
        "accessToken": "access-store-1",
        "refreshToken": "refresh-store-1",
        "expiresAt": 1_800_003_600,
        "obtainedAt": 1_800_000_000,
    }


def test_session_without_tokens_holds_only_the_backoff(
    client: SecretsManagerClient, store: TokenStore
) -> None:
    # Given a login backoff and no tokens
    store.write_session(Session(login_backoff=LoginBackoff(1_800_000_100, "v-1")))

    # When the secret is read raw, Then only the backoff is in it
    assert json.loads(current(client, SESSION_ID)[0]) == {
        "loginBackoff": {"rejectedAt": 1_800_000_100, "credentialsVersion": "v-1"}
    }


def test_session_written_by_hand_without_obtained_at_is_usable(
    client: SecretsManagerClient, store: TokenStore
) -> None:
    # Given a session holding only the three required fields
    client.put_secret_value(
        SecretId=SESSION_ID,
        SecretString=json.dumps({"accessToken": "a", "refreshToken": "r", "expiresAt": 5}),
    )

    # When read, Then the tokens are there
    tokens = store.read_session().tokens
    assert tokens is not None
    assert (tokens.access_token, tokens.refresh_token, tokens.expires_at) == ("a", "r", 5)


def test_session_of_an_older_version_with_failure_notice_times_reads_and_sheds_them(
    client: SecretsManagerClient, store: TokenStore
) -> None:
    # Given a session an older refresher wrote, with when runs failed and operators were told
    old = {
        "accessToken": "access-store-1",
        "refreshToken": "refresh-store-1",
        "expiresAt": 1_800_003_600,
        "obtainedAt": 1_800_000_000,
        "credentialsVersion": "v-1",
        "failingSince": 1_799_999_000,
        "failureNotifiedAt": 1_799_999_000,
    }
    client.put_secret_value(SecretId=SESSION_ID, SecretString=json.dumps(old))

    # When it is read and written back
    session = store.read_session()
    store.write_session(session)

    # Then its tokens and version are read, and the notice times are no longer stored
    assert session == Session(tokens=TOKENS, credentials_version="v-1")
    assert json.loads(current(client, SESSION_ID)[0]) == {
        key: value for key, value in old.items() if key not in ("failingSince", "failureNotifiedAt")
    }


def test_access_token_round_trips_with_its_api_key(
    client: SecretsManagerClient, store: TokenStore
) -> None:
    # Given an access token with an API key
    token = AccessToken(token="access-store-1", expires_at=1_800_003_600, api_key="ak")

    # When written and read back
    store.write_access_token(token)

    # Then it is the same token, stored as the documented JSON
    assert store.read_access_token() == token
    assert json.loads(current(client, ACCESS_TOKEN_ID)[0]) == {
        "accessToken": "access-store-1",
        "expiresAt": 1_800_003_600,
        "apiKey": "ak",
    }


def test_access_token_placeholder_reads_as_none(store: TokenStore) -> None:
    # Given the template's placeholder, When read, Then there is no token
    assert store.read_access_token() is None


def test_writing_the_same_value_twice_creates_one_version(
    client: SecretsManagerClient, store: TokenStore
) -> None:
    # Given a session already written once
    store.write_session(Session(tokens=TOKENS))
    versions = version_count(client, SESSION_ID)
    version_id = current(client, SESSION_ID)[1]

    # When the same write is retried
    store.write_session(Session(tokens=TOKENS))

    # Then no second version appears
    assert version_count(client, SESSION_ID) == versions
    assert current(client, SESSION_ID)[1] == version_id


def test_writing_back_a_value_that_was_replaced_makes_it_current(
    client: SecretsManagerClient, store: TokenStore
) -> None:
    # Given a token written, then replaced by hand with a placeholder
    token = AccessToken(token="access-store-1", expires_at=1_800_003_600)
    store.write_access_token(token)
    client.put_secret_value(SecretId=ACCESS_TOKEN_ID, SecretString="{}")

    # When the same token is written again
    store.write_access_token(token)

    # Then it is current again (Secrets Manager would otherwise ignore the repeated token)
    assert store.read_access_token() == token


def test_a_value_replaced_again_and_again_is_made_current_each_time(
    client: SecretsManagerClient, store: TokenStore
) -> None:
    # Given a token that is replaced by hand after every time it is written back
    token = AccessToken(token="access-store-1", expires_at=1_800_003_600)
    for _ in range(6):
        store.write_access_token(token)
        client.put_secret_value(SecretId=ACCESS_TOKEN_ID, SecretString="{}")

    # When it is written back once more
    store.write_access_token(token)

    # Then it is current (however many of its older versions Secrets Manager already holds)
    assert store.read_access_token() == token


def test_missing_secret_is_reported_by_its_id(client: SecretsManagerClient) -> None:
    # Given a store pointing at a secret that does not exist
    store = TokenStore(
        client,
        credentials_secret_id="killb-test/gone",
        session_secret_id=SESSION_ID,
        access_token_secret_id=ACCESS_TOKEN_ID,
    )

    # When it reads the credentials, Then the error names the secret
    with pytest.raises(SecretNotFound, match="killb-test/gone"):
        store.read_credentials()


def test_access_denied_is_reported_by_secret_id_without_the_value(
    client: SecretsManagerClient, store: TokenStore
) -> None:
    # Given Secrets Manager refuses this role the write
    with Stubber(client) as stubber:
        stubber.add_client_error("put_secret_value", service_error_code="AccessDeniedException")

        # When the store writes the session
        with pytest.raises(SecretAccessDenied) as raised:
            store.write_session(Session(tokens=TOKENS))

    # Then the error names the secret and holds no token
    assert raised.value.secret_id == SESSION_ID
    assert "refresh-store-1" not in str(raised.value)
    assert "access-store-1" not in str(raised.value)
    assert raised.value.__cause__ is None


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("AccessDeniedException", 400, SecretAccessDenied),
        ("DecryptionFailure", 400, SecretAccessDenied),
        ("ResourceNotFoundException", 400, SecretNotFound),
        ("ThrottlingException", 400, StoreUnavailable),
        ("InternalServiceError", 500, StoreUnavailable),
        ("SomethingNew", 503, StoreUnavailable),
        ("InvalidParameterException", 400, StoreError),
    ],
)
def test_each_aws_refusal_maps_to_one_store_error(
    client: SecretsManagerClient, store: TokenStore, code: str, status: int, kind: type
) -> None:
    # Given Secrets Manager answering a read with this error
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "get_secret_value", service_error_code=code, http_status_code=status
        )
        # When the store reads the access token, Then the error is of its kind, names the
        # secret, and carries none of botocore's (which may quote the request)
        with pytest.raises(StoreError) as raised:
            store.read_access_token()
    assert type(raised.value) is kind
    assert raised.value.secret_id == ACCESS_TOKEN_ID
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_a_secret_scheduled_for_deletion_reads_as_not_found(
    client: SecretsManagerClient, store: TokenStore
) -> None:
    # Given the access-token secret scheduled for deletion (moto answers as Secrets Manager)
    client.delete_secret(SecretId=ACCESS_TOKEN_ID, RecoveryWindowInDays=7)
    # When the store reads it, Then it is as good as gone
    with pytest.raises(SecretNotFound, match="scheduled for deletion"):
        store.read_access_token()


@pytest.mark.parametrize(
    "failure",
    [EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError],
)
def test_secrets_manager_out_of_reach_is_store_unavailable(
    client: SecretsManagerClient, store: TokenStore, failure: type[BotoCoreError]
) -> None:
    # Given a Secrets Manager that cannot be reached
    def fail(**_: Any) -> None:
        raise failure(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com")

    client.meta.events.register("before-send.secrets-manager.GetSecretValue", fail)
    # When the store reads, Then a StoreUnavailable with no botocore error chained
    with pytest.raises(StoreUnavailable) as raised:
        store.read_access_token()
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_client_lets_botocore_retry_throttling() -> None:
    # Given the factory's client, When its retry settings are read
    retries = secretsmanager_client().meta.config.retries  # type: ignore[attr-defined]

    # Then botocore's standard mode retries throttling (max_attempts 5 = 5 retries, 6 calls)
    assert retries == {"mode": "standard", "total_max_attempts": 6}


@pytest.mark.parametrize(
    "variable",
    ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SECRETSMANAGER"],
)
def test_client_honours_the_endpoint_variables(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    # Given a local Secrets Manager named by the environment, as `make demo` does
    monkeypatch.setenv(variable, "http://127.0.0.1:4599")

    # When the client is built, Then it talks to that endpoint
    assert secretsmanager_client().meta.endpoint_url == "http://127.0.0.1:4599"


def test_boto3s_own_service_variable_wins_over_the_other_spelling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given both spellings of the service endpoint variable
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:4599")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETSMANAGER", "http://127.0.0.1:4600")

    # When the client is built, Then boto3's own variable decides, as boto3 would
    assert secretsmanager_client().meta.endpoint_url == "http://127.0.0.1:4599"


def test_client_uses_aws_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no endpoint variable
    monkeypatch.delenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", raising=False)

    # When the client is built
    endpoint_url = secretsmanager_client().meta.endpoint_url

    # Then it talks to the region's Secrets Manager
    assert endpoint_url == "https://secretsmanager.us-east-1.amazonaws.com"


REPLICA_REGION = "eu-west-1"


@pytest.fixture
def replicated() -> Iterator[SecretsManagerClient]:
    """The session secret of a primary stack in us-east-1, replicated to eu-west-1."""
    with mock_aws():
        client = secretsmanager_client(region_name="us-east-1")
        for secret_id in (CREDENTIALS_ID, SESSION_ID, ACCESS_TOKEN_ID):
            client.create_secret(
                Name=secret_id, SecretString="{}", AddReplicaRegions=[{"Region": REPLICA_REGION}]
            )
        yield client


def replicating_store(client: SecretsManagerClient) -> TokenStore:
    return TokenStore(
        client,
        credentials_secret_id=CREDENTIALS_ID,
        session_secret_id=SESSION_ID,
        access_token_secret_id=ACCESS_TOKEN_ID,
        replica_regions=[REPLICA_REGION],
    )


def test_a_primary_whose_replicas_still_follow_it_is_not_superseded(
    replicated: SecretsManagerClient,
) -> None:
    # Given the session secret replicated to eu-west-1 (DescribeSecret there names us-east-1
    # as the primary region)
    store = replicating_store(replicated)

    # Then the primary was not superseded
    assert store.superseded_by() is None


def test_a_primary_whose_replica_region_was_promoted_is_superseded(
    replicated: SecretsManagerClient,
) -> None:
    # Given the replica in eu-west-1 promoted: its secret stands alone there, holding the value
    # it had (moto has no StopReplicationToReplica; these public calls leave the same state)
    store = replicating_store(replicated)
    replica = secretsmanager_client(region_name=REPLICA_REGION)
    value = replica.get_secret_value(SecretId=SESSION_ID)["SecretString"]
    replicated.remove_regions_from_replication(
        SecretId=SESSION_ID, RemoveReplicaRegions=[REPLICA_REGION]
    )
    replica.create_secret(Name=SESSION_ID, SecretString=value)

    # Then the primary knows it was superseded, and by which region
    assert store.superseded_by() == REPLICA_REGION


def test_a_replica_region_that_cannot_be_asked_never_stops_the_primary(
    replicated: SecretsManagerClient,
) -> None:
    # Given a replica region whose Secrets Manager does not answer (a closed loopback port)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    store = TokenStore(
        replicated,
        credentials_secret_id=CREDENTIALS_ID,
        session_secret_id=SESSION_ID,
        access_token_secret_id=ACCESS_TOKEN_ID,
        replica_regions=[REPLICA_REGION],
        connect_region=lambda region: boto3.client(
            "secretsmanager", region_name=region, endpoint_url=closed
        ),
    )

    # Then the primary goes on: not superseded
    assert store.superseded_by() is None


def test_a_secret_arn_names_the_same_secret_in_the_replica_region(
    replicated: SecretsManagerClient,
) -> None:
    # Given the stack naming its session secret by ARN
    arn = replicated.describe_secret(SecretId=SESSION_ID)["ARN"]
    store = TokenStore(
        replicated,
        credentials_secret_id=CREDENTIALS_ID,
        session_secret_id=arn,
        access_token_secret_id=ACCESS_TOKEN_ID,
        replica_regions=[REPLICA_REGION],
    )

    # Then the replica is asked under its own ARN, and still follows the primary
    assert store.superseded_by() is None
