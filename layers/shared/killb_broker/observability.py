"""The one Logger and Metrics every module shares, and the libraries' loggers held quiet.

The service name comes from POWERTOOLS_SERVICE_NAME (set in the template's Globals). No Tracer:
X-Ray tracing is on in the template, and the tracing SDK's import cost buys too little here.
"""

from __future__ import annotations

import logging

from aws_lambda_powertools import Logger, Metrics

METRICS_NAMESPACE = "KillBCredentialBroker"

# Libraries whose DEBUG and INFO records can hold a request's or a response's body or headers:
# at DEBUG botocore logs whole Secrets Manager bodies (the password, the API key, both tokens)
# and the signed request headers, urllib3 and requests log the requests they make, and
# Powertools (with POWERTOOLS_DEBUG) its own internals. Lambda's ApplicationLogLevel sets the
# root logger's level before the handler is imported, and POWERTOOLS_LOG_LEVEL / LOG_LEVEL /
# AWS_LAMBDA_LOG_LEVEL set our Logger's: none of them may reach these. They write warnings and
# errors only, which name what failed, never a body.
QUIET_LIBRARIES = (
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "requests",
    "aws_lambda_powertools",
)
QUIET_LEVEL = logging.WARNING


def quiet_libraries() -> None:
    """Hold each library logger at WARNING at least (higher if it is set higher already)."""
    for name in QUIET_LIBRARIES:
        library = logging.getLogger(name)
        library.setLevel(max(QUIET_LEVEL, library.getEffectiveLevel()))


# At import: both functions import this module at cold start, before any client is built.
quiet_libraries()

# The event is never logged (the broker's carries the caller's signed request; the refresher's
# handler passes log_event=False, which no POWERTOOLS_LOGGER_LOG_EVENT can override).


class _LoggedNull:
    """Stands for a key whose value is null: Powertools drops every key whose value is None, and
    a record of fixed shape (the broker's audit) must keep its keys."""


LOGGED_NULL = _LoggedNull()


def _json_default(value: object) -> object:
    return None if value is LOGGED_NULL else str(value)


logger = Logger(use_rfc3339=True, json_default=_json_default)
metrics = Metrics(namespace=METRICS_NAMESPACE)
