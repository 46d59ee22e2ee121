"""``pulpinit check-deps``: probe MongoDB and the broker once, in parallel, and explain.

The operator's 3 a.m. tool and a Kubernetes readiness probe: with both
dependencies up it answers well within the 1 s exec-probe timeout.  The table
and the JSON carry the endpoint (credentials masked), where its address came from
(the source ``pulpinit settings`` shows for it), status, latency, server version,
failure class with its error text, and a one-line hint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pulpinit import deps, log, render
from pulpinit.errors import DependencyUnavailable
from pulpinit.probe import ProbeResult

if TYPE_CHECKING:
    from pulpinit.pipeline import Context
    from pulpinit.settings import Settings


#: The server.conf key each dependency's address comes from: its source is the endpoint's source.
ADDRESS_KEYS = {"mongodb": "database.seeds", "broker": "tasks.broker_url"}


@dataclass(frozen=True)
class Report:
    checks: tuple[ProbeResult, ...]
    #: where each endpoint's address came from, as ``pulpinit settings`` names it (``k8s:db``, ``default``)
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [self._json(check) for check in self.checks]}

    def _json(self, check: ProbeResult) -> dict[str, object]:
        data = check.as_json()
        return {"name": data.pop("name"), "endpoint": data.pop("endpoint"), "source": self.source(check), **data}

    def source(self, check: ProbeResult) -> str:
        return self.sources.get(check.name, "-")

    def table(self) -> str:
        rows = []
        for c in self.checks:
            data = c.as_json()
            rows.append(
                (
                    c.name,
                    c.endpoint,
                    self.source(c),
                    "up" if c.ok else "DOWN",
                    f"{c.latency_ms:.0f} ms",
                    c.version or "-",
                    str(data["error"] or "-"),
                )
            )
        text = render.table(("dependency", "endpoint", "source", "status", "latency", "version", "error"), rows)
        hints = [f"hint ({c.name}): {c.hint}" for c in self.checks if c.hint]
        return "\n".join([text, *(["", *hints] if hints else [])])


def check(ctx: Context, *, wait: bool = False, timeout: float | None = None) -> Report:
    """Probe once, or wait by the wait policy (``wait``); ``timeout`` bounds the whole run."""
    from pulpinit import pipeline

    probes = pipeline.probes(ctx)
    policy = deps.WaitPolicy.from_toolkit(ctx.toolkit)
    if not wait:
        # one attempt: --timeout is its budget (e.g. 5 s to see RabbitMQ's delayed auth failure)
        results = deps.probe_once(probes, timeout if timeout is not None else policy.probe_timeout)
    else:
        if timeout is not None:
            policy = replace(
                policy, timeout=min(policy.timeout, timeout), probe_timeout=min(policy.probe_timeout, timeout)
            )
        with pipeline.interruptible("check-deps"):
            try:
                results = deps.wait_all(probes, policy)
            except DependencyUnavailable as exc:  # report the last attempts, still down
                results = dict(exc.results)
    for result in results.values():
        log.get_logger().debug("dep.checked", dependency=result.name, ok=result.ok, latency_ms=result.latency_ms)
    return Report(tuple(results.values()), sources(ctx.settings))


def sources(settings: Settings) -> dict[str, str]:
    """Where each dependency's address came from: the source of its key (see :data:`ADDRESS_KEYS`)."""
    return {name: settings.values[key].source for name, key in ADDRESS_KEYS.items() if key in settings.values}
