"""The lease keeper: a thread that renews the migration lease while its holder works under the lock.

:meth:`Keeper.start` starts the thread for a lease just acquired.  It renews every lease/3 and
tracks the lease on the monotonic clock from the moment each confirmed renewal was *sent*
(:attr:`Lease.confirmed_until` = send time + lease): that is the deadline the watchdog of the
running command fences by (:mod:`pulpinit.migrate.watchdog`).  A renewal verifies itself (the
server's answer must name this owner); one that finds another owner (or none) sets
:attr:`Lease.lost_to` and ends the thread — the lease is gone, the command must die at once.  A
renewal that fails transiently is retried with backoff and logged (``migration.renew_failed``);
a permanent MongoDB error ends the thread with :attr:`Lease.fatal`.

The ``running`` state is written by this thread too, right after the renewal that follows
:meth:`Lease.record_running`, so that it is only ever written under a lease just confirmed.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from pulpinit.errors import PulpinitError
from pulpinit.log import Logger, Throttle
from pulpinit.migrate.lease import LeaseLock
from pulpinit.migrate.retry import Retrier, is_transient
from pulpinit.migrate.state import StateDoc, StateStore
from pulpinit.wait.waiter import Backoff

__all__ = ["Keeper", "Lease", "margin"]


def margin(lease_s: float) -> float:
    """How long before the lease ends the command must be gone (5 % of the lease, 0.1–1 s)."""
    return min(1.0, max(0.1, lease_s * 0.05))


class Lease:
    """The lease while its holder works: what the keeper confirmed, and what it found."""

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
        """Stop the keeper; wait for an operation in flight (up to ``timeout``); True when none is left."""
        self.closed = True
        self.wake.set()
        if not self.mutex.acquire(timeout=-1 if timeout is None else timeout):
            return False
        self.mutex.release()
        return True


class Keeper:
    """Renews one owner's lease (see the module docstring)."""

    def __init__(
        self,
        lock: LeaseLock,
        store: StateStore,
        *,
        db: Retrier,
        log: Logger,
        clock: Callable[[], float],
        now: Callable[[], dt.datetime],
        describe_lock: Callable[[], str],
        log_interval: float = 10.0,
    ) -> None:
        self.lock = lock
        self.store = store
        self.db = db
        self.log = log
        self.clock = clock
        self.now = now
        self.describe_lock = describe_lock
        self.throttle = Throttle(log_interval, clock)

    def start(self, sent: float) -> Lease:
        """The lease acquired by a request sent at ``sent`` (monotonic), kept by a new daemon thread."""
        lease = Lease(sent, self.lock.lease.total_seconds(), self.store.where)
        threading.Thread(target=self.keep, args=(lease,), name="lease-keeper", daemon=True).start()
        return lease

    def keep(self, lease: Lease) -> None:
        """The thread: renew every lease/3 (retrying transient errors), record ``running``."""
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
            lease.doing = ("renew the migration lock", f"update {self.store.where}")
            with pymongo.timeout(budget):
                if not self.lock.renew():
                    lease.lost_to = self.describe_lock()
                    return
            lease.confirmed_until = max(lease.confirmed_until, sent + lease.lease_s)
            lease.next = sent + lease.interval
            if lease.running is not None and not lease.running_recorded:
                lease.doing = ("record that the migration runs", f"update {self.store.where}")
                with pymongo.timeout(max(0.2, min(lease.interval, lease.confirmed_until - self.clock()))):
                    now = self.now()
                    self.store.write({**lease.running, "started_at": now})
                lease.started_at = now
                lease.running_recorded = True
