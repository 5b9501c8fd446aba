"""`pip install ./clients/python` builds the caller client (the `killb-broker-client`
distribution) without writing into its source folder, and without the broker's own package."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"


def tree(root: Path) -> set[str]:
    return {
        str(path.relative_to(root)) for path in root.rglob("*") if "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str], set[str]]:
    """A copy of the client's folder, its files before and after a pip build, and the wheel."""
    assert importlib.util.find_spec("flit_core"), (
        "flit_core (the client's build backend) is missing: requirements/dev.txt installs it"
    )
    work = tmp_path_factory.mktemp("packaging")
    source = work / "python"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("__pycache__"))
    before = tree(source)
    # The backend from this environment and no index: the test needs no network.
    subprocess.run(  # noqa: S603 - fixed argv
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            str(source),
            "--wheel-dir",
            str(work / "dist"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = (work / "dist").glob("*.whl")
    return wheel, before, tree(source)


def test_building_the_client_leaves_its_folder_unchanged(
    built: tuple[Path, set[str], set[str]],
) -> None:
    # Given a pip build of clients/python
    _wheel, before, after = built

    # Then no build/, egg-info or other file was left among the client's files
    assert after == before


def test_the_wheel_holds_the_client_and_its_command_but_not_the_broker(
    built: tuple[Path, set[str], set[str]],
) -> None:
    wheel, _before, _after = built

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [name for name in names if name.endswith("entry_points.txt")]
        commands = archive.read(entry_points).decode()

    packages = {name.split("/", 1)[0] for name in names if "/" in name}
    assert "killb_broker_client" in packages
    assert "killb_broker" not in packages
    assert "killb_broker_client/cli.py" in names
    assert "killb-broker=killb_broker_client.cli:main" in commands.replace(" ", "")


def test_the_wheel_requires_aiohttp_and_offers_the_killb_sdk_extra(
    built: tuple[Path, set[str], set[str]],
) -> None:
    # Given the built wheel's metadata
    wheel, _before, _after = built
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        requires = [
            line.removeprefix("Requires-Dist: ")
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist: ")
        ]

    # Then the proxy's aiohttp is a plain dependency, and the SDK comes pinned with its extra
    assert any(line.startswith("aiohttp>=") for line in requires)
    assert 'killb-sdk-python==1.0.4 ; extra == "killb-sdk"' in requires
