"""The query of GET /v1/auth-headers: minTtl in whole seconds 0..1800, nothing else accepted."""

from __future__ import annotations

import pytest

from killb_broker.broker import parse_min_ttl, rfc3339
from killb_broker.errors import InvalidRequest


def test_min_ttl_defaults_to_300_seconds() -> None:
    assert parse_min_ttl({}) == 300


@pytest.mark.parametrize(("raw", "seconds"), [("0", 0), ("900", 900), ("1800", 1800)])
def test_min_ttl_accepts_whole_seconds_in_range(raw: str, seconds: int) -> None:
    assert parse_min_ttl({"minTtl": [raw]}) == seconds


def test_min_ttl_repeated_with_the_same_value_is_that_value() -> None:
    assert parse_min_ttl({"minTtl": ["60", "60"]}) == 60


@pytest.mark.parametrize(
    "raw", ["1.5", "-1", "1801", "abc", "", " 60", "+60", "1e3", "٣٠٠", "9" * 5000]
)
def test_min_ttl_that_is_not_whole_seconds_in_range_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidRequest, match="minTtl must be a whole number"):
        parse_min_ttl({"minTtl": [raw]})


def test_min_ttl_repeated_with_different_values_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="more than once"):
        parse_min_ttl({"minTtl": ["60", "600"]})


def test_unknown_query_parameter_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="unknown query parameter"):
        parse_min_ttl({"minTtl": ["60"], "mintTL": ["60"]})


def test_query_parameter_names_are_case_sensitive() -> None:
    with pytest.raises(InvalidRequest, match="unknown query parameter"):
        parse_min_ttl({"minttl": ["60"]})


def test_expiry_is_rfc3339_utc_in_whole_seconds_with_z() -> None:
    assert rfc3339(1_795_831_200) == "2026-11-28T02:00:00Z"
