"""A whole-deployment upgrade, new image applied → every role on the new version: pulpinit vs 2014.

The rolling-upgrade simulation of the test suite (tests/rollout.py): beat, the resource manager
and 3 workers as pods — real processes, each PID 1 of its own PID and UTS namespace — driven the
way applying new manifests drives them (beat and resource manager Recreate, the workers' rolling
update one by one waiting for Ready, a new migration Job per version), against the fake MongoDB,
with stand-ins that heartbeat like Pulp's processes and a pulp-manage-db that refuses like Pulp
>= 2.12 does.  Every time of a real deployment is divided by ``--scale`` (default 10: a heartbeat
every 0.6 s, MIGRATION_WAIT_TIME 9.2 s, a 3 s migration, 1 s back-offs, …), so the seconds below
times the scale estimate a real cluster's.

Entrypoints compared, on the same controllers:

* **2014**: beat runs pulp-manage-db at every start (exit code unchecked) and then celery beat;
  every other role starts celery at once; no Job, no readiness probe;
* **pulpinit, no quiet wait** (``PULPINIT_QUIET_SECONDS=0``, otherwise pulpinit as it is now): the
  Job and beat migrate under the lock as soon as they can, the other roles wait;
* **pulpinit**: the migrating role first waits until no Pulp process heartbeats.

A last row drains beat's node while its pulp-manage-db runs (a deployment without the Job, so that
beat migrates): the replacement beat resumes the interrupted migration, with no manual step.

Counted: seconds from "applied" until every role runs the new version's celery, failed pod starts
(a container that exits non-zero by itself: each is a CrashLoopBackOff or Job back-off step),
pulp-manage-db runs of the new version and how many it refused (exit 70), and whether the
database reached the new schema.

    .venv/bin/python benchmarks/bench_upgrade.py --trials 3 --scale 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers.mongo_peers import MongoPeer  # noqa: E402
from helpers.rollout import Cluster, Outcome, Timing, Version, measure_drain, measure_upgrade  # noqa: E402

from pulpinit.testing.fakeamqp import FakeAmqpBroker  # noqa: E402
from pulpinit.testing.fakemongo import FakeMongo  # noqa: E402

OLD, NEW = Version("2.21.5", 1), Version("2.21.6", 2)
MODES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("2014 (beat runs pulp-manage-db at every start)", "2014", {}),
    ("pulpinit without the quiet wait (`PULPINIT_QUIET_SECONDS=0`)", "pulpinit", {"PULPINIT_QUIET_SECONDS": "0"}),
    ("pulpinit", "pulpinit", {}),
)


DRAIN = "pulpinit, beat drained mid-migration (no Job: beat migrates)"


def trial(mode: str, knobs: dict[str, str], timing: Timing, timeout: float) -> Outcome:
    drain = mode == "drain"
    with (
        FakeMongo() as fake,
        FakeAmqpBroker() as broker,
        Cluster(
            MongoPeer.of_fake(fake),
            broker.url(),
            mode="pulpinit" if drain else mode,
            timing=timing,
            knobs=knobs,
            job=not drain,
        ) as cluster,
    ):
        if drain:
            return measure_drain(cluster, OLD, NEW, timeout=timeout)
        return measure_upgrade(cluster, OLD, NEW, timeout=timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--scale", type=float, default=10.0, help="real times are divided by this")
    args = parser.parse_args()
    timing = Timing.scaled(args.scale)
    timeout = 1200 / args.scale
    rows = [
        "| entrypoint | all roles on the new version after (median, min–max) | ≈ real cluster | failed pod starts "
        "(median) | pulp-manage-db runs / refused (exit 70) | pods that exited 75 | database migrated |",
        "|---|---|---|---|---|---|---|",
    ]
    for title, mode, knobs in (*MODES, (DRAIN, "drain", {})):
        outcomes = [trial(mode, knobs, timing, timeout) for _ in range(args.trials)]
        times = [o.seconds for o in outcomes if o.seconds is not None]
        if times:
            median = statistics.median(times)
            when = f"{median:.1f} s ({min(times):.1f}–{max(times):.1f} s)"
            real = f"{median * args.scale / 60:.1f} min"
        else:
            when, real = f"not within {timeout:g} s", "—"
        if len(times) < len(outcomes) and times:
            when += f", {len(outcomes) - len(times)} of {len(outcomes)} not within {timeout:g} s"
        failed = statistics.median(o.failed_starts for o in outcomes)
        runs = "; ".join(f"{o.runs} / {o.refused}" for o in outcomes)
        migrated = sum(o.migrated for o in outcomes)
        pending = sum(o.pending for o in outcomes)
        rows.append(f"| {title} | {when} | {real} | {failed:g} | {runs} | {pending} | {migrated} of {len(outcomes)} |")
    print("\n".join(rows))
    print(
        f"\nScale 1/{args.scale:g}: heartbeat every {timing.worker_timeout / 5:g} s, MIGRATION_WAIT_TIME and "
        f"PULPINIT_QUIET_SECONDS {timing.quiet_s:g} s, migration {timing.migration_s:g} s, warm shutdown "
        f"{timing.shutdown_s:g} s, probe period {timing.probe_period_s:g} s, back-offs from "
        f"{timing.crash_backoff_s:g} s doubling; 3 workers. In 2014 every role runs the new version "
        "quickly, but on the old schema: pulp-manage-db met the old workers' heartbeats, refused, and "
        "its exit code was not checked."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
