"""Which role reads which key, and the start-up check that each one is usable.

:data:`KEY_FILES` describes the six files ``pulpinit pki init`` makes (their names are the keys
of the ``pulp-keys`` Secret), where each role reads them by default and which server.conf key
names that path.  :data:`ROLE_KEYS` says which role needs which file and who reads it:

* ``pulp`` -- ``PULPINIT_USER`` (``apache``): Pulp's WSGI processes in httpd and Celery;
* ``root`` -- httpd's parent process, which reads its TLS certificate and key (and the CA
  certificate it verifies client certificates with) before it starts its ``apache`` children.

The CA key is mounted only where Pulp signs certificates (the API: consumer registration and
``pulp-admin login``), the message-signing key where Pulp signs messages to consumers and
lazy-download URLs (the API and the workers), the public parts wherever they are read.  The
role wiring, ``docs/operations.md`` (:func:`role_key_table`) and the tests read these tables.

:func:`check_keys` verifies, for one role: every file exists and is a regular file (after
symlinks, as Kubernetes mounts Secrets), its mode is safe (a private key is not group-writable
and gives others nothing; nothing is writable by others or the group), every reader can read it
with its own uid, gid and groups (the permission bits along the whole path, not ``os.access``
as root), it parses, each private key matches its certificate or public key, and no certificate
has expired.  A failure raises :class:`~pulpinit.errors.KeyFileError` (exit 78) naming the file;
a certificate that expires within 30 days, or is not valid yet, comes back as a
:class:`KeyWarning` for the caller to log.  POSIX ACLs and SELinux are not consulted.

:mod:`cryptography` is imported only inside the functions that parse keys.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from pulpinit.errors import KeyFileError
from pulpinit.privileges import Identity, access_problem, resolve_user, running_as_root

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

__all__ = [
    "KEYS_DIR",
    "KEY_FILES",
    "ROLE_KEYS",
    "STATIC_DIR",
    "WARN_WITHIN",
    "KeyFile",
    "KeyWarning",
    "RoleKey",
    "check_keys",
    "key_paths",
    "readers_for",
    "role_key_table",
]

Kind = Literal["private-key", "certificate", "public-key"]
Reader = Literal["pulp", "root"]

#: A certificate closer than this to its end is reported as a warning.
WARN_WITHIN = datetime.timedelta(days=30)
#: Where Pulp serves ``/pulp/static/`` from; ``pulp-gen-key-pair`` links ``rsa_pub.key`` into it.
STATIC_DIR = "/var/lib/pulp/static"
#: The one directory the images link every key path to (``/etc/pki/pulp/ca.key`` →
#: ``KEYS_DIR/ca.key``, …) and where a role mounts its keys: a Kubernetes Secret with only the
#: role's items, or the Compose volume ``pulp-keys``.  A role started without it finds dangling
#: links, which the check names.
KEYS_DIR = "/etc/pki/pulp-keys"


@dataclasses.dataclass(frozen=True)
class KeyFile:
    """One file of Pulp's key material."""

    name: str  #: file name in ``pki init``'s directory, and key in the Secret
    kind: Kind
    default_path: str  #: where the roles read it unless server.conf says otherwise
    conf: str | None  #: the server.conf key (``section.key``) naming its path; None: httpd's files
    pair: str | None  #: for a private key: the certificate or public key it must match
    purpose: str


KEY_FILES: Mapping[str, KeyFile] = {
    f.name: f
    for f in (
        KeyFile(
            "ca.crt",
            "certificate",
            "/etc/pki/pulp/ca.crt",
            "security.cacert",
            None,
            "Pulp's CA: httpd verifies client certificates with it, Pulp issues from it",
        ),
        KeyFile(
            "ca.key",
            "private-key",
            "/etc/pki/pulp/ca.key",
            "security.cakey",
            "ca.crt",
            "signs consumer and pulp-admin login certificates",
        ),
        KeyFile(
            "rsa.key",
            "private-key",
            "/etc/pki/pulp/rsa.key",
            "authentication.rsa_key",
            "rsa_pub.key",
            "signs messages to consumer agents and lazy-download redirects",
        ),
        KeyFile(
            "rsa_pub.key",
            "public-key",
            "/etc/pki/pulp/rsa_pub.key",
            "authentication.rsa_pub",
            None,
            "the public half: published as /pulp/static/rsa_pub.key for consumers; beside rsa.key "
            "so that the pair is checked",
        ),
        KeyFile(
            "server.crt",
            "certificate",
            "/etc/pki/tls/certs/localhost.crt",
            None,
            None,
            "httpd's TLS certificate (mod_ssl's SSLCertificateFile)",
        ),
        KeyFile(
            "server.key",
            "private-key",
            "/etc/pki/tls/private/localhost.key",
            None,
            "server.crt",
            "httpd's TLS key (mod_ssl's SSLCertificateKeyFile)",
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class RoleKey:
    """A file a role needs, and who reads it there."""

    name: str
    readers: tuple[Reader, ...]


#: The message-signing pair: Pulp loads it with M2Crypto's ``RSA`` (``RSA.load_key``,
#: ``RSA.load_pub_key_bio``) to sign messages to consumer agents and lazy-download redirects, so
#: another algorithm (an EC key) would fail only when Pulp first signs.
RSA_ONLY = frozenset({"rsa.key", "rsa_pub.key"})

#: Which role needs which key, and who reads it.  Roles not listed need none.
ROLE_KEYS: Mapping[str, tuple[RoleKey, ...]] = {
    "api": (
        RoleKey("ca.crt", ("root", "pulp")),
        RoleKey("ca.key", ("pulp",)),
        RoleKey("rsa.key", ("pulp",)),
        RoleKey("rsa_pub.key", ("pulp",)),
        RoleKey("server.crt", ("root",)),
        RoleKey("server.key", ("root",)),
    ),
    "crane": (
        RoleKey("server.crt", ("root",)),
        RoleKey("server.key", ("root",)),
    ),
    "worker": (
        RoleKey("rsa.key", ("pulp",)),
        RoleKey("rsa_pub.key", ("pulp",)),
    ),
    "beat": (),
    "resource-manager": (),
    "migrate": (),
}

_READER_NAMES: Mapping[Reader, str] = {"pulp": "Pulp as PULPINIT_USER", "root": "httpd as root"}


def role_key_table() -> str:
    """The Markdown table of :data:`ROLE_KEYS` that ``docs/operations.md`` carries verbatim."""
    lines = [
        "| file (Secret key) | read from | server.conf key | mounted by (read by) | what for |",
        "|---|---|---|---|---|",
    ]
    for f in KEY_FILES.values():
        users = [
            f"`{role}`: {', '.join(_READER_NAMES[r] for r in k.readers)}"
            for role, keys in ROLE_KEYS.items()
            for k in keys
            if k.name == f.name
        ]
        conf = f"`{f.conf}`" if f.conf else "—"
        lines.append(f"| `{f.name}` | `{f.default_path}` | {conf} | {'; '.join(users)} | {f.purpose} |")
    none = [role for role, keys in ROLE_KEYS.items() if not keys]
    lines.append("")
    lines.append(f"{', '.join(f'`{r}`' for r in none)}: no key.")
    return "\n".join(lines) + "\n"


def key_paths(
    conf: Mapping[str, str], *, httpd_cert: str | None = None, httpd_key: str | None = None
) -> dict[str, str]:
    """File name → path: the server.conf value when ``conf`` (``section.key`` → value) sets one.

    httpd's pair is where its configuration names it: ``httpd_cert``/``httpd_key``
    (``PULPINIT_HTTPD_CERT``/``PULPINIT_HTTPD_KEY``), by default mod_ssl's paths.
    """
    paths = {f.name: (conf.get(f.conf) or f.default_path) if f.conf else f.default_path for f in KEY_FILES.values()}
    paths["server.crt"] = httpd_cert or paths["server.crt"]
    paths["server.key"] = httpd_key or paths["server.key"]
    return paths


def current_identity() -> Identity:
    """This process's own uid, gid and groups."""
    uid, gid = os.getuid(), os.getgid()
    return Identity(
        name=str(uid),
        uid=uid,
        gid=gid,
        groups=tuple(dict.fromkeys([gid, *os.getgroups()])),
        home=os.environ.get("HOME", "/"),
    )


def readers_for(user_spec: str) -> dict[Reader, Identity]:
    """Who reads the keys: ``PULPINIT_USER`` and root when pulpinit is root, else this process."""
    if not running_as_root():
        me = current_identity()
        return {"pulp": me, "root": me}
    return {"pulp": resolve_user(user_spec), "root": resolve_user("0")}


@dataclasses.dataclass(frozen=True)
class KeyWarning:
    """Something to log, not to stop for: a certificate near its end, or not valid yet."""

    path: str
    problem: str
    not_after: datetime.datetime

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


# -- files -----------------------------------------------------------------------------------


def _read_checked(path: str, kind: Kind, readers: Sequence[Identity]) -> bytes:
    """Existence, type, mode and readability of one file; returns its content."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise KeyFileError(path, f"dangling symlink to {os.readlink(path)}") from None
        raise KeyFileError(path, "does not exist") from None
    except OSError as exc:
        raise KeyFileError(path, f"cannot stat it: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise KeyFileError(path, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(path, "is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if kind == "private-key" and mode & 0o027:
        raise KeyFileError(
            path,
            f"mode {mode:04o} is unsafe for a private key: it must give others nothing "
            "and the group at most read (0600, or 0640/0440 with the reading group)",
        )
    if mode & 0o022:
        raise KeyFileError(path, f"mode {mode:04o}: writable by the group or others")
    real = Path(os.path.realpath(path))
    for who in readers:
        problem = access_problem(real, who)
        if problem:
            raise KeyFileError(path, problem)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(path, f"cannot read it: {exc.strerror}") from None


# -- parsing ---------------------------------------------------------------------------------


def load_private_key(path: str, data: bytes, *, validate: bool = True) -> PrivateKeyTypes:
    """A PEM private key (PKCS#1 or PKCS#8, not encrypted), or KeyFileError naming ``path``.

    ``validate=False`` skips OpenSSL's consistency check of an RSA key's private numbers, which
    costs about 0.4 s for a 4096-bit key (the start-up check compares public halves only).
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=not validate)
    except TypeError:  # cryptography's way of saying "encrypted, and no password given"
        raise KeyFileError(path, "the private key is encrypted: httpd and Pulp need it without a passphrase") from None
    except ValueError:
        raise KeyFileError(path, "not a PEM private key") from None
    except UnsupportedAlgorithm:
        raise KeyFileError(path, "a private key of an algorithm this cryptography cannot load") from None


def load_certificate(path: str, data: bytes) -> x509.Certificate:
    """A PEM certificate (the first one of a chain file), or KeyFileError naming ``path``."""
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise KeyFileError(path, "not a PEM certificate") from None


def load_public_key(path: str, data: bytes) -> PublicKeyTypes:
    """A PEM public key (SubjectPublicKeyInfo or PKCS#1), or KeyFileError naming ``path``."""
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_public_key(data)
    except ValueError:
        raise KeyFileError(path, "not a PEM public key") from None


def public_der(key: PublicKeyTypes) -> bytes:
    """The SubjectPublicKeyInfo DER of a public key: equal bytes, equal keys."""
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _expiry(
    path: str, cert: x509.Certificate, now: datetime.datetime, warn_within: datetime.timedelta
) -> KeyWarning | None:
    not_after = cert.not_valid_after_utc
    if not_after <= now:
        raise KeyFileError(path, f"the certificate expired on {not_after:%Y-%m-%d %H:%M} UTC")
    if cert.not_valid_before_utc > now:
        return KeyWarning(
            path,
            f"the certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
            "UTC (is this clock right?)",
            not_after,
        )
    if not_after - now <= warn_within:
        days = (not_after - now).days
        return KeyWarning(
            path,
            f"the certificate expires on {not_after:%Y-%m-%d %H:%M} UTC, in {days} days: "
            "renew it (docs/operations.md, rotating keys)",
            not_after,
        )
    return None


def check_keys(
    role: str,
    paths: Mapping[str, str],
    readers: Mapping[Reader, Identity],
    *,
    now: datetime.datetime | None = None,
    warn_within: datetime.timedelta = WARN_WITHIN,
) -> list[KeyWarning]:
    """Check every file ``role`` needs (see the module docstring); returns the warnings.

    ``paths`` maps file names (``ca.key`` …) to paths (:func:`key_paths`); ``readers`` maps
    ``pulp`` and ``root`` to identities (:func:`readers_for`).  Raises
    :class:`~pulpinit.errors.KeyFileError` on the first unusable file.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    needed = ROLE_KEYS.get(role, ())
    contents: dict[str, bytes] = {}
    for item in needed:
        spec = KEY_FILES[item.name]
        contents[item.name] = _read_checked(paths[item.name], spec.kind, [readers[r] for r in item.readers])
    warnings: list[KeyWarning] = []
    certificates: dict[str, x509.Certificate] = {}
    public: dict[str, bytes] = {}
    for name, data in contents.items():
        spec, path = KEY_FILES[name], paths[name]
        if spec.kind == "certificate":
            certificates[name] = load_certificate(path, data)
            public[name] = public_der(certificates[name].public_key())
            warning = _expiry(path, certificates[name], now, warn_within)
            if warning:
                warnings.append(warning)
        elif spec.kind == "public-key":
            public[name] = public_der(_signing(name, path, load_public_key(path, data)))
    for name, data in contents.items():
        spec, path = KEY_FILES[name], paths[name]
        if spec.kind != "private-key":
            continue
        mine = public_der(_signing(name, path, load_private_key(path, data, validate=False)).public_key())
        if spec.pair in public and public[spec.pair] != mine:
            raise KeyFileError(
                path,
                f"does not match {paths[spec.pair]}: the key and its "
                f"{KEY_FILES[spec.pair].kind.replace('-', ' ')} are from different pairs",
            )
    return warnings


_Key = TypeVar("_Key", "PrivateKeyTypes", "PublicKeyTypes")


def _signing(name: str, path: str, key: _Key) -> _Key:
    """``key``, unless it is a file of the message-signing pair (:data:`RSA_ONLY`) and not RSA."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    if name in RSA_ONLY and not isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        raise KeyFileError(
            path,
            "is not an RSA key: Pulp signs messages to consumers with RSA (M2Crypto); make an RSA pair "
            "(pulpinit pki init, or openssl genrsa 2048)",
        )
    return key
