"""clients/python/README.md drifts from the code: these tests fail when its options, commands,
snippets or error table do."""

from __future__ import annotations

import ast
import inspect
import re
import shlex

import pytest

import killb_broker_client
from killb_broker_client import BrokerAuth, BrokerClientError
from killb_broker_client.cli import parser
from tests.support import ROOT, client_calls, markdown_blocks

README = (ROOT / "clients" / "python" / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return markdown_blocks(README, language)


def section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def cli_invocations() -> list[list[str]]:
    lines = (line.split("#")[0] for body in blocks("bash") for line in body.splitlines())
    return [
        shlex.split(command)
        for line in lines
        for command in re.findall(r"killb-broker ([^)\"]+)", line)
    ]


def test_the_error_table_names_every_error_the_package_exports() -> None:
    exported = {
        name
        for name in killb_broker_client.__all__
        if isinstance(getattr(killb_broker_client, name), type)
        and issubclass(getattr(killb_broker_client, name), BrokerClientError)
    }
    table = section("Errors")

    assert exported
    assert [name for name in sorted(exported) if f"| `{name}` |" not in table] == []


def test_the_options_table_names_every_option_of_broker_auth() -> None:
    options = [name for name in inspect.signature(BrokerAuth).parameters if name != "self"]
    table = section("Use")

    assert [name for name in options if f"`{name}`" not in table] == []


def test_the_readme_shows_the_commands() -> None:
    assert {argv[0] for argv in cli_invocations()} >= {"headers", "health"}


@pytest.mark.parametrize("argv", cli_invocations(), ids=" ".join)
def test_each_command_line_shown_parses(argv: list[str]) -> None:
    assert parser().parse_args(argv).command in {"headers", "health", "proxy"}


def readme_calls() -> list[ast.Call]:
    return client_calls(blocks("python"), also=frozenset({"BrokerAuth"}))


@pytest.mark.parametrize("call", readme_calls(), ids=ast.unparse)
def test_each_python_call_shown_matches_the_signature(call: ast.Call) -> None:
    assert isinstance(call.func, ast.Name)
    signature = inspect.signature(getattr(killb_broker_client, call.func.id))

    def value(node: ast.expr) -> object:
        # A variable or a call of the snippet stands for a value of any kind.
        if isinstance(node, ast.Name | ast.Call):
            return ast.unparse(node)
        return ast.literal_eval(node)

    signature.bind(
        *[value(arg) for arg in call.args],
        **{kw.arg: value(kw.value) for kw in call.keywords if kw.arg},
    )
