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
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="SCRIPT",
        choices=[script for _, script, _, _ in BENCHES],
        help="run these benchmarks only and replace their sections of the page (dated), keeping the others",
    )
    args = parser.parse_args()
    now = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    header = [
        "# Performance",
        "",
        f"Measured {now} on {platform.platform()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, user id {os.geteuid()}. "
        "Whole processes, medians of repeated runs; every ratio compares figures taken in the same run.",
        "Regenerate with `make bench` (`.venv/bin/python benchmarks/run_all.py`); a section rerun alone "
        "(`--only SCRIPT`) carries its own date.",
    ]
    sections = {} if args.only is None else _sections(OUT.read_text()) if OUT.is_file() else {}
    failed = []
    for title, script, full, quick in BENCHES:
        if args.only is not None and script not in args.only:
            continue
        argv = [sys.executable, str(ROOT / "benchmarks" / script), *(quick if args.quick else full)]
        print(f"== {script}", file=sys.stderr, flush=True)
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        command = " ".join([".venv/bin/python", f"benchmarks/{script}", *(quick if args.quick else full)])
        part = [f"## {title}", "", f"`{command}`" + (f" (measured {now})" if args.only else ""), ""]
        if done.returncode != 0:
            failed.append(script)
            part += ["```", f"failed with exit {done.returncode}:", done.stderr[-2000:], "```"]
        else:
            part.append(done.stdout.strip())
        sections[script] = "\n".join(part)
    if args.only is not None and OUT.is_file():
        header = OUT.read_text().split("\n## ", 1)[0].rstrip("\n").split("\n")
    body = [sections[script] for _, script, _, _ in BENCHES if script in sections]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("\n\n".join(["\n".join(header), *body]) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _sections(page: str) -> dict[str, str]:
    """The page's sections by the benchmark script named in each one's command line."""
    found = {}
    for chunk in page.split("\n## ")[1:]:
        for _, script, _, _ in BENCHES:
            if f"benchmarks/{script}" in chunk.split("\n", 3)[2]:
                found[script] = "## " + chunk.rstrip("\n")
    return found


if __name__ == "__main__":
    sys.exit(main())
