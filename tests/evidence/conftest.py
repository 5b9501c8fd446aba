"""The evidence tests drive the refresher as deployed (tests/refresher_harness.py)."""

import pytest

from tests.refresher_harness import (  # noqa: F401 - fixtures, found by name
    clock,
    refresher,
    sandbox,
    send_logger_to_capsys,
)


@pytest.fixture(autouse=True)
def logs_to_capsys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every evidence test reads the shared Logger's lines from its captured output."""
    send_logger_to_capsys(monkeypatch)
