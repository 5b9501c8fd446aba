"""openapi/broker.yaml, loaded once, and a check of a real HTTP response against it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator.readers import read_from_filename

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi" / "broker.yaml"
SPEC: dict[str, Any] = dict(read_from_filename(str(DOCUMENT))[0])


def resolved(node: Any) -> Any:
    """The node with every local $ref replaced by what it points at (the document has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = SPEC
            for key in node["$ref"].removeprefix("#/").split("/"):
                target = target[key]
            return resolved(target)
        return {key: resolved(value) for key, value in node.items()}
    if isinstance(node, list):
        return [resolved(item) for item in node]
    return node


def documented_response(path: str, method: str, status: int) -> dict[str, Any]:
    responses = SPEC["paths"][path][method.lower()]["responses"]
    response: dict[str, Any] = resolved(responses.get(str(status), responses["default"]))
    return response


def component_response(name: str) -> dict[str, Any]:
    response: dict[str, Any] = resolved(SPEC["components"]["responses"][name])
    return response


def assert_matches(response: requests.Response, documented: dict[str, Any]) -> None:
    """The body fits the documented schema and every required documented header is there."""
    assert response.headers["Content-Type"].startswith("application/json")
    schema = documented["content"]["application/json"]["schema"]
    OAS30Validator(schema, format_checker=OAS30Validator.FORMAT_CHECKER).validate(response.json())
    for name, header in documented.get("headers", {}).items():
        if not header.get("required"):
            continue
        assert name in response.headers, f"{name} missing"
        value: Any = response.headers[name]
        if header["schema"].get("type") == "integer":
            value = int(value)
        OAS30Validator(header["schema"]).validate(value)
