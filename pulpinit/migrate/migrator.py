"""Run Pulp's database migrations exactly once per version, across replicas and restarts.

``beat`` and ``pulpinit migrate`` migrate; every other role waits.  The parts:

* :mod:`~pulpinit.migrate.lease` — the lease lock, one document timed by the server's clock;
* :mod:`~pulpinit.migrate.state` — the state store: what the last migration came to
  (``running``, ``done``, ``failed`` by itself, ``interrupted`` from outside);
* :mod:`~pulpinit.migrate.keeper` — the lease keeper, a thread renewing the lease;
* :mod:`~pulpinit.migrate.runner` and :mod:`~pulpinit.migrate.watchdog` — the child runner:
  every command under the lock runs under a resident stdlib watchdog that fences it by the
  lease deadline, even when pulpinit is frozen;
* :mod:`~pulpinit.migrate.quiet` — the wait for a quiet database;
* this module — the state machine (:class:`Migrator`) and the stage (:func:`migrate`).

The stage takes plain inputs: where MongoDB is, the fingerprint, the owner name and a
:class:`MigrationPolicy` (the knobs it uses).  Waiting — for the state to become ``done``
(other roles) or for the lock (migrating roles) — polls with the dependency wait's backoff, and
``PULPINIT_MIGRATION_TIMEOUT`` counts only the time in which nobody holds a live lease
(:meth:`Migrator.poll`).  Every MongoDB operation goes through
:class:`~pulpinit.migrate.retry.Retrier` (transient errors retried, the rest classified).

**Under the lock** (:meth:`Migrator.run_locked`) the holder waits for a quiet database, runs
``PULPINIT_PRE_MIGRATE`` (a backup), then pulp-manage-db, both under the watchdog, as
``PULPINIT_USER``.  Only once pulp-manage-db was exec'ed is the state ``running`` written: a
missing command (127), a non-executable one (126) or an unknown user (78) leaves the state as
it was.  Their output is streamed line by line into pulpinit's log.

**Interrupted is not failed.**  A stop signal is forwarded to the command; pulpinit waits for it
(``PULPINIT_MANAGE_DB_STOP_TIMEOUT`` at most, then the watchdog SIGKILLs it), records
``interrupted`` with one attempt of at most 0.3 s, releases the lock with one of at most 0.5 s
(if MongoDB does not answer, the lease simply expires) and exits 128+signal.  A lease lost
while the holder still holds the lock afterwards (pulpinit was frozen, MongoDB unreachable) is
recorded ``interrupted`` too, and exits 70.  The next migrating start — beat included — runs an
interrupted migration again, the backup first; so does it for a ``running`` state whose lease
expired with nobody holding it (a holder killed before it could record).  The waiting roles
keep waiting through an interruption.  Only a pulp-manage-db (or backup) that failed by itself
is ``failed``: beat and the waiting roles stop with 75 naming it, and only ``pulpinit migrate``
(the Job) runs it again.

**The lease.**  Whoever finds the lease taken over writes no state: every state write follows a
renewal that proves the lease is still its own (:meth:`Migrator.record`).  The result is
recorded with retries for at most one lease (MongoDB may be failing over right then); a result
not recorded by then leaves ``running`` behind, which the next migrating start treats as an
interruption.

**What a lease cannot fence.**  The watchdog fences the command by the deadline pulpinit last
confirmed, so a frozen or stuck pulpinit cannot let its command outlive the lease.  What remains
is a machine or cgroup frozen as a whole (a paused VM, a stopped container), which freezes the
watchdog too: when it resumes, the command is killed within a second (the deadline is overdue),
but what it executes in that moment runs beside the new holder's migration.  Choose
``PULPINIT_LEASE_SECONDS`` well above the pauses your platform can cause (live migration,
checkpoints).
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal

from pulpinit import log
from pulpinit.errors import MigrationPending, PulpinitError
from pulpinit.log import Throttle
from pulpinit.migrate.lease import Collection, Holder, LeaseLock, server_clock
from pulpinit.migrate.policy import MigrationPolicy
from pulpinit.migrate.retry import Retrier
from pulpinit.migrate.state import LOCK_ID, STATE_ID, StateDoc, StateStore, describe, iso
from pulpinit.targets import MongoTarget
from pulpinit.wait.mongo_client import connect
from pulpinit.wait.waiter import Backoff

if TYPE_CHECKING:
    from pulpinit.migrate.holding import Holding

__all__ = ["APPNAME", "LOCK_ID", "STATE_ID", "MigrationPolicy", "Migrator", "Mode", "migrate", "owner_name"]

#: The client name the migrate stage's MongoDB connections carry (server logs, currentOp).
APPNAME = "pulpinit-migrate"


#: What the stage does: ``run`` takes the lock and migrates unless this version is done (beat,
#: migrate); ``wait`` waits until this version's migrations are done (the other roles).  A role
#: that does neither (``PULPINIT_MIGRATION_WAIT=false``) does not enter the stage.
Mode = Literal["run", "wait"]


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
    mode: Mode,
    target: MongoTarget,
    fingerprint: str,
    policy: MigrationPolicy,
    *,
    owner: str,
    sleep: Callable[[float], None] = time.sleep,
    retry_failed: bool = True,
    environ: Mapping[str, str] | None = None,
) -> None:
    """The migrate stage: migrate once (``run``) or wait until the migrations are done (``wait``).

    ``retry_failed``: whether RUN runs a migration of this fingerprint recorded as ``failed``
    again (``pulpinit migrate``) or stops with 75 naming it (beat, see :meth:`Migrator.run`).
    ``environ``: the environment the commands under the lock get their own from
    (:mod:`pulpinit.settings.childenv`; default ``os.environ``).
    """
    with log.stage("migrate", mode=mode):
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
                environ=os.environ if environ is None else environ,
            )
            if mode == "run":
                migrator.run(retry_failed=retry_failed)
            else:
                migrator.wait()
        finally:
            import pymongo

            with pymongo.timeout(1.0):  # MongoDB gone: ending the sessions must not wait for server selection
                client.close()


class Progress(enum.Enum):
    """What one look at the database found (see :meth:`Migrator.poll`)."""

    FINISHED = "finished"
    HELD = "held"  # someone holds a live lease: this time does not count against the deadline
    IDLE = "idle"  # nobody holds a live lease (or MongoDB did not say): this time counts


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
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.collection = collection
        self.owner = owner
        self.fingerprint = fingerprint
        self.policy = policy
        self.target = target
        self.now = now
        self.sleep = sleep
        self.clock = clock
        self.environ = os.environ if environ is None else environ
        self.lock = LeaseLock(collection, LOCK_ID, owner, policy.lease_seconds, now)
        self.log = log.get_logger(stage="migrate", fingerprint=fingerprint)
        self.throttle = Throttle(policy.log_interval, clock)
        self.db = Retrier(
            target, clock=clock, sleep=sleep, log=self.log, cap=self.policy.poll_cap, log_interval=policy.log_interval
        )
        self.store = StateStore(collection, fingerprint=fingerprint, owner=owner, db=self.db, where=self.where)

    @functools.cached_property
    def holding(self) -> Holding:
        """Holding the lock (the quiet wait, the lease keeper, the child): only a run that takes the lock
        needs it, and only then is it loaded (a warm start or a waiting role never takes the lock)."""
        from pulpinit.migrate.holding import Holding

        return Holding(
            self.lock,
            self.store,
            self.db,
            self.policy,
            self.target,
            self.log,
            clock=self.clock,
            now=self.now,
            sleep=self.sleep,
            environ=self.environ,
            lock_text=self.lock_text,
        )

    @property
    def where(self) -> str:
        return f"{self.target.database}.{self.policy.lock_collection}"

    # -- the documents, each read with retries until ``deadline`` ----------------------
    def state(
        self, deadline: float | Callable[[], float], give_up: Callable[[str], PulpinitError] = MigrationPending
    ) -> StateDoc:
        return self.store.read(deadline, give_up)

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

    def lock_text(self) -> str:
        """The lock's holder in words (best effort: MongoDB gets one second)."""
        try:
            holder, now = self.holder(self.clock() + 1.0)
        except PulpinitError as exc:
            return f"lock unknown ({exc})"
        return str(holder.describe(now))

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
        backoff = Backoff(0.1, self.policy.poll_cap)
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

        A migration of this fingerprint recorded as ``failed`` (by itself) runs again only with
        ``retry_failed`` (``pulpinit migrate``, the Job); beat stops with 75 naming the failure,
        like the waiting roles, so that a restarting beat does not run a failing migration (and
        the backup before it) over and over.  An interrupted one runs again here.
        """

        def step(deadline: float) -> Progress:
            state = self.state(deadline)
            if self.store.is_done(state):
                self.log.info("migration.skipped", reason="already done for this fingerprint")
                return Progress.FINISHED
            if not retry_failed and self.store.has_failed(state):
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
                self.holding.run(sent)
                return Progress.FINISHED
            holder, now = self.holder(deadline)
            if self.throttle.ready("lock_held"):
                self.log.info("migration.lock_held", lock=holder.describe(now))
            return Progress.HELD if holder.is_live(now) else Progress.IDLE

        def pending(why: str) -> PulpinitError:
            return MigrationPending(f"could not take the migration lock ({why}): {self.lock_text()}")

        self.poll(step, pending)

    def wait(self) -> None:
        """Wait until this fingerprint is done; 75 at the deadline, or at once when it failed by itself."""

        def step(deadline: float) -> Progress:
            state = self.state(deadline)
            if self.store.is_done(state):
                return Progress.FINISHED
            if self.store.has_failed(state):
                raise MigrationPending(f"the migration of {self.fingerprint} failed: {describe(state)}")
            holder, now = self.holder(deadline)
            live = holder.is_live(now)
            if self.store.is_running(state) and not live and self.throttle.ready("holder_gone"):
                self.log.warning(
                    "migration.holder_gone",
                    owner=state.get("owner"),
                    since=iso(state.get("started_at")),
                    lock=holder.describe(now),
                    action="the process that was migrating is gone; beat or `pulpinit migrate` (the Job) takes "
                    "the lock over and migrates again; this role keeps waiting until PULPINIT_MIGRATION_TIMEOUT",
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
