"""The typed knobs: :class:`Toolkit`, parsed from the one table of :mod:`pulpinit.knobs`.

Every field is a knob of that table (named by :attr:`~pulpinit.knobs.Knob.field`) and
parsed by the parser of the knob's kind; a test keeps the fields and the table in step.  The
settings stage parses the knobs once per run (:func:`toolkit_from_environ`) and hands the
``Toolkit`` on with the ``Settings``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from pulpinit import knobs, parse, redact
from pulpinit.errors import EnvValueError
from pulpinit.knobs import KNOBS, Knob


@dataclass(frozen=True)
class Toolkit:
    """The parsed knobs (``None``: an optional knob that is not set)."""

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
    httpd: str
    httpd_cert: str
    httpd_key: str
    static_dir: str
    db_service: str
    msg_service: str
    wait_timeout: float
    probe_timeout: float
    wait_messaging: bool
    migration_wait: bool
    migration_timeout: float
    migration_fingerprint: str | None
    lease_seconds: float
    manage_db_stop_timeout: float
    quiet_seconds: float
    pre_migrate: tuple[str, ...] | None
    init: bool
    stop_signal: str
    stop_timeout: float | None
    keep_secret_env: bool
    worker_number: int | None


def _positive(value: str, origin: str) -> float:
    return parse.seconds(value, origin, minimum=0.001)


def _command(value: str, origin: str) -> tuple[str, ...]:
    """A command line split as a shell would split it (no shell runs it); the error quotes nothing."""
    try:
        argv = tuple(shlex.split(value))
    except ValueError as exc:
        raise EnvValueError(origin, f"cannot split it like a shell would: {exc}") from None
    if not argv:
        raise EnvValueError(origin, "names no command")
    return argv


#: The parser of every kind: those of :mod:`pulpinit.knobs` and the quoting ones.
PARSERS: Mapping[str, Callable[[str, str], Any]] = {
    **knobs.PARSERS,
    "text": parse.text,
    "bool": parse.boolean,
    "seconds": parse.seconds,
    "positive": _positive,
    "command": _command,
}

FIELDS = tuple(field.name for field in fields(Toolkit))


def toolkit_from_environ(environ: Mapping[str, str]) -> Toolkit:
    """Parse every knob; an invalid value is an error naming the variable (exit 78), and so is a
    removed knob that cannot be ignored (:func:`~pulpinit.knobs.refuse_removed`)."""
    knobs.refuse_removed(environ)
    parsed: dict[str, Any] = {}
    for knob in KNOBS:
        raw = knobs.raw(environ, knob)
        parsed[knob.field] = None if raw is None else PARSERS[knob.kind](raw, knob.name)
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


def knob_display(toolkit: Toolkit, knob: Knob) -> str:
    """The knob's parsed value as the ``settings`` output shows it (URL credentials masked)."""
    value = getattr(toolkit, knob.field)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if knob.kind == "umask":
        return f"{value:04o}"
    if knob.kind == "command":
        return shlex.join(redact.mask_argv(value))
    return f"{value:g}" if isinstance(value, float) else redact.display("", str(value))
