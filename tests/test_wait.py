"""The wait policy: backoff, deadline, concurrency, rate-limited logs — on an injected clock."""

from __future__ import annotations

import json
import threading

import pytest

from pulpinit import log
from pulpinit.errors import DependencyUnavailable, ExitCode
from pulpinit.wait.targets import Dependency, Failure, ProbeResult
from pulpinit.wait.waiter import WaitPolicy, wait_all


class FakeTime:
    """A clock that only moves when the code under test sleeps (shared by the waiter threads)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()
        self.sleeps: list[float] = []

    def clock(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds


def down(name: Dependency = "mongodb") -> ProbeResult:
    return ProbeResult(
        name, "mongodb://db:27017/pulp", False, 1.0, failure=Failure.REFUSED, error="[Errno 111] Connection refused"
    )


def up(name: Dependency = "mongodb") -> ProbeResult:
    return ProbeResult(name, "mongodb://db:27017/pulp", True, 1.0, version="6.0.0")


def comes_up_at(t: FakeTime, when: float, name: Dependency = "mongodb"):
    calls: list[float] = []

    def probe(timeout: float) -> ProbeResult:
        calls.append(timeout)
        return up(name) if t.clock() >= when else down(name)

    probe.calls = calls  # type: ignore[attr-defined]
    return probe


@pytest.fixture
def logs(capsys):
    log.configure("json", "info")
    yield lambda: [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]


def test_backoff_starts_near_initial_grows_and_is_capped():
    t = FakeTime()
    probe = comes_up_at(t, 30.0)
    wait_all({"mongodb": probe}, WaitPolicy(timeout=60), clock=t.clock, sleep=t.sleep)
    assert 0.1 <= t.sleeps[0] <= 0.2
    assert 0.15 <= t.sleeps[1] <= 0.25
    assert 0.225 <= t.sleeps[2] <= 0.325
    assert max(t.sleeps) <= 2.0
    assert t.sleeps[-1] == 2.0
    # the dependency is noticed within one capped interval of coming up
    assert 30.0 <= t.now <= 32.0
    # a dependency that stays down costs at most ~30 attempts a minute at the 2 s cap
    assert len(probe.calls) <= 30 + 6


def test_deadline_raises_69_naming_what_is_down_and_why():
    t = FakeTime()
    with pytest.raises(DependencyUnavailable) as err:
        wait_all(
            {"mongodb": comes_up_at(t, 1e9), "broker": comes_up_at(t, 0, "broker")},
            WaitPolicy(timeout=10),
            clock=t.clock,
            sleep=t.sleep,
        )
    assert err.value.exit_code == ExitCode.UNAVAILABLE
    assert "mongodb (connection_refused: [Errno 111] Connection refused at mongodb://db:27017/pulp)" in str(err.value)
    assert "broker" not in str(err.value)
    assert 10.0 <= t.now <= 12.0


def test_probe_timeout_never_exceeds_the_time_left():
    t = FakeTime()
    probe = comes_up_at(t, 1e9)
    with pytest.raises(DependencyUnavailable):
        wait_all({"mongodb": probe}, WaitPolicy(timeout=3, probe_timeout=1.0), clock=t.clock, sleep=t.sleep)
    assert all(0.05 <= c <= 1.0 for c in probe.calls)


def test_both_waited_on_concurrently():
    """Real time: two dependencies that each take 0.3 s to come up cost 0.3 s, not 0.6 s."""
    import time

    start = time.monotonic()

    def slow(name: Dependency):
        def probe(timeout: float) -> ProbeResult:
            return up(name) if time.monotonic() - start >= 0.3 else down(name)

        return probe

    wait_all(
        {"mongodb": slow("mongodb"), "broker": slow("broker")}, WaitPolicy(timeout=5, initial=0.02, max_interval=0.05)
    )
    assert time.monotonic() - start < 0.55


def test_logs_first_down_then_rate_limited_then_up(logs):
    t = FakeTime()
    wait_all({"mongodb": comes_up_at(t, 45.0)}, WaitPolicy(timeout=100, log_interval=10), clock=t.clock, sleep=t.sleep)
    events = [e for e in logs() if e["event"].startswith("dep.")]
    names = [e["event"] for e in events]
    assert names[0] == "dep.down" and names[-1] == "dep.up"
    assert events[0]["failure"] == "connection_refused" and events[0]["hint"]
    # ~45 s down with a 10 s log interval: a handful of lines, not one per attempt (~25 attempts)
    assert 3 <= names.count("dep.still_down") <= 5
    assert events[-1]["attempts"] > 10 and events[-1]["waited_s"] >= 45


def test_stop_event_ends_the_wait_at_once():
    import time

    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    start = time.monotonic()
    with pytest.raises(DependencyUnavailable):
        wait_all({"mongodb": lambda timeout: down()}, WaitPolicy(timeout=60, initial=1.0, max_interval=30), stop=stop)
    assert time.monotonic() - start < 1.0
