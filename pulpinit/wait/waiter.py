"""Wait for MongoDB and the broker (and ``[messaging]`` where asked): concurrently, with backoff and jitter.

Each dependency is polled in its own daemon thread by a tenacity ``Retrying``
whose clock, sleep and stop are injected, so unit tests run instantly and a
signal stops every waiter at once.  The interval starts near 0.1 s, grows 1.5× per attempt
plus up to 0.1 s of jitter, and is capped at 2 s (:data:`PACING`); the whole wait ends at
``PULPINIT_WAIT_TIMEOUT``.  The total wait is the slower dependency's, not the sum.  While a
dependency refuses connections the wait is *armed* (:mod:`pulpinit.wait.armed`): the pause knocks
on the refused addresses every 0.05 s and the probe runs the moment one accepts; other failures
keep the plain backoff.  A failure that waiting cannot cure (:data:`PERMANENT`: a MongoDB user that may log in but not
write Pulp's database) ends the whole wait at once with exit 78.

Log lines (stable event names): ``dep.down`` when a dependency is first found
down (with its failure class), ``dep.still_down`` at most every 10 s, ``dep.up`` when it answers
(total wait, attempts — protocol probes —, knocks, version).

tenacity is imported only when a first attempt failed and the wait really begins: a start whose
dependencies are up, ``check-deps`` without ``--wait`` and the commands that wait for nothing
never load it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pulpinit import log
from pulpinit.errors import ConfigError, DependencyUnavailable
from pulpinit.settings.resolve import Settings
from pulpinit.settings.toolkit import Toolkit
from pulpinit.targets import Failure, ProbeResult, broker_target, messaging_target, mongo_target
from pulpinit.wait.armed import ArmedPause, Knocker, knock
from pulpinit.wait.broker_probe import probe_broker
from pulpinit.wait.messaging_probe import probe_messaging
from pulpinit.wait.mongo_probe import probe_mongodb

if TYPE_CHECKING:
    import tenacity

#: A probe bound to its target: takes the per-attempt timeout, returns one result.
Probe = Callable[[float], ProbeResult]
#: Failures that waiting does not cure: the wait ends at once with exit 78 (bad configuration).
PERMANENT = frozenset({Failure.NOT_AUTHORIZED})
#: Failures of a probe whose time ran out: when the deadline cut that time short ("no answer within
#: 0.0497 s"), the wait reports the attempt before, which had its whole ``PULPINIT_PROBE_TIMEOUT``.
CLIPPED = frozenset({Failure.TIMEOUT, Failure.STALLED})


def probes_for(settings: Settings, *, messaging: bool = False) -> dict[str, Probe]:
    """The dependency probes, bound to their targets: MongoDB and the broker, and ``[messaging]`` when asked."""
    mongo, broker = mongo_target(settings), broker_target(settings)
    probes: dict[str, Probe] = {
        "mongodb": lambda timeout: probe_mongodb(mongo, timeout),
        "broker": lambda timeout: probe_broker(broker, timeout),
    }
    if messaging:
        probes["messaging"] = messaging_probe(settings)
    return probes


def messaging_probe(settings: Settings) -> Probe:
    """The probe of ``[messaging]``, bound to its target."""
    agents = messaging_target(settings)
    return lambda timeout: probe_messaging(agents, timeout)


@dataclass(frozen=True)
class WaitPolicy:
    """How a wait is paced: its deadline and probe timeout (knobs), and the backoff, knock and log pace.

    The pace is no knob: an operator chooses how long to wait (``PULPINIT_WAIT_TIMEOUT``), and how
    often pulpinit asks in between is the wait's business (:data:`PACING`).
    """

    timeout: float = 300.0
    initial: float = 0.1
    max_interval: float = 2.0
    probe_timeout: float = 1.0
    log_interval: float = 10.0
    armed_interval: float = 0.05  # 0: never knock (the plain backoff)

    @classmethod
    def from_toolkit(cls, toolkit: Toolkit) -> WaitPolicy:
        """:data:`PACING` with the deadline and the probe timeout of the knobs."""
        return replace(PACING, timeout=toolkit.wait_timeout, probe_timeout=toolkit.probe_timeout)

    def backoff(self) -> Backoff:
        return Backoff(self.initial, self.max_interval)


#: The pace of every wait of a run: the first pause (0.1 s, growing 1.5× with jitter up to 2 s),
#: the knocks while refused (every 0.05 s) and the progress lines (every 10 s), which the migrate
#: stage's waits share.  Read when a run builds its policies, so that a test can pace a whole
#: process as it paces an in-process wait (tests/helpers/pace.py replaces it before the run).
PACING = WaitPolicy()


class StillDown(DependencyUnavailable):
    """A dependency was still down at the deadline (69), with the last result of each dependency."""

    def __init__(self, down: Sequence[str], results: Mapping[str, ProbeResult]) -> None:
        super().__init__(down)
        self.results = dict(results)


class Refused(ConfigError):
    """A dependency refused in a way no wait cures (:data:`PERMANENT`, 78), with the last result of each."""

    def __init__(self, message: str, results: Mapping[str, ProbeResult]) -> None:
        super().__init__(message)
        self.results = dict(results)


class Backoff:
    """``min(initial * factor**(n-1) + uniform(0, jitter), cap)`` for retry n; jitter defaults to ``initial``.

    The factor is 1.5 rather than 2: a dependency that comes up within the first seconds of a
    deployment (the common race) is seen sooner, while the attempts of one that stays down are
    set by the cap (30 a minute at 2 s).  (tenacity's ``wait_exponential_jitter`` renamed its
    arguments between releases; this one-liner keeps pulpinit independent of that.)  An instance
    is tenacity's ``wait`` (a callable of the retry state).
    """

    def __init__(self, initial: float, cap: float, jitter: float | None = None, factor: float = 1.5) -> None:
        self.initial = initial
        self.cap = cap
        self.jitter = initial if jitter is None else jitter
        self.factor = factor

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return self.interval(retry_state.attempt_number)

    def interval(self, attempt: int) -> float:
        """The pause after attempt number ``attempt`` (1, 2, …)."""
        exponent = min(attempt - 1, 64)
        return min(self.initial * self.factor**exponent + random.uniform(0, self.jitter), self.cap)  # noqa: S311


@dataclass
class _Waiter:
    name: str
    probe: Probe
    policy: WaitPolicy
    deadline: float
    stop: threading.Event
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    knocker: Knocker = knock
    result: ProbeResult | None = None
    attempts: int = 0

    def run(self) -> None:
        logger = log.get_logger(dependency=self.name)
        started = self.clock()
        throttle = log.Throttle(self.policy.log_interval, self.clock, since=started)
        armed = ArmedPause(self.policy.armed_interval, self.clock, self.sleep, self.stop, self.knocker)
        knocked_in = False  # the last pause ended because a knock was accepted

        def attempt() -> ProbeResult:
            self.attempts += 1
            budget = max(0.05, min(self.policy.probe_timeout, self.deadline - self.clock()))
            result = self.probe(budget)
            if not (budget < self.policy.probe_timeout and result.failure in CLIPPED and self.result is not None):
                self.result = result  # a time-out of a probe cut short by the deadline tells nothing new
            return result

        def pause(seconds: float) -> None:
            nonlocal knocked_in
            last, flapping, knocked_in = self.result, knocked_in, False
            if (
                armed.interval > 0
                and not flapping
                and last is not None
                and last.failure is Failure.REFUSED
                and last.refused
            ):
                knocked_in = armed(seconds, last.refused, self.policy.probe_timeout)
            else:  # a failure that involves the server, a name that does not resolve, or a flapping port
                self.sleep(seconds)

        def after(state: tenacity.RetryCallState) -> None:
            res = self.result  # what the wait reports: not a time-out cut short by the deadline
            if res is None or res.ok:
                return
            fields = {
                "endpoint": res.endpoint,
                "failure": res.failure.value if res.failure else None,
                "error": res.error,
                "hint": res.hint,
                "attempts": self.attempts,
            }
            if self.attempts == 1:
                logger.warning("dep.down", **fields)
            elif throttle.ready():
                logger.warning("dep.still_down", waited_s=round(self.clock() - started, 1), **fields)

        self._keep_trying(attempt(), attempt, after, pause)
        if self.result is not None and self.result.failure in PERMANENT:
            self.stop.set()  # no point waiting for the others: this one will not come good
        if self.result is not None and self.result.ok:
            logger.info(
                "dep.up",
                endpoint=self.result.endpoint,
                version=self.result.version,
                waited_s=round(self.clock() - started, 3),
                attempts=self.attempts,
                knocks=armed.knocks,
                latency_ms=round(self.result.latency_ms, 1),
            )
            for warning in self.result.warnings:
                logger.warning("dep.warning", endpoint=self.result.endpoint, warning=warning)

    def _keep_trying(
        self,
        first: ProbeResult,
        attempt: Callable[[], ProbeResult],
        after: Callable[[tenacity.RetryCallState], None],
        pause: Callable[[float], None],
    ) -> None:
        """The wait proper, when the ``first`` attempt failed (tenacity's first attempt is that one)."""
        if first.ok or first.failure in PERMANENT:
            return
        import tenacity

        replay = [first]
        retrying = tenacity.Retrying(
            stop=lambda _: self.stop.is_set() or self.clock() >= self.deadline,
            wait=self.policy.backoff(),
            retry=tenacity.retry_if_result(lambda r: not r.ok and r.failure not in PERMANENT),
            after=after,
            sleep=pause,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        retrying(lambda: replay.pop() if replay else attempt())


def wait_all(
    probes: Mapping[str, Probe],
    policy: WaitPolicy,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] | None = None,
    stop: threading.Event | None = None,
    knocker: Knocker = knock,
) -> dict[str, ProbeResult]:
    """Wait until every probe answers ok; raise :class:`StillDown` (69) at the deadline.

    ``stop`` ends every waiter early (set by a signal handler); ``sleep`` defaults to
    waiting on ``stop`` so that a stop interrupts a backoff interval at once.  ``knocker``
    is the armed wait's TCP connect (tests inject one that follows their clock).
    """
    stop = stop or threading.Event()

    def nap(seconds: float) -> None:
        stop.wait(seconds)  # a stop (signal, deadline elsewhere) ends the backoff interval at once

    deadline = clock() + policy.timeout
    waiters = [
        _Waiter(name, probe, policy, deadline, stop, clock, sleep or nap, knocker) for name, probe in probes.items()
    ]
    threads = [threading.Thread(target=w.run, name=f"wait-{w.name}", daemon=True) for w in waiters]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.05)
    finally:
        stop.set()
    results = {w.name: w.result for w in waiters if w.result is not None}
    refused = [f"{name} ({describe(r)}); {r.hint}" for name, r in results.items() if r.failure in PERMANENT]
    if refused:
        raise Refused("; ".join(refused), results)
    down = [f"{w.name} ({describe(w.result)})" for w in waiters if w.result is None or not w.result.ok]
    if down:
        raise StillDown(down, results)
    return results


def describe(result: ProbeResult | None) -> str:
    """``connection_refused: [Errno 111] … at mongodb://db:27017/pulp_database`` (secrets masked)."""
    if result is None:
        return "not probed"
    failure = result.failure.value if result.failure else "error"
    return f"{failure}: {result.error} at {result.endpoint}"


def probe_once(probes: Mapping[str, Probe], timeout: float) -> dict[str, ProbeResult]:
    """Run every probe once, in parallel; the whole call takes about the slowest probe."""
    results: dict[str, ProbeResult] = {}

    def one(name: str, probe: Probe) -> None:
        results[name] = probe(timeout)

    threads = [threading.Thread(target=one, args=item, daemon=True) for item in probes.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {name: results[name] for name in probes}
