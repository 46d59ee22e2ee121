"""The checks of the resolved values: each one as Pulp's own clients would read it, or exit 78.

Every value is parsed by its validator (:mod:`pulpinit.parse`); the broker URL as kombu reads it
(:mod:`pulpinit.settings.brokerurl`), the consumer agents' URL as gofer reads it
(:mod:`pulpinit.settings.goferurl`), and the TLS files a switch turns on must be readable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from pulpinit import parse
from pulpinit.errors import EnvValueError
from pulpinit.regularfile import unreadable
from pulpinit.settings import brokerurl, goferurl
from pulpinit.settings.value import Value

#: server.conf keys of the TLS files, by the switch that turns them on (Pulp opens them only then).
TLS_FILES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "tasks.celery_require_ssl": ("tasks.cacert", "tasks.certfile", "tasks.keyfile"),
        "database.ssl": ("database.ca_path", "database.ssl_certfile", "database.ssl_keyfile"),
    }
)


_VALIDATORS: Mapping[str, Callable[[str, str], object]] = {
    "database.seeds": parse.seeds,
    "database.name": parse.db_name,
    "database.ssl": parse.boolean,
    "database.verify_ssl": parse.boolean,
    "tasks.celery_require_ssl": parse.boolean,
    "tasks.broker_url": lambda v, o: parse.url(v, o, parse.BROKER_SCHEMES),
    "messaging.url": lambda v, o: parse.url(v, o, parse.MESSAGING_SCHEMES),
    "server.server_name": parse.host,
}


#: Keys that must not be empty, whatever set them: why.
_NOT_EMPTY: Mapping[str, str] = MappingProxyType(
    {
        "server.default_password": "is empty: Pulp would give the admin user an empty password; "
        "set a password, or unset it",
        "server.server_name": "is empty: Pulp's URLs and the celery node names need a host name; "
        "set it, or unset it for the host name",
    }
)


def validate(resolved: Mapping[str, Value], unreadable: Mapping[str, str]) -> None:
    for key, value in resolved.items():
        if value.kind == "server.conf" and key in unreadable:
            raise EnvValueError(value.variable or key, unreadable[key])
        if value.kind == "server.conf" and key not in _VALIDATORS and key not in _NOT_EMPTY:
            continue  # keys pulpinit neither writes nor uses are Pulp's business
        origin = value.variable or key
        if key in _NOT_EMPTY and not value.value:
            raise EnvValueError(origin, _NOT_EMPTY[key])
        parse.text(value.value, origin, secret=value.secret or value.kind == "file")
        check = _VALIDATORS.get(key)
        if check:
            check(value.value, origin)
    _check_tls_files(resolved)
    _check_as_pulp_connects(resolved)
    seeds = resolved["database.seeds"]
    count = len(parse.seeds(seeds.value, seeds.variable or "database.seeds"))
    if count > 1 and not resolved["database.replica_set"].value:
        raise EnvValueError(
            seeds.variable or "database.seeds",
            f"{count} seeds need a replica set name: set PULP_DB_REPLICA_SET",
        )


def _check_as_pulp_connects(resolved: Mapping[str, Value]) -> None:
    """What Pulp's own clients refuse whatever the servers say (the differential tier proves each):
    a broker URL kombu cannot use (:mod:`pulpinit.settings.brokerurl`), a database password without
    a user (connection.py raises), and a write concern other than ``majority``/``all`` (connection.py
    raises PLP0043)."""
    url, method = resolved["tasks.broker_url"], resolved.get("tasks.login_method")
    why = brokerurl.refusal(url.value, method.value if method else "")
    if why:
        raise EnvValueError(url.variable or "tasks.broker_url", f"{parse.quoted(url.value)}: {why}")
    user, password = resolved["database.username"], resolved["database.password"]
    if password.value and not user.value:
        raise EnvValueError(
            password.variable or "database.password",
            "is set without database.username: Pulp refuses to start with a password but no user; "
            "set the user or remove the password",
        )
    concern = resolved.get("database.write_concern")
    if concern is not None and concern.value not in ("majority", "all"):
        raise EnvValueError(
            concern.variable or "database.write_concern",
            f"{parse.quoted(concern.value)}: Pulp accepts only majority or all",
        )


def check_messaging(resolved: Mapping[str, Value]) -> None:
    """With ``PULPINIT_WAIT_MESSAGING``, a ``[messaging]`` gofer cannot use whatever the broker says is
    exit 78 (:func:`pulpinit.settings.goferurl.refusal`), and so is a TLS file it names that cannot
    be read (gofer checks both files before it connects).  Without the knob nothing waits for it:
    ``check-deps`` reports the same reasons as the probe's."""
    url, transport = resolved["messaging.url"], resolved["messaging.transport"]
    refused = goferurl.refusal(transport.value, url.value)
    if refused is not None:
        culprit = transport if refused.key == "messaging.transport" else url
        raise EnvValueError(culprit.variable or refused.key, f"{parse.quoted(culprit.value)}: {refused}")
    if not goferurl.read(transport.value, url.value).tls:
        return
    for key in ("messaging.cacert", "messaging.clientcert"):
        value = resolved[key]
        problem = unreadable(value.value) if value.value and value.kind != "default" else None
        if problem:
            raise EnvValueError(value.variable or key, f"{value.value}: {problem} (messaging.url uses TLS)")


def client_warnings(resolved: Mapping[str, Value]) -> list[str]:
    """What Pulp's MongoDB client does silently that the operator should know (the differential tier
    shows both): mongoengine (Pulp's ``get_db``) logs in only with a user *and* a password, so a user
    alone means no login at all; a ``replica_set`` line left empty is passed on as ``replicaSet=''``,
    which the pymongo Pulp 2.21 ships (3.2) takes for no replica set, but newer 3.x releases (3.13)
    take for a set named '' that no server belongs to."""
    found = []
    user, password = resolved["database.username"], resolved["database.password"]
    if user.value and not password.value:
        found.append(
            f"the MongoDB user {user.value!r} is not used: without database.password Pulp connects "
            "without logging in (set the password to log in as that user)"
        )
    replica_set = resolved["database.replica_set"]
    if replica_set.kind != "default" and not replica_set.value:
        found.append(
            f"{replica_set.variable or 'database.replica_set'} is empty: Pulp's pymongo 3.2 then uses no replica "
            "set, but a newer pymongo (3.13) looks for a set named '' and finds no server; name the set or "
            "remove the line"
        )
    return found


def _check_tls_files(resolved: Mapping[str, Value]) -> None:
    """A TLS file that server.conf or the environment names and Pulp will open (its switch is on) must be
    readable: exit 78 naming it.  Pulp's built-in default paths are left to the probes, which name them."""
    for switch, keys in TLS_FILES.items():
        if not parse.boolean(resolved[switch].value, resolved[switch].variable or switch):
            continue
        for key in keys:
            value = resolved.get(key)
            if value is None or not value.value or value.kind == "default":
                continue
            problem = unreadable(value.value)
            if problem:
                raise EnvValueError(value.variable or key, f"{value.value}: {problem} ({switch} is on)")
