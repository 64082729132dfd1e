"""A Supervisor of fake workers, run as `python -m tests.workers_kit BEHAVIOUR`, so that the
tests fork a fresh process of their own rather than pytest's.

Behaviours: `graceful` (wait for a stop signal, exit 0), `fail` (exit 1 at once), `config`
(exit 78 at once), `stubborn` (ignore the stop signal), `fail-on-stop` (exit 3 when told
to stop), `flaky` (worker 0's first life exits 1 at once, then graceful).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from mailmodule._workers import STOP_SIGNALS, Supervisor


def _wait_for_stop() -> None:
    signal.sigwait(STOP_SIGNALS)  # still blocked, as the supervisor starts its workers


def behaviour(name: str, index: int, marker: Path) -> int:
    """Worker `index`'s life under `name`; `marker` tells a flaky one it has run before."""
    if name == "fail":
        return 1
    if name == "config":
        return 78
    if name == "flaky" and index == 0 and not marker.exists():
        marker.touch()
        return 1
    _wait_for_stop()
    if name == "stubborn":
        time.sleep(60)
    return 3 if name == "fail-on-stop" else 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("behaviour")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--max-restarts", type=int, default=3)
    parser.add_argument("--marker", default=os.devnull + ".absent")
    args = parser.parse_args()
    marker = Path(args.marker)
    supervisor = Supervisor(
        lambda index: behaviour(args.behaviour, index, marker),
        workers=args.workers,
        grace=args.grace,
        backoff=0.05,
        max_restarts=args.max_restarts,
        fatal=(78,),
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
