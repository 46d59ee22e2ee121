"""The PID-1 window: how long after its start a pulpinit process would still drop a SIGTERM.

The PID 1 of a PID namespace receives only the signals it handles; until pulpinit's handler is in
place, a ``docker stop`` or a pod deletion is dropped (and ends in SIGKILL after the grace period).
The entry point installs it as its first statements (``pulpinit/__main__.py``), before the heavy
imports.  Measured here, whole processes, median and maximum of ``--runs`` interleaved runs: the
time from just before the process is started until ``SigCgt`` in ``/proc/PID/status`` shows a
SIGTERM handler (polled without sleeping), for

* ``python -m pulpinit --version`` as PID 1 of a new PID namespace (``unshare --pid --fork
  --mount-proc``; the time includes ``unshare``'s own start) and as a plain process;
* the floor: a Python whose very first statement installs the handler (``python -c``);
* the handler after the imports (``import pulpinit.cli`` first): where it was before.

    .venv/bin/python benchmarks/bench_pid1_window.py --runs 15
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers.processes import children, pid_namespaces_reason

TERM_BIT = 1 << (signal.SIGTERM - 1)
FLOOR = "import signal; signal.signal(signal.SIGTERM, lambda *_: None); import time; time.sleep(0.5)"
AFTER_IMPORTS = "import pulpinit.cli, signal, time; signal.signal(signal.SIGTERM, lambda *_: None); time.sleep(0.5)"


def handled(pid: int) -> bool:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & TERM_BIT)
    except (FileNotFoundError, ProcessLookupError):
        pass
    return False


def window(argv: list[str], *, namespace: bool) -> float:
    """Seconds from the start of ``argv`` until its SIGTERM handler is in place."""
    if namespace:
        argv = ["unshare", "--pid", "--fork", "--mount-proc", *argv]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid = proc.pid
        while namespace and not (found := children(proc.pid)):
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited before its PID 1 was seen")
        if namespace:
            pid = found[0]
        while not handled(pid):
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited without a SIGTERM handler")
        return time.perf_counter() - started
    finally:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    python = sys.executable
    cases = {
        "pulpinit as PID 1 (unshare --pid)": ([python, "-m", "pulpinit", "--version"], True),
        "pulpinit, plain process": ([python, "-m", "pulpinit", "--version"], False),
        "floor: python -c, handler first": ([python, "-c", FLOOR], False),
        "handler after `import pulpinit.cli`": ([python, "-c", AFTER_IMPORTS], False),
    }
    reason = pid_namespaces_reason()
    if reason:
        del cases["pulpinit as PID 1 (unshare --pid)"]
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (command, namespace) in cases.items():
            samples[name].append(window(command, namespace=namespace))
    print(
        f"{args.runs} runs, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; from the start of the process "
        "to its SIGTERM handler, in ms" + (f"; PID 1 row skipped: {reason}" if reason else "")
    )
    print("")
    print("| process | median | max |")
    print("|---|---:|---:|")
    for name, values in samples.items():
        print(f"| {name} | {statistics.median(values) * 1000:.1f} | {max(values) * 1000:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
