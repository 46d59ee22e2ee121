"""pulpinit's own knobs, the ``PULPINIT_*`` variables: THE table, and a stdlib-only reader of it.

These configure the toolkit (paths, user, timeouts, logging), not Pulp, so they are never
written to server.conf.  :data:`KNOBS` declares every knob once: its name, its kind (how its
value is parsed), its default and its meaning in one line.  Everything reads it:

* :mod:`pulpinit.settings.toolkit` parses every knob into the typed ``Toolkit`` (the settings
  stage, once per run);
* the CLI reads the log format, the log level and the stop signal before that stage
  (:func:`read`, :func:`stop_signal_number`), with the same parsers;
* the resident supervisor reads ``PULPINIT_STOP_TIMEOUT`` and parses ``--umask`` and
  ``--stop-timeout`` with the same parsers, so that both always agree;
* the README's table is checked against it (``tests/test_docs.py``).

This module imports only the standard library and :mod:`pulpinit.errors`: the resident
supervisor reads it, and must not load ``dataclasses`` or ``typing``.  The parsers of the kinds
that quote a bad value in their error through the redactor (``text``, ``bool``, ``seconds``,
``positive``) are in :mod:`pulpinit.settings.parse`; the kinds parsed here quote nothing secret.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping

from pulpinit.errors import EnvValueError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the resident supervisor must not load typing
if TYPE_CHECKING:
    from typing import Literal, TypeVar

    T = TypeVar("T")
    #: How a knob's value is parsed (see :data:`PARSERS` and ``pulpinit.settings.toolkit``).
    Kind = Literal[
        "text",
        "bool",
        "seconds",
        "positive",
        "umask",
        "log_format",
        "log_level",
        "signal",
        "stop_timeout",
        "worker_number",
        "command",
    ]

#: The signals the resident supervisor forwards to the role's process; a stop signal
#: (``PULPINIT_STOP_SIGNAL``) must be one of them, since only those reach the role.
FORWARDED: tuple[signal.Signals, ...] = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
LOG_FORMATS = ("json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
#: Values of ``PULPINIT_STOP_TIMEOUT`` (and ``--stop-timeout``) that mean "never".
NEVER = ("0", "off", "none")


class Knob:
    """One knob: the variable, how it is parsed, its default and its meaning (a README table row).

    ``optional``: an empty value (the default included) means "not set" (``None``).
    (A plain class: the resident supervisor imports this module, and dataclasses cost it memory.)
    """

    __slots__ = ("default", "kind", "meaning", "name", "optional")

    def __init__(self, name: str, kind: Kind, default: str, meaning: str, *, optional: bool = False) -> None:
        self.name = name
        self.kind: Kind = kind
        self.default = default
        self.meaning = meaning
        self.optional = optional

    @property
    def field(self) -> str:
        """``PULPINIT_WAIT_TIMEOUT`` → ``wait_timeout`` (``PULP_WORKER_NUMBER`` → ``worker_number``)."""
        return self.name.removeprefix("PULPINIT_").removeprefix("PULP_").lower()

    def __repr__(self) -> str:
        return f"Knob({self.name}, {self.kind}, default={self.default!r})"


KNOBS: tuple[Knob, ...] = (
    Knob("PULPINIT_CONFIG", "text", "/etc/pulp/server.conf", "server.conf to read and edit"),
    Knob("PULPINIT_CREATE_CONFIG", "bool", "false", "create server.conf when it is missing instead of failing"),
    Knob("PULPINIT_USER", "text", "apache", "user (`user`, `user:group`, `uid[:gid]`) to run Pulp as when root"),
    Knob("PULPINIT_UMASK", "umask", "0022", "umask of the role's process (octal)"),
    Knob(
        "PULPINIT_LOG_FORMAT",
        "log_format",
        "",
        "`json` or `console`; default: JSON unless stderr is a TTY",
        optional=True,
    ),
    Knob("PULPINIT_LOG_LEVEL", "log_level", "info", "debug, info, warning or error"),
    Knob("PULPINIT_CELERY", "text", "/usr/bin/celery", "the celery binary the roles exec"),
    Knob("PULPINIT_CELERY_ARGS", "text", "", "extra arguments appended to the role's celery command (shell-quoted)"),
    Knob(
        "PULPINIT_CELERY_LOG_DIR",
        "text",
        "",
        "write celery logs to files in this directory instead of stdout",
        optional=True,
    ),
    Knob("PULPINIT_MANAGE_DB", "text", "/usr/bin/pulp-manage-db", "the migration command"),
    Knob("PULPINIT_HTTPD", "text", "/usr/sbin/httpd", "the httpd binary the `api` and `crane` roles exec as root"),
    Knob(
        "PULPINIT_HTTPD_CERT",
        "text",
        "/etc/pki/tls/certs/localhost.crt",
        "httpd's TLS certificate, as its `SSLCertificateFile` names it: checked at start",
    ),
    Knob(
        "PULPINIT_HTTPD_KEY",
        "text",
        "/etc/pki/tls/private/localhost.key",
        "httpd's TLS key, as its `SSLCertificateKeyFile` names it: checked at start",
    ),
    Knob(
        "PULPINIT_STATIC_DIR",
        "text",
        "/var/lib/pulp/static",
        "Pulp's `/pulp/static/`: the `api` role links `rsa_pub.key` into it when missing",
    ),
    Knob("PULPINIT_DB_SERVICE", "text", "db", "Kubernetes Service name of MongoDB (its *_SERVICE_HOST/PORT)"),
    Knob("PULPINIT_MSG_SERVICE", "text", "msg", "Kubernetes Service name of the broker"),
    Knob("PULPINIT_WAIT_TIMEOUT", "seconds", "300", "seconds to wait for MongoDB and the broker before exit 69"),
    Knob(
        "PULPINIT_WAIT_INITIAL",
        "positive",
        "0.1",
        "first retry interval (seconds); grows 1.5× per attempt, with jitter",
    ),
    Knob("PULPINIT_WAIT_MAX_INTERVAL", "positive", "2", "cap of the retry interval (seconds)"),
    Knob(
        "PULPINIT_WAIT_ARMED_INTERVAL",
        "seconds",
        "0.05",
        "while a dependency refuses connections, knock (TCP connect only) this often (seconds) and probe "
        "the moment it accepts; 0: off",
    ),
    Knob("PULPINIT_PROBE_TIMEOUT", "positive", "1", "timeout of one connection attempt (seconds)"),
    Knob("PULPINIT_WAIT_LOG_INTERVAL", "seconds", "10", "seconds between 'still down' log lines"),
    Knob(
        "PULPINIT_WAIT_MESSAGING",
        "bool",
        "false",
        "`api` and `worker` also wait for `[messaging]`, the broker of the consumer agents, and check-deps "
        "counts it in its exit code; off because Pulp starts without it (only agent requests fail)",
    ),
    Knob("PULPINIT_MIGRATION_WAIT", "bool", "true", "non-migrating roles wait until migrations are done"),
    Knob("PULPINIT_MIGRATION_TIMEOUT", "seconds", "600", "seconds a waiting role waits for migrations before exit 75"),
    Knob(
        "PULPINIT_MIGRATION_FINGERPRINT",
        "text",
        "",
        "version of the schema; default: derived from installed Pulp",
        optional=True,
    ),
    Knob("PULPINIT_LOCK_COLLECTION", "text", "pulpinit_locks", "collection of the migration lease and state"),
    Knob("PULPINIT_LEASE_SECONDS", "positive", "60", "migration lock lease; renewed every lease/3"),
    Knob(
        "PULPINIT_MANAGE_DB_STOP_TIMEOUT",
        "seconds",
        "15",
        "seconds to wait for pulp-manage-db after SIGTERM; must be below lease/3",
    ),
    Knob(
        "PULPINIT_QUIET_SECONDS",
        "seconds",
        "92",
        "the migrating role migrates once no Pulp process heartbeated for this long (0: do not wait)",
    ),
    Knob(
        "PULPINIT_PRE_MIGRATE",
        "command",
        "",
        "command run under the lock before each real migration, e.g. a backup (shell-quoted)",
        optional=True,
    ),
    Knob("PULPINIT_INIT", "bool", "false", "stay as PID 1 and supervise the role (same as --init)"),
    Knob(
        "PULPINIT_STOP_SIGNAL",
        "signal",
        "SIGTERM",
        "the image's stop signal when not SIGTERM (`SIGWINCH` for httpd); SIGTERM and SIGINT always stop pulpinit",
    ),
    Knob(
        "PULPINIT_STOP_TIMEOUT",
        "stop_timeout",
        "",
        "SIGKILL the role's group this long after SIGTERM (default, `0` or `off`: never)",
        optional=True,
    ),
    Knob(
        "PULPINIT_KEEP_SECRET_ENV",
        "bool",
        "false",
        "pass the secret variables pulpinit consumed on to the role's process",
    ),
    Knob(
        "PULP_WORKER_NUMBER",
        "worker_number",
        "",
        "worker number N; default: the StatefulSet ordinal, else 0",
        optional=True,
    ),
)
BY_NAME: Mapping[str, Knob] = {knob.name: knob for knob in KNOBS}


_DECIMAL = frozenset("0123456789")
_OCTAL = frozenset("01234567")


def plain_number(value: str) -> bool:
    """Whether ``value`` is a plain decimal number in ASCII digits: ``30``, ``0.5``, ``.5``.

    Not what ``float()`` and ``int()`` also take: a sign, blanks around it, ``_`` between digits,
    an exponent, ``inf``, or digits of other scripts (``٣٠``).
    """
    whole, _, fraction = value.partition(".")
    return bool(whole or fraction) and set(whole) <= _DECIMAL and set(fraction) <= _DECIMAL


def umask(value: str, origin: str) -> int:
    """``0022``, ``022`` or ``0o022`` → ``0o022``: at most four ASCII octal digits; beyond 0777 is an error."""
    digits = value[2:] if value[:2] in ("0o", "0O") else value
    if not digits or len(digits) > 4 or not set(digits) <= _OCTAL:
        raise EnvValueError(origin, f"{value[:20]!r} is not an octal umask like 0022")
    number = int(digits, 8)
    if not 0 <= number <= 0o777:
        raise EnvValueError(origin, f"{value!r} is out of range 0000-0777")
    return number


def _choice(allowed: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(value: str, origin: str) -> str:
        if value.lower() not in allowed:
            raise EnvValueError(origin, f"{value!r} is not one of: {', '.join(allowed)}")
        return value.lower()

    return parse


log_format = _choice(LOG_FORMATS)
log_level = _choice(LOG_LEVELS)


def stop_signal(value: str, origin: str) -> str:
    """``SIGWINCH``, ``winch`` or ``28`` → ``"SIGWINCH"``: a signal the supervisor forwards."""
    text = value.strip().upper()
    name = text if text.startswith("SIG") else f"SIG{text}"
    try:
        found = signal.Signals(int(text)) if text.isdigit() else signal.Signals[name]
    except (KeyError, ValueError):
        found = None
    if found not in FORWARDED:
        allowed = ", ".join(sig.name for sig in FORWARDED)
        raise EnvValueError(origin, f"{value!r} is not a stop signal pulpinit can take; one of: {allowed}")
    return found.name


def stop_timeout(value: str, origin: str) -> float | None:
    """Seconds after SIGTERM until the supervisor SIGKILLs the role's group; ``None`` (never) for
    an empty value, ``0``, ``off`` or ``none``."""
    if value.lower() in ("", *NEVER):
        return None
    number = float(value) if plain_number(value) else -1.0
    if not 0 <= number < float("inf"):
        raise EnvValueError(origin, f"{value[:40]!r} is not a number of seconds >= 0 (0 or off: never)")
    return number or None


def worker_number(value: str, origin: str) -> int:
    """A worker number N: ASCII digits only, at most 9 of them."""
    if not value.isascii() or not value.isdigit():
        raise EnvValueError(origin, f"{value[:20]!r} is not a non-negative integer")
    if len(value) > 9:  # int() of thousands of digits is slow, and no deployment has a billion workers
        raise EnvValueError(origin, f"{len(value)} digits: out of range (at most 9 digits)")
    return int(value)


#: The parsers of the kinds this module parses itself (``pulpinit.settings.toolkit`` adds the rest).
PARSERS: Mapping[str, Callable[[str, str], object]] = {
    "umask": umask,
    "log_format": log_format,
    "log_level": log_level,
    "signal": stop_signal,
    "stop_timeout": stop_timeout,
    "worker_number": worker_number,
}


def raw(environ: Mapping[str, str], knob: Knob) -> str | None:
    """The knob's text: the variable, else the default; ``None`` when an optional knob is empty."""
    value = environ.get(knob.name, knob.default)
    return None if value == "" and knob.optional else value


def read(environ: Mapping[str, str], name: str, parser: Callable[[str, str], T]) -> T | None:
    """Knob ``name`` parsed by ``parser``, which must be the parser of its kind; ``None`` when unset.

    For the knobs needed before the settings stage (the CLI) or without it (the supervisor).
    """
    knob = BY_NAME[name]
    if PARSERS.get(knob.kind) is not parser:
        raise ValueError(f"{name} is a {knob.kind} knob: parse it with its own parser")
    value = raw(environ, knob)
    return None if value is None else parser(value, name)


def stop_signal_number(environ: Mapping[str, str]) -> int | None:
    """The extra stop signal ``PULPINIT_STOP_SIGNAL`` names, or None.

    Read before anything else (signals are handled from the first line of ``main``): an unset,
    empty or invalid value is ignored here, and the settings stage reports an invalid one (78).
    """
    if not environ.get("PULPINIT_STOP_SIGNAL"):
        return None
    try:
        name = read(environ, "PULPINIT_STOP_SIGNAL", stop_signal)
    except EnvValueError:
        return None
    return int(signal.Signals[name]) if name else None
