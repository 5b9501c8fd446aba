"""The one mapping of Secrets Manager's errors to the store's own (killb_broker.errors), and the
one reader of the access-token secret: small, so that the broker imports it without the rest of
killb_broker.store."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as NoConnection

from killb_broker.errors import SecretAccessDenied, SecretNotFound, StoreError, StoreUnavailable
from killb_broker.tokens import AccessToken

# Secrets Manager's answers that mean "try again soon": nothing is wrong with the secret or the
# role, the service is busy or briefly failing (after botocore's own retries).
_UNAVAILABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "InternalServiceError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


def _marked_for_deletion(message: object) -> bool:
    # AWS says "...because it was marked for deletion"; moto, "...currently marked deleted".
    text = str(message).lower()
    return "marked" in text and "delet" in text


@contextmanager
def _secrets_manager(action: str, secret_id: str) -> Iterator[None]:
    """Every AWS error of a Secrets Manager call as the store's own, naming the secret: the one
    mapping for the whole layer. Never chained (`from None`): botocore's errors may quote the
    request, the value included."""
    try:
        yield
    except ClientError as error:
        details = error.response.get("Error", {})
        code = details.get("Code", "Unknown")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in {"AccessDeniedException", "DecryptionFailure"}:
            raise SecretAccessDenied(
                f"{action}: access denied ({code})", secret_id=secret_id
            ) from None
        if code == "ResourceNotFoundException":
            raise SecretNotFound(
                f"{action}: no such secret or value", secret_id=secret_id
            ) from None
        if code == "InvalidRequestException" and _marked_for_deletion(details.get("Message")):
            raise SecretNotFound(
                f"{action}: secret scheduled for deletion", secret_id=secret_id
            ) from None
        if code in _UNAVAILABLE_CODES or status >= 500:
            raise StoreUnavailable(
                f"{action}: Secrets Manager unavailable ({code})", secret_id=secret_id
            ) from None
        raise StoreError(f"{action} failed ({code})", secret_id=secret_id) from None
    except (NoConnection, HTTPClientError) as error:
        # No answer at all: refused or lost connection, a connect or read timeout.
        raise StoreUnavailable(
            f"{action}: Secrets Manager unreachable ({type(error).__name__})", secret_id=secret_id
        ) from None
    except BotoCoreError as error:
        raise StoreError(f"{action} failed ({type(error).__name__})", secret_id=secret_id) from None


class SecretReader(Protocol):
    """The one call a reader of the access-token secret makes (a boto3 client fits)."""

    def get_secret_value(self, *, SecretId: str) -> Mapping[str, Any]: ...  # noqa: N803


def read_access_token(client: SecretReader, secret_id: str) -> AccessToken | None:
    """The access-token secret's token (None for a placeholder or a malformed value): the one
    reader of that secret, for the broker and the refresher alike."""
    with _secrets_manager("GetSecretValue", secret_id):
        answer = client.get_secret_value(SecretId=secret_id)
    return AccessToken.from_secret_string(answer.get("SecretString"))
