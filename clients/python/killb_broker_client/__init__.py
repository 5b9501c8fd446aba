"""Client for services that call the KillB credential broker: fresh KillB auth headers in one line.

session.auth = BrokerAuth("https://abc123.execute-api.us-east-1.amazonaws.com/api")
"""

from killb_broker_client.auth import (
    BrokerAuth,
    BrokerHealth,
    IssuedHeaders,
    fingerprint,
    get_auth_headers,
)
from killb_broker_client.errors import (
    AwsCredentialsError,
    BrokerAccessDenied,
    BrokerClientError,
    BrokerRequestInvalid,
    BrokerUnavailable,
    BrokerUnreachable,
    InsecureRequest,
)

__all__ = [
    "AwsCredentialsError",
    "BrokerAccessDenied",
    "BrokerAuth",
    "BrokerClientError",
    "BrokerHealth",
    "BrokerRequestInvalid",
    "BrokerUnavailable",
    "BrokerUnreachable",
    "InsecureRequest",
    "IssuedHeaders",
    "fingerprint",
    "get_auth_headers",
]
