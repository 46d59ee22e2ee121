"""The migration state: one document beside the lock, what the last migration came to.

``{_id: "migration-state", fingerprint, status, owner, started_at, finished_at, exit_code,
duration_s, error}`` in the lock collection.  ``status`` is

* ``running`` — written by the holder once pulp-manage-db was exec'ed;
* ``done`` — pulp-manage-db exited 0: nobody runs it again for this fingerprint;
* ``failed`` — pulp-manage-db (or ``PULPINIT_PRE_MIGRATE``) failed **by itself**: only
  ``pulpinit migrate`` (the Job) runs it again, every other role stops with 75 naming it;
* ``interrupted`` — the run was stopped from outside: a stop signal (a node drain, a pod
  deletion, a rollout), or the lease lost while pulpinit itself was stopped or MongoDB
  unreachable.  Not a failure of the migration: the next migrating start (beat or the Job)
  runs it again, ``PULPINIT_PRE_MIGRATE`` first, and the waiting roles keep waiting.

A ``running`` state whose lease has expired with nobody holding it (a holder killed before it
could record anything) is an interruption too: the next migrating start takes the lock over.

Only the lease's holder writes the state, and only right after a renewal proved the lease is
still its own (:meth:`StateStore.record`): a holder whose lease was taken over writes nothing.
Documents are read whatever shape the server gives their fields (:mod:`pulpinit.wait.documents`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from pulpinit.errors import MigrationPending, PulpinitError
from pulpinit.migrate.lease import Collection
from pulpinit.migrate.retry import Retrier
from pulpinit.wait import documents

__all__ = ["LOCK_ID", "STATE_ID", "StateDoc", "StateStore", "describe", "iso", "normalized"]

LOCK_ID = "migration-lock"
STATE_ID = "migration-state"
#: The statuses of the module docstring.
STATUSES = ("running", "done", "failed", "interrupted")


class StateDoc(TypedDict, total=False):
    """The state document as the holder recorded it (server times, naive UTC)."""

    _id: str
    fingerprint: str | None
    status: str | None  # one of STATUSES (anything else is shown as is and treated as unknown)
    owner: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    exit_code: int | None
    duration_s: float | None
    error: str | None


def _number(value: object, kind: type[int] | type[float]) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return kind(value)


def normalized(doc: Mapping[str, Any] | None, where: str = "state") -> StateDoc:
    """The state document with every field of the expected type (an unreadable time becomes ``None``, one warning)."""
    if not doc:
        return {}
    state: StateDoc = {
        "_id": STATE_ID,
        "fingerprint": documents.text(doc.get("fingerprint")),
        "status": documents.text(doc.get("status")),
        "owner": documents.text(doc.get("owner")),
        "exit_code": _number(doc.get("exit_code"), int),
        "duration_s": _number(doc.get("duration_s"), float),
        "error": documents.text(doc.get("error")),
    }
    for field in ("started_at", "finished_at"):
        value = doc.get(field)
        try:
            state[field] = documents.read_time(value)
        except documents.Unreadable:
            state[field] = None
            documents.warn_once(where, STATE_ID, field, value, "unknown")
    return state


def iso(value: dt.datetime | None) -> str | None:
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


class StateStore:
    """Reads and writes the state document of one fingerprint, for one owner."""

    def __init__(self, collection: Collection, *, fingerprint: str, owner: str, db: Retrier, where: str) -> None:
        self.collection = collection
        self.fingerprint = fingerprint
        self.owner = owner
        self.db = db
        self.where = where

    def read(
        self, deadline: float | Callable[[], float], give_up: Callable[[str], PulpinitError] = MigrationPending
    ) -> StateDoc:
        """The state, read with retries until ``deadline`` (monotonic)."""
        doc = self.db.call(
            lambda: self.collection.find_one({"_id": STATE_ID}),
            what="read the migration state",
            action=f"find {self.where}",
            deadline=deadline,
            give_up=give_up,
        )
        return normalized(doc, self.where)

    def write(self, fields: StateDoc) -> None:
        """Replace the state (one attempt; the caller proved the lease is its own just before)."""
        doc: StateDoc = {"_id": STATE_ID, "fingerprint": self.fingerprint, "owner": self.owner, **fields}
        self.collection.replace_one({"_id": STATE_ID}, doc, upsert=True)

    def ours(self, state: StateDoc) -> bool:
        return state.get("fingerprint") == self.fingerprint

    def is_done(self, state: StateDoc) -> bool:
        return self.ours(state) and state.get("status") == "done"

    def has_failed(self, state: StateDoc) -> bool:
        """Failed by itself: only the Job runs it again."""
        return self.ours(state) and state.get("status") == "failed"

    def was_interrupted(self, state: StateDoc) -> bool:
        return self.ours(state) and state.get("status") == "interrupted"

    def is_running(self, state: StateDoc) -> bool:
        return self.ours(state) and state.get("status") == "running"
