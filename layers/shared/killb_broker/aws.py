"""Secrets Manager, as every part of the layer reaches it: the client (built once per container;
botocore retries throttling itself, and a local Secrets Manager such as moto's server is reached
through the endpoint variables, unchanged code) and the one mapping of its errors to the
layer's own (killb_broker.errors)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as NoConnection

# Caps the library loggers (botocore logs whole bodies at DEBUG) before any client exists,
# whatever a caller imported first.
import killb_broker.observability  # noqa: F401
from killb_broker.errors import SecretAccessDenied, SecretNotFound, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


def secretsmanager_client(
    *,
    connect_timeout: float = 3,
    read_timeout: float = 5,
    max_attempts: int = 5,
    region_name: str | None = None,
) -> SecretsManagerClient:
    """A Secrets Manager client whose throttling and transient errors botocore retries itself.

    boto3 reads AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_SECRETS_MANAGER by itself. docs/spec.md
    names AWS_ENDPOINT_URL_SECRETSMANAGER, a spelling boto3 does not know: it is passed on here,
    and boto3's own spelling wins when both are set.
    """
    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    endpoint_url = None
    if not os.environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        endpoint_url = os.environ.get("AWS_ENDPOINT_URL_SECRETSMANAGER") or None
    return boto3.client(
        "secretsmanager", config=config, endpoint_url=endpoint_url, region_name=region_name
    )


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
def mapped_errors(action: str, secret_id: str) -> Iterator[None]:
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
