"""One simulated day of the whole system (bench/simulation.py, seeded): KillB outages and revoked
refresh tokens, the refresher on its schedule, a broker request every 30 s. The full week runs in
`make bench`."""

from __future__ import annotations

import io

import pytest

from bench.simulation import Report, Scenario, simulate
from killb_sandbox.pytest_plugin import SANDBOX_PASSWORD
from killb_sandbox.server import every_token_issued

# Two revocations and a 5% outage share in one day: every recovery path runs at least once.
DAY = Scenario(days=1, seed=3, revocations_per_day=2, outage_share=0.05)


@pytest.fixture(scope="module")
def day() -> tuple[Report, str]:
    log = io.StringIO()
    report = simulate(DAY, log)
    return report, log.getvalue()


def test_every_request_up_to_1500_seconds_gets_a_token_valid_that_long(
    day: tuple[Report, str],
) -> None:
    # Given a day with outages, When callers ask every 30 s, Then all with minTtl <= 1500 are served
    report, _ = day
    assert report.requests == 2870
    assert report.served_up_to_1500 == report.requests_up_to_1500 > 0


def test_the_day_had_outages_that_reached_killb_and_revocations(day: tuple[Report, str]) -> None:
    # Given the seeded plan, Then the faults and revocations really happened (the day is no idyll)
    report, _ = day
    assert report.outages > 0
    assert sum(report.faults_served.values()) > 0
    assert report.revocations == 2


def test_every_login_after_the_first_follows_a_refused_refresh_token(
    day: tuple[Report, str],
) -> None:
    # Given revocations and refresh answers lost to timeouts, Then each costs one login, no more
    report, _ = day
    assert report.logins == 1 + report.refresh_rejections
    assert report.refresh_rejections <= report.revocations + report.slow_answers_to_refresh


def test_no_secret_is_lost_and_a_quiet_run_leaves_a_token_killb_accepts(
    day: tuple[Report, str],
) -> None:
    # Given the whole day, Then the access-token secret never lost its token, and ends valid
    report, _ = day
    assert report.secret_always_valid_json
    assert report.final_token_valid


def test_secret_writes_stay_two_per_refresh_or_login(day: tuple[Report, str]) -> None:
    # Given the day's runs, Then each new token cost two writes (session, then access token)
    report, _ = day
    assert report.secret_writes == 2 * (report.refreshes + report.logins)


def test_the_day_logged_no_password_and_no_token(day: tuple[Report, str]) -> None:
    # Given every log line and metric of the day, Then no password or issued token is in them
    _, log = day
    assert "auth headers issued" in log
    leaked = [secret for secret in {SANDBOX_PASSWORD, *every_token_issued()} if secret in log]
    assert leaked == []
