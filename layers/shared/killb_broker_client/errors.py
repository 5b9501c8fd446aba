"""What can go wrong when asking the broker for headers. Messages never hold a token.

BrokerClientError         the broker refused or could not be reached (status, error_code)
├── BrokerRequestInvalid  400 BROKER.0001: minTtl or another parameter the broker rejects
├── BrokerAccessDenied    403 BROKER.0002 (or API Gateway's 403): this caller may not have headers
└── BrokerUnavailable     503 BROKER.0003 or 429, after the retries; retry_after in seconds
"""

from __future__ import annotations


class BrokerClientError(Exception):
    """The broker answered with an error, an unexpected body, or not at all."""

    def __init__(
        self, message: str, *, status: int | None = None, error_code: str | None = None
    ) -> None:
        details = ", ".join(
            part for part in (error_code or "", f"HTTP {status}" if status else "") if part
        )
        super().__init__(f"{message} ({details})" if details else message)
        self.message = message
        self.status = status
        self.error_code = error_code


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
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, error_code=error_code)
        self.retry_after = retry_after
