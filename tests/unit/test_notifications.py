"""The hourly bound on "Refresh Failed" and the recovery that follows it, kept in the refresher's
memory (killb_broker.notifications.FailingRuns): one behaviour per test, no AWS, no network."""

from __future__ import annotations

from killb_broker.notifications import FailingRuns
from killb_broker.policy import DetailType, Notice

NOW = 1_800_000_000


def failed(reason: str = "KillB unavailable: 503") -> Notice:
    return Notice(DetailType.REFRESH_FAILED, reason, "0123456789ab", NOW + 600)


def recovered(reason: str = "logged in") -> Notice:
    return Notice(DetailType.REFRESH_RECOVERED, reason, "ba9876543210", NOW + 3600)


def sent(failing: FailingRuns, notices: list[Notice], now: float) -> list[Notice]:
    """What the Notifier would put, every notice taken by EventBridge."""
    selected = failing.select(notices, now)
    for notice in selected:
        failing.told(notice, now)
    return selected


def test_failures_every_5_minutes_for_2_hours_are_told_twice() -> None:
    # Given a process whose runs fail every 5 minutes for two hours
    failing = FailingRuns()

    # When each run's Refresh Failed comes to it
    told = [minute for minute in range(0, 120, 5) if sent(failing, [failed()], NOW + minute * 60)]

    # Then operators are told at once, and an hour later
    assert told == [0, 60]


def test_a_failure_eventbridge_did_not_take_is_told_by_the_next_failing_run() -> None:
    # Given a Refresh Failed selected but never taken by EventBridge
    failing = FailingRuns()
    failing.select([failed()], NOW)

    # When the next run fails 5 minutes later, Then its Refresh Failed goes out
    assert sent(failing, [failed()], NOW + 300) == [failed()]


def test_the_first_success_after_a_told_failure_is_told_with_how_long_runs_failed() -> None:
    # Given runs failing since 900 s ago, told then and again skipped since
    failing = FailingRuns()
    sent(failing, [failed()], NOW - 900)
    sent(failing, [failed()], NOW - 600)

    # When a run logs in
    told = sent(failing, [recovered()], NOW)

    # Then one Refresh Recovered names the new token and how long runs had failed
    assert told == [
        Notice(
            DetailType.REFRESH_RECOVERED,
            "logged in; runs had failed for 900 s",
            "ba9876543210",
            NOW + 3600,
        )
    ]


def test_a_success_with_no_failure_told_tells_nothing() -> None:
    # Given a process that saw failing runs but could tell none of them
    failing = FailingRuns()
    failing.select([failed()], NOW - 300)

    # When a run refreshes, Then nobody is told of a recovery
    assert sent(failing, [recovered("refreshed")], NOW) == []


def test_a_recovery_is_told_once_and_the_next_failure_at_once() -> None:
    # Given a told failure and the recovery that followed it
    failing = FailingRuns()
    sent(failing, [failed()], NOW)
    sent(failing, [recovered()], NOW + 300)

    # When the next runs succeed, then fail, within the hour
    again = sent(failing, [recovered("refreshed")], NOW + 600)
    failed_again = sent(failing, [failed()], NOW + 900)

    # Then the success tells nothing more, and the new failure is told at once
    assert again == []
    assert failed_again == [failed()]


def test_other_notices_always_go_out() -> None:
    # Given a failure told a minute ago
    failing = FailingRuns()
    sent(failing, [failed()], NOW)
    credentials_rejected = Notice(DetailType.CREDENTIALS_REJECTED, "login rejected", None, None)

    # When a run's notices are a Credentials Rejected and another Refresh Failed
    told = sent(failing, [credentials_rejected, failed()], NOW + 60)

    # Then the Credentials Rejected goes out, the Refresh Failed does not
    assert told == [credentials_rejected]
