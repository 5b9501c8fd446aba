"""`make demo`'s arguments and settings: help without a run, one clear line for a setting it
cannot use, and never a password read back."""

from __future__ import annotations

import pytest

from tests.local.runner import run_tool

PASSWORD_IN_URL = "pw-InUrl-93b1"


def test_help_prints_usage_and_runs_nothing() -> None:
    done = run_tool("local/demo.py", "--help")

    assert done.returncode == 0
    assert "usage:" in done.stdout
    assert "KILLB_BASE_URL" in done.stdout
    assert "[1]" not in done.stdout  # no step of the demo ran


def test_an_unknown_argument_is_refused() -> None:
    done = run_tool("local/demo.py", "--bogus")

    assert done.returncode == 2
    assert "unrecognized arguments: --bogus" in done.stderr


def test_a_password_in_killb_base_url_is_refused_and_never_shown() -> None:
    # Given a KillB URL carrying user info
    url = f"https://ops:{PASSWORD_IN_URL}@killb.example.test"

    # When the demo starts with it
    done = run_tool(
        "local/demo.py", KILLB_BASE_URL=url, KILLB_EMAIL="ops@example.test", KILLB_PASSWORD="x"
    )

    # Then it stops at once with one line that names the problem, not the URL
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "demo FAILED: KILLB_BASE_URL must not carry user info (user:password@); put no secret "
        "in a URL"
    ]
    assert PASSWORD_IN_URL not in done.stdout + done.stderr


@pytest.mark.parametrize("url", ["killb.example.test", "ftp://killb.example.test", "https://[::1"])
def test_a_malformed_killb_base_url_ends_in_one_line_not_a_traceback(url: str) -> None:
    done = run_tool(
        "local/demo.py", KILLB_BASE_URL=url, KILLB_EMAIL="ops@example.test", KILLB_PASSWORD="x"
    )

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("demo FAILED: KILLB_BASE_URL must")


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"KILLB_EMAIL": "ops@example.test"}, "KILLB_EMAIL set"),
        ({"KILLB_PASSWORD": "x"}, "KILLB_PASSWORD set"),
        (
            {"KILLB_EMAIL": "ops@example.test", "KILLB_PASSWORD": "x"},
            "KILLB_EMAIL and KILLB_PASSWORD",
        ),
    ],
)
def test_credentials_without_killb_base_url_are_an_error_saying_so(
    settings: dict[str, str], named: str
) -> None:
    done = run_tool("local/demo.py", **settings)

    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert named in line
    assert "without KILLB_BASE_URL" in line


def test_killb_base_url_without_credentials_is_an_error_saying_so() -> None:
    done = run_tool("local/demo.py", KILLB_BASE_URL="https://killb.example.test")

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "demo FAILED: KILLB_BASE_URL is set: KILLB_EMAIL and KILLB_PASSWORD must be too"
    ]
