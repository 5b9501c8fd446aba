"""The evidence tests reuse the integration tests' refresher world (moto, sandbox, clock)."""

from tests.integration.test_refresher import (  # noqa: F401 - fixtures, found by name
    clock,
    logs_to_capsys,
    refresher,
    sandbox,
)
