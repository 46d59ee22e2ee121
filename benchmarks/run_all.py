"""Run every benchmark and write ``docs/performance.md`` (``make bench``).

Each benchmark measures whole processes, median of repeated runs, with its baselines in the
same run, and prints markdown; this script only runs them in turn and collects their output
with the command that reproduces each table.  Takes about ten minutes on 2 cores.

    .venv/bin/python benchmarks/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "performance.md"

BENCHES = (
    (
        "The config step: four augtool calls (2014) vs one pulpinit configure",
        "bench_configure.py",
        ["--runs", "15"],
        ["--runs", "3"],
    ),
    (
        "Start-up against the earlier code (e99491c), the 2014 scripts and the floor; peak memory",
        "bench_startup.py",
        ["--runs", "15"],
        ["--runs", "3"],
    ),
    (
        "Detection latency: the armed wait, the plain backoff and the fixed 5 s poll; probes and CPU while waiting",
        "bench_detection.py",
        ["--trials", "30", "--minute", "60"],
        ["--quick"],
    ),
    (
        "The resident supervisor beside tini and dumb-init: memory, signal latency, start-up",
        "bench_supervisor.py",
        ["--runs", "50"],
        ["--runs", "5"],
    ),
    ("MongoDB probe latency against the fake", "mongo_probe_latency.py", ["--runs", "200"], ["--runs", "20"]),
    (
        "Time from SIGTERM to exit in every stage, as PID 1 and not",
        "bench_stop.py",
        ["--runs", "7"],
        ["--runs", "1"],
    ),
    (
        "The PID-1 window: from the start of pulpinit to its SIGTERM handler",
        "bench_pid1_window.py",
        ["--runs", "15"],
        ["--runs", "3"],
    ),
    (
        "Start-to-exec of the httpd roles, api and crane, beside run",
        "bench_httpd_roles.py",
        ["--runs", "15"],
        ["--runs", "3"],
    ),
    (
        "Run-once under faults: takeover after a SIGKILLed holder per lease, runs under contention",
        "bench_takeover.py",
        ["--leases", "2", "4", "8", "--trials", "3", "--concurrent", "12"],
        ["--leases", "2", "--trials", "1", "--concurrent", "4"],
    ),
    (
        "Masking a 1 MiB adversarial value: linear, not quadratic",
        "bench_masking.py",
        ["--runs", "7"],
        ["--runs", "2"],
    ),
    (
        "A whole-deployment upgrade, applied → every role on the new version: pulpinit vs 2014",
        "bench_upgrade.py",
        ["--trials", "3", "--scale", "10"],
        ["--trials", "1", "--scale", "10"],
    ),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few runs: check the benchmarks work, not the figures")
    args = parser.parse_args()
    cpus = os.cpu_count()
    parts = [
        "# Performance",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.platform()}, "
        f"{cpus} CPUs, Python {platform.python_version()}, user id {os.geteuid()}. "
        "Whole processes, medians of repeated runs; every ratio compares figures taken in the same run.",
        "Regenerate with `make bench` (`.venv/bin/python benchmarks/run_all.py`).",
    ]
    failed = []
    for title, script, full, quick in BENCHES:
        argv = [sys.executable, str(ROOT / "benchmarks" / script), *(quick if args.quick else full)]
        print(f"== {script}", file=sys.stderr, flush=True)
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        command = " ".join([".venv/bin/python", f"benchmarks/{script}", *(quick if args.quick else full)])
        parts += ["", f"## {title}", "", f"`{command}`", ""]
        if done.returncode != 0:
            failed.append(script)
            parts += ["```", f"failed with exit {done.returncode}:", done.stderr[-2000:], "```"]
        else:
            parts.append(done.stdout.strip())
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("\n".join(parts) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
