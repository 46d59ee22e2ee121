"""The MongoDB peers of the run-once tests, behind one face, and pulpinit as a watched process.

:class:`MongoPeer` is either the project's fake (:class:`~pulpinit.testing.fakemongo.FakeMongo`,
one per test) or the session's SecantusDB (one database per test, so tests never see each
other's documents).  :class:`Pulpinit` runs ``python -m pulpinit …`` and collects its JSON log
lines as they come, so a test waits for an event instead of sleeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymongo
from helpers.workdirs import reachable

from pulpinit.migrate.migrator import LOCK_ID, STATE_ID
from pulpinit.testing import standins
from pulpinit.testing.fakemongo import FakeMongo

COLLECTION = "pulpinit_locks"


@contextlib.contextmanager
def migration_workdir() -> Iterator[Path]:
    """A work directory with the pulp-manage-db stand-in and a sample server.conf, removed afterwards.

    World-writable: the stand-in runs as the unprivileged user pulpinit switches to and records
    its runs beside itself.
    """
    with reachable("migrate") as path:
        path.chmod(0o777)
        standins.write_manage_db(path)
        yield path


@dataclass
class MongoPeer:
    """Where a test's pulpinit finds MongoDB, and how the test reads the documents back."""

    kind: str  # "fake" | "secantus"
    hostport: str
    database: str
    fake: FakeMongo | None = None

    @classmethod
    def of_fake(cls, fake: FakeMongo) -> MongoPeer:
        return cls("fake", fake.hostport, "pulp_database", fake=fake)

    @classmethod
    def on_server(cls, kind: str, hostport: str) -> MongoPeer:
        return cls(kind, hostport, f"pulp_{uuid.uuid4().hex[:12]}")

    @property
    def uri(self) -> str:
        return f"mongodb://{self.hostport}/?directConnection=true"

    def env(self) -> dict[str, str]:
        return {"PULP_DB_SEEDS": self.hostport, "PULP_DB_NAME": self.database}

    def document(self, _id: str) -> dict[str, Any]:
        client: pymongo.MongoClient[dict[str, Any]]
        with pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=5000, appname="pulpinit-tests") as client:
            return client[self.database][COLLECTION].find_one({"_id": _id}) or {}

    def state(self) -> dict[str, Any]:
        return self.document(STATE_ID)

    def lock(self) -> dict[str, Any]:
        return self.document(LOCK_ID)


class Pulpinit:
    """One ``python -m pulpinit ARGV`` (optionally as PID 1 of a new PID namespace).

    Every instance is remembered in :data:`STARTED` until :func:`kill_started` ends what is left,
    so a failing test leaves no pulpinit behind (not even one it SIGSTOPped)."""

    def __init__(self, env: dict[str, str], *argv: str, session: bool = False, namespace: bool = False) -> None:
        command = [sys.executable, "-m", "pulpinit", *argv]
        if namespace:
            command = ["unshare", "--pid", "--fork", "--mount-proc", *command]
        self.session = session
        self.proc = subprocess.Popen(
            command,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=session,
        )
        STARTED.append(self)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._out = ""
        self._out_reader = threading.Thread(target=self._read_out, daemon=True)
        self._out_reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        self._out = self.proc.stdout.read()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self) -> list[dict[str, Any]]:
        with self._changed:
            lines = list(self.lines)
        return [json.loads(line) for line in lines if line.startswith("{")]

    def expect(self, event: str, timeout: float = 30) -> dict[str, Any]:
        """Wait for the first log line with ``event``; return it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [e for e in self.events_unlocked() if e.get("event") == event]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {event!r} within {timeout} s; log:\n" + "\n".join(self.lines[-30:]))
                self._changed.wait(min(left, 0.1))

    def events_unlocked(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for the exit; (exit code, the whole stderr)."""
        code = self.proc.wait(timeout)
        self._reader.join(10)
        self._out_reader.join(10)
        return code, "\n".join(self.lines)

    def kill(self) -> None:
        """SIGKILL it (its whole process group when it has its own: a stopped group included)."""
        if self.proc.poll() is None:
            if self.session:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
            self.proc.wait(10)


#: The :class:`Pulpinit` processes started and not yet cleaned up by :func:`kill_started`.
STARTED: list[Pulpinit] = []


def kill_started() -> None:
    """Kill every :class:`Pulpinit` still running (a test's teardown)."""
    while STARTED:
        STARTED.pop().kill()


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.01)


def gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie counts as gone: it runs no more code)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def one_error_line(stderr: str) -> list[dict[str, Any]]:
    """The ``pulpinit.error`` lines of a run; asserts that no traceback is anywhere in it."""
    assert "Traceback" not in stderr, stderr[-3000:]
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    plain = [line for line in stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert not plain, plain
    return [e for e in events if e.get("event") == "pulpinit.error"]


def environ_without_pulp() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PULP", "STANDIN"))}
