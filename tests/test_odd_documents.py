"""Documents of an unexpected shape: how the lock, the state and the census read them.

Some MongoDB-compatible servers give a date written with ``$set`` back as a string — ISO-8601 with
or without a zone, or Python's ``str(datetime)`` (``'2026-12-06 18:07:00.499000'``).  What cannot
be read is the safe side — a lease held, a heartbeat live — with one warning naming the document.
The same documents in real pulpinit processes, on both MongoDB servers: tests/test_migration.py.
"""

from __future__ import annotations

import datetime as dt

import pytest
import structlog

from pulpinit.migrate.lease import Holder
from pulpinit.migrate.state import STATE_ID, describe, normalized
from pulpinit.wait import documents
from pulpinit.wait.workers import take_census

NOW = dt.datetime(2026, 12, 6, 18, 7, 0, 499000)


# -- reading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        NOW,
        NOW.replace(tzinfo=dt.timezone.utc),
        NOW.replace(tzinfo=dt.timezone(dt.timedelta(hours=2))) + dt.timedelta(hours=2),
        str(NOW),  # str(datetime): a space, no zone
        "2026-12-06T18:07:00.499000",
        "2026-12-06T18:07:00.499Z",
        "2026-12-06T20:07:00.499+02:00",
        {"$date": "2026-12-06T18:07:00.499Z"},
        {"$date": int((NOW - dt.datetime(1970, 1, 1)).total_seconds() * 1000)},
        {"$date": {"$numberLong": str(int((NOW - dt.datetime(1970, 1, 1)).total_seconds() * 1000))}},
    ],
    ids=str,
)
def test_a_date_is_read_in_the_forms_servers_return(value: object) -> None:
    assert documents.read_time(value) == NOW


@pytest.mark.parametrize("value", ["soon", "2026-13-45", 17, 1.5, True, ["2026-12-06"], {"$date": "x"}, b"\x00"])
def test_anything_else_is_unreadable(value: object) -> None:
    with pytest.raises(documents.Unreadable):
        documents.read_time(value)


def test_an_unreadable_expiry_is_a_held_lease_with_one_warning() -> None:
    doc = {"_id": "odd-lock-1", "owner": "other:1:abc", "acquired_at": str(NOW), "expires_at": "when pigs fly"}
    with structlog.testing.capture_logs() as logs:
        holders = [Holder.of(doc, "pulp.pulpinit_locks") for _ in range(3)]
    assert all(h.is_live(NOW + dt.timedelta(days=365)) for h in holders)  # held, never expired
    assert "taken as held" in holders[0].describe(NOW) and "other:1:abc" in holders[0].describe(NOW)
    assert holders[0].acquired_at == NOW
    warnings = [e for e in logs if e["event"] == "migration.odd_document"]
    assert len(warnings) == 1 and warnings[0]["document"] == "odd-lock-1" and warnings[0]["field"] == "expires_at"
    free = Holder.of({"_id": "x", "owner": None, "expires_at": "when pigs fly"})
    assert not free.is_live(NOW) and free.describe(NOW) == "free"  # no owner: nothing is held


def test_a_readable_string_expiry_is_a_lease_like_any_other() -> None:
    holder = Holder.of({"_id": "l", "owner": "o", "expires_at": str(NOW + dt.timedelta(seconds=30))})
    assert holder.is_live(NOW) and not holder.is_live(NOW + dt.timedelta(seconds=31))
    assert holder.describe(NOW) == "held by o (lease expires in 30 s)"


def test_an_odd_state_document_is_described_not_crashed_on() -> None:
    state = normalized(
        {"_id": STATE_ID, "fingerprint": 2215, "status": "running", "owner": ["x"], "exit_code": "3", "started_at": 5}
    )
    assert state["fingerprint"] == "2215" and state["exit_code"] is None and state["started_at"] is None
    assert describe(state) == "running (fingerprint 2215, by ['x'])"


def test_the_census_counts_an_unreadable_heartbeat_as_live() -> None:
    docs = [
        {"_id": "worker-1@a", "last_heartbeat": str(NOW - dt.timedelta(seconds=5))},  # readable: 5 s old, live
        {"_id": "worker-2@b", "last_heartbeat": "yesterday-ish"},  # unreadable: live
        {"_id": "worker-3@c", "last_heartbeat": str(NOW - dt.timedelta(seconds=200))},  # readable: stale
        {"_id": "worker-4@d"},  # none at all: pulp-manage-db's own query does not match it either
    ]
    census = take_census(docs, NOW, 92)
    assert [(b.name, b.unreadable) for b in census.live] == [("worker-1@a", False), ("worker-2@b", True)]
    assert census.live[0].age_s == pytest.approx(5) and census.youngest_s == pytest.approx(5)
    assert [b.name for b in census.stale] == ["worker-3@c", "worker-4@d"]
    assert "unreadable" in census.live[1].describe() and census.as_json()["live"][1]["unreadable"] is True
