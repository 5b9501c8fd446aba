"""The KillB sandbox's command line started from the repo root, as `python local/killb_sandbox`."""

from __future__ import annotations

from tests.local.runner import run_tool


def test_help_works_from_the_repo_root_without_pythonpath() -> None:
    done = run_tool("local/killb_sandbox", "--help")

    assert done.returncode == 0
    assert "--allow-non-loopback" in done.stdout


def test_a_host_beyond_loopback_needs_allow_non_loopback() -> None:
    done = run_tool(
        "local/killb_sandbox", "--port", "0", "--host", "192.0.2.10",
        "--email", "e", "--password", "p",
    )  # fmt: skip

    assert done.returncode == 2
    assert "unless --allow-non-loopback" in done.stderr
