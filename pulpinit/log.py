"""Structured logging: JSON lines for containers, a readable console otherwise.

Every record goes to stderr with an ISO-8601 UTC timestamp, a level and a
stable event name (see the table of events in docs/roles.md).  The event's values
(strings, and strings inside lists and dicts such as an argv) go through the
process-wide :data:`~pulpinit.redact.REDACTOR`, so a secret that slipped into
an event is still masked, in any encoding.  The line's own vocabulary — its
keys, the event name and the level (:data:`EVENTS`, :data:`KEYS`, :data:`LEVELS`)
— is never masked: a secret that is one of those words would otherwise turn
every line into ``{"***": …}``.  :func:`is_log_word` tells the settings stage
such a secret, which it asks the operator to change.

:class:`Logger` is the type every module logs through; :class:`Throttle` is the one way a
repeated line ("still down", "still waiting", a retry) is logged at most once per interval.
The format and level names are those of the knob table (``PULPINIT_LOG_FORMAT``,
``PULPINIT_LOG_LEVEL``); the CLI checks them before calling :func:`configure`.

structlog's package imports its asyncio integration, which pulpinit never uses, and asyncio (with
ssl) is about a fifth of a ``configure``'s time: :func:`defer` puts a stand-in in its place
before structlog is imported, and the real module is imported the first time anything uses it.  The
standard library's ``importlib.util.LazyLoader`` cannot do it: structlog's ``import asyncio``
reads the module's ``__spec__`` (is it still initialising?), and any attribute read makes a lazy
module load at once; a stand-in without a spec leaves ``import`` alone until a real name is read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, MutableMapping
from typing import IO, Any, Protocol, TextIO, cast


def defer(name: str) -> types.ModuleType | None:
    """Put a stand-in for the top-level module ``name`` into ``sys.modules`` until something uses it.

    ``import name`` gives the stand-in; its first attribute access — a name, ``from name import
    x``, a submodule import — imports the real module (which then replaces it in ``sys.modules``),
    and every access through the stand-in reads the real module.  Nothing happens when ``name`` is
    already imported.  Returns the stand-in (None when there is none).
    """
    if name in sys.modules:
        return None
    stand_in = types.ModuleType(name, f"{name}, imported on first use (pulpinit.log.defer)")
    stand_in.__spec__ = None  # the import system reads it: no import yet
    lock = threading.Lock()

    def real() -> types.ModuleType:
        with lock:
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
            return __import__(name)

    def __getattr__(attribute: str) -> Any:  # a module's __getattr__ (PEP 562): only for what it lacks
        return getattr(real(), attribute)

    stand_in.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = stand_in
    return stand_in


defer("asyncio")  # before structlog, which imports it: see the module's docstring

import structlog  # noqa: E402 - after the stand-in, on purpose

from pulpinit.redact import REDACTOR  # noqa: E402

#: The levels of pulpinit's lines (a line's ``level``).
LEVELS = ("debug", "info", "warning", "error", "critical")
#: Every event name pulpinit and its resident supervisor log (docs/roles.md's table of events).
EVENTS = (
    *("admin.absent", "admin.default_password", "admin.password_contended", "admin.password_set"),
    "admin.password_unreadable",
    *("config.changed", "config.in_place", "config.reread", "config.section_ignored", "config.unchanged"),
    "config.written",
    *("crane.data_dir", "dep.checked", "dep.down", "dep.still_down", "dep.up", "dep.warning"),
    *("handoff.exec", "handoff.supervise"),
    *("keys.checked", "keys.expiring", "keys.not_published", "keys.published"),
    *("migration.db_retry", "migration.done", "migration.failed", "migration.holder_gone", "migration.interrupted"),
    *("migration.kill", "migration.odd_document", "migration.resume"),
    *("migration.lease_lost", "migration.lock_held", "migration.lock_not_released", "migration.lock_released"),
    *("migration.not_waiting", "migration.output", "migration.pre_migrate", "migration.pre_migrate_done"),
    *("migration.pre_migrate_output", "migration.quiet", "migration.ready", "migration.record_failed"),
    *("migration.renew_failed", "migration.signal", "migration.skipped", "migration.stale_processes"),
    *("migration.start", "migration.waiting", "migration.waiting_for_quiet"),
    *("privileges.as_is", "privileges.drop", "privileges.keep", "pulpinit.error", "pulpinit.interrupted"),
    *("settings.warning", "settings.log_word", "stage.end", "stage.start"),
    *("supervise.error", "supervise.exit", "supervise.forward", "supervise.kill", "supervise.start"),
)
#: Every key of pulpinit's lines, the ones every line has first.
KEYS = (
    *("event", "level", "timestamp", "traceback", "action", "argv", "attempt", "attempts", "changes", "collection"),
    *("command", "dependency", "document", "duration_ms", "duration_s", "endpoint", "error", "exit_code", "failure"),
    *("field", "files", "fingerprint", "gid", "groups", "hint", "how", "key", "knocks", "latency_ms", "lease_left_s"),
    *("line", "lock", "login", "message", "mode", "new", "not_after", "ok", "old", "operation", "owner", "previous"),
    *("path", "pid", "problem", "processes", "reason", "requested", "role", "sender", "signal", "since"),
    *("stage", "stale", "state", "stop_timeout", "taken_as", "target", "threshold_s", "uid", "user", "value"),
    "variable",
    *("version", "waited_s", "warning"),
)
_UNMASKED = frozenset(("event", "level"))


def _words() -> frozenset[str]:
    names = (*LEVELS, *EVENTS, *KEYS)
    return frozenset((*names, *(w for name in names for w in name.replace("_", ".").split(".") if w)))


def is_log_word(secret: str) -> bool:
    """Whether ``secret`` is a word of the lines' own vocabulary (a level, an event name, a key, or one
    of their parts between ``.`` and ``_``), which the log shows unmasked."""
    return secret in _words()


_level = [logging.INFO]  # the level of the last configure()
_format = ["json"]  # the format the last configure() chose


class Logger(Protocol):
    """What pulpinit logs through: a bound structlog logger (one event name, then fields)."""

    def bind(self, **fields: Any) -> Logger: ...

    def debug(self, event: str, **fields: Any) -> Any: ...

    def info(self, event: str, **fields: Any) -> Any: ...

    def warning(self, event: str, **fields: Any) -> Any: ...

    def error(self, event: str, **fields: Any) -> Any: ...


class Throttle:
    """Says when a repeated line may be logged again: at most once per ``interval`` per key.

    The first line of a key may go at once, or (``since``) one interval after that time.
    ``force`` lets a line through (and restarts the interval), e.g. a first attempt.
    """

    def __init__(self, interval: float, clock: Callable[[], float], *, since: float | None = None) -> None:
        self.interval = interval
        self.clock = clock
        self._since = since
        self._last: dict[str, float] = {}

    def ready(self, key: str = "", *, force: bool = False) -> bool:
        """True when a line for ``key`` may be logged now (it is then counted as logged)."""
        now = self.clock()
        last = self._last.get(key, self._since)
        if force or last is None or now - last >= self.interval:
            self._last[key] = now
            return True
        return False


def choose_format(requested: str | None, stream: IO[str]) -> str:
    """``json`` or ``console``: the request wins; otherwise JSON unless stderr is a TTY."""
    if requested:
        return requested
    return "console" if stream.isatty() else "json"


def _redact_event(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask the secrets in every value, the event name and the level excepted; keys are never touched."""
    if REDACTOR:
        for key, value in event_dict.items():
            if key not in _UNMASKED:
                event_dict[key] = REDACTOR.deep(value)
    return event_dict


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of writing (test capture swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(fmt: str | None = None, level: str = "info", stream: IO[str] | None = None) -> None:
    """Set up structlog once per process; safe to call again (tests do)."""
    _level[0] = _number(level)
    out = stream if stream is not None else cast(IO[str], _CurrentStderr())
    fmt = _format[0] = choose_format(fmt, out)
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty() and "NO_COLOR" not in os.environ)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_level[0]),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, out)),
        cache_logger_on_first_use=False,
    )


def is_configured() -> bool:
    """Whether :func:`configure` (or structlog's own) ran in this process."""
    return bool(structlog.is_configured())


def current_format() -> str:
    """``json`` or ``console``: what the lines are written in (the supervisor is told the same)."""
    return _format[0]


def _number(level: str) -> int:
    """``info`` → ``logging.INFO``."""
    return int(getattr(logging, level.upper(), logging.INFO))


def is_enabled(level: str) -> bool:
    """Whether lines of ``level`` are logged (e.g. the traceback fields that only debug shows)."""
    return _number(level) >= _level[0]


def get_logger(**initial: Any) -> Logger:
    """A bound structlog logger (structlog's proxies are dynamic: :class:`Logger` is their type)."""
    return cast(Logger, structlog.get_logger(**initial))


@contextlib.contextmanager
def stage(name: str, **fields: Any) -> Iterator[Logger]:
    """Log ``stage.start`` and ``stage.end`` (with ``duration_ms`` and ``ok``) around a block."""
    log = get_logger(stage=name)
    log.info("stage.start", **fields)
    started = time.monotonic()
    ok = False
    try:
        yield log
        ok = True
    finally:
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        (log.info if ok else log.warning)("stage.end", duration_ms=duration_ms, ok=ok)
