"""Run Pulp's database migrations exactly once per version, across replicas and restarts.

``beat`` and ``pulpinit migrate`` migrate; every other role waits.  A state document
(:class:`StateDoc`: ``{_id: "migration-state", fingerprint, status, owner, started_at,
finished_at, exit_code, duration_s, error}``) beside the lease lock (see
:mod:`pulpinit.migrate.lease`) records the last migration.  When its fingerprint is the
current one (:mod:`pulpinit.migrate.fingerprint`) and its status ``done``, nobody runs
pulp-manage-db again.

The stage (:func:`migrate`) takes plain inputs: where MongoDB is, the fingerprint, the owner
name and a :class:`MigrationPolicy` (the knobs it uses).  Waiting — for the state to become
``done`` (other roles) or for the lock (migrating roles) — polls with the dependency wait's
backoff, and ``PULPINIT_MIGRATION_TIMEOUT`` counts only the time in which nobody holds a live
lease (:meth:`Migrator.poll`).  Every MongoDB operation goes through
:class:`~pulpinit.migrate.retry.Retrier` (transient errors retried, the rest classified).

Running pulp-manage-db under the lock (:meth:`Migrator.run_locked`):

**Start.**  The command runs through :mod:`pulpinit.migrate.tether` (privilege drop to
``PULPINIT_USER``, then ``PR_SET_PDEATHSIG``), so it dies with pulpinit even when pulpinit is
SIGKILLed and is not PID 1.  Only once the exec succeeded is the state ``running`` written: a
missing command (127), a non-executable one (126) or an unknown user (78) leaves the state as it
was.  Its output is streamed line by line into pulpinit's log.

**The lease.**  A heartbeat thread (:meth:`Migrator.heartbeat`) renews the lease every lease/3
and tracks it on the monotonic clock from the moment each confirmed renewal was *sent*
(``confirmed_until`` = send time + lease).  A renewal verifies itself (the server's answer must
name this owner); one that fails transiently is retried with backoff.  The main thread watches
the child and the lease:

* at ``confirmed_until − PULPINIT_MANAGE_DB_STOP_TIMEOUT − margin`` without a newer
  confirmation it logs ``migration.lease_lost`` and sends SIGTERM, and SIGKILL at
  ``confirmed_until − margin`` at the latest, so the child is gone before the lease can pass
  to anyone else (margin: 5 % of the lease, 0.1–1 s);
* a renewal that finds another owner (or none) means the lease is gone already: SIGKILL at
  once.  The renewal's answer is what catches a paused machine whose monotonic clock stood
  still: the owner in the document has changed.

A run whose lease was lost never ends in success: exit 70 (:class:`~pulpinit.errors.LeaseLost`).
Every state write is preceded by a verifying renewal, so a holder that lost the lease never
overwrites the state of the one that took it over.  The result is recorded with retries until
``PULPINIT_MIGRATION_TIMEOUT`` (MongoDB may be failing over right then).

**Signals.**  SIGTERM or SIGINT is forwarded to pulp-manage-db; pulpinit waits for it
(``PULPINIT_MANAGE_DB_STOP_TIMEOUT`` at most, then SIGKILL), records the failure with one
attempt of at most 0.3 s and releases the lock with one of at most 0.5 s (if MongoDB does not
answer, the lease simply expires), and exits 128+signal.

**What a lease cannot fence.**  Leases bound *time*, not *execution*: a process that keeps
running while the whole machine is paused (a frozen VM, a stopped cgroup including
pulp-manage-db) cannot notice that its lease ran out.  When it resumes it kills its
pulp-manage-db within a second (the lease is overdue on the monotonic clock, or the next
renewal finds another owner), but instructions the child executes in that moment run beside
the new holder's migration.  As with Mongock, the assumption is that a holder is not frozen for
longer than ``PULPINIT_LEASE_SECONDS − PULPINIT_MANAGE_DB_STOP_TIMEOUT``; choose the lease well
above the pauses your platform can cause (live migration, checkpoints).
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any, Literal, TypedDict, cast

from pulpinit import log, signals
from pulpinit.errors import (
    ConfigError,
    ExecError,
    ExitCode,
    Interrupted,
    LeaseLost,
    MigrationFailed,
    MigrationPending,
    PulpinitError,
)
from pulpinit.log import Logger, Throttle
from pulpinit.migrate import quiet
from pulpinit.migrate.lease import Collection, Holder, LeaseLock, server_clock
from pulpinit.migrate.retry import Retrier, is_transient
from pulpinit.privileges import identity_for
from pulpinit.redact import mask_argv
from pulpinit.settings.toolkit import Toolkit
from pulpinit.wait.mongo_client import connect
from pulpinit.wait.targets import MongoTarget
from pulpinit.wait.waiter import Backoff

#: The client name the migrate stage's MongoDB connections carry (server logs, currentOp).
APPNAME = "pulpinit-migrate"
LOCK_ID = "migration-lock"
STATE_ID = "migration-state"

#: pulp-manage-db's exit codes and what they mean for the operator.
EXIT_MEANINGS = {
    64: "pulp-manage-db refuses to run as root (set PULPINIT_USER to an unprivileged user)",
    65: "the database is newer than this image: run an image of the newer Pulp version",
    70: "pulp-manage-db failed — Pulp >= 2.12 also exits 70 while workers still heartbeat: stop them, "
    "or migrate from a Job first",
}

#: When a signal stops us: wait for the heartbeat's operation in flight, make one attempt at recording
#: the failure and one at releasing the lock, at most this long each (seconds; 1 s in all).
FAST_KEEPER_S, FAST_RECORD_S, FAST_RELEASE_S = 0.2, 0.3, 0.5
POLL_S = 0.05


class Migration(enum.Enum):
    """What a role does about database migrations before it starts."""

    RUN = "run"  # take the lock and migrate unless this version is done (beat, migrate)
    WAIT = "wait"  # wait until this version's migrations are done (other roles)
    SKIP = "skip"  # neither (PULPINIT_MIGRATION_WAIT=false)


class StateDoc(TypedDict, total=False):
    """The state document: the last migration, as its holder recorded it (server times, naive UTC)."""

    _id: str
    fingerprint: str
    status: Literal["running", "done", "failed"]
    owner: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    exit_code: int | None
    duration_s: float | None
    error: str | None


@dataclass(frozen=True)
class MigrationPolicy:
    """The knobs of the migrate stage."""

    lock_collection: str = "pulpinit_locks"
    lease_seconds: float = 60.0
    timeout: float = 600.0  # PULPINIT_MIGRATION_TIMEOUT
    log_interval: float = 10.0  # PULPINIT_WAIT_LOG_INTERVAL
    connect_timeout: float = 5.0  # per-attempt MongoDB timeout (at least 5 s)
    manage_db: str = "/usr/bin/pulp-manage-db"
    stop_timeout: float = 15.0  # PULPINIT_MANAGE_DB_STOP_TIMEOUT
    user: str = "apache"
    umask: int = 0o022
    quiet_seconds: float = 92.0  # PULPINIT_QUIET_SECONDS (0: do not wait for a quiet database)
    pre_migrate: tuple[str, ...] | None = None  # PULPINIT_PRE_MIGRATE

    @classmethod
    def from_toolkit(cls, toolkit: Toolkit) -> MigrationPolicy:
        return cls(
            lock_collection=toolkit.lock_collection,
            lease_seconds=toolkit.lease_seconds,
            timeout=toolkit.migration_timeout,
            log_interval=toolkit.wait_log_interval,
            connect_timeout=max(toolkit.probe_timeout, 5.0),
            manage_db=toolkit.manage_db,
            stop_timeout=toolkit.manage_db_stop_timeout,
            user=toolkit.user,
            umask=toolkit.umask,
            quiet_seconds=toolkit.quiet_seconds,
            pre_migrate=toolkit.pre_migrate,
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


def migrate(
    mode: Migration,
    target: MongoTarget,
    fingerprint: str,
    policy: MigrationPolicy,
    *,
    owner: str,
    sleep: Callable[[float], None] = time.sleep,
    retry_failed: bool = True,
) -> None:
    """The migrate stage: migrate once (RUN), wait until the migrations are done (WAIT), or skip.

    ``retry_failed``: whether RUN runs a migration of this fingerprint recorded as ``failed``
    again (``pulpinit migrate``) or stops with 75 naming it (beat, see :meth:`Migrator.run`).
    """
    if mode is Migration.SKIP:
        log.get_logger(stage="migrate").info("migration.not_waiting", reason="PULPINIT_MIGRATION_WAIT=false")
        return
    with log.stage("migrate", mode=mode.value):
        # a heartbeat every second: after a failover or a NotPrimary answer the client finds the
        # server again within a second instead of pymongo's default 10 s
        client = connect(target, policy.connect_timeout, heartbeatFrequencyMS=1000, appname=APPNAME)
        try:
            database = client[target.database]
            migrator = Migrator(
                database[policy.lock_collection],
                owner=owner,
                fingerprint=fingerprint,
                policy=policy,
                target=target,
                now=server_clock(database),
                sleep=sleep,
            )
            if mode is Migration.RUN:
                migrator.run(retry_failed=retry_failed)
            else:
                migrator.wait()
        finally:
            client.close()


class Progress(enum.Enum):
    """What one look at the database found (see :meth:`Migrator.poll`)."""

    FINISHED = "finished"
    HELD = "held"  # someone holds a live lease: this time does not count against the deadline
    IDLE = "idle"  # nobody holds a live lease (or MongoDB did not say): this time counts


def margin(lease_s: float) -> float:
    """How long before the lease ends pulp-manage-db must be gone (5 % of the lease, 0.1–1 s)."""
    return min(1.0, max(0.1, lease_s * 0.05))


class Lease:
    """The lease while pulp-manage-db runs: what the heartbeat confirmed, and what it found."""

    def __init__(self, sent: float, lease_s: float, where: str) -> None:
        self.lease_s = lease_s
        self.interval = lease_s / 3
        self.confirmed_until = sent + lease_s  # monotonic
        self.lost_to: str | None = None  # set when a renewal finds the lease is not ours
        self.fatal: PulpinitError | None = None  # a permanent MongoDB error
        self.running_recorded = False
        self.started_at: dt.datetime | None = None  # server time of the `running` record
        self.running: StateDoc | None = None  # the `running` state to record after the next renewal
        self.next = sent + self.interval
        self.closed = False
        self.mutex = threading.Lock()  # held during each MongoDB operation; closing takes it
        self.doing = ("renew the migration lock", f"update {where}")  # (what, action) for errors
        self.wake = threading.Event()

    def record_running(self, fields: StateDoc, now: float) -> None:
        """Write the ``running`` state, right after the next (immediate) renewal that confirms the lease."""
        self.running = fields
        self.next = now
        self.wake.set()

    def close(self, timeout: float | None) -> bool:
        """Stop the heartbeat; wait for an operation in flight (up to ``timeout``); True when none is left."""
        self.closed = True
        self.wake.set()
        if not self.mutex.acquire(timeout=-1 if timeout is None else timeout):
            return False
        self.mutex.release()
        return True


@dataclass
class Outcome:
    """How pulp-manage-db ended."""

    code: int
    signum: int | None = None  # the signal that made us stop it
    lost: str | None = None  # why the lease was lost, when it was


class _Child:
    """pulp-manage-db as the migrator stops it: one SIGTERM, one SIGKILL, stop signals forwarded."""

    def __init__(self, proc: subprocess.Popen[str], logger: Logger, clock: Callable[[], float]) -> None:
        self.proc = proc
        self.log = logger
        self.clock = clock
        self.term_at: float | None = None
        self.killed = False
        self.received: list[int] = []

    def terminate(self, now: float) -> None:
        if self.term_at is None:
            self.term_at = now
            self.proc.terminate()

    def kill(self, reason: str) -> None:
        if not self.killed:
            self.killed = True
            self.log.error("migration.kill", reason=reason)
            self.proc.kill()

    def forward(self, signum: int, _frame: FrameType | None) -> None:
        """The stop-signal handler while pulp-manage-db runs (see :func:`pulpinit.signals.take_over`)."""
        self.received.append(signum)
        self.log.warning("migration.signal", signal=signal.Signals(signum).name, action="forwarded")
        self.proc.send_signal(signals.for_child(signum))  # the image's stop signal (SIGWINCH) becomes SIGTERM
        self.term_at = self.term_at if self.term_at is not None else self.clock()


class Migrator:
    """The migration state machine of one pulpinit process, on one lock collection."""

    def __init__(
        self,
        collection: Collection,
        *,
        owner: str,
        fingerprint: str,
        policy: MigrationPolicy,
        target: MongoTarget,
        now: Callable[[], dt.datetime],
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.collection = collection
        self.owner = owner
        self.fingerprint = fingerprint
        self.policy = policy
        self.target = target
        self.now = now
        self.sleep = sleep
        self.clock = clock
        self.lock = LeaseLock(collection, LOCK_ID, owner, policy.lease_seconds, now)
        self.log = log.get_logger(stage="migrate", fingerprint=fingerprint)
        self.throttle = Throttle(policy.log_interval, clock)
        self.db = Retrier(
            target, clock=clock, sleep=sleep, log=self.log, cap=self.poll_cap, log_interval=policy.log_interval
        )

    @property
    def poll_cap(self) -> float:
        """The longest pause between two looks at the database (and between two retries)."""
        return max(0.2, min(2.0, self.policy.lease_seconds / 3))

    @property
    def where(self) -> str:
        return f"{self.target.database}.{self.policy.lock_collection}"

    # -- the documents, each read with retries until ``deadline`` ----------------------
    def state(
        self, deadline: float | Callable[[], float], give_up: Callable[[str], PulpinitError] = MigrationPending
    ) -> StateDoc:
        doc = self.db.call(
            lambda: self.collection.find_one({"_id": STATE_ID}),
            what="read the migration state",
            action=f"find {self.where}",
            deadline=deadline,
            give_up=give_up,
        )
        return cast(StateDoc, doc or {})

    def holder(
        self, deadline: float | Callable[[], float], give_up: Callable[[str], PulpinitError] = MigrationPending
    ) -> tuple[Holder, dt.datetime]:
        """The lock's holder and the server's time (to tell a live lease from an expired one)."""
        return self.db.call(
            lambda: (self.lock.holder(), self.now()),
            what="read the migration lock",
            action=f"find {self.where}",
            deadline=deadline,
            give_up=give_up,
        )

    def is_done(self, state: StateDoc) -> bool:
        return state.get("fingerprint") == self.fingerprint and state.get("status") == "done"

    def has_failed(self, state: StateDoc) -> bool:
        return state.get("fingerprint") == self.fingerprint and state.get("status") == "failed"

    # -- polling -------------------------------------------------------------------------
    def poll(self, step: Callable[[float], Progress], pending: Callable[[str], PulpinitError]) -> float:
        """Call ``step(deadline)`` until it says FINISHED; returns the seconds waited.

        ``PULPINIT_MIGRATION_TIMEOUT`` counts only the time in which nobody held a live lease
        (time in which MongoDB did not answer counts too): a holder that keeps renewing its lease
        through an hours-long migration keeps everyone waiting, a dead one does not.
        """
        budget = self.policy.timeout
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

    def run(self, *, retry_failed: bool = True) -> None:
        """Migrate once under the lock, or skip when this fingerprint is done.

        A migration of this fingerprint recorded as ``failed`` runs again only with
        ``retry_failed`` (``pulpinit migrate``, the Job); beat stops with 75 naming the failure,
        like the waiting roles, so that a restarting beat does not run a failing migration (and
        the backup before it) over and over.
        """

        def step(deadline: float) -> Progress:
            state = self.state(deadline)
            if self.is_done(state):
                self.log.info("migration.skipped", reason="already done for this fingerprint")
                return Progress.FINISHED
            if not retry_failed and self.has_failed(state):
                raise MigrationPending(
                    f"the migration of {self.fingerprint} failed: {describe(state)}; it is retried only by "
                    "`pulpinit migrate` (the Job): fix the cause, then run it again"
                )
            sent = self.clock()
            if self.db.call(
                self.lock.try_acquire,
                what="take the migration lock",
                action=f"update {self.where}",
                deadline=deadline,
                give_up=MigrationPending,
            ):
                self.run_locked(sent)
                return Progress.FINISHED
            holder, now = self.holder(deadline)
            if self.throttle.ready("lock_held"):
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
            if self.has_failed(state):
                raise MigrationPending(f"the migration of {self.fingerprint} failed: {describe(state)}")
            holder, now = self.holder(deadline)
            live = holder.is_live(now)
            ours = state.get("fingerprint") == self.fingerprint
            if ours and state.get("status") == "running" and not live and self.throttle.ready("holder_gone"):
                self.log.warning(
                    "migration.holder_gone",
                    owner=state.get("owner"),
                    since=_iso(state.get("started_at")),
                    lock=holder.describe(now),
                    action="the process that was migrating is gone; start `pulpinit migrate` (the Job) or beat "
                    "again: it takes the lock over and migrates; this role keeps waiting until "
                    "PULPINIT_MIGRATION_TIMEOUT",
                )
            elif self.throttle.ready("waiting"):
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

    # -- running pulp-manage-db under the lock ---------------------------------------------
    def run_locked(self, sent: float) -> None:
        """Migrate unless done (re-checked under the lock); always release the lock.

        ``sent`` is the monotonic time at which the acquiring request was sent.
        """
        lease = Lease(sent, self.policy.lease_seconds, self.where)
        threading.Thread(target=self.heartbeat, args=(lease,), name="lease-keeper", daemon=True).start()
        fast = False
        try:
            state = self.state(lambda: lease.confirmed_until, give_up=lambda why: LeaseLost(self.owner, why))
            if self.is_done(state):
                self.log.info("migration.skipped", reason="done by another replica while we waited")
                return
            identity = identity_for(self.policy.user)  # an unknown user: 78, the state untouched
            self._wait_for_quiet(lease)
            self._pre_migrate(lease, identity is not None)
            proc = self._start(identity is not None)
            started = time.monotonic()
            lease.record_running(
                {"status": "running", "finished_at": None, "exit_code": None, "duration_s": None, "error": None},
                self.clock(),
            )
            self.log.info("migration.start", command=self.policy.manage_db, owner=self.owner, pid=proc.pid)
            outcome = self._supervise(proc, lease)
            duration = round(time.monotonic() - started, 3)
            fast = outcome.signum is not None
            self._conclude(lease, outcome, duration)
        except (Interrupted, KeyboardInterrupt):
            fast = True
            raise
        finally:
            idle = lease.close(FAST_KEEPER_S if fast else None)
            self._release(lease, fast or not idle)

    def _keep(self, lease: Lease) -> None:
        """Raise when the lease is gone or about to go: a long wait under the lock must end in time."""
        if lease.fatal is not None:
            raise lease.fatal
        if lease.lost_to is not None:
            raise LeaseLost(self.owner, f"the lock is now {lease.lost_to}")
        if self.clock() >= lease.confirmed_until - margin(self.policy.lease_seconds):
            raise LeaseLost(self.owner, f"the lease could not be renewed (lease {self.policy.lease_seconds:g} s)")

    def _wait_for_quiet(self, lease: Lease) -> None:
        """Under the lock, until no Pulp process heartbeats (:mod:`pulpinit.migrate.quiet`); 75 at the deadline."""
        if self.policy.quiet_seconds <= 0:
            return
        database = self.collection.database
        where = f"{self.target.database}.{quiet.COLLECTION}"

        def read(deadline: float) -> list[dict[str, Any]]:
            return self.db.call(
                lambda: quiet.read_heartbeats(database),
                what="read Pulp's heartbeats",
                action=f"find {where}",
                deadline=lambda: min(deadline, lease.confirmed_until),
                give_up=MigrationPending,
            )

        quiet.QuietWait(
            read=read,
            threshold_s=self.policy.quiet_seconds,
            timeout_s=self.policy.timeout,
            log=self.log,
            log_interval=self.policy.log_interval,
            clock=self.clock,
            sleep=self.sleep,
            cap=self.poll_cap,
            check=lambda: self._keep(lease),
        ).wait()

    def _pre_migrate(self, lease: Lease, drop: bool) -> None:
        """``PULPINIT_PRE_MIGRATE`` (a backup) under the lock; a failure records ``failed`` and raises (70)."""
        argv = self.policy.pre_migrate
        if not argv:
            return
        started = time.monotonic()
        self.log.info("migration.pre_migrate", command=mask_argv(argv))
        try:
            proc = self._start(drop, argv, "PULPINIT_PRE_MIGRATE")
        except (ExecError, ConfigError, MigrationFailed) as exc:
            error = f"PULPINIT_PRE_MIGRATE could not start: {exc}; pulp-manage-db was not run"
        else:
            outcome = self._supervise(proc, lease, "migration.pre_migrate_output")
            if outcome.signum is not None:
                raise Interrupted(outcome.signum, "migrate")
            if lease.fatal is not None:
                raise lease.fatal
            if outcome.lost is not None:
                raise LeaseLost(self.owner, f"{outcome.lost}; PULPINIT_PRE_MIGRATE was stopped")
            if outcome.code == 0:
                self.log.info("migration.pre_migrate_done", duration_s=round(time.monotonic() - started, 3))
                return
            error = f"PULPINIT_PRE_MIGRATE {argv[0]} exited with {outcome.code}; pulp-manage-db was not run"
        duration = round(time.monotonic() - started, 3)
        self._record(lease, {"status": "failed", "exit_code": None, "duration_s": duration, "error": error})
        self.log.error("migration.failed", error=error, duration_s=duration)
        raise MigrationFailed(f"migration failed: {error}")

    def heartbeat(self, lease: Lease) -> None:
        """The lease keeper's thread: renew every lease/3 (retrying transient errors), record ``running``."""
        from pymongo.errors import PyMongoError

        failures = 0
        while not lease.closed:
            if self.clock() >= lease.next:
                try:
                    self._renew_and_record(lease)
                    failures = 0
                except PyMongoError as exc:
                    if not is_transient(exc):
                        lease.fatal = self.db.permanent(exc, *lease.doing)
                        return
                    failures += 1
                    lease.next = self.clock() + Backoff(0.1, max(0.2, lease.interval / 2)).interval(failures)
                    if self.throttle.ready("renew_failed", force=failures == 1):
                        self.log.warning(
                            "migration.renew_failed",
                            error=self.db.describe(exc),
                            lease_left_s=round(lease.confirmed_until - self.clock(), 1),
                        )
                if lease.lost_to is not None:
                    return
            lease.wake.wait(max(0.01, min(lease.next - self.clock(), 0.5)))
            lease.wake.clear()

    def _renew_and_record(self, lease: Lease) -> None:
        import pymongo

        with lease.mutex:
            if lease.closed:
                return
            sent = self.clock()
            budget = max(0.2, min(lease.interval, lease.confirmed_until - sent))
            lease.doing = ("renew the migration lock", f"update {self.where}")
            with pymongo.timeout(budget):
                if not self.lock.renew():
                    lease.lost_to = self.lock_text()
                    return
            lease.confirmed_until = max(lease.confirmed_until, sent + lease.lease_s)
            lease.next = sent + lease.interval
            if lease.running is not None and not lease.running_recorded:
                lease.doing = ("record that the migration runs", f"update {self.where}")
                with pymongo.timeout(max(0.2, min(lease.interval, lease.confirmed_until - self.clock()))):
                    now = self.now()
                    self._write_state({**lease.running, "started_at": now})
                lease.started_at = now
                lease.running_recorded = True

    def _write_state(self, fields: StateDoc) -> None:
        doc: StateDoc = {"_id": STATE_ID, "fingerprint": self.fingerprint, "owner": self.owner, **fields}
        self.collection.replace_one({"_id": STATE_ID}, doc, upsert=True)

    def _conclude(self, lease: Lease, outcome: Outcome, duration: float) -> None:
        """Record how the run ended (when the lease is still ours) and raise unless it succeeded."""
        code = outcome.code
        fields: StateDoc = {"exit_code": code, "duration_s": duration}
        if outcome.signum is not None:
            error = f"interrupted by {signal.Signals(outcome.signum).name} (pulp-manage-db exit {code})"
            self._record(lease, {**fields, "status": "failed", "error": error}, fast=True)
            self.log.error("migration.failed", exit_code=code, error=error, duration_s=duration)
            raise Interrupted(outcome.signum, "migrate")
        if lease.fatal is not None:
            self.log.error("migration.failed", exit_code=code, error=str(lease.fatal), duration_s=duration)
            raise lease.fatal
        if outcome.lost is not None:
            error = f"stopped: {outcome.lost} (pulp-manage-db exit {code})"
            self._record(lease, {**fields, "status": "failed", "error": error})
            raise LeaseLost(self.owner, f"{outcome.lost}; pulp-manage-db was stopped (exit {code})")
        if code == 0:
            self._record(lease, {**fields, "status": "done", "error": None})
            self.log.info("migration.done", duration_s=duration)
            return
        error = EXIT_MEANINGS.get(code, f"pulp-manage-db exited with {code}")
        self._record(lease, {**fields, "status": "failed", "error": error})
        self.log.error("migration.failed", exit_code=code, error=error, duration_s=duration)
        raise MigrationFailed(f"migration failed: {error}")

    def _record(self, lease: Lease, fields: StateDoc, fast: bool = False) -> None:
        """Write the final state after a renewal that proves the lease is still ours.

        Retried until ``PULPINIT_MIGRATION_TIMEOUT`` (one attempt of 0.3 s when ``fast``).  When the
        renewal finds another owner nothing is written and :class:`LeaseLost` is raised: the state
        belongs to the new holder.
        """
        import pymongo

        if not lease.close(FAST_KEEPER_S if fast else None):
            return  # an operation of the heartbeat still hangs (fast path only): let the lease expire

        def attempt() -> bool:
            if not self.lock.renew():
                return False
            now = self.now()
            started_at = lease.started_at or now - dt.timedelta(seconds=fields.get("duration_s") or 0.0)
            self._write_state({**fields, "started_at": started_at, "finished_at": now})
            return True

        if fast:
            try:
                with pymongo.timeout(FAST_RECORD_S):
                    attempt()
            except pymongo.errors.PyMongoError as exc:
                self.log.warning("migration.record_failed", error=self.db.describe(exc))
            return
        ours = self.db.call(
            attempt,
            what="record the migration result",
            action=f"update {self.where}",
            deadline=self.clock() + self.policy.timeout,
            give_up=lambda why: MigrationFailed(f"result not recorded: {why}"),
        )
        if not ours:
            holder = self.lock_text()
            self.log.error("migration.lease_lost", lock=holder, action="result not recorded")
            raise LeaseLost(self.owner, f"the lock is now {holder}; the result of this run was not recorded")

    def _release(self, lease: Lease, fast: bool) -> None:
        import pymongo

        if lease.lost_to is not None:
            return  # not ours any more: nothing to release
        try:
            if fast:
                with pymongo.timeout(FAST_RELEASE_S):
                    self.lock.release()
            else:
                self.db.call(
                    self.lock.release,
                    what="release the migration lock",
                    action=f"update {self.where}",
                    deadline=lease.confirmed_until,
                    give_up=MigrationFailed,
                )
        except (pymongo.errors.PyMongoError, PulpinitError) as exc:
            self.log.warning("migration.lock_not_released", error=str(exc), action="the lease expires on its own")
            return
        self.log.info("migration.lock_released")

    def _start(
        self, drop: bool, command: Sequence[str] = (), variable: str = "PULPINIT_MANAGE_DB"
    ) -> subprocess.Popen[str]:
        """Start ``command`` (default: pulp-manage-db) through :mod:`pulpinit.migrate.tether`; returns
        once it was exec'ed.  ``variable`` names the knob that names the command, for errors."""
        command = tuple(command) or (self.policy.manage_db,)
        argv = [sys.executable, "-m", "pulpinit.migrate.tether", "--parent", str(os.getpid())]
        argv += ["--umask", f"{self.policy.umask:04o}"]
        if drop:
            argv += ["--user", self.policy.user]
        status_r, status_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [*argv, "--status-fd", str(status_w), "--", *command],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
                pass_fds=(status_w,),
            )
        finally:
            os.close(status_w)
        try:
            status = _read_all(status_r)
        finally:
            os.close(status_r)
        if not status:
            return proc
        proc.wait()
        word, _, message = status.partition(" ")
        code = int(word) if word.isdigit() else int(ExitCode.MIGRATION_FAILED)
        if code in (ExitCode.NOT_FOUND, ExitCode.NOT_EXECUTABLE):
            raise ExecError(command[0], f"{message} ({variable})", code)
        if code == ExitCode.CONFIG:
            raise ConfigError(message)
        raise MigrationFailed(f"cannot start {command[0]}: {message}")

    def _supervise(self, proc: subprocess.Popen[str], lease: Lease, event: str = "migration.output") -> Outcome:
        """Wait for the command; forward signals; stop it in time when the lease cannot be kept.

        Its output goes into the log line by line as ``event``."""
        assert proc.stdout is not None  # noqa: S101 - stdout=PIPE in _start
        child = _Child(proc, self.log, self.clock)
        lost: str | None = None
        give_back = signals.take_over(child.forward)  # every stop signal, until given back
        reader = threading.Thread(target=self._stream, args=(proc.stdout, event), daemon=True)
        reader.start()
        try:
            while True:
                try:
                    code = proc.wait(timeout=POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    pass
                lost = self._watch(child, lease, lost)
        finally:
            give_back()
            reader.join(timeout=2)
        return Outcome(code, child.received[0] if child.received else None, lost)

    def _watch(self, child: _Child, lease: Lease, lost: str | None) -> str | None:
        """One look at the lease while the command runs: stop it in time; returns why the lease is lost."""
        policy, now = self.policy, self.clock()
        edge = margin(policy.lease_seconds)
        if lease.lost_to is not None and lost is None:
            lost = f"the lease was taken: the lock is {lease.lost_to}"
            self.log.error("migration.lease_lost", lock=lease.lost_to, action="killing pulp-manage-db")
            child.kill("the lease belongs to someone else")
        expiry = lease.confirmed_until
        if lost is None and now >= expiry - policy.stop_timeout - edge:
            lost = (
                f"the lease could not be renewed for {now - (expiry - policy.lease_seconds):.1f} s "
                f"(lease {policy.lease_seconds:g} s)"
            )
            late = now >= expiry - edge  # e.g. resumed after a pause: no time left for a graceful stop
            self.log.error(
                "migration.lease_lost",
                reason=lost,
                lease_left_s=round(expiry - now, 2),
                action="killing pulp-manage-db" if late else "stopping pulp-manage-db before the lease ends",
            )
            if not late:
                child.terminate(now)
        if lease.fatal is not None:
            child.terminate(now)
        if lost is not None and now >= expiry - edge:
            child.kill("the lease ends")
        if child.term_at is not None and now - child.term_at >= policy.stop_timeout:
            child.kill(f"did not exit within {policy.stop_timeout:g} s of SIGTERM")
        return lost

    def _stream(self, pipe: IO[str], event: str) -> None:
        for line in pipe:
            self.log.info(event, line=line.rstrip("\n"))


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace").strip()


def _iso(value: Any) -> str | None:
    return f"{value:%Y-%m-%dT%H:%M:%SZ}" if value is not None else None


def describe(state: StateDoc) -> str:
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
