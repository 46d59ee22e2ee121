"""The edits of an INI file: a value to write (:class:`Assignment`) and a key a plan changed (:class:`KeyChange`).

An :class:`Assignment` names the environment variable it comes from, so an error about it names
the variable, never the value; a :class:`KeyChange` shows its old and new values already masked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pulpinit import redact
from pulpinit.redact import REDACTOR

if TYPE_CHECKING:
    from pulpinit.settings.value import Value

__all__ = ["Assignment", "KeyChange", "Placement", "assignments"]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_KEY_NAME = re.compile(r"[a-z0-9_][a-z0-9_.-]*\Z")


@dataclass(frozen=True)
class Assignment:
    """One value to write: ``[section] key = value``, taken from environment ``variable``."""

    section: str
    key: str
    value: str
    variable: str
    secret: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.section):
            raise ValueError(f"{self.variable}: bad section name {self.section!r}")
        if not _KEY_NAME.match(self.key):
            raise ValueError(f"{self.variable}: bad key name {self.key!r}")

    def __repr__(self) -> str:
        shown = redact.display(f"{self.section}.{self.key}", self.value, secret=self.secret)
        return f"Assignment({self.section}.{self.key}={shown!r} from {self.variable})"


#: Where a changed key's line went (see the module doc).
Placement = Literal["updated", "inserted-after-comment", "appended", "new-section"]


@dataclass(frozen=True)
class KeyChange:
    """A key whose value the plan changes; ``how`` is where its line went (see the module doc)."""

    section: str
    key: str
    old: str | None = field(repr=False)  # as Pulp read it; None: no live line
    new: str = field(repr=False)
    secret: bool
    how: Placement
    variable: str = ""

    @property
    def shown_old(self) -> str | None:
        return None if self.old is None else self._shown(self.old)

    @property
    def shown_new(self) -> str:
        return self._shown(self.new)

    def _shown(self, value: str) -> str:
        return REDACTOR(redact.display(f"{self.section}.{self.key}", value, secret=self.secret))


def assignments(to_write: Sequence[tuple[str, Value]]) -> list[Assignment]:
    """The edits for ``(section.key, value)`` pairs (:meth:`Settings.to_write`), each naming its variable."""
    found = []
    for key, value in to_write:
        section, name = value.option
        found.append(Assignment(section, name, value.value, value.variable or key, value.secret))
    return found
