"""Explicit variables and ``<PREFIX><SECTION>__<KEY>`` variables: which INI keys the environment sets.

One reading for every INI file pulpinit writes from the environment (crane.conf's
``CRANE_CONF__``; the same rules as server.conf's ``PULP_CONF__``): a generic name is split at
``__`` only, section and key are lower-cased and must be ``[a-z0-9][a-z0-9_.-]*``; ``_FILE`` is
read only for a key that may hold a secret (:func:`pulpinit.redact.may_hold_secret`); an
explicit variable and a generic one for the same key is ambiguous.  Every problem is an
:class:`~pulpinit.errors.EnvValueError` (exit 78) naming the variable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pulpinit.errors import EnvValueError
from pulpinit.redact import may_hold_secret
from pulpinit.settings import secretfile

__all__ = ["Assigned", "generic_key", "read_variables"]

_PART = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass(frozen=True)
class Assigned:
    """One key the environment sets: from variable ``name`` (its value, or the file of ``name_FILE``)."""

    key: str  # section.key
    option: tuple[str, str]  # (section, key): a section name may hold dots
    name: str  # the variable without _FILE
    origin: str  # the variable actually set: name or name_FILE
    raw: str = field(repr=False)

    @property
    def from_file(self) -> bool:
        return self.origin != self.name


def generic_key(name: str, prefix: str) -> str | None:
    """``PREFIX`` + ``CDN__URL_AUTH_SECRET`` → ``cdn.url_auth_secret``; None for other names or bad shapes."""
    if not name.startswith(prefix):
        return None
    parts = name[len(prefix) :].lower().split("__")
    return ".".join(parts) if len(parts) == 2 else None


def read_variables(
    environ: Mapping[str, str], explicit: Iterable[tuple[str, str, bool]], prefix: str, example: str
) -> dict[str, Assigned]:
    """The keys set by the explicit variables ``(name, section.key, secret)`` and by ``prefix`` names.

    ``example`` is a well-formed generic name for the error message.
    """
    found: dict[str, Assigned] = {}
    by_key: dict[str, str] = {}
    for name, key, secret in explicit:
        raw = secretfile.lookup(environ, name, allow_file=secret)
        if raw is not None:
            section, _, option = key.partition(".")
            found[key] = Assigned(key, (section, option), name, secretfile.origin(environ, name), raw)
            by_key[key] = name
    for name in sorted(environ):
        if not name.startswith(prefix):
            continue
        base = name.removesuffix("_FILE")
        parts = base[len(prefix) :].lower().split("__")
        if len(parts) != 2 or not all(_PART.match(p) for p in parts):
            raise EnvValueError(name, f"expected {prefix}<SECTION>__<KEY> (split at '__' only), e.g. {example}")
        section, option = parts
        key = f"{section}.{option}"
        if base != name and not may_hold_secret(key):
            raise EnvValueError(name, f"_FILE is only read for secrets (passwords, URLs); set {base} instead")
        other = by_key.get(key)
        if other is not None and other != base:
            raise EnvValueError(
                name, f"sets [{section}] {option}, which {other} sets too: ambiguous, set only one of them"
            )
        raw = secretfile.lookup(environ, base, allow_file=may_hold_secret(key))
        if raw is not None:
            by_key[key] = base
            found[key] = Assigned(key, (section, option), base, secretfile.origin(environ, base), raw)
    return found
