"""The stand-ins behave like Pulp's processes: heartbeats, warm shutdown, pulp-manage-db's refusal rule.

They run as they do under pulpinit — real executables, as the unprivileged user ``nobody``,
with the system's Python and the copied pymongo — against the fake MongoDB over TCP.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.mongo_peers import MongoPeer, wait_for
from helpers.workdirs import reachable

from pulpinit.testing import standins
from pulpinit.testing.fakemongo import FakeMongo

pytestmark = pytest.mark.root  # the stand-ins run as nobody


@pytest.fixture(scope="module")
def bindir() -> Iterator[Path]:
    with reachable("standins", sample=False) as path:
        path.chmod(0o777)  # the stand-ins record their runs here as nobody
        libs = standins.libraries(path)
        standins.write_celery(path, libs)
        standins.write_manage_db(path, libs)
        yield path


@pytest.fixture
def db(fake_mongo: FakeMongo) -> MongoPeer:
    return MongoPeer.of_fake(fake_mongo)


def conf(path: Path, mongo: MongoPeer, worker_timeout: int = 5) -> Path:
    path.write_text(
        f"[database]\nseeds: {mongo.hostport}\nname: pulp_database\n\n[tasks]\nworker_timeout: {worker_timeout}\n"
    )
    path.chmod(0o644)
    return path


def start(bindir: Path, program: str, *argv: str, **env: str) -> subprocess.Popen[str]:
    environ = {"PATH": os.environ["PATH"], **env}
    return subprocess.Popen(
        [str(bindir / program), *argv],
        env=environ,
        user="nobody",
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_celery_heartbeats_every_worker_timeout_fifth_and_deletes_its_document_on_sigterm(bindir, db):
    runs = bindir / "celery-runs-1.log"
    config = conf(bindir / "server-1.conf", db, worker_timeout=5)  # every 1 s
    proc = start(
        bindir,
        "celery",
        "worker",
        "-n",
        "reserved_resource_worker-1@pod-1",
        PULPINIT_CONFIG=str(config),
        STANDIN_HEARTBEAT="1",
        STANDIN_CELERY_RUNS=str(runs),
        STANDIN_VERSION="v2",
    )
    try:
        wait_for(lambda: "reserved_resource_worker-1@pod-1" in db.workers(), 15, "first heartbeat")
        first = db.workers()["reserved_resource_worker-1@pod-1"]["last_heartbeat"]
        wait_for(
            lambda: db.workers()["reserved_resource_worker-1@pod-1"]["last_heartbeat"] > first,
            5,
            "second heartbeat",
        )
        second = db.workers()["reserved_resource_worker-1@pod-1"]["last_heartbeat"]
        assert dt.timedelta(seconds=0.8) <= second - first <= dt.timedelta(seconds=1.5)
        age = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - second
        assert age < dt.timedelta(seconds=2)  # naive UTC, like Pulp's
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "SIGTERM received: warm shutdown" in out
    assert "reserved_resource_worker-1@pod-1" not in db.workers()
    (run,) = standins.celery_runs(runs)
    assert run.name == "reserved_resource_worker-1@pod-1" and run.version == "v2" and run.ended is not None


def test_beat_heartbeats_as_the_scheduler_and_a_worker_replaces_its_old_document(bindir, db):
    config = conf(bindir / "server-2.conf", db)
    db.put_heartbeat("reserved_resource_worker-3@pod-3", 3600)  # its previous, killed incarnation
    beat = start(bindir, "celery", "beat", PULPINIT_CONFIG=str(config), STANDIN_HEARTBEAT="1")
    worker = start(
        bindir, "celery", "worker", "-n", "reserved_resource_worker-3@pod-3", PULPINIT_CONFIG=str(config),
        STANDIN_HEARTBEAT="1",
    )  # fmt: skip
    try:
        host = os.uname().nodename
        wait_for(lambda: f"scheduler@{host}" in db.workers(), 60, "the scheduler's heartbeat")
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        old = now - dt.timedelta(seconds=5)

        def fresh() -> bool:  # the starting worker deletes its old document, then writes its first heartbeat
            document = db.workers().get("reserved_resource_worker-3@pod-3")
            return document is not None and document["last_heartbeat"] > old

        wait_for(fresh, 60, "the worker's fresh heartbeat")
    finally:
        for proc in (beat, worker):
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=10)
    assert db.workers() == {}


def manage_db(bindir: Path, config: Path, **env: str) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = start(
        bindir,
        "pulp-manage-db",
        PULPINIT_CONFIG=str(config),
        STANDIN_RUNS=str(bindir / f"runs-{config.stem}.log"),
        STANDIN_SECONDS="0",
        **env,
    )
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out, time.monotonic() - started


def test_manage_db_migrates_at_once_when_every_heartbeat_is_older_than_the_wait(bindir, db):
    config = conf(bindir / "server-3.conf", db)
    db.put_heartbeat("reserved_resource_worker-0@gone", 30)
    code, out, took = manage_db(bindir, config, STANDIN_MIGRATION_WAIT="20", STANDIN_SCHEMA="2")
    assert code == 0 and "Database migrations complete." in out and "might still be running" not in out
    assert took < 15  # not the 20 s wait (room for a loaded machine)


def test_manage_db_waits_out_the_remainder_then_migrates_when_no_newer_heartbeat_came(bindir, db):
    config = conf(bindir / "server-4.conf", db)
    db.put_heartbeat("reserved_resource_worker-0@killed", 8)  # killed 8 s ago: never beats again
    code, out, took = manage_db(bindir, config, STANDIN_MIGRATION_WAIT="10")
    assert code == 0 and "reserved_resource_worker-0@killed" in out and "might still be running" in out
    assert 1.5 <= took < 7  # the remainder of the 10 s (about 2 s), not the whole of it (room for a loaded machine)


def test_manage_db_exits_70_while_a_process_heartbeats(bindir, db):
    config = conf(bindir / "server-5.conf", db, worker_timeout=5)
    celery = start(bindir, "celery", "beat", PULPINIT_CONFIG=str(config), STANDIN_HEARTBEAT="1")
    try:
        wait_for(db.workers, 15, "a heartbeat")
        code, out, _ = manage_db(bindir, config, STANDIN_MIGRATION_WAIT="2", STANDIN_SCHEMA="2")
    finally:
        celery.send_signal(signal.SIGTERM)
        celery.communicate(timeout=10)
    assert code == 70 and "still running" in out and "scheduler@" in out
    runs = standins.parsed_runs_file(bindir / "runs-server-5.log")
    assert [r.code for r in runs] == [70]


def test_manage_db_keeps_a_schema_version_and_refuses_a_newer_database(bindir, db):
    config = conf(bindir / "server-6.conf", db)
    assert manage_db(bindir, config, STANDIN_SCHEMA="2", STANDIN_EXIT="3")[0] == 3
    assert standins.schema_version(db.uri, db.database) is None  # failed: unchanged
    assert manage_db(bindir, config, STANDIN_SCHEMA="2")[0] == 0
    assert standins.schema_version(db.uri, db.database) == 2
    code, out, _ = manage_db(bindir, config, STANDIN_SCHEMA="1")  # an older image after the upgrade
    assert code == 65 and "newer than this Pulp" in out
    assert manage_db(bindir, config, STANDIN_SCHEMA="2")[0] == 0  # the same version again: nothing to do
