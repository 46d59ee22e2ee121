"""``pulpinit check-deps``: probe MongoDB, the broker and ``[messaging]`` once, in parallel, and explain.

The operator's 3 a.m. tool and a Kubernetes readiness probe: with both
dependencies up it answers well within the 1 s exec-probe timeout.  The
:class:`Report` carries, per dependency, the endpoint (credentials masked),
where its address came from (the source ``pulpinit settings`` shows for it),
status, latency, server version, failure class with its error text, and a
one-line hint; :mod:`pulpinit.render` shows it as a table, the CLI as JSON.  A dependency the
roles do not wait for (``[messaging]`` without ``PULPINIT_WAIT_MESSAGING``) is reported but not
*counted*: it does not change :attr:`Report.ok`, the exit code.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pulpinit import log
from pulpinit.errors import ExitCode
from pulpinit.targets import ProbeResult
from pulpinit.wait.waiter import PERMANENT, Probe, Refused, StillDown, WaitPolicy, probe_once, wait_all


@dataclass(frozen=True)
class Report:
    checks: tuple[ProbeResult, ...]
    #: where each endpoint's address came from (:func:`~pulpinit.targets.address_sources`)
    sources: Mapping[str, str] = field(default_factory=dict)
    #: the dependencies reported but not counted in :attr:`ok` (nothing waits for them)
    uncounted: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks if check.name not in self.uncounted)

    @property
    def exit_code(self) -> int:
        """check-deps' one rule, with or without ``--wait``: 0 when every dependency is up; 78 when one
        refuses in a way no wait cures (a MongoDB user that may not write: the configuration is
        wrong); 69 when one is down otherwise."""
        if self.ok:
            return ExitCode.OK
        if any(check.failure in PERMANENT for check in self.checks if check.name not in self.uncounted):
            return ExitCode.CONFIG
        return ExitCode.UNAVAILABLE

    def source(self, check: ProbeResult) -> str:
        return self.sources.get(check.name, "-")

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "exit_code": self.exit_code, "checks": [self._json(check) for check in self.checks]}

    def _json(self, check: ProbeResult) -> dict[str, object]:
        data = check.as_json()
        return {"name": data.pop("name"), "endpoint": data.pop("endpoint"), "source": self.source(check), **data}


def check(
    probes: Mapping[str, Probe],
    policy: WaitPolicy,
    *,
    wait: bool = False,
    timeout: float | None = None,
    stop: threading.Event | None = None,
    sources: Mapping[str, str] | None = None,
    uncounted: Mapping[str, Probe] | None = None,
) -> Report:
    """Probe once, or wait by the wait policy (``wait``; ``stop`` ends it); ``timeout`` bounds the whole run.

    ``sources`` names where each dependency's address came from, for the report.  ``uncounted``
    probes run once, beside the others (also with ``wait``: nothing waits for them), and are
    reported without changing :attr:`Report.ok`.
    """
    extra = dict(uncounted or {})
    if not wait:
        # one attempt: --timeout is its budget (e.g. 5 s to see RabbitMQ's delayed auth failure)
        results = probe_once({**probes, **extra}, timeout if timeout is not None else policy.probe_timeout)
    else:
        if timeout is not None:  # the wait ends by then, its last probe included
            policy = replace(policy, timeout=timeout, probe_timeout=min(policy.probe_timeout, timeout))
        aside: dict[str, ProbeResult] = {}
        beside = threading.Thread(target=lambda: aside.update(probe_once(extra, policy.probe_timeout)), daemon=True)
        beside.start()
        try:
            results = wait_all(probes, policy, stop=stop)
        except (StillDown, Refused) as exc:  # report the last attempts, still down or refused
            results = dict(exc.results)
        beside.join()
        results.update(aside)
    for result in results.values():
        log.get_logger().debug("dep.checked", dependency=result.name, ok=result.ok, latency_ms=result.latency_ms)
    return Report(tuple(results.values()), dict(sources or {}), frozenset(extra))
