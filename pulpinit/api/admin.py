"""The admin user's password: no admin/admin.

Pulp 2 stores a user's password in the ``users`` collection (field ``password``) as
``base64(salt) + "," + base64(hash)``: the salt is 8 random bytes, and the hash starts as the
password's bytes and goes through 5000 rounds of ``HMAC(key=<previous result>, msg=salt,
SHA-256).digest()`` (``User.set_password``/``check_password`` in Pulp 2.21's
``pulp.server.db.model``).  Pulp hashes the byte string it was given; pulpinit encodes the
password as UTF-8.

The first ``pulp-manage-db`` creates the ``[server] default_login`` user (``admin``) with
``[server] default_password`` (``admin`` unless set) when no super-user exists; changing that
key later changes nothing.  :func:`ensure_admin_password` is what the API role does at every
start: warn while the stored hash still verifies against ``admin``, and, when a password is
configured that the stored hash does not verify against, store it (a rotation).  It writes with
a compare-and-set on the old hash, so API replicas starting together settle on one value.

The password never appears in a log line or an error: only the outcome does.

:func:`admin_step` is the API role's step after the migrations: it connects the way the migrate
stage does and runs :func:`ensure_admin_password` with every MongoDB failure handled like the
migrate stage's (:class:`~pulpinit.migrate.retry.Retrier`): transient ones retried until the
deadline (then exit 69), a user that may not read or write ``users`` → 78, anything else → 70.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pulpinit.errors import DependencyUnavailable
from pulpinit.log import Logger
from pulpinit.migrate.retry import Retrier
from pulpinit.settings.resolve import Settings
from pulpinit.targets import MongoTarget, mongo_target
from pulpinit.wait.mongo_client import connect

__all__ = [
    "DEFAULT_LOGIN",
    "DEFAULT_PASSWORD",
    "ITERATIONS",
    "SALT_BYTES",
    "USERS",
    "AdminPassword",
    "admin_step",
    "check_admin",
    "ensure_admin_password",
    "hash_password",
    "verify_password",
]

ITERATIONS = 5000
SALT_BYTES = 8
#: Pulp's built-in ``[server] default_password``.
DEFAULT_PASSWORD = "admin"  # noqa: S105 (Pulp's well-known default, which this module warns about)
#: Pulp's ``[server] default_login``.
DEFAULT_LOGIN = "admin"
#: Pulp's collection of users.
USERS = "users"
#: The client name of the step's MongoDB connection (server logs, currentOp).
APPNAME = "pulpinit-admin"
_ATTEMPTS = 3


def _pbkdf(password: bytes, salt: bytes) -> bytes:
    result = password
    for _ in range(ITERATIONS):
        result = hmac.new(result, salt, hashlib.sha256).digest()
    return result


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Pulp's stored form of ``password``: ``base64(salt),base64(hash)``; a random salt by default."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = _pbkdf(password.encode("utf-8"), salt)
    return f"{base64.b64encode(salt).decode('ascii')},{base64.b64encode(digest).decode('ascii')}"


def _split(stored: str) -> tuple[bytes, bytes] | None:
    salt, sep, digest = stored.partition(",")
    if not sep:
        return None
    try:
        # Python 2's base64 codec wrote line breaks every 76 characters: ignore whitespace.
        return (
            base64.b64decode("".join(salt.split()), validate=True),
            base64.b64decode("".join(digest.split()), validate=True),
        )
    except (binascii.Error, ValueError):
        return None


def verify_password(stored: str, password: str) -> bool:
    """Whether Pulp's stored form ``stored`` is the hash of ``password`` (False when malformed)."""
    parts = _split(stored)
    if parts is None:
        return False
    salt, digest = parts
    return hmac.compare_digest(_pbkdf(password.encode("utf-8"), salt), digest)


class UsersCollection(Protocol):
    """What :func:`ensure_admin_password` needs of pymongo's ``Collection``."""

    def find_one(self, filter: Mapping[str, Any], /) -> Mapping[str, Any] | None: ...

    def update_one(self, filter: Mapping[str, Any], update: Mapping[str, Any], /) -> Any: ...


class AdminPassword(enum.Enum):
    """The outcome of :func:`ensure_admin_password`."""

    ABSENT = "absent"  # no such user yet: the first migration creates it from default_password
    DEFAULT = "default"  # it still has the password "admin" (warned)
    SET = "set"  # the configured password was stored (a rotation)
    OK = "ok"  # it has the configured password, or (none configured) not "admin"


def _stored(user: Mapping[str, Any] | None) -> str:
    value = user.get("password") if user else None
    return value if isinstance(value, str) else ""


def ensure_admin_password(users: UsersCollection, login: str, password: str | None, log: Any) -> AdminPassword:
    """Check (and with ``password``, set) the password of user ``login`` in Pulp's ``users``.

    * user absent → :attr:`AdminPassword.ABSENT` (info ``admin.absent``);
    * ``password`` given and the stored hash does not verify against it → store
      ``hash_password(password)`` (info ``admin.password_set``) → :attr:`AdminPassword.SET`;
    * the stored hash verifies against ``admin`` → warning ``admin.default_password`` →
      :attr:`AdminPassword.DEFAULT` (also when ``admin`` is the configured password);
    * otherwise :attr:`AdminPassword.OK`.

    ``log`` is a structlog logger.  Errors of the database driver propagate.
    """
    for _ in range(_ATTEMPTS):
        user = users.find_one({"login": login})
        if user is None:
            log.info("admin.absent", login=login, hint="the first migration creates it with [server] default_password")
            return AdminPassword.ABSENT
        stored = _stored(user)
        if password is not None and not verify_password(stored, password):
            result = users.update_one(
                {"login": login, "password": user.get("password")}, {"$set": {"password": hash_password(password)}}
            )
            if getattr(result, "matched_count", 1) == 0:
                continue  # another replica changed it meanwhile: look again
            log.info("admin.password_set", login=login)
            stored_now = _stored(users.find_one({"login": login}))
            return AdminPassword.DEFAULT if _warn_default(stored_now, login, log) else AdminPassword.SET
        if _warn_default(stored, login, log):
            return AdminPassword.DEFAULT
        if password is None and _split(stored) is None:
            log.warning(
                "admin.password_unreadable",
                login=login,
                hint="the stored password is not in Pulp's format; set PULP_ADMIN_PASSWORD to replace it",
            )
        return AdminPassword.OK
    log.warning("admin.password_contended", login=login, attempts=_ATTEMPTS)
    return AdminPassword.OK


def _warn_default(stored: str, login: str, log: Any) -> bool:
    if verify_password(stored, DEFAULT_PASSWORD):
        log.warning(
            "admin.default_password",
            login=login,
            hint="the admin user still has Pulp's default password: set PULP_ADMIN_PASSWORD",
        )
        return True
    return False


def admin_step(
    target: MongoTarget,
    login: str,
    password: str | None,
    log: Any,
    *,
    deadline: float,
    timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> AdminPassword:
    """Check (and rotate) the admin password in ``target``'s database, retrying until ``deadline``.

    ``timeout`` bounds one attempt (server selection, connect, each operation); ``deadline`` is
    on ``clock``.  Raises :class:`~pulpinit.errors.DependencyUnavailable` (69) when MongoDB does
    not answer in time, :class:`~pulpinit.errors.NotAuthorized` (78) when the user may not do it,
    :class:`~pulpinit.errors.MigrationFailed` (70) for any other refusal.
    """
    client = connect(target, timeout, heartbeatFrequencyMS=1000, appname=APPNAME)
    try:
        users = client[target.database][USERS]
        retrier = Retrier(target, clock=clock, sleep=sleep, log=log)
        return retrier.call(
            lambda: ensure_admin_password(users, login, password, log),
            what="check the admin user's password",
            action=f"find and update on {USERS}",
            deadline=deadline,
            give_up=lambda why: DependencyUnavailable([f"mongodb: {why}"]),
        )
    finally:
        client.close()


def check_admin(settings: Settings, logger: Logger, *, sleep: Callable[[float], None]) -> AdminPassword:
    """The api role's step: :func:`admin_step` with the settings' login, ``PULP_ADMIN_PASSWORD`` and knobs.

    Warn while the password is ``admin``; store ``PULP_ADMIN_PASSWORD`` (a password from the
    environment, not from server.conf) when the stored hash does not verify against it.
    """
    configured = settings.values.get("server.default_password")
    password = configured.value if configured is not None and configured.from_environment else None
    toolkit = settings.toolkit
    return admin_step(
        mongo_target(settings),
        settings.get("server.default_login") or DEFAULT_LOGIN,
        password,
        logger,
        deadline=time.monotonic() + toolkit.wait_timeout,
        timeout=max(toolkit.probe_timeout, 5.0),
        clock=time.monotonic,
        sleep=sleep,
    )
