"""Migrations exactly once per version: real pulpinit processes, the fake MongoDB, a stand-in manage-db."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest

from pulpinit.lease import LeaseLock, server_clock
from pulpinit.migration import LOCK_ID, STATE_ID
from pulpinit.testing import standins
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo

SAMPLE = Path(__file__).parent.parent / "pulpinit" / "testing" / "sample-server.conf"
COLLECTION = "pulpinit_locks"


@pytest.fixture(scope="module")
def broker() -> Iterator[FakeAmqpBroker]:
    with FakeAmqpBroker() as fake:
        yield fake


@pytest.fixture
def mongo() -> Iterator[FakeMongo]:
    with FakeMongo() as fake:
        yield fake


@pytest.fixture
def workdir() -> Iterator[Path]:
    """World-readable, so the stand-ins run as the unprivileged user pulpinit switches to."""
    path = Path(tempfile.mkdtemp(prefix="pulpinit-migrate-"))
    path.chmod(0o777)
    standins.write_manage_db(path)
    shutil.copy(SAMPLE, path / "server.conf")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def environment(workdir: Path, mongo: FakeMongo, broker: FakeAmqpBroker, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULP", "STANDIN"))}
    env.update({
        "PULPINIT_CONFIG": str(workdir / "server.conf"),
        "PULPINIT_LOG_FORMAT": "json",
        "PULP_DB_SEEDS": mongo.hostport,
        "PULP_BROKER_URL": broker.url(),
        "PULPINIT_MANAGE_DB": str(workdir / "pulp-manage-db"),
        "PULPINIT_USER": "nobody",
        "PULPINIT_MIGRATION_FINGERPRINT": "2.21.5-1",
        "PULPINIT_WAIT_TIMEOUT": "20",
        "PULPINIT_MIGRATION_TIMEOUT": "30",
        "STANDIN_SECONDS": "0.3",
        **extra,
    })
    return env


def pulpinit(env: dict[str, str], *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pulpinit", *argv], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def starts(workdir: Path) -> list[str]:
    return [line for line in standins.runs(workdir) if line.endswith(" start")]


def document(mongo: FakeMongo, _id: str) -> dict:
    client = pymongo.MongoClient(mongo.uri, serverSelectionTimeoutMS=2000)
    try:
        return client["pulp_database"][COLLECTION].find_one({"_id": _id}) or {}
    finally:
        client.close()


def state(mongo: FakeMongo) -> dict:
    return document(mongo, STATE_ID)


def lock_doc(mongo: FakeMongo) -> dict:
    return document(mongo, LOCK_ID)


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.mark.slow
def test_eight_concurrent_migrates_run_manage_db_once(workdir, mongo, broker):
    env = environment(workdir, mongo, broker)
    procs = [pulpinit(env, "migrate") for _ in range(8)]
    results = [finish(p) for p in procs]
    assert [code for code, _ in results] == [0] * 8, [err[-2000:] for _, err in results]
    assert len(starts(workdir)) == 1
    doc = state(mongo)
    assert doc["status"] == "done" and doc["fingerprint"] == "2.21.5-1" and doc["exit_code"] == 0
    assert doc["duration_s"] >= 0.3 and doc["finished_at"] >= doc["started_at"]
    assert lock_doc(mongo)["owner"] is None  # released
    # the stand-in ran as the unprivileged user, and its output went into the log
    runner_uid = starts(workdir)[0].split()[1]
    assert runner_uid == str(pwd_uid("nobody")) or os.geteuid() != 0
    assert any("Applying pulp.server.db.migrations" in err for _, err in results)


def pwd_uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid


@pytest.mark.slow
def test_second_start_skips_and_new_fingerprint_migrates_again(workdir, mongo, broker):
    env = environment(workdir, mongo, broker)
    assert finish(pulpinit(env, "migrate"))[0] == 0
    code, err = finish(pulpinit(env, "migrate"))
    assert code == 0 and "migration.skipped" in err
    assert len(starts(workdir)) == 1
    upgraded = environment(workdir, mongo, broker, PULPINIT_MIGRATION_FINGERPRINT="2.21.6-1")
    assert finish(pulpinit(upgraded, "migrate"))[0] == 0
    assert len(starts(workdir)) == 2
    assert state(mongo)["fingerprint"] == "2.21.6-1"


@pytest.mark.slow
def test_killed_holder_is_replaced_after_its_lease_expires(workdir, mongo, broker):
    env = environment(workdir, mongo, broker, PULPINIT_LEASE_SECONDS="1.5", STANDIN_SECONDS="30")
    holder = pulpinit(env, "migrate")
    wait_for(lambda: len(starts(workdir)) == 1)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    killed_at = time.monotonic()
    quick = environment(workdir, mongo, broker, PULPINIT_LEASE_SECONDS="1.5", STANDIN_SECONDS="0.1")
    code, err = finish(pulpinit(quick, "migrate"))
    assert code == 0, err[-2000:]
    assert time.monotonic() - killed_at >= 0.5  # it had to wait for the dead holder's lease
    assert "migration.lock_held" in err
    assert len(starts(workdir)) == 2
    assert state(mongo)["status"] == "done"


@pytest.mark.slow
@pytest.mark.parametrize(("exit_code", "words"), [
    (70, "workers still heartbeat"), (65, "database is newer than this image"), (3, "exited with 3"),
])
def test_failure_is_recorded_lock_released_exit_70(workdir, mongo, broker, exit_code, words):
    env = environment(workdir, mongo, broker, STANDIN_EXIT=str(exit_code))
    code, err = finish(pulpinit(env, "migrate"))
    assert code == 70
    assert words in err
    doc = state(mongo)
    assert doc["status"] == "failed" and doc["exit_code"] == exit_code and words in doc["error"]
    assert lock_doc(mongo)["owner"] is None
    # a waiting role sees the failure at once and exits 75 with the recorded error
    started = time.monotonic()
    code, err = finish(pulpinit(env, "run", "--", "/bin/true"))
    assert code == 75 and words in err
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_waiting_role_released_as_soon_as_done(workdir, mongo, broker):
    env = environment(workdir, mongo, broker, STANDIN_SECONDS="2")
    waiter = pulpinit(env, "run", "--", "/bin/true")
    time.sleep(0.5)  # let the waiter find nothing done and start polling
    migrator = pulpinit(env, "migrate")
    assert finish(migrator)[0] == 0
    done_at = time.monotonic()
    code, err = finish(waiter)
    assert code == 0, err[-2000:]
    assert time.monotonic() - done_at < 2.5  # polling is capped at 2 s
    assert "migration.waiting" in err and "migration.ready" in err


@pytest.mark.slow
def test_waiting_role_times_out_with_75_naming_owner_and_state(workdir, mongo, broker):
    env = environment(workdir, mongo, broker, STANDIN_SECONDS="30")
    holder = pulpinit(env, "migrate")
    wait_for(lambda: len(starts(workdir)) == 1)
    waiting = environment(workdir, mongo, broker, PULPINIT_MIGRATION_TIMEOUT="1")
    code, err = finish(pulpinit(waiting, "run", "--", "/bin/true"))
    holder.send_signal(signal.SIGTERM)
    finish(holder)
    assert code == 75
    assert "not done after 1 s" in err and "running" in err and "held by" in err


@pytest.mark.slow
def test_sigterm_during_migration_is_forwarded_recorded_and_released(workdir, mongo, broker):
    env = environment(workdir, mongo, broker, STANDIN_SECONDS="30")
    proc = pulpinit(env, "migrate")
    wait_for(lambda: len(starts(workdir)) == 1)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc, timeout=15)
    assert code == 143
    assert "migration.signal" in err
    doc = state(mongo)
    assert doc["status"] == "failed" and "SIGTERM" in doc["error"]
    assert lock_doc(mongo)["owner"] is None


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime (libfaketime) is not installed")
def test_a_replica_with_a_skewed_clock_respects_the_lease(workdir, mongo, broker):
    """The lease is timed by the server's clock: a client two hours ahead does not see it expired."""
    env = environment(workdir, mongo, broker, STANDIN_SECONDS="3", PULPINIT_LEASE_SECONDS="60")
    holder = pulpinit(env, "migrate")
    wait_for(lambda: len(starts(workdir)) == 1)
    skewed = subprocess.run(["faketime", "-f", "+2h", sys.executable, "-c", "import time; print(time.time())"],
                            capture_output=True, text=True, check=True)
    assert float(skewed.stdout) - time.time() > 7000  # faketime really moves this process's clock
    ahead = subprocess.Popen(["faketime", "-f", "+2h", sys.executable, "-m", "pulpinit", "migrate"], env=env,
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert finish(holder)[0] == 0
    code, err = finish(ahead)
    assert code == 0, err[-2000:]
    assert len(starts(workdir)) == 1  # the skewed replica waited, then skipped
    assert "migration.skipped" in err


def test_lease_times_come_from_the_server_clock(mongo):
    mongo.set_clock_offset(86400.0)  # the server is a day ahead of this machine
    client = pymongo.MongoClient(mongo.uri, serverSelectionTimeoutMS=2000)
    try:
        database = client["pulp_database"]
        now = server_clock(database)
        lock = LeaseLock(database[COLLECTION], LOCK_ID, "a:1", 60, now)
        other = LeaseLock(database[COLLECTION], LOCK_ID, "b:2", 60, now)
        assert lock.try_acquire()
        assert not other.try_acquire()
        expires = lock.holder().expires_at
        assert expires is not None
        local = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        assert dt.timedelta(hours=23) < expires - local < dt.timedelta(hours=25)
        assert "held by a:1" in other.holder().describe(now())
        assert lock.renew() and not other.renew()
        lock.release()
        assert other.try_acquire()
    finally:
        client.close()


def test_expired_lease_is_taken_over_by_exactly_one(mongo):
    client = pymongo.MongoClient(mongo.uri, serverSelectionTimeoutMS=2000)
    try:
        database = client["pulp_database"]
        now = server_clock(database)
        dead = LeaseLock(database[COLLECTION], LOCK_ID, "dead:1", 0.2, now)
        assert dead.try_acquire()
        time.sleep(0.3)
        contenders = [LeaseLock(database[COLLECTION], LOCK_ID, f"c:{i}", 60, now) for i in range(5)]
        assert sum(c.try_acquire() for c in contenders) == 1
        assert not dead.renew()  # the dead holder cannot come back
    finally:
        client.close()


def test_fingerprint_from_the_rpm_database(tmp_path: Path):
    """Without PULPINIT_MIGRATION_FINGERPRINT the installed Pulp packages name the version.

    No rpm database with Pulp packages can exist on this Debian machine, so a stand-in `rpm`
    answers the query as rpm would; the order of its lines must not matter.
    """
    from pulpinit.errors import ConfigError
    from pulpinit.knobs import toolkit_from_environ
    from pulpinit.migration import fingerprint

    rpm = tmp_path / "rpm"
    rpm.write_text("#!/bin/sh\necho \"$@\" > \"$0.args\"\nprintf '%s\\n' $PACKAGES\n")
    rpm.chmod(0o755)
    toolkit = toolkit_from_environ({})
    os.environ["PACKAGES"] = "pulp-server-2.21.5-1.el7 pulp-rpm-plugins-2.21.5-1.el7"
    try:
        first, how = fingerprint(toolkit, rpm=str(rpm))
        assert "-qa" in (tmp_path / "rpm.args").read_text() and "pulp-*" in (tmp_path / "rpm.args").read_text()
        os.environ["PACKAGES"] = "pulp-rpm-plugins-2.21.5-1.el7 pulp-server-2.21.5-1.el7"
        assert fingerprint(toolkit, rpm=str(rpm))[0] == first  # order-independent
        os.environ["PACKAGES"] = "pulp-server-2.21.6-1.el7 pulp-rpm-plugins-2.21.6-1.el7"
        assert fingerprint(toolkit, rpm=str(rpm))[0] != first  # an upgrade is a new fingerprint
        assert first.startswith("rpm:") and len(first) == 20 and "2 installed Pulp packages" in how
        os.environ["PACKAGES"] = ""
        with pytest.raises(ConfigError, match="PULPINIT_MIGRATION_FINGERPRINT"):
            fingerprint(toolkit, rpm=str(rpm))
    finally:
        os.environ.pop("PACKAGES", None)
    explicit = toolkit_from_environ({"PULPINIT_MIGRATION_FINGERPRINT": "2.21.5"})
    assert fingerprint(explicit, rpm=str(rpm)) == ("2.21.5", "PULPINIT_MIGRATION_FINGERPRINT")
