"""The one place that turns a :class:`~pulpinit.targets.MongoTarget` into a pymongo client.

Used by the readiness probe and by the migration lock, so both reach MongoDB
exactly the way server.conf says Pulp does:

* seeds → the host list; ``replica_set`` → ``replicaSet`` (and discovery);
  a single seed without a replica set → ``directConnection=True`` (talk to that
  server whatever its role, as Pulp 2 does); several seeds → discovery;
* ``username``/``password`` → SCRAM with ``authSource`` = the Pulp database
  itself, as in Pulp (mongoengine logs in against the database it connects to);
* ``ssl`` → ``tls``; ``ca_path`` → ``tlsCAFile``; ``verify_ssl = false`` →
  ``tlsAllowInvalidCertificates``; the host name is left to the preflight
  (:mod:`pulpinit.wait.mongo_wire`), which checks it as Pulp's pymongo on Python 2 does;
* ``ssl_certfile`` → ``tlsCertificateKeyFile``.  pymongo wants the certificate
  and its private key in one PEM file, while server.conf (like Pulp's
  ``ssl.wrap_socket``) may name them separately.  When ``ssl_keyfile`` is a
  different file, both are concatenated into an anonymous in-memory file
  (``memfd_create``, reached as ``/proc/self/fd/N``; it never touches a disk
  and disappears with the process) and that path is passed; without memfd a
  0600 file in a private 0700 temporary directory is used and removed at exit.

Every timeout (server selection, connect, socket) is the per-attempt
``timeout_s``.  pymongo is imported inside :func:`connect` only: it costs
~100 ms, which pulpinit's start-up path must not pay unless MongoDB is used.

pymongo first tries its pyOpenSSL TLS layer, whose module imports
``cryptography.x509`` (~30 ms) before it finds pyOpenSSL or ``service_identity``
missing and falls back to the standard ``ssl`` module.  pulpinit depends on
cryptography (for Pulp's keys), so every start would pay that for nothing: when
either is missing, importing this module marks pymongo's pyOpenSSL module as
unimportable (:func:`spare_unusable_pyopenssl`), and pymongo falls back at once,
exactly as it would have.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from pulpinit.parse import format_hostport
from pulpinit.targets import MongoTarget

if TYPE_CHECKING:
    import pymongo

APPNAME = "pulpinit"
#: pymongo's TLS layer over pyOpenSSL, and what it needs besides cryptography.
_PYOPENSSL_CONTEXT, _PYOPENSSL_NEEDS = "pymongo.pyopenssl_context", ("OpenSSL", "service_identity")

_combined: dict[tuple[str, str, float, float], str] = {}
_combined_lock = threading.Lock()
_keep_fds: list[int] = []


def spare_unusable_pyopenssl() -> bool:
    """Make pymongo skip its pyOpenSSL layer at once when it could not load; True when it will."""
    if _PYOPENSSL_CONTEXT not in sys.modules and not all(map(importlib.util.find_spec, _PYOPENSSL_NEEDS)):
        sys.modules[_PYOPENSSL_CONTEXT] = None  # type: ignore[assignment]  # import raises ImportError
    return sys.modules.get(_PYOPENSSL_CONTEXT, 0) is None


spare_unusable_pyopenssl()


def hosts(target: MongoTarget) -> list[str]:
    """The seeds as pymongo host strings (IPv6 literals bracketed)."""
    return [format_hostport(host, port) for host, port in target.seeds]


def combined_pem(certfile: str, keyfile: str) -> str:
    """A path to one PEM holding ``certfile`` then ``keyfile`` (cached per file versions)."""
    key = (certfile, keyfile, os.stat(certfile).st_mtime, os.stat(keyfile).st_mtime)
    with _combined_lock:
        if key in _combined:
            return _combined[key]
        with open(certfile, "rb") as cert, open(keyfile, "rb") as private:
            data = cert.read().rstrip(b"\n") + b"\n" + private.read()
        path = _memfd_path(data) if hasattr(os, "memfd_create") else None
        if path is None:
            path = _private_tempfile(data)
        _combined[key] = path
        return path


def _memfd_path(data: bytes) -> str | None:
    try:
        fd = os.memfd_create("pulpinit-mongo-client.pem", os.MFD_CLOEXEC)
    except OSError:
        return None
    os.write(fd, data)
    _keep_fds.append(fd)  # the path lives as long as the descriptor does
    path = f"/proc/self/fd/{fd}"
    return path if os.path.exists(path) else None


def _private_tempfile(data: bytes) -> str:
    # Only here, without memfd: tempfile and shutil would cost every start that reaches MongoDB about 3 ms.
    import atexit
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="pulpinit-tls-")  # mode 0700
    atexit.register(shutil.rmtree, directory, True)
    path = os.path.join(directory, "client.pem")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


def client_options(target: MongoTarget, timeout_s: float) -> dict[str, Any]:
    """Keyword arguments for ``pymongo.MongoClient`` (``host`` included)."""
    timeout_ms = max(1, round(timeout_s * 1000))
    options: dict[str, Any] = {
        "host": hosts(target),
        "appname": APPNAME,
        "serverSelectionTimeoutMS": timeout_ms,
        "connectTimeoutMS": timeout_ms,
        "socketTimeoutMS": timeout_ms,
    }
    if target.replica_set:
        options["replicaSet"] = target.replica_set
    elif len(target.seeds) == 1:
        options["directConnection"] = True
    if target.username:
        options["username"] = target.username
        options["password"] = target.password or ""
        options["authSource"] = target.database
    if target.ssl:
        options["tls"] = True
        if target.ca_path:
            options["tlsCAFile"] = target.ca_path
        if target.ssl_certfile:
            keyfile = target.ssl_keyfile
            same = not keyfile or os.path.realpath(keyfile) == os.path.realpath(target.ssl_certfile)
            options["tlsCertificateKeyFile"] = (
                target.ssl_certfile if same or keyfile is None else combined_pem(target.ssl_certfile, keyfile)
            )
        if not target.verify_ssl:
            options["tlsAllowInvalidCertificates"] = True
        # The host name is checked by the preflight (mongo_wire) with the rule of Pulp's own pymongo
        # on Python 2, which differs from this pymongo's (an IP subjectAltName never matches there).
        options["tlsAllowInvalidHostnames"] = True
    return options


def connect(target: MongoTarget, timeout_s: float, **overrides: Any) -> pymongo.MongoClient[dict[str, Any]]:
    """A ``MongoClient`` for ``target`` (connecting in the background, as pymongo does).

    ``overrides`` are extra ``MongoClient`` keyword arguments (e.g. ``event_listeners``
    or a longer ``socketTimeoutMS`` for a caller that runs long operations).
    """
    import pymongo

    return pymongo.MongoClient(**{**client_options(target, timeout_s), **overrides})
