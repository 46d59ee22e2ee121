"""Benchmark how fast pulpinit stops on SIGTERM in each stage, as PID 1 of a PID namespace and not.

For every blocking point of :mod:`helpers.stages` (a stand-in ``rpm`` that never
answers, a FIFO ``_FILE``, server.conf as a FIFO in configure, MongoDB down, another owner's
lease, a migration never done, a running pulp-manage-db) a real ``python -m pulpinit`` is held
there against the embedded fake MongoDB and AMQP broker, then sent SIGTERM by its host PID; the
figure is the wall time from ``kill`` to the exit of the process (of ``unshare`` for PID 1, which
exits right after it).  Median and maximum of ``--runs`` runs per point and mode.  The stand-in
pulp-manage-db dies at once on SIGTERM, so the migration-run row is pulpinit's own time plus a
few milliseconds of the child's exit.  A PID 1 that ignored SIGTERM would show here as the whole
grace period, ended by the SIGKILL.

    .venv/bin/python benchmarks/bench_stop.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers.processes import pid_namespaces_reason
from helpers.stages import POINTS, hold

from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per point and mode")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root: the stand-ins run as the user pulpinit drops to", file=sys.stderr)
        return 1
    modes = [("not PID 1", False)]
    reason = pid_namespaces_reason()
    if reason is None:
        modes.insert(0, ("PID 1", True))
    print(
        f"{args.runs} runs per cell, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
        "SIGTERM → exit of the process, in ms" + (f"; PID 1 rows skipped: {reason}" if reason else "")
    )
    print("")
    print("| blocking point | stage | " + " | ".join(f"{name}: median | max" for name, _ in modes) + " |")
    print("|---|---|" + "---:|---:|" * len(modes))
    with FakeMongo() as mongo, FakeAmqpBroker() as broker:
        for point, stage in POINTS.items():
            if point == "start":  # held there on purpose for seconds: bench_pid1_window.py measures the start
                continue
            cells = []
            for _, pid1 in modes:
                times = []
                for _ in range(args.runs):
                    with hold(point, mongo, broker, pid1=pid1) as held:
                        code, elapsed = held.stop(signal.SIGTERM)
                        if code != 143:
                            print(f"{point}: exit {code}, not 143: {held.lines[-5:]}", file=sys.stderr)
                            return 1
                        times.append(elapsed * 1000)
                cells += [f"{statistics.median(times):.0f}", f"{max(times):.0f}"]
            print(f"| {point} | {stage} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
