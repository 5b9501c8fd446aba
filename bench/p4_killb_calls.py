"""P4: KillB auth calls over a simulated week with the default settings (5-minute schedule,
1800 s refresh window, one-hour tokens) and no faults: one login, then a refresh every 30 min.
Then again with the token check counted (GET /api/v2/auth/me): at the default
TOKEN_CHECK_SECONDS it never comes due, and at 900 s once per token."""

from __future__ import annotations

from dataclasses import replace

from bench.simulation import Scenario, simulate

GOAL = 340
GOAL_WITH_CHECKS = 680
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
    for token_check in (None, 900):
        checked = simulate(replace(QUIET_WEEK, token_check=token_check))
        with_checks = checked.logins + checked.refreshes + checked.token_checks
        setting = "default (1800)" if token_check is None else str(token_check)
        print(
            f"P4 with the token check, TOKEN_CHECK_SECONDS={setting}: {with_checks} KillB calls "
            f"({checked.token_checks} checks), logins: {checked.logins} "
            f"(goal <= {GOAL_WITH_CHECKS}, 1)"
        )


if __name__ == "__main__":
    main()
