"""How fast does pulpinit notice a dependency coming up, and what does waiting cost?

Three waiters side by side, in the same run, against the same fakes:

* ``armed``: pulpinit's wait; while MongoDB refuses connections it knocks (TCP connect only)
  every 0.05 s and probes the moment one is accepted;
* ``armed off``: the same program with knocking off (paced by ``tests/helpers/pace.py``), the
  plain backoff alone (full probe on a backoff of 0.1 s × 1.5 per attempt with jitter, capped at
  2 s);
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
import itertools
import json
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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers import pace

from pulpinit.testing import SAMPLE_CONF
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.faults import Proxy, ResetServer

SAMPLE = SAMPLE_CONF
WINDOWS = ((0.0, 3.0), (3.0, 8.0))
TARGET_MEDIAN, TARGET_MAX = 0.1, 0.3
CHECK_2014 = "import socket, sys, pymongo; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()"
LOOP_2014 = 'n=0; until "$0" -c "$1" 127.0.0.1 "$2" 2>/dev/null; do n=$((n+1)); sleep 5; done; echo $n'
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Starter = Callable[..., subprocess.Popen[str]]  # (MongoDB port, **extra environment)


@dataclass(frozen=True)
class Waiter:
    label: str
    start: Starter  # its output (pulpinit's log, the loop's count of failed checks) on a pipe
    first_check_answered: Callable[[str], bool]  # from that output: MongoDB answered the first check
    settles: float | None = None  # pulpinit: a bound of its detection time, for the gate; None: not gated


def pulpinit_first_check(log: str) -> bool:
    """Whether MongoDB's ``dep.up`` came from the first probe (it listened before pulpinit probed)."""
    for line in log.splitlines():
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "dep.up" and event.get("dependency") == "mongodb":
            return bool(event["attempts"] == 1)
    raise RuntimeError("no dep.up line for mongodb in pulpinit's log")


def waiters(base: dict[str, str]) -> tuple[Waiter, ...]:
    def pulpinit(program: list[str]) -> Starter:
        def start(port: int, **more: str) -> subprocess.Popen[str]:
            env = {**base, "PULP_DB_SEEDS": f"127.0.0.1:{port}", **more}
            argv = [*program, "check-deps", "--wait"]
            return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        return start

    def loop_2014(port: int, **_: str) -> subprocess.Popen[str]:
        argv = ["bash", "-c", LOOP_2014, sys.executable, CHECK_2014, str(port)]
        return subprocess.Popen(argv, start_new_session=True, stdout=subprocess.PIPE, text=True)

    plain, off = [sys.executable, "-m", "pulpinit"], pace.argv(armed_interval=0)
    return (
        Waiter("pulpinit, armed (knock every 0.05 s)", pulpinit(plain), pulpinit_first_check, settles=0.5),
        Waiter("pulpinit, armed off (the plain backoff alone)", pulpinit(off), pulpinit_first_check, 2.5),
        Waiter("2014 loop (fixed 5 s)", loop_2014, lambda out: out.strip() == "0"),
    )


#: Seconds a waiter process takes to start (its CPU burst: interpreter, imports, first probes).
STARTUP = 0.4
#: Seconds kept free before a trial's dependency comes up.
MARGIN = 0.1


class Gate:
    """Lets pulpinit trials run side by side without disturbing each other's measured moments.

    A trial's process starts only when neither its start-up nor its coming detection window
    (MongoDB listens → the waiter exits) overlaps another running trial's start-up or detection
    window; a trial whose dependency is up blocks every start until it is done.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running: dict[int, tuple[float, float, float]] = {}  # key → (start, up, settles)
        self._keys = itertools.count()

    @contextmanager
    def admit(self, delay: float, settles: float) -> Iterator[float]:
        """Wait until the trial may start; yields its start time (monotonic)."""
        with self._changed:
            while not self._free(now := time.monotonic(), delay, settles):
                self._changed.wait(0.01)
            key = next(self._keys)
            self._running[key] = (now, now + delay, settles)
        try:
            yield now
        finally:
            with self._changed:
                del self._running[key]
                self._changed.notify_all()

    def _free(self, now: float, delay: float, settles: float) -> bool:
        mine = ((now, now + STARTUP), (now + delay - MARGIN, now + delay + settles))
        for start, up, their_settles in self._running.values():
            if now >= up - MARGIN:
                return False  # its dependency is up: it is being measured
            theirs = ((start, start + STARTUP), (up - MARGIN, up + their_settles))
            if any(a[0] < b[1] and b[0] < a[1] for a in mine for b in theirs):
                return False
        return True


@dataclass(frozen=True)
class Trial:
    latency: float  # seconds from "MongoDB listens" to "the waiter moved on"
    start_up_race: bool  # MongoDB listened before the waiter's first check: the latency is start-up


def trial(waiter: Waiter, mongo: FakeMongo, delay: float, gate: Gate | None = None) -> Trial:
    """Start the waiter, let MongoDB listen after ``delay``; seconds from 'listens' to 'moved on'."""
    with Proxy(("127.0.0.1", mongo.port), up=False) as late:
        admitted = gate.admit(delay, waiter.settles or 0.0) if gate and waiter.settles else nullcontext(None)
        with admitted as admitted_at:
            start = time.monotonic() if admitted_at is None else admitted_at
            proc = waiter.start(late.port)
            time.sleep(max(0.0, start + delay - time.monotonic()))
            watchdog = threading.Timer(60, proc.kill)  # a hung waiter fails the trial, not the run
            watchdog.start()
            late.go_up()
            up_at = time.monotonic()
            code = proc.wait()  # blocks in waitpid: wait(timeout) polls, every 50 ms at worst
            moved_on = time.monotonic()
            watchdog.cancel()
    output = proc.communicate()[0 if waiter.settles is None else 1]
    if code != 0:
        raise RuntimeError(f"{waiter.label} exited {code}")
    return Trial(moved_on - up_at, waiter.first_check_answered(output))


Cell = tuple[str, tuple[float, float]]  # (waiter, window)


def latencies(cast: tuple[Waiter, ...], mongo: FakeMongo, trials: int, parallel: int) -> dict[Cell, list[Trial]]:
    """Every trial, in a seeded interleaved order: pulpinit's through the gate, then the 2014 loop's.

    The 2014 loop's trials (seconds each, a check process every 5 s that no gate can place) run
    on their own, ``parallel`` + 2 at a time: a disturbance there is small beside its 5 s interval.
    """
    rng = random.Random(16)
    plan = [(w, window, rng.uniform(*window)) for w in cast for window in WINDOWS for _ in range(trials)]
    rng.shuffle(plan)
    got: dict[Cell, list[Trial]] = {(w.label, win): [] for w in cast for win in WINDOWS}
    gate = Gate()
    for gated, workers in ((True, parallel), (False, parallel + 2)):
        phase = [(w, window, delay) for w, window, delay in plan if bool(w.settles) == gated]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [(w.label, window, pool.submit(trial, w, mongo, delay, gate)) for w, window, delay in phase]
            for label, window, future in futures:
                got[(label, window)].append(future.result())
    return got


def cpu_seconds(pid: int) -> float:
    """User + system time of ``pid`` and its waited-for children (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS  # utime stime cutime cstime


@contextmanager
def running(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    try:
        yield proc
    finally:
        if proc.poll() is None and _own_group(proc):
            os.killpg(proc.pid, signal.SIGTERM)  # the 2014 loop's shell and its check
        elif proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=30)


def _own_group(proc: subprocess.Popen[str]) -> bool:
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
    args.load_before = f"{os.getloadavg()[0]:.2f}"
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


def summary(trials: list[Trial]) -> tuple[float, float, float]:
    """(median, p90, max) of the latencies."""
    values = sorted(t.latency for t in trials)
    return statistics.median(values), values[min(len(values) - 1, int(0.9 * len(values)))], values[-1]


def report(
    cast: tuple[Waiter, ...],
    got: dict[Cell, list[Trial]],
    cost: dict[str, dict[str, float]],
    args: argparse.Namespace,
    elapsed: float,
) -> None:
    armed, plain, old = (w.label for w in cast)
    print(
        f"{args.trials} trials per cell; pulpinit's {args.parallel} at a time through a gate that keeps every "
        f"trial's start-up and detection apart from the others'; costs over {args.minute:g} s; "
        f"{os.cpu_count()} CPUs; load average before/after {args.load_before} / {os.getloadavg()[0]:.2f}; "
        f"whole run {elapsed:.0f} s"
    )
    print()
    print(
        "| waiter | MongoDB listens after | median | p90 | max | start-up races: trials, max "
        "| max of the others (already waiting) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for window in WINDOWS:
        for label in (armed, plain, old):
            trials = got[(label, window)]
            races = [t for t in trials if t.start_up_race]
            waiting = [t for t in trials if not t.start_up_race]
            cells = " | ".join(f"{v:.3f} s" for v in summary(trials))
            raced = f"{len(races)}, {max(t.latency for t in races):.3f} s" if races else "0"
            rest = f"{max(t.latency for t in waiting):.3f} s" if waiting else "—"
            print(f"| {label} | U({window[0]:g} s, {window[1]:g} s) | {cells} | {raced} | {rest} |")

    def holds(trials: list[Trial]) -> str:
        median, _, worst = summary(trials)
        return "yes" if median <= TARGET_MEDIAN and worst <= TARGET_MAX else "NO"

    everyone = [holds(got[(armed, w)]) for w in WINDOWS]
    already = [holds([t for t in got[(armed, w)] if not t.start_up_race]) for w in WINDOWS]
    later = statistics.median(t.latency for t in got[(old, WINDOWS[1])]) / summary(got[(armed, WINDOWS[1])])[0]
    print(
        f"\narmed, median ≤ {TARGET_MEDIAN:g} s and max ≤ {TARGET_MAX:g} s, U(0 s, 3 s) / U(3 s, 8 s): "
        f"all trials {everyone[0]} / {everyone[1]}; trials where pulpinit was already waiting "
        f"{already[0]} / {already[1]}. Median speed-up over the 2014 loop, later window: {later:.0f}×"
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
A start-up race is a trial whose MongoDB listened before the waiter's first check (it answered
that check): its latency is the rest of the waiter's own start-up (interpreter, imports, settings;
`bench_startup.py` measures it), not the wait.

Reading it: no backoff poller can do better than a median of about half its
interval once the interval sits at its cap (2 s), and halving it doubles the probes. While nothing
listens a TCP connect costs the dependency nothing (the kernel refuses it), so the armed wait
knocks every 0.05 s and runs the full probe the moment a knock is accepted; a failure that
involves the server (here a rejected password, or a reset) is not armed and is probed exactly as
before. The 2014 loop's CPU is a Python process importing pymongo every 5 s."""


if __name__ == "__main__":
    threading.excepthook = lambda a: None  # fake servers' threads may race on shutdown
    sys.exit(main())
