"""The boto3 clients, built once per container: botocore retries throttling itself, and a local
Secrets Manager (moto's server) is reached through the endpoint variables, unchanged code."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

# Caps the library loggers (botocore logs whole bodies at DEBUG) before any client exists,
# whatever a caller imported first.
import killb_broker.observability  # noqa: F401

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


def secretsmanager_client(
    *, connect_timeout: float = 3, read_timeout: float = 5, max_attempts: int = 5
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
    return boto3.client("secretsmanager", config=config, endpoint_url=endpoint_url)
