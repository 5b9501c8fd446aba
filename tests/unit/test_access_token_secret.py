"""The access-token secret's JSON (killb_broker.store): what the refresher writes is what the
broker reads, and a value written by an older refresher, or by hand, still reads safely."""

from __future__ import annotations

import json

import pytest

from killb_broker.store import access_token_from_json, access_token_to_json
from killb_broker.tokens import AccessToken

EXPIRES_AT = 1_795_831_200
FULL = AccessToken(
    token="access-1",
    expires_at=EXPIRES_AT,
    api_key="key-1",
    base_url="https://killb.app",
    checked_at=EXPIRES_AT - 3600,
)


def test_a_token_with_every_field_reads_back_as_written() -> None:
    assert access_token_from_json(access_token_to_json(FULL)) == FULL


def test_the_json_names_the_fields_the_contract_names() -> None:
    assert json.loads(access_token_to_json(FULL)) == {
        "accessToken": "access-1",
        "expiresAt": EXPIRES_AT,
        "apiKey": "key-1",
        "baseUrl": "https://killb.app",
        "checkedAt": EXPIRES_AT - 3600,
    }


def test_optional_fields_that_are_unknown_are_left_out() -> None:
    token = AccessToken(token="access-1", expires_at=EXPIRES_AT)
    assert json.loads(access_token_to_json(token)) == {
        "accessToken": "access-1",
        "expiresAt": EXPIRES_AT,
    }


def test_a_value_an_older_refresher_wrote_reads_without_base_url_or_checked_at() -> None:
    value = json.dumps({"accessToken": "access-1", "expiresAt": EXPIRES_AT, "apiKey": "key-1"})
    assert access_token_from_json(value) == AccessToken("access-1", EXPIRES_AT, "key-1")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("baseUrl", ""),
        ("baseUrl", 7),
        ("baseUrl", "https://killb.app\r\nX-Evil: 1"),
        ("checkedAt", "yesterday"),
        ("checkedAt", 1.5),
        ("checkedAt", -1),
        ("checkedAt", True),
    ],
)
def test_a_malformed_base_url_or_checked_at_is_dropped_and_the_token_kept(
    field: str, value: object
) -> None:
    # Given a value whose token is good but whose optional, non-secret field is not
    stored = {"accessToken": "access-1", "expiresAt": EXPIRES_AT, field: value}
    # When it is read / Then the token is there, and the field is unknown rather than wrong
    token = access_token_from_json(json.dumps(stored))
    assert token == AccessToken("access-1", EXPIRES_AT)


@pytest.mark.parametrize("secret_string", [None, "", "placeholder", "{}", "[]", "null"])
def test_a_placeholder_is_no_token(secret_string: str | None) -> None:
    assert access_token_from_json(secret_string) is None
