"""A KillB stand-in for the client tests, served over real HTTP by local/broker_server.py: it
refuses the tokens it is told to refuse (401 AUTH.0003), or answers with scripted answers first,
and records the headers and body of every request it received."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from broker_server import serve_broker

from tests.client.scripted_broker import ACCOUNT_ID, json_response, refused


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: str | None

    @property
    def bearer(self) -> str | None:
        authorization = self.headers.get("authorization")
        return authorization.removeprefix("Bearer ") if authorization else None


def users() -> dict[str, Any]:
    return json_response(200, {"data": [{"id": "usr_0001"}]})


def token_refused() -> dict[str, Any]:
    return refused(401, "AUTH.0003", "Invalid token")


def redirect(location: str, status: int = 302) -> dict[str, Any]:
    return json_response(status, {}, {"Location": location})


@dataclass
class ScriptedKillB:
    """Answers the scripted answers in turn, then 401 to a refused token and 200 to the rest."""

    refused_tokens: set[str] = field(default_factory=set)
    script: list[dict[str, Any]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    base_url: str = ""  # where it is served, once it is

    def __call__(self, event: dict[str, Any], _context: Any) -> dict[str, Any]:
        headers = {name.lower(): value for name, value in (event["headers"] or {}).items()}
        request = Received(event["path"], headers, event["body"])
        self.received.append(request)
        if self.script:
            return self.script.pop(0)
        if request.bearer in self.refused_tokens:
            return token_refused()
        return users()

    @property
    def bearers(self) -> list[str | None]:
        return [request.bearer for request in self.received]


@contextmanager
def serve_killb() -> Iterator[ScriptedKillB]:
    """A ScriptedKillB served on a loopback port of its own (so an origin of its own)."""
    fake = ScriptedKillB()
    with serve_broker(fake, caller_arn=None, account_id=ACCOUNT_ID) as api:
        fake.base_url = api.base_url
        yield fake
