"""A local KillB for tests and the demo: a real HTTP server on loopback (see server.py)."""

from killb_sandbox.server import (
    Account,
    Delay,
    Drop,
    Endpoint,
    ErrorResponse,
    Fault,
    KillBSandbox,
    NotJson,
    RateLimit,
    RecordedRequest,
    Redirect,
    UnexpectedJson,
)

__all__ = [
    "Account",
    "Delay",
    "Drop",
    "Endpoint",
    "ErrorResponse",
    "Fault",
    "KillBSandbox",
    "NotJson",
    "RateLimit",
    "RecordedRequest",
    "Redirect",
    "UnexpectedJson",
]
