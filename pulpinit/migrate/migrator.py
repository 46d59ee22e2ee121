"""Run Pulp's database migrations exactly once per version, across replicas and restarts.

``beat`` and ``pulpinit migrate`` migrate; every other role waits.  A state
document ``{_id: "migration-state", fingerprint, status, owner, started_at,
finished_at, exit_code, duration_s, error}`` beside the lease lock (see
:mod:`pulpinit.migrate.lease`) records the last migration.  When its fingerprint is
the current one and its status ``done``, nobody runs pulp-manage-db again.

The fingerprint names the schema version the image expects:
``PULPINIT_MIGRATION_FINGERPRINT`` when set, else ``rpm:`` + the first 16 hex
digits of the SHA-256 of the sorted ``name-version-release`` lines of the
installed Pulp packages (``rpm -qa 'pulp-*' 'python-pulp-*' 'python2-pulp-*'``).
An upgrade changes the packages, so the fingerprint, so it migrates again.

Waiting — for the state to become ``done`` (other roles) or for the lock
(migrating roles) — polls with the dependency wait's backoff, and
``PULPINIT_MIGRATION_TIMEOUT`` counts only the time in which nobody holds a live
lease (:meth:`Migrator.poll`).  Every MongoDB operation goes through
:class:`~pulpinit.migrate.retry.Retrier` (transient errors retried, the rest
classified); running pulp-manage-db under the lock is :mod:`pulpinit.migrate.run`.
"""

from __future__ import annotations

import enum
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pulpinit import log
from pulpinit.errors import ConfigError, MigrationPending, PulpinitError
from pulpinit.roles import Migration
from pulpinit.settings.knobs import Toolkit
from pulpinit.wait.waiter import Backoff

if TYPE_CHECKING:
    from pulpinit.migrate.lease import Holder
    from pulpinit.pipeline import Context
    from pulpinit.wait.targets import MongoTarget

#: The client name the migrate stage's MongoDB connections carry (server logs, currentOp).
APPNAME = "pulpinit-migrate"
LOCK_ID = "migration-lock"
STATE_ID = "migration-state"
RPM_PATTERNS = ("pulp-*", "python-pulp-*", "python2-pulp-*")

#: pulp-manage-db's exit codes and what they mean for the operator.
EXIT_MEANINGS = {
    64: "pulp-manage-db refuses to run as root (set PULPINIT_USER to an unprivileged user)",
    65: "the database is newer than this image: run an image of the newer Pulp version",
    70: "pulp-manage-db failed — Pulp >= 2.12 also exits 70 while workers still heartbeat: stop them, "
    "or migrate from a Job first",
}


def fingerprint(toolkit: Toolkit, rpm: str = "rpm") -> tuple[str, str]:
    """``(fingerprint, how it was derived)``; ConfigError when it cannot be derived."""
    if toolkit.migration_fingerprint:
        return toolkit.migration_fingerprint, "PULPINIT_MIGRATION_FINGERPRINT"
    if shutil.which(rpm):
        done = subprocess.run(
            [rpm, "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}\\n", *RPM_PATTERNS],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        packages = sorted(line.strip() for line in done.stdout.splitlines() if line.strip())
        if done.returncode == 0 and packages:
            digest = hashlib.sha256("\n".join(packages).encode()).hexdigest()[:16]
            return f"rpm:{digest}", f"{len(packages)} installed Pulp packages"
    raise ConfigError(
        "cannot derive the migration fingerprint: no Pulp packages in an rpm database; "
        "set PULPINIT_MIGRATION_FINGERPRINT (e.g. to the image's Pulp version)"
    )


#: A random token drawn once per process: two processes never share an owner, whatever their
#: host name and pid (replicas with one HOSTNAME, every container's pulpinit being PID 1).
_TOKEN = secrets.token_hex(6)


def owner_name(environ: Mapping[str, str]) -> str:
    """The lock owner ``NAME:PID:TOKEN``: pod name (``HOSTNAME``) or host name, pid, random token.

    The name and pid are there for people reading logs and the lock document; uniqueness
    comes from the token (48 random bits).
    """
    return f"{environ.get('HOSTNAME') or socket.gethostname()}:{os.getpid()}:{_TOKEN}"


class Progress(enum.Enum):
    """What one look at the database found (see :meth:`Migrator.poll`)."""

    FINISHED = "finished"
    HELD = "held"  # someone holds a live lease: this time does not count against the deadline
    IDLE = "idle"  # nobody holds a live lease (or MongoDB did not say): this time counts


class Migrator:
    """The migration state machine of one pulpinit process."""

    def __init__(
        self,
        ctx: Context,
        collection: Any,
        now: Callable[[], Any],
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        target: MongoTarget | None = None,
    ) -> None:
        from pulpinit.migrate.lease import LeaseLock
        from pulpinit.migrate.retry import Retrier

        self.ctx = ctx
        self.toolkit = ctx.toolkit
        self.collection = collection
        self.now = now
        self.sleep = sleep
        self.clock = clock
        self.owner = owner_name(ctx.environ)
        self.fingerprint, self.derived = ctx.fingerprint or fingerprint(self.toolkit)  # derived in settings
        self.lock = LeaseLock(collection, LOCK_ID, self.owner, self.toolkit.lease_seconds, now)
        self.log = log.get_logger(stage="migrate", fingerprint=self.fingerprint)
        self.target = target or ctx.settings.mongo_target()
        self._marks: dict[str, float] = {}  # log throttling: key → when last logged
        self.db = Retrier(
            self.target,
            clock=clock,
            sleep=sleep,
            log=self.log,
            cap=self.poll_cap,
            log_interval=self.toolkit.wait_log_interval,
        )

    @property
    def poll_cap(self) -> float:
        """The longest pause between two looks at the database (and between two retries)."""
        return max(0.2, min(2.0, self.toolkit.lease_seconds / 3))

    @property
    def where(self) -> str:
        return f"{self.target.database}.{self.toolkit.lock_collection}"

    # -- the documents, each read with retries until ``deadline`` ----------------------
    def state(
        self, deadline: float | Callable[[], float], give_up: Callable[[str], PulpinitError] = MigrationPending
    ) -> dict[str, Any]:
        doc: dict[str, Any] | None = self.db.call(
            lambda: self.collection.find_one({"_id": STATE_ID}),
            what="read the migration state",
            action=f"find {self.where}",
            deadline=deadline,
            give_up=give_up,
        )
        return doc or {}

    def holder(
        self, deadline: float | Callable[[], float], give_up: Callable[[str], PulpinitError] = MigrationPending
    ) -> tuple[Holder, Any]:
        """The lock's holder and the server's time (to tell a live lease from an expired one)."""
        return self.db.call(
            lambda: (self.lock.holder(), self.now()),
            what="read the migration lock",
            action=f"find {self.where}",
            deadline=deadline,
            give_up=give_up,
        )

    def is_done(self, state: dict[str, Any]) -> bool:
        return state.get("fingerprint") == self.fingerprint and state.get("status") == "done"

    # -- polling -------------------------------------------------------------------------
    def poll(self, step: Callable[[float], Progress], pending: Callable[[str], PulpinitError]) -> float:
        """Call ``step(deadline)`` until it says FINISHED; returns the seconds waited.

        ``PULPINIT_MIGRATION_TIMEOUT`` counts only the time in which nobody held a live lease
        (time in which MongoDB did not answer counts too): a holder that keeps renewing its lease
        through an hours-long migration keeps everyone waiting, a dead one does not.
        """
        budget = self.toolkit.migration_timeout
        started = last = self.clock()
        used = 0.0
        attempt = 0
        backoff = Backoff(0.1, self.poll_cap)
        while True:
            progress = step(self.clock() + max(0.0, budget - used))
            now = self.clock()
            if progress is Progress.FINISHED:
                return now - started
            if progress is Progress.IDLE:
                used += now - last
            last = now
            if used >= budget:
                raise pending(f"{budget:g} s without a live lease holder")
            attempt += 1
            self.sleep(min(backoff.interval(attempt), max(0.05, budget - used)))

    def throttled(self, key: str) -> bool:
        """True at most once per ``PULPINIT_WAIT_LOG_INTERVAL`` for each ``key`` (log throttling)."""
        if self.clock() - self._marks.get(key, -1e18) >= self.toolkit.wait_log_interval:
            self._marks[key] = self.clock()
            return True
        return False

    def run(self) -> None:
        """Migrate once under the lock, or skip when this fingerprint is done."""
        from pulpinit.migrate.run import run_locked

        def step(deadline: float) -> Progress:
            if self.is_done(self.state(deadline)):
                self.log.info("migration.skipped", reason="already done for this fingerprint")
                return Progress.FINISHED
            sent = self.clock()
            if self.db.call(
                self.lock.try_acquire,
                what="take the migration lock",
                action=f"update {self.where}",
                deadline=deadline,
                give_up=MigrationPending,
            ):
                run_locked(self, sent)
                return Progress.FINISHED
            holder, now = self.holder(deadline)
            if self.throttled("lock_held"):
                self.log.info("migration.lock_held", lock=holder.describe(now))
            return Progress.HELD if holder.is_live(now) else Progress.IDLE

        def pending(why: str) -> PulpinitError:
            return MigrationPending(f"could not take the migration lock ({why}): {self.lock_text()}")

        self.poll(step, pending)

    def lock_text(self) -> str:
        """The lock's holder in words (best effort: MongoDB gets one second)."""
        try:
            holder, now = self.holder(self.clock() + 1.0)
        except PulpinitError as exc:
            return f"lock unknown ({exc})"
        return str(holder.describe(now))

    def wait(self) -> None:
        """Wait until this fingerprint is done; 75 at the deadline, or at once when it failed."""

        def step(deadline: float) -> Progress:
            state = self.state(deadline)
            if self.is_done(state):
                return Progress.FINISHED
            if state.get("fingerprint") == self.fingerprint and state.get("status") == "failed":
                raise MigrationPending(f"the migration of {self.fingerprint} failed: {describe(state)}")
            holder, now = self.holder(deadline)
            live = holder.is_live(now)
            ours = state.get("fingerprint") == self.fingerprint
            if ours and state.get("status") == "running" and not live and self.throttled("holder_gone"):
                self.log.warning(
                    "migration.holder_gone",
                    owner=state.get("owner"),
                    since=_iso(state.get("started_at")),
                    lock=holder.describe(now),
                    action="the process that was migrating is gone; start `pulpinit migrate` (the Job) or beat "
                    "again: it takes the lock over and migrates; this role keeps waiting until "
                    "PULPINIT_MIGRATION_TIMEOUT",
                )
            elif self.throttled("waiting"):
                self.log.info("migration.waiting", state=describe(state), lock=holder.describe(now))
            return Progress.HELD if live else Progress.IDLE

        def pending(why: str) -> PulpinitError:
            try:
                state = describe(self.state(self.clock() + 1.0))
            except PulpinitError as exc:
                state = f"unknown ({exc})"
            return MigrationPending(
                f"migrations for {self.fingerprint} not done ({why}); state: {state}; lock {self.lock_text()}"
            )

        waited = self.poll(step, pending)
        self.log.info("migration.ready", waited_s=round(waited, 3))


def _iso(value: Any) -> str | None:
    return f"{value:%Y-%m-%dT%H:%M:%SZ}" if value is not None else None


def describe(state: dict[str, Any]) -> str:
    """One line about a state document."""
    if not state:
        return "no migration recorded yet"
    text = f"{state.get('status')} (fingerprint {state.get('fingerprint')}, by {state.get('owner')}"
    if state.get("exit_code") is not None:
        text += f", exit {state['exit_code']}"
    text += ")"
    if state.get("error"):
        text += f": {state['error']}"
    return text


def stage(ctx: Context, mode: Migration, *, sleep: Callable[[float], None] = time.sleep) -> None:
    """Stage 4 of the pipeline: migrate (beat, migrate), wait (other roles) or skip."""
    if mode is Migration.SKIP:
        log.get_logger(stage="migrate").info("migration.not_waiting", reason="PULPINIT_MIGRATION_WAIT=false")
        return
    from pulpinit.migrate.lease import server_clock
    from pulpinit.wait.mongo_client import connect

    with log.stage("migrate", mode=mode.value):
        target = ctx.settings.mongo_target()
        # a heartbeat every second: after a failover or a NotPrimary answer the client finds the
        # server again within a second instead of pymongo's default 10 s
        client = connect(target, max(ctx.toolkit.probe_timeout, 5.0), heartbeatFrequencyMS=1000, appname=APPNAME)
        try:
            database = client[target.database]
            collection = database[ctx.toolkit.lock_collection]
            migrator = Migrator(ctx, collection, server_clock(database), sleep=sleep, target=target)
            if mode is Migration.RUN:
                migrator.run()
            else:
                migrator.wait()
        finally:
            client.close()
