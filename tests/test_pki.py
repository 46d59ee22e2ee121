"""Pulp's keys: ``pulpinit pki init`` (generation) and the start-up checks, on real files.

RSA keys cost time (4096 bits about a second), so the module makes a small pool once and hands
them to :func:`pulpinit.pki.generate.generate` through its ``new_key`` parameter; the real key
generation runs in the process tests of ``pulpinit pki init``.  Certificates for the expiry
cases are made here with ``cryptography``.  TLS is verified twice: Python's ``ssl`` handshakes
over loopback TCP (a DNS and an IP subjectAltName), and ``openssl verify``.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import itertools
import json
import os
import secrets
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pulpinit.api.publish import Published, publish_public_key
from pulpinit.cli import parse
from pulpinit.errors import ExitCode, KeyFileError
from pulpinit.pki.check import (
    KEY_FILES,
    ROLE_KEYS,
    STATIC_DIR,
    Reader,
    check_keys,
    current_identity,
    key_paths,
    readers_for,
    role_key_table,
)
from pulpinit.pki.command import _server_names
from pulpinit.pki.generate import CA_DAYS, SERVER_DAYS, generate, server_name_problem
from pulpinit.privileges import Identity, resolve_user

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["pulp.example.test", "127.0.0.1"]
NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
as_root = pytest.mark.root  # chown, other users


class KeyPool:
    """Pre-made RSA keys, handed out in turn (distinct until the pool wraps)."""

    def __init__(self) -> None:
        def make(bits: int) -> rsa.RSAPrivateKey:
            return rsa.generate_private_key(public_exponent=65537, key_size=bits)

        self._by_size = {
            4096: itertools.cycle([make(4096), make(4096)]),
            2048: itertools.cycle([make(2048) for _ in range(6)]),
        }
        self.calls: list[int] = []

    def __call__(self, bits: int) -> rsa.RSAPrivateKey:
        self.calls.append(bits)
        return next(self._by_size[bits])


@pytest.fixture(scope="module")
def pool() -> KeyPool:
    return KeyPool()


@pytest.fixture
def keydir(tmp_path: Path, pool: KeyPool) -> Path:
    directory = tmp_path / "keys"
    generate(directory, NAMES, now=NOW, new_key=pool)
    return directory


def paths(directory: Path) -> dict[str, str]:
    return {name: str(directory / name) for name in KEY_FILES}


def me() -> dict[Reader, Identity]:
    ident = current_identity()
    return {"pulp": ident, "root": ident}


def cert(directory: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((directory / name).read_bytes())


def key(directory: Path, name: str) -> rsa.RSAPrivateKey:
    loaded = serialization.load_pem_private_key((directory / name).read_bytes(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    return loaded


def make_cert(
    subject_key: rsa.RSAPrivateKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    issuer_key: rsa.RSAPrivateKey | None = None,
) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "made.in.test")])
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(issuer_key or subject_key, hashes.SHA256())
    )
    return built.public_bytes(serialization.Encoding.PEM)


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_ino) for p in sorted(directory.iterdir())}


# ------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow  # real processes: seconds
def test_generate_makes_what_pulps_scripts_make(keydir: Path, pool: KeyPool):
    assert sorted(p.name for p in keydir.iterdir()) == sorted(KEY_FILES)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in keydir.iterdir()}
    assert modes == {
        "ca.key": 0o600,
        "rsa.key": 0o600,
        "server.key": 0o600,
        "ca.crt": 0o644,
        "rsa_pub.key": 0o644,
        "server.crt": 0o644,
    }
    assert key(keydir, "ca.key").key_size == 4096
    assert key(keydir, "rsa.key").key_size == 2048
    # openssl genrsa's and openssl rsa -pubout's formats, which Pulp's M2Crypto reads.
    assert (keydir / "rsa.key").read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert (keydir / "rsa_pub.key").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    public = serialization.load_pem_public_key((keydir / "rsa_pub.key").read_bytes())
    assert public.public_numbers() == key(keydir, "rsa.key").public_key().public_numbers()  # type: ignore[union-attr]

    ca = cert(keydir, "ca.crt")
    assert ca.subject == ca.issuer
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "PULP"
    assert ca.signature_hash_algorithm is not None and ca.signature_hash_algorithm.name == "sha256"
    assert ca.not_valid_after_utc - NOW == datetime.timedelta(days=CA_DAYS)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ca.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    ca.verify_directly_issued_by(ca)


@pytest.mark.slow  # real processes: seconds
def test_server_certificate_is_signed_by_the_ca_for_every_name(keydir: Path):
    ca, server = cert(keydir, "ca.crt"), cert(keydir, "server.crt")
    assert server.subject != ca.subject  # else OpenSSL takes the leaf for self-signed
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["pulp.example.test"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert server.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pulp.example.test"
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ExtendedKeyUsageOID.SERVER_AUTH in server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    aki = server.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert server.not_valid_after_utc - NOW == datetime.timedelta(days=SERVER_DAYS)
    assert server.public_key().public_numbers() == key(keydir, "server.key").public_key().public_numbers()  # type: ignore[union-attr]


class TlsServer:
    """httpd's part: a TLS server on 127.0.0.1 with server.crt/server.key, one handshake per connection."""

    def __init__(self, directory: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(directory / "server.crt", directory / "server.key")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                conn.close()

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.fixture
def tls_server(keydir: Path) -> Iterator[TlsServer]:
    server = TlsServer(keydir)
    yield server
    server.close()


def handshake(server: TlsServer, cafile: Path, server_hostname: str) -> bytes:
    client = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        client.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        return tls.recv(2)


@pytest.mark.parametrize("name", NAMES, ids=["dns-san", "ip-san"])
@pytest.mark.slow  # real processes: seconds
def test_python_ssl_verifies_the_server_against_the_ca(keydir: Path, tls_server: TlsServer, name: str):
    assert handshake(tls_server, keydir / "ca.crt", name) == b"ok"


def test_python_ssl_rejects_a_name_the_certificate_does_not_carry(keydir: Path, tls_server: TlsServer):
    with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|doesn't match"):
        handshake(tls_server, keydir / "ca.crt", "other.example.test")


def test_python_ssl_rejects_another_ca(keydir: Path, tls_server: TlsServer, tmp_path: Path, pool: KeyPool):
    other = tmp_path / "other"
    generate(other, NAMES, now=NOW, new_key=pool)
    assert cert(other, "ca.crt").public_key().public_numbers() != cert(keydir, "ca.crt").public_key().public_numbers()  # type: ignore[union-attr]
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tls_server, other / "ca.crt", "pulp.example.test")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_verify_says_ok(keydir: Path):
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", str(keydir / "ca.crt"), str(keydir / "server.crt")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith(": OK"), done.stdout + done.stderr
    # The CA on its own verifies as a trusted root (and not because it is the leaf's twin).
    done = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", str(keydir / "ca.crt"), str(keydir / "server.crt")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_never_overwrites_a_complete_set(keydir: Path, pool: KeyPool):
    before = snapshot(keydir)
    pool.calls.clear()
    result = generate(keydir, ["another.example.test"], now=NOW, new_key=pool)
    assert result.created == () and result.kept == tuple(KEY_FILES)
    assert pool.calls == []  # not even a key was made
    assert snapshot(keydir) == before


def test_missing_server_certificate_is_renewed_for_the_same_key(keydir: Path, pool: KeyPool):
    old_key = (keydir / "server.key").read_bytes()
    (keydir / "server.crt").unlink()
    later = NOW + datetime.timedelta(days=100)
    result = generate(keydir, ["renewed.example.test"], now=later, new_key=pool)
    assert result.created == ("server.crt",)
    assert result.server_names == ("renewed.example.test",)
    assert (keydir / "server.key").read_bytes() == old_key
    renewed = cert(keydir, "server.crt")
    renewed.verify_directly_issued_by(cert(keydir, "ca.crt"))
    assert renewed.public_key().public_numbers() == key(keydir, "server.key").public_key().public_numbers()  # type: ignore[union-attr]
    assert check_keys("api", paths(keydir), me(), now=later) == []


def test_missing_public_key_is_made_from_the_private_key(keydir: Path, pool: KeyPool):
    before = (keydir / "rsa_pub.key").read_bytes()
    (keydir / "rsa_pub.key").unlink()
    pool.calls.clear()
    result = generate(keydir, NAMES, now=NOW, new_key=pool)
    assert result.created == ("rsa_pub.key",) and pool.calls == []
    assert (keydir / "rsa_pub.key").read_bytes() == before


def test_renewed_ca_certificate_still_validates_what_the_old_one_signed(keydir: Path, pool: KeyPool):
    old_ca = cert(keydir, "ca.crt")
    (keydir / "ca.crt").unlink()
    result = generate(keydir, NAMES, now=NOW + datetime.timedelta(days=7000), new_key=pool)
    assert result.created == ("ca.crt",)
    new_ca = cert(keydir, "ca.crt")
    assert new_ca.serial_number != old_ca.serial_number and new_ca.subject == old_ca.subject
    cert(keydir, "server.crt").verify_directly_issued_by(new_ca)


def test_a_public_part_without_its_key_is_an_error_and_nothing_is_written(keydir: Path, pool: KeyPool):
    (keydir / "ca.key").unlink()
    (keydir / "server.key").unlink()
    (keydir / "server.crt").unlink()
    before = snapshot(keydir)
    with pytest.raises(KeyFileError) as caught:
        generate(keydir, NAMES, now=NOW, new_key=pool)
    assert caught.value.path == str(keydir / "ca.crt")
    assert "exists without ca.key" in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.exit_code == ExitCode.CONFIG
    assert snapshot(keydir) == before


def test_a_kept_pair_that_does_not_match_is_an_error(keydir: Path, tmp_path: Path, pool: KeyPool):
    other = tmp_path / "other"
    generate(other, NAMES, now=NOW, new_key=pool)
    shutil.copy(other / "server.crt", keydir / "server.crt")
    with pytest.raises(KeyFileError, match="does not match") as caught:
        generate(keydir, NAMES, now=NOW, new_key=pool)
    assert caught.value.path == str(keydir / "server.key")


@pytest.mark.parametrize("name", ["ca.key", "server.crt"])
def test_a_directory_where_a_file_should_be(tmp_path: Path, pool: KeyPool, name: str):
    directory = tmp_path / "keys"
    (directory / name).mkdir(parents=True)
    with pytest.raises(KeyFileError, match="is a directory") as caught:
        generate(directory, NAMES, now=NOW, new_key=pool)
    assert caught.value.path == str(directory / name)
    assert [p.name for p in directory.iterdir()] == [name]


def test_the_target_must_be_a_directory(tmp_path: Path, pool: KeyPool):
    (tmp_path / "file").write_text("x")
    with pytest.raises(KeyFileError, match="is not a directory"):
        generate(tmp_path / "file", NAMES, now=NOW, new_key=pool)


@as_root
def test_a_group_makes_the_private_keys_pulp_reads_0640_in_that_group(tmp_path: Path, pool: KeyPool):
    """ca.key and rsa.key are read by Pulp's processes; server.key only by root's httpd: it stays 0600."""
    directory = tmp_path / "keys"
    generate(directory, NAMES, now=NOW, group=4242, new_key=pool)
    modes = {path.name: (stat.S_IMODE(path.stat().st_mode), path.stat().st_gid) for path in directory.iterdir()}
    assert modes == {
        "ca.key": (0o640, 4242),
        "rsa.key": (0o640, 4242),
        "server.key": (0o600, os.getegid()),
        "ca.crt": (0o644, 4242),
        "rsa_pub.key": (0o644, 4242),
        "server.crt": (0o644, 4242),
    }


@pytest.mark.slow  # real processes: seconds
def test_pki_init_into_a_directory_it_cannot_write_is_78(tmp_path: Path):
    """Root may write anywhere: as root the directory is a read-only bind mount in a mount namespace of
    its own; otherwise it is 0555.  The error names the directory."""
    parent = tmp_path / "locked"
    parent.mkdir()
    as_root = os.geteuid() == 0
    if as_root and shutil.which("unshare") is None:
        pytest.skip("needs unshare to make a read-only mount")
    if not as_root:
        parent.chmod(0o555)
    for target in (parent / "keys", parent):  # a directory to make, and one to write in
        command = [sys.executable, "-m", "pulpinit", "pki", "init", str(target), "--server-name", "pulp.example.test"]
        if as_root:
            ro = f'mount --bind "{parent}" "{parent}" && mount -o remount,bind,ro "{parent}" && exec "$@"'
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", ro, "sh", *command]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PULPINIT_LOG_FORMAT": "json"},
            check=False,
        )
        assert done.returncode == 78, done.stderr
        [line] = error_lines(done.stderr)
        assert str(line["error"]).startswith(f"{target if target == parent else parent / 'keys'}: "), line
        assert ("Read-only file system" if as_root else "Permission denied") in str(line["error"])
    assert list(parent.iterdir()) == []


def test_no_temporary_file_is_left(keydir: Path):
    assert not [p for p in keydir.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("pulp.example.test", True),
        ("pulp", True),
        ("*.apps.example.test", True),
        ("10.0.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("xn--bcher-kva.example", True),
        ("", False),
        ("bad name", False),
        ("-lead.example", False),
        ("a..b", False),
        ("bücher.example", False),
        ("*.test", False),
        ("a" * 64 + ".example", False),
        ("pulp.example.test.", False),
    ],
)
def test_server_names(name: str, ok: bool):
    assert (server_name_problem(name) is None) is ok


# ------------------------------------------------------------------------------------------------
# pulpinit pki init, as a real process
# ------------------------------------------------------------------------------------------------


def pulpinit(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "PULP_SERVER_NAME"}
    environ.update(env or {})
    environ["PULPINIT_LOG_FORMAT"] = "json"
    return subprocess.run(
        [sys.executable, "-m", "pulpinit", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        cwd=ROOT,
        check=False,
    )


def error_lines(stderr: str) -> list[dict[str, object]]:
    assert "Traceback" not in stderr, stderr
    return [json.loads(line) for line in stderr.splitlines() if '"pulpinit.error"' in line]


@pytest.mark.slow
def test_pki_init_process_makes_the_keys_once(tmp_path: Path):
    directory = tmp_path / "new" / "keys"
    first = pulpinit("pki", "init", str(directory), env={"PULP_SERVER_NAME": "pulp.from-env.test"})
    assert first.returncode == 0, first.stderr
    assert "Created in" in first.stdout and "ca.key ca.crt rsa.key rsa_pub.key server.key server.crt" in first.stdout
    assert f"kubectl create secret generic pulp-keys --from-file={directory}" in first.stdout
    sans = cert(directory, "server.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["pulp.from-env.test"]
    assert key(directory, "ca.key").key_size == 4096
    assert check_keys("api", paths(directory), me()) == []
    before = snapshot(directory)

    second = pulpinit("pki", "init", str(directory), "--server-name", "x.example.test")
    assert second.returncode == 0, second.stderr
    assert "Nothing generated." in second.stdout and "kubectl create secret generic pulp-keys" in second.stdout
    assert snapshot(directory) == before


def test_server_names_default_to_pulp_server_name_then_the_host_name():
    def names(argv: list[str], environ: dict[str, str]) -> list[str]:
        return _server_names(parse(["pki", "init", "/x", *argv]), environ)

    assert names([], {}) == [socket.gethostname()]
    assert names([], {"PULP_SERVER_NAME": "pulp.env.test"}) == ["pulp.env.test"]
    assert names(
        ["--server-name", "a.test", "--server-name", "a.test", "--server-name", "::1"],
        {"PULP_SERVER_NAME": "pulp.env.test"},
    ) == ["a.test", "::1"]


def test_pki_init_process_takes_several_names_and_days(tmp_path: Path):
    directory = tmp_path / "keys"
    done = pulpinit(
        "pki", "init", str(directory), "--server-name", "a.example.test", "--server-name", "::1", "--days", "30"
    )
    assert done.returncode == 0, done.stderr
    server = cert(directory, "server.crt")
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["a.example.test"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("::1")]
    assert (
        datetime.timedelta(days=29)
        < server.not_valid_after_utc - server.not_valid_before_utc
        <= datetime.timedelta(days=30, minutes=5)
    )
    # Within 30 days of its end: the start-up check warns, it does not fail.
    warnings = check_keys("crane", paths(directory), me())
    assert [w.path for w in warnings] == [str(directory / "server.crt")]


@pytest.mark.parametrize(
    ("argv", "env", "code", "needle"),
    [
        (["--server-name", "bad name"], {}, 64, "--server-name"),
        (["--days", "0"], {}, 64, "--days"),
        ([], {"PULP_SERVER_NAME": "bad name"}, 78, "PULP_SERVER_NAME"),
        (["--group", "no-such-group-pulpinit"], {}, 78, "--group"),
    ],
)
def test_pki_init_process_bad_input(tmp_path: Path, argv: list[str], env: dict[str, str], code: int, needle: str):
    done = pulpinit("pki", "init", str(tmp_path / "keys"), *argv, env=env)
    assert done.returncode == code
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "keys").exists()


def test_pki_init_process_refuses_a_public_part_without_its_key(tmp_path: Path, keydir: Path):
    directory = tmp_path / "partial"
    directory.mkdir()
    shutil.copy(keydir / "rsa_pub.key", directory / "rsa_pub.key")
    done = pulpinit("pki", "init", str(directory), "--server-name", "pulp.example.test")
    assert done.returncode == 78
    [line] = error_lines(done.stderr)
    assert str(line["error"]).startswith(f"{directory / 'rsa_pub.key'}: exists without rsa.key")
    assert [p.name for p in directory.iterdir()] == ["rsa_pub.key"]


def test_pki_init_usage_is_in_the_help():
    done = pulpinit("pki", "init", "--help")
    assert done.returncode == 0
    for option in ("--server-name", "--days", "--group", "DIR"):
        assert option in done.stdout
    assert pulpinit("pki").returncode == 64


# ------------------------------------------------------------------------------------------------
# The start-up check
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", sorted(ROLE_KEYS))
def test_check_passes_on_what_pki_init_made(keydir: Path, role: str):
    assert check_keys(role, paths(keydir), me(), now=NOW) == []


def test_key_paths_follow_server_conf():
    resolved = key_paths({"security.cakey": "/srv/keys/ca.key", "authentication.rsa_pub": ""})
    assert resolved["ca.key"] == "/srv/keys/ca.key"
    assert resolved["rsa_pub.key"] == "/etc/pki/pulp/rsa_pub.key"  # empty: the default
    assert resolved["server.crt"] == "/etc/pki/tls/certs/localhost.crt"


def test_role_table_needs():
    needs = {role: {k.name for k in keys} for role, keys in ROLE_KEYS.items()}
    assert needs["api"] == set(KEY_FILES)
    assert "ca.key" not in needs["worker"] | needs["crane"]  # the CA key only where Pulp signs certificates
    assert "rsa.key" in needs["worker"]
    assert needs["beat"] == needs["resource-manager"] == needs["migrate"] == set()


def test_symlinked_files_are_followed(keydir: Path, tmp_path: Path):
    """A Kubernetes Secret volume: every file is a symlink through ``..data``."""
    mount = tmp_path / "mount"
    (mount / "..2030_01_01").mkdir(parents=True)
    for name in KEY_FILES:
        shutil.copy2(keydir / name, mount / "..2030_01_01" / name)
    (mount / "..data").symlink_to("..2030_01_01")
    for name in KEY_FILES:
        (mount / name).symlink_to(f"..data/{name}")
    assert check_keys("api", paths(mount), me(), now=NOW) == []


@pytest.mark.parametrize(
    ("private", "public"), [("ca.key", "ca.crt"), ("rsa.key", "rsa_pub.key"), ("server.key", "server.crt")]
)
def test_mismatched_pairs(keydir: Path, tmp_path: Path, pool: KeyPool, private: str, public: str):
    other = tmp_path / "other"
    generate(other, NAMES, now=NOW, new_key=pool)
    files = paths(keydir)
    files[public] = str(other / public)
    with pytest.raises(KeyFileError, match="does not match") as caught:
        check_keys("api", files, me(), now=NOW)
    assert caught.value.path == str(keydir / private)
    assert str(other / public) in str(caught.value)


def test_expired_certificate_is_an_error(keydir: Path):
    (keydir / "server.crt").write_bytes(
        make_cert(key(keydir, "server.key"), NOW - datetime.timedelta(days=400), NOW - datetime.timedelta(days=1))
    )
    with pytest.raises(KeyFileError, match="expired on") as caught:
        check_keys("crane", paths(keydir), me(), now=NOW)
    assert caught.value.path == str(keydir / "server.crt")


def test_certificate_near_its_end_is_a_warning(keydir: Path):
    (keydir / "ca.crt").write_bytes(
        make_cert(key(keydir, "ca.key"), NOW - datetime.timedelta(days=400), NOW + datetime.timedelta(days=12, hours=1))
    )
    [warning] = check_keys("api", paths(keydir), me(), now=NOW)
    assert warning.path == str(keydir / "ca.crt") and "in 12 days" in warning.problem
    assert warning.not_after == NOW + datetime.timedelta(days=12, hours=1)
    # 31 days left: no warning.
    (keydir / "ca.crt").write_bytes(
        make_cert(key(keydir, "ca.key"), NOW - datetime.timedelta(days=400), NOW + datetime.timedelta(days=31))
    )
    assert check_keys("api", paths(keydir), me(), now=NOW) == []


def test_certificate_not_valid_yet_is_a_warning(keydir: Path):
    (keydir / "server.crt").write_bytes(
        make_cert(key(keydir, "server.key"), NOW + datetime.timedelta(hours=2), NOW + datetime.timedelta(days=400))
    )
    [warning] = check_keys("crane", paths(keydir), me(), now=NOW)
    assert "not valid before" in warning.problem


@pytest.mark.parametrize(
    ("name", "mode", "ok"),
    [
        ("ca.key", 0o600, True),
        ("ca.key", 0o640, True),
        ("ca.key", 0o440, True),
        ("ca.key", 0o400, True),
        ("ca.key", 0o644, False),
        ("ca.key", 0o660, False),
        ("rsa.key", 0o604, False),
        ("server.key", 0o666, False),
        ("ca.crt", 0o644, True),
        ("ca.crt", 0o444, True),
        ("rsa_pub.key", 0o664, False),
        ("server.crt", 0o646, False),
    ],
)
def test_modes(keydir: Path, name: str, mode: int, ok: bool):
    os.chmod(keydir / name, mode)
    if ok:
        assert check_keys("api", paths(keydir), me(), now=NOW) == []
    else:
        with pytest.raises(KeyFileError, match=f"mode {mode:04o}") as caught:
            check_keys("api", paths(keydir), me(), now=NOW)
        assert caught.value.path == str(keydir / name)


@pytest.mark.parametrize("damage", ["missing", "directory", "dangling", "fifo", "garbage", "encrypted"])
def test_unusable_files(keydir: Path, damage: str):
    target = keydir / "rsa.key"
    original = key(keydir, "rsa.key")
    target.unlink()
    expected = {
        "missing": "does not exist",
        "directory": "is a directory",
        "dangling": "dangling symlink",
        "fifo": "not a regular file",
        "garbage": "not a PEM private key",
        "encrypted": "is encrypted",
    }[damage]
    if damage == "directory":
        target.mkdir()
    elif damage == "dangling":
        target.symlink_to(keydir / "gone.key")
    elif damage == "fifo":
        os.mkfifo(target, 0o600)
    elif damage == "garbage":
        target.write_bytes(b"-----BEGIN RSA PRIVATE KEY-----\nnot base64\n")
        os.chmod(target, 0o600)
    elif damage == "encrypted":
        target.write_bytes(
            original.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"passphrase"),
            )
        )
        os.chmod(target, 0o600)
    with pytest.raises(KeyFileError, match=expected) as caught:
        check_keys("worker", paths(keydir), me(), now=NOW)
    assert caught.value.path == str(target)
    assert "\n" not in str(caught.value) and caught.value.exit_code == 78


def test_roles_check_only_their_files(keydir: Path):
    (keydir / "ca.key").unlink()
    assert check_keys("worker", paths(keydir), me(), now=NOW) == []
    assert check_keys("crane", paths(keydir), me(), now=NOW) == []
    with pytest.raises(KeyFileError, match="does not exist"):
        check_keys("api", paths(keydir), me(), now=NOW)


@dataclasses.dataclass
class User:
    name: str
    uid: int
    gid: int


@pytest.fixture
def pulp_user() -> Iterator[User]:
    name = f"pki{secrets.token_hex(4)}"
    subprocess.run(
        ["useradd", "-M", "-U", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name], check=True, capture_output=True
    )
    try:
        ident = resolve_user(name)
        yield User(name, ident.uid, ident.gid)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)


@pytest.fixture
def open_keydir(keydir: Path) -> Iterator[Path]:
    """The keys in a directory everybody may traverse (pytest's own tmp root is 0700)."""
    top = Path(tempfile.mkdtemp(prefix="pulpinit-pki-", dir="/tmp"))
    os.chmod(top, 0o755)  # noqa: S103 (other users must traverse it)
    shutil.copytree(keydir, top / "keys")
    os.chmod(top / "keys", 0o755)  # noqa: S103
    yield top / "keys"
    shutil.rmtree(top)


@as_root
def test_unreadable_by_the_pulp_user(open_keydir: Path, pulp_user: User):
    keydir = open_keydir
    readers: dict[Reader, Identity] = {"pulp": resolve_user(pulp_user.name), "root": resolve_user("0")}
    # 0600 root:root: root could read it, apache cannot.
    with pytest.raises(KeyFileError, match=f"not readable by {pulp_user.name}") as caught:
        check_keys("worker", paths(keydir), readers, now=NOW)
    assert caught.value.path == str(keydir / "rsa.key")
    # 0640 root:<the user's group>: readable, as Kubernetes makes it with fsGroup.
    for name in ("rsa.key", "ca.key"):
        os.chown(keydir / name, 0, pulp_user.gid)
        os.chmod(keydir / name, 0o640)
    assert check_keys("worker", paths(keydir), readers, now=NOW) == []
    # The owner class decides alone: owned by the user but 0040 is not readable by it.
    os.chown(keydir / "rsa.key", pulp_user.uid, pulp_user.gid)
    os.chmod(keydir / "rsa.key", 0o040)
    with pytest.raises(KeyFileError, match="not readable"):
        check_keys("worker", paths(keydir), readers, now=NOW)
    os.chmod(keydir / "rsa.key", 0o400)
    assert check_keys("worker", paths(keydir), readers, now=NOW) == []
    # httpd's files are read by root (with CAP_DAC_OVERRIDE, as in a container): 0600 root:root is fine.
    assert check_keys("crane", paths(keydir), readers, now=NOW) == []


@as_root
def test_a_directory_on_the_way_without_search_permission(open_keydir: Path, pulp_user: User):
    keydir = open_keydir
    readers: dict[Reader, Identity] = {"pulp": resolve_user(pulp_user.name), "root": resolve_user("0")}
    for name in ("rsa.key", "rsa_pub.key"):
        os.chown(keydir / name, 0, pulp_user.gid)
        os.chmod(keydir / name, 0o640)
    os.chmod(keydir, 0o700)
    with pytest.raises(KeyFileError, match=f"no search permission on {keydir}"):
        check_keys("worker", paths(keydir), readers, now=NOW)
    os.chmod(keydir, 0o711)  # noqa: S103 (search, no listing)
    assert check_keys("worker", paths(keydir), readers, now=NOW) == []


@as_root
def test_a_numeric_uid_without_a_passwd_entry(open_keydir: Path):
    keydir = open_keydir
    uid = next(
        u
        for u in range(47000, 48000)
        if subprocess.run(["getent", "passwd", str(u)], capture_output=True, check=False).returncode
    )
    readers: dict[Reader, Identity] = {"pulp": resolve_user(str(uid)), "root": resolve_user("0")}
    with pytest.raises(KeyFileError, match=f"uid {uid}"):
        check_keys("worker", paths(keydir), readers, now=NOW)
    os.chown(keydir / "rsa.key", uid, 0)
    assert check_keys("worker", paths(keydir), readers, now=NOW) == []


def test_readers_for_is_this_process_unless_root():
    readers = readers_for("0")
    if os.geteuid() == 0:
        assert readers["root"].uid == 0 and readers["pulp"].uid == 0
    else:
        assert readers["pulp"].uid == readers["root"].uid == os.getuid()


def test_operations_guide_carries_the_role_table():
    guide = (ROOT / "docs" / "operations.md").read_text()
    assert role_key_table() in guide


# ------------------------------------------------------------------------------------------------
# Publishing rsa_pub.key
# ------------------------------------------------------------------------------------------------


def test_publish_links_the_public_key_into_a_fresh_static_dir(keydir: Path, tmp_path: Path):
    static = tmp_path / "var" / "lib" / "pulp" / "static"
    assert publish_public_key(str(keydir / "rsa_pub.key"), str(static)) is Published.CREATED
    link = static / "rsa_pub.key"
    assert link.is_symlink() and os.readlink(link) == str(keydir / "rsa_pub.key")
    assert link.read_bytes() == (keydir / "rsa_pub.key").read_bytes()
    assert stat.S_IMODE(static.stat().st_mode) == 0o755
    assert publish_public_key(str(keydir / "rsa_pub.key"), str(static)) is Published.PRESENT
    assert [p.name for p in static.iterdir()] == ["rsa_pub.key"]


def test_publish_replaces_a_dangling_link_and_leaves_anything_else(keydir: Path, tmp_path: Path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "rsa_pub.key").symlink_to(tmp_path / "old" / "rsa_pub.key")
    assert publish_public_key(str(keydir / "rsa_pub.key"), str(static)) is Published.CREATED
    assert (static / "rsa_pub.key").read_bytes() == (keydir / "rsa_pub.key").read_bytes()
    (static / "rsa_pub.key").unlink()
    (static / "rsa_pub.key").write_bytes(b"an operator's file\n")
    assert publish_public_key(str(keydir / "rsa_pub.key"), str(static)) is Published.DIFFERENT
    assert (static / "rsa_pub.key").read_bytes() == b"an operator's file\n"


@as_root
def test_publish_gives_a_new_static_dir_to_the_owner(keydir: Path, tmp_path: Path):
    owner = Identity(name="x", uid=4343, gid=4344, groups=(4344,), home="/")
    static = tmp_path / "static"
    publish_public_key(str(keydir / "rsa_pub.key"), str(static), owner=owner)
    assert (static.stat().st_uid, static.stat().st_gid) == (4343, 4344)


def test_publish_failure_names_the_file(keydir: Path, tmp_path: Path):
    (tmp_path / "static").write_text("a file, not a directory")
    with pytest.raises(KeyFileError) as caught:
        publish_public_key(str(keydir / "rsa_pub.key"), str(tmp_path / "static"))
    assert caught.value.path == str(tmp_path / "static" / "rsa_pub.key")


def test_check_module_does_not_import_cryptography():
    code = (
        "import sys; import pulpinit.cli, pulpinit.pki.check, pulpinit.pki.command, pulpinit.pki.generate; "
        "pulpinit.cli.build_parser(); print('cryptography' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"


def test_the_knobs_default_to_the_paths_of_the_key_table():
    """httpd's pair and Pulp's static directory: the knobs' defaults are the paths the key table knows."""
    from pulpinit.knobs import KNOBS

    defaults = {knob.name: knob.default for knob in KNOBS}
    assert defaults["PULPINIT_HTTPD_CERT"] == KEY_FILES["server.crt"].default_path
    assert defaults["PULPINIT_HTTPD_KEY"] == KEY_FILES["server.key"].default_path
    assert defaults["PULPINIT_STATIC_DIR"] == STATIC_DIR


@pytest.mark.parametrize("role", ["worker", "api"])
def test_an_ec_message_signing_pair_is_refused(keydir: Path, role: str):
    """Pulp signs messages to consumers with M2Crypto's RSA: an EC pair would fail only at the first signature."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    (keydir / "rsa.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    (keydir / "rsa_pub.key").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyFileError, match="is not an RSA key: Pulp signs messages") as caught:
        check_keys(role, paths(keydir), me())
    assert caught.value.path == str(keydir / "rsa_pub.key")  # the public half is read first
    assert caught.value.exit_code == 78
    check_keys("crane", paths(keydir), me())  # httpd's pair is not the signing pair
