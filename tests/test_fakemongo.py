"""The fake MongoDB, exercised by real pymongo over real TCP."""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
from helpers.processes import Spawned
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    DuplicateKeyError,
    OperationFailure,
    ServerSelectionTimeoutError,
)
from pymongo.write_concern import WriteConcern

from pulpinit.testing.fakemongo import FakeMongo, version_for_wire

REPO = Path(__file__).resolve().parents[1]
UTC = datetime.timezone.utc


def client_for(fake: FakeMongo, **kwargs: Any) -> pymongo.MongoClient[dict[str, Any]]:
    options: dict[str, Any] = {"serverSelectionTimeoutMS": 2000, "connectTimeoutMS": 2000}
    options.update(kwargs)
    return pymongo.MongoClient(fake.uri, **options)


@pytest.fixture
def fake(fake_mongo: FakeMongo) -> FakeMongo:
    return fake_mongo


@pytest.fixture
def db(fake: FakeMongo) -> Iterator[Any]:
    client = client_for(fake)
    yield client.pulp_database
    client.close()


def test_crud_round_trip(db: Any, fake: FakeMongo) -> None:
    db.units.insert_many([{"n": i, "kind": "rpm" if i % 2 else "srpm"} for i in range(250)])
    assert db.units.count_documents({}) == 250
    assert db.units.estimated_document_count() == 250
    assert db.units.count_documents({"kind": "rpm"}) == 125
    # more than one batch: find → getMore
    assert [d["n"] for d in db.units.find({"n": {"$gte": 10}}, {"_id": 0}).sort("n", -1)] == list(range(249, 9, -1))
    assert fake.command_count("getMore") >= 1
    page = list(db.units.find({}, {"_id": 0, "n": 1}).sort("n", 1).skip(5).limit(3))
    assert page == [{"n": 5}, {"n": 6}, {"n": 7}]
    assert sorted(db.units.distinct("kind")) == ["rpm", "srpm"]

    assert db.units.update_one({"n": 1}, {"$set": {"x": 1}}).modified_count == 1
    assert db.units.update_many({"kind": "srpm"}, {"$inc": {"n": 1000}}).modified_count == 125
    result = db.units.update_one({"n": -1}, {"$set": {"x": 2}}, upsert=True)
    assert result.upserted_id is not None and result.matched_count == 0
    assert db.units.replace_one({"n": 1}, {"n": 1, "replaced": True}).modified_count == 1
    assert db.units.find_one({"n": 1}, {"_id": 0}) == {"n": 1, "replaced": True}

    assert db.units.delete_one({"n": 1}).deleted_count == 1
    assert db.units.delete_many({"kind": "srpm"}).deleted_count == 125
    assert db.units.count_documents({}) == 125
    grouped = list(db.units.aggregate([{"$group": {"_id": "$kind", "c": {"$sum": 1}}}, {"$sort": {"_id": 1}}]))
    assert grouped == [{"_id": None, "c": 1}, {"_id": "rpm", "c": 124}]


def test_collections_and_databases(db: Any) -> None:
    db.a.insert_one({})
    db.create_collection("b")
    with pytest.raises(OperationFailure) as info:
        db.command("create", "b")  # pymongo's create_collection checks client-side first
    assert info.value.code == 48
    assert db.list_collection_names() == ["a", "b"]
    assert [c["name"] for c in db.list_collections(filter={"name": {"$regex": "^b"}})] == ["b"]
    assert "pulp_database" in db.client.list_database_names()
    db.drop_collection("a")
    db.drop_collection("never-existed")
    assert db.list_collection_names() == ["b"]
    db.client.drop_database("pulp_database")
    assert "pulp_database" not in db.client.list_database_names()


def test_find_one_and_update_variants(db: Any) -> None:
    coll = db.jobs
    created = coll.find_one_and_update(
        {"_id": "j1"}, {"$set": {"state": "new"}}, upsert=True, return_document=pymongo.ReturnDocument.AFTER
    )
    assert created == {"_id": "j1", "state": "new"}
    assert coll.find_one_and_update({"_id": "j2"}, {"$set": {"state": "new"}}, upsert=True) is None
    coll.insert_many([{"_id": f"p{i}", "prio": i, "state": "queued"} for i in range(3)])
    before = coll.find_one_and_update(
        {"state": "queued"}, {"$set": {"state": "running"}}, sort=[("prio", -1)], projection={"prio": 1}
    )
    assert before == {"_id": "p2", "prio": 2}
    assert coll.find_one({"_id": "p2"})["state"] == "running"
    assert coll.find_one_and_update({"_id": "missing"}, {"$set": {"a": 1}}) is None
    assert coll.find_one_and_replace({"_id": "p0"}, {"replaced": 1}, return_document=True) == {
        "_id": "p0",
        "replaced": 1,
    }
    assert coll.find_one_and_delete({"_id": "p1"})["_id"] == "p1"
    raw = db.command("findAndModify", "jobs", query={"_id": "j3"}, update={"$set": {"a": 1}}, upsert=True)
    assert raw["lastErrorObject"] == {"n": 1, "updatedExisting": False, "upserted": "j3"}
    raw = db.command("findAndModify", "jobs", query={"_id": "j3"}, update={"$set": {"a": 2}}, new=True)
    assert raw["lastErrorObject"] == {"n": 1, "updatedExisting": True}
    assert raw["value"] == {"_id": "j3", "a": 2}


def _acquire(coll: Any, owner: str, now: datetime.datetime, lease_s: float = 60) -> dict[str, Any] | None:
    """The migration lease lock: free, expired or mine → take it; held by another → DuplicateKeyError."""
    doc: dict[str, Any] | None = coll.find_one_and_update(
        {"_id": "lock", "$or": [{"expires_at": {"$lt": now}}, {"owner": owner}]},
        {"$set": {"owner": owner, "expires_at": now + datetime.timedelta(seconds=lease_s)}},
        upsert=True,
        return_document=pymongo.ReturnDocument.AFTER,
    )
    return doc


def test_lease_lock_pattern(db: Any) -> None:
    now = datetime.datetime.now(UTC).replace(tzinfo=None)
    coll = db.migration_lock
    assert _acquire(coll, "pod-a", now)["owner"] == "pod-a"  # type: ignore[index]
    with pytest.raises(DuplicateKeyError) as info:
        _acquire(coll, "pod-b", now)
    assert info.value.code == 11000
    assert _acquire(coll, "pod-a", now + datetime.timedelta(seconds=20))["owner"] == "pod-a"  # type: ignore[index]
    later = now + datetime.timedelta(seconds=200)  # pod-a's lease has expired
    assert _acquire(coll, "pod-b", later)["owner"] == "pod-b"  # type: ignore[index]
    assert coll.count_documents({}) == 1


def test_lease_lock_contended_by_threads(fake: FakeMongo) -> None:
    now = datetime.datetime.now(UTC).replace(tzinfo=None)
    outcomes: dict[str, str] = {}

    def contender(owner: str) -> None:
        client = client_for(fake)
        try:
            _acquire(client.pulp_database.migration_lock, owner, now)
            outcomes[owner] = "won"
        except DuplicateKeyError:
            outcomes[owner] = "duplicate"
        finally:
            client.close()

    threads = [threading.Thread(target=contender, args=(f"pod-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == ["duplicate"] * 7 + ["won"]
    winner = next(owner for owner, what in outcomes.items() if what == "won")
    assert fake.client.pulp_database.migration_lock.find_one()["owner"] == winner


def test_unique_index(db: Any) -> None:
    coll = db.repos
    assert coll.create_index([("repo_id", 1)], unique=True) == "repo_id_1"
    indexes = {ix["name"]: ix for ix in coll.list_indexes()}
    assert indexes["repo_id_1"]["unique"] is True and dict(indexes["repo_id_1"]["key"]) == {"repo_id": 1}
    coll.insert_one({"repo_id": "zoo"})
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"repo_id": "zoo"})
    with pytest.raises(BulkWriteError) as info:
        coll.insert_many([{"repo_id": "a"}, {"repo_id": "zoo"}, {"repo_id": "b"}])
    assert info.value.details["nInserted"] == 1
    assert [e["code"] for e in info.value.details["writeErrors"]] == [11000]
    coll.insert_one({"repo_id": "other"})
    with pytest.raises(DuplicateKeyError):
        coll.update_one({"repo_id": "other"}, {"$set": {"repo_id": "zoo"}})
    coll.drop_index("repo_id_1")
    coll.insert_one({"repo_id": "zoo"})
    assert coll.count_documents({"repo_id": "zoo"}) == 2


def test_scram_good_and_bad_password() -> None:
    users = {("pulp_database", "pulp"): "s3cret:with,odd=chars", ("admin", "root"): "rootpw"}
    with FakeMongo(users=users) as fake:
        good = client_for(fake, username="pulp", password="s3cret:with,odd=chars", authSource="pulp_database")
        good.pulp_database.x.insert_one({"a": 1})
        status = good.pulp_database.command("connectionStatus")
        assert status["authInfo"]["authenticatedUsers"] == [{"user": "pulp", "db": "pulp_database"}]
        good.close()

        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
            explicit = client_for(fake, username="root", password="rootpw", authMechanism=mechanism)
            assert explicit.pulp_database.x.count_documents({}) == 1
            explicit.close()

        for user, password, source in (
            ("pulp", "wrong", "pulp_database"),
            ("pulp", "s3cret", "admin"),
            ("nobody", "x", "pulp_database"),
        ):
            bad = client_for(fake, username=user, password=password, authSource=source)
            with pytest.raises(OperationFailure) as info:
                bad.pulp_database.x.find_one()
            assert info.value.code == 18
            bad.close()

        anonymous = client_for(fake)
        assert anonymous.admin.command("ping")["ok"] == 1
        with pytest.raises(OperationFailure) as info:
            anonymous.pulp_database.x.find_one()
        assert info.value.code == 13
        anonymous.close()


def test_replica_set_mode() -> None:
    with FakeMongo(replica_set="rs0") as fake:
        client = client_for(fake)
        assert "replicaSet=rs0" in fake.uri
        client.pulp_database.x.insert_one({"a": 1})
        assert client.primary == fake.address
        hello = client.admin.command("hello")
        assert hello["setName"] == "rs0" and hello["isWritablePrimary"] and hello["secondary"] is False
        client.close()
        uri = f"mongodb://{fake.hostport}/?replicaSet=rs1"
        other: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=300)
        with pytest.raises(ServerSelectionTimeoutError):
            other.admin.command("ping")
        other.close()


@pytest.mark.parametrize(("wire", "minimum", "message"), [(5, 0, "requires at least 6"), (30, 26, "only supports up")])
def test_wire_version_outside_driver_range(wire: int, minimum: int, message: str) -> None:
    with FakeMongo(wire_version=wire, min_wire_version=minimum) as fake:
        client = client_for(fake)
        with pytest.raises(ConfigurationError, match=message):
            client.admin.command("ping")
        client.close()


@pytest.mark.parametrize(("wire", "prefix"), [(6, "3.6."), (7, "4.0."), (17, "6.0."), (19, "6.0."), (25, "8.0.")])
def test_build_info_matches_wire_version(wire: int, prefix: str) -> None:
    assert version_for_wire(wire).startswith(prefix)
    with FakeMongo(wire_version=wire) as fake:
        client = client_for(fake)
        info = client.admin.command("buildInfo")
        assert info["version"].startswith(prefix)
        assert info["versionArray"][:2] == [int(p) for p in prefix.split(".")[:2]]
        client.close()
    with FakeMongo(version="3.6.8") as fake:
        client = client_for(fake)
        assert client.admin.command("buildInfo")["version"] == "3.6.8"
        client.close()


def test_local_time_honours_clock_offset(fake: FakeMongo, db: Any) -> None:
    fake.set_clock_offset(3600)
    expected = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
    local = db.command("hello")["localTime"].replace(tzinfo=UTC)
    assert abs((local - expected).total_seconds()) < 2
    db.stamps.update_one({"_id": 1}, {"$currentDate": {"at": True}}, upsert=True)
    stamped = db.stamps.find_one({"_id": 1})["at"].replace(tzinfo=UTC)
    assert abs((stamped - expected).total_seconds()) < 2
    db.stamps.update_one({"_id": 1}, [{"$set": {"now": "$$NOW"}}])
    stamped = db.stamps.find_one({"_id": 1})["now"].replace(tzinfo=UTC)
    assert abs((stamped - expected).total_seconds()) < 2
    # server-side lease expiry: an hour-ahead server sees a lease ending in 30 min as expired
    db.leases.insert_one({"_id": "l", "expires_at": datetime.datetime.now(UTC) + datetime.timedelta(minutes=30)})
    assert db.leases.count_documents({"$expr": {"$lt": ["$expires_at", "$$NOW"]}}) == 1
    fake.clock_offset_s = -120
    assert abs((db.command("serverStatus")["localTime"].replace(tzinfo=UTC) - expected).total_seconds() + 3720) < 2
    local = db.command("isMaster")["localTime"].replace(tzinfo=UTC)
    assert abs((local - datetime.datetime.now(UTC)).total_seconds() - -120) < 2


def test_unknown_command_and_counters(fake: FakeMongo, db: Any) -> None:
    with pytest.raises(OperationFailure) as info:
        db.command("frobnicate")
    assert info.value.code == 59 and (info.value.details or {})["codeName"] == "CommandNotFound"
    fake.reset_counts()
    db.command("ping")
    db.command("ping")
    assert fake.command_count("ping") == 2 and fake.commands["frobnicate"] == 0


def test_unacknowledged_writes_use_more_to_come(fake: FakeMongo, db: Any) -> None:
    fire_and_forget = db.with_options(write_concern=WriteConcern(w=0))
    for i in range(3):
        fire_and_forget.notes.insert_one({"i": i})
    deadline = time.monotonic() + 2
    while db.notes.count_documents({}) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert db.notes.count_documents({}) == 3


@pytest.mark.parametrize(
    "junk",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00" + b"\x01" * 200,
        struct.pack("<iiii", 30, 1, 0, 2013) + b"\x00" * 5 + b"\xff" * 9,
    ],
)
def test_garbage_is_dropped_and_the_server_keeps_serving(fake: FakeMongo, db: Any, junk: bytes) -> None:
    with socket.create_connection(fake.address, timeout=2) as sock:
        sock.sendall(junk)
        with contextlib.suppress(ConnectionResetError):  # closed with unread data: RST
            assert sock.recv(100) == b""
    assert db.command("ping")["ok"] == 1


def test_reply_delay(fake: FakeMongo, db: Any) -> None:
    db.command("ping")
    fake.reply_delay_s = 0.2
    started = time.monotonic()
    db.command("ping")
    assert time.monotonic() - started >= 0.2


def test_stop_drops_connections_and_restart_keeps_data(fake: FakeMongo) -> None:
    client = client_for(fake)
    client.pulp_database.x.insert_one({"kept": True})
    port = fake.port
    fake.stop()
    assert fake.connection_count == 0
    fake.start()
    assert fake.port == port
    assert client.pulp_database.x.find_one({}, {"_id": 0}) == {"kept": True}
    client.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.integers(-(2**62), 2**62), st.text(max_size=30)), max_size=60))
# regression: this insert is a 790-byte message (0x316), whose header starts like a TLS record (16 03)
@example(
    values=[0] * 9
    + [
        "",
        "",
        "\x80",
        "\x80\x80",
        "0\x80\x80",
        "0\x80\x80",
        "0\x80\u0800\U00010000",
        "000\x80\x80\x80\x80\x80\U00010000",
    ]
)
def test_documents_survive_the_wire(db: Any, values: list[int | str]) -> None:
    db.drop_collection("prop")
    if values:
        db.prop.insert_many([{"i": i, "v": v} for i, v in enumerate(values)])
    found = [d["v"] for d in db.prop.find({}, {"_id": 0}).sort("i", 1).batch_size(7)]
    assert found == values
    ints = [v for v in values if isinstance(v, int)]
    assert db.prop.count_documents({"v": {"$gt": 0}}) == len([v for v in ints if v > 0])


def test_entry_point_serves_until_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "pulpinit.testing.fakemongo", "--port", "0", "--replica-set", "rs0"]
    argv += ["--user", "pulp_database:pulp:pa:ss", "--clock-offset", "-30", "--wire-version", "13"]
    with Spawned(argv, env=env) as proc:
        port = proc.ready_port()
        uri = f"mongodb://pulp:pa%3Ass@127.0.0.1:{port}/pulp_database?replicaSet=rs0"
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=3000)
        client.pulp_database.x.insert_one({"a": 1})
        assert client.admin.command("buildInfo")["version"].startswith("5.0.")
        local = client.admin.command("hello")["localTime"].replace(tzinfo=UTC)
        assert abs((local - datetime.datetime.now(UTC)).total_seconds() + 30) < 2
        client.close()
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


# -- injected command failures (mongod's failCommand fail point) --------------------------------


def test_fail_command_through_configure_fail_point_hits_the_next_times_commands(fake: FakeMongo) -> None:
    """The very command a test sends to a mongod with test commands enabled."""
    with client_for(fake, retryReads=False) as client:
        client.admin.command(
            "configureFailPoint", "failCommand", mode={"times": 2}, data={"failCommands": ["find"], "errorCode": 96}
        )
        for _ in range(2):
            with pytest.raises(OperationFailure) as failed:
                client.db.c.find_one({})
            assert failed.value.code == 96 and "failCommand" in str(failed.value)
        assert client.db.c.find_one({}) is None  # spent
        client.db.c.insert_one({"_id": 1})  # other commands were never hit
        client.admin.command(
            "configureFailPoint", "failCommand", mode={"skip": 1}, data={"failCommands": ["find"], "errorCode": 2}
        )
        assert client.db.c.find_one({}) == {"_id": 1}  # skipped
        with pytest.raises(OperationFailure):
            client.db.c.find_one({})
        client.admin.command("configureFailPoint", "failCommand", mode="off")
        assert client.db.c.find_one({}) == {"_id": 1}
        with pytest.raises(OperationFailure) as bad:
            client.admin.command("configureFailPoint", "failCommand", mode={"times": 1}, data={})
        assert bad.value.code == 2


@pytest.mark.slow  # real processes: seconds
def test_fail_command_by_app_name_and_close_connection(fake: FakeMongo) -> None:
    fake.fail_command("insert", close_connection=True, times=None, app_name="victim")
    with client_for(fake, appname="bystander", retryWrites=False) as bystander:
        bystander.db.c.insert_one({"_id": 1})
    with client_for(fake, appname="victim", retryWrites=False) as victim:
        for _ in range(2):  # alwaysOn until turned off
            with pytest.raises(pymongo.errors.AutoReconnect):
                victim.db.c.insert_one({"_id": 2})
        fake.fail_points.off()
        victim.db.c.insert_one({"_id": 2})
        assert victim.db.c.count_documents({}) == 2


def test_fail_command_blocks_the_reply(fake: FakeMongo) -> None:
    with client_for(fake) as client:
        client.admin.command(
            "configureFailPoint",
            "failCommand",
            mode={"times": 1},
            data={"failCommands": ["ping"], "blockConnection": True, "blockTimeMS": 300},
        )
        started = time.monotonic()
        client.admin.command("ping")
        assert time.monotonic() - started >= 0.3
