"""A lease lock in one MongoDB document, timed by the database server's clock.

The lock is the document ``{_id: name, owner, acquired_at, expires_at}`` in
a collection of the Pulp database.  Acquiring is one atomic upsert matching
"free, expired, or mine": when the document exists and matches none of
these, the upsert's insert collides on ``_id`` and the driver raises
``DuplicateKeyError`` — someone else holds it.  The lock never takes "no
error" for "mine": the upsert returns the document as it is afterwards
(``return_document=AFTER``) and the lock is held only when that document
names this owner (some MongoDB-compatible servers answer a colliding upsert
without an error).  Renewals verify themselves the same way.  The holder
renews the lease every lease/3; a holder that dies blocks the others only
until its lease expires.

Clock-skew assumption: every time (``acquired_at``, ``expires_at``, and the
"now" an expiry is compared with) is read from the database server
(``hello.localTime``), never from the client.  Replicas whose own clocks
disagree therefore still agree on who holds the lease; only the server's
clock matters, and it is one clock.  What a lease cannot fence is told in
:mod:`pulpinit.migrate.migrator` (a machine or cgroup frozen for longer than the lease).

A document's times are read whatever shape the server gives them
(:mod:`pulpinit.wait.documents`); a lease whose expiry cannot be read is held.

:class:`Collection` is what the lock and the migrator need of pymongo's ``Collection``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pulpinit.wait import documents


class Collection(Protocol):
    """The operations of a pymongo ``Collection`` the migrate stage uses."""

    @property
    def database(self) -> Any:
        """The database it belongs to (Pulp's: the quiet wait reads its ``workers`` collection)."""

    def find_one(self, filter: Mapping[str, Any], /) -> Mapping[str, Any] | None: ...

    def find_one_and_update(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any],
        /,
        *,
        upsert: bool = ...,
        return_document: bool = ...,
    ) -> Mapping[str, Any] | None: ...

    def update_one(self, filter: Mapping[str, Any], update: Mapping[str, Any], /) -> Any: ...

    def replace_one(
        self, filter: Mapping[str, Any], replacement: Mapping[str, Any], /, *, upsert: bool = ...
    ) -> Any: ...


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as recorded in the document.

    ``unreadable`` names the time field the server gave back in a form no reader knows (see
    :mod:`pulpinit.wait.documents`): such a lease counts as held, never as expired.
    """

    owner: str | None
    acquired_at: dt.datetime | None
    expires_at: dt.datetime | None
    unreadable: str | None = None

    @classmethod
    def of(cls, doc: Mapping[str, Any], where: str = "lock") -> Holder:
        """The holder a lock document names, whatever shape the server gave its fields."""
        owner = documents.text(doc.get("owner")) or None
        times: dict[str, dt.datetime | None] = {}
        unreadable = None
        for field in ("acquired_at", "expires_at"):
            try:
                times[field] = documents.read_time(doc.get(field))
            except documents.Unreadable:
                times[field] = None
                if field == "expires_at" and owner:
                    unreadable = repr(doc.get(field))[:60]
                    documents.warn_once(where, doc.get("_id"), field, doc.get(field), "a lease that is held")
        return cls(owner, times["acquired_at"], times["expires_at"], unreadable)

    def is_live(self, now: dt.datetime) -> bool:
        """True while someone holds a lease not expired at ``now`` (server time), or one whose expiry is unreadable."""
        if not self.owner:
            return False
        if self.unreadable is not None:
            return True
        return self.expires_at is not None and self.expires_at > now

    def describe(self, now: dt.datetime) -> str:
        if not self.owner or (self.expires_at is None and self.unreadable is None):
            return "free"
        since = f" since {self.acquired_at:%Y-%m-%dT%H:%M:%SZ}" if self.acquired_at else ""
        if self.expires_at is None:
            return f"held by {self.owner}{since} (lease expiry unreadable: {self.unreadable}; taken as held)"
        left = (self.expires_at - now).total_seconds()
        state = f"lease expires in {left:.0f} s" if left >= 0 else f"lease expired {-left:.0f} s ago"
        return f"held by {self.owner}{since} ({state})"


def server_clock(database: Any) -> Callable[[], dt.datetime]:
    """``now()`` as the MongoDB server sees it (``hello.localTime``, naive UTC, ms precision).

    MongoDB before 4.4.2 has no ``hello`` (CommandNotFound, 59): ``isMaster`` answers the same.
    A server whose ``localTime`` is missing or unreadable leaves this machine's clock (one warning).
    """
    from pymongo.errors import OperationFailure

    def now() -> dt.datetime:
        try:
            reply = database.client.admin.command("hello")
        except OperationFailure as exc:
            if exc.code != 59:
                raise
            reply = database.client.admin.command("isMaster")
        value = reply.get("localTime")
        try:
            local_time = documents.read_time(value)
        except documents.Unreadable:
            local_time = None
        if local_time is None:
            documents.warn_once("hello", "reply", "localTime", value, "this machine's clock")
            return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        return local_time

    return now


class LeaseLock:
    """An expiring lock owned by ``owner`` (see :func:`pulpinit.migrate.migrator.owner_name`)."""

    def __init__(
        self, collection: Collection, name: str, owner: str, lease_s: float, now: Callable[[], dt.datetime]
    ) -> None:
        self.collection = collection
        self.name = name
        self.owner = owner
        self.lease = dt.timedelta(seconds=lease_s)
        self.now = now

    def try_acquire(self) -> bool:
        """Take the lock if it is free, expired or already ours; True only when the server says it is ours."""
        from pymongo import ReturnDocument
        from pymongo.errors import DuplicateKeyError

        now = self.now()
        try:
            doc = self.collection.find_one_and_update(
                {"_id": self.name, "$or": [{"owner": None}, {"expires_at": {"$lt": now}}, {"owner": self.owner}]},
                {"$set": {"owner": self.owner, "acquired_at": now, "expires_at": now + self.lease}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            return False
        return isinstance(doc, dict) and doc.get("owner") == self.owner

    def renew(self) -> bool:
        """Extend our lease; False when it is no longer ours (it expired and was taken, or was freed)."""
        from pymongo import ReturnDocument

        now = self.now()
        doc = self.collection.find_one_and_update(
            {"_id": self.name, "owner": self.owner},
            {"$set": {"expires_at": now + self.lease}},
            return_document=ReturnDocument.AFTER,
        )
        return isinstance(doc, dict) and doc.get("owner") == self.owner

    def release(self) -> None:
        """Free the lock if we still hold it (the document stays, with no owner)."""
        self.collection.update_one(
            {"_id": self.name, "owner": self.owner},
            {"$set": {"owner": None, "expires_at": None, "released_at": self.now()}},
        )

    def holder(self) -> Holder:
        doc = self.collection.find_one({"_id": self.name}) or {}
        return Holder.of(doc, self.collection_name)

    @property
    def collection_name(self) -> str:
        return str(getattr(self.collection, "name", "lock"))
