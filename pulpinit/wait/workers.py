"""Who heartbeats in Pulp's ``workers`` collection: the census of Pulp's processes.

Every Pulp Celery process — each ``reserved_resource_worker-N@host``,
``resource_manager@host`` and the scheduler ``scheduler@host`` (celery beat) —
upserts ``{_id: <name>, last_heartbeat: <UTC datetime>}`` into the ``workers``
collection of Pulp's database every ``worker_timeout / 5`` seconds, and deletes
its document on a clean (warm) shutdown.  Pulp >= 2.12's ``pulp-manage-db``
refuses to migrate while any ``last_heartbeat`` is younger than
``MIGRATION_WAIT_TIME`` (92 s).

Ages are judged by the **local** clock, because that is the clock a pulp-manage-db
started beside pulpinit compares against.  A document older than the threshold — a
process that was killed and could not delete it — is **stale**, as pulp-manage-db
ignores it.  A heartbeat from the future (a writer's clock ahead of ours) counts as
live, as it does for pulp-manage-db.  Dates are read in every form MongoDB-compatible
servers return them (:mod:`pulpinit.wait.documents`); a heartbeat that cannot be
read is live.

:func:`take_census` splits documents into live and stale (the migrate stage's wait
for a quiet database, :mod:`pulpinit.migrate.quiet`, takes one per look);
:func:`survey` reads the collection once and :class:`Survey` does it beside the
dependency probes, for ``pulpinit check-deps``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pulpinit.targets import MongoTarget
from pulpinit.wait.documents import Unreadable, read_time, warn_once
from pulpinit.wait.mongo_client import connect
from pulpinit.wait.mongo_probe import scrubbed

__all__ = [
    "COLLECTION",
    "MIGRATION_WAIT_TIME",
    "Census",
    "Document",
    "Heartbeat",
    "Survey",
    "local_now",
    "read_heartbeats",
    "survey",
    "take_census",
]

#: The collection in Pulp's database where its processes heartbeat.
COLLECTION = "workers"
#: pulp-manage-db's MIGRATION_WAIT_TIME (Pulp >= 2.12), the default of PULPINIT_QUIET_SECONDS.
MIGRATION_WAIT_TIME = 92.0

Document = Mapping[str, Any]


def local_now() -> dt.datetime:
    """The local wall clock in UTC: what pulp-manage-db's ``datetime.utcnow()`` beside us reads."""
    return dt.datetime.now(dt.timezone.utc)


def _utc(value: dt.datetime) -> dt.datetime:
    # Pulp writes naive UTC datetimes and pymongo returns them naive (tz_aware=False)
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


@dataclass(frozen=True)
class Heartbeat:
    """One document of ``workers``: the process's name and how old its last heartbeat is."""

    name: str
    age_s: float | None  # seconds since last_heartbeat by the local clock; None: no usable time
    unreadable: bool = False  # a last_heartbeat in no form a server returns dates in: taken as live

    def describe(self) -> str:
        if self.unreadable:
            return f"{self.name} (last heartbeat unreadable, taken as live)"
        if self.age_s is None:
            return f"{self.name} (no last_heartbeat)"
        return f"{self.name} (last heartbeat {self.age_s:.1f} s ago)"

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"name": self.name, "age_s": None if self.age_s is None else round(self.age_s, 1)}
        if self.unreadable:
            found["unreadable"] = True
        return found


@dataclass(frozen=True)
class Census:
    """The Pulp processes found in ``workers``, split at ``threshold_s``."""

    live: tuple[Heartbeat, ...]
    stale: tuple[Heartbeat, ...]
    threshold_s: float

    @property
    def quiet(self) -> bool:
        return not self.live

    @property
    def youngest_s(self) -> float | None:
        """The age of the youngest live heartbeat (None when quiet)."""
        ages = [beat.age_s for beat in self.live if beat.age_s is not None]
        return min(ages) if ages else None

    def as_json(self) -> dict[str, Any]:
        return {
            "threshold_s": self.threshold_s,
            "live": [beat.as_json() for beat in self.live],
            "stale": [beat.as_json() for beat in self.stale],
        }


def heartbeat(doc: Document, now: dt.datetime, threshold_s: float) -> tuple[Heartbeat, bool]:
    """One ``workers`` document as a :class:`Heartbeat`, and whether it is live.

    The time is read in every form servers return it (:mod:`pulpinit.wait.documents`); a
    ``last_heartbeat`` that cannot be read is live (the safe side: do not migrate under a process
    that may run), with one warning naming the document.  A document without one is stale, as
    pulp-manage-db's own query does not match it.
    """
    name = str(doc.get("_id"))
    value = doc.get("last_heartbeat")
    try:
        at = read_time(value)
    except Unreadable:
        warn_once(COLLECTION, name, "last_heartbeat", value, "a live process")
        return Heartbeat(name, None, unreadable=True), True
    age = None if at is None else (_utc(now) - _utc(at)).total_seconds()
    return Heartbeat(name, age), age is not None and age < threshold_s


def take_census(documents: Iterable[Document], now: dt.datetime, threshold_s: float) -> Census:
    """Split ``workers`` documents into live (heartbeat younger than ``threshold_s``, or unreadable) and stale."""
    live: list[Heartbeat] = []
    stale: list[Heartbeat] = []
    for doc in documents:
        beat, is_live = heartbeat(doc, now, threshold_s)
        (live if is_live else stale).append(beat)
    return Census(tuple(sorted(live, key=lambda b: b.name)), tuple(sorted(stale, key=lambda b: b.name)), threshold_s)


def read_heartbeats(database: Any) -> list[dict[str, Any]]:
    """Every document of ``workers`` in ``database`` (a pymongo Database): name and last heartbeat."""
    return list(database[COLLECTION].find({}, {"last_heartbeat": 1}))


def survey(
    target: MongoTarget, timeout_s: float, threshold_s: float, now: Callable[[], dt.datetime] = local_now
) -> Census:
    """Read ``workers`` once (``pulpinit check-deps``); pymongo's errors propagate to the caller."""
    import pymongo

    client = connect(target, timeout_s, appname="pulpinit-check-deps")
    try:
        with pymongo.timeout(timeout_s):
            documents = read_heartbeats(client[target.database])
    finally:
        client.close()
    return take_census(documents, now(), threshold_s)


class Survey:
    """:func:`survey` in a thread beside the dependency probes, so ``check-deps`` takes no longer.

    :meth:`result` is the ``pulp_processes`` part of the report: the census as JSON, or
    ``{"error": …}`` (one line, secrets masked) when ``workers`` could not be read in time.
    """

    def __init__(self, target: MongoTarget, timeout_s: float, threshold_s: float) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.threshold_s = threshold_s
        self._result: dict[str, Any] = {"error": f"no answer within {timeout_s:g} s"}
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="pulpinit-survey", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = survey(self.target, self.timeout_s, self.threshold_s).as_json()
        except Exception as exc:  # any pymongo error: reported in the output, never raised
            self._result = {"error": scrubbed(f"{type(exc).__name__}: {exc}", self.target, limit=240)}

    def result(self) -> dict[str, Any]:
        """Wait for the read (``timeout_s`` from the start, and a little) and return its report."""
        self._thread.join(max(0.0, self._started + self.timeout_s + 0.2 - time.monotonic()))
        return dict(self._result)
