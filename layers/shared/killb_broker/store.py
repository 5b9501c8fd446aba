"""The token store: the three Secrets Manager secrets (credentials, session, access token), their
JSON formats and their readers and writers, as domain values. It knows nothing of KillB's HTTP,
and never logs or raises a secret's value.

The broker imports it too, for the access-token secret's reader (read_access_token): the rest
costs its cold start a few milliseconds of compiling, under 1% of it (measured side by side).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from killb_broker.aws import mapped_errors, secretsmanager_client
from killb_broker.errors import StoreError
from killb_broker.observability import logger
from killb_broker.tokens import (
    AccessToken,
    Credentials,
    LoginBackoff,
    NotConfigured,
    Session,
    TokenSet,
    is_visible_ascii,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

# Any fixed namespace will do: it only has to be the same on every run, so that the same value
# always gets the same ClientRequestToken.
REQUEST_TOKEN_NAMESPACE = uuid.UUID("5b0e8f39-4a0c-5d4e-9c61-6b8a3f2d7e10")
CURRENT = "AWSCURRENT"
NO_TOKEN = "{}"  # noqa: S105 - the access-token secret's placeholder, as the stack creates it


def request_token(secret_string: str) -> str:
    """The ClientRequestToken for writing this value: the same value always gets the same token,
    so a retried write creates no second version."""
    return str(
        uuid.uuid5(REQUEST_TOKEN_NAMESPACE, hashlib.sha256(secret_string.encode()).hexdigest())
    )


class TokenStore:
    """Reads the credentials, session and access-token secrets; writes the last two."""

    def __init__(
        self,
        client: SecretsManagerClient,
        *,
        credentials_secret_id: str,
        session_secret_id: str,
        access_token_secret_id: str,
        replica_regions: Sequence[str] = (),
        connect_region: Callable[[str], SecretsManagerClient] | None = None,
    ) -> None:
        """replica_regions: where the secrets replicate to (a primary stack's ReplicaRegions);
        connect_region builds a client for one of them (default: the layer's client there)."""
        self._client = client
        self.credentials_secret_id = credentials_secret_id
        self.session_secret_id = session_secret_id
        self.access_token_secret_id = access_token_secret_id
        self.replica_regions = tuple(replica_regions)
        self._connect_region = connect_region or _client_in
        self._regional: dict[str, SecretsManagerClient] = {}

    def __repr__(self) -> str:
        return (
            f"TokenStore(credentials={self.credentials_secret_id!r}, "
            f"session={self.session_secret_id!r}, access_token={self.access_token_secret_id!r})"
        )

    def read_credentials(self) -> Credentials | NotConfigured:
        """The operator's login, or NotConfigured saying what the secret lacks."""
        secret_string, version_id = self._get(self.credentials_secret_id)
        return credentials_from_json(secret_string, version_id)

    def read_session(self) -> Session:
        """The latest token set and login backoff; an empty Session for a placeholder value."""
        secret_string, _ = self._get(self.session_secret_id)
        return session_from_json(secret_string)

    def read_access_token(self) -> AccessToken | None:
        """The published token; None for a placeholder or a malformed value."""
        return read_access_token(self._client, self.access_token_secret_id)

    def write_session(self, session: Session) -> None:
        self._put(self.session_secret_id, session_to_json(session))

    def write_access_token(self, token: AccessToken) -> None:
        self._put(self.access_token_secret_id, access_token_to_json(token))

    def clear_access_token(self) -> None:
        """The placeholder that means "no token": the broker answers 503 and health missing."""
        self._put(self.access_token_secret_id, NO_TOKEN)

    def superseded_by(self) -> str | None:
        """The replica region that was promoted to primary, if any: there the session secret
        no longer replicates from this region (the promotion stopped its replication), so this
        stack must not call KillB any more, or two regions would mint tokens. None when every
        replica still follows this region, and when one cannot be asked (its region is down,
        the replica not made yet): a replica region's trouble never stops the primary."""
        own_region = self._client.meta.region_name
        for region in self.replica_regions:
            secret_id = _in_region(self.session_secret_id, own_region, region)
            try:
                with mapped_errors("DescribeSecret", secret_id):
                    answer = self._regional_client(region).describe_secret(SecretId=secret_id)
            except StoreError as error:
                logger.info(
                    "Could not ask a replica region whether it was promoted",
                    extra={"region": region, "error": str(error)},
                )
                continue
            if answer.get("PrimaryRegion") != own_region:
                return region
        return None

    def _regional_client(self, region: str) -> SecretsManagerClient:
        if region not in self._regional:
            self._regional[region] = self._connect_region(region)
        return self._regional[region]

    def _get(self, secret_id: str) -> tuple[str | None, str]:
        with mapped_errors("GetSecretValue", secret_id):
            answer = self._client.get_secret_value(SecretId=secret_id)
        return answer.get("SecretString"), answer["VersionId"]

    def _put(self, secret_id: str, secret_string: str) -> None:
        with mapped_errors("PutSecretValue", secret_id):
            answer = self._client.put_secret_value(
                SecretId=secret_id,
                SecretString=secret_string,
                ClientRequestToken=request_token(secret_string),
            )
            # Secrets Manager ignores a token it has seen with the same value, even when that
            # version is no longer current (the value was replaced since, e.g. by hand): then
            # write it once more as a new version, which always becomes current.
            if CURRENT not in answer.get("VersionStages", [CURRENT]):
                self._client.put_secret_value(
                    SecretId=secret_id,
                    SecretString=secret_string,
                    ClientRequestToken=str(uuid.uuid4()),
                )


class SecretReader(Protocol):
    """The one call a reader of the access-token secret makes (a boto3 client fits)."""

    def get_secret_value(self, *, SecretId: str) -> Mapping[str, Any]: ...  # noqa: N803


def read_access_token(client: SecretReader, secret_id: str) -> AccessToken | None:
    """The access-token secret's token (None for a placeholder or a malformed value): the one
    reader of that secret, for the broker and the refresher alike."""
    with mapped_errors("GetSecretValue", secret_id):
        answer = client.get_secret_value(SecretId=secret_id)
    return access_token_from_json(answer.get("SecretString"))


def _json_object(secret_string: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(secret_string or "")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _whole(value: object) -> int | None:
    return value if type(value) is int else None


def credentials_from_json(
    secret_string: str | None, version_id: str
) -> Credentials | NotConfigured:
    """The operator's login, or what keeps the secret from being one (naming a field, never a
    value): not JSON, a missing or empty email or password, an apiKey no header can carry."""
    try:
        value = json.loads(secret_string or "")
    except ValueError:
        return NotConfigured("not JSON")
    problem = _credentials_problem(value)
    if problem is not None:
        return NotConfigured(problem)
    return Credentials(
        email=value["email"],
        password=value["password"],
        api_key=value.get("apiKey") or None,
        version_id=version_id,
    )


def _credentials_problem(value: object) -> str | None:
    if not isinstance(value, dict):
        return "not a JSON object"
    for name in ("email", "password"):
        if name not in value:
            return f"missing field {name}"
        if not isinstance(value[name], str):
            return f"field {name} is not a string"
        if not value[name].strip():
            return f"empty field {name}"
    # It goes out as the x-api-key header: refused here rather than by the HTTP library.
    api_key = value.get("apiKey")
    header_safe = api_key in (None, "") or is_visible_ascii(api_key)
    return None if header_safe else "field apiKey holds characters a header cannot carry"


def session_from_json(secret_string: str | None) -> Session:
    value = _json_object(secret_string)
    if value is None:
        return Session()
    access_token, refresh_token = value.get("accessToken"), value.get("refreshToken")
    expires_at = _whole(value.get("expiresAt"))
    tokens = None
    # A token that is not visible ASCII is no token (it would go into a header): log in afresh.
    if (
        is_visible_ascii(access_token)
        and is_visible_ascii(refresh_token)
        and expires_at is not None
    ):
        tokens = TokenSet(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_at=expires_at,
            # A session written by hand may lack it; nothing decides on it.
            obtained_at=_whole(value.get("obtainedAt")) or 0,
        )
    backoff = value.get("loginBackoff")
    login_backoff = None
    if isinstance(backoff, dict):
        rejected_at, version = (
            _whole(backoff.get("rejectedAt")),
            _text(backoff.get("credentialsVersion")),
        )
        if rejected_at is not None and version is not None:
            login_backoff = LoginBackoff(rejected_at=rejected_at, credentials_version=version)
    # Keys it does not read are ignored: an older session's failingSince and failureNotifiedAt.
    return Session(
        tokens=tokens,
        login_backoff=login_backoff,
        credentials_version=_text(value.get("credentialsVersion")),
        rejected_refresh_at=_whole(value.get("rejectedRefreshAt")),
    )


def session_to_json(session: Session) -> str:
    value: dict[str, object] = {}
    if session.tokens is not None:
        value |= {
            "accessToken": session.tokens.access_token,
            "refreshToken": session.tokens.refresh_token,
            "expiresAt": session.tokens.expires_at,
            "obtainedAt": session.tokens.obtained_at,
        }
    if session.credentials_version is not None:
        value["credentialsVersion"] = session.credentials_version
    if session.rejected_refresh_at is not None:
        value["rejectedRefreshAt"] = session.rejected_refresh_at
    if session.login_backoff is not None:
        value["loginBackoff"] = {
            "rejectedAt": session.login_backoff.rejected_at,
            "credentialsVersion": session.login_backoff.credentials_version,
        }
    return json.dumps(value, separators=(",", ":"))


def access_token_to_json(token: AccessToken) -> str:
    """The access-token secret's JSON: the token, its expiry, the API key if there is one, the
    KillB API root (baseUrl) and when KillB last confirmed the token (checkedAt), when known."""
    value: dict[str, str | int] = {"accessToken": token.token, "expiresAt": token.expires_at}
    if token.api_key:
        value["apiKey"] = token.api_key
    if token.base_url:
        value["baseUrl"] = token.base_url
    if token.checked_at is not None:
        value["checkedAt"] = token.checked_at
    return json.dumps(value, separators=(",", ":"))


def access_token_from_json(secret_string: str | None) -> AccessToken | None:
    """The token in the access-token secret, or None for a placeholder or malformed value.

    A token or API key that a header cannot carry as it is (empty, padded, CR, LF, NUL,
    non-ASCII) is malformed: serving it would let a naive caller inject a header.
    """
    value = _json_object(secret_string)
    if value is None:
        return None
    token, expires_at, api_key = (value.get(k) for k in ("accessToken", "expiresAt", "apiKey"))
    if not is_visible_ascii(token) or type(expires_at) is not int:
        return None
    if api_key is not None and api_key != "" and not is_visible_ascii(api_key):
        return None
    # Not secret, and optional (a value written by an older refresher has neither): one that is
    # malformed is dropped, never a reason to refuse the token.
    base_url, checked_at = value.get("baseUrl"), value.get("checkedAt")
    return AccessToken(
        token=token,
        expires_at=expires_at,
        api_key=api_key or None,
        base_url=base_url if is_visible_ascii(base_url) else None,
        checked_at=checked_at if type(checked_at) is int and checked_at >= 0 else None,
    )


def _client_in(region: str) -> SecretsManagerClient:
    # Quick to give up: a replica region that does not answer is no reason to hold up the run.
    return secretsmanager_client(
        connect_timeout=2, read_timeout=3, max_attempts=2, region_name=region
    )


def _in_region(secret_id: str, own_region: str, region: str) -> str:
    """The same secret's id in another region: a name is the same everywhere; an ARN differs
    only in its region."""
    if not secret_id.startswith("arn:"):
        return secret_id
    return secret_id.replace(f":secretsmanager:{own_region}:", f":secretsmanager:{region}:", 1)
