"""Everything the client raises. Messages never hold a token, an API key or an AWS secret.

BrokerClientError         the broker refused, could not be reached, or answered what no request
│                         can carry (status, error_code, url where they are known)
├── BrokerRequestInvalid  400 BROKER.0001: minTtl, rejected or another parameter the broker refuses
├── BrokerAccessDenied    403 BROKER.0002 (or API Gateway's 403): this caller may not have headers
├── BrokerUnavailable     503 BROKER.0003 or 429, after the retries; retry_after in seconds
├── BrokerUnreachable     no answer: connection refused or reset, timeout, TLS or DNS failure
├── AwsCredentialsError   no AWS credentials to sign with: none at all, an unknown profile, an SSO
│                         login missing or expired, a failing credential_process, a config file
│                         that does not parse (profile: the profile in use, None for the default)
└── InsecureRequest       BrokerAuth will not put the headers on this request: plain http:// to a
                          host that is not loopback
"""

from __future__ import annotations


class BrokerClientError(Exception):
    """The broker answered with an error, an unexpected body, or not at all."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        url: str | None = None,
    ) -> None:
        details = ", ".join(
            part for part in (error_code or "", f"HTTP {status}" if status else "") if part
        )
        super().__init__(f"{message} ({details})" if details else message)
        self.message = message
        self.status = status
        self.error_code = error_code
        # The broker (API root) the error came from, when several may have been asked.
        self.url = url


class BrokerRequestInvalid(BrokerClientError):
    """The broker rejected the request's parameters (400)."""


class BrokerAccessDenied(BrokerClientError):
    """No IAM identity reached the broker, or the caller is not in its allowed principals (403)."""


class BrokerUnavailable(BrokerClientError):
    """No token valid long enough can be had now (503), or the API throttled the caller (429)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 503,
        error_code: str | None = None,
        url: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, error_code=error_code, url=url)
        self.retry_after = retry_after


class BrokerUnreachable(BrokerClientError):
    """The broker did not answer: connection refused or reset, a timeout, TLS or DNS failure."""


class AwsCredentialsError(BrokerClientError):
    """The caller's AWS credentials cannot be had, so no broker call can be signed."""

    def __init__(self, message: str, *, profile: str | None = None) -> None:
        super().__init__(message)
        self.profile = profile


class InsecureRequest(BrokerClientError):
    """A request the KillB headers must not travel on: anyone on the path could read them."""
