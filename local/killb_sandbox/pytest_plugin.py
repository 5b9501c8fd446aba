"""pytest fixtures for a started KillB sandbox with the account of accounts.py (registered in
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from killb_sandbox.accounts import SANDBOX_API_KEY, SANDBOX_EMAIL, SANDBOX_PASSWORD
from killb_sandbox.server import Account, KillBSandbox


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
