"""Under sam local the refresher's KillB client takes the http://host.docker.internal:PORT its
configuration accepted; anywhere else the client keeps to https (or loopback)."""

from __future__ import annotations

import pytest

from killb_broker.killb_api import KillBAuthClient
from tests.support import load_function

DOCKER_HOST_URL = "http://host.docker.internal:4010"


def test_the_client_refuses_the_docker_host_unless_allowed() -> None:
    with pytest.raises(ValueError, match="https"):
        KillBAuthClient(DOCKER_HOST_URL)


def test_the_client_takes_the_docker_host_when_allowed() -> None:
    assert KillBAuthClient(DOCKER_HOST_URL, allow_docker_host=True).base_url == DOCKER_HOST_URL


def test_the_refresher_under_sam_local_connects_to_the_docker_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the settings local/sam-env.json gives the refresher, inside SAM's container
    monkeypatch.setenv("AWS_SAM_LOCAL", "true")
    monkeypatch.setenv("KILLB_BASE_URL", DOCKER_HOST_URL)
    for name in ("CREDENTIALS_SECRET_ID", "SESSION_SECRET_ID", "ACCESS_TOKEN_SECRET_ID"):
        monkeypatch.setenv(name, f"killb-local/{name.lower()}")

    # When the handler builds its KillB client for a run
    client = load_function("refresher").connect_killb(None)

    # Then the client talks to the sandbox on the host
    assert isinstance(client, KillBAuthClient)
    assert client.base_url == DOCKER_HOST_URL
