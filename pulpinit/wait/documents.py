"""Reading documents of MongoDB whatever shape a MongoDB-compatible server gives their fields.

The migrate stage's lock and state and Pulp's ``workers`` heartbeats (read by the migrate stage
and by ``check-deps``, :mod:`pulpinit.wait.workers`) are written with BSON dates, but servers
that speak MongoDB's wire protocol do not all give them back as such: some return a date written
with ``$set`` as a string — ISO-8601 with or without a zone, or Python's ``str(datetime)``
(``'2026-12-06 18:07:00.499000'``: a space, no zone) — or as extended JSON (``{"$date": …}``).
:func:`read_time` reads every such form as a naive UTC datetime (what pymongo gives for a BSON
date); a value it cannot read raises :class:`Unreadable`.

What an unreadable value means is decided by its reader, always on the **safe side**: a lease
whose expiry cannot be read is held; a heartbeat that cannot be read is live.  :func:`warn_once`
logs one ``migration.odd_document`` warning per document and field for the whole process, naming
the document, the field, the value (shortened) and what it is taken for.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from typing import Any

from pulpinit import log

__all__ = ["Unreadable", "read_time", "text", "warn_once"]

_EPOCH = dt.datetime(1970, 1, 1)
_reported: set[tuple[str, str, str]] = set()
_lock = threading.Lock()


class Unreadable(ValueError):
    """A field holds a value that is not a date in any form a server returns."""


def _naive_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def _parse_text(value: str) -> dt.datetime:
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        return _naive_utc(dt.datetime.fromisoformat(text))  # ISO-8601, and str(datetime) (a space, no zone)
    except ValueError:
        raise Unreadable(f"not a date: {value[:60]!r}") from None


def read_time(value: object) -> dt.datetime | None:
    """``value`` as a naive UTC datetime, ``None`` for a missing or null field; :class:`Unreadable` otherwise.

    Read: BSON dates (naive or aware), ISO-8601 strings with or without a zone (``T`` or a
    space between date and time, ``Z`` or an offset), extended JSON ``{"$date": ISO | ms}``.
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return _naive_utc(value)
    if isinstance(value, str) and value.strip():
        return _parse_text(value)
    if isinstance(value, Mapping) and set(value) == {"$date"}:
        inner = value["$date"]
        if isinstance(inner, Mapping) and set(inner) == {"$numberLong"}:
            inner = inner["$numberLong"]
        if isinstance(inner, str) and inner.lstrip("-").isdigit():
            inner = int(inner)
        if isinstance(inner, int) and not isinstance(inner, bool):
            try:
                return _EPOCH + dt.timedelta(milliseconds=inner)
            except OverflowError:
                raise Unreadable(f"date out of range: {inner}") from None
        if isinstance(inner, str):
            return _parse_text(inner)
    raise Unreadable(f"not a date: {type(value).__name__} {_short(value)}")


def text(value: object) -> str | None:
    """A field that should be a string (an owner, a status): ``None`` stays ``None``, anything else as text."""
    return None if value is None else value if isinstance(value, str) else str(value)


def _short(value: object, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def warn_once(collection: str, document: Any, field: str, value: object, taken_as: str) -> None:
    """One ``migration.odd_document`` warning per (collection, document, field) for the whole process."""
    key = (collection, str(document), field)
    with _lock:
        if key in _reported:
            return
        _reported.add(key)
    log.get_logger(stage="migrate").warning(
        "migration.odd_document",
        collection=collection,
        document=str(document),
        field=field,
        value=_short(value),
        taken_as=taken_as,
        action="the server returned a value pulpinit cannot read; the safe side is assumed",
    )
