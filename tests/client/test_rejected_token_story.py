"""The whole rejected-token story over real HTTP: KillB (the local sandbox) revokes the live token,
a caller's KillB call with BrokerAuth gets 401, BrokerAuth reports it, the broker (the real
handler behind the local API Gateway, which checks the caller's signature) invokes the refresher
through the local Lambda endpoint as a deployed broker invokes Lambda, and the retried call gets
200.

The world is local/local_stack.py's: moto's server, both handlers loaded as a cold start would,
settings from the environment only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests
from local_stack import LocalStack

from killb_broker_client import BrokerAuth, fingerprint
from killb_sandbox.server import KillBSandbox
from tests.support import ROOT

REFRESHER_RUNS_AT_START = 1


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    with LocalStack(allowed_principals="arn:aws:iam::123456789012:role/payments-api") as stack:
        yield stack


def sandbox_of(stack: LocalStack) -> KillBSandbox:
    assert stack.sandbox is not None
    return stack.sandbox


def test_a_token_killb_revoked_is_replaced_and_the_callers_call_succeeds(
    stack: LocalStack,
) -> None:
    # Given a caller whose KillB calls succeed with the broker's token
    sandbox = sandbox_of(stack)
    users = f"{sandbox.base_url}/api/v2/users"
    with requests.Session() as session:
        session.auth = BrokerAuth(stack.broker_url)
        assert session.get(users, timeout=10).status_code == 200
        (live,) = sandbox.issued_access_tokens()

        # When KillB revokes that token early, and the caller calls again
        sandbox.revoke(live)
        response = session.get(users, timeout=10)

    # Then the call got KillB's 401 first, the report made the broker invoke the refresher for
    # that token, which refreshed once, and the retry with the new token got 200
    assert response.status_code == 200
    assert [answer.status_code for answer in response.history] == [401]
    assert stack.refresher_payloads()[REFRESHER_RUNS_AT_START:] == [
        {"force": True, "rejected": fingerprint(live)}
    ]
    assert (sandbox.count("login"), sandbox.count("refresh")) == (1, 1)
    assert sandbox.count("users") == 3
    new = response.request.headers["Authorization"].removeprefix("Bearer ")
    assert new != live
    assert sandbox.is_valid_access_token(new)


def test_calls_after_the_replacement_use_the_new_token_without_another_refresh(
    stack: LocalStack,
) -> None:
    sandbox = sandbox_of(stack)
    users = f"{sandbox.base_url}/api/v2/users"
    with requests.Session() as session:
        session.auth = BrokerAuth(stack.broker_url)
        session.get(users, timeout=10)
        sandbox.revoke(sandbox.issued_access_tokens()[0])
        session.get(users, timeout=10)

        # When the caller goes on calling KillB
        later = [session.get(users, timeout=10).status_code for _ in range(3)]

    # Then each call succeeds at once, and KillB saw no further refresh or login
    assert later == [200] * 3
    assert (sandbox.count("login"), sandbox.count("refresh")) == (1, 1)
    assert len(stack.refresher_payloads()) == REFRESHER_RUNS_AT_START + 1


def test_the_cli_reporting_the_token_in_hand_gets_another_token(stack: LocalStack) -> None:
    # Given the token a caller holds
    held = BrokerAuth(stack.broker_url).headers()["Authorization"].removeprefix("Bearer ")

    # When `killb-broker headers --rejected <its fingerprint>` runs with the caller's environment
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("AWS_")},
        **stack.caller_environment(),
        "PYTHONPATH": str(ROOT / "clients" / "python"),
    }
    done = subprocess.run(  # noqa: S603 - our own CLI, no shell
        [sys.executable, "-m", "killb_broker_client", "headers", "--rejected", fingerprint(held)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then it printed another token, which KillB accepts, and the refresher ran for that report
    assert done.returncode == 0, done.stderr
    new = done.stdout.split('"Bearer ', 1)[1].split('"', 1)[0]
    assert new != held
    assert sandbox_of(stack).is_valid_access_token(new)
    assert stack.refresher_payloads()[-1] == {"force": True, "rejected": fingerprint(held)}
