"""How Pulp reads a value in server.conf, and which values it would read differently.

Pulp 2 reads server.conf with Python 2.7's ``SafeConfigParser``: the value is
the rest of the line after ``:`` or ``=``, stripped; ``%%`` is a literal
``%`` (interpolation); the first ``;`` starts a comment if a blank precedes
it (for a value starting with ``;``, "precedes" wraps around to the line's
last character); a value of exactly ``""`` is empty; each continuation line
(a line starting with a blank, after the entry) adds a newline and its
stripped text.  ``#`` inside a value is literal.
Python 3's ``configparser.ConfigParser()`` agrees on every value that
:func:`value_problem` accepts (it has no inline comments by default).

crane reads crane.conf with Python 2.7's plain ``ConfigParser``, which interpolates only a
value that holds ``%(``: any other ``%`` is literal and ``%%`` stays ``%%``.  :data:`SAFE` and
:data:`BASIC` are the two ways of reading (:class:`Dialect`); the module-level functions are
:data:`SAFE`'s, Pulp's.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_ASCII_SPACE = " \t\n\r\x0b\x0c"
#: Control characters, lone surrogates (invalid UTF-8 from the environment), line separators.
_CONTROL = frozenset({"Cc", "Cs", "Zl", "Zp"})


def value_problem(value: str, *, crlf: bool = False) -> str | None:
    """Why ``value`` cannot be written so that Pulp reads it back unchanged, or ``None``.

    ``crlf``: the file's lines end in CRLF.  The message never quotes the value (it may be a
    password).
    """
    if value != value.strip():
        return "has leading or trailing whitespace, which Pulp would strip"
    for position, char in enumerate(value, start=1):
        if unicodedata.category(char) in _CONTROL:
            return (
                f"contains U+{ord(char):04X} (a newline, control character or invalid UTF-8)"
                f" at character {position}; server.conf values are single lines of text"
            )
    if re.search(r"\s;", value):
        return "contains ';' after whitespace, which Pulp reads as the start of a comment"
    if value == '""':
        return "is two double quotes, which Pulp reads as an empty value; set it empty instead"
    if crlf and value.startswith(";"):
        return "starts with ';', which Pulp reads as an empty value in a file whose lines end in CRLF"
    return None


def _first_line(raw: str) -> str:
    """What SafeConfigParser keeps of an entry's own line (the raw text after the separator)."""
    semicolon = raw.find(";")  # only the first ';', and only after a blank (Python 2.7 quirk)
    if semicolon != -1 and raw[semicolon - 1] in _ASCII_SPACE:  # [-1]: the line's last character
        raw = raw[:semicolon]
    raw = raw.strip(_ASCII_SPACE)
    return "" if raw == '""' else raw


def pulp_reads(raw: str | None, continued: Sequence[str] = ()) -> str:
    """The value SafeConfigParser (Python 2.7) gives Pulp for an entry.

    ``raw`` is the entry's text after the separator as the lens stores it (None: nothing),
    ``continued`` the text of its continuation lines.  ``%%`` becomes ``%``; other
    interpolation (``%(name)s``) is left as written.
    """
    value = "\n".join([_first_line(raw or ""), *continued])
    return value.replace("%%", "%")


def reads_exactly(raw: str | None, wanted: str, continued: Sequence[str] = ()) -> bool:
    """True when Pulp reads the entry as ``wanted`` with nothing left to interpolate."""
    if pulp_reads(raw, continued) != wanted:
        return False
    return "%" not in "\n".join([raw or "", *continued]).replace("%%", "")


def escape(value: str) -> str:
    """The raw text that Pulp reads as ``value``: ``%`` doubled (SafeConfigParser interpolates)."""
    return value.replace("%", "%%")


class Dialect:
    """How a Python 2.7 ``ConfigParser`` class reads values: this one is ``SafeConfigParser`` (Pulp)."""

    name = "SafeConfigParser"

    def problem(self, value: str, *, crlf: bool = False) -> str | None:
        """Why ``value`` cannot be written so that it is read back unchanged (:func:`value_problem`)."""
        return value_problem(value, crlf=crlf)

    def reads(self, raw: str | None, continued: Sequence[str] = ()) -> str:
        """The value the program gets for an entry (:func:`pulp_reads`)."""
        return pulp_reads(raw, continued)

    def reads_exactly(self, raw: str | None, wanted: str, continued: Sequence[str] = ()) -> bool:
        """True when the entry reads as ``wanted`` with nothing left to interpolate."""
        return reads_exactly(raw, wanted, continued)

    def escape(self, value: str) -> str:
        """The raw text that reads as ``value``."""
        return escape(value)


class _Basic(Dialect):
    """Plain ``ConfigParser`` (crane): ``%`` is literal unless the value holds ``%(``."""

    name = "ConfigParser"

    def problem(self, value: str, *, crlf: bool = False) -> str | None:
        if "%(" in value:
            return "contains '%(', which ConfigParser reads as the start of an interpolation"
        return value_problem(value, crlf=crlf)

    def reads(self, raw: str | None, continued: Sequence[str] = ()) -> str:
        return "\n".join([_first_line(raw or ""), *continued])

    def reads_exactly(self, raw: str | None, wanted: str, continued: Sequence[str] = ()) -> bool:
        return self.reads(raw, continued) == wanted and "%(" not in "\n".join([raw or "", *continued])

    def escape(self, value: str) -> str:
        return value


#: ``SafeConfigParser``: Pulp's server.conf.
SAFE = Dialect()
#: ``ConfigParser``: crane's crane.conf.
BASIC: Dialect = _Basic()
