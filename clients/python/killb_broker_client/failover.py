"""Which broker to ask, of an ordered list (one per region, say), and when to pass to the next.

The brokers are asked in their order. One that cannot be reached, times out or answers 5xx
(a 503 BROKER.0003 included: another region may hold a token) passes the call to the next; any
other answer, a 4xx included, is the answer. The broker that answered is kept first for
STICKY_SECONDS, so a lost region costs one failed attempt a minute, not one per call; then the
first broker is tried again. Whether to ask again after a 503 or 429 is not decided here: that
is the retry loop's business (auth.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from killb_broker_client.signing import BrokerEndpoint

STICKY_SECONDS = 60.0


def broker_urls(value: str | Sequence[str]) -> list[str]:
    """The broker URLs of one URL, a comma-separated list (KILLB_BROKER_URL) or a sequence of
    either, in order, without blanks or repeats."""
    items = [value] if isinstance(value, str) else list(value)
    urls: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError("a broker URL must be a string")
        for url in item.split(","):
            if url.strip() and url.strip() not in urls:
                urls.append(url.strip())
    if not urls:
        raise ValueError("no broker URL given")
    return urls


def moves_on(status: int) -> bool:
    """Whether a broker's answer with this status passes the call to the next broker: a 5xx
    does (no answer at all always does); any other answer is the answer."""
    return status >= 500


class BrokerList:
    """The brokers in the order to ask them, the one that last answered first for a while.

    Times are monotonic seconds, given by the caller, so the stickiness is tested without
    waiting a minute.
    """

    def __init__(
        self, endpoints: Sequence[BrokerEndpoint], *, sticky_seconds: float = STICKY_SECONDS
    ) -> None:
        if not endpoints:
            raise ValueError("no broker URL given")
        self.endpoints = tuple(endpoints)
        self.sticky_seconds = sticky_seconds
        self._lock = threading.Lock()
        # (index of the broker kept first, when it was chosen), or None: the configured order.
        self._kept: tuple[int, float] | None = None

    def __repr__(self) -> str:
        return f"BrokerList({[endpoint.url for endpoint in self.endpoints]!r})"

    def candidates(self, now: float) -> list[BrokerEndpoint]:
        """The brokers to ask, in turn: the one kept (while it is kept), then the others in
        their configured order."""
        with self._lock:
            if self._kept is not None and now - self._kept[1] >= self.sticky_seconds:
                self._kept = None
            kept = None if self._kept is None else self._kept[0]
        if kept is None:
            return list(self.endpoints)
        others = (endpoint for index, endpoint in enumerate(self.endpoints) if index != kept)
        return [self.endpoints[kept], *others]

    def answered(self, endpoint: BrokerEndpoint, now: float) -> None:
        """This broker answered: keep it first. The time counts from when it was first chosen,
        so a busy caller still returns to the first broker after STICKY_SECONDS."""
        index = self.endpoints.index(endpoint)
        with self._lock:
            if index == 0:
                self._kept = None
            elif self._kept is None or self._kept[0] != index:
                self._kept = (index, now)
