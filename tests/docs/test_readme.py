"""The README drifts from the code: these tests fail when its commands, snippets or paths do."""

from __future__ import annotations

import ast
import inspect
import json
import re
import shlex

import pytest

import killb_broker_client
from killb_broker_client.cli import parser
from tests.support import ROOT, client_calls, markdown_blocks

README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return markdown_blocks(README, language)


def shell_lines() -> list[str]:
    lines = (line.split("#")[0].strip() for body in blocks("bash") for line in body.splitlines())
    return [line for line in lines if line]


def test_readme_shows_the_two_commands_and_ci_runs_the_test_one() -> None:
    commands = [line for line in shell_lines() if line.startswith("make ")]
    assert commands[:2] == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("target", ["demo", "test"])
def test_readme_make_targets_exist(target: str) -> None:
    assert re.search(rf"^{target}:", (ROOT / "Makefile").read_text(), re.MULTILINE)


def cli_invocations() -> list[list[str]]:
    found = []
    for line in shell_lines():
        for command in re.findall(r"killb-broker ([^)\"]+)", line):
            found.append(shlex.split(command))
    return found


def test_readme_shows_the_cli() -> None:
    assert len(cli_invocations()) >= 2


@pytest.mark.parametrize("argv", cli_invocations(), ids=" ".join)
def test_readme_cli_invocations_parse(argv: list[str]) -> None:
    arguments = parser().parse_args(argv)
    assert arguments.command in {"headers", "health", "proxy"}


def python_calls() -> list[ast.Call]:
    return client_calls(blocks("python"))


def test_readme_python_snippets_use_the_client() -> None:
    assert {call.func.id for call in python_calls() if isinstance(call.func, ast.Name)} >= {
        "BrokerAuth",
        "get_auth_headers",
    }


@pytest.mark.parametrize("call", python_calls(), ids=ast.unparse)
def test_readme_python_calls_match_the_signatures(call: ast.Call) -> None:
    assert isinstance(call.func, ast.Name)
    target = getattr(killb_broker_client, call.func.id)
    signature = inspect.signature(target)
    signature.bind(
        *[ast.literal_eval(arg) for arg in call.args],
        **{kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg},
    )


def test_readme_layout_names_paths_that_exist() -> None:
    layout = next(body for body in blocks("") if "template.yaml" in body)
    paths = [line.split()[0] for line in layout.splitlines() if line and not line[0].isspace()]
    missing = [path for path in paths if not (ROOT / path).exists()]
    assert paths
    assert missing == []


def test_readme_links_to_files_that_exist() -> None:
    links = re.findall(r"\]\(((?!https?:)[^)#]+)\)", README)
    assert links
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_readme_names_every_error_code_of_the_broker() -> None:
    for code in ("0000", "0001", "0002", "0003", "0004", "0005"):
        assert f"BROKER.{code}" in README


def test_readme_configure_table_names_template_parameters() -> None:
    # The parameter table only: the function settings follow under a heading of their own.
    section = README.split("## Configure", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    named = {
        name
        for row in section.splitlines()
        if row.startswith("| `")
        for name in re.findall(r"`([A-Za-z]+)`", row.split("|")[1])
        if name[0].isupper()
    }
    template = (ROOT / "template.yaml").read_text()
    assert named
    assert [name for name in sorted(named) if f"\n  {name}:\n" not in template] == []


def test_readme_describes_rejected_tokens_and_revoke_as_the_code_and_docs_do() -> None:
    openapi = (ROOT / "openapi" / "broker.yaml").read_text()
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    revoke_event = (ROOT / "events" / "refresher-revoke.json").read_text()

    assert "rejected=" in README
    assert "name: rejected" in openapi
    assert '{"revoke": true}' in README
    assert json.loads(revoke_event) == {"revoke": True}
    # The runbook the README sends on-call to is a heading of docs/deploy.md.
    runbook = "A token or the password leaked"
    assert f'"{runbook}"' in README
    assert f"\n## {runbook}\n" in deploy
    assert '{"revoke": true}' in deploy


@pytest.mark.parametrize("argv", [["headers", "--rejected", "3f2a9c0d1b4e"], ["health"]])
def test_readme_rejected_and_health_commands_exist(argv: list[str]) -> None:
    assert " ".join(argv) in README
    parser().parse_args(argv)


def test_readme_api_table_names_every_field_of_the_answers() -> None:
    section = README.split("The API (also in `openapi/broker.yaml`):", 1)[1].split("\n\n", 2)[1]
    for field in ("headers", "expiresAt", "expiresIn", "killbBaseUrl", "status", "checkedAt"):
        assert f'"{field}"' in section


def test_readme_secrets_table_points_each_secret_at_the_file_that_defines_it() -> None:
    rows = [line for line in README.splitlines() if re.match(r"^\| .* secret \| ", line)]
    assert len(rows) == 3
    for row in rows:
        path = re.search(r"`(layers/[^`]+\.py)`", row)
        assert path is not None, row
        assert (ROOT / path[1]).exists()
        functions = re.findall(r"`(\w+_(?:from|to)_json)`", row)
        assert functions, row
        source = (ROOT / path[1]).read_text()
        assert all(f"\ndef {function}(" in source for function in functions), row
