"""Benchmark pulpinit's resident supervisor beside tini and dumb-init (Debian packages).

Measured in one run, on the same machine, with the same helper child:

* **RSS** — VmRSS of the supervisor process while it supervises ``sleep``.
* **forwarding latency** — from ``kill(supervisor, SIGUSR1)`` to the helper
  child (``tests/helpers/print_signals.py``) printing it; median and p95 over
  ``--runs`` signals.  The helper's own reaction time is in every row alike.
* **start-up** — whole-process wall time of ``<supervisor> true``, median of
  ``--runs`` runs; the ``true`` row is the floor.

tini runs with ``-s`` (subreaper, as pulpinit makes itself when not PID 1);
dumb-init in its default mode.  Ratios are against tini.  Prints a markdown table.

    .venv/bin/python benchmarks/bench_supervisor.py --runs 50
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers.processes import children

ROOT = Path(__file__).resolve().parents[1]
PRINT_SIGNALS = str(ROOT / "tests" / "helpers" / "print_signals.py")
PY = sys.executable
# The helper child runs under the system Python: a dropped user cannot enter /root (the venv's home).
HELPER_PY = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else PY


def supervisors(with_user: bool) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    if shutil.which("tini"):
        found["tini -s"] = ["tini", "-s", "--"]
    if shutil.which("dumb-init"):
        found["dumb-init"] = ["dumb-init"]
    found["pulpinit.supervise"] = [PY, "-m", "pulpinit.supervise", "--"]
    if with_user and os.geteuid() == 0:
        found["pulpinit.supervise --user nobody"] = [PY, "-m", "pulpinit.supervise", "--user", "nobody", "--"]
    return found


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(pid)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def rss(prefix: list[str], runs: int) -> float:
    samples = []
    for _ in range(max(3, runs // 10)):
        proc = subprocess.Popen(
            [*prefix, "sleep", "1000"], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                kids = children(proc.pid)
                if kids and Path(f"/proc/{kids[0]}/comm").read_text().strip() == "sleep":
                    break
                time.sleep(0.005)
            time.sleep(0.05)
            samples.append(_rss_kb(proc.pid))
        finally:
            _stop(proc)
    return statistics.median(samples) / 1024


def latency(prefix: list[str], runs: int) -> tuple[float, float]:
    proc = subprocess.Popen(
        [*prefix, HELPER_PY, PRINT_SIGNALS],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"{prefix}: helper not ready")
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            os.kill(proc.pid, signal.SIGUSR1)
            line = proc.stdout.readline()
            samples.append(time.perf_counter() - started)
            if not line.endswith(b"SIGUSR1\n"):
                raise RuntimeError(f"{prefix}: unexpected {line!r}")
            time.sleep(0.002)
    finally:
        _stop(proc)
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(0.95 * (len(samples) - 1))] * 1e6


def startups(prefixes: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Median wall time (ms) of ``<prefix> true`` per prefix, runs interleaved round-robin so that
    load from other processes on the machine hits every row alike."""
    samples: dict[str, list[float]] = {name: [] for name in prefixes}
    for prefix in prefixes.values():  # warm the caches
        subprocess.run([*prefix, "true"], check=True, stderr=subprocess.DEVNULL)
    for _ in range(runs):
        for name, prefix in prefixes.items():
            started = time.perf_counter()
            subprocess.run([*prefix, "true"], check=True, stderr=subprocess.DEVNULL)
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1e3 for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="samples per figure (default 30)")
    parser.add_argument("--no-user", action="store_true", help="skip the --user nobody row")
    args = parser.parse_args(argv)
    chosen = supervisors(not args.no_user)
    starts = startups({**chosen, "floor": [], "interpreter": [PY, "-c", "pass", "#"]}, args.runs)
    rows = []
    for name, prefix in chosen.items():
        mem = rss(prefix, args.runs)
        median, p95 = latency(prefix, args.runs)
        rows.append((name, mem, median, p95, starts[name]))
    floor, interpreter = starts["floor"], starts["interpreter"]
    base = rows[0] if rows[0][0].startswith("tini") else None
    print(
        f"{args.runs} runs, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; `true` alone: "
        f"{floor:.2f} ms; `{Path(PY).name} -c pass` (interpreter floor): {interpreter:.2f} ms\n"
    )
    print(
        "| supervisor | RSS (MB) | × tini | USR1 → child, median (µs) | p95 (µs) | × tini "
        "| `<sup> true` median (ms) | × tini | overhead over `true` (ms) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, mem, median, p95, start in rows:
        ratios = [
            f"{value / ref:.1f}" if base else "–"
            for value, ref in (
                (mem, base[1] if base else 1),
                (median, base[2] if base else 1),
                (start, base[4] if base else 1),
            )
        ]
        print(
            f"| {name} | {mem:.1f} | {ratios[0]} | {median:.0f} | {p95:.0f} | {ratios[1]} "
            f"| {start:.2f} | {ratios[2]} | {start - floor:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
