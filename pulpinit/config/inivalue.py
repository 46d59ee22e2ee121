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
:data:`SAFE`'s, Pulp's.  :meth:`Dialect.interpolate` reads a value already in the file as the
parser's ``get()`` does, and raises :class:`Uninterpolable` where ``get()`` raises (checked
against a real Python 2.7 by the test suite).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

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


#: ``ConfigParser.MAX_INTERPOLATION_DEPTH`` (Python 2.7).
MAX_DEPTH = 10
_REFERENCE = re.compile(r"%\(([^)]+)\)s")  # SafeConfigParser's _interpvar_re
_KEY = re.compile(r"%\(([^)]*)\)s|.", re.DOTALL)  # ConfigParser's _KEYCRE


class Uninterpolable(ValueError):
    """A value the program's parser raises on when it is read (``get``); the message says why."""


def _lower(name: str) -> str:
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class Dialect:
    """How a Python 2.7 ``ConfigParser`` class reads values: this one is ``SafeConfigParser`` (Pulp)."""

    name = "SafeConfigParser"

    def interpolate(self, raw: str, options: Mapping[str, str]) -> str:
        """The value ``get()`` returns for the raw value ``raw`` (:meth:`raw_value`), or
        :class:`Uninterpolable`: ``%%`` is ``%``, ``%(name)s`` the raw value of ``name`` in
        ``options`` (the section's and DEFAULT's, lower-case names), interpolated in turn up to
        :data:`MAX_DEPTH` deep; any other ``%`` raises, as ``SafeConfigParser._interpolate_some`` does."""
        out: list[str] = []
        self._some(raw, options, 1, out)
        return "".join(out)

    def _some(self, rest: str, options: Mapping[str, str], depth: int, out: list[str]) -> None:
        if depth > MAX_DEPTH:
            raise Uninterpolable(f"has %(name)s references nested more than {MAX_DEPTH} deep")
        while rest:
            at = rest.find("%")
            if at < 0:
                out.append(rest)
                return
            out.append(rest[:at])
            rest = rest[at:]
            after = rest[1:2]
            if after == "%":
                out.append("%")
                rest = rest[2:]
            elif after == "(":
                match = _REFERENCE.match(rest)
                if match is None:
                    raise Uninterpolable(f"has a '%(' that is not a %(name)s reference, which {self.name} refuses")
                name, rest = _lower(match.group(1)), rest[match.end() :]
                if name not in options:
                    raise Uninterpolable(f"refers to %({name})s, which its section does not set")
                value = options[name]
                if "%" in value:
                    self._some(value, options, depth + 1, out)
                else:
                    out.append(value)
            else:
                raise Uninterpolable(
                    f"has a '%' that is not followed by '%' or '(', which {self.name} refuses; write %% for a '%'"
                )

    def raw_value(self, raw: str | None, continued: Sequence[str] = ()) -> str:
        """The raw value of an entry, before interpolation: its own line and its continuation lines."""
        return "\n".join([_first_line(raw or ""), *continued])

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

    def interpolate(self, raw: str, options: Mapping[str, str]) -> str:
        """As ``ConfigParser._interpolate``: a value without ``%(`` is itself; one with ``%(`` goes
        whole through Python's ``%`` with ``options`` (names lower-cased), again while ``%(`` is left,
        up to :data:`MAX_DEPTH` times.  A missing name raises, and so does any other ``%`` that the
        ``%`` operator refuses (Python 2.7 lets that error escape: crane fails)."""
        value = raw
        for _ in range(MAX_DEPTH):
            if "%(" not in value:
                return value
            value = _KEY.sub(lambda m: m.group() if m.group(1) is None else f"%({_lower(m.group(1))})s", value)
            try:
                value = _py2_percents(value, options) % dict(options)
            except KeyError as missing:
                raise Uninterpolable(f"refers to %({missing.args[0]})s, which its section does not set") from None
            except (ValueError, TypeError):
                raise Uninterpolable(
                    "has a '%' that ConfigParser cannot format beside its %(name)s reference; write %% for a '%'"
                ) from None
        if "%(" in value:
            raise Uninterpolable(f"has %(name)s references nested more than {MAX_DEPTH} deep")
        return value

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


#: A ``%`` conversion with a mapping key, flags, a width or a precision (``%5%``, ``%(a)%``): Python 2's
#: ``%`` operator writes a ``%`` (padded to the width), Python 3's refuses it.
_PERCENT_CONVERSION = re.compile(r"%(?:\(([^)]*)\))?([-#0 +]*)(\*|\d+)?(?:\.(?:\*|\d*))?[hlL]?%")


def _py2_percents(value: str, options: Mapping[str, str]) -> str:
    """``value`` with every ``%`` conversion written as Python 2's ``%`` writes it (escaped for Python 3)."""

    def written(match: re.Match[str]) -> str:
        key, flags, width = match.groups()
        if key is not None and _lower(key) not in options:
            raise KeyError(key)
        if width == "*" or len(width or "") > 4:  # Python 2: "* wants int"; a wider '%' is no setting
            raise TypeError(width)
        out = "%".ljust(int(width)) if width and "-" in flags else "%".rjust(int(width or 1))
        return out.replace("%", "%%")

    return _PERCENT_CONVERSION.sub(written, value)


#: ``SafeConfigParser``: Pulp's server.conf.
SAFE = Dialect()
#: ``ConfigParser``: crane's crane.conf.
BASIC: Dialect = _Basic()
