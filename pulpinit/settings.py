"""Resolve server.conf's values from the environment: one pure function, one precedence.

:func:`from_environ` takes the environment, the live values of server.conf and
the host name, and returns a frozen :class:`Settings`.  It reads no files
except the ``*_FILE`` secrets it is pointed at, and changes nothing.

Precedence, highest first, for every server.conf key (this is the only place
it is written down in code; the README repeats it):

1. explicit variables: ``PULP_DB_SEEDS``, ``PULP_BROKER_URL``, … (:data:`EXPLICIT`)
   and ``PULP_CONF__<SECTION>__<KEY>`` for any key, each also as ``*_FILE``
   where the value is a secret;
2. Kubernetes service variables of the database and broker Services
   (``PULPINIT_DB_SERVICE``/``PULPINIT_MSG_SERVICE``, default ``db``/``msg``,
   then the 2015 names ``pulp-db``/``pulp-msg``);
3. ``SERVICE_HOST``, the 2014 fallback host for both services;
4. the value already in server.conf;
5. Pulp's built-in default.

Its one side effect: every secret it meets (passwords, URL credentials, ``_FILE``
contents, in the environment and in server.conf) is registered with the
process-wide redactor *before* anything parses it, so that no error can show it.

Layers 2 and 3 give host and port; from them pulpinit derives
``database.seeds``, ``messaging.url`` (``tcp://host:port``) and
``tasks.broker_url`` (``qpid://user[:password]@host:port/``, or ``amqp://…//``
when ``messaging.transport`` is ``rabbitmq``).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pulpinit import redact, secretfile, values
from pulpinit.discovery import Endpoint, find_service, looked_for
from pulpinit.errors import EnvValueError
from pulpinit.knobs import Toolkit, knob_sources, toolkit_from_environ
from pulpinit.probe import BrokerTarget, MongoTarget
from pulpinit.redact import REDACTOR, is_secret_key, may_hold_secret

__all__ = ["DEFAULTS", "EXPLICIT", "Settings", "Value", "from_environ", "is_secret_key"]

#: Pulp 2.21's built-in defaults for the keys pulpinit resolves.
DEFAULTS: Mapping[str, str] = MappingProxyType(
    {
        "database.name": "pulp_database",
        "database.seeds": "localhost:27017",
        "database.username": "",
        "database.password": "",
        "database.replica_set": "",
        "database.ssl": "false",
        "database.ssl_keyfile": "",
        "database.ssl_certfile": "",
        "database.verify_ssl": "true",
        "database.ca_path": "/etc/pki/tls/certs/ca-bundle.crt",
        "messaging.url": "tcp://localhost:5672",
        "messaging.transport": "qpid",
        "tasks.broker_url": "qpid://localhost/",
        "tasks.celery_require_ssl": "false",
        "tasks.cacert": "/etc/pki/pulp/qpid/ca.crt",
        "tasks.keyfile": "/etc/pki/pulp/qpid/client.crt",
        "tasks.certfile": "/etc/pki/pulp/qpid/client.crt",
    }
)


@dataclass(frozen=True)
class Var:
    """An explicit variable and the server.conf key it sets."""

    name: str
    key: str
    meaning: str
    secret: bool = False  # holds a secret (a password, or a URL that may hold one): `_FILE` form


EXPLICIT: tuple[Var, ...] = (
    Var("PULP_DB_SEEDS", "database.seeds", "MongoDB seeds, `h1:27017,h2:27017`"),
    Var("PULP_DB_NAME", "database.name", "database name"),
    Var("PULP_DB_USERNAME", "database.username", "MongoDB user (empty: no authentication)"),
    Var("PULP_DB_PASSWORD", "database.password", "MongoDB password", secret=True),
    Var("PULP_DB_REPLICA_SET", "database.replica_set", "replica set name (required with several seeds)"),
    Var("PULP_BROKER_URL", "tasks.broker_url", "Celery broker URL (`qpid://…` or `amqp://…`)", secret=True),
    Var("PULP_MESSAGING_URL", "messaging.url", "messaging URL (`tcp://host:port` or `ssl://…`)", secret=True),
    Var("PULP_SERVER_NAME", "server.server_name", "server name; also the celery node name"),
    Var(
        "PULP_ADMIN_PASSWORD",
        "server.default_password",
        "the admin user's password: the first migration creates the user with it, the API role rotates it",
        secret=True,
    ),
)

#: Inputs of the broker URL derivation (layer 2/3), highest first.
BROKER_USER_VARS = ("PULP_BROKER_USER", "MSG_SERVICE_USER")
BROKER_PASSWORD_VARS = ("PULP_BROKER_PASSWORD", "MSG_SERVICE_PASSWORD")
GENERIC_PREFIX = "PULP_CONF__"
_GENERIC_PART = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
#: The secret variables and the key that decides how secret they are (the broker password has none).
_SECRET_VARS = {v.name: v.key for v in EXPLICIT if v.secret} | {
    n: "tasks.broker_password" for n in BROKER_PASSWORD_VARS
}


@dataclass(frozen=True)
class Value:
    """One effective server.conf value and where it came from."""

    value: str = field(repr=False)
    # "env:PULP_DB_SEEDS", "file:PULP_DB_PASSWORD_FILE", "k8s:db", "env:SERVICE_HOST", "server.conf", "default"
    source: str
    variable: str | None = None  # the environment variable (or server.conf key) to name in errors
    secret: bool = False  # a password, a URL with credentials, or a _FILE's contents
    display: str = ""  # the value as it may be printed (see redact.display)
    option: tuple[str, str] = ("", "")  # (section, key) in server.conf

    @property
    def from_environment(self) -> bool:
        """True when pulpinit must write it into server.conf (layers 1-3)."""
        return self.source.startswith(("env:", "file:", "k8s:"))


def _value(
    key: str,
    raw: str,
    source: str,
    variable: str | None = None,
    *,
    from_file: bool = False,
    option: tuple[str, str] | None = None,
) -> Value:
    """A :class:`Value` whose secrecy and display follow the one rule (:mod:`pulpinit.redact`)."""
    secret = from_file or redact.is_secret(key, raw)
    where = option or (key.partition(".")[0], key.partition(".")[2])
    return Value(raw, source, variable, secret, redact.display(key, raw, secret=from_file), where)


@dataclass(frozen=True)
class Settings:
    """The resolved settings: server.conf values by ``section.key``, and pulpinit's knobs."""

    values: Mapping[str, Value]
    toolkit: Toolkit
    knob_sources: Mapping[str, str]
    warnings: tuple[str, ...] = ()  # one line each, logged as settings.warning
    secret_variables: frozenset[str] = frozenset()  # consumed secrets: kept out of the child's environment

    def get(self, key: str) -> str:
        return self.values[key].value if key in self.values else DEFAULTS.get(key, "")

    def to_write(self) -> tuple[tuple[str, Value], ...]:
        """The ``(section.key, value)`` pairs that came from the environment, in key order.

        Write each to ``value.option`` (section, key): a section name may hold dots.
        """
        return tuple((k, v) for k, v in sorted(self.values.items()) if v.from_environment)

    def secrets(self) -> set[str]:
        """Every secret string (passwords, URL passwords) to register with the redactor."""
        found: set[str] = set()
        for key, value in self.values.items():
            if value.secret and value.value:
                found.update(redact.secrets_in(value.value, whole=is_secret_key(key) or "://" not in value.value))
        return found

    def mongo_target(self) -> MongoTarget:
        def optional(key: str) -> str | None:
            return self.get(key) or None

        return MongoTarget(
            seeds=values.seeds(self.get("database.seeds"), "database.seeds"),
            database=self.get("database.name"),
            username=optional("database.username"),
            password=optional("database.password"),
            replica_set=optional("database.replica_set"),
            auth_source=self.toolkit.db_auth_source,
            ssl=values.boolean(self.get("database.ssl"), "database.ssl"),
            ca_path=optional("database.ca_path"),
            ssl_certfile=optional("database.ssl_certfile"),
            ssl_keyfile=optional("database.ssl_keyfile"),
            verify_ssl=values.boolean(self.get("database.verify_ssl"), "database.verify_ssl"),
        )

    def broker_target(self) -> BrokerTarget:
        return BrokerTarget(
            url=self.get("tasks.broker_url"),
            ssl=values.boolean(self.get("tasks.celery_require_ssl"), "tasks.celery_require_ssl"),
            cacert=self.get("tasks.cacert") or None,
            certfile=self.get("tasks.certfile") or None,
            keyfile=self.get("tasks.keyfile") or None,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "settings": {k: {"value": REDACTOR(v.display), "source": v.source} for k, v in sorted(self.values.items())},
            "pulpinit": {
                name: {"value": REDACTOR(_knob_display(self.toolkit, name)), "source": src}
                for name, src in self.knob_sources.items()
            },
        }


def _knob_display(toolkit: Toolkit, name: str) -> str:
    from pulpinit.knobs import KNOBS, knob_field

    knob = next(k for k in KNOBS if k.name == name)
    raw = getattr(toolkit, knob_field(knob))
    if raw is None:
        return ""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if knob.name == "PULPINIT_UMASK":
        return f"{raw:04o}"
    return f"{raw:g}" if isinstance(raw, float) else redact.mask_text(str(raw), stop_at_space=False)


def from_environ(
    environ: Mapping[str, str], conf: Mapping[str, str] | None = None, *, hostname: str = "localhost"
) -> Settings:
    """Resolve every value (see the module docstring for the precedence). Raises EnvValueError (78)."""
    conf = conf or {}
    secret_vars = register_secrets(environ, conf)
    toolkit = toolkit_from_environ(environ)
    explicit = _explicit_values(environ)
    resolved: dict[str, Value] = {}
    for key, raw in conf.items():
        resolved[key] = _value(key, raw, "server.conf", f"server.conf [{key.replace('.', '] ', 1)}")
    discovered, warnings = _discovered_values(environ, toolkit, explicit, resolved)
    resolved.update(discovered)
    resolved.update(explicit)
    for key, default in DEFAULTS.items():
        resolved.setdefault(key, _value(key, default, "default"))
    resolved.setdefault("server.server_name", _value("server.server_name", hostname, "default"))
    _validate(resolved)
    return Settings(
        MappingProxyType(resolved), toolkit, MappingProxyType(knob_sources(environ)), tuple(warnings), secret_vars
    )


def register_secrets(environ: Mapping[str, str], conf: Mapping[str, str] = MappingProxyType({})) -> frozenset[str]:
    """Register every secret in the environment and server.conf with the redactor, unparsed.

    Returns the names of the secret variables pulpinit consumes (passwords, URLs with
    credentials, and the ``_FILE`` variables of secrets): the role's process does not need them.
    """
    consumed: set[str] = set()
    for name, raw in environ.items():
        base = name.removesuffix("_FILE")
        key = _SECRET_VARS.get(base) or _generic_key(base)
        if key is None:
            if name == "PULPINIT_CELERY_ARGS":  # extra celery arguments may hold a broker URL
                REDACTOR.add_value(raw, whole=False)
                if redact.is_secret("", raw):
                    consumed.add(name)
            continue
        if base != name:
            if base in _SECRET_VARS or may_hold_secret(key):
                consumed.add(name)  # the contents are registered as they are read (secretfile)
            continue
        whole = is_secret_key(key)
        REDACTOR.add_value(raw, whole=whole)
        if whole or redact.is_secret(key, raw):
            consumed.add(name)
    for key, raw in conf.items():
        REDACTOR.add_value(raw, whole=is_secret_key(key))
    return frozenset(consumed)


def _generic_key(name: str) -> str | None:
    """``PULP_CONF__TASKS__BROKER_URL`` → ``tasks.broker_url``; None for other names or bad shapes."""
    if not name.startswith(GENERIC_PREFIX):
        return None
    parts = name[len(GENERIC_PREFIX) :].lower().split("__")
    return ".".join(parts) if len(parts) == 2 else None


def _explicit_values(environ: Mapping[str, str]) -> dict[str, Value]:
    found: dict[str, Value] = {}
    for var in EXPLICIT:
        raw = secretfile.lookup(environ, var.name, allow_file=var.secret)
        if raw is not None:
            found[var.key] = _from_variable(environ, var.key, var.name, raw)
    explicit_vars = {var.key: var.name for var in EXPLICIT if var.key in found}
    generic_vars: dict[str, str] = {}
    for name in sorted(environ):
        if not name.startswith(GENERIC_PREFIX):
            continue
        base = name.removesuffix("_FILE")
        parts = base[len(GENERIC_PREFIX) :].lower().split("__")
        if len(parts) != 2 or not all(_GENERIC_PART.match(p) for p in parts):
            raise EnvValueError(
                name, "expected PULP_CONF__<SECTION>__<KEY> (split at '__' only), e.g. PULP_CONF__TASKS__CACERT"
            )
        section, option = parts
        key = f"{section}.{option}"
        if base != name and not may_hold_secret(key):
            raise EnvValueError(name, f"_FILE is only read for secrets (passwords, URLs); set {base} instead")
        other = explicit_vars.get(key) or generic_vars.get(key)
        if other is not None and other != base:
            raise EnvValueError(
                name, f"sets [{section}] {option}, which {other} sets too: ambiguous, set only one of them"
            )
        raw = secretfile.lookup(environ, base, allow_file=may_hold_secret(key))
        if raw is not None:
            generic_vars[key] = base
            found[key] = _from_variable(environ, key, base, raw, (section, option))
    return found


def _from_variable(
    environ: Mapping[str, str], key: str, name: str, raw: str, option: tuple[str, str] | None = None
) -> Value:
    origin = secretfile.origin(environ, name)
    from_file = origin != name
    source = f"file:{origin}" if from_file else f"env:{name}"
    return _value(key, raw, source, origin, from_file=from_file, option=option)


def _endpoint(
    environ: Mapping[str, str], knob: str, services: tuple[str, ...], default_port: int, warnings: list[str]
) -> Endpoint | None:
    for index, service in enumerate(services):
        found = find_service(environ, service, default_port)
        if found:
            return found
        if index == 0 and knob in environ:
            warnings.append(
                f"{knob}={service}: no service variables for it ({', '.join(looked_for(service))} are unset); "
                "is the Service name right, and did the Service exist when the pod started?"
            )
    if "SERVICE_HOST" in environ:
        host = values.host(environ["SERVICE_HOST"], "SERVICE_HOST")
        return Endpoint(host, default_port, "", "SERVICE_HOST")
    return None


def _source(endpoint: Endpoint) -> str:
    return endpoint.source if endpoint.service else "env:SERVICE_HOST"


def _discovered_values(
    environ: Mapping[str, str], toolkit: Toolkit, explicit: Mapping[str, Value], conf: Mapping[str, Value]
) -> tuple[dict[str, Value], list[str]]:
    found: dict[str, Value] = {}
    warnings: list[str] = []
    user, password = _broker_credentials(environ)  # read even when unused: a bad _FILE is an error
    db = _endpoint(environ, "PULPINIT_DB_SERVICE", (toolkit.db_service, "pulp-db"), 27017, warnings)
    if db:
        found["database.seeds"] = _value("database.seeds", db.hostport, _source(db), db.variable)
    msg = _endpoint(environ, "PULPINIT_MSG_SERVICE", (toolkit.msg_service, "pulp-msg"), 5672, warnings)
    if msg:
        found["messaging.url"] = _value("messaging.url", f"tcp://{msg.hostport}", _source(msg), msg.variable)
        transport = explicit.get("messaging.transport") or conf.get("messaging.transport")
        rabbit = transport is not None and transport.value.strip().lower() == "rabbitmq"
        cred = urllib.parse.quote(user, safe="")
        if password:
            cred += ":" + urllib.parse.quote(password, safe="")
        url = f"amqp://{cred}@{msg.hostport}//" if rabbit else f"qpid://{cred}@{msg.hostport}/"
        found["tasks.broker_url"] = _value("tasks.broker_url", url, _source(msg), msg.variable)
    return found, warnings


def _broker_credentials(environ: Mapping[str, str]) -> tuple[str, str | None]:
    """User (default ``guest``, as in 2014) and password for the derived broker URL."""

    def first(names: tuple[str, ...], secret: bool) -> str | None:
        for name in names:
            raw = secretfile.lookup(environ, name, allow_file=secret)
            if raw is not None:
                origin = secretfile.origin(environ, name)
                if not secret and not raw:
                    raise EnvValueError(origin, "is empty; set the broker user, or unset it for the default user guest")
                return values.text(raw, origin, secret=secret)
        return None

    return first(BROKER_USER_VARS, secret=False) or "guest", first(BROKER_PASSWORD_VARS, secret=True)


_VALIDATORS: Mapping[str, Callable[[str, str], object]] = {
    "database.seeds": values.seeds,
    "database.name": values.db_name,
    "database.ssl": values.boolean,
    "database.verify_ssl": values.boolean,
    "tasks.celery_require_ssl": values.boolean,
    "tasks.broker_url": lambda v, o: values.url(v, o, values.BROKER_SCHEMES),
    "messaging.url": lambda v, o: values.url(v, o, values.MESSAGING_SCHEMES),
    "server.server_name": values.host,
}


def _validate(resolved: Mapping[str, Value]) -> None:
    for key, value in resolved.items():
        if value.source == "server.conf" and key not in _VALIDATORS:
            continue  # keys pulpinit neither writes nor uses are Pulp's business
        origin = value.variable or key
        values.text(value.value, origin, secret=value.secret or value.source.startswith("file:"))
        check = _VALIDATORS.get(key)
        if check and (value.value or key != "server.server_name"):
            check(value.value, origin)
    _check_tls_files(resolved)
    seeds = resolved["database.seeds"]
    count = len(values.seeds(seeds.value, seeds.variable or "database.seeds"))
    if count > 1 and not resolved["database.replica_set"].value:
        raise EnvValueError(
            seeds.variable or "database.seeds",
            f"{count} seeds need a replica set name: set PULP_DB_REPLICA_SET",
        )


def _check_tls_files(resolved: Mapping[str, Value]) -> None:
    """A TLS file that server.conf or the environment names and Pulp will open (its switch is on) must be
    readable: exit 78 naming it.  Pulp's built-in default paths are left to the probes, which name them."""
    from pulpinit import tls

    def is_on(switch: str) -> bool:
        return values.boolean(resolved[switch].value, resolved[switch].variable or switch)

    for key, switch in tls.files_in_use(lambda k: resolved[k].value if k in resolved else "", is_on):
        value = resolved[key]
        problem = tls.unreadable(value.value) if value.source != "default" else None
        if problem:
            raise EnvValueError(value.variable or key, f"{value.value}: {problem} ({switch} is on)")
