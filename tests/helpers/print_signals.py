"""A child for supervisor tests: prints ``ready``, then ``<number> <NAME>`` per signal received.

Usage: ``print_signals.py [--exit-on SIGNAME] [--code N] [--spawn-sleeper]``

* Every catchable signal except SIGCHLD is caught and printed (flushed at once).
* ``--exit-on TERM`` exits with ``--code`` (default 0) once that signal arrived.
* A line ``exit N`` on stdin makes it exit with N; EOF on stdin is ignored.
* ``--spawn-sleeper`` starts ``sleep 300`` in the same process group first and
  prints ``sleeper <pid>`` (to check that the group gets SIGKILL).  The sleeper gets none of our
  standard streams: it must not keep the supervisor's output open after the supervisor exits.
Runs under the dropped user too: stdlib only, no pulpinit import.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit-on", default=None)
    parser.add_argument("--code", type=int, default=0)
    parser.add_argument("--spawn-sleeper", action="store_true")
    args = parser.parse_args()
    exit_on = signal.Signals["SIG" + args.exit_on.upper().removeprefix("SIG")] if args.exit_on else None

    def handler(signum: int, _frame: object) -> None:
        os.write(1, f"{signum} {signal.Signals(signum).name}\n".encode())
        if signum == exit_on:
            os._exit(args.code)

    for sig in signal.valid_signals():
        if isinstance(sig, signal.Signals) and sig not in UNCATCHABLE and sig < signal.SIGRTMIN:
            signal.signal(sig, handler)
    if args.spawn_sleeper:
        sleeper = subprocess.Popen(
            ["sleep", "300"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.write(1, f"sleeper {sleeper.pid}\n".encode())
    os.write(1, b"ready\n")
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["exit"]:
            return int(words[1]) if len(words) > 1 else 0
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
