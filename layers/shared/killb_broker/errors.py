"""The broker's own exception types. Messages never hold a secret: they name things, not values.

BrokerError
├── ConfigurationError        a setting is missing or malformed; names the variable (cold start)
├── KillBError                KillB refused (e.g. a 422, a redirect) or could not answer
│   ├── InvalidCredentials    the login was refused (AUTH.0001, or 401 at login)
│   ├── TokenRejected         the refresh token was refused (401/403, AUTH.0002, AUTH.0003)
│   └── KillBUnavailable      5xx, timeout, dropped connection, after the retries
│       ├── RateLimited       429; retry_after in seconds when KillB sent Retry-After
│       └── UnexpectedResponse  an answer that is not the JSON KillB documents
├── StoreError                Secrets Manager refused or failed; names the secret
│   ├── SecretAccessDenied    AccessDenied, DecryptionFailure: the role or key policy says no
│   ├── SecretNotFound        no such secret or value, or one scheduled for deletion
│   └── StoreUnavailable      throttled, 5xx, no connection, a timeout: try again soon
├── TokenUnavailable          the broker has no token valid long enough: 503 BROKER.0003
├── InvalidRequest            a request the broker API does not accept: 400 BROKER.0001
├── CallerNotAllowed          no IAM caller identity, or not in ALLOWED_PRINCIPALS: 403 BROKER.0002
├── NoSuchRoute               a path the broker API does not have: 404 BROKER.0004
└── MethodNotAllowed          a known path asked with another method: 405 BROKER.0005

The broker answers any StoreError as 503 BROKER.0003 (with Retry-After), and anything not
listed here as 500 BROKER.0000.
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigurationError(BrokerError):
    """A setting (environment variable) is missing or malformed."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class KillBError(BrokerError):
    """KillB refused a request or could not answer it."""

    def __init__(
        self, message: str, *, status: int | None = None, error_code: str | None = None
    ) -> None:
        details = ", ".join(
            part for part in (f"HTTP {status}" if status else "", error_code or "") if part
        )
        super().__init__(f"{message} ({details})" if details else message)
        self.status = status
        self.error_code = error_code


class InvalidCredentials(KillBError):
    """KillB refused the email and password (AUTH.0001)."""


class TokenRejected(KillBError):
    """KillB refused the refresh token: expired, invalid or already used."""


class KillBUnavailable(KillBError):
    """KillB did not give a usable answer, after the client's retries."""


class RateLimited(KillBUnavailable):
    """KillB answered 429 until the retries ran out."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        error_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, error_code=error_code)
        self.retry_after = retry_after


class UnexpectedResponse(KillBUnavailable):
    """KillB answered with a body that is not the JSON it documents."""


class StoreError(BrokerError):
    """Secrets Manager refused or failed a read or write; the message names the secret."""

    def __init__(self, message: str, *, secret_id: str) -> None:
        super().__init__(f"{message}: {secret_id}")
        self.secret_id = secret_id


class SecretAccessDenied(StoreError):
    """This function's role may not read or write the secret."""


class SecretNotFound(StoreError):
    """The secret does not exist (or was deleted)."""


class StoreUnavailable(StoreError):
    """Secrets Manager did not give an answer now (throttled, 5xx, timeout, no connection)."""


class TokenUnavailable(BrokerError):
    """No access token valid for the caller's minTtl can be had now.

    The reason is for the log; explanation, when given, is safe to tell the caller (it names a
    setting, never a secret's name or value).
    """

    def __init__(self, reason: str, *, retry_after: int, explanation: str | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.explanation = explanation


class InvalidRequest(BrokerError):
    """The request's query is not what the broker API accepts (400)."""


class CallerNotAllowed(BrokerError):
    """No IAM caller identity, or a caller that ALLOWED_PRINCIPALS does not name (403)."""


class NoSuchRoute(BrokerError):
    """A path the broker API does not have (404)."""


class MethodNotAllowed(BrokerError):
    """A known path asked with a method it does not take (405); allowed names the one it takes."""

    def __init__(self, allowed: str) -> None:
        super().__init__("method not allowed")
        self.allowed = allowed
