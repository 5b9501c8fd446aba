"""openapi/broker.yaml is a valid OpenAPI document and says what docs/spec.md says."""

from __future__ import annotations

import re
from typing import Any

from openapi_spec_validator import validate

from killb_broker.tokens import fingerprint
from tests.client.openapi_document import SPEC, component_response, documented_response, resolved


def test_document_is_valid_openapi() -> None:
    validate(SPEC)


def test_both_routes_are_get_only() -> None:
    assert {path: set(item) for path, item in SPEC["paths"].items()} == {
        "/v1/auth-headers": {"get"},
        "/v1/health": {"get"},
    }


def query_parameters() -> dict[str, Any]:
    parameters = resolved(SPEC["paths"]["/v1/auth-headers"]["get"]["parameters"])
    assert all(parameter["in"] == "query" for parameter in parameters)
    return {parameter["name"]: parameter for parameter in parameters}


def test_auth_headers_take_min_ttl_and_rejected_only() -> None:
    assert set(query_parameters()) == {"minTtl", "rejected"}


def test_min_ttl_is_whole_seconds_0_to_1800_default_300() -> None:
    parameter = query_parameters()["minTtl"]
    assert parameter["schema"] == {"type": "integer", "minimum": 0, "maximum": 1800, "default": 300}


def test_rejected_is_a_fingerprint_of_12_lowercase_hex_digits() -> None:
    parameter = query_parameters()["rejected"]
    assert parameter["required"] is False
    assert parameter["schema"] == {"type": "string", "pattern": "^[0-9a-f]{12}$"}
    assert re.fullmatch(parameter["schema"]["pattern"], fingerprint("any token"))


def test_health_describes_each_status() -> None:
    description = SPEC["paths"]["/v1/health"]["get"]["description"]
    statuses = resolved(SPEC["components"]["schemas"]["Health"])["properties"]["status"]["enum"]
    assert statuses == ["ok", "refreshing", "expired", "missing"]
    for status in statuses:
        assert f"- `{status}`:" in description


def test_an_event_that_is_not_a_rest_request_is_documented_as_a_400() -> None:
    assert "REST (v1) proxy event" in component_response("InvalidRequest")["description"]


def test_every_method_needs_a_sigv4_signature() -> None:
    scheme = SPEC["components"]["securitySchemes"]["sigv4"]
    assert SPEC["security"] == [{"sigv4": []}]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4"


def test_every_error_code_of_the_spec_is_documented_with_its_status() -> None:
    codes = {}
    for name in SPEC["components"]["responses"]:
        schema = component_response(name)["content"]["application/json"]["schema"]
        for part in schema.get("allOf", []):
            properties = part.get("properties", {})
            if "errorCode" in properties and "enum" in properties["errorCode"]:
                codes[properties["errorCode"]["enum"][0]] = properties["statusCode"]["enum"][0]
    assert codes == {
        "BROKER.0000": "500",
        "BROKER.0001": "400",
        "BROKER.0002": "403",
        "BROKER.0003": "503",
        "BROKER.0004": "404",
        "BROKER.0005": "405",
    }


def test_503_carries_retry_after_and_every_answer_cache_control() -> None:
    unavailable = documented_response("/v1/auth-headers", "GET", 503)
    assert unavailable["headers"]["Retry-After"]["required"] is True
    for path in SPEC["paths"]:
        for status in resolved(SPEC["paths"][path]["get"]["responses"]):
            if status != "default":
                documented = documented_response(path, "GET", int(status))
                assert documented["headers"]["Cache-Control"]["schema"]["enum"] == ["no-store"]


def test_health_always_carries_checked_at_which_may_be_null() -> None:
    health = resolved(SPEC["components"]["schemas"]["Health"])
    assert health["required"] == ["status", "expiresAt", "expiresIn", "checkedAt"]
    assert health["properties"]["checkedAt"]["nullable"] is True
    assert (
        health["properties"]["checkedAt"]["pattern"] == health["properties"]["expiresAt"]["pattern"]
    )


def test_auth_headers_carry_the_killb_base_url_only_when_known() -> None:
    answer = resolved(SPEC["components"]["schemas"]["AuthHeaders"])
    assert answer["properties"]["killbBaseUrl"]["type"] == "string"
    assert "killbBaseUrl" not in answer["required"]
