"""Hold a real pulpinit process in each of its blocking points, for the stop-signal tests and benchmark.

:func:`hold` prepares real inputs, starts ``python -m pulpinit`` — plainly, or as PID 1 of a new
PID namespace (``unshare --pid --fork --mount-proc``, root only) — and returns once the process is
observably blocked at that point.  Nothing of pulpinit is mocked; the blocking is caused from
outside, the way it happens in a cluster:

==================  =========  ==================================================================
point               stage      how pulpinit is held there
==================  =========  ==================================================================
``start``           start      its imports are slow: a ``sitecustomize`` on ``PYTHONPATH`` holds
                               the import of ``pulpinit.cli`` for :data:`IMPORT_HOLD_S` (a cold
                               page cache on a slow disk), after the entry point's first statements
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
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.processes import Spawned, first_child
from pulpinit.migrate.migrator import LOCK_ID
from pulpinit.testing import SAMPLE_CONF, standins
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.serving import free_port

SAMPLE = SAMPLE_CONF

#: Every blocking point and the stage a stop there must name.
POINTS: Mapping[str, str] = {
    "start": "start",
    "settings-rpm": "settings",
    "configure": "configure",
    "wait": "wait",
    "lock-wait": "migrate",
    "migration-wait": "migrate",
    "migration-run": "migrate",
}

_RPM = '#!/bin/sh\necho $$ > "$0.pid"\nexec sleep 600\n'
#: How long the ``start`` point holds the import of ``pulpinit.cli``.
IMPORT_HOLD_S = 2.0
_SLOW_IMPORT = """\
import os, sys, time


class _Slow:
    def find_spec(self, name, path=None, target=None):
        if name == "pulpinit.cli":
            sys.meta_path.remove(self)
            open(os.environ["HOLD_IMPORT_MARKER"], "w").close()
            time.sleep(float(os.environ["HOLD_IMPORT_S"]))
        return None


sys.meta_path.insert(0, _Slow())
"""


def _poll(what: str, ready: Callable[[], bool], spawned: Spawned, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if spawned.proc.poll() is not None:
            raise AssertionError(
                f"pulpinit exited ({spawned.proc.returncode}) before {what}; stderr: {spawned.err[-8:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout} s; stderr: {spawned.err[-8:]}")
        time.sleep(0.01)


@dataclass
class Held:
    """A pulpinit process held at one point (see :func:`hold`)."""

    point: str
    spawned: Spawned
    pid: int  # the host PID of pulpinit (the namespace's PID 1 with pid1)
    workdir: Path
    database: str
    fds: list[int] = field(default_factory=list)  # files held open (the lock on server.conf)

    @property
    def proc(self) -> subprocess.Popen[str]:
        return self.spawned.proc

    @property
    def lines(self) -> list[str]:
        """Its stderr, one entry per line."""
        return self.spawned.err

    def close(self) -> None:
        """Kill whatever is left (the process group), close the held files, remove the work directory."""
        self.spawned.kill()
        for fd in self.fds:
            os.close(fd)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def stop(self, signum: int, timeout: float = 30) -> tuple[int, float]:
        """Send ``signum`` to pulpinit; return its exit code and the seconds until it exited."""
        sent = time.monotonic()
        os.kill(self.pid, signum)
        code = self.proc.wait(timeout)
        elapsed = time.monotonic() - sent
        self.spawned.wait(timeout)  # and the rest of its output
        return code, elapsed

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines (anything else on stderr is left out: see :attr:`lines`)."""
        return self.spawned.events()

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


def _start(args: list[str], env: dict[str, str], pid1: bool, program: Sequence[str] | None) -> tuple[Spawned, int]:
    argv = [*(program or [sys.executable, "-m", "pulpinit"]), *args]
    if pid1:
        argv = ["unshare", "--pid", "--fork", "--mount-proc", *argv]
    spawned = Spawned(argv, env=env, session=True)
    return spawned, first_child(spawned.pid) if pid1 else spawned.pid


@contextlib.contextmanager
def hold(
    point: str,
    mongo: FakeMongo,
    broker: FakeAmqpBroker,
    *,
    pid1: bool = False,
    env: Mapping[str, str] | None = None,
    program: Sequence[str] | None = None,
) -> Iterator[Held]:
    """pulpinit held at ``point`` (see :data:`POINTS`); ``env`` adds or overrides variables, ``program``
    is pulpinit's command line when not ``python -m pulpinit`` (one whose waits are paced otherwise)."""
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
    elif point == "start":
        site = workdir / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(_SLOW_IMPORT)
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), environ.get("PYTHONPATH")]))
        environ.update(HOLD_IMPORT_MARKER=str(workdir / "importing"), HOLD_IMPORT_S=f"{IMPORT_HOLD_S:g}")
    elif point == "wait":
        environ["PULP_DB_SEEDS"] = f"127.0.0.1:{free_port()}"
    elif point == "lock-wait":
        args = ["migrate"]
        before = lambda: hold_lock(mongo, database)  # noqa: E731
    elif point == "migration-run":
        args = ["migrate"]
    environ.update(env or {})
    before()
    spawned, pid = _start(args, environ, pid1, program)
    held = Held(point, spawned, pid, workdir, database, fds=[fd] if point == "configure" else [])
    try:
        _wait_until_held(held, conf)
        yield held
    finally:
        held.close()


def _wait_until_held(held: Held, conf: Path) -> None:
    point, workdir, spawned, lines = held.point, held.workdir, held.spawned, held.lines
    if point == "start":
        _poll("importing pulpinit.cli", (workdir / "importing").exists, spawned)
    elif point == "settings-rpm":
        pid_file = workdir / "bin" / "rpm.pid"
        _poll("running rpm", lambda: pid_file.exists() and bool(pid_file.read_text().strip()), spawned)
    elif point == "configure":
        _poll("in configure", lambda: _stage_started(lines, "configure"), spawned)
        inode = os.stat(conf).st_ino
        _poll("waiting for the lock on server.conf", lambda: _waits_for_lock(inode), spawned)
    elif point == "wait":
        _poll("waiting", lambda: held.has_event("dep.down"), spawned)
    elif point == "lock-wait":
        _poll("waiting for the lock", lambda: held.has_event("migration.lock_held"), spawned)
    elif point == "migration-wait":
        _poll("waiting for migrations", lambda: held.has_event("migration.waiting"), spawned)
    elif point == "migration-run":
        _poll("running pulp-manage-db", lambda: bool(standins.parsed_runs(workdir)), spawned)


def _waits_for_lock(inode: int) -> bool:
    """Whether someone waits for a ``flock`` on the file with this inode (``/proc/locks`` "->" lines)."""
    return any(
        line.split()[1] == "->" and line.split()[6].endswith(f":{inode}")
        for line in Path("/proc/locks").read_text().splitlines()
        if len(line.split()) > 6
    )


def _stage_started(lines: list[str], stage: str) -> bool:
    return any('"event": "stage.start"' in line and f'"stage": "{stage}"' in line for line in list(lines))


def hold_lock(mongo: FakeMongo, database: str) -> None:
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
