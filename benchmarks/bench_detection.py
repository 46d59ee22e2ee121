"""How fast does pulpinit notice a dependency coming up, and what does waiting cost?

Trial: the fake broker is up; the fake MongoDB starts at a random moment 0.5-4 s after
``pulpinit check-deps --wait`` (a whole process) starts.  Measured: from the moment MongoDB
answers to the moment pulpinit exits 0 ("moves on").  Side by side, in the same run, the 2014
loop (``until test_db_available; do sleep 5; done``, modelled as a Python TCP check every 5 s,
as the 2014 script effectively did).  Also: connection attempts per minute against a MongoDB
that stays down (a listener that accepts and resets every connection, counting them).

    .venv/bin/python benchmarks/bench_detection.py --trials 10
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pulpinit.testing import SAMPLE_CONF
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.faults import Proxy, ResetServer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = SAMPLE_CONF

LOOP_2014 = r"""
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
for attempt in range(12):
    try:
        socket.create_connection((host, port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(5)
sys.exit(2)
"""


NOTE = """
Reading it: a dependency that answers during the start race (the first seconds) is caught within
the early, short intervals. Later the interval sits at its cap (2 s by default) and no poller does
better than a median of about half its interval, so a 0.5 s median there needs a 1 s interval,
i.e. about 60 attempts a minute: the attempt budget. `PULPINIT_WAIT_MAX_INTERVAL=1` makes that
trade (its row above); the default keeps the cap at 2 s and the attempts near 30 a minute."""


def pulpinit_wait(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pulpinit", "check-deps", "--wait"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def loop_2014(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", LOOP_2014, "127.0.0.1", str(port)])


def trial(start_process, mongo: FakeMongo, rng: random.Random, window: tuple[float, float]) -> float:
    """Start the waiter, let MongoDB come up after a random delay; seconds from 'answers' to 'moved on'."""
    with Proxy(("127.0.0.1", mongo.port), up=False) as late:
        proc = start_process(late.port)
        time.sleep(rng.uniform(*window))
        late.go_up()
        up_at = time.monotonic()
        code = proc.wait(timeout=60)
        moved_on = time.monotonic()
    if code != 0:
        raise RuntimeError(f"waiter exited {code}")
    return moved_on - up_at


def attempts_per_minute(env: dict[str, str], seconds: float) -> float:
    """Connection attempts pulpinit makes against a MongoDB that accepts and resets everything."""
    proxy = ResetServer().start()
    try:
        env = {**env, "PULP_DB_SEEDS": f"127.0.0.1:{proxy.port}", "PULPINIT_WAIT_TIMEOUT": str(seconds)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "pulpinit", "check-deps", "--wait"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proc.wait(timeout=seconds + 30)
        return proxy.accepted * 60.0 / seconds
    finally:
        proxy.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--down-seconds", type=float, default=60.0)
    args = parser.parse_args()
    rng = random.Random(1)
    workdir = Path(tempfile.mkdtemp(prefix="bench-detect-"))
    shutil.copy(SAMPLE, workdir / "server.conf")
    with FakeAmqpBroker() as broker, FakeMongo() as mongo:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PULP")}
        base.update(
            {
                "PULPINIT_CONFIG": str(workdir / "server.conf"),
                "PULP_BROKER_URL": broker.url(),
                "PULPINIT_LOG_FORMAT": "json",
            }
        )

        def start_pulpinit(port: int) -> subprocess.Popen[bytes]:
            return pulpinit_wait({**base, "PULP_DB_SEEDS": f"127.0.0.1:{port}"})

        def start_capped(port: int) -> subprocess.Popen[bytes]:
            return pulpinit_wait({**base, "PULP_DB_SEEDS": f"127.0.0.1:{port}", "PULPINIT_WAIT_MAX_INTERVAL": "1"})

        rows = []
        for label, start, window in (
            ("pulpinit, defaults (0.1 s × 1.5 per attempt, 2 s cap)", start_pulpinit, (0.0, 3.0)),
            ("2014 loop (fixed 5 s)", loop_2014, (0.0, 3.0)),
            ("pulpinit, defaults, later start", start_pulpinit, (3.0, 8.0)),
            ("pulpinit, PULPINIT_WAIT_MAX_INTERVAL=1, later start", start_capped, (3.0, 8.0)),
            ("2014 loop (fixed 5 s), later start", loop_2014, (3.0, 8.0)),
        ):
            got = [trial(start, mongo, rng, window) for _ in range(args.trials)]
            rows.append((label, window, statistics.median(got), max(got)))
        attempts = attempts_per_minute(base, args.down_seconds)
        capped = attempts_per_minute({**base, "PULPINIT_WAIT_MAX_INTERVAL": "1"}, args.down_seconds)
    shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"| detection latency, {args.trials} trials each (answers → waiter moves on) "
        "| MongoDB comes up after | median | max |"
    )
    print("|---|---|---|---|")
    for label, window, median, worst in rows:
        print(f"| {label} | U({window[0]:g} s, {window[1]:g} s) | {median:.2f} s | {worst:.2f} s |")
    print(f"\nratio, first start window (2014 median / pulpinit median): {rows[1][2] / rows[0][2]:.1f}×")
    print(
        f"\nconnection attempts per minute against a MongoDB that stays down (measured over "
        f"{args.down_seconds:g} s; target ≤ 60): defaults {attempts:.0f}, PULPINIT_WAIT_MAX_INTERVAL=1 {capped:.0f}"
    )
    print(NOTE)
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda a: None  # fake servers' threads may race on shutdown
    sys.exit(main())
