"""GET /v1/health's states at their boundaries, with a controlled clock (no AWS, no network)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from killb_broker.broker import Broker, TokenSource
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
    return Broker(source).health(CALLER)


def token_expiring_in(seconds: int) -> str:
    return AccessToken(token="access-h", expires_at=NOW + seconds, api_key="k").to_secret_string()


@pytest.mark.parametrize(
    ("seconds_left", "status"),
    [(3600, "ok"), (301, "ok"), (300, "refreshing"), (1, "refreshing"), (0, "expired")],
)
def test_health_status_follows_the_seconds_left(seconds_left: int, status: str) -> None:
    assert health_with(token_expiring_in(seconds_left))["status"] == status


def test_health_reports_expiry_and_whole_seconds_left() -> None:
    assert health_with(token_expiring_in(1800), now=NOW + 0.5) == {
        "status": "ok",
        "expiresAt": "2026-11-28T01:30:00Z",
        "expiresIn": 1799,
    }


def test_expired_token_reports_no_negative_seconds() -> None:
    assert health_with(token_expiring_in(-600))["expiresIn"] == 0


@pytest.mark.parametrize("secret_string", ["", "placeholder", "{}", "[]", '{"accessToken": "x"}'])
def test_secret_without_a_usable_token_is_missing(secret_string: str) -> None:
    assert health_with(secret_string) == {"status": "missing", "expiresAt": None, "expiresIn": None}
