"""How Pulp reads a value in server.conf, and which values it would read differently.

Pulp 2 reads server.conf with Python 2's ``SafeConfigParser``: the value is
the rest of the line after ``:`` or ``=``, stripped; ``%%`` is a literal
``%`` (interpolation); the first ``;`` starts a comment if a blank precedes
it; a value of exactly ``""`` is empty.  ``#`` inside a value is literal.
Python 3's ``configparser.ConfigParser()`` agrees on every value that
:func:`value_problem` accepts (it has no inline comments by default).
"""

from __future__ import annotations

import re
import unicodedata

_ASCII_SPACE = " \t\n\r\x0b\x0c"
#: Control characters, lone surrogates (invalid UTF-8 from the environment), line separators.
_CONTROL = frozenset({"Cc", "Cs", "Zl", "Zp"})


def value_problem(value: str) -> str | None:
    """Why ``value`` cannot be written so that Pulp reads it back unchanged, or ``None``.

    The message never quotes the value (it may be a password).
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
    return None


def pulp_reads(raw: str | None) -> str:
    """The value SafeConfigParser (Python 2) gives Pulp for the raw text of a live line.

    ``%%`` becomes ``%``; other interpolation (``%(name)s``) is left as written.
    """
    if raw is None:
        return ""
    value = raw
    semicolon = value.find(";")  # only the first ';', and only after a blank (Python 2.7 quirk)
    if semicolon != -1 and value[semicolon - 1] in _ASCII_SPACE:
        value = value[:semicolon]
    value = value.strip(_ASCII_SPACE)
    if value == '""':
        return ""
    return value.replace("%%", "%")


def reads_exactly(raw: str | None, wanted: str) -> bool:
    """True when Pulp reads ``raw`` as ``wanted`` with nothing left to interpolate."""
    if pulp_reads(raw) != wanted:
        return False
    return "%" not in (raw or "").replace("%%", "")


def escape(value: str) -> str:
    """The raw text that Pulp reads as ``value``: ``%`` doubled (SafeConfigParser interpolates)."""
    return value.replace("%", "%%")
