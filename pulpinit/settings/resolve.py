"""Resolve server.conf's values from the environment: one pure function, one precedence.

:func:`from_environ` takes the environment, the live values of server.conf and
the host name, and returns a frozen :class:`Settings`.  It reads no files
except the ``*_FILE`` secrets it is pointed at and the TLS files the
configuration names (which must be readable, see :data:`pulpinit.settings.checks.TLS_FILES`), and
changes nothing.

Precedence, highest first, for every server.conf key (this is the only place
it is written down in code; docs/configuration.md repeats it):

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
``tasks.broker_url`` (``qpid://user:password@host:port/``, ``qpid://host:port/`` without a
password, or ``amqp://…//`` when ``messaging.transport`` is ``rabbitmq``).
"""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pulpinit import log, parse, redact
from pulpinit.errors import EnvValueError
from pulpinit.knobs import KNOBS, removed_warnings
from pulpinit.redact import REDACTOR, is_secret_key, may_hold_secret
from pulpinit.regularfile import FileProblem, read_regular
from pulpinit.settings import checks, secretfile
from pulpinit.settings.confvars import generic_key, read_variables
from pulpinit.settings.discovery import Endpoint, find_service, looked_for
from pulpinit.settings.toolkit import Toolkit, knob_display, knob_sources, toolkit_from_environ
from pulpinit.settings.value import Value, secrets_of

__all__ = ["DEFAULTS", "EXPLICIT", "Settings", "from_environ", "is_secret_key"]

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
        "messaging.cacert": "/etc/pki/qpid/ca/ca.crt",
        "messaging.clientcert": "/etc/pki/qpid/client/client.pem",
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

    @property
    def secret(self) -> bool:
        """Whether it may hold a secret (a password, or a URL that may hold one): the `_FILE` form.

        The one rule of :mod:`pulpinit.redact` decides, by the key it sets.
        """
        return may_hold_secret(self.key)


EXPLICIT: tuple[Var, ...] = (
    Var("PULP_DB_SEEDS", "database.seeds", "MongoDB seeds, `h1:27017,h2:27017` (IPv6 as `[::1]:27017`)"),
    Var("PULP_DB_NAME", "database.name", "database name"),
    Var("PULP_DB_USERNAME", "database.username", "MongoDB user (empty: no authentication)"),
    Var("PULP_DB_PASSWORD", "database.password", "MongoDB password"),
    Var("PULP_DB_REPLICA_SET", "database.replica_set", "replica set name (required with several seeds)"),
    Var("PULP_BROKER_URL", "tasks.broker_url", "Celery broker URL (`qpid://…` or `amqp://…`)"),
    Var(
        "PULP_MESSAGING_URL",
        "messaging.url",
        "the consumer agents' broker (gofer): `tcp://`, `ssl://`, `amqp://`, `amqps://`",
    ),
    Var("PULP_SERVER_NAME", "server.server_name", "server name; also the celery node name"),
    Var(
        "PULP_ADMIN_PASSWORD",
        "server.default_password",
        "the admin user's password: the first migration creates the user with it, the API role rotates it",
    ),
)

#: Inputs of the broker URL derivation (layer 2/3), highest first.
BROKER_USER_VARS = ("PULP_BROKER_USER", "MSG_SERVICE_USER")
BROKER_PASSWORD_VARS = ("PULP_BROKER_PASSWORD", "MSG_SERVICE_PASSWORD")
GENERIC_PREFIX = "PULP_CONF__"
#: Knobs that are command lines, which may hold a URL with a password.
_COMMAND_KNOBS = ("PULPINIT_CELERY_ARGS", "PULPINIT_PRE_MIGRATE")
#: The secret variables and the key that decides how secret they are (the broker password has none).
_SECRET_VARS = {v.name: v.key for v in EXPLICIT if v.secret} | {
    n: "tasks.broker_password" for n in BROKER_PASSWORD_VARS
}


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
    log_word_secrets: tuple[str, ...] = ()  # variables whose secret is a word of the log's vocabulary

    def get(self, key: str) -> str:
        return self.values[key].value if key in self.values else DEFAULTS.get(key, "")

    def to_write(self) -> tuple[tuple[str, Value], ...]:
        """The ``(section.key, value)`` pairs that came from the environment, in key order.

        Write each to ``value.option`` (section, key): a section name may hold dots.
        """
        return tuple((k, v) for k, v in sorted(self.values.items()) if v.from_environment)

    def secrets(self) -> set[str]:
        """Every secret string (passwords, URL passwords) to register with the redactor."""
        return secrets_of(self.values)

    def boolean(self, key: str) -> bool:
        """A boolean key, read as Pulp reads it (validated by :func:`from_environ` already)."""
        return parse.boolean(self.get(key), key)

    def as_json(self) -> dict[str, Any]:
        return {
            "settings": {
                k: {"value": REDACTOR(v.display), "source": REDACTOR(v.source)} for k, v in sorted(self.values.items())
            },
            "pulpinit": {
                knob.name: {
                    "value": REDACTOR(knob_display(self.toolkit, knob)),
                    "source": REDACTOR(self.knob_sources[knob.name]),
                }
                for knob in KNOBS
            },
        }


def from_environ(
    environ: Mapping[str, str],
    conf: Mapping[str, str] | None = None,
    *,
    hostname: str = "localhost",
    toolkit: Toolkit | None = None,
    unreadable: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every value (see the module docstring for the precedence). Raises EnvValueError (78).

    ``toolkit`` is the parsed knobs when the caller parsed them already (the pipeline does,
    to find server.conf): they are parsed once per run.  ``unreadable`` names the values of
    server.conf that Pulp's parser raises on (``section.key``: why): one that the environment does
    not replace is an error, since Pulp would fail reading it.
    """
    conf = conf or {}
    register_secrets(environ, conf)
    toolkit = toolkit or toolkit_from_environ(environ)
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
    checks.validate(resolved, unreadable or {})
    if toolkit.wait_messaging:
        checks.check_messaging(resolved)
    warnings += checks.client_warnings(resolved) + removed_warnings(environ)
    return Settings(
        MappingProxyType(resolved),
        toolkit,
        MappingProxyType(knob_sources(environ)),
        tuple(warnings),
        log_word_secrets(resolved, environ),
    )


def log_word_secrets(resolved: Mapping[str, Value], environ: Mapping[str, str]) -> tuple[str, ...]:
    """The variables (or server.conf keys) whose secret is a word of the log lines' own vocabulary
    (:func:`pulpinit.log.is_log_word`): masked in every value, but shown by every key, event name
    or level that is that word."""
    origins = set()
    for key, value in resolved.items():
        if value.secret and value.value:
            found = redact.secrets_in(value.value, whole=is_secret_key(key) or value.kind == "file")
            if any(log.is_log_word(secret) for secret in found):
                origins.add(_secret_origin(key, value, environ))
    for name in _COMMAND_KNOBS:  # command lines may hold a URL
        if any(log.is_log_word(secret) for secret in redact.secrets_in(environ.get(name, ""), whole=False)):
            origins.add(name)
    return tuple(sorted(origins))


def _secret_origin(key: str, value: Value, environ: Mapping[str, str]) -> str:
    """The variable a secret came from: for the derived broker URL, its password's variable."""
    if key == "tasks.broker_url" and value.kind in ("k8s", "env") and value.source != "env:PULP_BROKER_URL":
        for name in BROKER_PASSWORD_VARS:
            if name in environ or f"{name}_FILE" in environ:
                return secretfile.origin(environ, name)
    return value.variable or key


def register_secrets(environ: Mapping[str, str], conf: Mapping[str, str] = MappingProxyType({})) -> frozenset[str]:
    """Register every secret in the environment and server.conf with the redactor, unparsed.

    Returns the names of the secret variables pulpinit consumes (passwords, URLs with
    credentials, and the ``_FILE`` variables of secrets): the role's process does not need them.
    """
    consumed: set[str] = set()
    for name, raw in environ.items():
        base = name.removesuffix("_FILE")
        key = _SECRET_VARS.get(base) or generic_key(base, GENERIC_PREFIX)
        if key is None:
            if name in _COMMAND_KNOBS:
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


_INI_LINE = re.compile(r"^([^\s#;\[][^:=\n]*?)[ \t]*[:=][ \t]*(.*?)[ \t\r]*$", re.MULTILINE)


def register_early(environ: Mapping[str, str], config: str) -> None:
    """Register every secret there is before pulpinit writes its first line, leniently.

    The environment's (:func:`register_secrets`), the contents of every secret's ``_FILE``, and
    the values of the INI file ``config`` (server.conf, or crane.conf for crane) read line by line
    the simple way: a key that is secret by its name gives its whole value, any other value its URL
    passwords.  Nothing is parsed or judged here: a file that cannot be read is left to the
    settings stage, which reports it.  (Reading more than the stage will is the safe side.)
    """
    register_secrets(environ)
    for name, path in environ.items():
        base = name.removesuffix("_FILE")
        key = _SECRET_VARS.get(base) or generic_key(base, GENERIC_PREFIX) or generic_key(base, "CRANE_CONF__")
        if base != name and key is not None and may_hold_secret(key):
            with contextlib.suppress(EnvValueError):
                REDACTOR.add_value(secretfile.read(path, name), whole=True)  # its URL passwords too
    try:
        text = read_regular(config).decode("utf-8", "replace")
    except FileProblem:
        return
    for match in _INI_LINE.finditer(text):
        whole = is_secret_key(f".{match.group(1).strip()}")
        if whole or "@" in match.group(2):  # a password by its key's name, or a URL (or user:pass@host)
            REDACTOR.add_value(match.group(2), whole=whole)


def _explicit_values(environ: Mapping[str, str]) -> dict[str, Value]:
    """Layer 1: the explicit variables and ``PULP_CONF__<SECTION>__<KEY>`` (:mod:`pulpinit.settings.confvars`)."""
    explicit = ((var.name, var.key, var.secret) for var in EXPLICIT)
    found: dict[str, Value] = {}
    for key, assigned in read_variables(environ, explicit, GENERIC_PREFIX, "PULP_CONF__TASKS__CACERT").items():
        source = f"file:{assigned.origin}" if assigned.from_file else f"env:{assigned.name}"
        found[key] = _value(
            key, assigned.raw, source, assigned.origin, from_file=assigned.from_file, option=assigned.option
        )
    return found


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
        host = parse.host(environ["SERVICE_HOST"], "SERVICE_HOST")
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
        url = _derived_broker_url(rabbit, msg.hostport, user, password, warnings)
        found["tasks.broker_url"] = _value("tasks.broker_url", url, _source(msg), msg.variable)
    return found, warnings


def _derived_broker_url(
    rabbit: bool, hostport: str, user: str | None, password: str | None, warnings: list[str]
) -> str:
    """A URL kombu accepts: ``amqp://user[:password]@h:p//`` (py-amqp fills in guest for what is
    missing); ``qpid://user:password@h:p/``, or anonymous ``qpid://h:p/`` without a password (kombu's
    qpid transport refuses a user without one)."""
    cred = urllib.parse.quote(user or "guest", safe="")
    if password:
        cred += ":" + urllib.parse.quote(password, safe="")
    if rabbit:
        return f"amqp://{cred}@{hostport}//"
    if password:
        return f"qpid://{cred}@{hostport}/"
    if user:
        warnings.append(
            f"the broker user {user!r} is not used: without a password Celery's qpid:// transport "
            "logs in anonymously (set PULP_BROKER_PASSWORD to log in as that user)"
        )
    return f"qpid://{hostport}/"


def _broker_credentials(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """User and password for the derived broker URL (None: not set)."""

    def first(names: tuple[str, ...], secret: bool) -> str | None:
        for name in names:
            raw = secretfile.lookup(environ, name, allow_file=secret)
            if raw is not None:
                origin = secretfile.origin(environ, name)
                if not secret and not raw:
                    raise EnvValueError(origin, "is empty; set the broker user, or unset it for the default user guest")
                return parse.text(raw, origin, secret=secret)
        return None

    return first(BROKER_USER_VARS, secret=False), first(BROKER_PASSWORD_VARS, secret=True)
