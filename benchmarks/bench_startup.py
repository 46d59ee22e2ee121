"""Start-up, side by side: pulpinit against a pinned earlier revision and the 2014 scripts, in one run.

Whole processes, ``--runs`` paired runs of each command, the two revisions alternating (A/B,
then B/A), medians compared within the same run:

* ``configure``: a fresh copy of Pulp 2.21's stock server.conf, four ``PULP_*`` values written;
* ``run -- /bin/true``: dependencies up, migrations done, server.conf already written (a warm
  restart): settings, configure (no change), both probes over their protocols, the migration
  state, the privilege drop (to ``nobody`` when root), the exec; and its peak memory
  (``ru_maxrss`` of the process, which covers the Python before the exec);
* ``check-deps`` (a Kubernetes exec probe allows 1 s by default), both dependencies up.

The dependencies are pulpinit's fake MongoDB (one per revision: each records its own migration
state) and its fake AMQP 0-10 broker on loopback.  The earlier revision (``--baseline``,
default ``e99491c``) is installed from ``git archive`` with ``pip install`` into a venv of its
own under ``~/.cache/pulpinit/bench`` (made once); the current tree is installed the same way
(not editable, as an image installs it: an editable install adds an import hook to every
start), so both run from equal installs with the dependencies their ``setup.cfg`` allows.

Beside them, in the same run:

* the 2014 config step: four ``augtool -s set`` calls (default flags, the stock MySQL lens the
  2014 lens was cloned from) on a fresh copy of the same file;
* the 2014 start: those four calls, ``test_db_available`` (import pymongo, connect), then
  ``runuser nobody -s /bin/bash -c /bin/true``, the dependency up (none of its 5 s sleeps);
* floors: ``python -c pass`` and the third-party imports each command cannot avoid (structlog
  to log, without the asyncio it imports and pulpinit defers; augeas to read server.conf; pymongo
  to speak to MongoDB), in the current venv;
  ``tini -s -- /bin/true`` and ``dumb-init /bin/true``.

    .venv/bin/python benchmarks/bench_startup.py --runs 15
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pulpinit.testing import SAMPLE_CONF
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo

ROOT = Path(__file__).resolve().parent.parent
STOCK = ROOT.parent / "shared" / "fixtures" / "pulp-2.21-server.conf"
# A user's clone has no ../shared: the project's sample file is in the same (2.12+) dialect.
SOURCE = STOCK if STOCK.is_file() else SAMPLE_CONF
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pulpinit" / "bench"
BASELINE = "e99491c"
CONF = "etc/pulp/server.conf"
TIME = shutil.which("time", path="/usr/bin:/bin")  # GNU time, for the peak memory
#: The four keys the 2014 scripts set, with pulpinit's variable for each.
VALUES = {
    ("database", "seeds", "PULP_DB_SEEDS"): "db:27017",
    ("server", "server_name", "PULP_SERVER_NAME"): "pulp.example.com",
    ("messaging", "url", "PULP_MESSAGING_URL"): "tcp://msg:5672",
    ("tasks", "broker_url", "PULP_BROKER_URL"): "qpid://msg:5672/",
}
#: What each command cannot avoid importing: structlog (every command logs), augeas (server.conf
#: is read by every command), pymongo (the probe and the migration state speak to MongoDB).
#: structlog's package imports asyncio, which pulpinit never uses and defers (pulpinit.log.defer):
#: an empty module stands in for it here.
NO_ASYNCIO = "import sys, types; sys.modules['asyncio'] = types.ModuleType('asyncio'); "
FLOORS = {
    "configure": NO_ASYNCIO + "import structlog, augeas",
    "run": NO_ASYNCIO + "import structlog, augeas, pymongo",
}

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

CONFIGURE_2014 = r"""
set -e
conf=/etc/pulp/server.conf
aug() {
  augtool -r "$ROOT" --transform "MySQL.lns incl $conf" -s set "/files$conf/target[. = '$1']/$2" "$3" >/dev/null
}
aug database seeds db:27017
aug server server_name pulp.example.com
aug messaging url tcp://msg:5672
aug tasks broker_url qpid://guest@msg:5672/
"""


@dataclass
class Sample:
    seconds: list[float] = field(default_factory=list)
    maxrss_kib: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def timed(argv: list[str], env: dict[str, str]) -> float:
    """The wall time of one run of ``argv`` to its end, in seconds (a failure raises); other benchmarks use it."""
    sample = Sample()
    measured(argv, env, sample)
    return sample.seconds[0]


def measured(argv: list[str], env: dict[str, str], sample: Sample) -> None:
    """Run ``argv`` to its end; add its wall time and peak RSS to ``sample`` (a failure raises).

    The peak RSS comes from GNU ``time`` (``%M``, the child's ``ru_maxrss``): a child forked or
    spawned from this process would start with this process's own high-water mark, so the
    measured command must be forked by a small process.  It runs in ``/``: ``python -m`` puts
    the working directory first on ``sys.path``, and a work tree there would be imported
    instead of the installed revision.
    """
    with tempfile.NamedTemporaryFile("r") as rss:
        wrapped = ["/usr/bin/time", "-f", "%M", "-o", rss.name, *argv] if TIME else argv
        started = time.perf_counter()
        done = subprocess.run(wrapped, env=env, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{argv[:4]} exited {done.returncode}: {done.stderr.decode()[-800:]}")
        sample.seconds.append(elapsed)
        if TIME:
            sample.maxrss_kib.append(int(rss.read().split()[-1]))


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def _make_venv(source: Path, venv: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(source)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return venv / "bin" / "python"


def install_revision(revision: str) -> Path:
    """The Python of a venv holding ``revision`` installed from ``git archive`` (made once, cached)."""
    sha = _git("rev-parse", "--verify", f"{revision}^{{commit}}")
    home = CACHE / sha[:12]
    python = home / "venv" / "bin" / "python"
    if (home / ".installed").is_file():
        return python
    shutil.rmtree(home, ignore_errors=True)
    (home / "src").mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha], check=True, capture_output=True).stdout
    with tempfile.TemporaryFile() as tmp:
        tmp.write(archive)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as tar:
            tar.extractall(home / "src", filter="data")
    _make_venv(home / "src", home / "venv")
    (home / ".installed").touch()
    return python


def install_worktree(into: Path) -> Path:
    """The Python of a venv holding the work tree as it is (tracked and new files), not editable."""
    src = into / "src"
    for name in _git("ls-files", "-co", "--exclude-standard", "-z").split("\0"):
        if name and (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    return _make_venv(src, into / "venv")


def fresh_root(base: Path) -> Path:
    root = Path(tempfile.mkdtemp(dir=base))
    root.chmod(0o755)
    (root / CONF).parent.mkdir(parents=True)
    (root / "etc").chmod(0o755)
    (root / CONF).parent.chmod(0o755)
    shutil.copyfile(SOURCE, root / CONF)
    (root / CONF).chmod(0o644)
    return root


@contextmanager
def warm_restart(python: Path, work: Path, broker: FakeAmqpBroker, base: dict[str, str]) -> Iterator[dict[str, str]]:
    """A fake MongoDB of its own for ``python``'s revision, migrations recorded done, server.conf written."""
    with FakeMongo() as mongo:
        conf = Path(tempfile.mkdtemp(dir=work)) / "server.conf"
        conf.parent.chmod(0o755)
        shutil.copyfile(SOURCE, conf)
        conf.chmod(0o644)
        env = {
            **base,
            "PULPINIT_CONFIG": str(conf),
            "PULP_DB_SEEDS": mongo.hostport,
            "PULP_BROKER_URL": broker.url(),
            "PULPINIT_MIGRATION_FINGERPRINT": "bench",
            "PULPINIT_MANAGE_DB": "/bin/true",
        }
        subprocess.run(
            [str(python), "-m", "pulpinit", "migrate"], env=env, cwd="/", check=True, stderr=subprocess.DEVNULL
        )
        yield env


Pair = tuple[Callable[[], None], Callable[[], None]]


def fixed(env: dict[str, str]) -> Callable[[], dict[str, str]]:
    return lambda: env


def paired(runs: int, pairs: list[Pair]) -> None:
    """Run each pair ``runs`` times, alternating which side goes first."""
    for index in range(runs):
        for a, b in pairs:
            for run in (b, a) if index % 2 else (a, b):
                run()


@dataclass
class Bench:
    """The samples of one run, by name (``configure then``, ``run now``, ``2014 start``, ...)."""

    work: Path
    base: dict[str, str]
    samples: dict[str, Sample] = field(default_factory=dict)
    load_before: float = 0.0
    load_after: float = 0.0
    wall: float = 0.0

    def case(self, name: str, argv: list[str], env: Callable[[], dict[str, str]]) -> Callable[[], None]:
        self.samples[name] = sample = Sample()
        return lambda: measured(argv, env(), sample)

    def fresh_conf(self, env: dict[str, str]) -> Callable[[], dict[str, str]]:
        return lambda: {**env, "PULPINIT_CONFIG": str(fresh_root(self.work) / CONF)}

    def fresh_root(self, env: dict[str, str]) -> Callable[[], dict[str, str]]:
        return lambda: {**env, "ROOT": str(fresh_root(self.work))}

    def ms(self, name: str) -> str:
        return f"{self.samples[name].median * 1000:.0f} ms"

    def ratio(self, a: str, b: str) -> str:
        return f"{self.samples[a].median / self.samples[b].median:.2f}×"

    def rss(self, name: str) -> float:
        return statistics.median(self.samples[name].maxrss_kib) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--baseline", default=BASELINE, help="the earlier revision (default %(default)s)")
    parser.add_argument("--python", help="run the current code with this Python instead of a fresh install")
    args = parser.parse_args()
    for tool in ("augtool", "runuser"):
        if shutil.which(tool) is None:
            print(f"needs {tool}", file=sys.stderr)
            return 2
    then = install_revision(args.baseline)
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    work.chmod(0o755)  # server.conf must be readable by PULPINIT_USER (pulpinit checks it, 78)
    try:
        now = Path(args.python) if args.python else install_worktree(work / "current")
        base = {k: v for k, v in os.environ.items() if not k.startswith("PULP")}
        base.update({"PULPINIT_USER": "nobody", "PULPINIT_LOG_FORMAT": "json", "PULPINIT_LOG_LEVEL": "warning"})
        bench = Bench(work, base)
        measure(bench, args.runs, then, now)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(bench, args)
    return 0


def measure(bench: Bench, runs: int, then: Path, now: Path) -> None:
    base, case = bench.base, bench.case
    configure = {**base, **{variable: value for (_, _, variable), value in VALUES.items()}}
    with (
        FakeAmqpBroker() as broker,
        warm_restart(then, bench.work, broker, base) as env_then,
        warm_restart(now, bench.work, broker, base) as env_now,
    ):
        env_2014 = {
            **base,
            "DB_PORT": env_now["PULP_DB_SEEDS"].rpartition(":")[2],
            "MSG_PORT": str(broker.port),
            "PYTHON": str(now),
        }
        pairs: list[Pair] = []
        for command in (["configure"], ["run", "--", "/bin/true"], ["check-deps"]):
            name = command[0]
            sides = []
            for when, python, env in (("then", then, env_then), ("now", now, env_now)):
                environ = bench.fresh_conf(configure) if name == "configure" else fixed(env)
                sides.append(case(f"{name} {when}", [str(python), "-m", "pulpinit", *command], environ))
            pairs.append((sides[0], sides[1]))
        pairs.append(
            (
                case("2014 configure", ["bash", "-c", CONFIGURE_2014], bench.fresh_root(base)),
                case("2014 start", ["bash", "-c", RUN_2014], bench.fresh_root(env_2014)),
            )
        )
        pairs.append(
            (
                case("python -c pass", [str(now), "-c", "pass"], fixed(base)),
                case("floor configure", [str(now), "-c", FLOORS["configure"]], fixed(base)),
            )
        )
        tini = ["tini", "-s", "--", "/bin/true"] if shutil.which("tini") else ["/bin/true"]
        pairs.append(
            (
                case("floor run", [str(now), "-c", FLOORS["run"]], fixed(base)),
                case("tini", tini, fixed(base)),
            )
        )
        bench.load_before = os.getloadavg()[0]
        started = time.monotonic()
        paired(runs, pairs)
        bench.wall = time.monotonic() - started
        bench.load_after = os.getloadavg()[0]


def report(bench: Bench, args: argparse.Namespace) -> None:
    ms, ratio = bench.ms, bench.ratio
    print(
        f"{args.runs} paired runs (the two revisions alternating), medians; {os.cpu_count()} CPUs; load average "
        f"before/after {bench.load_before:.2f} / {bench.load_after:.2f}; whole run {bench.wall:.0f} s"
    )
    print()
    print(f"| command | then ({args.baseline}) | now | now/then | floor | now − floor |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, name, floor in (
        ("`configure` (2.21 server.conf, 4 keys written)", "configure", "floor configure"),
        ("`run -- /bin/true` (dependencies up, migrations done)", "run", "floor run"),
        ("`check-deps` (both up)", "check-deps", "floor run"),
    ):
        then, now = f"{name} then", f"{name} now"
        distance = (bench.samples[now].median - bench.samples[floor].median) * 1000
        print(f"| {label} | {ms(then)} | {ms(now)} | **{ratio(now, then)}** | {ms(floor)} | {distance:.0f} ms |")
    if TIME:
        then_mib, now_mib, floor_mib = (bench.rss(name) for name in ("run then", "run now", "floor run"))
        print(
            f"| peak memory of `run` (`ru_maxrss`) | {then_mib:.1f} MiB | {now_mib:.1f} MiB "
            f"| **{now_mib / then_mib:.2f}×** | {floor_mib:.1f} MiB | {now_mib - floor_mib:.1f} MiB |"
        )
    print()
    print("| against the 2014 scripts | 2014 | now | speed-up |")
    print("|---|---:|---:|---:|")
    for label, old, new in (
        ("config step: 4 × `augtool -s set`, `pulpinit configure`", "2014 configure", "configure now"),
        ("start to exec: the 2014 scripts, `pulpinit run -- /bin/true`", "2014 start", "run now"),
    ):
        print(f"| {label} | {ms(old)} | {ms(new)} | **{ratio(old, new)}** |")
    print()
    print("| floor (the current venv) | median |")
    print("|---|---:|")
    print(f"| `python -c pass` | {ms('python -c pass')} |")
    print(f"| structlog (asyncio stood in for) and augeas: configure's | {ms('floor configure')} |")
    print(f"| structlog (asyncio stood in for), augeas and pymongo: run's and check-deps' | {ms('floor run')} |")
    print(f"| `tini -s -- /bin/true` | {bench.samples['tini'].median * 1000:.1f} ms |")


if __name__ == "__main__":
    sys.exit(main())
