"""Start-to-exec overhead: from container start to the role's process, dependencies up, migrations done.

Whole processes, median of ``--runs`` interleaved runs, all measured in the same run:

* ``pulpinit run -- /bin/true``: settings, configure (no change after the first run), both probes
  over their protocols, the migration-state check, privilege drop (to ``nobody`` when root),
  exec — against the fake MongoDB and the fake AMQP 1.0 broker on loopback;
* the 2014 path, re-enacted: four ``augtool -s set`` calls (default flags, the stock MySQL lens the
  2014 lens was cloned from), the ``test_db_available`` check (import pymongo, connect), then
  ``runuser nobody -s /bin/bash -c /bin/true`` — with the dependency up, so none of its 5 s sleeps;
* ``pulpinit check-deps`` as a whole process (a Kubernetes exec probe allows 1 s by default);
* floors: ``tini -s -- /bin/true``, ``dumb-init /bin/true``, ``python -c pass``.

    .venv/bin/python benchmarks/bench_startup.py --runs 15
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pulpinit.testing import SAMPLE_CONF
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = SAMPLE_CONF

RUN_2014 = r"""
set -e
conf=/etc/pulp/server.conf
aug() {
  augtool -r "$ROOT" --transform "MySQL.lns incl $conf" -s set "/files$conf/target[. = '$1']/$2" "$3" >/dev/null
}
aug database seeds "127.0.0.1:$DB_PORT"
aug server server_name pulp.example.com
aug messaging url "tcp://127.0.0.1:$MSG_PORT"
aug tasks broker_url "qpid://guest@127.0.0.1:$MSG_PORT/"
"$PYTHON" -c "import pymongo, sys; pymongo.MongoClient('127.0.0.1', int(sys.argv[1])).admin.command('ping')" "$DB_PORT"
exec runuser nobody -s /bin/bash -c /bin/true
"""


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:4]} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    work.chmod(0o755)  # server.conf must be readable by PULPINIT_USER (pulpinit checks it, 78)
    (work / "etc/pulp").mkdir(parents=True)
    shutil.copy(SAMPLE, work / "etc/pulp/server.conf")
    shutil.copy(SAMPLE, work / "server.conf")
    base = {k: v for k, v in os.environ.items() if not k.startswith("PULP")}
    with FakeMongo() as mongo, FakeAmqpBroker() as broker:
        env = {
            **base,
            "PULPINIT_CONFIG": str(work / "server.conf"),
            "PULP_DB_SEEDS": mongo.hostport,
            "PULP_BROKER_URL": broker.url(),
            "PULPINIT_USER": "nobody",
            "PULPINIT_LOG_FORMAT": "json",
            "PULPINIT_MIGRATION_FINGERPRINT": "bench",
            "PULPINIT_MANAGE_DB": "/bin/true",
            "PULPINIT_LOG_LEVEL": "warning",
        }
        subprocess.run(
            [sys.executable, "-m", "pulpinit", "migrate"], env=env, check=True
        )  # migrations done, config written: a warm restart
        env_2014 = {
            **base,
            "ROOT": str(work),
            "DB_PORT": str(mongo.port),
            "MSG_PORT": str(broker.port),
            "PYTHON": sys.executable,
        }
        cases: dict[str, Callable[[], float]] = {
            "pulpinit run -- /bin/true": lambda: timed(
                [sys.executable, "-m", "pulpinit", "run", "--", "/bin/true"], env
            ),
            "pulpinit check-deps (readiness probe, both up)": lambda: timed(
                [sys.executable, "-m", "pulpinit", "check-deps"], env
            ),
            "2014 scripts (4 augtool, test_db_available, runuser)": lambda: timed(["bash", "-c", RUN_2014], env_2014),
            "python -c pass": lambda: timed([sys.executable, "-c", "pass"], base),
        }
        for name, argv in (
            ("tini -s -- /bin/true", ["tini", "-s", "--", "/bin/true"]),
            ("dumb-init /bin/true", ["dumb-init", "/bin/true"]),
        ):
            if shutil.which(argv[0]):
                cases[name] = functools.partial(timed, argv, base)
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, case in cases.items():
                samples[name].append(case())
    shutil.rmtree(work, ignore_errors=True)
    ours = statistics.median(samples["pulpinit run -- /bin/true"])
    print("| start to exec (dependencies up, migrations done) | median | vs pulpinit |")
    print("|---|---|---|")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1000:.0f} ms | {median / ours:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
