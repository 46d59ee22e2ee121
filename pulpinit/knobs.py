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
* ``docs/configuration.md``'s table is generated from it (``tests/helpers/doctables.py``).

This module imports only the standard library and :mod:`pulpinit.errors`: the resident
supervisor reads it, and must not load ``dataclasses`` or ``typing``.  The parsers of the kinds
that quote a bad value in their error through the redactor (``text``, ``bool``, ``seconds``,
``positive``) are in :mod:`pulpinit.parse`; the kinds parsed here quote nothing secret.
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
    """One knob: the variable, how it is parsed, its default, what it does and why an operator sets it.

    ``meaning`` says what the knob does, ``why`` when a deployment would change it (both are
    columns of the generated table in ``docs/configuration.md``).  ``optional``: an empty value
    (the default included) means "not set" (``None``).  (A plain class: the resident supervisor
    imports this module, and dataclasses cost it memory.)
    """

    __slots__ = ("default", "kind", "meaning", "name", "optional", "why")

    def __init__(self, name: str, kind: Kind, default: str, meaning: str, why: str, *, optional: bool = False) -> None:
        self.name = name
        self.kind: Kind = kind
        self.default = default
        self.meaning = meaning
        self.why = why
        self.optional = optional

    @property
    def field(self) -> str:
        """``PULPINIT_WAIT_TIMEOUT`` → ``wait_timeout`` (``PULP_WORKER_NUMBER`` → ``worker_number``)."""
        return self.name.removeprefix("PULPINIT_").removeprefix("PULP_").lower()

    def __repr__(self) -> str:
        return f"Knob({self.name}, {self.kind}, default={self.default!r})"


KNOBS: tuple[Knob, ...] = (
    Knob(
        "PULPINIT_CONFIG",
        "text",
        "/etc/pulp/server.conf",
        "server.conf to read and edit",
        "an image that keeps server.conf elsewhere (a mounted directory), or a run outside an image",
    ),
    Knob(
        "PULPINIT_CREATE_CONFIG",
        "bool",
        "false",
        "create server.conf when it is missing instead of stopping with 78",
        "a read-only root with an empty tmpfs or volume at `/etc/pulp`: the roles then write server.conf "
        "from the environment alone (`configure --create` is the same for one run; the roles have no flag)",
    ),
    Knob(
        "PULPINIT_USER",
        "text",
        "apache",
        "user (`user`, `user:group`, `uid[:gid]`) Pulp runs as when pulpinit starts as root",
        "an image whose Pulp runs as another user or group than `apache`; pulpinit checks server.conf "
        "and the keys for this user too",
    ),
    Knob(
        "PULPINIT_UMASK",
        "umask",
        "0022",
        "umask of the role's process (octal)",
        "files Pulp writes to a shared `/var/lib/pulp` must be group-writable (`0002`) or private (`0027`)",
    ),
    Knob(
        "PULPINIT_LOG_FORMAT",
        "log_format",
        "",
        "`json` or `console`; default: JSON unless stderr is a TTY",
        "JSON lines although a terminal is attached (`kubectl run -it`, a log shipper behind a pty)",
        optional=True,
    ),
    Knob(
        "PULPINIT_LOG_LEVEL",
        "log_level",
        "info",
        "debug, info, warning or error",
        "`debug` to see an unexpected error's traceback; `warning` for quieter starts",
    ),
    Knob(
        "PULPINIT_CELERY",
        "text",
        "/usr/bin/celery",
        "the celery binary the Celery roles exec",
        "an image whose celery lives elsewhere (a virtual environment, a wrapper script)",
    ),
    Knob(
        "PULPINIT_CELERY_ARGS",
        "text",
        "",
        "extra arguments appended to the role's celery command (shell-quoted)",
        "Celery options per deployment without a new image: `--maxtasksperchild=N` for a worker whose memory grows",
    ),
    Knob(
        "PULPINIT_CELERY_LOG_DIR",
        "text",
        "",
        "write celery logs to files in this directory instead of stdout",
        "log files on a volume, as the 2014 images wrote them (`/var/log/pulp`), for a collector that reads files",
        optional=True,
    ),
    Knob(
        "PULPINIT_MANAGE_DB",
        "text",
        "/usr/bin/pulp-manage-db",
        "the migration command",
        "an image whose pulp-manage-db lives elsewhere, or a wrapper around it",
    ),
    Knob(
        "PULPINIT_HTTPD",
        "text",
        "/usr/sbin/httpd",
        "the httpd binary the `api` and `crane` roles exec as root",
        "an image whose httpd lives elsewhere (Debian's `apache2`, a wrapper)",
    ),
    Knob(
        "PULPINIT_HTTPD_CERT",
        "text",
        "/etc/pki/tls/certs/localhost.crt",
        "httpd's TLS certificate, as its `SSLCertificateFile` names it: checked at start",
        "an `ssl.conf` that names another file: the check at start must look at the one httpd reads",
    ),
    Knob(
        "PULPINIT_HTTPD_KEY",
        "text",
        "/etc/pki/tls/private/localhost.key",
        "httpd's TLS key, as its `SSLCertificateKeyFile` names it: checked at start",
        "an `ssl.conf` that names another file: the check at start must look at the one httpd reads",
    ),
    Knob(
        "PULPINIT_STATIC_DIR",
        "text",
        "/var/lib/pulp/static",
        "Pulp's `/pulp/static/`: the `api` role links `rsa_pub.key` into it when missing",
        "an httpd configuration that serves `/pulp/static/` from another directory",
    ),
    Knob(
        "PULPINIT_DB_SERVICE",
        "text",
        "db",
        "Kubernetes Service name of MongoDB (its `*_SERVICE_HOST/PORT`)",
        "a MongoDB Service not named `db` (e.g. `mongodb`): its injected variables are read instead",
    ),
    Knob(
        "PULPINIT_MSG_SERVICE",
        "text",
        "msg",
        "Kubernetes Service name of the broker",
        "a broker Service not named `msg` (e.g. `rabbitmq`): its injected variables are read instead",
    ),
    Knob(
        "PULPINIT_WAIT_TIMEOUT",
        "seconds",
        "300",
        "seconds to wait for MongoDB and the broker before exit 69",
        "dependencies that take longer to come up (a cold cluster, a long MongoDB recovery), or a "
        "shorter wait so that the orchestrator restarts the pod sooner",
    ),
    Knob(
        "PULPINIT_PROBE_TIMEOUT",
        "positive",
        "1",
        "seconds one probe may take (connection, TLS, login); check-deps' budget without `--timeout`",
        "a dependency whose handshake takes longer than 1 s (a distant or loaded server, TLS on a slow "
        "link): otherwise every probe ends in `handshake_timeout` and the wait in 69",
    ),
    Knob(
        "PULPINIT_MIGRATION_WAIT",
        "bool",
        "true",
        "non-migrating roles wait until migrations are done",
        "`false` only for a command that may meet an unmigrated database (a debugging `run` shell); "
        "Celery and httpd must wait",
    ),
    Knob(
        "PULPINIT_MIGRATION_TIMEOUT",
        "seconds",
        "600",
        "seconds a waiting role waits for migrations (while nobody holds a live lease) before exit 75",
        "an upgrade whose quiet wait outlasts it (many workers with long tasks: docs/migrations.md), or "
        "a shorter one to notice a missing migration Job sooner",
    ),
    Knob(
        "PULPINIT_WAIT_MESSAGING",
        "bool",
        "false",
        "`api` and `worker` also wait for `[messaging]`, the broker of the consumer agents, and check-deps "
        "counts it in its exit code",
        "a deployment with consumer agents that should not serve before the agents' broker answers; off by "
        "default because Pulp starts without it (only agent requests fail)",
    ),
    Knob(
        "PULPINIT_MIGRATION_FINGERPRINT",
        "text",
        "",
        "version of the schema; default: derived from installed Pulp",
        "an image without Pulp's RPM database: name the version yourself (the image tag), new with every Pulp upgrade",
        optional=True,
    ),
    Knob(
        "PULPINIT_LEASE_SECONDS",
        "positive",
        "60",
        "migration lock lease; renewed every lease/3",
        "a platform that can freeze a whole container longer than lease − stop timeout (live migration, "
        "checkpoints): the lease must outlast such pauses",
    ),
    Knob(
        "PULPINIT_MANAGE_DB_STOP_TIMEOUT",
        "seconds",
        "15",
        "seconds to wait for pulp-manage-db after SIGTERM; must be below lease/3",
        "a pulp-manage-db that needs longer to stop cleanly (lengthen the lease with it)",
    ),
    Knob(
        "PULPINIT_QUIET_SECONDS",
        "seconds",
        "92",
        "the migrating role migrates once no Pulp process heartbeated for this long (0: do not wait)",
        "`0` for Pulp before 2.12, whose pulp-manage-db does not look at heartbeats",
    ),
    Knob(
        "PULPINIT_PRE_MIGRATE",
        "command",
        "",
        "command run under the lock before each real migration (shell-quoted)",
        "a backup point (`mongodump`) before every migration: the only way back from one",
        optional=True,
    ),
    Knob(
        "PULPINIT_INIT",
        "bool",
        "false",
        "stay as PID 1 and supervise the role (same as `--init`)",
        "a role whose children leave zombies, in an image whose command line you do not change",
    ),
    Knob(
        "PULPINIT_STOP_SIGNAL",
        "signal",
        "SIGTERM",
        "the image's stop signal when not SIGTERM; SIGTERM and SIGINT always stop pulpinit",
        "an image with another `STOPSIGNAL` (httpd's `SIGWINCH`): without it a stop before the "
        "hand-off waits out the grace period",
    ),
    Knob(
        "PULPINIT_STOP_TIMEOUT",
        "stop_timeout",
        "",
        "SIGKILL the role's group this long after SIGTERM (default, `0` or `off`: never)",
        "a platform without a kill deadline of its own (Kubernetes has `terminationGracePeriodSeconds`)",
        optional=True,
    ),
    Knob(
        "PULPINIT_KEEP_SECRET_ENV",
        "bool",
        "false",
        "pass the secret variables pulpinit consumed on to the role's process",
        "a role's process that reads a secret variable itself (a wrapper script, a custom WSGI app)",
    ),
    Knob(
        "PULP_WORKER_NUMBER",
        "worker_number",
        "",
        "worker number N; default: the StatefulSet ordinal, else 0",
        "workers whose host name ends in no ordinal (a Deployment, Compose): each needs its own N",
        optional=True,
    ),
)
BY_NAME: Mapping[str, Knob] = {knob.name: knob for knob in KNOBS}

#: The collection of the migration lock and state in Pulp's database, which MongoDB's write check
#: touches too.  Fixed: every pulpinit of a deployment must lock in the same one.
LOCK_COLLECTION = "pulpinit_locks"

#: Knobs that no longer exist, each with what holds instead.  One still set is ignored with a
#: ``settings.warning`` line naming it (:func:`removed_warnings`), except a lock collection other
#: than :data:`LOCK_COLLECTION`, which is refused (:func:`refuse_removed`): ignoring it would let
#: this pulpinit and an older one still running lock in different collections, both migrating.
REMOVED: Mapping[str, str] = {
    "PULPINIT_WAIT_INITIAL": "the wait's backoff is fixed",
    "PULPINIT_WAIT_MAX_INTERVAL": "the wait's backoff is fixed",
    "PULPINIT_WAIT_ARMED_INTERVAL": "a refused port is always knocked on, at a fixed pace",
    "PULPINIT_WAIT_LOG_INTERVAL": "progress lines come at a fixed pace",
    "PULPINIT_LOCK_COLLECTION": f"the migration lock and state are always in `{LOCK_COLLECTION}`",
}


def removed_warnings(environ: Mapping[str, str]) -> list[str]:
    """One line for each removed knob that is set: it is ignored, and should go."""
    return [f"{name} is no longer read ({now}): remove it" for name, now in REMOVED.items() if name in environ]


def refuse_removed(environ: Mapping[str, str]) -> None:
    """Exit 78 for a removed knob that cannot be ignored safely: another lock collection."""
    collection = environ.get("PULPINIT_LOCK_COLLECTION", LOCK_COLLECTION)
    if collection != LOCK_COLLECTION:
        raise EnvValueError(
            "PULPINIT_LOCK_COLLECTION",
            f"no longer read: the migration lock and state are always in {LOCK_COLLECTION!r}; a pulpinit "
            f"still locking in another collection would migrate beside this one. Stop every pulpinit of "
            f"the deployment, rename that collection to {LOCK_COLLECTION!r} (or drop it), then unset the variable",
        )


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
