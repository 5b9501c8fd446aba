"""P8: what `killb-broker proxy` adds to a KillB call. A plain HTTP client calls a fixed-answer
upstream on loopback directly and through the proxy (token cached), alternating, in one run:
added latency at p50 and p99, throughput at 64 concurrent connections, the proxy's memory."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import aiohttp
from botocore.credentials import ReadOnlyCredentials
from broker_server import serve_broker

from bench import ROOT
from tests.client.scripted_broker import ACCOUNT_ID, CALLER_ARN, ScriptedBroker, issued

GOAL_P50_MS = 1.0
GOAL_P99_MS = 5.0
GOAL_THROUGHPUT = 0.70
WARMUP = 200
PAIRS = 2000
CONNECTIONS = 64
THROUGHPUT_SECONDS = 1.5
THROUGHPUT_ROUNDS = 9
PATH = "/fixed"
# Fake AWS credentials: the callers sign with them, the local API Gateway checks them.
BENCH_KEY = "bench"
BENCH_CREDENTIALS = ReadOnlyCredentials(BENCH_KEY, BENCH_KEY, None)


@contextmanager
def process(*command: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A child process of this interpreter and the first URL it writes (on stdout or stderr).

    Its output goes to a file, so a proxy logging a line per request never blocks on a pipe.
    """
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": BENCH_KEY,
        "AWS_SECRET_ACCESS_KEY": BENCH_KEY,
        "AWS_REGION": "us-east-1",
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("clients/python", "local", ".")),
    }
    with tempfile.TemporaryFile() as output:
        child = subprocess.Popen(  # noqa: S603 - our own modules, fixed arguments
            [sys.executable, *command], stdout=output, stderr=output, env=environment, cwd=ROOT
        )
        try:
            yield child, first_url(output, child)
        finally:
            child.terminate()
            child.wait(timeout=30)


def first_url(output: IO[bytes], child: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and child.poll() is None:
        output.seek(0)
        found = re.search(rb"http://127\.0\.0\.1:\d+", output.read())
        if found:
            return found.group().decode()
        time.sleep(0.05)
    output.seek(0)
    raise RuntimeError(f"{child.args!r} did not start: {output.read()[-2000:]!r}")


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (the peak) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def latencies(direct: str, proxied: str) -> tuple[list[float], list[float]]:
    """Milliseconds per request, one keep-alive connection to each side, alternating."""
    connections = {
        url: http.client.HTTPConnection(url.removeprefix("http://")) for url in (direct, proxied)
    }
    timings: dict[str, list[float]] = {direct: [], proxied: []}
    for index in range(WARMUP + PAIRS):
        order = (direct, proxied) if index % 2 == 0 else (proxied, direct)
        for url in order:
            connection = connections[url]
            started = time.perf_counter()
            connection.request("GET", PATH)
            response = connection.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                raise RuntimeError(f"{url} answered {response.status}")
            if index >= WARMUP:
                timings[url].append(elapsed)
    for connection in connections.values():
        connection.close()
    return timings[direct], timings[proxied]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def throughput(base_url: str) -> float:
    """Requests per second with CONNECTIONS callers, each on its own keep-alive connection."""
    deadline = time.perf_counter() + THROUGHPUT_SECONDS
    done = 0

    async def caller(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            async with session.get(f"{base_url}{PATH}") as response:
                await response.read()
                done += response.status == 200

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(caller(session) for _ in range(CONNECTIONS)))
        return done / (time.perf_counter() - started)


def main() -> None:
    broker = ScriptedBroker()
    with (
        process("-m", "tests.client.echo_upstream") as (_, upstream_url),
        serve_broker(
            broker, caller_arn=CALLER_ARN, account_id=ACCOUNT_ID, credentials=BENCH_CREDENTIALS
        ) as broker_api,
    ):
        answer = issued("kb-bench-token", api_key=None)
        body = json.loads(answer["body"])
        answer["body"] = json.dumps({**body, "killbBaseUrl": upstream_url})
        broker.script(answer)
        with process(
            "-m",
            "killb_broker_client",
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--broker-url",
            broker_api.base_url,
            "--max-connections",
            str(CONNECTIONS),
        ) as (proxy_process, proxy_url):
            run(upstream_url, proxy_url, proxy_process.pid)


def run(upstream_url: str, proxy_url: str, proxy_pid: int) -> None:
    rest_kib = memory_kib(proxy_pid, "VmRSS")
    direct, proxied = latencies(upstream_url, proxy_url)
    p50 = statistics.median(proxied) - statistics.median(direct)
    p99 = percentile(proxied, 0.99) - percentile(direct, 0.99)
    print(
        f"latency over {PAIRS} alternating pairs: direct p50 {statistics.median(direct):.2f} ms "
        f"p99 {percentile(direct, 0.99):.2f} ms; through the proxy p50 "
        f"{statistics.median(proxied):.2f} ms p99 {percentile(proxied, 0.99):.2f} ms"
    )
    rates: dict[str, list[float]] = {"direct": [], "proxy": []}
    for round_number in range(THROUGHPUT_ROUNDS):
        sides = [("direct", upstream_url), ("proxy", proxy_url)]
        for name, url in sides if round_number % 2 == 0 else reversed(sides):
            rates[name].append(asyncio.run(throughput(url)))
    # Each round's two sides ran back to back: their ratio shares whatever else the machine
    # was doing then; the median over rounds drops the rounds a burst of other work spoiled.
    share = statistics.median(p / d for p, d in zip(rates["proxy"], rates["direct"], strict=True))
    direct_rate, proxy_rate = (statistics.median(rates[n]) for n in ("direct", "proxy"))
    peak_kib = memory_kib(proxy_pid, "VmHWM")
    print(
        f"throughput at {CONNECTIONS} connections: direct {direct_rate:.0f}/s, through the "
        f"proxy {proxy_rate:.0f}/s (medians of {THROUGHPUT_ROUNDS} rounds of "
        f"{THROUGHPUT_SECONDS:g} s)"
    )
    print(f"proxy memory: RSS {rest_kib / 1024:.1f} MiB at rest, peak {peak_kib / 1024:.1f} MiB")
    print(
        f"P8 proxy overhead: added p50 {p50:.2f} ms (goal <= {GOAL_P50_MS:g}), added p99 "
        f"{p99:.2f} ms (goal <= {GOAL_P99_MS:g}), throughput {share:.2f} of "
        f"direct (goal >= {GOAL_THROUGHPUT:.2f})"
    )


if __name__ == "__main__":
    main()
