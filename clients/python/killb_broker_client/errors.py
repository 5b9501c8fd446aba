"""Everything the client raises. Messages never hold a token or an API key.

BrokerClientError         the broker refused, could not be reached, or answered what no request
│                         can carry (status, error_code where the broker gave them)
├── BrokerRequestInvalid  400 BROKER.0001: minTtl, rejected or another parameter the broker refuses
├── BrokerAccessDenied    403 BROKER.0002 (or API Gateway's 403): this caller may not have headers
├── BrokerUnavailable     503 BROKER.0003 or 429, after the retries; retry_after in seconds
└── InsecureRequest       BrokerAuth will not put the headers on this request: plain http:// to a
                          host that is not loopback
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


class InsecureRequest(BrokerClientError):
    """A request the KillB headers must not travel on: anyone on the path could read them."""
