"""Telling operators: the refresher's notices (killb_broker.policy.Notice) as events on the
account's default EventBridge bus, source "killb.broker" (docs/spec.md, "Telling operators").

Sending is best effort: an event that cannot be put is logged and counted, and never fails the
run nor loses a token. The events client (botocore loads its service model, tens of ms) is built
on the first notice only, so a cold start with nothing to tell pays nothing for it;
AWS_ENDPOINT_URL_EVENTBRIDGE (or AWS_ENDPOINT_URL) points it elsewhere, as boto3 reads them itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

# Caps the library loggers (botocore logs whole bodies at DEBUG) before any client exists.
from killb_broker.observability import logger
from killb_broker.policy import Notice

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

SOURCE = "killb.broker"


@dataclass(frozen=True, slots=True)
class Delivery:
    """How many of a run's events EventBridge took, and how many it did not."""

    sent: int = 0
    not_sent: int = 0


class Notifier:
    """Puts notices on the default bus for one stack; its client is built on first use."""

    def __init__(self, stack: str) -> None:
        self.stack = stack
        self._client: EventBridgeClient | None = None

    def send(self, notices: Sequence[Notice]) -> Delivery:
        """One PutEvents for all of a run's notices (a run has at most a few)."""
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
        failed = [entry for entry in answer.get("Entries", []) if entry.get("ErrorCode")]
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
