"""What a dependency probe is given and what it answers: the domain types every stage shares (it probes nothing).

A probe speaks the dependency's own protocol once and returns a
:class:`ProbeResult`; it never raises for a dependency problem.  Every failure
is sorted into a :class:`Failure` class that carries a one-line hint for the
operator.  The targets are plain frozen data built from the resolved settings
(:func:`mongo_target`, :func:`broker_target`, read through :class:`ResolvedSettings`), so the
probes know nothing about environment variables or server.conf.  ``messaging`` (:func:`messaging_target`) is the
broker of the consumer agents, which only ``check-deps`` probes unless ``PULPINIT_WAIT_MESSAGING``
asks the roles that use it to wait for it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pulpinit.parse import format_hostport, seeds
from pulpinit.redact import MASK, mask_url

#: The dependencies pulpinit waits for, by the name in logs and in the check-deps output.
Dependency = Literal["mongodb", "broker", "messaging"]
#: A resolved TCP address: ``(family, sockaddr)`` as ``getaddrinfo`` gives them.
Address = tuple[int, tuple[Any, ...]]


class Failure(str, enum.Enum):
    """Why a dependency did not answer; the value is the stable name in logs and JSON."""

    DNS = "dns_failure"
    REFUSED = "connection_refused"
    TIMEOUT = "timeout"  # no TCP connection in time (DNS or connect)
    STALLED = "handshake_timeout"  # connected, then the server stopped answering
    TLS = "tls_failure"
    TLS_MISMATCH = "tls_mismatch"  # one side speaks TLS, the other does not
    AUTH = "authentication_failed"
    SASL = "sasl_mismatch"  # no SASL layer, or no mechanism both sides accept
    VHOST = "vhost_not_found"
    PROTOCOL = "protocol_mismatch"
    VERSION = "unsupported_server_version"
    REPLICA_SET = "replica_set_mismatch"
    RESET = "connection_reset"
    NOT_AUTHORIZED = "not_authorized"
    OTHER = "error"

    @property
    def hint(self) -> str:
        return _HINTS[self]


_HINTS = {
    Failure.DNS: "the host name does not resolve: check the Service name and namespace, or set the host explicitly",
    Failure.REFUSED: "nothing listens on that port: is the server running and the port right?",
    Failure.TIMEOUT: "no TCP connection in time: check NetworkPolicies, firewalls, the Service's "
    "endpoints, and that the server is not overloaded",
    Failure.STALLED: "the server accepted the connection but stopped answering at the step the "
    "error names: an overloaded server, or a port that speaks another protocol; RabbitMQ "
    "answers wrong credentials only after ~3 s: `pulpinit check-deps --timeout 5` gives the "
    "definite answer",
    Failure.TLS: "the TLS handshake failed: check the CA file, the client certificate and key, "
    "and that the server's certificate names the host you connect to",
    Failure.TLS_MISMATCH: "one side speaks TLS and the other does not: turn TLS on or off to "
    "match the port (broker: tasks.celery_require_ssl or amqps://, TLS ports are usually 5671; "
    "MongoDB: database.ssl)",
    Failure.AUTH: "credentials rejected: check the user name, the password (or its _FILE) and the auth database",
    Failure.SASL: "the broker and the URL do not agree on how to log in: user:password in the "
    "URL needs SASL PLAIN, no credentials need ANONYMOUS; enable that mechanism on the broker "
    "or change the URL",
    Failure.VHOST: "the virtual host does not exist on the broker: fix the path of broker_url "
    "(amqp://user:pass@host:5672/VHOST; `//` is the default vhost `/`) or create it",
    Failure.PROTOCOL: "the server speaks another protocol or AMQP version (the error says which): "
    "check the port and the broker_url scheme (qpid:// speaks AMQP 0-10 like Qpid C++, "
    "amqp:// speaks AMQP 0-9-1 like RabbitMQ)",
    Failure.VERSION: "the server's version is outside what this pulpinit supports",
    Failure.REPLICA_SET: "the server belongs to another replica set: check PULP_DB_REPLICA_SET",
    Failure.RESET: "the connection was closed during the handshake: is it the right service, and is it still starting?",
    Failure.NOT_AUTHORIZED: "the user may log in but not write Pulp's database: grant it the readWrite role "
    "on the Pulp database (db.grantRolesToUser)",
    Failure.OTHER: "unexpected error: see the error text",
}


@dataclass(frozen=True)
class MongoTarget:
    """Where and how to reach MongoDB (from server.conf's [database] section)."""

    seeds: tuple[tuple[str, int], ...]
    database: str = "pulp_database"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    replica_set: str | None = None
    ssl: bool = False
    ca_path: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    verify_ssl: bool = True

    @property
    def endpoint(self) -> str:
        """The seeds as ``mongodb://[user:***@]h:p,…/db?replicaSet=…``; never the password."""
        hosts = ",".join(format_hostport(h, p) for h, p in self.seeds)
        cred = f"{self.username}:{MASK}@" if self.username else ""
        query = f"?replicaSet={self.replica_set}" if self.replica_set else ""
        return f"mongodb://{cred}{hosts}/{self.database}{query}"


@dataclass(frozen=True)
class BrokerTarget:
    """The Celery broker (server.conf's ``tasks.broker_url`` and its TLS keys)."""

    url: str = field(repr=False)  # may hold a password: use ``endpoint`` for display
    ssl: bool = False
    cacert: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    login_method: str = ""  # tasks.login_method ("": not set, as Pulp tests it)

    @property
    def endpoint(self) -> str:
        return mask_url(self.url)


@dataclass(frozen=True)
class MessagingTarget:
    """gofer's broker of the consumer agents (server.conf's ``[messaging]``): Pulp connects to ``transport+url``."""

    transport: str
    url: str = field(repr=False)  # may hold a password: use ``endpoint`` for display
    cacert: str = ""
    clientcert: str = ""

    @property
    def endpoint(self) -> str:
        return f"{self.transport}+{mask_url(self.url)}"


@dataclass(frozen=True)
class ProbeResult:
    """One attempt's outcome; the check-deps JSON is built from it."""

    name: Dependency
    endpoint: str  # credentials masked
    ok: bool
    latency_ms: float
    version: str | None = None
    failure: Failure | None = None
    error: str | None = None  # one line, secrets masked
    #: With ``connection_refused``: the resolved addresses that refused, for the armed wait
    #: (:mod:`pulpinit.wait.armed`) to knock on without resolving the name again. Not in the JSON.
    refused: tuple[Address, ...] = ()
    #: Up, but with a caveat the operator should know (e.g. TLS that verifies nothing); one line each.
    warnings: tuple[str, ...] = ()

    @property
    def hint(self) -> str | None:
        return self.failure.hint if self.failure else None

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "ok": self.ok,
            "latency_ms": round(self.latency_ms, 1),
            "version": self.version,
            "error": None if self.ok else f"{self.failure.value if self.failure else 'error'}: {self.error}",
            "hint": self.hint,
            "warnings": list(self.warnings),
        }


#: The server.conf key each dependency's address comes from: its source is the endpoint's source.
ADDRESS_KEYS: dict[Dependency, str] = {
    "mongodb": "database.seeds",
    "broker": "tasks.broker_url",
    "messaging": "messaging.url",
}


class _Sourced(Protocol):
    @property
    def source(self) -> str: ...


class ResolvedSettings(Protocol):
    """What the targets read of :class:`pulpinit.settings.resolve.Settings`: resolved values by key."""

    @property
    def values(self) -> Mapping[str, _Sourced]: ...

    def get(self, key: str) -> str: ...

    def boolean(self, key: str) -> bool: ...


def address_sources(settings: ResolvedSettings) -> dict[str, str]:
    """Where each dependency's address came from, as ``pulpinit settings`` names it (``k8s:db``, ``default``)."""
    return {name: settings.values[key].source for name, key in ADDRESS_KEYS.items() if key in settings.values}


def mongo_target(settings: ResolvedSettings) -> MongoTarget:
    """MongoDB as server.conf's ``[database]`` section (resolved) describes it."""

    def optional(key: str) -> str | None:
        return settings.get(key) or None

    # Pulp logs in only with a user and a password (mongoengine's get_db): a user alone connects
    # without logging in, and so does pulpinit (the settings stage warns about it).
    username, password = optional("database.username"), optional("database.password")
    logs_in = bool(username and password)
    return MongoTarget(
        seeds=seeds(settings.get("database.seeds"), "database.seeds"),
        database=settings.get("database.name"),
        username=username if logs_in else None,
        password=password if logs_in else None,
        replica_set=optional("database.replica_set"),
        ssl=settings.boolean("database.ssl"),
        ca_path=optional("database.ca_path"),
        ssl_certfile=optional("database.ssl_certfile"),
        ssl_keyfile=optional("database.ssl_keyfile"),
        verify_ssl=settings.boolean("database.verify_ssl"),
    )


def broker_target(settings: ResolvedSettings) -> BrokerTarget:
    """The broker as ``tasks.broker_url`` and its TLS keys (resolved) describe it."""
    return BrokerTarget(
        url=settings.get("tasks.broker_url"),
        ssl=settings.boolean("tasks.celery_require_ssl"),
        cacert=settings.get("tasks.cacert") or None,
        certfile=settings.get("tasks.certfile") or None,
        keyfile=settings.get("tasks.keyfile") or None,
        login_method=settings.get("tasks.login_method"),
    )


def messaging_target(settings: ResolvedSettings) -> MessagingTarget:
    """The consumer agents' broker as ``[messaging]`` (resolved) describes it."""
    return MessagingTarget(
        transport=settings.get("messaging.transport"),
        url=settings.get("messaging.url"),
        cacert=settings.get("messaging.cacert"),
        clientcert=settings.get("messaging.clientcert"),
    )
