"""A test oracle: how Python 2.7's ConfigParser reads a file (Pulp 2 reads server.conf with it).

Python 2 is not packaged on Debian 12, so the rules are rebuilt here from CPython 2.7's
``Lib/ConfigParser.py`` (``RawConfigParser._read``), independently of pulpinit's lens:

* ``SECTCRE = r'\\[(?P<header>[^]]+)\\]'`` and
  ``OPTCRE = r'(?P<option>[^:=\\s][^:=]*)\\s*(?P<vi>[:=])\\s*(?P<value>.*)$'``, matched at the
  start of the line (``re.match``) on byte strings: ``\\s`` and every strip are ASCII blanks;
* lines come from ``readline`` (split after ``\\n`` only: a ``\\r`` stays in the line);
* a blank line (``line.strip() == ''``) or one whose first character is ``#`` or ``;`` is a
  comment; so is a line whose first word is ``rem`` in any case, if it starts with ``r``/``R``;
* a line starting with a blank continues the current option's value (its stripped text, if
  any, is appended) when there is a current option: blank lines and comments keep it, a
  section header resets it;
* a header selects a section (a repeated header the same one; ``DEFAULT`` the defaults);
* an option line: the option is ``rstrip``'ed and lower-cased; in the value the first ``;``
  starts a comment when the character before it (wrapping around to the value's last
  character when the ``;`` comes first) is a blank; the value is stripped; ``""`` is empty;
* anything else before the first header is ``MissingSectionHeaderError``, after it a
  ``ParsingError``.

Values are returned raw (no ``%`` interpolation); continuation lines are joined with ``\\n``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

BLANKS = " \t\n\r\x0b\x0c"  # Python 2's str.isspace() / strip() on byte strings
SECTCRE = re.compile(r"\[(?P<header>[^]]+)\]", re.ASCII)
OPTCRE = re.compile(r"(?P<option>[^:=\s][^:=]*)\s*(?P<vi>[:=])\s*(?P<value>.*)$", re.ASCII)
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class Py27Error(Exception):
    """ParsingError or MissingSectionHeaderError: Pulp would not start."""

    def __init__(self, kind: str, lineno: int) -> None:
        super().__init__(f"{kind} at line {lineno}")
        self.kind = kind
        self.lineno = lineno


def lines_of(text: str) -> list[str]:
    """``fp.readline()`` until EOF: each line keeps its ``\\n`` (a ``\\r`` is an ordinary character)."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def read(text: str) -> dict[tuple[str, str], str]:
    """``{(section, option): raw value}`` as Python 2.7 reads ``text``; raises :class:`Py27Error`."""
    sections: dict[str, dict[str, list[str]]] = {}
    cursect: dict[str, list[str]] | None = None
    optname: str | None = None
    for lineno, line in enumerate(lines_of(text), start=1):
        if line.strip(BLANKS) == "" or line[0] in "#;":
            continue
        first_word = re.split(f"[{re.escape(BLANKS)}]+", line.strip(BLANKS), maxsplit=1)[0]
        if first_word.translate(_LOWER) == "rem" and line[0] in "rR":
            continue
        if line[0] in BLANKS and cursect is not None and optname:
            value = line.strip(BLANKS)
            if value:
                cursect[optname].append(value)
            continue
        header = SECTCRE.match(line)
        if header:
            cursect = sections.setdefault(header.group("header"), {})  # DEFAULT: just another name here
            optname = None
            continue
        if cursect is None:
            raise Py27Error("MissingSectionHeaderError", lineno)
        option = OPTCRE.match(line)
        if not option:
            raise Py27Error("ParsingError", lineno)
        name, value = option.group("option"), option.group("value")
        if ";" in value:
            pos = value.find(";")
            if value[pos - 1] in BLANKS:
                value = value[:pos]
        value = value.strip(BLANKS)
        if value == '""':
            value = ""
        optname = name.rstrip(BLANKS).translate(_LOWER)
        cursect[optname] = [value]
    return {(s, k): "\n".join(v) for s, options in sections.items() for k, v in options.items()}


#: Run by a real Python 2.7 (where one is installed): reads every file named on the command
#: line and prints one JSON document per file, raw values, or the error's class name.
PY2_SCRIPT = r"""
import ConfigParser, json, sys
out = []
for name in sys.argv[1:]:
    parser = ConfigParser.RawConfigParser()
    try:
        parser.read([name])
    except ConfigParser.Error as exc:
        out.append({"error": type(exc).__name__})
        continue
    values = []
    for section in parser.sections():
        for option, value in parser._sections[section].items():
            if option != "__name__":
                values.append([section, option, value])
    for option, value in parser._defaults.items():
        values.append(["DEFAULT", option, value])
    out.append({"values": values})
sys.stdout.write(json.dumps(out))
"""


#: Run by a real Python 2.7: ``CLASS FILE...``; for each file, ``{"section.option": ["ok", value] or
#: ["error", exception class]}`` as ``CLASS().get(section, option)`` (interpolation included) answers.
PY2_GET_SCRIPT = r"""
import ConfigParser, json, sys
kind = getattr(ConfigParser, sys.argv[1])
out = []
for name in sys.argv[2:]:
    parser = kind()
    parser.read([name])
    got = {}
    for section in parser.sections():
        for option in parser._sections[section]:
            if option == "__name__":
                continue
            try:
                got[section + "." + option] = ["ok", parser.get(section, option)]
            except Exception as exc:
                got[section + "." + option] = ["error", type(exc).__name__]
    out.append(got)
sys.stdout.write(json.dumps(out))
"""


def find_python27() -> str | None:
    """A real Python 2.7 (``PULPINIT_PYTHON2``, the PATH, pyenv), or None."""
    candidates = [os.environ.get("PULPINIT_PYTHON2", ""), "python2.7", "python2"]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/2.7*/bin/python2.7"))
    for candidate in filter(None, candidates):
        found = shutil.which(candidate)
        if (
            found
            and subprocess.run([found, "-c", "import ConfigParser"], check=False, capture_output=True).returncode == 0
        ):
            return found
    return None
