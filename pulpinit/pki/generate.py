"""Make Pulp's key material once per deployment, never in an image.

What Pulp's RPM scripts make, plus httpd's certificate, in one directory (the files of
:data:`pulpinit.pki.check.KEY_FILES`):

* ``ca.key`` / ``ca.crt`` -- ``pulp-gen-ca-certificate``: RSA 4096, self-signed, SHA-256, 7035
  days, ``O=PULP``.  The subject is ``CN=Pulp CA, O=PULP``, never the server certificate's (with
  identical subjects OpenSSL takes the leaf for a self-signed certificate).  Unlike the script's
  certificate it carries CA extensions: basicConstraints (CA, path length 0), keyUsage
  keyCertSign/cRLSign, and subject/authority key identifiers;
* ``rsa.key`` / ``rsa_pub.key`` -- ``pulp-gen-key-pair``: RSA 2048, the private key in
  OpenSSL's traditional PEM (as ``openssl genrsa`` writes it), the public key as
  SubjectPublicKeyInfo PEM (as ``openssl rsa -pubout``);
* ``server.key`` / ``server.crt`` -- httpd's TLS pair: RSA 2048, signed by that CA, 825 days by
  default (the longest validity Apple's clients accept for any TLS server certificate), the
  server names as subjectAltNames (DNS names and IP addresses), serverAuth.

**Never overwrite.**  Each pair is handled on its own: both files present → kept; neither →
made; a private key without its public part (a run cut short: keys are written first) → the
missing certificate or public key is made from the existing key; a certificate or public key
without its private key → :class:`~pulpinit.errors.KeyFileError` (exit 78), since that key
cannot be recreated.  A new server certificate is signed by the CA in the directory, new or
kept.  All of this is decided, and every existing file read and checked, before the first file
is written.  Deleting ``server.crt`` and running again therefore renews the server certificate
for the same key; deleting ``ca.crt`` renews the CA certificate (same key and subject, so what
it signed stays valid).

Files are written under a temporary name in the directory and hard-linked into place (which
fails rather than replace a file that appeared meanwhile); private keys get 0600, or, the ones
Pulp's processes read (``ca.key``, ``rsa.key``), 0640 with ``group`` as their group; httpd's
``server.key``, which only root reads, stays 0600; public parts 0644.  A directory that cannot be
made or written in is exit 78, like every other unusable file.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pulpinit.errors import KeyFileError
from pulpinit.pki.check import KEY_FILES, ROLE_KEYS, load_certificate, load_private_key, load_public_key, public_der

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = ["CA_DAYS", "SERVER_DAYS", "Result", "generate", "server_name_problem"]

CA_DAYS = 7035  # pulp-gen-ca-certificate's
SERVER_DAYS = 825
CA_BITS = 4096
SIGNING_BITS = 2048
SERVER_BITS = 2048
ORGANIZATION = "PULP"
CA_COMMON_NAME = "Pulp CA"
#: Certificates start this long before "now", for clocks a little behind.
BACKDATE = datetime.timedelta(minutes=5)

#: (private key, its certificate or public key): each pair is kept, made or completed on its own.
PAIRS = (("ca.key", "ca.crt"), ("rsa.key", "rsa_pub.key"), ("server.key", "server.crt"))

KeyFactory = Callable[[int], "RSAPrivateKey"]

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def server_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a subjectAltName (DNS name or IP address), or None when it can."""
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    if not name:
        return "empty name"
    if not name.isascii():
        return f"{name!r} is not ASCII: give the IDNA form (xn--…)"
    labels = name.split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return f"{name!r} is neither a DNS name nor an IP address"
    return None


@dataclasses.dataclass(frozen=True)
class Result:
    """What :func:`generate` did."""

    directory: Path
    created: tuple[str, ...]  # file names, in the order written
    kept: tuple[str, ...]
    server_names: tuple[str, ...]  # of a new server certificate; empty when it was kept
    server_not_after: datetime.datetime | None


def _new_rsa_key(bits: int) -> RSAPrivateKey:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _existing(directory: Path) -> set[str]:
    """The files of KEY_FILES present in ``directory``; anything but a regular file is an error."""
    present = set()
    for name in KEY_FILES:
        path = directory / name
        if not os.path.lexists(path):
            continue
        if path.is_dir():
            raise KeyFileError(str(path), "is a directory where a key file should be")
        if not path.exists():
            raise KeyFileError(str(path), f"dangling symlink to {os.readlink(path)}")
        if not path.is_file():
            raise KeyFileError(str(path), "is not a regular file")
        present.add(name)
    return present


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(str(path), f"cannot read it: {exc.strerror}") from None


def _pem_private(key: RSAPrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def _general_name(name: str) -> x509.GeneralName:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _ca_certificate(key: RSAPrivateKey, now: datetime.datetime) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _server_certificate(
    key: RSAPrivateKey,
    names: Sequence[str],
    *,
    ca_key: RSAPrivateKey,
    ca_cert: x509.Certificate,
    now: datetime.datetime,
    days: int,
) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]
    if len(names[0]) <= 64:  # the longest commonName X.509 allows; the SANs carry every name anyway
        attributes.insert(0, x509.NameAttribute(NameOID.COMMON_NAME, names[0]))
    not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:  # a CA made by pulp-gen-ca-certificate has no extensions
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _write_new(path: Path, data: bytes, mode: int, gid: int | None) -> None:
    """Create ``path`` with ``data``: temporary file, fsync, hard link into place (never replaces)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".pulpinit")
    except OSError as exc:
        raise KeyFileError(str(path.parent), f"cannot write in the directory: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            if gid is not None:
                os.fchown(out.fileno(), -1, gid)
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise KeyFileError(str(path), "appeared while pulpinit was writing it; not overwritten") from None
        except OSError:  # a file system without hard links: check, then rename
            if os.path.lexists(path):
                raise KeyFileError(str(path), "appeared while pulpinit was writing it; not overwritten") from None
            os.rename(tmp, path)
    except OSError as exc:
        raise KeyFileError(str(path), f"cannot write it: {exc.strerror or exc}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def generate(
    directory: Path,
    server_names: Sequence[str],
    *,
    days: int = SERVER_DAYS,
    group: int | None = None,
    now: datetime.datetime | None = None,
    new_key: KeyFactory | None = None,
) -> Result:
    """Make whatever of the six files is missing in ``directory`` (see the module docstring).

    ``server_names`` go into a new server certificate (the first also as its commonName);
    ``group`` (a gid) makes private keys 0640 in that group; ``new_key(bits)`` makes an RSA key
    (tests pass pre-made ones).  Raises :class:`~pulpinit.errors.KeyFileError` (exit 78) before
    writing anything when the directory holds something it cannot use.
    """
    if not server_names:
        raise ValueError("at least one server name is needed")
    present = _present(directory)
    keys = _kept_keys(directory, present)
    files, names, not_after = _missing_files(
        directory,
        present,
        keys,
        server_names,
        now=now or datetime.datetime.now(datetime.timezone.utc),
        days=days,
        make_key=new_key or _new_rsa_key,
    )
    _store(directory, files, group)
    return Result(
        directory=directory,
        created=tuple(files),
        kept=tuple(n for n in KEY_FILES if n in present),
        server_names=names,
        server_not_after=not_after,
    )


def _present(directory: Path) -> set[str]:
    """The key files already in ``directory``; KeyFileError when it cannot be used."""
    if os.path.lexists(directory) and not directory.is_dir():
        raise KeyFileError(str(directory), "is not a directory")
    present = _existing(directory) if directory.is_dir() else set()
    for private, public in PAIRS:
        if public in present and private not in present:
            raise KeyFileError(
                str(directory / public),
                f"exists without {private}: that key cannot be made "
                f"again; put {private} beside it, or move "
                f"{public} away to make a new pair",
            )
    return present


def _kept_keys(directory: Path, present: set[str]) -> dict[str, RSAPrivateKey]:
    """The private keys kept, each checked against its public half when that is kept too."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    keys: dict[str, RSAPrivateKey] = {}
    for private, public in PAIRS:
        if private not in present:
            continue
        key = load_private_key(str(directory / private), _read(directory / private))
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyFileError(str(directory / private), "is not an RSA key, which Pulp and httpd expect")
        keys[private] = key
        if public in present:  # a kept pair must be a pair
            data = _read(directory / public)
            theirs = (
                load_certificate(str(directory / public), data).public_key()
                if KEY_FILES[public].kind == "certificate"
                else load_public_key(str(directory / public), data)
            )
            if public_der(theirs) != public_der(key.public_key()):
                raise KeyFileError(
                    str(directory / private), f"does not match {directory / public}: the two are from different pairs"
                )
    return keys


def _missing_files(
    directory: Path,
    present: set[str],
    keys: dict[str, RSAPrivateKey],
    server_names: Sequence[str],
    *,
    now: datetime.datetime,
    days: int,
    make_key: KeyFactory,
) -> tuple[dict[str, bytes], tuple[str, ...], datetime.datetime | None]:
    """The contents of every missing file (new keys added to ``keys``), and the new server
    certificate's names and end of validity when one is made."""
    from cryptography.hazmat.primitives import serialization

    files: dict[str, bytes] = {}
    if "ca.key" not in keys:
        keys["ca.key"] = make_key(CA_BITS)
        files["ca.key"] = _pem_private(keys["ca.key"])
    if "ca.crt" in present:
        ca_cert = load_certificate(str(directory / "ca.crt"), _read(directory / "ca.crt"))
    else:
        ca_cert = _ca_certificate(keys["ca.key"], now)
        files["ca.crt"] = ca_cert.public_bytes(serialization.Encoding.PEM)

    if "rsa.key" not in keys:
        keys["rsa.key"] = make_key(SIGNING_BITS)
        files["rsa.key"] = _pem_private(keys["rsa.key"])
    if "rsa_pub.key" not in present:
        files["rsa_pub.key"] = (
            keys["rsa.key"]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    names: tuple[str, ...] = ()
    not_after = None
    if "server.key" not in keys:
        keys["server.key"] = make_key(SERVER_BITS)
        files["server.key"] = _pem_private(keys["server.key"])
    if "server.crt" not in present:
        cert = _server_certificate(
            keys["server.key"], server_names, ca_key=keys["ca.key"], ca_cert=ca_cert, now=now, days=days
        )
        files["server.crt"] = cert.public_bytes(serialization.Encoding.PEM)
        names, not_after = tuple(server_names), cert.not_valid_after_utc
    return files, names, not_after


#: The private keys Pulp's own processes read (as ``PULPINIT_USER``): ``--group`` makes them 0640 in
#: that group.  httpd's ``server.key`` is read by root only (httpd's parent): it stays 0600.
GROUP_READ = frozenset(key.name for keys in ROLE_KEYS.values() for key in keys if "pulp" in key.readers)


def _store(directory: Path, files: dict[str, bytes], group: int | None) -> None:
    """Write the new files (private keys 0600, the ones Pulp reads 0640 in ``group``; public
    parts 0644), then sync the directory.  A directory that cannot be made or written in is a
    :class:`~pulpinit.errors.KeyFileError` (78)."""
    if not files:
        return
    try:
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(str(directory), f"cannot make the directory: {exc.strerror or exc}") from None
    for name, data in files.items():
        private = KEY_FILES[name].kind == "private-key"
        shared = private and group is not None and name in GROUP_READ
        mode = (0o640 if shared else 0o600) if private else 0o644
        _write_new(directory / name, data, mode, group if shared or not private else None)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
