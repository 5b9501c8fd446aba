"""The Makefile's quick loop and build targets: `make check` needs no Docker and no `sam build`,
`make test` still runs all of it, and `make build` runs SAM from the venv with the venv's
python3.13 first on PATH. Read from `make -n` (what make would run), so nothing is built here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.support import ROOT

MAKE = shutil.which("make") or "make"
# A stamp that is out of date would make `make -n` list the venv's set-up as well: take it as done.
INSTALLED = ["-o", ".venv/bin/.installed", "-o", "clients/typescript/node_modules/.installed"]


def planned(*targets: str) -> list[str]:
    """The commands `make TARGETS` would run, one a line."""
    done = subprocess.run(  # noqa: S603 - make with fixed arguments
        [MAKE, "--no-print-directory", "-n", *INSTALLED, *targets],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def test_check_runs_lint_types_bandit_and_pytest() -> None:
    # Given the quick loop
    # When make says what `make check` runs
    commands = planned("check")

    # Then it is ruff, mypy, bandit and pytest
    assert any(re.search(r"\bruff check\b", command) for command in commands)
    assert any(re.search(r"\bruff format --check\b", command) for command in commands)
    assert any(command.endswith("/mypy") for command in commands)
    assert any(re.search(r"\bbandit\b", command) for command in commands)
    assert any(re.search(r"-m pytest\b", command) for command in commands)


@pytest.mark.parametrize("word", ["docker", "samlocal", "sam build", "sam local", "npm", "apt-get"])
def test_check_needs_no_docker_sam_build_or_node(word: str) -> None:
    assert [command for command in planned("check") if word in command] == []


def test_test_still_runs_everything_check_runs() -> None:
    assert set(planned("check")) <= set(planned("test"))


def test_build_runs_sam_build_from_the_venv() -> None:
    assert planned("build") == [".venv/bin/sam build --cached --parallel"]


def test_make_puts_the_venvs_python313_first_on_path_for_sam() -> None:
    # Given a shell whose PATH starts with somewhere else (a pyenv shim directory, say)
    shims = "/nonexistent/pyenv/shims"
    environment = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}

    # When make runs a recipe
    done = subprocess.run(  # noqa: S603 - make with fixed arguments
        [MAKE, "-s", "--no-print-directory", "--eval", "print-path: ; @echo $$PATH", "print-path"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    # Then the venv's bin directory, which holds its python3.13, comes first
    assert done.stdout.split(os.pathsep)[0] == str(ROOT / ".venv" / "bin")
