"""`python -m killb_sandbox --port N --email E --password P`: serve one KillB account until SIGINT
or SIGTERM. From a clone's root, `PYTHONPATH=local python -m killb_sandbox` or
`python local/killb_sandbox`; on loopback unless --allow-non-loopback (for a Docker bridge)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

if not __package__:
    # Run as `python local/killb_sandbox`: the package's parent folder is not on the path yet.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from killb_sandbox.server import Account, KillBSandbox, is_loopback


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m killb_sandbox", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="let --host be an address beyond loopback, such as the Docker bridge's that "
        "`sam local` containers reach as host.docker.internal: anyone who reaches it can log "
        "in with the account given here",
    )
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--api-key", help="require this x-api-key on every request")
    parser.add_argument("--token-lifetime-ms", type=int, default=3_600_000)
    args = parser.parse_args(argv)
    if not args.allow_non_loopback and not is_loopback(args.host):
        parser.error(
            f"--host {args.host} is not a loopback address: the sandbox stays local "
            "unless --allow-non-loopback is given too"
        )
    if args.token_lifetime_ms <= 0:
        parser.error("--token-lifetime-ms must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    account = Account(password=args.password, api_key=args.api_key)
    sandbox = KillBSandbox({args.email: account}, token_lifetime_ms=args.token_lifetime_ms)
    base_url = sandbox.start(args.host, args.port, allow_non_loopback=args.allow_non_loopback)
    print(f"KillB sandbox serving on {base_url}", flush=True)
    try:
        stop.wait()
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
