"""pulpinit's own knobs: the ``PULPINIT_*`` variables.

These configure the toolkit (paths, user, timeouts, logging), not Pulp, so
they are never written to server.conf.  :data:`KNOBS` is the single table of
names, defaults and meanings; the README's table is generated from the same
facts and a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pulpinit import values
from pulpinit.errors import EnvValueError
from pulpinit.signals import parse_signal


@dataclass(frozen=True)
class Knob:
    name: str  # the environment variable
    default: str
    meaning: str


KNOBS: tuple[Knob, ...] = (
    Knob("PULPINIT_CONFIG", "/etc/pulp/server.conf", "server.conf to read and edit"),
    Knob("PULPINIT_CREATE_CONFIG", "false", "create server.conf when it is missing instead of failing"),
    Knob("PULPINIT_USER", "apache", "user (`user`, `user:group`, `uid[:gid]`) to run Pulp as when root"),
    Knob("PULPINIT_UMASK", "0022", "umask of the role's process (octal)"),
    Knob("PULPINIT_LOG_FORMAT", "", "`json` or `console`; default: JSON unless stderr is a TTY"),
    Knob("PULPINIT_LOG_LEVEL", "info", "debug, info, warning or error"),
    Knob("PULPINIT_CELERY", "/usr/bin/celery", "the celery binary the roles exec"),
    Knob("PULPINIT_CELERY_ARGS", "", "extra arguments appended to the role's celery command (shell-quoted)"),
    Knob("PULPINIT_CELERY_LOG_DIR", "", "write celery logs to files in this directory instead of stdout"),
    Knob("PULPINIT_MANAGE_DB", "/usr/bin/pulp-manage-db", "the migration command"),
    Knob("PULPINIT_DB_SERVICE", "db", "Kubernetes Service name of MongoDB (its *_SERVICE_HOST/PORT)"),
    Knob("PULPINIT_MSG_SERVICE", "msg", "Kubernetes Service name of the broker"),
    Knob("PULPINIT_DB_AUTH_SOURCE", "", "MongoDB auth database; default: the Pulp database"),
    Knob("PULPINIT_WAIT_TIMEOUT", "300", "seconds to wait for MongoDB and the broker before exit 69"),
    Knob("PULPINIT_WAIT_INITIAL", "0.1", "first retry interval (seconds); grows 1.5× per attempt, with jitter"),
    Knob("PULPINIT_WAIT_MAX_INTERVAL", "2", "cap of the retry interval (seconds)"),
    Knob(
        "PULPINIT_WAIT_ARMED_INTERVAL",
        "0.05",
        "while a dependency refuses connections, knock (TCP connect only) this often (seconds) and probe "
        "the moment it accepts; 0: off",
    ),
    Knob("PULPINIT_PROBE_TIMEOUT", "1", "timeout of one connection attempt (seconds)"),
    Knob("PULPINIT_WAIT_LOG_INTERVAL", "10", "seconds between 'still down' log lines"),
    Knob("PULPINIT_MIGRATION_WAIT", "true", "non-migrating roles wait until migrations are done"),
    Knob("PULPINIT_MIGRATION_TIMEOUT", "600", "seconds a waiting role waits for migrations before exit 75"),
    Knob("PULPINIT_MIGRATION_FINGERPRINT", "", "version of the schema; default: derived from installed Pulp"),
    Knob("PULPINIT_LOCK_COLLECTION", "pulpinit_locks", "collection of the migration lease and state"),
    Knob("PULPINIT_LEASE_SECONDS", "60", "migration lock lease; renewed every lease/3"),
    Knob(
        "PULPINIT_MANAGE_DB_STOP_TIMEOUT",
        "15",
        "seconds to wait for pulp-manage-db after SIGTERM; must be below lease/3",
    ),
    Knob("PULPINIT_INIT", "false", "stay as PID 1 and supervise the role (same as --init)"),
    Knob(
        "PULPINIT_STOP_SIGNAL",
        "SIGTERM",
        "the image's stop signal when not SIGTERM (`SIGWINCH` for httpd); SIGTERM and SIGINT always stop pulpinit",
    ),
    Knob("PULPINIT_STOP_TIMEOUT", "", "SIGKILL the role's group this long after SIGTERM (default: never)"),
    Knob("PULPINIT_KEEP_SECRET_ENV", "false", "pass the secret variables pulpinit consumed on to the role's process"),
    Knob("PULP_WORKER_NUMBER", "", "worker number N; default: the StatefulSet ordinal, else 0"),
)


@dataclass(frozen=True)
class Toolkit:
    """The parsed knobs."""

    config: str
    create_config: bool
    user: str
    umask: int
    log_format: str | None
    log_level: str
    celery: str
    celery_args: str
    celery_log_dir: str | None
    manage_db: str
    db_service: str
    msg_service: str
    db_auth_source: str | None
    wait_timeout: float
    wait_initial: float
    wait_max_interval: float
    wait_armed_interval: float
    probe_timeout: float
    wait_log_interval: float
    migration_wait: bool
    migration_timeout: float
    migration_fingerprint: str | None
    lock_collection: str
    lease_seconds: float
    manage_db_stop_timeout: float
    init: bool
    stop_signal: str
    stop_timeout: float | None
    keep_secret_env: bool
    worker_number: int | None


def _umask(value: str, origin: str) -> int:
    try:
        number = int(value, 8)
    except ValueError:
        raise EnvValueError(origin, f"{value!r} is not an octal umask like 0022") from None
    if not 0 <= number <= 0o777:
        raise EnvValueError(origin, f"{value!r} is out of range 0000-0777")
    return number


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(value: str, origin: str) -> str:
        if value.lower() not in allowed:
            raise EnvValueError(origin, f"{value!r} is not one of: {', '.join(allowed)}")
        return value.lower()

    return parse


def _worker_number(value: str, origin: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise EnvValueError(origin, f"{value[:20]!r} is not a non-negative integer")
    if len(value) > 9:  # int() of thousands of digits is slow, and no deployment has a billion workers
        raise EnvValueError(origin, f"{len(value)} digits: out of range (at most 9 digits)")
    return int(value)


def _positive(value: str, origin: str) -> float:
    return values.seconds(value, origin, minimum=0.001)


_PARSERS: Mapping[str, Callable[[str, str], Any]] = {
    "create_config": values.boolean,
    "umask": _umask,
    "log_format": _choice("json", "console"),
    "log_level": _choice("debug", "info", "warning", "error"),
    "wait_timeout": values.seconds,
    "wait_initial": _positive,
    "wait_max_interval": _positive,
    "wait_armed_interval": values.seconds,
    "probe_timeout": _positive,
    "wait_log_interval": values.seconds,
    "migration_wait": values.boolean,
    "migration_timeout": values.seconds,
    "lease_seconds": _positive,
    "manage_db_stop_timeout": values.seconds,
    "init": values.boolean,
    "stop_signal": parse_signal,
    "stop_timeout": values.seconds,
    "keep_secret_env": values.boolean,
    "worker_number": _worker_number,
}

_OPTIONAL = {"log_format", "celery_log_dir", "db_auth_source", "migration_fingerprint", "stop_timeout", "worker_number"}


def knob_field(knob: Knob) -> str:
    """``PULPINIT_WAIT_TIMEOUT`` → ``wait_timeout`` (``PULP_WORKER_NUMBER`` → ``worker_number``)."""
    return knob.name.removeprefix("PULPINIT_").removeprefix("PULP_").lower()


def toolkit_from_environ(environ: Mapping[str, str]) -> Toolkit:
    """Parse every knob; an invalid value is an error naming the variable (exit 78)."""
    parsed: dict[str, Any] = {}
    for knob in KNOBS:
        field = knob_field(knob)
        raw = environ.get(knob.name, knob.default)
        if raw == "" and field in _OPTIONAL:
            parsed[field] = None
            continue
        parser = _PARSERS.get(field)
        parsed[field] = parser(raw, knob.name) if parser else values.text(raw, knob.name)
    toolkit = Toolkit(**parsed)
    _check_stop_fits_lease(toolkit)
    return toolkit


def _check_stop_fits_lease(toolkit: Toolkit) -> None:
    """pulp-manage-db must be stoppable inside the lease after two renewals failed (exit 78 otherwise).

    A holder that cannot renew starts stopping it at lease end − stop timeout − a margin; that
    point must come after two renewal intervals (lease/3 each), or one lost renewal would stop it.
    """
    lease, stop = toolkit.lease_seconds, toolkit.manage_db_stop_timeout
    if stop >= lease - 2 * lease / 3:
        raise EnvValueError(
            "PULPINIT_MANAGE_DB_STOP_TIMEOUT",
            f"{stop:g} s does not fit the lease: it must be below PULPINIT_LEASE_SECONDS "
            f"({lease:g} s) minus two renewal intervals ({2 * lease / 3:g} s), i.e. "
            f"below {lease / 3:g} s; shorten it or lengthen the lease",
        )


def knob_sources(environ: Mapping[str, str]) -> dict[str, str]:
    """``{knob name: "env:NAME" | "default"}`` for the ``settings`` output."""
    return {k.name: (f"env:{k.name}" if k.name in environ else "default") for k in KNOBS}
