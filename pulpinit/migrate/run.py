"""Run pulp-manage-db while holding the lease: start, record, stream, renew, stop in time, release.

Called by :class:`pulpinit.migrate.migrator.Migrator` once it holds the lock.

**Start.**  The command runs through :mod:`pulpinit.migrate.tether` (privilege drop to
``PULPINIT_USER``, then ``PR_SET_PDEATHSIG``), so it dies with pulpinit even
when pulpinit is SIGKILLed and is not PID 1.  Only once the exec succeeded is
the state ``running`` written: a missing command (127), a non-executable one
(126) or an unknown user (78) leaves the state as it was.  Its output is
streamed line by line into pulpinit's log.

**The lease.**  A keeper thread renews the lease every lease/3 and tracks it on
the monotonic clock from the moment each confirmed renewal was *sent*
(``confirmed_until`` = send time + lease).  A renewal verifies itself (the
server's answer must name this owner); one that fails transiently is retried
with backoff.  The main thread watches the child and the lease:

* at ``confirmed_until − PULPINIT_MANAGE_DB_STOP_TIMEOUT − margin`` without a
  newer confirmation it logs ``migration.lease_lost`` and sends SIGTERM, and
  SIGKILL at ``confirmed_until − margin`` at the latest, so the child is gone
  before the lease can pass to anyone else (margin: 5 % of the lease, 0.1–1 s);
* a renewal that finds another owner (or none) means the lease is gone already:
  SIGKILL at once.  The renewal's answer is what catches a paused machine whose
  monotonic clock stood still: the owner in the document has changed.

A run whose lease was lost never ends in success: exit 70
(:class:`~pulpinit.errors.LeaseLost`).  Every state write is preceded by a
verifying renewal, so a holder that lost the lease never overwrites the state of
the one that took it over.  The result is recorded with retries until
``PULPINIT_MIGRATION_TIMEOUT`` (MongoDB may be failing over right then).

**Signals.**  SIGTERM or SIGINT is forwarded to pulp-manage-db; pulpinit waits
for it (``PULPINIT_MANAGE_DB_STOP_TIMEOUT`` at most, then SIGKILL), records the
failure with one attempt of at most 0.3 s and releases the lock with one of at
most 0.5 s (if MongoDB does not answer, the lease simply expires), and exits
128+signal.

**What a lease cannot fence.**  Leases bound *time*, not *execution*: a process
that keeps running while the whole machine is paused (a frozen VM, a stopped
cgroup including pulp-manage-db) cannot notice that its lease ran out.  When it
resumes it kills its pulp-manage-db within a second (the lease is overdue on the
monotonic clock, or the next renewal finds another owner), but instructions the
child executes in that moment run beside the new holder's migration.  As with
Mongock, the assumption is that a holder is not frozen for longer than
``PULPINIT_LEASE_SECONDS − PULPINIT_MANAGE_DB_STOP_TIMEOUT``; choose the lease
well above the pauses your platform can cause (live migration, checkpoints).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from pulpinit import signals
from pulpinit.errors import (
    ConfigError,
    ExecError,
    ExitCode,
    Interrupted,
    LeaseLost,
    MigrationFailed,
    PulpinitError,
)
from pulpinit.wait.waiter import Backoff

if TYPE_CHECKING:
    from pulpinit.migrate.migrator import Migrator

#: When a signal stops us: wait for the keeper's operation in flight, make one attempt at recording
#: the failure and one at releasing the lock, at most this long each (seconds; 1 s in all).
FAST_KEEPER_S, FAST_RECORD_S, FAST_RELEASE_S = 0.2, 0.3, 0.5
POLL_S = 0.05


def margin(lease_s: float) -> float:
    """How long before the lease ends pulp-manage-db must be gone (5 % of the lease, 0.1–1 s)."""
    return min(1.0, max(0.1, lease_s * 0.05))


def _stream(pipe: IO[str], migrator: Migrator) -> None:
    for line in pipe:
        migrator.log.info("migration.output", line=line.rstrip("\n"))


class Keeper(threading.Thread):
    """Renews the lease in the background and writes the ``running`` state once asked to."""

    def __init__(self, migrator: Migrator, sent: float) -> None:
        super().__init__(name="lease-keeper", daemon=True)
        self.m = migrator
        self.lease = migrator.toolkit.lease_seconds
        self.interval = self.lease / 3
        self.confirmed_until = sent + self.lease  # monotonic
        self.lost_to: str | None = None  # set when a renewal finds the lease is not ours
        self.fatal: PulpinitError | None = None  # a permanent MongoDB error
        self.running_recorded = False
        self.started_at: dt.datetime | None = None  # server time of the `running` record
        self._running: dict[str, Any] | None = None
        self._next = sent + self.interval
        self._closed = False
        self._mutex = threading.Lock()  # held during each MongoDB operation; closing takes it
        self._doing = ("renew the migration lock", f"update {migrator.where}")  # (what, action) for errors
        self._wake = threading.Event()

    def record_running(self, fields: dict[str, Any]) -> None:
        """Write the ``running`` state, right after the next (immediate) renewal that confirms the lease."""
        self._running = fields
        self._next = self.m.clock()
        self._wake.set()

    def close(self, timeout: float | None) -> bool:
        """Stop; wait for an operation in flight (up to ``timeout``); True when none is left."""
        self._closed = True
        self._wake.set()
        if not self._mutex.acquire(timeout=-1 if timeout is None else timeout):
            return False
        self._mutex.release()
        return True

    def run(self) -> None:
        from pymongo.errors import PyMongoError

        from pulpinit.migrate.retry import is_transient

        failures = 0
        while not self._closed:
            if self.m.clock() >= self._next:
                try:
                    self._renew_and_record()
                    failures = 0
                except PyMongoError as exc:
                    if not is_transient(exc):
                        self.fatal = self.m.db.permanent(exc, *self._doing)
                        return
                    failures += 1
                    self._next = self.m.clock() + Backoff(0.1, max(0.2, self.interval / 2)).interval(failures)
                    if failures == 1 or self.m.throttled("renew_failed"):
                        self.m.log.warning(
                            "migration.renew_failed",
                            error=self.m.db.describe(exc),
                            lease_left_s=round(self.confirmed_until - self.m.clock(), 1),
                        )
                if self.lost_to is not None:
                    return
            self._wake.wait(max(0.01, min(self._next - self.m.clock(), 0.5)))
            self._wake.clear()

    def _renew_and_record(self) -> None:
        import pymongo

        with self._mutex:
            if self._closed:
                return
            sent = self.m.clock()
            budget = max(0.2, min(self.interval, self.confirmed_until - sent))
            self._doing = ("renew the migration lock", f"update {self.m.where}")
            with pymongo.timeout(budget):
                if not self.m.lock.renew():
                    self.lost_to = self.m.lock_text()
                    return
            self.confirmed_until = max(self.confirmed_until, sent + self.lease)
            self._next = sent + self.interval
            if self._running is not None and not self.running_recorded:
                self._doing = ("record that the migration runs", f"update {self.m.where}")
                with pymongo.timeout(max(0.2, min(self.interval, self.confirmed_until - self.m.clock()))):
                    now = self.m.now()
                    _write_state(self.m, {**self._running, "started_at": now})
                self.started_at = now
                self.running_recorded = True


def _write_state(migrator: Migrator, fields: dict[str, Any]) -> None:
    from pulpinit.migrate.migrator import STATE_ID

    doc = {"_id": STATE_ID, "fingerprint": migrator.fingerprint, "owner": migrator.owner, **fields}
    migrator.collection.replace_one({"_id": STATE_ID}, doc, upsert=True)


@dataclass
class Outcome:
    """How pulp-manage-db ended."""

    code: int
    signum: int | None = None  # the signal that made us stop it
    lost: str | None = None  # why the lease was lost, when it was


def run_locked(migrator: Migrator, sent: float) -> None:
    """Migrate unless done (re-checked under the lock); always release the lock.

    ``sent`` is the monotonic time at which the acquiring request was sent.
    """
    from pulpinit.privileges import identity_for

    keeper = Keeper(migrator, sent)
    keeper.start()
    fast = False
    try:
        state = migrator.state(lambda: keeper.confirmed_until, give_up=lambda why: LeaseLost(migrator.owner, why))
        if migrator.is_done(state):
            migrator.log.info("migration.skipped", reason="done by another replica while we waited")
            return
        identity = identity_for(migrator.toolkit.user)  # an unknown user: 78, the state untouched
        proc = _start(migrator, identity is not None)
        started = time.monotonic()
        keeper.record_running(
            {"status": "running", "finished_at": None, "exit_code": None, "duration_s": None, "error": None}
        )
        migrator.log.info("migration.start", command=migrator.toolkit.manage_db, owner=migrator.owner, pid=proc.pid)
        outcome = _supervise(migrator, proc, keeper)
        duration = round(time.monotonic() - started, 3)
        fast = outcome.signum is not None
        _conclude(migrator, keeper, outcome, duration)
    except (Interrupted, KeyboardInterrupt):
        fast = True
        raise
    finally:
        idle = keeper.close(FAST_KEEPER_S if fast else None)
        _release(migrator, keeper, fast or not idle)


def _conclude(migrator: Migrator, keeper: Keeper, outcome: Outcome, duration: float) -> None:
    """Record how the run ended (when the lease is still ours) and raise unless it succeeded."""
    from pulpinit.migrate.migrator import EXIT_MEANINGS

    code = outcome.code
    fields: dict[str, Any] = {"exit_code": code, "duration_s": duration}
    if outcome.signum is not None:
        error = f"interrupted by {signal.Signals(outcome.signum).name} (pulp-manage-db exit {code})"
        _record(migrator, keeper, {**fields, "status": "failed", "error": error}, fast=True)
        migrator.log.error("migration.failed", exit_code=code, error=error, duration_s=duration)
        raise Interrupted(outcome.signum, "migrate")
    if keeper.fatal is not None:
        migrator.log.error("migration.failed", exit_code=code, error=str(keeper.fatal), duration_s=duration)
        raise keeper.fatal
    if outcome.lost is not None:
        error = f"stopped: {outcome.lost} (pulp-manage-db exit {code})"
        _record(migrator, keeper, {**fields, "status": "failed", "error": error})
        raise LeaseLost(migrator.owner, f"{outcome.lost}; pulp-manage-db was stopped (exit {code})")
    if code == 0:
        _record(migrator, keeper, {**fields, "status": "done", "error": None})
        migrator.log.info("migration.done", duration_s=duration)
        return
    error = EXIT_MEANINGS.get(code, f"pulp-manage-db exited with {code}")
    _record(migrator, keeper, {**fields, "status": "failed", "error": error})
    migrator.log.error("migration.failed", exit_code=code, error=error, duration_s=duration)
    raise MigrationFailed(f"migration failed: {error}")


def _record(migrator: Migrator, keeper: Keeper, fields: dict[str, Any], fast: bool = False) -> None:
    """Write the final state after a renewal that proves the lease is still ours.

    Retried until ``PULPINIT_MIGRATION_TIMEOUT`` (one attempt of 0.5 s when ``fast``).  When the
    renewal finds another owner nothing is written and :class:`LeaseLost` is raised: the state
    belongs to the new holder.
    """
    import pymongo

    if not keeper.close(FAST_KEEPER_S if fast else None):
        return  # an operation of the keeper still hangs (fast path only): let the lease expire

    def attempt() -> bool:
        if not migrator.lock.renew():
            return False
        now = migrator.now()
        started_at = keeper.started_at or now - dt.timedelta(seconds=fields["duration_s"])
        _write_state(migrator, {**fields, "started_at": started_at, "finished_at": now})
        return True

    if fast:
        try:
            with pymongo.timeout(FAST_RECORD_S):
                attempt()
        except pymongo.errors.PyMongoError as exc:
            migrator.log.warning("migration.record_failed", error=migrator.db.describe(exc))
        return
    deadline = migrator.clock() + migrator.toolkit.migration_timeout
    ours = migrator.db.call(
        attempt,
        what="record the migration result",
        action=f"update {migrator.where}",
        deadline=deadline,
        give_up=lambda why: MigrationFailed(f"result not recorded: {why}"),
    )
    if not ours:
        holder = migrator.lock_text()
        migrator.log.error("migration.lease_lost", lock=holder, action="result not recorded")
        raise LeaseLost(migrator.owner, f"the lock is now {holder}; the result of this run was not recorded")


def _release(migrator: Migrator, keeper: Keeper, fast: bool) -> None:
    import pymongo

    if keeper.lost_to is not None:
        return  # not ours any more: nothing to release
    try:
        if fast:
            with pymongo.timeout(FAST_RELEASE_S):
                migrator.lock.release()
        else:
            migrator.db.call(
                migrator.lock.release,
                what="release the migration lock",
                action=f"update {migrator.where}",
                deadline=keeper.confirmed_until,
                give_up=MigrationFailed,
            )
    except (pymongo.errors.PyMongoError, PulpinitError) as exc:
        migrator.log.warning("migration.lock_not_released", error=str(exc), action="the lease expires on its own")
        return
    migrator.log.info("migration.lock_released")


def _start(migrator: Migrator, drop: bool) -> subprocess.Popen[str]:
    """Start the command through :mod:`pulpinit.migrate.tether`; returns once it was exec'ed."""
    command = migrator.toolkit.manage_db
    argv = [
        sys.executable,
        "-m",
        "pulpinit.migrate.tether",
        "--parent",
        str(os.getpid()),
        "--umask",
        f"{migrator.toolkit.umask:04o}",
    ]
    if drop:
        argv += ["--user", migrator.toolkit.user]
    status_r, status_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [*argv, "--status-fd", str(status_w), "--", command],
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
        raise ExecError(command, f"{message} (PULPINIT_MANAGE_DB)", code)
    if code == ExitCode.CONFIG:
        raise ConfigError(message)
    raise MigrationFailed(f"cannot start {command}: {message}")


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace").strip()


def _supervise(migrator: Migrator, proc: subprocess.Popen[str], keeper: Keeper) -> Outcome:
    """Wait for the command; forward signals; stop it in time when the lease cannot be kept."""
    assert proc.stdout is not None  # noqa: S101 - stdout=PIPE in _start
    toolkit, clock = migrator.toolkit, migrator.clock
    stop_timeout, edge = toolkit.manage_db_stop_timeout, margin(toolkit.lease_seconds)
    received: list[int] = []
    term_at: float | None = None
    killed = False
    lost: str | None = None

    def terminate(now: float) -> None:
        nonlocal term_at
        if term_at is None:
            term_at = now
            proc.terminate()

    def kill(reason: str) -> None:
        nonlocal killed
        if not killed:
            killed = True
            migrator.log.error("migration.kill", reason=reason)
            proc.kill()

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal term_at
        received.append(signum)
        migrator.log.warning("migration.signal", signal=signal.Signals(signum).name, action="forwarded")
        proc.send_signal(signals.for_child(signum))  # the image's stop signal (SIGWINCH) becomes SIGTERM
        term_at = term_at if term_at is not None else clock()

    give_back = signals.take_over(forward)  # every stop signal, until given back
    reader = threading.Thread(target=_stream, args=(proc.stdout, migrator), daemon=True)
    reader.start()
    try:
        while True:
            try:
                code = proc.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            now = clock()
            if keeper.lost_to is not None and lost is None:
                lost = f"the lease was taken: the lock is {keeper.lost_to}"
                migrator.log.error("migration.lease_lost", lock=keeper.lost_to, action="killing pulp-manage-db")
                kill("the lease belongs to someone else")
            expiry = keeper.confirmed_until
            if lost is None and now >= expiry - stop_timeout - edge:
                lost = (
                    f"the lease could not be renewed for {now - (expiry - toolkit.lease_seconds):.1f} s "
                    f"(lease {toolkit.lease_seconds:g} s)"
                )
                late = now >= expiry - edge  # e.g. resumed after a pause: no time left for a graceful stop
                migrator.log.error(
                    "migration.lease_lost",
                    reason=lost,
                    lease_left_s=round(expiry - now, 2),
                    action="killing pulp-manage-db" if late else "stopping pulp-manage-db before the lease ends",
                )
                if not late:
                    terminate(now)
            if keeper.fatal is not None:
                terminate(now)
            if lost is not None and now >= expiry - edge:
                kill("the lease ends")
            if term_at is not None and now - term_at >= stop_timeout:
                kill(f"did not exit within {stop_timeout:g} s of SIGTERM")
    finally:
        give_back()
        reader.join(timeout=2)
    return Outcome(code, received[0] if received else None, lost)
