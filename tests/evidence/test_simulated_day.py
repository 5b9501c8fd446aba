"""One simulated day of the whole system (bench/simulation.py, seeded): KillB outages, revoked
refresh tokens and access tokens KillB refuses early, the refresh policy on its schedule, a caller
request every 30 s. The day runs twice over the same plan: callers that report a token KillB
refused, and callers that keep it. The full week runs in `make bench`."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest

from bench.simulation import Report, Scenario, compare
from killb_sandbox.accounts import SANDBOX_PASSWORD
from killb_sandbox.server import every_token_issued

# Two passes over a simulated day take about 15 s on a quiet machine; a busy one may need more.
pytestmark = pytest.mark.timeout(300)

# Two refresh-token revocations, three early access-token revocations and a 5% outage share in
# one day: every recovery path runs at least once.
DAY = Scenario(
    days=1, seed=3, refresh_revocations_per_day=2, token_revocations_per_day=3, outage_share=0.05
)


@dataclass(frozen=True)
class Day:
    reporting: Report  # callers that report a refused token and retry once
    keeping: Report  # callers that keep the token until the schedule replaces it
    log: str


@pytest.fixture(scope="module")
def day() -> Day:
    log = io.StringIO()
    reporting, keeping = compare(DAY, log)
    return Day(reporting, keeping, log.getvalue())


def test_every_request_up_to_1500_seconds_gets_a_token_killb_accepts_that_long(day: Day) -> None:
    # Given a day with outages and revocations, When callers that report ask every 30 s,
    # Then all with minTtl <= 1500 are served with a token KillB accepts
    report = day.reporting
    assert report.requests == 2870
    assert report.served_up_to_1500 == report.requests_up_to_1500 > 0
    assert report.refused_by_killb == 0


def test_the_day_had_outages_that_reached_killb_and_revocations(day: Day) -> None:
    # Given the seeded plan, Then the faults and revocations really happened (the day is no idyll)
    for report in (day.reporting, day.keeping):
        assert report.outages > 0
        assert sum(report.faults_served.values()) > 0
        assert report.revocations == 2
        assert report.token_revocations == 3


def test_callers_that_keep_a_refused_token_fail_until_the_schedule_replaces_it(day: Day) -> None:
    # Given the same day, When callers keep the token KillB refused, Then requests fail for it
    # (the revocations bite) and fewer are served than by callers that report
    assert day.keeping.rejected_reports == 0
    assert day.keeping.refused_by_killb > 0
    assert day.keeping.served < day.reporting.served


def test_each_early_revocation_costs_one_report_and_one_refresh_not_a_storm(day: Day) -> None:
    # Given three revoked access tokens and callers that report, Then each caused one report
    # and one refresh: the first report replaces the token, so later callers never see it
    report = day.reporting
    assert report.rejected_reports == report.token_revocations
    assert report.rejected_refresh_attempts == report.rejected_refreshes == report.token_revocations
    assert report.rejected_attempts_within_a_minute == 0
    assert report.forced_runs >= report.rejected_refreshes


def test_every_login_after_the_first_follows_a_refused_refresh_token(day: Day) -> None:
    # Given revocations and refresh answers lost to timeouts, Then a login follows only a refresh
    # token KillB refused, and KillB refused only revoked ones or ones an earlier answer spent
    for report in (day.reporting, day.keeping):
        assert 1 <= report.logins <= 1 + len(report.refused_refresh_tokens)
        not_spent_before = len(report.refused_refresh_tokens) - report.lost_refresh_answers
        assert not_spent_before <= report.revocations


def test_no_secret_is_lost_and_a_quiet_run_leaves_a_token_killb_accepts(day: Day) -> None:
    # Given the whole day, Then the access-token secret never lost its token, and ends valid
    for report in (day.reporting, day.keeping):
        assert report.secret_always_valid_json
        assert report.final_token_valid


def test_secret_writes_stay_two_per_refresh_or_login(day: Day) -> None:
    # Given the day's runs, Then each new token cost two writes (session, then access token),
    # and the notices of failing runs (at most one an hour) none
    for report in (day.reporting, day.keeping):
        assert report.secret_writes == 2 * (report.refreshes + report.logins)
        assert report.failure_notices <= 24


def test_the_day_logged_no_password_and_no_token(day: Day) -> None:
    # Given every log line of the day (the audit of each token handed out among them),
    # Then no password or issued token is in them
    issued = day.reporting.issued_fingerprints | day.keeping.issued_fingerprints
    assert any(token_fingerprint in day.log for token_fingerprint in issued)
    leaked = [secret for secret in {SANDBOX_PASSWORD, *every_token_issued()} if secret in day.log]
    assert leaked == []
