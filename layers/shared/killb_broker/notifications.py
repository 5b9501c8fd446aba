"""Telling operators: the refresher's notices (killb_broker.policy.Notice) as events on the
account's default EventBridge bus, source "killb.broker" (docs/spec.md, "Telling operators").

The policy yields a "Refresh Failed" for every run that got no token and a "Refresh Recovered"
candidate for every run that got one; FailingRuns decides which go out: "Refresh Failed" when
none went out in the last hour, "Refresh Recovered" when a failure was told since the last
success. It keeps when runs began failing and when operators were last told in this process's
memory, so a failing run writes no secret (rule R5: the stored secrets stay as they were). The
refresher's reserved concurrency is 1: one warm container runs the scheduled runs one after
another and keeps the bound. The honest limit: a new container (a cold start, a deploy, a
container Lambda retired) knows nothing of earlier failures, so it may tell once more within the
hour, and a recovery it sees after failures told by another container goes untold.

Sending is best effort: an event that cannot be put is logged and counted, and never fails the
run nor loses a token. The events client (botocore loads its service model, tens of ms) is built
on the first notice only, so a cold start with nothing to tell pays nothing for it;
AWS_ENDPOINT_URL_EVENTBRIDGE (or AWS_ENDPOINT_URL) points it elsewhere, as boto3 reads them itself.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

# Caps the library loggers (botocore logs whole bodies at DEBUG) before any client exists.
from killb_broker.observability import logger
from killb_broker.policy import DetailType, Notice

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

SOURCE = "killb.broker"
# While runs keep failing to get a token, operators are told at most this often.
FAILURE_NOTICE_INTERVAL = 3600


@dataclass(frozen=True, slots=True)
class Delivery:
    """How many of a run's events EventBridge took, and how many it did not."""

    sent: int = 0
    not_sent: int = 0


class FailingRuns:
    """The hourly bound on "Refresh Failed", in memory: when runs began failing to get a token,
    and when operators were last told so (Unix seconds; None: not failing, not told)."""

    def __init__(self) -> None:
        self.since: int | None = None
        self.told_at: int | None = None

    def select(self, notices: Sequence[Notice], now: float) -> list[Notice]:
        """The notices to send: a "Refresh Failed" only when none was told within the last
        FAILURE_NOTICE_INTERVAL, a "Refresh Recovered" only when a failure was told since the
        last success (saying for how long runs had failed); a success forgets the failures.
        Other notices always go."""
        selected = []
        for notice in notices:
            if notice.detail_type is DetailType.REFRESH_FAILED:
                if self.since is None:
                    self.since = int(now)
                if self.told_at is not None and 0 <= now - self.told_at < FAILURE_NOTICE_INTERVAL:
                    continue
            elif notice.detail_type is DetailType.REFRESH_RECOVERED:
                since, told = self.since, self.told_at
                self.since = self.told_at = None
                if since is None or told is None:
                    continue
                reason = f"{notice.reason}; runs had failed for {int(now - since)} s"
                selected.append(dataclasses.replace(notice, reason=reason))
                continue
            selected.append(notice)
        return selected

    def told(self, notice: Notice, now: float) -> None:
        """EventBridge took this notice: a "Refresh Failed" starts the hour of silence."""
        if notice.detail_type is DetailType.REFRESH_FAILED:
            self.told_at = int(now)


class Notifier:
    """Puts notices on the default bus for one stack, at most one "Refresh Failed" an hour (one
    Notifier per handler module, built at cold start); its client is built on first use."""

    def __init__(self, stack: str) -> None:
        self.stack = stack
        self.failing = FailingRuns()
        self._client: EventBridgeClient | None = None

    def send(self, notices: Sequence[Notice], *, now: float) -> Delivery:
        """One PutEvents for all of a run's notices the bound lets through (a run has at most a
        few). A "Refresh Failed" EventBridge did not take counts as untold: the next failing run
        tries again."""
        notices = self.failing.select(notices, now)
        if not notices:
            return Delivery()
        entries: list[Any] = [
            {
                "Source": SOURCE,
                "DetailType": notice.detail_type.value,
                "Detail": json.dumps(notice.detail(self.stack), separators=(",", ":")),
            }
            for notice in notices
        ]
        try:
            answer = self._events().put_events(Entries=entries)
        except Exception as error:  # no failure to tell operators may fail the run
            # The error's type only: botocore's messages may quote the request.
            logger.error(
                "Could not put the refresher's events on EventBridge",
                extra={"error": type(error).__name__, "detail_types": _types(notices)},
            )
            return Delivery(not_sent=len(entries))
        # EventBridge answers one entry per entry put, in order: an ErrorCode marks a refused one.
        results = answer.get("Entries", [])
        failed = [entry for entry in results if entry.get("ErrorCode")]
        for notice, result in zip(notices, results, strict=False):
            if not result.get("ErrorCode"):
                self.failing.told(notice, now)
        not_sent = max(answer.get("FailedEntryCount", 0), len(failed))
        if not_sent:
            logger.error(
                "EventBridge refused some of the refresher's events",
                extra={
                    "failed_entry_count": not_sent,
                    "error_codes": sorted({str(entry.get("ErrorCode")) for entry in failed}),
                    "detail_types": _types(notices),
                },
            )
        else:
            logger.info("Refresher events sent", extra={"detail_types": _types(notices)})
        return Delivery(sent=len(entries) - not_sent, not_sent=not_sent)

    def _events(self) -> EventBridgeClient:
        if self._client is None:
            config = Config(
                retries={"mode": "standard", "max_attempts": 2},
                connect_timeout=2,
                read_timeout=3,
            )
            self._client = boto3.client("events", config=config)
        return self._client


def _types(notices: Sequence[Notice]) -> list[str]:
    return [notice.detail_type.value for notice in notices]
