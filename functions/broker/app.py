"""The broker's Lambda handler: API Gateway (REST, AWS_IAM) routes into the layer, the wiring of
its clients, and the one place where errors become HTTP answers (docs/spec.md, "Errors")."""

from __future__ import annotations

import json
import os
from http import HTTPStatus
from typing import Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from killb_broker.audit import AuditRecord, Outcome
from killb_broker.aws import secretsmanager_client
from killb_broker.broker import Broker
from killb_broker.callers import Callers
from killb_broker.config import BrokerConfig
from killb_broker.errors import (
    CallerNotAllowed,
    ConfigurationError,
    InvalidRequest,
    TokenUnavailable,
)
from killb_broker.observability import logger, metrics
from killb_broker.refresher_invoke import FunctionInvoker, Refresher
from killb_broker.token_source import TokenSource

try:
    config = BrokerConfig.from_env(os.environ)
except ConfigurationError as error:
    logger.error(f"broker configuration is invalid: {error}", extra={"variable": error.variable})
    raise
for _variable in config.ignored_variables:
    logger.warning(
        f"{_variable} is set but ignored: it applies only under sam local (AWS_SAM_LOCAL=true)",
        extra={"variable": _variable},
    )


def _lambda_client() -> FunctionInvoker:
    return boto3.client(
        "lambda",
        config=Config(
            connect_timeout=2,
            # The broker has 29 s (API Gateway's limit). A refresh is one KillB call; a
            # refresher still busy after 20 s is fighting KillB, and the caller is better served
            # by a 503 with Retry-After than by a gateway timeout. The run goes on.
            read_timeout=20,
            # No retries: a retried invoke is a second refresh, and a throttled one means the
            # refresher is already running; either way the broker reads the secret again.
            retries={"mode": "standard", "total_max_attempts": 1},
        ),
    )


# Built on the first forced refresh, not at cold start (see Refresher).
refresher = (
    Refresher(None, config.refresher_function_name, connect=_lambda_client)
    if config.refresher_function_name
    else None
)
broker = Broker(
    TokenSource(
        secretsmanager_client(connect_timeout=2, read_timeout=5, max_attempts=3),
        config.access_token_secret_id,
        refresher=refresher,
    ),
    Callers(config.allowed_principals, local_caller_arn=config.local_caller_arn),
)
app = APIGatewayRestResolver()

# Every method of every route: a known path asked with another method is a 405, not a 404.
ROUTES = {"/v1/auth-headers": "GET", "/v1/health": "GET"}
# The parts of a REST (v1) proxy event that, when present and not null, are JSON objects; its
# httpMethod and path are always strings.
REST_EVENT_MAPPINGS = (
    "requestContext",
    "headers",
    "multiValueHeaders",
    "queryStringParameters",
    "multiValueQueryStringParameters",
)


@app.get("/v1/auth-headers")
def auth_headers() -> Response[Any]:
    event, audit = app.current_event, app.context["audit"]
    body = broker.auth_headers(_caller_arn(event), _query(event), audit)
    audit.log(Outcome.ISSUED, "issued")
    return _json(HTTPStatus.OK, body)


@app.get("/v1/health")
def health() -> Response[Any]:
    # A health check hands out no token: only its refusals are audited.
    return _json(HTTPStatus.OK, broker.health(_caller_arn(app.current_event), app.context["audit"]))


@app.not_found
def no_such_route(_: NotFoundError) -> Response[Any]:
    allowed_method = ROUTES.get(app.current_event.path)
    if allowed_method is None:
        app.context["audit"].log(Outcome.INVALID, "no such route")
        return _error(HTTPStatus.NOT_FOUND, "BROKER.0004", "no such route")
    app.context["audit"].log(Outcome.INVALID, "method not allowed")
    return _error(
        HTTPStatus.METHOD_NOT_ALLOWED,
        "BROKER.0005",
        "method not allowed",
        {"Allow": allowed_method},
    )


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]  # Powertools leaves it untyped
def error_response(error: Exception) -> Response[Any]:
    """Every error, mapped to its status and error code; details stay in the log."""
    audit: AuditRecord = app.context["audit"]
    match error:
        case InvalidRequest():
            audit.log(Outcome.INVALID, str(error))
            return _error(HTTPStatus.BAD_REQUEST, "BROKER.0001", str(error))
        case CallerNotAllowed():
            audit.log(Outcome.REFUSED, str(error))
            return _error(HTTPStatus.FORBIDDEN, "BROKER.0002", str(error))
        case TokenUnavailable():
            audit.log(Outcome.UNAVAILABLE, str(error))
            return _error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "BROKER.0003",
                "no access token valid for minTtl can be had now; retry later",
                {"Retry-After": str(error.retry_after)},
            )
        case _:
            logger.exception("unexpected error")
            audit.log(Outcome.UNAVAILABLE, f"internal error ({type(error).__name__})")
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "BROKER.0000", "internal error")


def _caller_arn(event: APIGatewayProxyEvent) -> str | None:
    """The caller's IAM ARN; an event with no identity at all is a 403, not a 500."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    arn = identity.get("userArn")
    return arn if isinstance(arn, str) else None


def _query(event: APIGatewayProxyEvent) -> dict[str, list[str]]:
    """Every value of every query parameter, so that a repeated minTtl cannot hide."""
    if event.multi_value_query_string_parameters:
        return dict(event.multi_value_query_string_parameters)
    return {name: [value] for name, value in (event.query_string_parameters or {}).items()}


def _json(
    status: HTTPStatus, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        status_code=status.value,
        content_type="application/json",
        body=body,
        # Tokens must never sit in a shared or browser cache; errors are not worth caching either.
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _error(
    status: HTTPStatus, error_code: str, message: str, headers: dict[str, str] | None = None
) -> Response[Any]:
    """KillB's error shape, which callers already parse: statusCode is a string there."""
    body = {"errorCode": error_code, "message": [message], "statusCode": str(status.value)}
    return _json(status, body, headers)


def _is_rest_event(event: Any) -> bool:
    """An API Gateway REST (v1) proxy event, as far as the routes read one."""
    if not isinstance(event, dict):
        return False
    if not (isinstance(event.get("httpMethod"), str) and isinstance(event.get("path"), str)):
        return False
    for key in REST_EVENT_MAPPINGS:
        value = event.get(key)
        if value is not None and not isinstance(value, dict):
            return False
    return True


def _direct_error(status: HTTPStatus, error_code: str, message: str) -> dict[str, Any]:
    """An error answered without the resolver, in the shape API Gateway's proxy expects."""
    body = {"errorCode": error_code, "message": [message], "statusCode": str(status.value)}
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    return {
        "statusCode": status.value,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    # Lighter than Powertools' inject_lambda_context and log_metrics on this hot path
    # (docs/spec.md, "Benchmarks", P1): the correlation id is API Gateway's request id, read
    # directly, and metrics are flushed only when a request added one (tokens issued are counted
    # from the audit line).
    # The event is never logged: it carries the caller's signature.
    if not _is_rest_event(event):
        # An HTTP API (v2) event, a warmer's ping, a console test, `{}`: not a request of the
        # API, and no reason for a function error (API Gateway would answer a bare 502).
        logger.set_correlation_id(None)
        AuditRecord().log(Outcome.INVALID, "not an API Gateway REST proxy event")
        return _direct_error(
            HTTPStatus.BAD_REQUEST, "BROKER.0001", "not an API Gateway REST (v1) proxy event"
        )
    request_context = event.get("requestContext") or {}
    identity = request_context.get("identity")
    logger.set_correlation_id(request_context.get("requestId"))
    audit = AuditRecord(
        route=f"{event['httpMethod']} {event['path'][:256]}",
        source_ip=identity.get("sourceIp") if isinstance(identity, dict) else None,
    )
    app.context["audit"] = audit
    try:
        response = app.resolve(event, context)
    except Exception:
        # Powertools failed before or after the routes (an event it could not read): the
        # documented 500, never a function error.
        logger.exception("unexpected error")
        audit.log(Outcome.UNAVAILABLE, "internal error")
        return _direct_error(HTTPStatus.INTERNAL_SERVER_ERROR, "BROKER.0000", "internal error")
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
    # Powertools answers a REST event with multiValueHeaders only; API Gateway merges both forms,
    # and plain headers serve the clients and tools that read only those.
    response["headers"] = {
        name: ", ".join(values) for name, values in response.get("multiValueHeaders", {}).items()
    }
    return response
