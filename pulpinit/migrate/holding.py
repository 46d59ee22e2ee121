"""One migration under the lock: the quiet wait, the backup, pulp-manage-db, the record, the release.

:meth:`Holding.run` is what a migrating role does once it holds the lease (see
:mod:`pulpinit.migrate.migrator` for the whole state machine): the lease keeper renews the lease
(:mod:`pulpinit.migrate.keeper`); the state is re-read under the lock (another replica may have
finished meanwhile); the holder waits until no Pulp process heartbeats
(:mod:`pulpinit.migrate.quiet`), runs ``PULPINIT_PRE_MIGRATE`` and then pulp-manage-db, each
under its watchdog (:mod:`pulpinit.migrate.runner`), with the environment
:mod:`pulpinit.settings.childenv` gives each; it records how the run ended — ``done``,
``failed`` (by itself) or ``interrupted`` (from outside) — after a renewal that proves the lease
is still its own (:meth:`Holding.record`), and always releases the lock.
"""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pulpinit.errors import (
    ConfigError,
    ExecError,
    Interrupted,
    LeaseLost,
    MigrationFailed,
    MigrationPending,
    PulpinitError,
)
from pulpinit.log import Logger
from pulpinit.migrate.keeper import Keeper, Lease, margin
from pulpinit.migrate.lease import LeaseLock
from pulpinit.migrate.policy import MigrationPolicy
from pulpinit.migrate.quiet import QuietWait
from pulpinit.migrate.retry import Retrier
from pulpinit.migrate.runner import Outcome, Runner
from pulpinit.migrate.state import StateDoc, StateStore, describe
from pulpinit.privileges import identity_for
from pulpinit.redact import mask_argv
from pulpinit.settings.childenv import Purpose, child_environ
from pulpinit.targets import MongoTarget
from pulpinit.wait import workers

__all__ = ["EXIT_MEANINGS", "FAST_KEEPER_S", "FAST_RECORD_S", "FAST_RELEASE_S", "Holding"]

#: pulp-manage-db's exit codes and what they mean for the operator.
EXIT_MEANINGS = {
    64: "pulp-manage-db refuses to run as root (set PULPINIT_USER to an unprivileged user)",
    65: "the database is newer than this image: run an image of the newer Pulp version",
    70: "pulp-manage-db failed — Pulp >= 2.12 also exits 70 while workers still heartbeat: stop them, "
    "or migrate from a Job first",
}

#: When a signal stops us: wait for the keeper's operation in flight, make one attempt at recording
#: the interruption and one at releasing the lock, at most this long each (seconds; 1 s in all).
FAST_KEEPER_S, FAST_RECORD_S, FAST_RELEASE_S = 0.2, 0.3, 0.5
T = TypeVar("T")


@dataclass(frozen=True)
class Holding:
    """What the holder works with (the migrator's parts, see :class:`~pulpinit.migrate.migrator.Migrator`)."""

    lock: LeaseLock
    store: StateStore
    db: Retrier
    policy: MigrationPolicy
    target: MongoTarget
    log: Logger
    clock: Callable[[], float]
    now: Callable[[], dt.datetime]
    sleep: Callable[[float], None]
    environ: Mapping[str, str]
    lock_text: Callable[[], str]

    def run(self, sent: float) -> None:
        """Migrate unless done (re-checked under the lock); always release the lock.

        ``sent`` is the monotonic time at which the acquiring request was sent.
        """
        keeper = Keeper(
            self.lock,
            self.store,
            db=self.db,
            log=self.log,
            clock=self.clock,
            now=self.now,
            describe_lock=self.lock_text,
            log_interval=self.policy.log_interval,
        )
        lease = keeper.start(sent)
        owner = self.lock.owner
        fast = False
        try:
            state = self.store.read(lambda: lease.confirmed_until, give_up=lambda why: LeaseLost(owner, why))
            if self.store.is_done(state):
                self.log.info("migration.skipped", reason="done by another replica while we waited")
                return
            self._resume(state)
            identity = identity_for(self.policy.user)  # an unknown user: 78, the state untouched
            runner = Runner(
                self.log,
                stop_timeout=self.policy.stop_timeout,
                margin=margin(self.policy.lease_seconds),
                umask=self.policy.umask,
                user=self.policy.user if identity is not None else None,
            )
            self._wait_for_quiet(lease)
            self._pre_migrate(lease, runner)
            running = runner.start(
                (self.policy.manage_db,),
                variable="PULPINIT_MANAGE_DB",
                env=child_environ(self.environ, Purpose.MANAGE_DB),
                lease=lease,
                event="migration.output",
            )
            started = time.monotonic()
            lease.record_running(
                {"status": "running", "finished_at": None, "exit_code": None, "duration_s": None, "error": None},
                self.clock(),
            )
            self.log.info("migration.start", command=self.policy.manage_db, owner=owner, pid=running.pid)
            outcome = running.supervise(lease, self.clock)
            duration = round(time.monotonic() - started, 3)
            fast = outcome.signum is not None
            self._conclude(lease, outcome, duration)
        except (Interrupted, KeyboardInterrupt):
            fast = True
            raise
        finally:
            idle = lease.close(FAST_KEEPER_S if fast else None)
            self._release(lease, fast or not idle)

    def _resume(self, state: StateDoc) -> None:
        """Say so when this run takes over an interrupted migration (recorded, or a holder that vanished)."""
        if self.store.was_interrupted(state):
            self.log.info("migration.resume", previous=describe(state), reason="interrupted: running it again")
        elif self.store.is_running(state):
            self.log.info(
                "migration.resume",
                previous=describe(state),
                reason="its holder is gone and its lease expired: an interruption, running it again",
            )

    def _keep(self, lease: Lease) -> None:
        """Raise when the lease is gone or about to go: a long wait under the lock must end in time."""
        if lease.fatal is not None:
            raise lease.fatal
        if lease.lost_to is not None:
            raise LeaseLost(self.lock.owner, f"the lock is now {lease.lost_to}")
        if self.clock() >= lease.confirmed_until - margin(self.policy.lease_seconds):
            raise LeaseLost(self.lock.owner, f"the lease could not be renewed (lease {self.policy.lease_seconds:g} s)")

    def _wait_for_quiet(self, lease: Lease) -> None:
        """Under the lock, until no Pulp process heartbeats (:mod:`pulpinit.migrate.quiet`); 75 at the deadline."""
        if self.policy.quiet_seconds <= 0:
            return
        database = self.store.collection.database
        where = f"{self.target.database}.{workers.COLLECTION}"

        def read(deadline: float) -> list[dict[str, Any]]:
            return self.db.call(
                lambda: workers.read_heartbeats(database),
                what="read Pulp's heartbeats",
                action=f"find {where}",
                deadline=lambda: min(deadline, lease.confirmed_until),
                give_up=MigrationPending,
            )

        QuietWait(
            read=read,
            threshold_s=self.policy.quiet_seconds,
            timeout_s=self.policy.timeout,
            log=self.log,
            log_interval=self.policy.log_interval,
            clock=self.clock,
            sleep=self.sleep,
            cap=self.policy.poll_cap,
            check=lambda: self._keep(lease),
        ).wait()

    def _pre_migrate(self, lease: Lease, runner: Runner) -> None:
        """``PULPINIT_PRE_MIGRATE`` (a backup) under the lock; a failure records ``failed`` and raises (70)."""
        argv = self.policy.pre_migrate
        if not argv:
            return
        started = time.monotonic()
        self.log.info("migration.pre_migrate", command=mask_argv(argv))
        try:
            running = runner.start(
                argv,
                variable="PULPINIT_PRE_MIGRATE",
                env=child_environ(self.environ, Purpose.PRE_MIGRATE),
                lease=lease,
                event="migration.pre_migrate_output",
            )
        except (ExecError, ConfigError, MigrationFailed) as exc:
            error = f"PULPINIT_PRE_MIGRATE could not start: {exc}; pulp-manage-db was not run"
        else:
            outcome = running.supervise(lease, self.clock)
            if outcome.signum is not None:
                raise Interrupted(outcome.signum, "migrate")
            if lease.fatal is not None:
                raise lease.fatal
            if outcome.lost is not None:
                raise LeaseLost(self.lock.owner, f"{outcome.lost}; PULPINIT_PRE_MIGRATE was stopped")
            if outcome.code == 0:
                self.log.info("migration.pre_migrate_done", duration_s=round(time.monotonic() - started, 3))
                return
            error = f"PULPINIT_PRE_MIGRATE {argv[0]} exited with {outcome.code}; pulp-manage-db was not run"
        duration = round(time.monotonic() - started, 3)
        self.record(lease, {"status": "failed", "exit_code": None, "duration_s": duration, "error": error})
        self.log.error("migration.failed", error=error, duration_s=duration)
        raise MigrationFailed(f"migration failed: {error}")

    def _conclude(self, lease: Lease, outcome: Outcome, duration: float) -> None:
        """Record how the run ended (when the lease is still ours) and raise unless it succeeded."""
        code = outcome.code
        fields: StateDoc = {"exit_code": code, "duration_s": duration}
        if outcome.signum is not None:
            error = f"interrupted by {signal.Signals(outcome.signum).name} (pulp-manage-db exit {code})"
            self.record(lease, {**fields, "status": "interrupted", "error": error}, fast=True)
            self.log.warning("migration.interrupted", exit_code=code, error=error, duration_s=duration)
            raise Interrupted(outcome.signum, "migrate")
        if lease.fatal is not None:
            self.log.error("migration.failed", exit_code=code, error=str(lease.fatal), duration_s=duration)
            raise lease.fatal
        if outcome.lost is not None:
            error = f"interrupted: {outcome.lost} (pulp-manage-db exit {code})"
            self.record(lease, {**fields, "status": "interrupted", "error": error})
            self.log.warning("migration.interrupted", exit_code=code, error=error, duration_s=duration)
            raise LeaseLost(self.lock.owner, f"{outcome.lost}; pulp-manage-db was stopped (exit {code})")
        if code == 0:
            self.record(lease, {**fields, "status": "done", "error": None})
            self.log.info("migration.done", duration_s=duration)
            return
        error = EXIT_MEANINGS.get(code, f"pulp-manage-db exited with {code}")
        self.record(lease, {**fields, "status": "failed", "error": error})
        self.log.error("migration.failed", exit_code=code, error=error, duration_s=duration)
        raise MigrationFailed(f"migration failed: {error}")

    def record(self, lease: Lease, fields: StateDoc, fast: bool = False) -> None:
        """Write the final state after a renewal that proves the lease is still ours.

        Retried for at most one lease (one attempt of 0.3 s when ``fast``), no attempt running past
        that: a result that cannot be recorded by then leaves ``running`` behind, which the next
        migrating start treats as an interruption.  When the renewal finds another owner nothing is
        written and :class:`LeaseLost` is raised: the state belongs to the new holder.
        """
        import pymongo

        deadline = self.clock() + (FAST_RECORD_S if fast else self.policy.lease_seconds)
        if not lease.close(FAST_KEEPER_S if fast else max(0.0, deadline - self.clock())):
            if fast:
                return  # an operation of the keeper still hangs: let the lease expire
            raise MigrationFailed("result not recorded within one lease: a renewal of the lease still hangs")

        def attempt() -> bool:
            sent = self.clock()
            if not self.lock.renew():
                return False
            lease.confirmed_until = max(lease.confirmed_until, sent + lease.lease_s)
            now = self.now()
            started_at = lease.started_at or now - dt.timedelta(seconds=fields.get("duration_s") or 0.0)
            self.store.write({**fields, "started_at": started_at, "finished_at": now})
            return True

        if fast:
            try:
                self._within(attempt, deadline)()
            except pymongo.errors.PyMongoError as exc:
                self.log.warning("migration.record_failed", error=self.db.describe(exc))
            return
        ours = self.db.call(
            self._within(attempt, deadline),
            what="record the migration result",
            action=f"update {self.store.where}",
            deadline=deadline,
            give_up=lambda why: MigrationFailed(f"result not recorded within one lease: {why}"),
        )
        if not ours:
            holder = self.lock_text()
            self.log.error("migration.lease_lost", lock=holder, action="result not recorded")
            raise LeaseLost(self.lock.owner, f"the lock is now {holder}; the result of this run was not recorded")

    def _within(self, fn: Callable[[], T], deadline: float) -> Callable[[], T]:
        """``fn`` bounded so that no attempt runs past ``deadline`` (monotonic): pymongo's own timeouts are longer."""
        import pymongo

        def bounded() -> T:
            with pymongo.timeout(max(0.1, deadline - self.clock())):
                return fn()

        return bounded

    def _release(self, lease: Lease, fast: bool) -> None:
        import pymongo

        if lease.lost_to is not None:
            return  # not ours any more: nothing to release
        try:
            if fast:
                self._within(self.lock.release, self.clock() + FAST_RELEASE_S)()
            else:  # until the lease would end anyway
                self.db.call(
                    self._within(self.lock.release, lease.confirmed_until),
                    what="release the migration lock",
                    action=f"update {self.store.where}",
                    deadline=lease.confirmed_until,
                    give_up=MigrationFailed,
                )
        except (pymongo.errors.PyMongoError, PulpinitError) as exc:
            self.log.warning("migration.lock_not_released", error=str(exc), action="the lease expires on its own")
            return
        self.log.info("migration.lock_released")
