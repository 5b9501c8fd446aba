"""Helpers the tests import: the files in events/, and the functions' handlers loaded as a cold
start would (local/lambda_runtime.py, shared with the demo and the benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lambda_runtime import load_function

__all__ = ["EVENTS", "ROOT", "load_event", "load_function"]

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    """One of the JSON files in events/, the same ones `sam local invoke -e` takes."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event
