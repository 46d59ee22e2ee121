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

from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.faults import Proxy, ResetServer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "pulpinit" / "testing" / "sample-server.conf"

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


def pulpinit_wait(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pulpinit", "check-deps", "--wait"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def loop_2014(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", LOOP_2014, "127.0.0.1", str(port)])


def trial(start_process, mongo: FakeMongo, rng: random.Random) -> float:
    """Start the waiter, let MongoDB come up after a random delay; seconds from 'answers' to 'moved on'."""
    with Proxy(("127.0.0.1", mongo.port), up=False) as late:
        proc = start_process(late.port)
        time.sleep(rng.uniform(0.5, 4.0))
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
        proc = subprocess.Popen([sys.executable, "-m", "pulpinit", "check-deps", "--wait"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc.wait(timeout=seconds + 30)
        return proxy.accepted * 60.0 / seconds
    finally:
        proxy.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--down-seconds", type=float, default=20.0)
    args = parser.parse_args()
    rng = random.Random(1)
    workdir = Path(tempfile.mkdtemp(prefix="bench-detect-"))
    shutil.copy(SAMPLE, workdir / "server.conf")
    with FakeAmqpBroker() as broker, FakeMongo() as mongo:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PULP")}
        base.update({"PULPINIT_CONFIG": str(workdir / "server.conf"), "PULP_BROKER_URL": broker.url(),
                     "PULPINIT_LOG_FORMAT": "json"})

        def start_pulpinit(port: int) -> subprocess.Popen[bytes]:
            return pulpinit_wait({**base, "PULP_DB_SEEDS": f"127.0.0.1:{port}"})

        ours = [trial(start_pulpinit, mongo, rng) for _ in range(args.trials)]
        theirs = [trial(loop_2014, mongo, rng) for _ in range(args.trials)]
        attempts = attempts_per_minute(base, args.down_seconds)
    shutil.rmtree(workdir, ignore_errors=True)
    print("| detection latency (dependency answers → waiter moves on) | median | max |")
    print("|---|---|---|")
    print(f"| pulpinit check-deps --wait (backoff 0.1 s → 2 s) | {statistics.median(ours):.2f} s | {max(ours):.2f} s |")
    print(f"| 2014 loop (fixed 5 s) | {statistics.median(theirs):.2f} s | {max(theirs):.2f} s |")
    print(f"| ratio (2014 / pulpinit, median) | {statistics.median(theirs) / statistics.median(ours):.1f}× | |")
    print(f"\nconnection attempts per minute against a MongoDB that stays down: {attempts:.0f} "
          f"(measured over {args.down_seconds:g} s; target ≤ 60)")
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda a: None  # fake servers' threads may race on shutdown
    sys.exit(main())
