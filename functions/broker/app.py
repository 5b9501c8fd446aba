"""The broker's Lambda handler: API Gateway (REST, AWS_IAM) routes into the layer, the wiring of
its clients, and the one place where errors become HTTP answers (docs/spec.md, "Errors")."""

from __future__ import annotations

import os
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.typing import LambdaContext

from killb_broker import errors, rest
from killb_broker.audit import AuditRecord
from killb_broker.aws import secretsmanager_client
from killb_broker.broker import Broker
from killb_broker.callers import Callers
from killb_broker.config import BrokerConfig
from killb_broker.observability import logger, metrics
from killb_broker.refresher_invoke import Refresher
from killb_broker.token_source import TokenSource

config = BrokerConfig.at_cold_start(os.environ)

# The Lambda client is built on the first forced refresh, not at cold start (see Refresher).
refresher = (
    Refresher(None, config.refresher_function_name, region=config.refresher_region)
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


@app.get("/v1/auth-headers")
def auth_headers() -> Response[Any]:
    event, audit = app.current_event, app.context["audit"]
    body = broker.auth_headers(rest.caller_arn(event), rest.query(event), audit)
    audit.log(HTTPStatus.OK, "issued")
    return rest.json_response(HTTPStatus.OK, body)


@app.get("/v1/health")
def health() -> Response[Any]:
    # A health check hands out no token: only its refusals are audited.
    body = broker.health(rest.caller_arn(app.current_event), app.context["audit"])
    return rest.json_response(HTTPStatus.OK, body)


@app.not_found
def no_such_route(_: NotFoundError) -> Response[Any]:
    answer: Response[Any] = error_response(rest.route_error(app.current_event.path))
    return answer


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]  # Powertools leaves it untyped
def error_response(error: Exception) -> Response[Any]:
    """Every error, mapped to its status, error code and message; details stay in the log."""
    reason, headers = str(error), dict[str, str]()
    match error:
        case errors.InvalidRequest():
            status, code, messages = HTTPStatus.BAD_REQUEST, "BROKER.0001", [reason]
        case errors.CallerNotAllowed():
            status, code, messages = HTTPStatus.FORBIDDEN, "BROKER.0002", [reason]
        case errors.NoSuchRoute():
            status, code, messages = HTTPStatus.NOT_FOUND, "BROKER.0004", [reason]
        case errors.MethodNotAllowed():
            status, code, messages = HTTPStatus.METHOD_NOT_ALLOWED, "BROKER.0005", [reason]
            headers["Allow"] = error.allowed
        case errors.TokenUnavailable():
            status, code = HTTPStatus.SERVICE_UNAVAILABLE, "BROKER.0003"
            messages = ["no access token valid for minTtl can be had now; retry later"]
            messages += [error.explanation] if error.explanation else []
            headers["Retry-After"] = str(error.retry_after)
        case _:
            logger.exception("unexpected error")
            status, code = HTTPStatus.INTERNAL_SERVER_ERROR, "BROKER.0000"
            messages = ["internal error"]
            reason = f"internal error ({type(error).__name__})"
    app.context["audit"].log(status, reason)
    return rest.json_response(status, rest.error_body(status, code, messages), headers)


def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    # Lighter than Powertools' inject_lambda_context and log_metrics on this hot path
    # (docs/spec.md, "Benchmarks", P1): the correlation id is API Gateway's request id, read
    # directly, and metrics are flushed only when a request added one (tokens issued are counted
    # from the audit line). The event is never logged: it carries the caller's signature.
    if not rest.is_rest_event(event):
        # An HTTP API (v2) event, a warmer's ping, a console test, `{}`: not a request of the
        # API, and no reason for a function error (API Gateway would answer a bare 502).
        logger.set_correlation_id(None)
        AuditRecord().log(HTTPStatus.BAD_REQUEST, "not an API Gateway REST proxy event")
        return rest.direct_error(
            HTTPStatus.BAD_REQUEST, "BROKER.0001", "not an API Gateway REST (v1) proxy event"
        )
    request_id, audit = rest.request_audit(event)
    logger.set_correlation_id(request_id)
    app.context["audit"] = audit
    try:
        response = app.resolve(event, context)
    except Exception:
        # Powertools failed before or after the routes (an event it could not read): the
        # documented 500, never a function error.
        logger.exception("unexpected error")
        audit.log(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        return rest.direct_error(HTTPStatus.INTERNAL_SERVER_ERROR, "BROKER.0000", "internal error")
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
    return rest.with_plain_headers(response)
