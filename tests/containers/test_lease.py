"""``podman pause`` of a migrating beat past its lease (the cgroup freezer: pulpinit and its
pulp-manage-db frozen together, as a node under memory pressure or a live-migrated VM would be).

Another replica takes the expired lock over and migrates; when the paused container resumes, its
pulpinit finds the lease lost, logs ``migration.lease_lost``, stops its own run and exits 70,
writing nothing: the migration state is the new holder's.
"""

from __future__ import annotations

import time
from typing import Any

import pymongo
from helpers.podman import Container, podman

from pulpinit.migrate.migrator import STATE_ID

LEASE_S = 2.0
#: The knobs of a short lease (the stop timeout must stay below a third of it).
SHORT_LEASE = {"PULPINIT_LEASE_SECONDS": f"{LEASE_S:g}", "PULPINIT_MANAGE_DB_STOP_TIMEOUT": "0.3"}


def state(uri: str, database: str) -> dict[str, Any] | None:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        return client[database]["pulpinit_locks"].find_one({"_id": STATE_ID})
    finally:
        client.close()


def test_a_paused_migrating_beat_loses_its_lease_and_the_new_holder_s_state_stands(
    images, role_env, containers, tmp_path
):
    pulp = tmp_path / "var-lib-pulp"  # both replicas' /var/lib/pulp: the stand-in's runs are recorded there
    pulp.mkdir()
    pulp.chmod(0o1777)
    volume = ["-v", f"{pulp}:/var/lib/pulp"]
    env = role_env(**SHORT_LEASE)
    holder = Container.run(images["beat"], env={**env, "STANDIN_SECONDS": "60"}, options=volume)
    containers.append(holder)
    old_owner = holder.event("migration.start")["owner"]
    holder.expect("Applying pulp.server.db.migrations")
    podman("pause", holder.name)
    paused_at = time.monotonic()

    other = Container.run(images["base"], "migrate", env={**env, "STANDIN_SECONDS": "0.5"}, options=volume)
    containers.append(other)
    assert other.wait(60) == 0, other.lines()[-10:]
    new_owner = other.event("migration.start")["owner"]
    done = state(role_env.mongo.uri, env["PULP_DB_NAME"])
    assert done is not None and done["status"] == "done" and done["owner"] == new_owner != old_owner

    time.sleep(max(0.0, paused_at + 2 * LEASE_S - time.monotonic()))
    podman("unpause", holder.name)
    code = holder.wait(30)
    assert code == 70, holder.lines()[-10:]
    assert [e for e in holder.events() if e.get("event") == "migration.lease_lost"]
    assert state(role_env.mongo.uri, env["PULP_DB_NAME"]) == done  # nothing written over the new holder's record
    runs = (pulp / "manage-db-runs.log").read_text().splitlines()
    starts = [line for line in runs if line.split()[1:3] == ["48", "start"]]
    assert len(starts) == 2  # the frozen run and the new holder's
    assert any(line.split()[1:3] == ["end", "0"] for line in runs)  # the new holder's run completed
    assert not holder.has("Database migrations complete.")  # the paused run was stopped, not finished
