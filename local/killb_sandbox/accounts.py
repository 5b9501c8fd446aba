"""The sandbox's one account, shared by the tests, the demo, the local stack and the benchmarks.

The values are fake on purpose but distinctive, so a test can search logs for any of them.
"""

SANDBOX_EMAIL = "ops@example.test"
SANDBOX_PASSWORD = "pw-Sandbox-7f3a9c"  # noqa: S105 - a fake account's password
SANDBOX_API_KEY = "ak-Sandbox-51d2e8"
