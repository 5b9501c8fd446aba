"""GET /v1/health's states at their boundaries, with a controlled clock (no AWS, no network)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from killb_broker.audit import AuditRecord
from killb_broker.broker import DEFAULT_MIN_TTL, Broker
from killb_broker.errors import TokenUnavailable
from killb_broker.store import access_token_to_json
from killb_broker.token_source import TokenSource
from killb_broker.tokens import AccessToken

NOW = 1_795_827_600
CALLER = "arn:aws:sts::123456789012:assumed-role/payments-api/i-0abc"


@dataclass
class FixedSecret:
    """A secret reader that always answers the same SecretString."""

    secret_string: str

    def get_secret_value(self, *, SecretId: str) -> dict[str, str]:  # noqa: N803
        return {"ARN": SecretId, "SecretString": self.secret_string}


def health_with(secret_string: str, now: float = NOW) -> dict[str, object]:
    source = TokenSource(FixedSecret(secret_string), "access-token", clock=lambda: now)
    return Broker(source).health(CALLER, AuditRecord())


def token_expiring_in(seconds: int) -> str:
    return access_token_to_json(
        AccessToken(token="access-h", expires_at=NOW + seconds, api_key="k")
    )


@pytest.mark.parametrize(
    ("seconds_left", "status"),
    [
        (3600, "ok"),
        (301, "ok"),
        (300, "refreshing"),
        (299, "refreshing"),
        (1, "refreshing"),
        (0, "expired"),
    ],
)
def test_health_status_follows_the_seconds_left(seconds_left: int, status: str) -> None:
    assert health_with(token_expiring_in(seconds_left))["status"] == status


@pytest.mark.parametrize("seconds_left", [299, 300, 301])
def test_health_says_ok_exactly_when_a_default_request_is_served_the_token(
    seconds_left: int,
) -> None:
    # Given a token with about the default minTtl (300 s) left, and no refresher
    secret_string = token_expiring_in(seconds_left)
    source = TokenSource(FixedSecret(secret_string), "access-token", clock=lambda: NOW)
    # When health is asked, and a default request asks for headers
    status = health_with(secret_string)["status"]
    try:
        source.lasting(DEFAULT_MIN_TTL)
        served = True
    except TokenUnavailable:
        served = False
    # Then "ok" and "served as it is" agree, at the boundary too
    assert (status == "ok") is served


def test_health_reports_expiry_and_whole_seconds_left() -> None:
    assert health_with(token_expiring_in(1800), now=NOW + 0.5) == {
        "status": "ok",
        "expiresAt": "2026-11-28T01:30:00Z",
        "expiresIn": 1799,
        "checkedAt": None,
    }


def test_expired_token_reports_no_negative_seconds() -> None:
    assert health_with(token_expiring_in(-600))["expiresIn"] == 0


MISSING = {"status": "missing", "expiresAt": None, "expiresIn": None, "checkedAt": None}


@pytest.mark.parametrize("secret_string", ["", "placeholder", "{}", "[]", '{"accessToken": "x"}'])
def test_secret_without_a_usable_token_is_missing(secret_string: str) -> None:
    assert health_with(secret_string) == MISSING


@pytest.mark.parametrize(
    "expires_at",
    [
        f"{NOW + 3600}.5",
        f"{NOW + 3600}.0",
        "1e20",
        f'"{NOW + 3600}"',
        "true",
        "null",
        str(NOW + 86_400 + 3600),
        str(10**30),
        "-1",
        str(-(10**30)),
    ],
)
def test_an_expiry_that_is_not_a_plausible_unix_time_is_missing(expires_at: str) -> None:
    # Given an access-token secret whose expiresAt no KillB answer could have produced
    secret_string = f'{{"accessToken": "access-h", "expiresAt": {expires_at}}}'
    # When health is asked / Then the token is not usable, and nothing fails on formatting it
    assert health_with(secret_string) == MISSING


def test_an_expiry_a_full_day_ahead_is_still_a_token() -> None:
    assert health_with(token_expiring_in(86_400))["status"] == "ok"


def test_an_expiry_far_in_the_past_is_expired() -> None:
    assert health_with(token_expiring_in(-NOW)) == {
        "status": "expired",
        "expiresAt": "1970-01-01T00:00:00Z",
        "expiresIn": 0,
        "checkedAt": None,
    }


@pytest.mark.parametrize(
    "token", ["", " access-h", "access-h ", "access\r\nX-Evil: 1", "access\u0000h", "accèss"]
)
def test_a_stored_token_a_header_cannot_carry_is_missing(token: str) -> None:
    secret_string = f'{{"accessToken": "{token}", "expiresAt": {NOW + 3600}}}'
    assert health_with(secret_string) == MISSING


@pytest.mark.parametrize("api_key", [" k", "k\r\nX-Evil: 1", "k\u0000", "kéy", 7])
def test_a_stored_api_key_a_header_cannot_carry_makes_the_token_missing(api_key: object) -> None:
    value = f'"{api_key}"' if isinstance(api_key, str) else str(api_key)
    secret_string = f'{{"accessToken": "access-h", "expiresAt": {NOW + 3600}, "apiKey": {value}}}'
    assert health_with(secret_string) == MISSING


def test_health_tells_when_killb_last_confirmed_the_token() -> None:
    # Given a token KillB confirmed ten minutes ago (the refresher wrote checkedAt)
    token = AccessToken(token="access-h", expires_at=NOW + 1800, checked_at=NOW - 600)
    # When health is asked / Then checkedAt is that moment in RFC 3339, like expiresAt
    assert health_with(access_token_to_json(token))["checkedAt"] == "2026-11-28T00:50:00Z"


def test_health_of_a_token_written_without_checked_at_says_null() -> None:
    assert health_with(token_expiring_in(1800))["checkedAt"] is None
