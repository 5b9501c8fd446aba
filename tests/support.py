"""Helpers the tests import: the files in events/, the functions' handlers loaded as a cold
start would (local/lambda_runtime.py, shared with the demo and the benchmarks), hooks on the
handlers' AWS calls, and the Python snippets of the READMEs."""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from lambda_runtime import load_function

__all__ = ["EVENTS", "ROOT", "SessionHooks", "load_event", "load_function"]

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    """One of the JSON files in events/, the same ones `sam local invoke -e` takes."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


Hook = Callable[..., Any]


class SessionHooks:
    """botocore event hooks for every client built from now on through boto3's default session,
    as a handler builds its clients at cold start: a test reaches the handler's own clients
    without touching the handler. Create it before the handler is loaded; hooks may be added at
    any time after; close() takes it off the session."""

    PREFIXES = (
        "before-call.secrets-manager",
        "before-send.secrets-manager",
        "before-parameter-build.lambda",
        "after-call.lambda",
    )

    def __init__(self) -> None:
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        self._events = boto3.DEFAULT_SESSION.events
        self._hooks: defaultdict[str, list[Hook]] = defaultdict(list)
        for prefix in self.PREFIXES:
            self._events.register_first(prefix, self._dispatch)

    def add(self, event_name: str, hook: Hook) -> None:
        """hook(**botocore's kwargs) on that event, such as
        before-call.secrets-manager.GetSecretValue; the first hook answering something other than
        None decides, as botocore's own do."""
        self._hooks[event_name].append(hook)

    def close(self) -> None:
        for prefix in self.PREFIXES:
            self._events.unregister(prefix, self._dispatch)

    def _dispatch(self, event_name: str, **kwargs: Any) -> Any:
        for hook in list(self._hooks.get(event_name, ())):
            answer = hook(event_name=event_name, **kwargs)
            if answer is not None:
                return answer
        return None


FENCE = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)


def markdown_blocks(text: str, language: str) -> list[str]:
    """The bodies of a Markdown document's fenced code blocks in one language ("" for none)."""
    return [body for lang, body in FENCE.findall(text) if lang == language]


def client_calls(snippets: list[str], *, also: frozenset[str] = frozenset()) -> list[ast.Call]:
    """Every call, in Python snippets, of a name imported from killb_broker_client (or of one of
    `also`, for snippets that continue an earlier one): what the README drift tests check."""
    calls = []
    for body in snippets:
        tree = ast.parse(body)
        imported = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "killb_broker_client"
            for alias in node.names
        }
        calls += [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in imported | also
        ]
    return calls
