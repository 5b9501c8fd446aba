"""`pip install ./clients/python` builds the caller client (the `killb-broker-client`
distribution) without writing into its source folder, and without the broker's own package; a
fresh virtualenv gets a working `killb-broker`; the Lambda layer carries none of the client."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from broker_server import BrokerServer

from tests.client.scripted_broker import ACCESS_TOKEN
from tests.template.stack import source_template

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "python"


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


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv into which `pip install ./clients/python` put the client and its
    dependencies, from the package index as a user's machine would get them."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)  # noqa: S603
    subprocess.run(  # noqa: S603 - fixed argv
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(CLIENT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return venv


@pytest.mark.timeout(420)
def test_pip_install_gives_a_killb_broker_command_with_help(installed: Path) -> None:
    # Given a fresh virtualenv with the client pip-installed
    # When its killb-broker command is asked for help
    completed = subprocess.run(  # noqa: S603 - fixed argv
        [str(installed / "bin" / "killb-broker"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then it answers, naming its commands
    assert (completed.returncode, completed.stderr) == (0, "")
    assert "headers" in completed.stdout
    assert "health" in completed.stdout


@pytest.mark.timeout(420)
def test_the_installed_command_fetches_headers_without_the_brokers_package(
    installed: Path, broker_api: BrokerServer
) -> None:
    # Given the pip-installed client, where the broker's own package is not importable
    python = str(installed / "bin" / "python")
    probe = subprocess.run(  # noqa: S603 - fixed argv
        [python, "-c", "import killb_broker"], capture_output=True, timeout=60, check=False
    )
    assert probe.returncode != 0

    # When its killb-broker command asks a broker for headers
    completed = subprocess.run(  # noqa: S603 - fixed argv
        [str(installed / "bin" / "killb-broker"), "headers", "--url", broker_api.base_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then it prints them
    assert (completed.returncode, completed.stderr) == (0, "")
    assert json.loads(completed.stdout)["Authorization"] == f"Bearer {ACCESS_TOKEN}"


def layer_folders() -> dict[str, Path]:
    """Each layer of template.yaml, by logical id: its ContentUri folder."""
    return {
        name: ROOT / resource["Properties"]["ContentUri"]
        for name, resource in source_template()["Resources"].items()
        if resource["Type"] == "AWS::Serverless::LayerVersion"
    }


def built_layer(name: str, content: Path, work: Path) -> Path:
    """The layer as `sam build` left it (CI runs it before the tests), else its files laid out
    as `sam build` lays them out for a python BuildMethod: the ContentUri folder under python/
    (its requirements.txt is checked separately: pip adds only what it names)."""
    built = ROOT / ".aws-sam" / "build" / name
    if built.is_dir():
        return built
    shutil.copytree(content, work / "python", ignore=shutil.ignore_patterns("__pycache__"))
    return work


def test_the_built_lambda_layer_holds_no_caller_client(tmp_path: Path) -> None:
    # Given each layer of the template, built
    for name, content in layer_folders().items():
        layer = built_layer(name, content, tmp_path / name)

        # Then no file of it is the client, its metadata, or code that imports it
        files = [path for path in layer.rglob("*") if "__pycache__" not in path.parts]
        assert files, f"{name} is empty"
        assert not [p for p in files if p.name.startswith("killb_broker_client")]
        assert not [
            p for p in files if p.suffix == ".py" and b"killb_broker_client" in p.read_bytes()
        ]


def test_the_layers_source_is_no_python_project_and_asks_pip_for_no_client() -> None:
    for content in layer_folders().values():
        # No build file that would make its folder a package of its own
        assert not (content / "pyproject.toml").exists()
        assert not (content / "setup.py").exists()
        # And its requirements name neither the client nor a local folder
        requirements = (content / "requirements.txt").read_text().lower()
        assert "killb-broker-client" not in requirements
        assert "killb_broker_client" not in requirements
        assert "clients/" not in requirements
