"""Masking a secret value in time linear in its length, on adversarial values.

The values are those of :mod:`helpers.adversarial`: many ``x://``, many ``:`` and ``@``,
unreadable userinfo pieces, long runs a scheme regular expression backtracks over, percent
escapes, every printable byte, a registered secret repeated.  Quadratic masking took about 8 s for
40 KB and 50 s for 100 KB.

* In-process: :func:`~helpers.adversarial.masking_ms` — register the value as a secret,
  judge and display it as a URL value, redact a log line that holds it — median of ``--runs``, at
  64 KiB and at 1 MiB.  Linear masking costs about 16 times as much for 16 times the length;
  quadratic would cost 256 times as much.
* Whole process: ``pulpinit settings`` with a 1 MiB ``PULP_CONF__X__BROKER_URL_FILE`` of the
  shape, against the same command with a 14-byte URL in that file; medians of ``--runs``,
  interleaved.

Prints markdown tables.

    .venv/bin/python benchmarks/bench_masking.py --runs 7
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench_startup import timed
from helpers.adversarial import MIB, masking_ms, shapes

from pulpinit.testing import SAMPLE_CONF

#: The shapes run as whole processes too (each costs a few seconds of runs).
WHOLE = ("many x://", "one URL of : and @", "pieces ab/c@", "repeated secret")


def in_process(runs: int) -> list[str]:
    small, large = shapes(64 * 1024), shapes(MIB)
    rows = [
        f"| in-process masking, median of {runs} | 64 KiB | 1 MiB | 1 MiB / 64 KiB (linear ≈ 16, quadratic ≈ 256) |",
        "|---|---:|---:|---:|",
    ]
    worst = 0.0
    for name in large:
        masking_ms(large[name])  # regular expressions compiled, first allocations made
        a = statistics.median(masking_ms(small[name]) for _ in range(runs))
        b = statistics.median(masking_ms(large[name]) for _ in range(runs))
        worst = max(worst, b)
        rows.append(f"| {name} | {a:.2f} ms | {b:.1f} ms | {b / a:.1f}× |")
    rows.append(f"| **slowest 1 MiB value** | | **{worst:.1f} ms** | |")
    return rows


def whole_process(runs: int) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="pulpinit-bench-masking-"))
    try:
        shutil.copy(SAMPLE_CONF, work / "server.conf")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PULPINIT_CONFIG": str(work / "server.conf"),
            "PULPINIT_LOG_FORMAT": "json",
            "PULP_CONF__X__BROKER_URL_FILE": str(work / "value"),
        }
        argv = [sys.executable, "-m", "pulpinit", "settings"]
        values = {"a 14-byte URL (baseline)": "amqp://u:p@h//", **{name: shapes(MIB)[name] for name in WHOLE}}
        times: dict[str, list[float]] = {name: [] for name in values}
        for _ in range(runs):
            for name, value in values.items():
                (work / "value").write_text(value)
                times[name].append(timed(argv, env) * 1000)
        base = statistics.median(times["a 14-byte URL (baseline)"])
        rows = [
            f"| `pulpinit settings`, the value in a `_FILE`, median of {runs} | ms | over the baseline |",
            "|---|---:|---:|",
        ]
        for name, spent in times.items():
            median = statistics.median(spent)
            rows.append(f"| {name} | {median:.0f} | {median - base:+.0f} ms |")
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print("\n".join(in_process(args.runs)))
    print()
    print("\n".join(whole_process(args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
