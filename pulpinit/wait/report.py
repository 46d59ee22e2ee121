"""``pulpinit check-deps``: probe MongoDB and the broker once, in parallel, and explain.

The operator's 3 a.m. tool and a Kubernetes readiness probe: with both
dependencies up it answers well within the 1 s exec-probe timeout.  The
:class:`Report` carries, per dependency, the endpoint (credentials masked),
status, latency, server version, failure class with its error text, and a
one-line hint; :mod:`pulpinit.render` shows it as a table, the CLI as JSON.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pulpinit import log
from pulpinit.wait.targets import ProbeResult
from pulpinit.wait.waiter import Probe, StillDown, WaitPolicy, probe_once, wait_all


@dataclass(frozen=True)
class Report:
    checks: tuple[ProbeResult, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [check.as_json() for check in self.checks]}


def check(
    probes: Mapping[str, Probe],
    policy: WaitPolicy,
    *,
    wait: bool = False,
    timeout: float | None = None,
    stop: threading.Event | None = None,
) -> Report:
    """Probe once, or wait by the wait policy (``wait``; ``stop`` ends it); ``timeout`` bounds the whole run."""
    if not wait:
        # one attempt: --timeout is its budget (e.g. 5 s to see RabbitMQ's delayed auth failure)
        results = probe_once(probes, timeout if timeout is not None else policy.probe_timeout)
    else:
        if timeout is not None:
            policy = replace(
                policy, timeout=min(policy.timeout, timeout), probe_timeout=min(policy.probe_timeout, timeout)
            )
        try:
            results = wait_all(probes, policy, stop=stop)
        except StillDown as exc:  # report the last attempts, still down
            results = dict(exc.results)
    for result in results.values():
        log.get_logger().debug("dep.checked", dependency=result.name, ok=result.ok, latency_ms=result.latency_ms)
    return Report(tuple(results.values()))
