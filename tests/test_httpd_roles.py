"""The ``api`` and ``crane`` roles end to end: real pulpinit processes, a stand-in httpd exec'd as root.

The stand-in (:func:`pulpinit.testing.standins.write_httpd`) prints its argv, its uid/gid and which
key files it can open, so the tests see what httpd would get.  Keys come from ``pulpinit pki
init`` (private keys 0640 in the group of the user pulpinit checks them for), MongoDB and the broker
are the fakes (and SecantusDB for the admin password), and the migrations are recorded by a real
``pulpinit migrate`` with the pulp-manage-db stand-in first.
"""

from __future__ import annotations

import datetime
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymongo
import pytest
from helpers.workdirs import reachable

from pulpinit.api.admin import hash_password, verify_password
from pulpinit.crane.settings import PULP_DATA_DIR
from pulpinit.pki.check import KEY_FILES
from pulpinit.testing import standins
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.keys import keys_env

ADMIN_PASSWORD = "n3w-admin%pass word"
ROOT_ONLY = pytest.mark.root  # httpd is handed over as root: the test runs as root


def pulp_user() -> str:
    """The user pulpinit checks keys and server.conf for (``nobody`` as root, else ourselves)."""
    return "nobody" if os.geteuid() == 0 else str(os.getuid())


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeMongo, FakeAmqpBroker]]:
    with FakeMongo() as mongo, FakeAmqpBroker() as broker:
        yield mongo, broker


@dataclass
class Pod:
    """One pod's file system, in a directory every user may enter."""

    root: Path
    env: dict[str, str]

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def conf(self) -> Path:
        return self.root / "server.conf"

    def key(self, name: str) -> Path:
        return self.keys / name


def make_pod(root: Path, mongo_hostport: str, database: str, broker_url: str) -> Pod:
    bindir = root / "bin"
    bindir.mkdir()
    bindir.chmod(0o777)
    standins.write_httpd(bindir)
    standins.write_manage_db(bindir)
    standins.write_celery(bindir)
    group = ["--group", str(pwd.getpwnam("nobody").pw_gid)] if os.geteuid() == 0 else []
    subprocess.run(
        [sys.executable, "-m", "pulpinit", "pki", "init", str(root / "keys"), "--server-name", "pulp.test", *group],
        check=True,
        capture_output=True,
    )
    (root / "admin-password").write_text(ADMIN_PASSWORD + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULP", "CRANE", "STANDIN", "DB_", "MSG_"))}
    env.update(
        {
            "PULPINIT_CONFIG": str(root / "server.conf"),
            "PULPINIT_LOG_FORMAT": "json",
            "PULPINIT_USER": pulp_user(),
            "PULPINIT_HTTPD": str(bindir / "httpd"),
            "PULPINIT_CELERY": str(bindir / "celery"),
            "PULPINIT_MANAGE_DB": str(bindir / "pulp-manage-db"),
            "PULPINIT_MIGRATION_FINGERPRINT": f"httpd-roles-{root.name}",
            "PULPINIT_STATIC_DIR": str(root / "static"),
            "PULPINIT_WAIT_TIMEOUT": "30",
            **keys_env(root / "keys"),
            "PULP_ADMIN_PASSWORD_FILE": str(root / "admin-password"),
            "PULP_DB_SEEDS": mongo_hostport,
            "PULP_DB_NAME": database,
            "PULP_BROKER_URL": broker_url,
            "PULP_SERVER_NAME": "pulp.test",
            "STANDIN_HTTPD_FILES": os.pathsep.join(str(root / "keys" / name) for name in sorted(KEY_FILES)),
            "STANDIN_SECONDS": "0.1",
        }
    )
    shutil.copy(Path(standins.__file__).parent / "sample-server.conf", root / "server.conf")
    return Pod(root, env)


@pytest.fixture
def pod(fakes: tuple[FakeMongo, FakeAmqpBroker]) -> Iterator[Pod]:
    mongo, broker = fakes
    with reachable("httpd-roles", sample=False) as root:
        yield make_pod(root, mongo.hostport, f"pulp_{uuid.uuid4().hex[:12]}", broker.url())


class Run:
    """A pulpinit process whose stdout and stderr lines are collected by threads."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._pumps = [
            threading.Thread(target=self._pump, args=(stream, into), daemon=True)
            for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for pump in self._pumps:
            pump.start()

    @staticmethod
    def _pump(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.out):
                if line.startswith(text):
                    return line[len(text) :]
            if self.proc.poll() is not None:
                time.sleep(0.1)
                if not any(line.startswith(text) for line in self.out):
                    break
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not seen (exit {self.proc.poll()}); stderr: {self.err[-8:]}")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.err if line.startswith("{")]

    def stop(self, signum: int = signal.SIGWINCH) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=30)
        for pump in self._pumps:  # the rest of its output: the last lines come after the exit
            pump.join(10)
        return code


def pulpinit(*argv: str) -> list[str]:
    return [sys.executable, "-m", "pulpinit", *argv]


def finished(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def migrate(pod: Pod) -> None:
    done = finished(pulpinit("migrate"), pod.env)
    assert done.returncode == 0, done.stderr[-2000:]


def users(pod: Pod) -> Any:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        pod.env["PULP_DB_SEEDS"], directConnection=True, serverSelectionTimeoutMS=5000
    )
    return client[pod.env["PULP_DB_NAME"]]["users"]


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


# ------------------------------------------------------------------------------------------------
# api
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.root
@ROOT_ONLY
def test_api_execs_httpd_as_root_after_the_whole_pipeline(pod: Pod):
    migrate(pod)  # the first migration would create admin with default_password; the stand-in does not
    users(pod).insert_one({"login": "admin", "password": hash_password("admin"), "roles": ["super-users"]})
    run = Run(pulpinit("api"), pod.env)
    argv = json.loads(run.wait_for("httpd argv: "))
    assert argv == [pod.env["PULPINIT_HTTPD"], "-DFOREGROUND"]
    ids = run.wait_for("httpd uid=")
    assert ids.startswith("0 gid=0 ") and f"pid={run.proc.pid}" in ids  # exec'd as root: same PID
    readable = json.loads(run.wait_for("httpd can read: "))
    assert readable == {str(pod.key(name)): True for name in KEY_FILES}
    environ = json.loads(run.wait_for("httpd environ: "))
    assert "PULP_ADMIN_PASSWORD_FILE" not in environ  # consumed: it is in server.conf now
    assert run.stop(signal.SIGWINCH) == 0
    assert "httpd: SIGWINCH received: stopping" in run.out
    events = run.events()
    order = [f"{e['event']}:{e['stage']}" if e["event"] == "stage.start" else e["event"] for e in events]
    for before, after in [
        ("keys.checked", "stage.start:configure"),
        ("migration.ready", "admin.password_set"),
        ("admin.password_set", "keys.published"),
        ("keys.published", "handoff.exec"),
    ]:
        assert before in order and after in order and order.index(before) < order.index(after), (before, after)
    checked = next(e for e in events if e["event"] == "keys.checked")
    assert checked["role"] == "api" and len(checked["files"]) == len(KEY_FILES)
    keep = next(e for e in events if e["event"] == "privileges.keep")
    assert keep["uid"] == 0
    assert "privileges.drop" not in order
    # The admin password is Pulp's hash of the configured one; it never reached a log line.
    stored = users(pod).find_one({"login": "admin"})
    assert stored is not None and verify_password(stored["password"], ADMIN_PASSWORD)
    assert ADMIN_PASSWORD not in "\n".join(run.err + run.out)
    # server.conf holds it for the first migration, private; rsa_pub.key is published as a link.
    assert f"default_password: {ADMIN_PASSWORD.replace('%', '%%')}" in pod.conf.read_text()
    assert os.stat(pod.conf).st_mode & 0o007 == 0
    link = pod.root / "static" / "rsa_pub.key"
    assert os.readlink(link) == str(pod.key("rsa_pub.key"))


@pytest.mark.slow
@pytest.mark.root
@ROOT_ONLY
def test_api_second_start_leaves_a_matching_password_alone(pod: Pod):
    migrate(pod)
    users(pod).insert_one({"login": "admin", "password": hash_password(ADMIN_PASSWORD)})
    before = users(pod).find_one({"login": "admin"})
    run = Run(pulpinit("api"), pod.env)
    run.wait_for("httpd uid=")
    assert run.stop() == 0
    assert not {"admin.password_set", "admin.default_password"} & set(names(run.events()))
    assert users(pod).find_one({"login": "admin"}) == before


@pytest.mark.slow
@pytest.mark.root
@ROOT_ONLY
def test_api_without_a_configured_password_warns_while_it_is_admin(pod: Pod):
    migrate(pod)
    users(pod).insert_one({"login": "admin", "password": hash_password("admin")})
    env = {k: v for k, v in pod.env.items() if k != "PULP_ADMIN_PASSWORD_FILE"}
    run = Run(pulpinit("api"), env)
    run.wait_for("httpd uid=")
    assert run.stop() == 0
    warning = next(e for e in run.events() if e["event"] == "admin.default_password")
    assert warning["level"] == "warning"


@pytest.mark.slow
@pytest.mark.root
@ROOT_ONLY
def test_api_rotates_the_admin_password_on_secantusdb(secantus: Any):
    with FakeAmqpBroker() as broker, reachable("httpd-secantus", sample=False) as root:
        pod = make_pod(root, secantus.hostport, f"pulp_{uuid.uuid4().hex[:12]}", broker.url())
        migrate(pod)
        users(pod).insert_one({"login": "admin", "password": hash_password("admin")})
        run = Run(pulpinit("api"), pod.env)
        run.wait_for("httpd uid=0")
        assert run.stop() == 0
        assert "admin.password_set" in names(run.events())
        stored = users(pod).find_one({"login": "admin"})
        assert stored is not None and verify_password(stored["password"], ADMIN_PASSWORD)


@pytest.mark.slow
@pytest.mark.root
@ROOT_ONLY
def test_api_under_init_keeps_httpd_root_below_the_supervisor(pod: Pod):
    migrate(pod)
    run = Run(pulpinit("api", "--init"), pod.env)
    ids = run.wait_for("httpd uid=")
    assert ids.startswith("0 gid=0 ") and f"pid={run.proc.pid}" not in ids  # a child of the supervisor
    assert run.stop(signal.SIGWINCH) == 0  # forwarded to httpd, whose graceful stop ends it
    assert "httpd: SIGWINCH received: stopping" in run.out


# ------------------------------------------------------------------------------------------------
# The key check: 78 naming the file, before server.conf is touched or anything is waited for
# ------------------------------------------------------------------------------------------------


def damage(pod: Pod, how: str) -> str:
    """Break one key file the api role reads; returns the path the error must name."""
    if how == "missing":  # a Secret without the item: the image's link dangles
        target = pod.key("rsa.key")
        target.rename(pod.root / "elsewhere.key")
        link = pod.root / "rsa.key"
        link.symlink_to(target)
        pod.env["PULP_CONF__AUTHENTICATION__RSA_KEY"] = str(link)
        return str(link)
    if how == "mismatch":  # keys of two deployments mixed up
        other = pod.root / "other"
        subprocess.run([sys.executable, "-m", "pulpinit", "pki", "init", str(other)], check=True, capture_output=True)
        shutil.copy(other / "server.key", pod.key("server.key"))
        return str(pod.key("server.key"))
    if how == "mode":
        pod.key("ca.key").chmod(0o644)
        return str(pod.key("ca.key"))
    if how == "directory":
        pod.key("rsa_pub.key").unlink()
        pod.key("rsa_pub.key").mkdir()
        return str(pod.key("rsa_pub.key"))
    if how == "expired":
        expired_server_pair(pod.key("server.key"), pod.key("server.crt"))
        return str(pod.key("server.crt"))
    raise AssertionError(how)


def expired_server_pair(key_path: Path, cert_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pulp.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    mode = key_path.stat().st_mode & 0o777
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(mode)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def refused_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("how", ["missing", "mismatch", "mode", "directory", "expired"])
@pytest.mark.slow  # real processes: seconds
def test_a_bad_key_is_78_naming_the_file_before_any_wait(pod: Pod, how: str):
    path = damage(pod, how)
    pod.env["PULP_DB_SEEDS"] = refused_port()  # a wait would take PULPINIT_WAIT_TIMEOUT (30 s)
    before = pod.conf.read_bytes()
    started = time.monotonic()
    done = finished(pulpinit("api"), pod.env)
    assert done.returncode == 78, done.stderr[-2000:]
    assert time.monotonic() - started < 10
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    [error] = [e for e in events if e["event"] == "pulpinit.error"]
    assert error["error"].startswith(f"{path}:"), error
    assert not {"dep.down", "stage.end"} & {e["event"] for e in events if e.get("stage") != "settings"}
    assert "dep.down" not in names(events)
    assert pod.conf.read_bytes() == before  # server.conf untouched


@pytest.mark.slow  # real processes: seconds
def test_a_certificate_near_its_end_is_a_warning_and_the_role_goes_on(pod: Pod):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    ca_key = serialization.load_pem_private_key(pod.key("ca.key").read_bytes(), password=None)
    server_key = serialization.load_pem_private_key(pod.key("server.key").read_bytes(), password=None)
    ca = x509.load_pem_x509_certificate(pod.key("ca.crt").read_bytes())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.load_pem_x509_certificate(pod.key("server.crt").read_bytes()).subject)
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=800))
        .not_valid_after(now + datetime.timedelta(days=10))
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    pod.key("server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    done = finished(pulpinit("api", "--dry-run"), pod.env)
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    [warning] = [e for e in events if e["event"] == "keys.expiring"]
    assert warning["path"] == str(pod.key("server.crt")) and "in 9 days" in warning["problem"]


# ------------------------------------------------------------------------------------------------
# crane
# ------------------------------------------------------------------------------------------------


def crane_env(pod: Pod) -> dict[str, str]:
    env = {k: v for k, v in pod.env.items() if not k.startswith(("PULP_", "DB_", "MSG_"))}
    env.update(
        {
            "CRANE_CONFIG_PATH": str(pod.root / "crane.conf"),
            "CRANE_ENDPOINT": "crane.pulp.test",
            "PULPINIT_CONFIG": str(pod.root / "no-server.conf"),  # crane reads no server.conf
            "PULP_DB_SEEDS": refused_port(),  # and waits for nothing
            "STANDIN_HTTPD_FILES": os.pathsep.join(str(pod.key(n)) for n in ("server.crt", "server.key")),
        }
    )
    return env


@pytest.mark.slow
@pytest.mark.root
@ROOT_ONLY
def test_crane_writes_crane_conf_and_execs_httpd_as_root_without_waiting(pod: Pod):
    env = crane_env(pod)
    started = time.monotonic()
    run = Run(pulpinit("crane"), env)
    assert json.loads(run.wait_for("httpd argv: ")) == [env["PULPINIT_HTTPD"], "-DFOREGROUND"]
    ids = run.wait_for("httpd uid=")
    assert ids.startswith("0 gid=0 ") and f"pid={run.proc.pid}" in ids
    assert json.loads(run.wait_for("httpd can read: ")) == {
        env["PULPINIT_HTTPD_CERT"]: True,
        env["PULPINIT_HTTPD_KEY"]: True,
    }
    assert time.monotonic() - started < 10  # no dependency wait
    assert run.stop() == 0
    events = run.events()
    assert not [e for e in events if e["event"].startswith(("dep.", "migration."))]
    [warning] = [e for e in events if e["event"] == "crane.data_dir"]
    assert warning["path"] == PULP_DATA_DIR and "does not exist yet" in warning["problem"]
    assert "keys.checked" in names(events) and "privileges.keep" in names(events)
    text = (pod.root / "crane.conf").read_text()
    assert text == f"[general]\ndata_dir: {PULP_DATA_DIR}\nendpoint: crane.pulp.test\n"
    assert not (pod.root / "no-server.conf").exists()


@pytest.mark.slow
@pytest.mark.root
@ROOT_ONLY
def test_crane_hands_httpd_none_of_pulps_secrets(pod: Pod):
    """httpd runs as root: the one child-environment policy removes Pulp's secrets too, not only crane's."""
    env = {
        **crane_env(pod),
        "PULP_DB_PASSWORD": "SEKdbRET",
        "PULP_BROKER_URL": "qpid://pulp:SEKbrokerRET@msg:5672/",
        "PULPINIT_CELERY_ARGS": "--broker=amqp://x:SEKargsRET@h//",
    }
    run = Run(pulpinit("crane"), env)
    environ = set(json.loads(run.wait_for("httpd environ: ")))
    assert run.stop() == 0
    secret = {"PULP_DB_PASSWORD", "PULP_BROKER_URL", "PULP_ADMIN_PASSWORD_FILE", "PULPINIT_CELERY_ARGS"}
    assert not environ & secret, environ & secret
    assert {"PULP_DB_SEEDS", "PULPINIT_HTTPD"} <= environ  # no secrets: passed on
    assert not [line for line in run.out + run.err if "SEK" in line]


@pytest.mark.slow
@pytest.mark.root
@ROOT_ONLY
def test_crane_with_a_readable_data_dir_does_not_warn(pod: Pod):
    env = crane_env(pod)
    app = pod.root / "published" / "docker" / "v2" / "app"
    app.mkdir(parents=True)
    env["CRANE_DATA_DIR"] = str(app)
    run = Run(pulpinit("crane"), env)
    run.wait_for("httpd uid=")
    assert run.stop() == 0
    assert "crane.data_dir" not in names(run.events())


def test_crane_without_its_certificate_is_78_naming_it(pod: Pod):
    env = crane_env(pod)
    pod.key("server.key").unlink()
    done = finished(pulpinit("crane"), env)
    assert done.returncode == 78
    assert f"{pod.key('server.key')}: does not exist" in done.stderr
    assert not (pod.root / "crane.conf").exists()


# ------------------------------------------------------------------------------------------------
# --dry-run: the plan, nothing changed, nothing contacted
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow  # real processes: seconds
def test_api_dry_run(pod: Pod, fakes: tuple[FakeMongo, FakeAmqpBroker]):
    mongo, _ = fakes
    before, conf = sum(mongo.commands.values()), pod.conf.read_bytes()
    done = finished(pulpinit("api", "--dry-run"), pod.env)
    assert done.returncode == 0, done.stderr[-2000:]
    plan = done.stdout
    assert "# pulpinit api --dry-run" in plan
    assert re.search(rf"^ok +keys +{len(KEY_FILES)} files of the api role$", plan, re.M)
    assert "default_password: ***" in plan and ADMIN_PASSWORD not in plan
    assert "admin password: check the admin user's stored hash" in plan
    assert "## hand-off\nexec as root (httpd drops its own children" in plan
    assert f"{pod.env['PULPINIT_HTTPD']} -DFOREGROUND" in plan
    assert sum(mongo.commands.values()) == before and pod.conf.read_bytes() == conf
    assert not (pod.root / "static").exists()


@pytest.mark.slow  # real processes: seconds
def test_crane_dry_run(pod: Pod):
    env = crane_env(pod)
    done = finished(pulpinit("crane", "--dry-run"), env)
    assert done.returncode == 0, done.stderr[-2000:]
    plan = done.stdout
    assert "# pulpinit crane --dry-run" in plan
    assert f"+data_dir: {PULP_DATA_DIR}" in plan and "+endpoint: crane.pulp.test" in plan
    assert re.search(r"^ok +keys +2 files of the crane role$", plan, re.M)
    assert re.search(rf"^warning +data_dir +{PULP_DATA_DIR}: does not exist yet", plan, re.M)
    assert "## wait\nnothing: crane reads no database and no broker" in plan
    assert "exec as root (httpd drops its own children to User apache), umask 0022:\n" in plan
    assert plan.rstrip().endswith(f"\n{env['PULPINIT_HTTPD']} -DFOREGROUND")
    assert not (pod.root / "crane.conf").exists()


@pytest.mark.slow  # real processes: seconds
def test_a_bad_key_in_the_dry_run_is_reported_with_the_exit_code_a_run_would_have(pod: Pod):
    path = damage(pod, "mode")
    done = finished(pulpinit("api", "--dry-run"), pod.env)
    assert done.returncode == 78  # the plan is printed, and the exit code is the run's
    assert re.search(rf"^problem +keys +{path}: mode 0644", done.stdout, re.M)
    assert "a run would stop in the settings stage with exit 78" in done.stdout
