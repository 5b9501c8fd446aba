"""P4: KillB auth calls over a simulated week with the default settings (5-minute schedule,
1800 s refresh window, one-hour tokens) and no faults: one login, then a refresh every 30 min."""

from __future__ import annotations

from bench.simulation import Scenario, simulate

GOAL = 340
# The client's default timeout (KILLB_TIMEOUT_SECONDS): a busy machine must not fake an outage.
QUIET_WEEK = Scenario(
    days=7,
    request_every=None,
    outage_share=0,
    refresh_revocations_per_day=0,
    token_revocations_per_day=0,
    killb_timeout=10,
)


def main() -> None:
    report = simulate(QUIET_WEEK)
    calls = report.logins + report.refreshes
    print(
        f"quiet week: {report.refresher_runs} scheduled runs, {report.logins} login(s), "
        f"{report.refreshes} refreshes, {report.killb_requests} HTTP requests"
    )
    print(f"P4 KillB auth calls per week: {calls}, logins: {report.logins} (goal <= {GOAL}, 1)")


if __name__ == "__main__":
    main()
