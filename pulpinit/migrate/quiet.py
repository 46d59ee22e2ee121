"""Migrate into a quiet database: no Pulp process heartbeats when pulp-manage-db starts.

Pulp >= 2.12's ``pulp-manage-db`` refuses to migrate while any Pulp process heartbeated in the
``workers`` collection within ``MIGRATION_WAIT_TIME`` (92 s): it waits out the remainder and
exits 70 if any heartbeat is newer than the newest it saw first.  During a rolling upgrade the
old processes keep heartbeating until they are replaced, so a migration started too early
fails, and is retried, in a loop.

So the migrating role, holding the migration lock, first reads ``workers`` and waits while any
heartbeat is younger than ``PULPINIT_QUIET_SECONDS`` (92 by default, pulp-manage-db's own
constant).  Who is live and who is stale is the census's (:mod:`pulpinit.wait.workers`, which
``check-deps`` reads too): a stale document — a process that was killed and could not delete
it — is reported once and ignored, exactly as pulp-manage-db ignores it.

:class:`QuietWait` waits with an injected clock, sleep and reader.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pulpinit.errors import NotQuiet
from pulpinit.log import Logger, Throttle
from pulpinit.wait.waiter import Backoff
from pulpinit.wait.workers import Census, Document, local_now, take_census

__all__ = ["QuietWait"]


@dataclass
class QuietWait:
    """Wait until no Pulp process heartbeats, or raise :class:`~pulpinit.errors.NotQuiet` (exit 75).

    ``read(deadline)`` returns the documents of ``workers`` (retrying transient MongoDB errors
    until the monotonic ``deadline``); ``check()`` runs before every look and raises when the
    wait must end (e.g. the migration lease was lost).  Logs ``migration.waiting_for_quiet``
    (names and ages) at most every ``log_interval`` seconds, ``migration.stale_processes`` once
    per newly seen stale document, and ``migration.quiet`` at the end.
    """

    read: Callable[[float], Sequence[Document]]
    threshold_s: float
    timeout_s: float
    log: Logger
    log_interval: float = 10.0
    now: Callable[[], dt.datetime] = local_now
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    cap: float = 2.0
    check: Callable[[], None] = lambda: None
    _reported: set[str] = field(default_factory=set)

    def wait(self) -> Census:
        started = self.clock()
        deadline = started + self.timeout_s
        backoff = Backoff(0.1, self.cap)
        throttle = Throttle(self.log_interval, self.clock)
        attempt = 0
        while True:
            self.check()
            census = take_census(self.read(deadline), self.now(), self.threshold_s)
            self._report_stale(census)
            now = self.clock()
            if census.quiet:
                self.log.info(
                    "migration.quiet",
                    waited_s=round(now - started, 3),
                    stale=[beat.name for beat in census.stale],
                    threshold_s=self.threshold_s,
                )
                return census
            if throttle.ready():
                self.log.info(
                    "migration.waiting_for_quiet",
                    processes=[beat.as_json() for beat in census.live],
                    threshold_s=self.threshold_s,
                    waited_s=round(now - started, 1),
                    reason="Pulp processes still heartbeat; pulp-manage-db would refuse to migrate",
                )
            if now >= deadline:
                raise NotQuiet([beat.describe() for beat in census.live], self.timeout_s)
            attempt += 1
            pause = min(backoff.interval(attempt), max(0.01, deadline - now))
            youngest = census.youngest_s
            if youngest is not None:  # wake up right when the youngest heartbeat turns stale
                pause = min(pause, max(0.01, self.threshold_s - youngest + 0.01))
            self.sleep(pause)

    def _report_stale(self, census: Census) -> None:
        new = [beat for beat in census.stale if beat.name not in self._reported]
        if new:
            self._reported.update(beat.name for beat in new)
            self.log.warning(
                "migration.stale_processes",
                processes=[beat.as_json() for beat in new],
                threshold_s=self.threshold_s,
                action="ignored: no heartbeat for longer than the threshold (a killed process), "
                "as pulp-manage-db ignores them",
            )
