"""The local tools as a user starts them: `python local/<tool>` from the repo root, nothing
added to PYTHONPATH, the output read back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tool_environment(**extra: str) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    for name in ("KILLB_BASE_URL", "KILLB_EMAIL", "KILLB_PASSWORD", "KILLB_API_KEY"):
        environment.pop(name, None)
    environment.update(extra)
    return environment


def run_tool(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own tools, no shell
        [sys.executable, *argv],
        cwd=ROOT,
        env=tool_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start_tool(*argv: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own tools, no shell
        [sys.executable, *argv],
        cwd=ROOT,
        env=tool_environment(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
