"""The MongoDB probe and client factory, against the fake and against misbehaving sockets."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.dns import resolver
from helpers.pki import Pki
from hypothesis import given
from hypothesis import strategies as st

from pulpinit.targets import Failure, MongoTarget, ProbeResult
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.faults import TLS_ALERT, AnswerServer, BlackHole, ResetServer, SilentServer
from pulpinit.testing.plugin import FakeServices
from pulpinit.wait.mongo_client import client_options, connect
from pulpinit.wait.mongo_probe import probe_mongodb, scrubbed

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "Pa55-w0rd:with@odd/chars"
USERS = {("pulp_database", "pulp"): PASSWORD}


def target_for(fake: FakeMongo | tuple[str, int], **kwargs: object) -> MongoTarget:
    address = fake.address if isinstance(fake, FakeMongo) else fake
    return MongoTarget(seeds=(address,), **kwargs)  # type: ignore[arg-type]


def assert_no_secret(result: ProbeResult) -> None:
    for text in (repr(result), str(result.as_json()), result.endpoint, result.error or ""):
        assert PASSWORD not in text


@pytest.fixture
def fake(fakes: FakeServices) -> FakeMongo:
    return fakes.mongo(users=USERS)


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """Accepts connections and never says a word."""
    with SilentServer() as server:
        yield ("127.0.0.1", server.port)


@pytest.fixture
def resetting_server() -> Iterator[tuple[str, int]]:
    """Accepts every connection and resets it at once."""
    with ResetServer(read_bytes=0) as server:
        yield ("127.0.0.1", server.port)


def test_tls_up_with_client_certificate_in_separate_files(pki: Pki) -> None:
    with FakeMongo(tls_certfile=str(pki.qpid), tls_client_ca=str(pki.ca), users=USERS) as fake:
        target = target_for(
            fake,
            ssl=True,
            ca_path=str(pki.ca),
            ssl_certfile=str(pki.client_cert),
            ssl_keyfile=str(pki.client_key),
            username="pulp",
            password=PASSWORD,
        )
        result = probe_mongodb(target)
        assert result.ok, result
        no_client_cert = probe_mongodb(target_for(fake, ssl=True, ca_path=str(pki.ca)))
        _check(no_client_cert, Failure.TLS)
        assert "client certificate" in (no_client_cert.error or "")


@pytest.mark.parametrize(
    ("cert", "host", "failure", "words"),
    [
        # Pulp's pymongo on Python 2 never matches an IP subjectAltName (tests/test_oracle.py: s3-tls-ip)
        ("ip", "127.0.0.1", Failure.TLS, "does not name 127.0.0.1"),
        ("qpid", "127.0.0.1", None, ""),  # the IP as a DNS subjectAltName: text, as Python 2 compares it
        ("dns", "localhost", None, ""),  # /etc/hosts: no DNS query leaves the machine
        ("dns", "127.0.0.1", Failure.TLS, "does not name 127.0.0.1"),
        ("wrong", "127.0.0.1", Failure.TLS, "does not name 127.0.0.1"),
        ("foreign", "127.0.0.1", Failure.TLS, "unable to get local issuer certificate"),
        ("expired", "127.0.0.1", Failure.TLS, "certificate has expired"),
    ],
)
def test_tls_server_certificates(pki: Pki, cert: str, host: str, failure: Failure | None, words: str) -> None:
    with FakeMongo(tls_certfile=str(getattr(pki, cert))) as fake:
        result = probe_mongodb(target_for((host, fake.port), ssl=True, ca_path=str(pki.ca)))
        if failure is None:
            assert result.ok, result
        else:
            _check(result, failure)
            assert words in (result.error or "")
            assert probe_mongodb(target_for((host, fake.port), ssl=True, ca_path=str(pki.ca), verify_ssl=False)).ok


def test_the_host_name_check_holds_when_pymongo_answers_first(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the preflight checks the host name as Pulp's pymongo on Python 2 does: however late it
    answers, pymongo's success does not make the probe "up" before it."""
    from pulpinit.wait import mongo_wire

    preflight = mongo_wire.preflight

    def late(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)  # pymongo's whole probe of the fake takes well under that
        return preflight(*args, **kwargs)

    monkeypatch.setattr(mongo_wire, "preflight", late)
    with FakeMongo(tls_certfile=str(pki.ip)) as fake:
        result = probe_mongodb(target_for(("127.0.0.1", fake.port), ssl=True, ca_path=str(pki.ca)), timeout_s=3)
    _check(result, Failure.TLS, timeout_s=3)
    assert "does not name 127.0.0.1" in (result.error or "")


def test_plain_client_at_a_tls_port(pki: Pki) -> None:
    with FakeMongo(tls_certfile=str(pki.ip)) as fake:
        result = probe_mongodb(target_for(fake))
    _check(result, Failure.TLS_MISMATCH)
    assert "speaks TLS" in (result.error or "") and "database.ssl: true" in (result.error or "")


def test_tls_client_at_a_plain_port(fake: FakeMongo, pki: Pki) -> None:
    result = probe_mongodb(target_for(fake, ssl=True, ca_path=str(pki.ca)), timeout_s=20)
    _check(result, Failure.TLS_MISMATCH, timeout_s=20)
    assert "does not speak TLS" in (result.error or "") and result.latency_ms < 10_000  # not the 20 s timeout


@pytest.mark.parametrize(
    ("answer", "failure", "words"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", Failure.PROTOCOL, "an HTTP response"),
        (b"AMQP\x00\x00\x09\x01", Failure.PROTOCOL, "the AMQP 0-9-1 protocol header"),
        (TLS_ALERT, Failure.TLS_MISMATCH, "a TLS alert"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", Failure.PROTOCOL, "an SSH greeting"),
    ],
)
def test_other_servers_on_the_mongodb_port(answer: bytes, failure: Failure, words: str) -> None:
    with AnswerServer(answer) as other:
        for ssl in (False, True):
            result = probe_mongodb(target_for(("127.0.0.1", other.port), ssl=ssl, verify_ssl=False))
            expected = Failure.PROTOCOL if ssl and failure is Failure.PROTOCOL else failure
            if ssl and failure is Failure.TLS_MISMATCH:
                continue  # a TLS alert to a TLS client is the TLS handshake's business
            _check(result, expected)
            assert words in (result.error or "")


def test_the_fake_amqp_broker_on_the_mongodb_port() -> None:
    with FakeAmqpBroker() as broker:
        result = probe_mongodb(target_for(("127.0.0.1", broker.port)))
    _check(result, Failure.PROTOCOL)
    assert "AMQP 0-10 protocol header" in (result.error or "")


def test_up_reports_version_and_runs_ping(fake: FakeMongo) -> None:
    result = probe_mongodb(target_for(fake, username="pulp", password=PASSWORD))
    assert result.ok, result
    assert result.version == "6.0.19" and result.failure is None and result.error is None
    assert result.name == "mongodb" and result.endpoint == f"mongodb://pulp:***@{fake.hostport}/pulp_database"
    assert fake.command_count("ping") == 1 and fake.command_count("buildInfo") == 1
    assert result.latency_ms > 0
    assert_no_secret(result)


def test_up_in_replica_set() -> None:
    with FakeMongo(replica_set="rs0", users={("pulp_database", "pulp"): PASSWORD}, wire_version=6) as fake:
        result = probe_mongodb(target_for(fake, username="pulp", password=PASSWORD, replica_set="rs0"))
        assert result.ok and result.version is not None and result.version.startswith("3.6.")


def test_latency_well_under_a_second(fake: FakeMongo) -> None:
    target = target_for(fake, username="pulp", password=PASSWORD)
    probe_mongodb(target)  # the first call in a process pays pymongo's import
    walls = []
    for _ in range(20):
        started = time.monotonic()
        result = probe_mongodb(target)
        walls.append((time.monotonic() - started) * 1000)
        assert result.ok
    print(f"probe wall time: median {statistics.median(walls):.1f} ms, max {max(walls):.1f} ms")
    assert statistics.median(walls) < 100
    assert max(walls) < 500


def test_fresh_process_answers_within_a_second(fake: FakeMongo) -> None:
    """As a Kubernetes exec probe would run it: interpreter start, pymongo import, probe."""
    code = (
        "import sys; from pulpinit.wait.mongo_probe import probe_mongodb; "
        "from pulpinit.targets import MongoTarget;"
        f"r = probe_mongodb(MongoTarget(seeds=(('127.0.0.1', {fake.port}),), username='pulp',"
        f" password={PASSWORD!r})); sys.stdout.flush();"
        # pymongo's atexit hook joins its monitor threads, which sleep in 0.5 s steps; a one-shot
        # command (check-deps) skips it with os._exit once its output is flushed
        " import os; os._exit(0 if r.ok else 1)"
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert time.monotonic() - started < 10  # no wait for the monitor threads (room for a loaded machine)


def in_fresh_python(code: str) -> str:
    """What ``code`` prints in a new interpreter (imports from this checkout)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout


def test_importing_the_probe_does_not_import_pymongo() -> None:
    code = "import sys, pulpinit.wait.mongo_probe, pulpinit.wait.mongo_client; print('pymongo' in sys.modules)"
    assert in_fresh_python(code).strip() == "False"


def test_pymongo_skips_at_once_a_pyopenssl_layer_it_could_not_load() -> None:
    """cryptography is a dependency (keys); pymongo's pyOpenSSL layer imports it and then fails
    without pyOpenSSL or service_identity: pulpinit spares every start that import."""
    code = (
        "import importlib.util, sys, pulpinit.wait.mongo_client, pymongo.ssl_support as s;"
        " usable = all(importlib.util.find_spec(n) for n in ('OpenSSL', 'service_identity'));"
        " print(usable, s.HAVE_SSL, s._ssl.__name__, 'cryptography.x509' in sys.modules)"
    )
    out = in_fresh_python(code).split()
    if out[0] == "True":  # pyOpenSSL can load: pymongo keeps it (and its OCSP support)
        assert out[1:] == ["True", "pymongo.pyopenssl_context", "True"]
    else:
        assert out[1:] == ["True", "pymongo.ssl_context", "False"]


def _check(result: ProbeResult, failure: Failure, timeout_s: float = 1.0) -> None:
    assert not result.ok and result.version is None
    assert result.failure is failure, result
    assert result.error and "\n" not in result.error and len(result.error) <= 300
    assert result.hint == failure.hint
    assert result.latency_ms < timeout_s * 1000 + 300
    assert_no_secret(result)


def test_connection_refused(free_port: int) -> None:
    result = probe_mongodb(target_for(("127.0.0.1", free_port), username="pulp", password=PASSWORD), timeout_s=20)
    _check(result, Failure.REFUSED, timeout_s=20)
    assert result.latency_ms < 10_000  # decided by the first heartbeat, not the 20 s selection timeout


def test_dns_failure() -> None:
    result = probe_mongodb(target_for(("no-such-host.test", 27017)), resolver=resolver())
    _check(result, Failure.DNS)
    assert "no-such-host.test" in (result.error or "")


def test_no_tcp_connection_in_time_is_a_network_timeout() -> None:
    with BlackHole() as hole:
        result = probe_mongodb(target_for(("127.0.0.1", hole.port)), timeout_s=0.3)
    _check(result, Failure.TIMEOUT, timeout_s=0.3)
    assert "connecting to 127.0.0.1" in (result.error or "") and "NetworkPolicies" in (result.hint or "")


def test_a_silent_server_is_a_stalled_handshake(silent_server: tuple[str, int]) -> None:
    result = probe_mongodb(target_for(silent_server), timeout_s=0.3)
    _check(result, Failure.STALLED, timeout_s=0.3)
    assert result.latency_ms >= 250 and "answer to a hello" in (result.error or "")


def test_reset_during_handshake(resetting_server: tuple[str, int]) -> None:
    _check(probe_mongodb(target_for(resetting_server)), Failure.RESET)


def test_unreadable_tls_files(tmp_path: Path, free_port: int) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate")
    for files, named in (
        ({"ca_path": str(tmp_path / "missing-ca.pem")}, "cannot read database.ca_path"),
        (
            {"ssl_certfile": str(cert), "ssl_keyfile": str(tmp_path / "missing-key.pem")},
            "cannot read database.ssl_keyfile",
        ),
        ({"ssl_certfile": str(cert)}, "cannot load the client certificate from database.ssl_certfile"),
    ):
        result = probe_mongodb(target_for(("127.0.0.1", free_port), ssl=True, **files))
        _check(result, Failure.TLS)
        assert result.error and result.error.startswith(named), result.error


def test_wrong_password(fake: FakeMongo) -> None:
    result = probe_mongodb(target_for(fake, username="pulp", password=PASSWORD + "-wrong"))
    _check(result, Failure.AUTH)
    assert "'pulp'" in (result.error or "") and "-wrong" not in (result.error or "")


def test_no_credentials_against_a_server_that_requires_them(fake: FakeMongo) -> None:
    """ping works without a login; the probe still says that Pulp could not use the database."""
    result = probe_mongodb(target_for(fake))
    _check(result, Failure.AUTH)
    assert "no credentials are configured" in (result.error or "")
    assert fake.command_count("listCollections") >= 1


def test_a_user_of_another_database_cannot_log_in() -> None:
    """Pulp logs in against its own database: a user created in ``admin`` is refused there."""
    with FakeMongo(users={("admin", "root"): PASSWORD}) as fake:
        result = probe_mongodb(target_for(fake, username="root", password=PASSWORD))
        _check(result, Failure.AUTH)
        assert "'pulp_database'" in (result.error or "")


@pytest.mark.parametrize(("wire", "minimum"), [(5, 0), (2, 0), (30, 26)])
def test_unsupported_wire_version(wire: int, minimum: int) -> None:
    with FakeMongo(wire_version=wire, min_wire_version=minimum) as fake:
        result = probe_mongodb(target_for(fake))
        _check(result, Failure.VERSION)
        assert "wire version" in (result.error or "")


def test_replica_set_name_mismatch() -> None:
    with FakeMongo(replica_set="rs-real") as fake:
        result = probe_mongodb(target_for(fake, replica_set="rs-configured"), timeout_s=20)
        _check(result, Failure.REPLICA_SET, timeout_s=20)
        assert "'rs-real'" in (result.error or "") and result.latency_ms < 10_000  # not the 20 s timeout


def test_replica_set_configured_but_server_standalone(fake: FakeMongo) -> None:
    result = probe_mongodb(target_for(fake, replica_set="rs0"))
    _check(result, Failure.REPLICA_SET)
    assert "not a replica-set member" in (result.error or "")


def test_slow_server_times_out_within_budget(fake: FakeMongo) -> None:
    fake.reply_delay_s = 0.5
    _check(probe_mongodb(target_for(fake), timeout_s=0.3), Failure.STALLED, timeout_s=0.3)


def test_one_seed_down_another_up(free_port: int) -> None:
    with FakeMongo(replica_set="rs0") as fake:
        target = MongoTarget(seeds=(("127.0.0.1", free_port), fake.address), replica_set="rs0")
        assert probe_mongodb(target).ok


def test_several_seeds_all_down(free_port: int) -> None:
    target = MongoTarget(seeds=(("127.0.0.1", free_port), ("no-such-host.test", 27017)))
    result = probe_mongodb(target, timeout_s=20, resolver=resolver())
    assert result.failure in (Failure.REFUSED, Failure.DNS) and result.latency_ms < 10_000  # not the 20 s timeout


@given(password=st.text(min_size=3, max_size=40).filter(lambda p: p.strip() and "*" not in p))
def test_error_text_never_holds_the_password(password: str) -> None:
    target = MongoTarget(seeds=(("h", 1),), username="u", password=password)
    text = scrubbed(f"auth failed at mongodb://u:{password}@h:1/db for {password}\nnext line", target)
    assert password not in text and "\n" not in text


# -- client options ----------------------------------------------------------------------------------


def test_client_options_plain() -> None:
    options = client_options(MongoTarget(seeds=(("db", 27017),)), 1.5)
    assert options == {
        "host": ["db:27017"],
        "appname": "pulpinit",
        "serverSelectionTimeoutMS": 1500,
        "connectTimeoutMS": 1500,
        "socketTimeoutMS": 1500,
        "directConnection": True,
    }


def test_client_options_replica_set_auth_and_tls(tmp_path: Path) -> None:
    target = MongoTarget(
        seeds=(("a", 1), ("::1", 2)),
        username="pulp",
        password="pw",
        replica_set="rs0",
        ssl=True,
        ca_path="/ca.pem",
        ssl_certfile="/both.pem",
        ssl_keyfile="/both.pem",
        verify_ssl=False,
    )
    options = client_options(target, 1)
    assert options["host"] == ["a:1", "[::1]:2"] and options["replicaSet"] == "rs0"
    assert "directConnection" not in options
    assert (options["username"], options["password"], options["authSource"]) == ("pulp", "pw", "pulp_database")
    assert options["tls"] and options["tlsCAFile"] == "/ca.pem"
    assert options["tlsCertificateKeyFile"] == "/both.pem"
    assert options["tlsAllowInvalidCertificates"] and options["tlsAllowInvalidHostnames"]
    several = client_options(MongoTarget(seeds=(("a", 1), ("b", 2)), database="pulp2", username="x"), 1)
    assert "directConnection" not in several and several["authSource"] == "pulp2"


def test_separate_key_file_is_combined_in_memory(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n")
    target = MongoTarget(seeds=(("a", 1),), ssl=True, ssl_certfile=str(cert), ssl_keyfile=str(key))
    path = client_options(target, 1)["tlsCertificateKeyFile"]
    assert path not in (str(cert), str(key))
    combined = Path(path).read_text()
    assert combined.index("CERTIFICATE") < combined.index("PRIVATE KEY")
    assert client_options(target, 1)["tlsCertificateKeyFile"] == path  # cached
    assert not str(path).startswith(str(tmp_path))


WITHOUT_MEMFD = """
import os, stat, sys
del os.memfd_create  # a kernel without memfd_create: the private temporary file instead
from pulpinit.wait.mongo_client import combined_pem
path = combined_pem(sys.argv[1], sys.argv[2])
modes = [stat.S_IMODE(os.stat(p).st_mode) for p in (os.path.dirname(path), path)]
print(path, *(oct(mode) for mode in modes), open(path).read().count("BEGIN"))
"""


def test_without_memfd_the_combined_file_is_private_and_removed_at_exit(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n")
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_MEMFD, str(cert), str(key)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    path, directory_mode, file_mode, pems = done.stdout.split()
    assert (directory_mode, file_mode, pems) == ("0o700", "0o600", "2")
    assert not Path(path).parent.exists()  # removed when the process ended


def test_connect_builds_a_working_client(fake: FakeMongo) -> None:
    client = connect(target_for(fake, username="pulp", password=PASSWORD), 2.0)
    try:
        client.pulp_database.things.insert_one({"a": 1})
        assert client.pulp_database.things.count_documents({}) == 1
    finally:
        client.close()
