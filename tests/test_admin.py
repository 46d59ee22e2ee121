"""The admin user's password: Pulp's hash format, and the check/rotation over TCP against the fake MongoDB
and SecantusDB (an independently written MongoDB-wire server)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import pymongo
import pytest
from structlog.testing import capture_logs

from pulpinit import log as pulpinit_log
from pulpinit.api.admin import AdminPassword, admin_step, ensure_admin_password, hash_password, verify_password
from pulpinit.errors import DependencyUnavailable, ExitCode, NotAuthorized
from pulpinit.redact import REDACTOR
from pulpinit.targets import MongoTarget
from pulpinit.testing.fakemongo import FakeMongo


def independent(password: bytes, salt: bytes) -> str:
    """Pulp 2's rule, written out here with hmac/hashlib and Python 2's base64 codec behaviour."""
    result = password
    for _ in range(5000):
        result = hmac.new(result, salt, hashlib.sha256).digest()
    # Python 2's str.encode("base64") is base64.encodebytes (a trailing newline), then .strip().
    return base64.encodebytes(salt).decode().strip() + "," + base64.encodebytes(result).decode().strip()


@pytest.mark.parametrize(
    ("password", "salt"),
    [
        ("admin", b"\x00\x01\x02\x03\x04\x05\x06\x07"),
        ("", b"saltsalt"),
        ("p%ss w0rd,with=odd#chars", b"\xff" * 8),
        ("x" * 100, b"\x10\x20\x30\x40\x50\x60\x70\x80"),  # longer than SHA-256's block: HMAC hashes the key
        ("pässwörd", b"\x01" * 8),  # UTF-8 bytes, as Pulp's str() of the config value
    ],
)
def test_hash_matches_the_independent_computation(password: str, salt: bytes):
    expected = independent(password.encode("utf-8"), salt)
    assert hash_password(password, salt=salt) == expected
    assert verify_password(expected, password)
    assert not verify_password(expected, password + "x")


def test_random_salt_is_eight_bytes_and_differs():
    first, second = hash_password("secret"), hash_password("secret")
    assert first != second
    for stored in (first, second):
        salt, digest = (base64.b64decode(part) for part in stored.split(","))
        assert len(salt) == 8 and len(digest) == 32
        assert verify_password(stored, "secret")


@pytest.mark.parametrize("stored", ["", "no-comma", "!!!,???", "a,b,c", "AAAA"])
def test_malformed_stored_values_never_verify(stored: str):
    assert not verify_password(stored, "admin")


def test_python2_line_breaks_are_tolerated():
    stored = hash_password("secret", salt=b"12345678")
    salt, digest = stored.split(",")
    assert verify_password(f"{salt}\n,{digest[:20]}\n{digest[20:]}\n", "secret")


# ------------------------------------------------------------------------------------------------
# ensure_admin_password against the fake MongoDB, over TCP with pymongo
# ------------------------------------------------------------------------------------------------


@pytest.fixture(params=["fake", "secantus"])
def users(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Pulp's ``users`` collection on the fake MongoDB, or on SecantusDB (a database of its own per test)."""
    with contextlib.ExitStack() as stack:
        if request.param == "fake":
            hostport, database = request.getfixturevalue("fake_mongo").hostport, "pulp_database"
        else:
            hostport, database = request.getfixturevalue("secantus").hostport, f"pulp_{uuid.uuid4().hex[:12]}"
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            f"mongodb://{hostport}/?directConnection=true", serverSelectionTimeoutMS=5000
        )
        stack.callback(client.close)
        yield client[database]["users"]


def run(users: Any, password: str | None, login: str = "admin") -> tuple[AdminPassword, list[MutableMapping[str, Any]]]:
    pulpinit_log.configure("json", "debug")
    with capture_logs() as logs:
        outcome = ensure_admin_password(users, login, password, pulpinit_log.get_logger())
    return outcome, logs


def stored(users: Any, login: str = "admin") -> str:
    user = users.find_one({"login": login})
    assert user is not None
    password: str = user["password"]
    return password


def events(logs: list[MutableMapping[str, Any]]) -> list[tuple[str, str]]:
    return [(entry["log_level"], entry["event"]) for entry in logs]


def test_absent_user_is_reported(users: Any):
    outcome, logs = run(users, "s3cret")
    assert outcome is AdminPassword.ABSENT
    assert events(logs) == [("info", "admin.absent")]
    assert users.count_documents({}) == 0  # creating it is the first migration's job


def test_default_password_warns_at_every_start(users: Any):
    users.insert_one({"login": "admin", "password": hash_password("admin"), "roles": ["super-users"]})
    for _ in range(2):
        outcome, logs = run(users, None)
        assert outcome is AdminPassword.DEFAULT
        assert events(logs) == [("warning", "admin.default_password")]


def test_rotation_sets_the_configured_password_once(users: Any):
    users.insert_one({"login": "admin", "password": hash_password("admin"), "roles": ["super-users"], "name": "A"})
    outcome, logs = run(users, "n3w pass%word")
    assert outcome is AdminPassword.SET
    assert events(logs) == [("info", "admin.password_set")]
    assert verify_password(stored(users), "n3w pass%word") and not verify_password(stored(users), "admin")
    user = users.find_one({"login": "admin"})
    assert user["roles"] == ["super-users"] and user["name"] == "A"  # only the password changed
    before = stored(users)
    outcome, logs = run(users, "n3w pass%word")
    assert outcome is AdminPassword.OK and logs == []
    assert stored(users) == before  # verified, not rewritten

    outcome, logs = run(users, "another one")  # a later rotation
    assert outcome is AdminPassword.SET and verify_password(stored(users), "another one")


def test_no_password_configured_and_not_the_default(users: Any):
    users.insert_one({"login": "admin", "password": hash_password("chosen by hand")})
    outcome, logs = run(users, None)
    assert outcome is AdminPassword.OK and logs == []


def test_configuring_admin_itself_still_warns(users: Any):
    users.insert_one({"login": "admin", "password": hash_password("something")})
    outcome, logs = run(users, "admin")
    assert outcome is AdminPassword.DEFAULT
    assert events(logs) == [("info", "admin.password_set"), ("warning", "admin.default_password")]


def test_other_login_and_unreadable_hash(users: Any):
    users.insert_one({"login": "root-admin", "password": "not pulp's format"})
    outcome, logs = run(users, None, login="root-admin")
    assert outcome is AdminPassword.OK and events(logs) == [("warning", "admin.password_unreadable")]
    outcome, logs = run(users, "fixed", login="root-admin")
    assert outcome is AdminPassword.SET and verify_password(stored(users, "root-admin"), "fixed")


def test_the_password_never_appears_in_the_logs(users: Any, capsys: pytest.CaptureFixture[str]):
    secret = "Sup3r-s3cret-ünïcode"
    users.insert_one({"login": "admin", "password": hash_password("admin")})
    pulpinit_log.configure("json", "debug")
    ensure_admin_password(users, "admin", secret, pulpinit_log.get_logger())
    ensure_admin_password(users, "admin", secret, pulpinit_log.get_logger())
    err = capsys.readouterr().err
    assert "admin.password_set" in err
    for form in (secret, secret.encode().hex(), base64.b64encode(secret.encode()).decode(), stored(users)):
        assert form not in err


def test_a_password_that_is_admin_keeps_the_warning_line_whole(users: Any, capsys: pytest.CaptureFixture[str]):
    """``PULP_ADMIN_PASSWORD=admin`` once hid ``admin.default_password`` behind ``***.default_password``."""
    users.insert_one({"login": "admin", "password": hash_password("something")})
    REDACTOR.reset()
    REDACTOR.add("admin")  # what the settings stage registers for PULP_ADMIN_PASSWORD=admin
    try:
        pulpinit_log.configure("json", "debug")
        ensure_admin_password(users, "admin", "admin", pulpinit_log.get_logger())
    finally:
        REDACTOR.reset()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["level"], line["event"]) for line in lines] == [
        ("info", "admin.password_set"),
        ("warning", "admin.default_password"),
    ]
    assert not [value for line in lines for key, value in line.items() if "admin" in str(value) and key != "event"]


class RacingCollection:
    """The real collection; before its first update, another 'replica' stores the password first."""

    def __init__(self, collection: Any, password: str) -> None:
        self.collection = collection
        self.password = password
        self.updates = 0

    def find_one(self, query: Mapping[str, Any], /) -> Any:
        return self.collection.find_one(query)

    def update_one(self, query: Mapping[str, Any], update: Mapping[str, Any], /) -> Any:
        self.updates += 1
        if self.updates == 1:
            racer = threading.Thread(
                target=self.collection.update_one,
                args=({"login": "admin"}, {"$set": {"password": hash_password(self.password)}}),
            )
            racer.start()
            racer.join()
        return self.collection.update_one(query, update)


def test_concurrent_replicas_settle_on_one_hash(users: Any):
    users.insert_one({"login": "admin", "password": hash_password("admin")})
    racing = RacingCollection(users, "shared secret")
    outcome, logs = run(racing, "shared secret")
    assert racing.updates == 1  # its compare-and-set missed; it looked again and found the password set
    assert outcome is AdminPassword.OK and logs == []
    assert verify_password(stored(users), "shared secret")


# ------------------------------------------------------------------------------------------------
# admin_step: the API role's step, with the migrate stage's handling of MongoDB failures
# ------------------------------------------------------------------------------------------------


def step(target: MongoTarget, password: str | None, deadline_s: float = 5.0) -> AdminPassword:
    return admin_step(
        target,
        "admin",
        password,
        pulpinit_log.get_logger(),
        deadline=time.monotonic() + deadline_s,
        timeout=1.0,
        clock=time.monotonic,
        sleep=time.sleep,
    )


def test_admin_step_rotates_with_credentials_over_scram():
    users_db = {("pulp_database", "pulp"): "secret"}
    with FakeMongo(users=users_db) as fake:
        host, port = fake.hostport.rsplit(":", 1)
        target = MongoTarget(((host, int(port)),), username="pulp", password="secret")
        with pymongo.MongoClient(
            fake.hostport, directConnection=True, username="pulp", password="secret", authSource="pulp_database"
        ) as client:
            client["pulp_database"]["users"].insert_one({"login": "admin", "password": hash_password("admin")})
            assert step(target, "rotated") is AdminPassword.SET
            stored_now = client["pulp_database"]["users"].find_one({"login": "admin"})
        assert stored_now is not None and verify_password(stored_now["password"], "rotated")


def test_admin_step_with_a_read_only_user_is_78_naming_it():
    with FakeMongo(read_only_users={("pulp_database", "reader"): "secret"}) as fake:
        host, port = fake.hostport.rsplit(":", 1)
        fake.client["pulp_database"]["users"].insert_one({"login": "admin", "password": hash_password("admin")})
        target = MongoTarget(((host, int(port)),), username="reader", password="secret")
        with pytest.raises(NotAuthorized) as caught:
            step(target, "new one")
    assert caught.value.exit_code == ExitCode.CONFIG and "reader" in str(caught.value) and "users" in str(caught.value)
    assert "new one" not in str(caught.value)


@pytest.mark.slow  # real processes: seconds
def test_admin_step_when_mongodb_never_answers_is_69_at_the_deadline():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable) as caught:
            step(MongoTarget((("127.0.0.1", port),)), "x", deadline_s=1.5)
    assert caught.value.exit_code == ExitCode.UNAVAILABLE and "admin user" in str(caught.value)
    assert 1.4 <= time.monotonic() - started < 6
