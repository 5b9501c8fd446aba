"""The refresher as deployed (tests/refresher_harness.py), for the tests that drive it."""

from tests.refresher_harness import (  # noqa: F401 - fixtures, found by name
    clock,
    logs_to_capsys,
    refresher,
    sandbox,
)
