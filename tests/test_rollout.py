"""Zero-touch upgrades: a whole deployment rolls to a new image, with one migration and no failed start.

The simulation of tests/rollout.py: beat, the resource manager and 3 workers as pods (pulpinit as
PID 1 of its own PID and UTS namespace, host name = pod name), Recreate for beat and the resource
manager, a StatefulSet rolling update for the workers (ordinal descending, the next only when the
updated pod is Ready by ``pulpinit check-deps``), a new Job per version; stand-ins that heartbeat
into ``workers`` every second and a pulp-manage-db that refuses like Pulp >= 2.12 (3 s instead of
92 s, ``PULPINIT_QUIET_SECONDS`` likewise).

Measured here (2 cores, the suite running beside it): an upgrade takes about 10 s from "applied"
to "every role runs the new Celery"; the bound asserted is :data:`BOUND_S`.  Cost: about 20 s per
scenario (the install of the old version included), 5 scenarios.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from helpers.processes import pid_namespaces_reason
from helpers.rollout import Cluster, Timing, Version, measure_drain, overlaps, wait_until

from pulpinit.testing import standins

OLD, NEW = Version("2.21.5", 1), Version("2.21.6", 2)
BOTH = pytest.mark.parametrize("peer", ["fake", "secantus"], indirect=True)
#: The bound on an upgrade (applied → every role runs the new Celery) asserted here; measured ≈ 10 s.
BOUND_S = 45.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,  # PID namespaces
    pytest.mark.skipif(bool(pid_namespaces_reason()), reason=str(pid_namespaces_reason())),
    pytest.mark.skipif(shutil.which("nsenter") is None, reason="nsenter (util-linux) is not installed"),
]


def events(cluster: Cluster, version: Version, name: str) -> list[dict[str, Any]]:
    return [e for c in cluster.containers() if c.version == version.tag for e in c.events() if e.get("event") == name]


def migrating_container(cluster: Cluster, version: Version) -> Any:
    (container,) = [
        c
        for c in cluster.containers()
        if c.version == version.tag and any(e.get("event") == "migration.start" for e in c.events())
    ]
    return container


def scheduler_lives(cluster: Cluster) -> list[tuple[float, float]]:
    """When each celery beat (``scheduler@…``) ran, from its own records (a kill ends it with its pod)."""
    lives = []
    for run in standins.celery_runs(cluster.celery_runs_file):
        if run.name.startswith("scheduler@"):
            pod = next(p for p in cluster.every_pod() if run.name == f"scheduler@{p.name}")
            ended = run.ended or min(
                (c.ended for c in pod.containers if c.ended and c.ended > run.started), default=1e18
            )
            lives.append((run.started, ended))
    return lives


@BOTH
def test_one_apply_upgrades_everything_with_one_migration_and_no_failed_start(peer, fake_broker):
    with Cluster(peer, fake_broker.url()) as cluster:
        backup = str(cluster.bin / "pre-migrate")
        cluster.knobs["PULPINIT_PRE_MIGRATE"] = backup
        cluster.install(OLD)
        applied = cluster.apply(NEW)
        done = cluster.wait_all_on(NEW, BOUND_S)
        cluster.settle()
        took = done - applied
        print(f"upgrade on {peer.kind}: {took:.1f} s (bound {BOUND_S:g} s)")

        # pulp-manage-db of the new version ran exactly once, and migrated
        (run,) = standins.parsed_runs_file(cluster.manage_db_runs_file(NEW.tag))
        assert run.code == 0 and not run.overlapped
        assert standins.schema_version(peer.uri, peer.database) == NEW.schema
        # ... into a quiet database: it waited for the old processes, by name and age
        migrating = migrating_container(cluster, NEW)
        waiting = [e for e in migrating.events() if e.get("event") == "migration.waiting_for_quiet"]
        assert waiting and {p["name"] for p in waiting[0]["processes"]} >= {"reserved_resource_worker-0@pulp-worker-0"}
        assert all(isinstance(p["age_s"], float) for p in waiting[0]["processes"])
        old_lives = [r for r in standins.celery_runs(cluster.celery_runs_file) if r.version == OLD.tag]
        assert all(r.ended is not None and r.ended <= run.started for r in old_lives)

        # no pod exited 70 or crash-looped: every container ended because a controller stopped it
        assert cluster.failed_starts() == [], cluster.diagnosis()
        assert not [c for c in cluster.containers() if c.code == 70]
        assert all(len(pod.containers) == 1 for pod in cluster.pods.values())
        # never two schedulers at once
        assert not overlaps(scheduler_lives(cluster))
        # every new pod runs its Celery (wait_all_on), pulpinit handed over to it
        assert cluster.all_on(NEW)

        # the backup ran once per real migration (the old version's install, this upgrade), as the
        # user, after the database became quiet and before pulp-manage-db; the role that found the
        # migration done skipped it
        backups = standins.pre_migrate_runs(cluster.pre_migrate_runs_file)
        assert len(backups) == 2 and {uid for _, uid, _ in backups} == {65534}
        assert max(r.ended or 0 for r in old_lives) <= backups[1][2] <= run.started
        assert events(cluster, NEW, "migration.skipped")
    assert took < BOUND_S


@BOTH
def test_a_killed_old_worker_blocks_no_longer_than_the_threshold(peer, fake_broker):
    timing = Timing()
    with Cluster(peer, fake_broker.url(), timing=timing) as cluster:
        cluster.install(OLD)
        applied = cluster.apply(NEW, kill_ordinal=0)  # the last old worker dies with its node
        done = cluster.wait_all_on(NEW, BOUND_S)
        cluster.settle()
        print(f"upgrade with a killed worker: {done - applied:.1f} s")
        killed = next(c for c in cluster.containers() if c.pod == "pulp-worker-0" and c.version == OLD.tag)
        assert killed.stopped and killed.code != 0
        (run,) = standins.parsed_runs_file(cluster.manage_db_runs_file(NEW.tag))
        assert run.code == 0
        # its last heartbeat came at most 1 s before the kill: the record blocked the migration
        # until it was quiet_s old, and not longer (one poll, the start of pulp-manage-db)
        assert killed.ended is not None
        assert killed.ended + timing.quiet_s - 1.2 <= run.started <= killed.ended + timing.quiet_s + 2.0
        stale = [e for e in migrating_container(cluster, NEW).events() if e.get("event") == "migration.stale_processes"]
        assert len(stale) == 1 and stale[0]["processes"][0]["name"] == "reserved_resource_worker-0@pulp-worker-0"
        assert cluster.failed_starts() == [], cluster.diagnosis()


@BOTH
def test_a_failed_migration_stops_every_new_pod_with_75_and_the_old_version_comes_back(peer, fake_broker):
    broken = Version(NEW.tag, NEW.schema, manage_db_exit=3)  # fails before changing anything
    with Cluster(peer, fake_broker.url(), timing=Timing(backoff_limit=1)) as cluster:
        cluster.install(OLD)
        cluster.apply(broken)
        job = cluster.jobs[NEW.tag]

        def every_new_role_stopped_with_75() -> bool:
            return job.outcome == "Failed" and all(
                any(c.code == 75 and "pulp-manage-db exited with 3" in c.error() for c in pod.containers)
                for pod in cluster.pods.values()
            )

        wait_until(every_new_role_stopped_with_75, 90, "every new pod stopped with 75", cluster.diagnosis)
        assert {pod.current.code for pod in job.pods if pod.current} == {70}  # the Job's own tries
        assert len(job.pods) == 2  # backoffLimit 1: one retry, then the Job failed
        assert standins.schema_version(peer.uri, peer.database) == OLD.schema
        assert not any(r.version == NEW.tag for r in standins.celery_runs(cluster.celery_runs_file))

        # rolling back (the migration changed nothing): apply the old version again
        cluster.apply(OLD)
        cluster.wait_all_on(OLD, BOUND_S)
        cluster.settle()
        assert standins.schema_version(peer.uri, peer.database) == OLD.schema
        runs = standins.parsed_runs_file(cluster.manage_db_runs_file(OLD.tag))
        assert [r.code for r in runs] == [0, 0]  # the install's, and the old beat's (nothing to do)


@BOTH
def test_a_drained_beat_mid_migration_is_resumed_by_its_replacement_with_no_manual_step(peer, fake_broker):
    """A node drain evicts beat while its pulp-manage-db runs (a deployment without the Job: beat migrates).

    The interruption is recorded as such, the waiting pods wait on (none exits 75), and the
    replacement beat runs the backup and the migration again on its own."""
    with Cluster(peer, fake_broker.url(), timing=Timing(migration_s=3.0), job=False) as cluster:
        cluster.knobs["PULPINIT_PRE_MIGRATE"] = str(cluster.bin / "pre-migrate")
        outcome = measure_drain(cluster, OLD, NEW, timeout=BOUND_S + 30)
        assert outcome.seconds is not None, cluster.diagnosis()
        print(
            f"drain of beat mid-migration on {peer.kind}: every role on {NEW.tag} {outcome.seconds:.1f} s after apply"
        )
        runs = standins.parsed_runs_file(cluster.manage_db_runs_file(NEW.tag))
        assert [run.code for run in runs] == [143, 0] and not any(run.overlapped for run in runs)
        assert outcome.migrated and outcome.pending == 0, cluster.diagnosis()
        assert cluster.failed_starts() == [], cluster.diagnosis()  # the drained beat was stopped, not failed
        drained = [c for c in cluster.containers() if c.role == "beat" and c.version == NEW.tag]
        assert len(drained) == 2 and drained[0].stopped and drained[0].code == 143
        assert any(e.get("event") == "migration.resume" for e in drained[1].events())
        assert len(standins.pre_migrate_runs(cluster.pre_migrate_runs_file)) == 3  # old install, new, resumed
        assert cluster.all_on(NEW)
