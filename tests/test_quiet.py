"""The quiet-database wait (pulpinit.quiet): live and stale heartbeats, waiting, the deadline.

Pure logic with an injected clock, sleep and reader: every test runs instantly.  The wait against
real MongoDB servers and real heartbeating processes is in tests/test_rollout.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import structlog
import structlog.testing

from pulpinit.errors import ExitCode, MigrationPending, NotQuiet
from pulpinit.migrate.quiet import QuietWait
from pulpinit.wait.workers import Census, Heartbeat, take_census

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class FakeTime:
    """A monotonic and a wall clock that only move when the code under test sleeps."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = T0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.mono

    def now(self) -> dt.datetime:
        return self.wall

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.mono += seconds
        self.wall += dt.timedelta(seconds=seconds)


class Log:
    """A real structlog bound logger whose lines are captured (``structlog.testing.CapturingLogger``)."""

    def __init__(self) -> None:
        self.capturing = structlog.testing.CapturingLogger()
        self.logger = structlog.wrap_logger(self.capturing, processors=[])

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in call.kwargs.items() if k != "event"}
            for call in self.capturing.calls
            if call.kwargs.get("event") == name
        ]


def beat(name: str, at: dt.datetime, naive: bool = True) -> dict[str, Any]:
    """A workers document as Pulp writes it (naive UTC datetimes, as pymongo returns them)."""
    return {"_id": name, "last_heartbeat": at.replace(tzinfo=None) if naive else at}


def waiter(time: FakeTime, read: Any, **kwargs: Any) -> tuple[QuietWait, Log]:
    log = Log()
    options: dict[str, Any] = {"threshold_s": 92.0, "timeout_s": 600.0, "log_interval": 10.0, **kwargs}
    return QuietWait(read=read, log=log.logger, now=time.now, clock=time.clock, sleep=time.sleep, **options), log


# ------------------------------------------------------------------------------------------------
# take_census
# ------------------------------------------------------------------------------------------------


def test_census_splits_at_the_threshold_by_the_given_clock():
    docs = [
        beat("reserved_resource_worker-1@w1", T0 - dt.timedelta(seconds=5)),
        beat("scheduler@beat", T0 - dt.timedelta(seconds=91.9), naive=False),
        beat("reserved_resource_worker-0@w0", T0 - dt.timedelta(seconds=92)),  # exactly 92 s: stale
        beat("resource_manager@rm", T0 - dt.timedelta(hours=3)),
    ]
    census = take_census(docs, T0, 92)
    assert [b.name for b in census.live] == ["reserved_resource_worker-1@w1", "scheduler@beat"]
    assert [b.name for b in census.stale] == ["reserved_resource_worker-0@w0", "resource_manager@rm"]
    assert census.live[0].age_s == pytest.approx(5)
    assert census.youngest_s == pytest.approx(5)
    assert not census.quiet


def test_a_heartbeat_from_the_future_is_live_and_a_document_without_one_is_stale():
    census = take_census([beat("ahead@x", T0 + dt.timedelta(seconds=30)), {"_id": "odd@y"}], T0, 92)
    assert [b.name for b in census.live] == ["ahead@x"] and census.live[0].age_s == pytest.approx(-30)
    assert census.stale == (Heartbeat("odd@y", None),)
    assert "no last_heartbeat" in census.stale[0].describe()


def test_empty_collection_is_quiet():
    census = take_census([], T0, 92)
    assert census.quiet and census.as_json() == {"threshold_s": 92, "live": [], "stale": []}


def test_census_json_rounds_ages():
    census = Census((Heartbeat("a@h", 1.234),), (Heartbeat("b@h", 100.06),), 92)
    assert census.as_json() == {
        "threshold_s": 92,
        "live": [{"name": "a@h", "age_s": 1.2}],
        "stale": [{"name": "b@h", "age_s": 100.1}],
    }


# ------------------------------------------------------------------------------------------------
# QuietWait
# ------------------------------------------------------------------------------------------------


def test_quiet_at_once_without_sleeping():
    time = FakeTime()
    wait, log = waiter(time, lambda deadline: [])
    assert wait.wait().quiet
    assert time.sleeps == []
    assert log.events("migration.quiet") == [{"waited_s": 0.0, "stale": [], "threshold_s": 92.0}]
    assert log.events("migration.waiting_for_quiet") == []


def test_waits_until_a_clean_shutdown_deletes_the_document():
    time = FakeTime()
    stops_at = T0 + dt.timedelta(seconds=7)

    def read(deadline: float) -> list[dict[str, Any]]:
        # a live worker heartbeats every 6 s until its warm shutdown deletes the document
        if time.wall >= stops_at:
            return []
        return [beat("reserved_resource_worker-2@w2", time.wall - dt.timedelta(seconds=1))]

    wait, log = waiter(time, read)
    wait.wait()
    waited = time.mono - 1000
    assert 7 <= waited < 7 + 2.2  # found within one poll interval (capped at 2 s)
    first = log.events("migration.waiting_for_quiet")[0]
    assert first["processes"] == [{"name": "reserved_resource_worker-2@w2", "age_s": 1.0}]
    assert first["threshold_s"] == 92.0
    assert max(time.sleeps) <= 2.0


def test_a_killed_process_blocks_exactly_until_its_heartbeat_turns_stale():
    time = FakeTime()
    last = T0 - dt.timedelta(seconds=30)  # SIGKILLed 30 s ago: its document stays
    wait, log = waiter(time, lambda deadline: [beat("reserved_resource_worker-0@w0", last)])
    census = wait.wait()
    assert time.wall - last >= dt.timedelta(seconds=92)
    assert time.wall - last < dt.timedelta(seconds=92.1)  # not a poll interval beyond the threshold
    assert [b.name for b in census.stale] == ["reserved_resource_worker-0@w0"]
    stale = log.events("migration.stale_processes")
    assert len(stale) == 1 and stale[0]["processes"][0]["name"] == "reserved_resource_worker-0@w0"


def test_stale_documents_are_reported_once_and_ignored():
    time = FakeTime()
    old = beat("reserved_resource_worker-9@gone", T0 - dt.timedelta(hours=1))
    rounds = iter([[old, beat("scheduler@b", T0)]] * 5 + [[old]] * 50)
    wait, log = waiter(time, lambda deadline: next(rounds))
    census = wait.wait()
    assert census.quiet and [b.name for b in census.stale] == ["reserved_resource_worker-9@gone"]
    assert len(log.events("migration.stale_processes")) == 1
    assert log.events("migration.quiet")[0]["stale"] == ["reserved_resource_worker-9@gone"]


def test_waiting_is_logged_at_the_throttle():
    time = FakeTime()

    def read(deadline: float) -> list[dict[str, Any]]:
        return [beat("scheduler@b", time.wall)] if time.mono - 1000 < 35 else []

    wait, log = waiter(time, read, log_interval=10.0)
    wait.wait()
    lines = log.events("migration.waiting_for_quiet")
    assert 3 <= len(lines) <= 4  # at 0, ~10, ~20, ~30 s: not once per poll
    assert all(line["processes"][0]["name"] == "scheduler@b" for line in lines)


def test_deadline_exits_75_naming_the_live_processes():
    time = FakeTime()

    def read(deadline: float) -> list[dict[str, Any]]:
        return [
            beat("reserved_resource_worker-1@w1", time.wall - dt.timedelta(seconds=2)),
            beat("x@y", T0 - dt.timedelta(days=1)),
        ]

    wait, _ = waiter(time, read, timeout_s=20.0)
    with pytest.raises(NotQuiet) as caught:
        wait.wait()
    error = caught.value
    assert isinstance(error, MigrationPending) and error.exit_code == ExitCode.MIGRATION_PENDING == 75
    assert error.live == ("reserved_resource_worker-1@w1 (last heartbeat 2.0 s ago)",)
    assert "reserved_resource_worker-1@w1" in str(error) and "x@y" not in str(error)
    assert "20 s" in str(error) and "PULPINIT_MIGRATION_TIMEOUT" in str(error)
    assert 20 <= time.mono - 1000 < 20.5


def test_check_ends_the_wait():
    time = FakeTime()

    class Lost(Exception):
        pass

    def check() -> None:
        if time.mono - 1000 > 5:
            raise Lost

    wait, _ = waiter(time, lambda deadline: [beat("scheduler@b", time.wall)], check=check)
    with pytest.raises(Lost):
        wait.wait()


def test_the_reader_gets_the_deadline():
    time = FakeTime()
    seen: list[float] = []

    def read(deadline: float) -> list[dict[str, Any]]:
        seen.append(deadline)
        return []

    waiter(time, read, timeout_s=30.0)[0].wait()
    assert seen == [1030.0]
