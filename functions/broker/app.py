"""The broker's Lambda handler: API Gateway (REST, AWS_IAM) routes into the layer, and the one
place where errors become the contract's HTTP answers."""

from __future__ import annotations

import os
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from killb_broker.broker import Broker
from killb_broker.config import BrokerConfig
from killb_broker.errors import (
    CallerNotAllowed,
    ConfigurationError,
    InvalidRequest,
    TokenUnavailable,
)
from killb_broker.observability import logger, metrics

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

broker = Broker.from_config(config)
app = APIGatewayRestResolver()

# Every method of every route: a known path asked with another method is a 405, not a 404.
ROUTES = {"/v1/auth-headers": "GET", "/v1/health": "GET"}


@app.get("/v1/auth-headers")
def auth_headers() -> Response[Any]:
    caller_arn, source_ip = _caller(app.current_event)
    return _json(
        HTTPStatus.OK, broker.auth_headers(caller_arn, source_ip, _query(app.current_event))
    )


@app.get("/v1/health")
def health() -> Response[Any]:
    caller_arn, _ = _caller(app.current_event)
    return _json(HTTPStatus.OK, broker.health(caller_arn))


@app.not_found
def no_such_route(_: NotFoundError) -> Response[Any]:
    allowed_method = ROUTES.get(app.current_event.path)
    if allowed_method is None:
        return _error(HTTPStatus.NOT_FOUND, "BROKER.0004", "no such route")
    return _error(
        HTTPStatus.METHOD_NOT_ALLOWED,
        "BROKER.0005",
        "method not allowed",
        {"Allow": allowed_method},
    )


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]  # Powertools leaves it untyped
def error_response(error: Exception) -> Response[Any]:
    """Every error, mapped to the contract's status and code; details stay in the log."""
    match error:
        case InvalidRequest():
            return _error(HTTPStatus.BAD_REQUEST, "BROKER.0001", str(error))
        case CallerNotAllowed():
            return _error(HTTPStatus.FORBIDDEN, "BROKER.0002", str(error))
        case TokenUnavailable():
            return _error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "BROKER.0003",
                "no access token valid for minTtl can be had now; retry later",
                {"Retry-After": str(error.retry_after)},
            )
        case _:
            logger.exception("unexpected error")
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "BROKER.0000", "internal error")


def _caller(event: APIGatewayProxyEvent) -> tuple[str | None, str | None]:
    """The caller's IAM ARN and source IP; an event with no identity at all is a 403, not a 500."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    return identity.get("userArn"), identity.get("sourceIp")


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


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Lighter than Powertools' inject_lambda_context and log_metrics on this hot path (make
    # bench, P1): the correlation id is API Gateway's request id, read directly, and metrics are
    # flushed only when a request added one (tokens issued are counted from the audit line).
    # The event is never logged: it carries the caller's signature.
    logger.set_correlation_id((event.get("requestContext") or {}).get("requestId"))
    try:
        response = app.resolve(event, context)
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
    # Powertools answers a REST event with multiValueHeaders only; API Gateway merges both forms,
    # and plain headers serve the clients and tools that read only those.
    response["headers"] = {
        name: ", ".join(values) for name, values in response.get("multiValueHeaders", {}).items()
    }
    return response
