"""How fast does pulpinit notice a dependency coming up, and what does waiting cost?

Three waiters side by side, in the same run, against the same fakes:

* ``armed``: pulpinit's default wait; while MongoDB refuses connections it knocks (TCP connect
  only) every ``PULPINIT_WAIT_ARMED_INTERVAL`` = 0.05 s and probes the moment one is accepted;
* ``armed off``: ``PULPINIT_WAIT_ARMED_INTERVAL=0``, the policy before issue 16 (full probe on a
  backoff of 0.1 s × 1.5 per attempt with jitter, capped at 2 s);
* ``2014 loop``: ``until test_db_available; do sleep 5; done``, re-enacted as a shell loop whose
  check is a Python process that imports pymongo and makes one TCP connection (pymongo 2's
  ``Connection()`` connected when constructed and raised on a refusal).

**Detection latency.** Trial: the fake broker is up; the fake MongoDB sits behind a proxy that
refuses connections (a Kubernetes Service without ready endpoints) and starts listening
U(0, 3) s or U(3, 8) s after the waiter process (``pulpinit check-deps --wait``) starts.
Measured: from the moment the port listens to the moment the waiter exits 0 ("moves on").
Trials run ``--parallel`` at a time in an interleaved, seeded order (each with its own proxy
port), so every waiter meets the same background load.

**Cost.** Over ``--minute`` seconds, the waiters run side by side against:
a MongoDB that is up but rejects the password (full-protocol probes per minute, counted by the
server as authentication attempts; connections per minute counted by a proxy in front of it),
a MongoDB that accepts and resets every connection (connections per minute), and a port that
stays refused (CPU time of the waiting process per minute, from ``/proc/PID/stat``: user +
system, children included, between two samples taken after start-up).

    .venv/bin/python benchmarks/bench_detection.py               # 30 trials per cell, 60 s windows (~5 min)
    .venv/bin/python benchmarks/bench_detection.py --quick       # 3 trials per cell, 10 s windows (~1 min)
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.faults import Proxy, ResetServer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "pulpinit" / "testing" / "sample-server.conf"
WINDOWS = ((0.0, 3.0), (3.0, 8.0))
TARGET_MEDIAN, TARGET_MAX = 0.1, 0.3
CHECK_2014 = "import socket, sys, pymongo; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()"
LOOP_2014 = 'until "$0" -c "$1" 127.0.0.1 "$2" 2>/dev/null; do sleep 5; done'
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Starter = Callable[..., subprocess.Popen[bytes]]  # (MongoDB port, **extra environment)


@dataclass(frozen=True)
class Waiter:
    label: str
    start: Starter


def waiters(base: dict[str, str]) -> tuple[Waiter, ...]:
    def pulpinit(extra: dict[str, str]) -> Starter:
        def start(port: int, **more: str) -> subprocess.Popen[bytes]:
            env = {**base, "PULP_DB_SEEDS": f"127.0.0.1:{port}", **extra, **more}
            argv = [sys.executable, "-m", "pulpinit", "check-deps", "--wait"]
            return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        return start

    def loop_2014(port: int, **_: str) -> subprocess.Popen[bytes]:
        argv = ["bash", "-c", LOOP_2014, sys.executable, CHECK_2014, str(port)]
        return subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL)

    return (
        Waiter("pulpinit, armed (default: knock every 0.05 s)", pulpinit({})),
        Waiter(
            "pulpinit, armed off (`PULPINIT_WAIT_ARMED_INTERVAL=0`)", pulpinit({"PULPINIT_WAIT_ARMED_INTERVAL": "0"})
        ),
        Waiter("2014 loop (fixed 5 s)", loop_2014),
    )


def trial(waiter: Waiter, mongo: FakeMongo, delay: float) -> float:
    """Start the waiter, let MongoDB listen after ``delay``; seconds from 'listens' to 'moved on'."""
    with Proxy(("127.0.0.1", mongo.port), up=False) as late:
        proc = waiter.start(late.port)
        time.sleep(delay)
        late.go_up()
        up_at = time.monotonic()
        code = proc.wait(timeout=60)
        moved_on = time.monotonic()
    if code != 0:
        raise RuntimeError(f"{waiter.label} exited {code}")
    return moved_on - up_at


def latencies(
    cast: tuple[Waiter, ...], mongo: FakeMongo, trials: int, parallel: int
) -> dict[tuple[str, tuple[float, float]], list[float]]:
    rng = random.Random(16)
    plan = [(w, window, rng.uniform(*window)) for w in cast for window in WINDOWS for _ in range(trials)]
    rng.shuffle(plan)
    got: dict[tuple[str, tuple[float, float]], list[float]] = {(w.label, win): [] for w in cast for win in WINDOWS}
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [(w.label, window, pool.submit(trial, w, mongo, delay)) for w, window, delay in plan]
        for label, window, future in futures:
            got[(label, window)].append(future.result())
    return got


def cpu_seconds(pid: int) -> float:
    """User + system time of ``pid`` and its waited-for children (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS  # utime stime cutime cstime


@contextmanager
def running(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        if proc.poll() is None and _own_group(proc):
            os.killpg(proc.pid, signal.SIGTERM)  # the 2014 loop's shell and its check
        elif proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=30)


def _own_group(proc: subprocess.Popen[bytes]) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


def refused_port() -> socket.socket:
    """A bound, never listening socket: connections to its port are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def cpu_per_minute(waiter: Waiter, seconds: float, warmup: float) -> float:
    with refused_port() as closed, running(waiter.start(closed.getsockname()[1])) as proc:
        time.sleep(warmup)  # past the interpreter start and the first probes
        before, started = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        after, elapsed = cpu_seconds(proc.pid), time.monotonic() - started
        if proc.poll() is not None:
            raise RuntimeError(f"{waiter.label} ended early (exit {proc.returncode})")
    return (after - before) * 60.0 / elapsed


def rejected_per_minute(waiter: Waiter, seconds: float) -> tuple[float, float]:
    """(authentication attempts, connections) per minute against a MongoDB rejecting the password."""
    wrong = {"PULP_DB_USERNAME": "pulp", "PULP_DB_PASSWORD": "not-the-right-one"}
    with (
        FakeMongo(users={("pulp_database", "pulp"): "the-right-one"}) as mongo,
        Proxy(("127.0.0.1", mongo.port)) as proxy,
        running(waiter.start(proxy.port, **wrong)) as proc,
    ):
        time.sleep(seconds)
        if proc.poll() is not None:
            raise RuntimeError(f"{waiter.label} ended early (exit {proc.returncode})")
        return mongo.command_count("saslContinue") * 60.0 / seconds, proxy.accepted * 60.0 / seconds


def resets_per_minute(waiter: Waiter, seconds: float) -> float:
    """Connections per minute against a MongoDB that accepts and resets every connection."""
    with ResetServer() as server, running(waiter.start(server.port)):
        time.sleep(seconds)
        return server.accepted * 60.0 / seconds


def costs(cast: tuple[Waiter, ...], seconds: float) -> dict[str, dict[str, float]]:
    """Every cost measurement at once (they wait, mostly): one thread each, same window."""
    armed, plain, _ = cast
    jobs: dict[tuple[str, str], Callable[[], object]] = {}
    for w in (armed, plain):
        jobs[(w.label, "rejected")] = lambda w=w: rejected_per_minute(w, seconds)  # type: ignore[misc]
        jobs[(w.label, "resets")] = lambda w=w: resets_per_minute(w, seconds)  # type: ignore[misc]
    for w in cast:
        jobs[(w.label, "cpu")] = lambda w=w: cpu_per_minute(w, seconds, warmup=3.0)  # type: ignore[misc]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {key: pool.submit(job) for key, job in jobs.items()}
        done = {key: future.result() for key, future in futures.items()}
    table: dict[str, dict[str, float]] = {w.label: {} for w in cast}
    for (label, what), value in done.items():
        if what == "rejected":
            table[label]["auth"], table[label]["auth_conns"] = value  # type: ignore[misc]
        else:
            table[label][what] = value  # type: ignore[assignment]
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30, help="trials per waiter and window (default 30)")
    parser.add_argument("--minute", type=float, default=60.0, help="seconds each cost is measured over (default 60)")
    parser.add_argument("--parallel", type=int, default=4, help="latency trials at a time (default 4)")
    parser.add_argument("--quick", action="store_true", help="3 trials, 10 s windows: a smoke run, not figures")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.minute = 3, 10.0
    workdir = Path(tempfile.mkdtemp(prefix="bench-detect-"))
    shutil.copy(SAMPLE, workdir / "server.conf")
    started = time.monotonic()
    try:
        with FakeAmqpBroker() as broker, FakeMongo() as mongo:
            base = {k: v for k, v in os.environ.items() if not k.startswith("PULP")}
            base.update(
                {
                    "PULPINIT_CONFIG": str(workdir / "server.conf"),
                    "PULP_BROKER_URL": broker.url(),
                    "PULPINIT_LOG_FORMAT": "json",
                    "PULPINIT_WAIT_TIMEOUT": str(args.minute + 60),
                }
            )
            cast = waiters(base)
            got = latencies(cast, mongo, args.trials, args.parallel)
            cost = costs(cast, args.minute)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(cast, got, cost, args, time.monotonic() - started)
    return 0


def report(
    cast: tuple[Waiter, ...],
    got: dict[tuple[str, tuple[float, float]], list[float]],
    cost: dict[str, dict[str, float]],
    args: argparse.Namespace,
    elapsed: float,
) -> None:
    armed, plain, old = (w.label for w in cast)
    print(
        f"{args.trials} trials per cell, {args.parallel} at a time, interleaved; costs over {args.minute:g} s; "
        f"{os.cpu_count()} CPUs; whole run {elapsed:.0f} s"
    )
    print()
    print("| waiter | MongoDB listens after | median | p90 | max |")
    print("|---|---|---:|---:|---:|")
    for window in WINDOWS:
        for label in (armed, plain, old):
            values = sorted(got[(label, window)])
            p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
            cells = " | ".join(f"{v:.3f} s" for v in (statistics.median(values), p90, max(values)))
            print(f"| {label} | U({window[0]:g} s, {window[1]:g} s) | {cells} |")
    held = all(
        statistics.median(got[(armed, w)]) <= TARGET_MEDIAN and max(got[(armed, w)]) <= TARGET_MAX for w in WINDOWS
    )
    print(
        f"\narmed: median ≤ {TARGET_MEDIAN:g} s and max ≤ {TARGET_MAX:g} s in both windows: {'yes' if held else 'NO'}; "
        f"median speed-up over the 2014 loop, later window: "
        f"{statistics.median(got[(old, WINDOWS[1])]) / statistics.median(got[(armed, WINDOWS[1])]):.0f}×"
    )
    print()
    print("| per minute | armed | armed off | 2014 loop |")
    print("|---|---:|---:|---:|")
    print(
        f"| full-protocol probes (authentication attempts) against a MongoDB rejecting the password "
        f"| {cost[armed]['auth']:.0f} | {cost[plain]['auth']:.0f} | (exits: TCP connect succeeds) |"
    )
    print(f"| connections to that MongoDB | {cost[armed]['auth_conns']:.0f} | {cost[plain]['auth_conns']:.0f} | — |")
    print(
        f"| connections to a MongoDB that accepts and resets each one "
        f"| {cost[armed]['resets']:.0f} | {cost[plain]['resets']:.0f} | — |"
    )
    print(
        f"| CPU time of the waiting process while MongoDB stays refused "
        f"| {cost[armed]['cpu']:.2f} s | {cost[plain]['cpu']:.2f} s | {cost[old]['cpu']:.2f} s |"
    )
    print(NOTE)


NOTE = """
Reading it: before issue 16 no backoff poller could do better than a median of about half its
interval once the interval sat at its cap (2 s), and halving it doubled the probes. While nothing
listens a TCP connect costs the dependency nothing (the kernel refuses it), so the armed wait
knocks every 0.05 s and runs the full probe the moment a knock is accepted; a failure that
involves the server (here a rejected password, or a reset) is not armed and is probed exactly as
before. The 2014 loop's CPU is a Python process importing pymongo every 5 s."""


if __name__ == "__main__":
    threading.excepthook = lambda a: None  # fake servers' threads may race on shutdown
    sys.exit(main())
