"""A requests session that sends calls for named API Gateway hosts to loopback servers instead,
as DNS would send them to API Gateway: path, query and headers (Host included) are kept, so the
local broker sees the request exactly as the client signed it for that host."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest


class LoopbackRoutes(HTTPAdapter):
    """host -> loopback base URL (http://127.0.0.1:PORT); any other host is an error."""

    def __init__(self, routes: dict[str, str]) -> None:
        super().__init__()
        self.routes = routes

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        target = self.routes[parts.hostname or ""]
        request.headers["Host"] = parts.netloc
        request.url = f"{target}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        return super().send(request, *args, **kwargs)


def routed_session(routes: dict[str, str]) -> requests.Session:
    session = requests.Session()
    session.mount("https://", LoopbackRoutes(routes))
    return session
