"""The wait policy: backoff, deadline, concurrency, rate-limited logs — on an injected clock."""

from __future__ import annotations

import itertools
import json
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import replace

import pytest

from pulpinit import log
from pulpinit.errors import DependencyUnavailable, ExitCode
from pulpinit.targets import Dependency, Failure, ProbeResult
from pulpinit.wait.armed import Knock
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
    """Each dependency comes up only once the other was probed: waited on one after the other, the
    first would never come up (no clock involved)."""
    probed = {"mongodb": threading.Event(), "broker": threading.Event()}

    def after_the_other(name: Dependency, other: Dependency):
        def probe(timeout: float) -> ProbeResult:
            probed[name].set()
            return up(name) if probed[other].is_set() else down(name)

        return probe

    results = wait_all(
        {"mongodb": after_the_other("mongodb", "broker"), "broker": after_the_other("broker", "mongodb")},
        WaitPolicy(timeout=30, initial=0.02, max_interval=0.05),
    )
    assert results["mongodb"].ok and results["broker"].ok


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
        wait_all({"mongodb": lambda timeout: down()}, WaitPolicy(timeout=600, initial=60, max_interval=60), stop=stop)
    assert time.monotonic() - start < 30  # not the 60 s backoff interval (a loaded machine has room)


# --- the armed wait: knocks while refused, on the injected clock ------------------------

ADDRESS = (socket.AF_INET, ("127.0.0.1", 27017))


def refused(name: Dependency = "mongodb") -> ProbeResult:
    return replace(down(name), refused=(ADDRESS,))


def failing(failure: Failure, name: Dependency = "mongodb") -> ProbeResult:
    return ProbeResult(name, "mongodb://db:27017/pulp", False, 1.0, failure=failure, error="no")


Outcome = Callable[[float], ProbeResult]  # the probe's answer at a fake time
Verdict = Callable[[float], Knock]  # a knock's answer at a fake time


class LateServer:
    """Refuses until ``up_at`` on the fake clock, then answers; ``outcome``/``verdict`` override the answers."""

    def __init__(
        self, t: FakeTime, up_at: float = 1e9, outcome: Outcome | None = None, verdict: Verdict | None = None
    ) -> None:
        self.t = t
        self.outcome = outcome or (lambda now: up() if now >= up_at else refused())
        self.verdict = verdict or (lambda now: Knock.ACCEPTED if now >= up_at else Knock.REFUSED)
        self.probes: list[float] = []  # fake times of the protocol probes
        self.knocks: list[tuple[float, tuple]] = []

    def probe(self, timeout: float) -> ProbeResult:
        self.probes.append(self.t.clock())
        return self.outcome(self.t.clock())

    def knock(self, addresses: tuple, timeout: float) -> Knock:
        self.knocks.append((self.t.clock(), addresses))
        return self.verdict(self.t.clock())


def run(dep: LateServer, policy: WaitPolicy, seed: int = 7) -> dict[str, ProbeResult]:
    random.seed(seed)  # the same jitter for the armed and the plain run
    return wait_all({"mongodb": dep.probe}, policy, clock=dep.t.clock, sleep=dep.t.sleep, knocker=dep.knock)


def never_up(outcome: Outcome | None = None, verdict: Verdict | None = None, timeout: float = 60):
    """The same dependency waited for until the deadline with knocks and without: (armed, plain)."""
    armed, plain = (LateServer(FakeTime(), outcome=outcome, verdict=verdict) for _ in range(2))
    for dep, interval in ((armed, 0.05), (plain, 0.0)):
        with pytest.raises(DependencyUnavailable):
            run(dep, WaitPolicy(timeout=timeout, armed_interval=interval))
    return armed, plain


def test_armed_wait_knocks_while_refused_and_probes_the_moment_it_accepts(logs):
    armed, plain = LateServer(FakeTime(), 30.0), LateServer(FakeTime(), 30.0)
    assert run(armed, WaitPolicy(timeout=60))["mongodb"].ok
    assert run(plain, WaitPolicy(timeout=60, armed_interval=0))["mongodb"].ok
    # while refused, the protocol probes run on the plain backoff schedule, no more often
    assert [p for p in armed.probes if p < 30] == [p for p in plain.probes if p < 30]
    # the probe runs at the first knock after it listens: within one knock interval, not a 2 s cap
    assert 30.0 <= armed.probes[-1] <= 30.05 + 1e-9 and len(armed.probes) == len(plain.probes)
    assert plain.probes[-1] > 30.05 and not plain.knocks
    # knocks go to the addresses the probe resolved, every 50 ms, and are not counted as probes
    assert {addresses for _, addresses in armed.knocks} == {(ADDRESS,)}
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(armed.knocks)]
    assert min(gaps) >= 0.05 - 1e-9 and len(armed.knocks) > 500
    up_line = next(e for e in logs() if e["event"] == "dep.up")
    assert up_line["attempts"] == len(armed.probes) and up_line["knocks"] == len(armed.knocks)


@pytest.mark.parametrize(
    "failure",
    [Failure.AUTH, Failure.STALLED, Failure.TLS, Failure.PROTOCOL, Failure.VERSION, Failure.REPLICA_SET, Failure.RESET],
)
def test_a_server_that_is_up_but_failing_is_probed_as_often_as_without_knocks(failure):
    armed, plain = never_up(lambda now: failing(failure))
    assert armed.probes == plain.probes and len(armed.probes) <= 40
    assert not armed.knocks


@pytest.mark.parametrize("failure", [Failure.DNS, Failure.TIMEOUT])
def test_a_name_that_does_not_resolve_or_a_silent_network_keeps_the_plain_backoff(failure):
    armed, plain = never_up(lambda now: failing(failure))
    assert armed.probes == plain.probes and not armed.knocks


def test_refused_then_a_name_that_stops_resolving_disarms():
    armed, _ = never_up(lambda now: refused() if now < 10 else failing(Failure.DNS), timeout=30)
    assert armed.knocks and max(when for when, _ in armed.knocks) < 12  # no knock after the DNS failure


def test_a_port_that_accepts_knocks_but_refuses_probes_gets_a_plain_pause_between():
    """A flapping listener: every knock accepted, every probe refused — probes stay bounded."""
    armed, plain = never_up(verdict=lambda now: Knock.ACCEPTED)
    # at most one extra (refused) probe per backoff interval, never one per knock interval
    assert len(armed.probes) <= 2 * len(plain.probes) + 1
    assert len(armed.knocks) <= len(armed.probes)


def test_a_crash_looping_server_gets_no_more_probes_that_reach_it_than_without_knocks():
    """Down (refused) and up-but-resetting in turn, every knock accepted: the probes that reach
    the server (not refused) come at most one per backoff interval, as without knocks."""
    answers = itertools.cycle([refused(), failing(Failure.RESET)])
    armed, plain = never_up(lambda now: next(answers), lambda now: Knock.ACCEPTED)
    reached = armed.probes[1::2]  # every other probe was answered by the server (a reset)
    assert len(reached) <= len(plain.probes)
    # once the backoff sits at its 2 s cap, the server sees a probe at most every 2 s, as without knocks
    assert all(b - a >= 2.0 for a, b in itertools.pairwise(r for r in reached if r > 20))


def test_knock_timeout_or_unreachable_stops_knocking_for_the_rest_of_the_pause():
    armed, plain = never_up(verdict=lambda now: Knock.OTHER)
    assert armed.probes == plain.probes  # the schedule is untouched
    assert len(armed.knocks) <= len(armed.probes)  # one knock per pause, then it sleeps


def test_stop_ends_an_armed_pause_at_once():
    """Real time and real knocks on a closed loopback port: a stop is not held up by knocking."""
    import time

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        address = (socket.AF_INET, closed.getsockname())
        stop = threading.Event()
        threading.Timer(0.2, stop.set).start()
        start = time.monotonic()
        with pytest.raises(DependencyUnavailable):
            wait_all(
                {"mongodb": lambda timeout: replace(down(), refused=(address,))},
                WaitPolicy(timeout=600, initial=60, max_interval=60),
                stop=stop,
            )
    assert time.monotonic() - start < 30  # not the 60 s pause (a loaded machine has room)


def test_the_last_line_reports_the_last_whole_probe_not_one_the_deadline_cut_short(logs):
    """A silent server: every probe times out after its budget; the last one gets only what is left."""
    t = FakeTime()

    def silent(timeout: float) -> ProbeResult:
        t.sleep(timeout)  # the probe waits out its budget
        return ProbeResult(
            "mongodb",
            "mongodb://db:27017/pulp",
            False,
            timeout * 1000,
            failure=Failure.STALLED,
            error=f"no answer within {timeout:g} s",
        )

    with pytest.raises(DependencyUnavailable) as err:
        policy = WaitPolicy(timeout=4.3, probe_timeout=1.0, log_interval=0)
        wait_all({"mongodb": silent}, policy, clock=t.clock, sleep=t.sleep)
    assert "no answer within 1 s" in str(err.value)
    lines = [e for e in logs() if e["event"] in ("dep.down", "dep.still_down")]
    assert lines and all(line["error"] == "no answer within 1 s" for line in lines)
