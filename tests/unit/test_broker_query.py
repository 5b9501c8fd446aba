"""The query of GET /v1/auth-headers: minTtl in whole seconds 0..1800, rejected a fingerprint,
nothing else accepted; and the RFC 3339 expiry of the answer."""

from __future__ import annotations

import pytest

from killb_broker.broker import parse_query, rfc3339
from killb_broker.errors import InvalidRequest


def parse_min_ttl(query: dict[str, list[str]]) -> int:
    return parse_query(query).min_ttl


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


ARABIC_INDIC_DIGITS = "".join(chr(0x0660 + n) for n in range(10))


def test_no_rejected_fingerprint_is_none() -> None:
    assert parse_query({"minTtl": ["60"]}).rejected is None


def test_rejected_fingerprint_is_read_with_min_ttl() -> None:
    query = parse_query({"minTtl": ["60"], "rejected": ["0123456789ab"]})
    assert (query.min_ttl, query.rejected) == (60, "0123456789ab")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "0123456789a",
        "0123456789abc",
        "0123456789AB",
        "0123456789ag",
        ARABIC_INDIC_DIGITS + "ab",
    ],
)
def test_rejected_that_is_not_12_lowercase_hex_digits_is_refused(raw: str) -> None:
    with pytest.raises(InvalidRequest, match="rejected must be a token fingerprint"):
        parse_query({"rejected": [raw]})


def test_rejected_repeated_with_different_values_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="more than once"):
        parse_query({"rejected": ["0123456789ab", "ba9876543210"]})


def test_expiry_is_rfc3339_utc_in_whole_seconds_with_z() -> None:
    assert rfc3339(1_795_831_200) == "2026-11-28T02:00:00Z"


@pytest.mark.parametrize(
    ("unix_seconds", "written"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (-62_135_596_800, "0001-01-01T00:00:00Z"),
        (-(10**30), "0001-01-01T00:00:00Z"),
        (253_402_300_799, "9999-12-31T23:59:59Z"),
        (10**30, "9999-12-31T23:59:59Z"),
    ],
)
def test_expiry_beyond_what_rfc3339_can_write_is_the_nearest_it_can(
    unix_seconds: int, written: str
) -> None:
    assert rfc3339(unix_seconds) == written
