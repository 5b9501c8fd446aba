"""pytest fixtures for a started KillB sandbox with one account (registered in tests/conftest.py).

The values are fake on purpose but distinctive, so a test can search logs for any of them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from killb_sandbox.server import Account, KillBSandbox

SANDBOX_EMAIL = "ops@example.test"
SANDBOX_PASSWORD = "pw-Sandbox-7f3a9c"  # noqa: S105 - a fake account's password
SANDBOX_API_KEY = "ak-Sandbox-51d2e8"


@pytest.fixture
def killb_sandbox() -> Iterator[KillBSandbox]:
    """A started sandbox with the account SANDBOX_EMAIL / SANDBOX_PASSWORD and no API key."""
    with KillBSandbox({SANDBOX_EMAIL: Account(password=SANDBOX_PASSWORD)}) as sandbox:
        yield sandbox


@pytest.fixture
def killb_sandbox_with_api_key() -> Iterator[KillBSandbox]:
    """The same account, requiring x-api-key: SANDBOX_API_KEY on every request."""
    account = Account(password=SANDBOX_PASSWORD, api_key=SANDBOX_API_KEY)
    with KillBSandbox({SANDBOX_EMAIL: account}) as sandbox:
        yield sandbox
