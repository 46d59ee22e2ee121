"""The MongoDB peers of the run-once tests, behind one face, and pulpinit as a watched process.

:class:`MongoPeer` is either the project's fake (:class:`~pulpinit.testing.fakemongo.FakeMongo`,
one per test) or the session's SecantusDB (one database per test, so tests never see each
other's documents).  :class:`Pulpinit` runs ``python -m pulpinit …`` and collects its JSON log
lines as they come, so a test waits for an event instead of sleeping.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymongo

from helpers.pace import argv as paced
from helpers.processes import Spawned
from helpers.workdirs import reachable
from pulpinit.knobs import LOCK_COLLECTION
from pulpinit.migrate.migrator import LOCK_ID, STATE_ID
from pulpinit.testing import standins
from pulpinit.testing.fakemongo import FakeMongo

COLLECTION = LOCK_COLLECTION


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

    def client(self) -> pymongo.MongoClient[dict[str, Any]]:
        return pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=5000, appname="pulpinit-tests")

    def document(self, _id: str) -> dict[str, Any]:
        with self.client() as client:
            return client[self.database][COLLECTION].find_one({"_id": _id}) or {}

    def put_heartbeat(self, name: str, age_s: float = 0.0) -> None:
        """A document of Pulp's ``workers`` collection as a Pulp process writes it (naive UTC)."""
        at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=age_s)
        with self.client() as client:
            client[self.database].workers.replace_one({"_id": name}, {"_id": name, "last_heartbeat": at}, upsert=True)

    def workers(self) -> dict[str, dict[str, Any]]:
        """Pulp's ``workers`` collection: name → document."""
        with self.client() as client:
            return {doc["_id"]: doc for doc in client[self.database].workers.find()}

    def state(self) -> dict[str, Any]:
        return self.document(STATE_ID)

    def lock(self) -> dict[str, Any]:
        return self.document(LOCK_ID)


class Pulpinit(Spawned):
    """One ``python -m pulpinit ARGV`` (optionally as PID 1 of a new PID namespace) whose log is read as it comes.

    Every instance is remembered in :data:`STARTED` until :func:`kill_started` ends what is left,
    so a failing test leaves no pulpinit behind (not even one it SIGSTOPped)."""

    def __init__(
        self,
        env: dict[str, str],
        *argv: str,
        session: bool = False,
        namespace: bool = False,
        pace: Mapping[str, float] | None = None,
    ) -> None:
        """``pace``: the waits' pace for this process (:mod:`helpers.pace`), e.g. ``{"log_interval": 1}``."""
        command = [*(paced(**pace) if pace else [sys.executable, "-m", "pulpinit"]), *argv]
        if namespace:
            command = ["unshare", "--pid", "--fork", "--mount-proc", *command]
        super().__init__(command, env=env, session=session)
        STARTED.append(self)

    @property
    def lines(self) -> list[str]:
        """Its stderr so far, one entry per line."""
        return self.err

    def expect(self, event: str, timeout: float = 30) -> dict[str, Any]:  # type: ignore[override]
        """Wait for the first log line with ``event``; return it."""
        return self.event(event, timeout)

    def finish(self, timeout: float = 60) -> tuple[int, str]:  # type: ignore[override]
        """Wait for the exit; (exit code, the whole stderr)."""
        code, _, err = super().finish(timeout)
        return code, err


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


def migration_environment(
    workdir: Path, peer: MongoPeer, broker_url: str, fingerprint: str, **extra: str
) -> dict[str, str]:
    """pulpinit's environment for a run-once test or benchmark: the peer, the broker, the
    pulp-manage-db stand-in of ``workdir`` (:func:`migration_workdir`), ``extra`` on top."""
    env = environ_without_pulp()
    env.update(
        {
            "PULPINIT_CONFIG": str(workdir / "server.conf"),
            "PULPINIT_LOG_FORMAT": "json",
            **peer.env(),
            "PULP_BROKER_URL": broker_url,
            "PULPINIT_MANAGE_DB": str(workdir / "pulp-manage-db"),
            "PULPINIT_USER": "nobody",
            "PULPINIT_MIGRATION_FINGERPRINT": fingerprint,
            **extra,
        }
    )
    return env


def environ_without_pulp() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PULP", "STANDIN"))}
