"""Migrations exactly once per version: real pulpinit processes against two MongoDB servers.

The run-once tests run against the project's fake MongoDB and against SecantusDB, an
independently written MongoDB-wire server (tests/secantus.py), through the ``peer`` fixture.
pulp-manage-db is the stand-in of pulpinit.testing.standins: it records when each run starts
and ends on the machine's monotonic clock, and notices (by a ``flock`` the kernel drops when it
dies, even by SIGKILL) when it starts while another run is still alive.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
from helpers.mongo_peers import (
    COLLECTION,
    MongoPeer,
    Pulpinit,
    gone,
    kill_started,
    migration_environment,
    migration_workdir,
    one_error_line,
    wait_for,
)
from helpers.pace import argv as paced

from pulpinit.migrate.lease import LeaseLock, server_clock
from pulpinit.migrate.migrator import LOCK_ID, STATE_ID
from pulpinit.testing import standins
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.faults import Proxy
from pulpinit.testing.plugin import FakeServices

ROOT = os.geteuid() == 0
BOTH = pytest.mark.parametrize("peer", ["fake", "secantus"], indirect=True)


@pytest.fixture(autouse=True)
def no_pulpinit_left() -> Iterator[None]:
    """A test that fails half-way leaves no pulpinit running (or SIGSTOPped) behind."""
    yield
    kill_started()


@pytest.fixture(scope="module")
def broker(module_fakes: FakeServices) -> FakeAmqpBroker:
    return module_fakes.broker()


@pytest.fixture
def mongo(fake_mongo: FakeMongo) -> FakeMongo:
    return fake_mongo


@pytest.fixture
def workdir() -> Iterator[Path]:
    with migration_workdir() as path:
        yield path


def environment(workdir: Path, peer: MongoPeer | FakeMongo, broker: FakeAmqpBroker, **extra: str) -> dict[str, str]:
    peer = MongoPeer.of_fake(peer) if isinstance(peer, FakeMongo) else peer
    timeouts = {"PULPINIT_WAIT_TIMEOUT": "20", "PULPINIT_MIGRATION_TIMEOUT": "30", "STANDIN_SECONDS": "0.3"}
    return migration_environment(workdir, peer, broker.url(), "2.21.5-1", **{**timeouts, **extra})


def short_lease(lease: float = 2.0, stop: float = 0.3) -> dict[str, str]:
    """Knobs for a short lease (the stop timeout must stay below lease/3)."""
    return {"PULPINIT_LEASE_SECONDS": f"{lease:g}", "PULPINIT_MANAGE_DB_STOP_TIMEOUT": f"{stop:g}"}


def pulpinit(env: dict[str, str], *argv: str, pace: dict[str, float] | None = None) -> subprocess.Popen[str]:
    """``python -m pulpinit ARGV``, or with ``pace`` the same program with its waits so paced (helpers.pace)."""
    command = [*(paced(**pace) if pace else [sys.executable, "-m", "pulpinit"]), *argv]
    return subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def starts(workdir: Path) -> list[standins.Run]:
    return standins.parsed_runs(workdir)


def state(mongo: FakeMongo | MongoPeer) -> dict:
    return (MongoPeer.of_fake(mongo) if isinstance(mongo, FakeMongo) else mongo).state()


def lock_doc(mongo: FakeMongo | MongoPeer) -> dict:
    return (MongoPeer.of_fake(mongo) if isinstance(mongo, FakeMongo) else mongo).lock()


def assert_no_overlap(runs: list[standins.Run]) -> None:
    """Every run ended (or was killed) before the next one started."""
    assert not any(run.overlapped for run in runs), runs
    for earlier, later in itertools.pairwise(runs):
        assert earlier.ended is None or earlier.ended <= later.started, runs


def pwd_uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid


# -- run once, against both servers -------------------------------------------------------------


@pytest.mark.slow
@BOTH
def test_twelve_concurrent_migrates_run_manage_db_once(workdir, peer, broker):
    env = environment(workdir, peer, broker)
    procs = [pulpinit(env, "migrate") for _ in range(12)]
    results = [finish(p) for p in procs]
    assert [code for code, _ in results] == [0] * 12, [err[-2000:] for _, err in results]
    runs = starts(workdir)
    assert len(runs) == 1 and runs[0].code == 0 and not runs[0].overlapped
    doc = state(peer)
    assert doc["status"] == "done" and doc["fingerprint"] == "2.21.5-1" and doc["exit_code"] == 0
    assert doc["duration_s"] >= 0.3 and doc["finished_at"] >= doc["started_at"]
    assert lock_doc(peer)["owner"] is None  # released
    # the stand-in ran as the unprivileged user, and its output went into the log
    assert runs[0].uid == pwd_uid("nobody") or not ROOT
    assert any("Applying pulp.server.db.migrations" in err for _, err in results)
    assert sum("migration.skipped" in err for _, err in results) == 11
    owners = {
        json.loads(line)["owner"] for _, err in results for line in err.splitlines() if '"migration.start"' in line
    }
    assert len(owners) == 1 and doc["owner"] in owners


@pytest.mark.slow
@pytest.mark.root  # PID namespaces
@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is not installed")
@BOTH
def test_contenders_in_two_pid_namespaces_with_one_host_name_run_once(workdir, peer, broker):
    """Both are PID 1 with HOSTNAME=pulp: the old owner `pulp:1` was the same for both."""
    env = environment(workdir, peer, broker, HOSTNAME="pulp", STANDIN_SECONDS="1")
    contenders = [Pulpinit(env, "migrate", namespace=True) for _ in range(2)]
    results = [c.finish() for c in contenders]
    assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
    runs = starts(workdir)
    assert len(runs) == 1, runs
    owner = state(peer)["owner"]
    assert owner.startswith("pulp:1:") and len(owner.split(":")[2]) == 12  # NAME:PID:TOKEN
    assert sum('"migration.skipped"' in err for _, err in results) == 1


@pytest.mark.slow
@BOTH
def test_killed_holder_takes_its_run_along_and_is_replaced_after_the_lease(workdir, peer, broker):
    """SIGKILL to a holder that is not PID 1: its pulp-manage-db dies with it (PR_SET_PDEATHSIG);
    a waiting contender takes over once the lease has run out; the two runs never overlap."""
    lease = 2.0
    env = environment(workdir, peer, broker, STANDIN_SECONDS="30", **short_lease(lease))
    holder = Pulpinit(env, "migrate")
    owner = holder.expect("migration.start")["owner"]
    contender = Pulpinit(environment(workdir, peer, broker, STANDIN_SECONDS="0.2", **short_lease(lease)), "migrate")
    contender.expect("migration.lock_held")
    victim = starts(workdir)[0]
    holder.proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    holder.finish()
    wait_for(lambda: gone(victim.pid), timeout=1.0, what="the killed holder's pulp-manage-db gone within 1 s")
    orphan_s = time.monotonic() - killed_at
    code, err = contender.finish()
    assert code == 0, err[-2000:]
    runs = starts(workdir)
    assert len(runs) == 2 and runs[0].pid == victim.pid and runs[1].code == 0
    takeover_s = runs[1].started - killed_at
    assert 0 < takeover_s < lease + 3, takeover_s  # it waited for the lease, not for more
    assert runs[0].ended is None  # killed: it never finished
    assert_no_overlap(runs)
    assert state(peer)["status"] == "done" and state(peer)["owner"] != owner
    print(
        f"\n[figure] {peer.kind}: lease {lease:g} s: run of the SIGKILLed holder gone after {orphan_s:.3f} s, "
        f"takeover run started {takeover_s:.2f} s after the kill"
    )


@pytest.mark.slow
@BOTH
def test_paused_holder_kills_its_run_on_resume_exits_70_and_the_other_completes(workdir, peer, broker):
    """The holder's whole process group — pulpinit, its watchdog and pulp-manage-db — is SIGSTOPped for
    twice the lease (a frozen cgroup or VM).

    Nothing can fence a group frozen as a whole (docs/migrations.md): the paused run is still alive, though it
    executes nothing, while the second one runs — so the second run sees it (``overlapped``).
    What pulpinit guarantees: on SIGCONT the resumed watchdog kills its run within 1 s, the holder
    records nothing over the new holder's state and exits 70."""
    lease = 2.0
    env = environment(workdir, peer, broker, STANDIN_SECONDS="30", **short_lease(lease))
    holder = Pulpinit(env, "migrate", session=True)
    owner = holder.expect("migration.start")["owner"]
    wait_for(lambda: len(starts(workdir)) == 1, what="the holder's run started")
    paused = starts(workdir)[0]
    os.killpg(holder.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    other = Pulpinit(environment(workdir, peer, broker, STANDIN_SECONDS="0.5", **short_lease(lease)), "migrate")
    try:
        code, err = other.finish(timeout=15)
    except subprocess.TimeoutExpired:
        raise AssertionError("\n".join(other.lines[-40:])) from None
    assert code == 0, err[-2000:]
    assert state(peer)["status"] == "done" and state(peer)["owner"] != owner
    done = state(peer)
    time.sleep(max(0.0, stopped_at + 2 * lease - time.monotonic()))
    os.killpg(holder.pid, signal.SIGCONT)
    resumed_at = time.monotonic()
    wait_for(lambda: gone(paused.pid), timeout=1.0, what="the resumed holder's run killed within 1 s")
    kill_s = time.monotonic() - resumed_at
    code, err = holder.finish(timeout=20)
    assert code == 70, err[-2000:]
    assert "migration.lease_lost" in err
    errors = one_error_line(err)
    assert len(errors) == 1 and errors[0]["exit_code"] == 70 and "lease" in errors[0]["error"]
    assert state(peer) == done  # the new holder's record stands
    runs = starts(workdir)
    assert len(runs) == 2 and runs[0].pid == paused.pid and runs[0].ended is None and runs[1].code == 0
    assert runs[1].overlapped  # the frozen run was alive (not running) meanwhile: the documented limit
    print(
        f"\n[figure] {peer.kind}: lease {lease:g} s, paused {2 * lease:g} s: resumed holder's run killed "
        f"{kill_s:.3f} s after SIGCONT"
    )


@pytest.mark.slow
@BOTH
def test_a_frozen_pulpinit_cannot_let_its_run_outlive_the_lease(workdir, peer, broker):
    """SIGSTOP of the holding pulpinit alone, past its lease: its watchdog stops pulp-manage-db before the
    lease ends, a contender takes over, and the two runs never overlap; the resumed holder writes nothing."""
    lease = 3.0
    env = environment(workdir, peer, broker, STANDIN_SECONDS="30", **short_lease(lease, stop=0.5))
    holder = Pulpinit(env, "migrate")
    owner = holder.expect("migration.start")["owner"]
    wait_for(lambda: len(starts(workdir)) == 1 and state(peer).get("status") == "running", what="running")
    frozen = starts(workdir)[0]
    holder.proc.send_signal(signal.SIGSTOP)  # pulpinit only: its watchdog and pulp-manage-db run on
    stopped_at = time.monotonic()
    contender = Pulpinit(environment(workdir, peer, broker, STANDIN_SECONDS="0.5", **short_lease(lease)), "migrate")
    try:
        code, err = contender.finish(timeout=30)
    finally:
        time.sleep(max(0.0, stopped_at + 3 * lease - time.monotonic()))  # frozen three leases in all
        holder.proc.send_signal(signal.SIGCONT)
    assert code == 0, err[-2000:]
    runs = starts(workdir)
    assert len(runs) == 2 and runs[0].pid == frozen.pid and runs[0].code == 143  # stopped by its watchdog
    assert_no_overlap(runs)
    assert runs[0].ended is not None and runs[0].ended < runs[1].started
    done = state(peer)
    assert done["status"] == "done" and done["owner"] != owner
    code, err = holder.finish(timeout=20)
    assert code == 70, err[-2000:]
    assert "migration.lease_lost" in err
    (error,) = one_error_line(err)
    assert "lease" in error["error"]
    assert state(peer) == done  # the new holder's record stands
    print(
        f"\n[figure] {peer.kind}: lease {lease:g} s, pulpinit frozen {3 * lease:g} s: "
        f"{sum(run.overlapped for run in runs)} overlapping runs of {len(runs)}; the frozen holder's run ended "
        f"{runs[0].ended - stopped_at:.2f} s after the SIGSTOP"
    )


@pytest.mark.slow
@BOTH
def test_renewal_that_finds_another_owner_stops_the_run_at_once(workdir, peer, broker):
    """Someone else's name in the lock (a takeover this holder did not see coming): the next
    renewal notices, the run is killed at once, and the other owner's state is left alone."""
    lease = 3.0
    env = environment(workdir, peer, broker, STANDIN_SECONDS="30", **short_lease(lease, stop=0.5))
    holder = Pulpinit(env, "migrate")
    wait_for(lambda: len(starts(workdir)) == 1 and state(peer).get("status") == "running", what="running")
    run = starts(workdir)[0]
    with pymongo.MongoClient(peer.uri, serverSelectionTimeoutMS=5000) as client:
        docs = client[peer.database][COLLECTION]
        far = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(hours=1)
        docs.update_one({"_id": LOCK_ID}, {"$set": {"owner": "usurper:1:feedbeef0000", "expires_at": far}})
        docs.replace_one(
            {"_id": STATE_ID},
            {"_id": STATE_ID, "fingerprint": "2.21.5-1", "status": "running", "owner": "usurper:1:feedbeef0000"},
        )
        taken_at = time.monotonic()
    wait_for(lambda: gone(run.pid), timeout=lease / 3 + 1.5, what="the run killed at the next renewal")
    stop_s = time.monotonic() - taken_at
    code, err = holder.finish()
    assert code == 70 and "migration.lease_lost" in err and "usurper" in err
    assert state(peer)["owner"] == "usurper:1:feedbeef0000" and state(peer)["status"] == "running"
    assert lock_doc(peer)["owner"] == "usurper:1:feedbeef0000"  # not released: it was not ours
    print(f"\n[figure] {peer.kind}: lease {lease:g} s: run killed {stop_s:.2f} s after the lock changed hands")


@pytest.mark.slow
@BOTH
def test_mongodb_gone_for_8_s_during_the_wait_and_the_run_is_waited_out(workdir, peer, broker):
    """Holder and waiter reach MongoDB through a proxy that refuses (and resets) for 8 s while
    pulp-manage-db runs and the waiter waits: no traceback, both succeed once it is back."""
    target = ("127.0.0.1", int(peer.hostport.rsplit(":", 1)[1]))
    with Proxy(target) as proxy:
        proxied = MongoPeer(peer.kind, f"127.0.0.1:{proxy.port}", peer.database)
        knobs = {"PULPINIT_LEASE_SECONDS": "20", "PULPINIT_MANAGE_DB_STOP_TIMEOUT": "1"}
        pace = {"log_interval": 1.0}
        holder = Pulpinit(environment(workdir, proxied, broker, STANDIN_SECONDS="3", **knobs), "migrate", pace=pace)
        wait_for(lambda: len(starts(workdir)) == 1, what="the run started")
        waiter = Pulpinit(environment(workdir, proxied, broker, **knobs), "run", "--", "/bin/true", pace=pace)
        waiter.expect("migration.waiting")
        proxy.go_down()
        time.sleep(8)
        proxy.go_up()
        results = [holder.finish(), waiter.finish()]
    for code, err in results:
        assert code == 0, err[-3000:]
        assert one_error_line(err) == []
    assert any("migration.db_retry" in err or "migration.renew_failed" in err for _, err in results)
    assert len(starts(workdir)) == 1 and state(peer)["status"] == "done"


@pytest.mark.slow
@BOTH
def test_recording_gives_up_within_a_lease_and_the_next_start_resumes(workdir, peer, broker):
    """MongoDB gone for good as the result is recorded: 70 after about one lease (6 s), not after
    PULPINIT_MIGRATION_TIMEOUT (600 s); the ``running`` left behind is an interruption the next start resumes."""
    lease = 6.0
    target = ("127.0.0.1", int(peer.hostport.rsplit(":", 1)[1]))
    with Proxy(target) as proxy:
        proxied = MongoPeer(peer.kind, f"127.0.0.1:{proxy.port}", peer.database)
        knobs = {**short_lease(lease, stop=1.0), "PULPINIT_MIGRATION_TIMEOUT": "600", "STANDIN_SECONDS": "2"}
        holder = Pulpinit(environment(workdir, proxied, broker, **knobs), "migrate")
        wait_for(lambda: len(starts(workdir)) == 1 and state(peer).get("status") == "running", what="running")
        proxy.go_down()
        down_at = time.monotonic()
        code, err = holder.finish(timeout=60)
        took = time.monotonic() - down_at
    assert code == 70, err[-2000:]
    (error,) = one_error_line(err)
    assert "result not recorded within one lease" in error["error"]
    assert took < 2 + lease + 5, err  # the run's 2 s, one lease, and room for a loaded machine
    assert starts(workdir)[0].code == 0 and state(peer)["status"] == "running"
    code, err = finish(pulpinit(environment(workdir, peer, broker, **short_lease(lease, stop=1.0)), "migrate"))
    assert code == 0, err[-2000:]
    assert "its holder is gone" in logged(err, "migration.resume")[0]["reason"]
    assert len(starts(workdir)) == 2 and state(peer)["status"] == "done"
    print(f"\n[figure] {peer.kind}: lease {lease:g} s: MongoDB gone while recording, exit 70 after {took:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fake", "secantus"])
def test_a_read_only_user_is_not_authorized(workdir, broker, request, kind):
    """check-deps tells "can log in" from "can work"; migrate stops with 78 and one line."""
    if kind == "secantus":
        server = request.getfixturevalue("secantus_auth")
        peer = MongoPeer("secantus", server.hostport, "pulp_database")
        fake = None
    else:
        fake = FakeMongo(
            users={("pulp_database", "pulp"): "secret"}, read_only_users={("pulp_database", "reader"): "secret"}
        ).start()
        request.addfinalizer(fake.stop)
        peer = MongoPeer.of_fake(fake)
    writer = environment(workdir, peer, broker, PULP_DB_USERNAME="pulp", PULP_DB_PASSWORD="secret")
    reader = environment(workdir, peer, broker, PULP_DB_USERNAME="reader", PULP_DB_PASSWORD="secret")
    with pymongo.MongoClient(
        peer.uri, username="pulp", password="secret", authSource="pulp_database", serverSelectionTimeoutMS=5000
    ) as client:
        client.pulp_database.repos.replace_one({"_id": "zoo"}, {"_id": "zoo", "n": 1}, upsert=True)
        before = (sorted(client.pulp_database.list_collection_names()), list(client.pulp_database.repos.find()))
    denied = pulpinit_run(reader, "check-deps", "--json")
    assert denied.returncode == 78, denied.stdout + denied.stderr  # check-deps: a refusal no wait cures
    mongo_check = next(c for c in json.loads(denied.stdout)["checks"] if c["name"] == "mongodb")
    assert not mongo_check["ok"] and mongo_check["error"].startswith("not_authorized:"), mongo_check
    assert "readWrite" in mongo_check["hint"] and "secret" not in denied.stdout + denied.stderr
    ok = json.loads(pulpinit_run(writer, "check-deps", "--json").stdout)
    assert ok["ok"] and all(c["ok"] for c in ok["checks"] if c["name"] != "messaging"), ok  # messaging: not counted
    with pymongo.MongoClient(
        peer.uri, username="pulp", password="secret", authSource="pulp_database", serverSelectionTimeoutMS=5000
    ) as client:
        after = (sorted(client.pulp_database.list_collection_names()), list(client.pulp_database.repos.find()))
    assert after == before  # the write check changed nothing
    started = time.monotonic()
    code, err = finish(pulpinit(reader, "migrate"))
    assert code == 78, err[-2000:]
    errors = one_error_line(err)
    assert len(errors) == 1 and "reader" in errors[0]["error"] and "pulp_database" in errors[0]["error"]
    assert "readWrite" in errors[0]["error"] and "secret" not in err
    assert time.monotonic() - started < 10  # no waiting out PULPINIT_WAIT_TIMEOUT for it
    assert starts(workdir) == []


def pulpinit_run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pulpinit", *argv], env=env, text=True, capture_output=True, timeout=60, check=False
    )


#: Every command the migrate stage sends, and what one injected failure of each must give.
COMMANDS = ("hello", "find", "findAndModify", "update")


CASES = {
    "closeConnection": ({"closeConnection": True}, 0),  # a dropped connection: retried, then fine
    "ShutdownInProgress": ({"errorCode": 91}, 0),  # a server going away: transient, retried
    "BadValue": ({"errorCode": 2}, 70),
}  # permanent: one line, exit 70


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "case"),
    [
        *((command, CASES[name]) for command in COMMANDS for name in ("closeConnection", "BadValue")),
        ("findAndModify", CASES["ShutdownInProgress"]),
        ("update", CASES["ShutdownInProgress"]),
    ],
    ids=[
        *(f"{name}-{command}" for command in COMMANDS for name in ("closeConnection", "BadValue")),
        "ShutdownInProgress-findAndModify",
        "ShutdownInProgress-update",
    ],
)
def test_fail_command_on_each_migrate_command(workdir, broker, secantus, command, case):
    """SecantusDB's failCommand, aimed at the migrate stage's connections (appName): a documented
    exit code and at most one error line, never a traceback."""
    failure, expected = case
    peer = MongoPeer.on_server("secantus", secantus.hostport)
    env = environment(workdir, peer, broker, STANDIN_SECONDS="0.2")
    secantus.fail_command(command, times=1, **failure)
    try:
        code, err = finish(pulpinit(env, "migrate"))
        assert_fail_point_spent(secantus, command)
    finally:
        secantus.clear_fail_point()
    errors = one_error_line(err)
    if command == "hello" and expected == 70:
        expected = code  # the driver's own handshake may take the hit: 0 or 70, both documented
        assert code in (0, 70)
    assert code == expected, err[-3000:]
    assert len(errors) == (0 if code == 0 else 1), errors
    if code == 0:
        assert state(peer)["status"] == "done" and len(starts(workdir)) == 1
    else:
        assert "MongoDB" in errors[0]["error"]


def assert_fail_point_spent(secantus, command: str) -> None:
    """The armed failure hit pulpinit, not nobody: the same command from its appName now passes."""
    from pulpinit.migrate.migrator import APPNAME

    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(
        secantus.uri, appname=APPNAME, serverSelectionTimeoutMS=3000, retryReads=False, retryWrites=False
    ) as client:
        scratch: Any = client["failpoint_check"]["scratch"]
        {
            "hello": lambda: client.admin.command("hello"),
            "find": lambda: scratch.find_one({}),
            "findAndModify": lambda: scratch.find_one_and_update({"_id": 1}, {"$set": {"a": 1}}),
            "update": lambda: scratch.update_one({"_id": 1}, {"$set": {"a": 1}}),
        }[command]()


@pytest.mark.slow
def test_unauthorized_lock_upsert_is_78_naming_user_database_action(workdir, broker, secantus):
    peer = MongoPeer.on_server("secantus", secantus.hostport)
    secantus.fail_command("findAndModify", times=1, errorCode=13)
    try:
        code, err = finish(pulpinit(environment(workdir, peer, broker), "migrate"))
        assert_fail_point_spent(secantus, "findAndModify")
    finally:
        secantus.clear_fail_point()
    errors = one_error_line(err)
    assert code == 78 and len(errors) == 1, err[-2000:]
    assert "may not update" in errors[0]["error"] and peer.database in errors[0]["error"]
    assert "readWrite" in errors[0]["error"]
    assert starts(workdir) == []


# -- the state machine, on the fake --------------------------------------------------------------


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
@pytest.mark.parametrize(
    ("exit_code", "words"),
    [
        (70, "workers still heartbeat"),
        (65, "database is newer than this image"),
        (3, "exited with 3"),
    ],
)
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
@pytest.mark.parametrize(
    "case",
    [
        ({"PULPINIT_MANAGE_DB": "/nonexistent/pulp-manage-db"}, 127, "not found"),
        pytest.param(  # the user is only resolved when pulpinit can switch to it (root)
            ({"PULPINIT_USER": "no-such-user-pulpinit"}, 78, "no-such-user-pulpinit"), marks=pytest.mark.root
        ),
    ],
    ids=["command-missing", "user-unknown"],
)
def test_a_run_that_cannot_start_leaves_the_state_alone(workdir, mongo, broker, case):
    knobs, expected, words = case
    env = environment(workdir, mongo, broker, **knobs)
    code, err = finish(pulpinit(env, "migrate"))
    assert code == expected and words in err, err[-2000:]
    assert state(mongo) == {}  # never marked running
    assert lock_doc(mongo).get("owner") is None  # released (or, when validated first, never taken)
    # so a correct replica migrates right away
    assert finish(pulpinit(environment(workdir, mongo, broker), "migrate"))[0] == 0
    assert state(mongo)["status"] == "done"


@pytest.mark.slow
def test_waiting_role_released_as_soon_as_done(workdir, mongo, broker):
    env = environment(workdir, mongo, broker, STANDIN_SECONDS="2")
    waiter = Pulpinit(env, "run", "--", "/bin/true")
    waiter.expect("migration.waiting")  # the waiter found nothing done and polls
    migrator = pulpinit(env, "migrate")
    assert finish(migrator)[0] == 0
    done_at = time.monotonic()
    code, err = waiter.finish()
    assert code == 0, err[-2000:]
    assert time.monotonic() - done_at < 2 + 5  # polling is capped at 2 s (room for a loaded machine)
    assert "migration.waiting" in err and "migration.ready" in err


@pytest.mark.slow
def test_waiting_roles_wait_past_the_timeout_while_the_holder_renews(workdir, mongo, broker):
    """PULPINIT_MIGRATION_TIMEOUT counts only time without a live lease: a 1 s timeout does not
    end the wait for a migration that takes 3 s under a renewed 1.5 s lease."""
    env = environment(workdir, mongo, broker, STANDIN_SECONDS="3", **short_lease(1.5, stop=0.3))
    holder = pulpinit(env, "migrate")
    wait_for(lambda: len(starts(workdir)) == 1, what="the run started")
    waiting = environment(workdir, mongo, broker, PULPINIT_MIGRATION_TIMEOUT="1", **short_lease(1.5, stop=0.3))
    code, err = finish(pulpinit(waiting, "run", "--", "/bin/true", pace={"log_interval": 1.0}))
    assert finish(holder)[0] == 0
    assert code == 0, err[-2000:]
    assert err.count('"migration.waiting"') >= 2  # progress logged at the throttle while it waited


@pytest.mark.slow
def test_a_waiter_names_a_gone_holder_and_waits_to_its_deadline(workdir, mongo, broker):
    env = environment(workdir, mongo, broker, STANDIN_SECONDS="30", **short_lease(1.5, stop=0.3))
    holder = Pulpinit(env, "migrate")
    wait_for(lambda: state(mongo).get("status") == "running", what="running recorded")
    holder.proc.send_signal(signal.SIGKILL)
    holder.finish()
    waiting = environment(workdir, mongo, broker, PULPINIT_MIGRATION_TIMEOUT="2")
    started = time.monotonic()
    code, err = finish(pulpinit(waiting, "run", "--", "/bin/true", pace={"log_interval": 1.0}))
    waited = time.monotonic() - started
    assert code == 75, err[-2000:]
    gone_lines = [json.loads(line) for line in err.splitlines() if '"migration.holder_gone"' in line]
    assert gone_lines and gone_lines[0]["owner"] == state(mongo)["owner"] and gone_lines[0]["since"]
    assert "pulpinit migrate" in gone_lines[0]["action"]
    assert 2 <= waited < 2 + 1.5 + 5  # the deadline, counted from when the lease had run out
    assert "without a live lease holder" in err


@pytest.mark.slow
@BOTH
def test_sigterm_during_migration_is_an_interruption_that_the_next_beat_resumes(workdir, peer, broker):
    """A drain: SIGTERM to beat mid-migration is forwarded and recorded as ``interrupted``, not failed; a
    waiting role keeps waiting; the next beat runs the backup and pulp-manage-db again and hands over."""
    backup = standins.write_pre_migrate(workdir)
    celery = standins.write_celery(workdir)
    knobs = {"PULPINIT_PRE_MIGRATE": str(backup), "PULPINIT_CELERY": str(celery)}
    pace = {"log_interval": 1.0}
    beat = Pulpinit(environment(workdir, peer, broker, STANDIN_SECONDS="30", **knobs), "beat", pace=pace)
    wait_for(lambda: len(starts(workdir)) == 1 and state(peer).get("status") == "running", what="running")
    waiter = Pulpinit(environment(workdir, peer, broker, PULPINIT_MIGRATION_TIMEOUT="60"), "run", "--", "/bin/true")
    waiter.expect("migration.waiting")
    beat.proc.send_signal(signal.SIGTERM)
    code, err = beat.finish(timeout=15)
    assert code == 143, err[-2000:]
    assert "migration.signal" in err and "migration.interrupted" in err
    doc = state(peer)
    assert doc["status"] == "interrupted" and "SIGTERM" in doc["error"] and doc["exit_code"] == 143
    assert lock_doc(peer)["owner"] is None
    assert starts(workdir)[0].code == 143  # the stand-in's own SIGTERM handler ran
    assert waiter.proc.poll() is None  # an interruption is no failure: the waiting role waits on

    again = Pulpinit(environment(workdir, peer, broker, **knobs), "beat", pace=pace)
    again.expect("migration.resume")
    again.expect("handoff.exec")
    code, err = waiter.finish()
    assert code == 0, err[-2000:]
    runs = starts(workdir)
    assert [run.code for run in runs] == [143, 0] and state(peer)["status"] == "done"
    assert len(standins.pre_migrate_runs(workdir / "pre-migrate.log")) == 2  # the backup ran again first
    again.kill()


def test_a_stop_timeout_that_does_not_fit_the_lease_is_rejected():
    from pulpinit.errors import EnvValueError
    from pulpinit.settings.toolkit import toolkit_from_environ

    assert toolkit_from_environ({}).manage_db_stop_timeout < toolkit_from_environ({}).lease_seconds / 3
    with pytest.raises(EnvValueError, match=r"PULPINIT_MANAGE_DB_STOP_TIMEOUT.*below 20 s"):
        toolkit_from_environ({"PULPINIT_MANAGE_DB_STOP_TIMEOUT": "20"})
    with pytest.raises(EnvValueError, match="below 1 s"):
        toolkit_from_environ({"PULPINIT_LEASE_SECONDS": "3", "PULPINIT_MANAGE_DB_STOP_TIMEOUT": "1"})
    assert toolkit_from_environ({"PULPINIT_LEASE_SECONDS": "3", "PULPINIT_MANAGE_DB_STOP_TIMEOUT": "0.9"})


def test_owners_are_unique_per_process_and_readable():
    from pulpinit.migrate.migrator import owner_name

    code = "from pulpinit.migrate.migrator import owner_name; print(owner_name({'HOSTNAME': 'pulp-0'}))"
    env = {**os.environ, "HOSTNAME": "pulp-0"}
    others = {
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
        for _ in range(2)
    }
    mine = owner_name({"HOSTNAME": "pulp-0"})
    assert len(others | {mine}) == 3
    for owner in others | {mine}:
        name, pid, token = owner.split(":")
        assert name == "pulp-0" and pid.isdigit() and len(token) == 12
    assert owner_name({"HOSTNAME": "pulp-0"}) == mine  # one token per process


def test_the_lock_verifies_itself_on_a_server_that_answers_colliding_upserts_without_error():
    with FakeMongo(lax_upserts=True) as fake, pymongo.MongoClient(fake.uri, serverSelectionTimeoutMS=2000) as client:
        database = client["pulp_database"]
        now = server_clock(database)
        contenders = [LeaseLock(database[COLLECTION], LOCK_ID, f"c:{i}:t", 60, now) for i in range(5)]
        assert sum(c.try_acquire() for c in contenders) == 1  # without the check: 5
        holder = next(c for c in contenders if c.holder().owner == c.owner)
        assert holder.renew() and not any(c.renew() for c in contenders if c is not holder)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime (libfaketime) is not installed")
def test_a_replica_with_a_skewed_clock_respects_the_lease(workdir, mongo, broker):
    """The lease is timed by the server's clock: a client two hours ahead does not see it expired."""
    env = environment(workdir, mongo, broker, STANDIN_SECONDS="3", PULPINIT_LEASE_SECONDS="60")
    holder = pulpinit(env, "migrate")
    wait_for(lambda: len(starts(workdir)) == 1)
    skewed = subprocess.run(
        ["faketime", "-f", "+2h", sys.executable, "-c", "import time; print(time.time())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(skewed.stdout) - time.time() > 7000  # faketime really moves this process's clock
    ahead = subprocess.Popen(
        ["faketime", "-f", "+2h", sys.executable, "-m", "pulpinit", "migrate"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
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
        wait_for(lambda: not dead.holder().is_live(now()), what="the dead holder's lease to expire")
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
    from pulpinit.settings.fingerprint import derive
    from pulpinit.settings.toolkit import toolkit_from_environ

    rpm = tmp_path / "rpm"
    rpm.write_text('#!/bin/sh\necho "$@" > "$0.args"\nprintf \'%s\\n\' $PACKAGES\n')
    rpm.chmod(0o755)
    toolkit = toolkit_from_environ({})
    os.environ["PACKAGES"] = "pulp-server-2.21.5-1.el7 pulp-rpm-plugins-2.21.5-1.el7"
    try:
        first, how = derive(toolkit.migration_fingerprint, rpm=str(rpm))
        assert "-qa" in (tmp_path / "rpm.args").read_text() and "pulp-*" in (tmp_path / "rpm.args").read_text()
        os.environ["PACKAGES"] = "pulp-rpm-plugins-2.21.5-1.el7 pulp-server-2.21.5-1.el7"
        assert derive(toolkit.migration_fingerprint, rpm=str(rpm))[0] == first  # order-independent
        os.environ["PACKAGES"] = "pulp-server-2.21.6-1.el7 pulp-rpm-plugins-2.21.6-1.el7"
        assert derive(toolkit.migration_fingerprint, rpm=str(rpm))[0] != first  # an upgrade is a new fingerprint
        assert first.startswith("rpm:") and len(first) == 20 and "2 installed Pulp packages" in how
        os.environ["PACKAGES"] = ""
        with pytest.raises(ConfigError, match="PULPINIT_MIGRATION_FINGERPRINT"):
            derive(toolkit.migration_fingerprint, rpm=str(rpm))
    finally:
        os.environ.pop("PACKAGES", None)
    explicit = toolkit_from_environ({"PULPINIT_MIGRATION_FINGERPRINT": "2.21.5"})
    assert derive(explicit.migration_fingerprint, rpm=str(rpm)) == ("2.21.5", "PULPINIT_MIGRATION_FINGERPRINT")


def test_the_fake_knows_read_only_users():
    with (
        FakeMongo(read_only_users={("pulp_database", "reader"): "secret"}) as fake,
        pymongo.MongoClient(
            fake.uri, username="reader", password="secret", authSource="pulp_database", serverSelectionTimeoutMS=2000
        ) as client,
    ):
        assert client.pulp_database.repos.find_one({}) is None
        with pytest.raises(pymongo.errors.OperationFailure, match=r"action: insert") as denied:
            client.pulp_database.repos.insert_one({"_id": 1})
        assert denied.value.code == 13
        fake.add_user("pulp_database", "reader", "secret")  # now readWrite
        client.pulp_database.repos.insert_one({"_id": 1})


def test_the_deadline_counts_only_time_without_a_live_holder():
    """Migrator.poll with an injected clock: 100 s under a live lease cost nothing of a 10 s budget."""
    from pulpinit.errors import MigrationPending
    from pulpinit.migrate.migrator import MigrationPolicy, Migrator, Progress
    from pulpinit.settings.toolkit import toolkit_from_environ
    from pulpinit.targets import MongoTarget

    now = [0.0]
    toolkit = toolkit_from_environ({"PULPINIT_MIGRATION_TIMEOUT": "10", "PULPINIT_MIGRATION_FINGERPRINT": "x"})
    migrator = Migrator(
        None,  # type: ignore[arg-type]  # poll() never touches the collection
        owner="t:1:x",
        fingerprint="x",
        policy=MigrationPolicy.from_toolkit(toolkit),
        target=MongoTarget(seeds=(("127.0.0.1", 1),)),
        now=lambda: None,  # type: ignore[arg-type, return-value]
        sleep=lambda s: now.__setitem__(0, now[0] + s),
        clock=lambda: now[0],
    )
    seen: list[tuple[float, float]] = []

    def step(deadline: float) -> Progress:
        seen.append((now[0], deadline))
        return Progress.HELD if now[0] < 100 else Progress.IDLE

    with pytest.raises(MigrationPending, match="10 s without a live lease holder"):
        migrator.poll(step, MigrationPending)
    # 100 s held (free of charge), then the 10 s budget (the look that first finds nobody
    # charges the interval since the one before, at most one 2 s poll)
    assert 108 <= now[0] < 113
    assert all(d == pytest.approx(t + 10) for t, d in seen if t < 100)  # the budget untouched while held
    assert max(b - a for (a, _), (b, _) in itertools.pairwise(seen)) <= 2.0 + 1e-9  # polls at most every 2 s

    now[0] = 0.0
    assert migrator.poll(lambda _: Progress.FINISHED, MigrationPending) == 0.0


# -- a quiet database and a backup point ----------------------------------------------------------


def logged(err: str, event: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines() if f'"event": "{event}"' in line]


@pytest.mark.slow
@BOTH
def test_a_killed_process_record_holds_the_migration_until_it_is_quiet_seconds_old(workdir, peer, broker):
    peer.put_heartbeat("reserved_resource_worker-0@gone")  # SIGKILLed right now: it never beats again
    written = time.monotonic()
    env = environment(workdir, peer, broker, PULPINIT_QUIET_SECONDS="2")
    code, err = finish(pulpinit(env, "migrate", pace={"log_interval": 0.5}))
    assert code == 0, err[-2000:]
    (run,) = starts(workdir)
    assert written + 2 - 0.1 <= run.started <= written + 2 + 2.5  # the threshold, one poll and a start
    waiting = logged(err, "migration.waiting_for_quiet")
    assert waiting and waiting[0]["processes"][0]["name"] == "reserved_resource_worker-0@gone"
    assert 0 <= waiting[0]["processes"][0]["age_s"] < 2 and waiting[0]["threshold_s"] == 2
    stale = logged(err, "migration.stale_processes")
    assert len(stale) == 1 and stale[0]["processes"][0]["name"] == "reserved_resource_worker-0@gone"
    events = [e["event"] for e in map(json.loads, filter(lambda line: line.startswith("{"), err.splitlines()))]
    assert events.index("migration.quiet") < events.index("migration.start")


@pytest.mark.slow
@BOTH
def test_a_process_that_keeps_heartbeating_ends_the_wait_with_75_naming_it(workdir, peer, broker):
    stop = threading.Event()

    def heartbeat() -> None:  # a live Pulp process: a heartbeat every 0.5 s
        while not stop.wait(0.5):
            peer.put_heartbeat("scheduler@old-beat")

    peer.put_heartbeat("scheduler@old-beat")
    beating = threading.Thread(target=heartbeat, daemon=True)
    beating.start()
    try:
        env = environment(workdir, peer, broker, PULPINIT_QUIET_SECONDS="5", PULPINIT_MIGRATION_TIMEOUT="2")
        started = time.monotonic()
        code, err = finish(pulpinit(env, "migrate"))
    finally:
        stop.set()
        beating.join()
    assert code == 75, err[-2000:]
    (error,) = one_error_line(err)
    assert "scheduler@old-beat (last heartbeat" in error["error"] and "PULPINIT_MIGRATION_TIMEOUT" in error["error"]
    assert 2 <= time.monotonic() - started < 10
    assert starts(workdir) == []  # pulp-manage-db never ran
    assert state(peer) == {}  # nothing was migrated: no state recorded
    assert lock_doc(peer)["owner"] is None  # released: the Job's next try takes it at once


@pytest.mark.slow
def test_quiet_seconds_0_does_not_wait(workdir, mongo, broker):
    peer = MongoPeer.of_fake(mongo)
    peer.put_heartbeat("scheduler@old-beat")
    code, err = finish(pulpinit(environment(workdir, mongo, broker, PULPINIT_QUIET_SECONDS="0"), "migrate"))
    assert code == 0 and "migration.waiting_for_quiet" not in err and len(starts(workdir)) == 1


@pytest.mark.slow
@BOTH
def test_pre_migrate_runs_as_the_user_before_each_real_migration_and_never_on_a_skip(workdir, peer, broker):
    backup = standins.write_pre_migrate(workdir)
    env = environment(workdir, peer, broker, PULPINIT_PRE_MIGRATE=f"{backup} --archive 'with blank'")
    code, err = finish(pulpinit(env, "migrate"))
    assert code == 0, err[-2000:]
    (backed_up,) = standins.pre_migrate_runs(workdir / "pre-migrate.log")
    (run,) = starts(workdir)
    assert backed_up[2] < run.started  # before pulp-manage-db
    assert backed_up[1] == pwd_uid("nobody") or not ROOT  # as PULPINIT_USER
    output = logged(err, "migration.pre_migrate_output")
    assert [line["line"] for line in output] == ["dumping pulp_database to /var/lib/pulp/backup"]
    assert logged(err, "migration.pre_migrate")[0]["command"] == [str(backup), "--archive", "with blank"]
    # the same version again: skipped, and so is the backup
    code, err = finish(pulpinit(env, "migrate"))
    assert code == 0 and "migration.skipped" in err
    assert len(standins.pre_migrate_runs(workdir / "pre-migrate.log")) == 1
    # a new version: a real migration, a new backup
    code, _ = finish(pulpinit({**env, "PULPINIT_MIGRATION_FINGERPRINT": "2.21.6-1"}, "migrate"))
    assert code == 0 and len(standins.pre_migrate_runs(workdir / "pre-migrate.log")) == 2


@pytest.mark.slow
def test_pre_migrate_output_and_command_never_show_a_password(workdir, mongo, broker):
    script = workdir / "backup-echo"
    script.write_text('#!/bin/sh\necho "mongodump --uri $2"\n')
    script.chmod(0o755)
    env = environment(workdir, mongo, broker, PULPINIT_PRE_MIGRATE=f"{script} --uri mongodb://pulp:s3cr3t-Pw@db/")
    code, err = finish(pulpinit(env, "migrate"))
    assert code == 0, err[-2000:]
    assert [e["line"] for e in logged(err, "migration.pre_migrate_output")] == [
        "mongodump --uri mongodb://pulp:***@db/"
    ]
    assert logged(err, "migration.pre_migrate")[0]["command"][-1] == "mongodb://pulp:***@db/"
    assert "s3cr3t-Pw" not in err


@pytest.mark.slow
def test_manage_db_gets_no_secret_variable_and_the_backup_keeps_the_database_credentials(workdir, broker):
    """One child-environment policy: pulp-manage-db reads server.conf; a mongodump needs the database's."""
    with FakeMongo(users={("pulp_database", "pulp"): "SEKdbRET"}) as mongo:
        recorder = '#!/bin/sh\nenv > "$0.env"\n'
        for name in ("manage-db", "backup"):
            (workdir / name).write_text(recorder)
            (workdir / name).chmod(0o755)
        (workdir / "db-password").write_text("SEKdbRET\n")
        (workdir / "db-password").chmod(0o644)
        env = environment(
            workdir,
            mongo,
            broker,
            PULPINIT_MANAGE_DB=str(workdir / "manage-db"),
            PULPINIT_PRE_MIGRATE=str(workdir / "backup"),
            PULP_DB_USERNAME="pulp",
            PULP_DB_PASSWORD_FILE=str(workdir / "db-password"),
            PULP_ADMIN_PASSWORD="SEKadminRET",
            PULP_BROKER_URL=broker.url().replace("://", "://guest:SEKbrokerRET@", 1),
            PULPINIT_CELERY_ARGS="--broker=amqp://x:SEKargsRET@h//",
            PULPINIT_KEEP_SECRET_ENV="1",  # about the role's process only
        )
        code, err = finish(pulpinit(env, "migrate"))
        assert code == 0, err[-2000:]

    def names(name: str) -> set[str]:
        return {line.split("=", 1)[0] for line in (workdir / f"{name}.env").read_text().splitlines() if "=" in line}

    secrets = {"PULP_DB_PASSWORD_FILE", "PULP_ADMIN_PASSWORD", "PULP_BROKER_URL", "PULPINIT_CELERY_ARGS"}
    assert not names("manage-db") & secrets, names("manage-db") & secrets
    assert {"PULP_DB_USERNAME", "PULP_DB_SEEDS", "PULPINIT_CONFIG"} <= names("manage-db")
    assert names("backup") & secrets == {"PULP_DB_PASSWORD_FILE"}  # the database's credentials only
    assert "SEK" not in (workdir / "manage-db.env").read_text()


@pytest.mark.slow
def test_a_failing_pre_migrate_stops_the_migration_with_70_and_state_failed(workdir, mongo, broker):
    backup = standins.write_pre_migrate(workdir)
    env = environment(workdir, mongo, broker, PULPINIT_PRE_MIGRATE=str(backup), STANDIN_PRE_MIGRATE_EXIT="3")
    code, err = finish(pulpinit(env, "migrate"))
    assert code == 70, err[-2000:]
    (error,) = one_error_line(err)
    assert "PULPINIT_PRE_MIGRATE" in error["error"] and "exited with 3" in error["error"]
    assert starts(workdir) == []  # pulp-manage-db did not run
    doc = state(mongo)
    assert doc["status"] == "failed" and "PULPINIT_PRE_MIGRATE" in doc["error"] and doc["fingerprint"] == "2.21.5-1"
    assert lock_doc(mongo)["owner"] is None
    code, err = finish(pulpinit(env, "run", "--", "/bin/true"))  # a waiting role names the failure
    assert code == 75 and "exited with 3" in err


@pytest.mark.slow
def test_beat_does_not_retry_a_failed_migration_the_migrate_job_does(workdir, mongo, broker):
    failing = environment(workdir, mongo, broker, STANDIN_EXIT="3")
    assert finish(pulpinit(failing, "migrate"))[0] == 70
    celery = standins.write_celery(workdir)
    code, err = finish(pulpinit({**failing, "PULPINIT_CELERY": str(celery)}, "beat"))
    assert code == 75, err[-2000:]
    (error,) = one_error_line(err)
    assert "exited with 3" in error["error"] and "pulpinit migrate" in error["error"]
    assert len(starts(workdir)) == 1  # beat ran nothing
    assert finish(pulpinit(environment(workdir, mongo, broker), "migrate"))[0] == 0  # the Job retries
    assert [run.code for run in starts(workdir)] == [3, 0] and state(mongo)["status"] == "done"


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("PULPINIT_QUIET_SECONDS", "soon", "PULPINIT_QUIET_SECONDS"),
        ("PULPINIT_QUIET_SECONDS", "-1", "PULPINIT_QUIET_SECONDS"),
        ("PULPINIT_PRE_MIGRATE", "'unclosed", "cannot split it like a shell would"),
        ("PULPINIT_PRE_MIGRATE", "   ", "names no command"),
    ],
)
def test_bad_quiet_wait_and_backup_knobs_are_78(variable, value, words):
    from pulpinit.errors import EnvValueError
    from pulpinit.settings.toolkit import toolkit_from_environ

    with pytest.raises(EnvValueError, match=words) as caught:
        toolkit_from_environ({variable: value})
    assert caught.value.exit_code == 78 and caught.value.variable == variable


# -- documents of an unexpected shape (tests/test_odd_documents.py reads them without processes) ----

ODD_FINGERPRINT = "2.21.5-1"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def put(peer: MongoPeer, collection: str, doc: dict[str, Any]) -> None:
    """A document written straight into the peer, as a server with looser types would give it back."""
    with peer.client() as client:
        client[peer.database][collection].replace_one({"_id": doc["_id"]}, doc, upsert=True)


def odd_env(workdir: Path, peer: MongoPeer, broker: FakeAmqpBroker, **extra: str) -> dict[str, str]:
    return environment(workdir, peer, broker, **{"STANDIN_SECONDS": "0.2", **extra})


#: The odd-document tests' pace: a progress line every 0.2 s, each one reading the documents again.
ODD_PACE = {"log_interval": 0.2}


@pytest.mark.slow
@BOTH
def test_a_lock_with_odd_dates_is_waited_for_then_taken(workdir, peer, broker):
    """Held by another owner: first with a string expiry an hour ahead, then an unreadable one (held all
    along, whatever PULPINIT_MIGRATION_TIMEOUT says); freed, it is taken and the migration runs."""
    put(peer, COLLECTION, {"_id": LOCK_ID, "owner": "other:1:abc", "acquired_at": str(utcnow()),
                           "expires_at": str(utcnow() + dt.timedelta(hours=1))})  # fmt: skip
    contender = Pulpinit(odd_env(workdir, peer, broker, PULPINIT_MIGRATION_TIMEOUT="1"), "migrate", pace=ODD_PACE)
    held = contender.expect("migration.lock_held")
    assert "held by other:1:abc" in held["lock"]
    expires = re.search(r"lease expires in (\d+) s", held["lock"])
    # an hour, read from a date string (seconds pass on a loaded machine)
    assert expires is not None and 3600 - 60 <= int(expires[1]) <= 3600
    put(peer, COLLECTION, {"_id": LOCK_ID, "owner": "other:1:abc", "expires_at": "when pigs fly"})
    odd = contender.expect("migration.odd_document")
    assert odd["field"] == "expires_at" and odd["document"] == LOCK_ID
    wait_for(lambda: logged("\n".join(contender.lines), "migration.lock_held")[-1]["lock"].endswith("taken as held)"))
    put(peer, COLLECTION, {"_id": LOCK_ID, "owner": None, "expires_at": None})
    code, err = contender.finish()
    assert code == 0, err[-2000:]
    assert one_error_line(err) == [] and len(logged(err, "migration.odd_document")) == 1
    assert len(starts(workdir)) == 1 and peer.state()["status"] == "done"


@pytest.mark.slow
@BOTH
def test_a_waiting_role_reads_an_odd_state_and_lock(workdir, peer, broker):
    odd = {"started_at": "2026-12-06 18:07:00.499000", "exit_code": "none", "duration_s": "?"}
    put(
        peer,
        COLLECTION,
        {"_id": STATE_ID, "fingerprint": ODD_FINGERPRINT, "status": "running", "owner": "other:1:abc", **odd},
    )
    put(peer, COLLECTION, {"_id": LOCK_ID, "owner": "other:1:abc", "expires_at": "when pigs fly"})
    env = odd_env(workdir, peer, broker, PULPINIT_MIGRATION_TIMEOUT="1")
    waiter = Pulpinit(env, "run", "--", "/bin/true", pace=ODD_PACE)
    waiting = waiter.expect("migration.waiting")
    assert waiting["state"].startswith("running (fingerprint 2.21.5-1, by other:1:abc")
    assert "taken as held" in waiting["lock"]
    put(peer, COLLECTION, {"_id": STATE_ID, "fingerprint": ODD_FINGERPRINT, "status": "done", "finished_at": "today"})
    code, err = waiter.finish()
    assert code == 0, err[-2000:]
    assert one_error_line(err) == []


@pytest.mark.slow
@BOTH
def test_an_odd_heartbeat_keeps_the_database_from_being_quiet_and_is_named(workdir, peer, broker):
    put(peer, "workers", {"_id": "reserved_resource_worker-1@old", "last_heartbeat": "not a date"})
    put(peer, "workers", {"_id": "resource_manager@old", "last_heartbeat": str(utcnow() - dt.timedelta(hours=1))})
    env = odd_env(workdir, peer, broker, PULPINIT_QUIET_SECONDS="5", PULPINIT_MIGRATION_TIMEOUT="1.5")
    code, err = finish(pulpinit(env, "migrate", pace=ODD_PACE))
    assert code == 75, err[-2000:]
    (error,) = one_error_line(err)
    assert "reserved_resource_worker-1@old (last heartbeat unreadable, taken as live)" in error["error"]
    assert starts(workdir) == []  # pulp-manage-db never ran under a process that may be alive
    [odd] = logged(err, "migration.odd_document")
    assert odd["document"] == "reserved_resource_worker-1@old" and odd["taken_as"] == "a live process"
    stale = logged(err, "migration.stale_processes")
    assert stale[0]["processes"][0]["name"] == "resource_manager@old"  # a readable string: an hour old
    # the census of check-deps reads them the same way
    report = json.loads(pulpinit_run(env, "check-deps", "--json", "--timeout", "5").stdout or "{}")
    live = report["pulp_processes"]["live"]
    assert live == [{"name": "reserved_resource_worker-1@old", "age_s": None, "unreadable": True}]


# -- a server that returns every $set date as a string, throughout ----------------------------------


@pytest.mark.slow
def test_run_once_on_a_server_that_returns_set_dates_as_strings(workdir, broker):
    with FakeMongo(dates_as_strings=True) as fake:
        peer = MongoPeer.of_fake(fake)
        env = odd_env(workdir, peer, broker, STANDIN_SECONDS="1")
        waiter = Pulpinit(env, "run", "--", "/bin/true", pace=ODD_PACE)
        contenders = [Pulpinit(env, "migrate", pace=ODD_PACE) for _ in range(4)]
        results = [c.finish() for c in contenders] + [waiter.finish()]
        assert [code for code, _ in results] == [0] * 5, [err[-1500:] for _, err in results]
        assert all(one_error_line(err) == [] for _, err in results)
        assert len(starts(workdir)) == 1 and peer.state()["status"] == "done"
        assert isinstance(peer.lock()["released_at"], str)  # the server really gave the dates back as strings
        assert any('"migration.lock_held"' in err for _, err in results)  # contenders read the held lease
