"""What the KillB auth client accepts at construction, and what it shows of itself (no network)."""

from __future__ import annotations

import pytest

from killb_broker.killb_api import KillBAuthClient


@pytest.mark.parametrize(
    "base_url",
    [
        "http://teste-94u93qnn.uc.gateway.dev",
        "http://killb.app/",
        "http://10.0.0.5:8080",
        "ftp://killb.app",
        "killb.app",
        "https://user:pw@killb.app",
    ],
)
def test_a_base_url_that_is_not_https_or_loopback_is_refused(base_url: str) -> None:
    with pytest.raises(ValueError, match=r"^must"):
        KillBAuthClient(base_url)


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"],
)
def test_plain_http_is_allowed_to_a_loopback_host(base_url: str) -> None:
    with KillBAuthClient(base_url) as client:
        assert client.base_url == base_url


def test_the_base_url_loses_its_trailing_slash() -> None:
    with KillBAuthClient("https://killb.app/") as client:
        assert client.base_url == "https://killb.app"


def test_the_repr_shows_no_api_key() -> None:
    with KillBAuthClient("https://killb.app", api_key="ak-Secret-3e9f10") as client:
        shown = repr(client)

    assert "ak-Secret-3e9f10" not in shown
    assert "api_key=set" in shown
