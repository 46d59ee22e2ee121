"""Hold a real pulpinit process in each of its blocking points, for the stop-signal tests and benchmark.

:func:`hold` prepares real inputs, starts ``python -m pulpinit`` — plainly, or as PID 1 of a new
PID namespace (``unshare --pid --fork --mount-proc``, root only) — and returns once the process is
observably blocked at that point.  Nothing of pulpinit is mocked; the blocking is caused from
outside, the way it happens in a cluster:

==================  =========  ==================================================================
point               stage      how pulpinit is held there
==================  =========  ==================================================================
``settings-rpm``    settings   a stand-in ``rpm`` first on ``PATH`` that never answers, while the
                               migration fingerprint is derived (``rpm -qa``)
``configure``       configure  another writer (a replica sharing the volume) holds the ``flock``
                               on server.conf that every writer takes before replacing it
``wait``            wait       MongoDB's port refuses connections
``lock-wait``       migrate    another owner's live lease, written straight into the fake MongoDB
``migration-wait``  migrate    a fingerprint whose migration is never recorded as done
``migration-run``   migrate    a stand-in pulp-manage-db that runs for minutes (it dies at once on
                               SIGTERM, so its own shutdown costs nothing)
==================  =========  ==================================================================

Each run gets its own database (the lock and the state are per database) and work directory.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pulpinit.migrate.migrator import LOCK_ID
from pulpinit.testing import standins
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo

SAMPLE = Path(__file__).parent / "sample-server.conf"

#: Every blocking point and the stage a stop there must name.
POINTS: Mapping[str, str] = {
    "settings-rpm": "settings",
    "configure": "configure",
    "wait": "wait",
    "lock-wait": "migrate",
    "migration-wait": "migrate",
    "migration-run": "migrate",
}

_RPM = '#!/bin/sh\necho $$ > "$0.pid"\nexec sleep 600\n'


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pid_namespaces_reason() -> str | None:
    """None when ``unshare --pid`` works here, else why not (root is needed)."""
    if os.geteuid() != 0:
        return "needs root for PID namespaces"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=30, check=False
    )
    return None if probe.returncode == 0 else f"unshare --pid fails: {probe.stderr.decode().strip()}"


def _children(pid: int) -> list[int]:
    try:
        return [int(word) for word in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _poll(
    what: str, ready: Callable[[], bool], proc: subprocess.Popen[str], lines: list[str], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"pulpinit exited ({proc.returncode}) before {what}; stderr: {lines[-8:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout} s; stderr: {lines[-8:]}")
        time.sleep(0.01)


@dataclass
class Held:
    """A pulpinit process held at one point (see :func:`hold`)."""

    point: str
    proc: subprocess.Popen[str]
    pid: int  # the host PID of pulpinit (the namespace's PID 1 with pid1)
    workdir: Path
    database: str
    lines: list[str] = field(default_factory=list)  # stderr, one entry per line
    fds: list[int] = field(default_factory=list)  # files held open (the lock on server.conf)
    _drain: threading.Thread | None = field(default=None, repr=False)

    def close(self) -> None:
        """Kill whatever is left (the process group), close the held files, remove the work directory."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for fd in self.fds:
            os.close(fd)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def stop(self, signum: int, timeout: float = 30) -> tuple[int, float]:
        """Send ``signum`` to pulpinit; return its exit code and the seconds until it exited."""
        sent = time.monotonic()
        os.kill(self.pid, signum)
        code = self.proc.wait(timeout)
        elapsed = time.monotonic() - sent
        if self._drain is not None:
            self._drain.join(5)
        return code, elapsed

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines (anything else on stderr is left out: see :attr:`lines`)."""
        found = []
        for line in self.lines:
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def has_event(self, name: str) -> bool:
        return any(f'"event": "{name}"' in line for line in list(self.lines))


def environment(workdir: Path, mongo: FakeMongo, broker: FakeAmqpBroker, database: str) -> dict[str, str]:
    """pulpinit's environment for a hold: the fakes, the stand-ins in ``workdir``, its own database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULP", "STANDIN"))}
    env.update(
        {
            "PULPINIT_CONFIG": str(workdir / "server.conf"),
            "PULPINIT_LOG_FORMAT": "json",
            "PULP_DB_SEEDS": mongo.hostport,
            "PULP_DB_NAME": database,
            "PULP_BROKER_URL": broker.url(),
            "PULPINIT_MANAGE_DB": str(workdir / "pulp-manage-db"),
            "PULPINIT_USER": "nobody",
            "PULPINIT_MIGRATION_FINGERPRINT": f"never-done-{database}",
            "PULPINIT_WAIT_TIMEOUT": "120",
            "PULPINIT_MIGRATION_TIMEOUT": "120",
            "STANDIN_SECONDS": "600",
        }
    )
    return env


def _start(args: list[str], env: dict[str, str], pid1: bool) -> tuple[subprocess.Popen[str], int]:
    argv = [sys.executable, "-m", "pulpinit", *args]
    if pid1:
        argv = ["unshare", "--pid", "--fork", "--mount-proc", *argv]
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    if not pid1:
        return proc, proc.pid
    deadline = time.monotonic() + 10
    while not (found := _children(proc.pid)):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError("unshare started no child")
        time.sleep(0.005)
    return proc, found[0]


def _pump(stream: IO[str], into: list[str]) -> None:
    for line in stream:
        into.append(line.rstrip("\n"))


@contextlib.contextmanager
def hold(
    point: str, mongo: FakeMongo, broker: FakeAmqpBroker, *, pid1: bool = False, env: Mapping[str, str] | None = None
) -> Iterator[Held]:
    """pulpinit held at ``point`` (see :data:`POINTS`); ``env`` adds or overrides variables."""
    if point not in POINTS:
        raise ValueError(f"unknown point {point!r}; one of {', '.join(POINTS)}")
    workdir = Path(tempfile.mkdtemp(prefix=f"pulpinit-hold-{point}-"))
    workdir.chmod(0o777)  # the stand-ins run as the user pulpinit drops to
    database = f"pulp_{uuid.uuid4().hex[:12]}"
    environ = environment(workdir, mongo, broker, database)
    standins.write_manage_db(workdir)
    args = ["run", "--", "/bin/true"]
    before: Callable[[], None] = lambda: None  # noqa: E731
    conf = workdir / "server.conf"
    shutil.copy(SAMPLE, conf)
    if point == "configure":
        fd = os.open(conf, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)  # another writer's lock, held until the test is done
        environ["PULP_SERVER_NAME"] = "pulp.held.example.com"  # a change to write
    if point == "settings-rpm":
        bindir = workdir / "bin"
        bindir.mkdir()
        (bindir / "rpm").write_text(_RPM)
        (bindir / "rpm").chmod(0o755)
        environ["PATH"] = f"{bindir}{os.pathsep}{environ.get('PATH', os.defpath)}"
        del environ["PULPINIT_MIGRATION_FINGERPRINT"]
    elif point == "wait":
        environ["PULP_DB_SEEDS"] = f"127.0.0.1:{closed_port()}"
    elif point == "lock-wait":
        args = ["migrate"]
        before = lambda: _hold_lock(mongo, database)  # noqa: E731
    elif point == "migration-run":
        args = ["migrate"]
    environ.update(env or {})
    before()
    proc, pid = _start(args, environ, pid1)
    held = Held(point, proc, pid, workdir, database, fds=[fd] if point == "configure" else [])
    assert proc.stderr is not None  # noqa: S101 - stderr=PIPE
    held._drain = threading.Thread(target=_pump, args=(proc.stderr, held.lines), daemon=True)
    held._drain.start()
    try:
        _wait_until_held(held, conf)
        yield held
    finally:
        held.close()


def _wait_until_held(held: Held, conf: Path) -> None:
    point, workdir, proc, lines = held.point, held.workdir, held.proc, held.lines
    if point == "settings-rpm":
        pid_file = workdir / "bin" / "rpm.pid"
        _poll("running rpm", lambda: pid_file.exists() and bool(pid_file.read_text().strip()), proc, lines)
    elif point == "configure":
        _poll("in configure", lambda: _stage_started(lines, "configure"), proc, lines)
        inode = os.stat(conf).st_ino
        _poll("waiting for the lock on server.conf", lambda: _waits_for_lock(inode), proc, lines)
    elif point == "wait":
        _poll("waiting", lambda: held.has_event("dep.down"), proc, lines)
    elif point == "lock-wait":
        _poll("waiting for the lock", lambda: held.has_event("migration.lock_held"), proc, lines)
    elif point == "migration-wait":
        _poll("waiting for migrations", lambda: held.has_event("migration.waiting"), proc, lines)
    elif point == "migration-run":
        _poll("running pulp-manage-db", lambda: bool(standins.parsed_runs(workdir)), proc, lines)


def _waits_for_lock(inode: int) -> bool:
    """Whether someone waits for a ``flock`` on the file with this inode (``/proc/locks`` "->" lines)."""
    return any(
        line.split()[1] == "->" and line.split()[6].endswith(f":{inode}")
        for line in Path("/proc/locks").read_text().splitlines()
        if len(line.split()) > 6
    )


def _stage_started(lines: list[str], stage: str) -> bool:
    return any('"event": "stage.start"' in line and f'"stage": "{stage}"' in line for line in list(lines))


def _hold_lock(mongo: FakeMongo, database: str) -> None:
    """Another replica's live lease: the lock document as a holder writes it, valid for an hour."""
    import pymongo

    now = mongo.now().replace(tzinfo=None)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo.uri, serverSelectionTimeoutMS=5000)
    try:
        client[database]["pulpinit_locks"].insert_one(
            {
                "_id": LOCK_ID,
                "owner": "another-replica:1",
                "acquired_at": now,
                "expires_at": now + datetime.timedelta(hours=1),
            }
        )
    finally:
        client.close()


def lock_owner(mongo: FakeMongo, database: str) -> str | None:
    """The owner the migration lock names now (None: free or never taken)."""
    import pymongo

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo.uri, serverSelectionTimeoutMS=5000)
    try:
        doc = client[database]["pulpinit_locks"].find_one({"_id": LOCK_ID}) or {}
    finally:
        client.close()
    owner = doc.get("owner")
    return str(owner) if owner else None
