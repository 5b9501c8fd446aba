"""API Gateway's REST (v1) proxy, as the broker's handler speaks it: which events are requests of
the API, what of a request the routes read (caller, query, route), and the answers' one JSON
shape, errors included (KillB's, docs/spec.md "Errors")."""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, TypeIs

from aws_lambda_powertools.event_handler import Response

from killb_broker.audit import AuditRecord
from killb_broker.errors import MethodNotAllowed, NoSuchRoute

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
# Tokens must never sit in a shared or browser cache; errors are not worth caching either.
NO_STORE = {"Cache-Control": "no-store"}


def is_rest_event(event: object) -> TypeIs[dict[str, Any]]:
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


def request_audit(event: Mapping[str, Any]) -> tuple[str | None, AuditRecord]:
    """API Gateway's request id (the correlation id of the request's log lines), and the
    request's audit record with what the event says before any route runs."""
    request_context = event.get("requestContext") or {}
    request_id, identity = request_context.get("requestId"), request_context.get("identity")
    return request_id if isinstance(request_id, str) else None, AuditRecord(
        route=f"{event['httpMethod']} {event['path'][:256]}",
        source_ip=identity.get("sourceIp") if isinstance(identity, dict) else None,
    )


def caller_arn(event: Mapping[str, Any]) -> str | None:
    """The caller's IAM ARN; an event with no identity at all is a 403, not a 500."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    arn = identity.get("userArn")
    return arn if isinstance(arn, str) else None


def query(event: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every value of every query parameter, so that a repeated minTtl cannot hide."""
    if event.get("multiValueQueryStringParameters"):
        return dict(event["multiValueQueryStringParameters"])
    return {name: [value] for name, value in (event.get("queryStringParameters") or {}).items()}


def route_error(path: str) -> NoSuchRoute | MethodNotAllowed:
    """Why a request matched no route: its path is unknown, or it asked another method."""
    allowed = ROUTES.get(path)
    return NoSuchRoute("no such route") if allowed is None else MethodNotAllowed(allowed)


def error_body(status: HTTPStatus, error_code: str, messages: list[str]) -> dict[str, Any]:
    """KillB's error shape, which callers already parse: statusCode is a string there."""
    return {"errorCode": error_code, "message": messages, "statusCode": str(status.value)}


def json_response(
    status: HTTPStatus, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> Response[Any]:
    """An answer of the routes: JSON that no cache keeps."""
    return Response(
        status_code=status.value,
        content_type="application/json",
        body=body,
        headers={**NO_STORE, **(headers or {})},
    )


def direct_error(status: HTTPStatus, error_code: str, message: str) -> dict[str, Any]:
    """An error answered without the resolver, in the shape API Gateway's proxy expects."""
    headers = {"Content-Type": "application/json", **NO_STORE}
    return with_plain_headers(
        {
            "statusCode": status.value,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "body": json.dumps(error_body(status, error_code, [message])),
            "isBase64Encoded": False,
        }
    )


def with_plain_headers(response: dict[str, Any]) -> dict[str, Any]:
    """The answer with its headers in both forms. Powertools answers a REST event with
    multiValueHeaders only; API Gateway merges both forms, and plain headers serve the clients
    and tools that read only those."""
    response["headers"] = {
        name: ", ".join(values) for name, values in response.get("multiValueHeaders", {}).items()
    }
    return response
