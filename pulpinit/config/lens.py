"""The project's Augeas lens (``lenses/pulp.aug``) and one in-process handle on it.

:func:`lens_dir` finds the lens whether pulpinit runs from a source checkout,
an editable install or a wheel.  :class:`LensTree` holds one Augeas handle
created with ``NO_LOAD | NO_MODL_AUTOLOAD | NO_STDINC`` and a load path of
that directory only: Augeas compiles the one ``Pulp`` module and nothing else
(the default flags compile ~230 lenses, ~0.25 s).  No transform touches the
file system: the text pulpinit read is parsed with ``aug_text_store`` and an
edited tree is rendered with ``aug_text_retrieve``, so the diff, the dry run
and the atomic write all work on the very bytes that were read, and Augeas
itself never writes a file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pulpinit.errors import ConfigFileError

LENS = "Pulp.lns"
LENS_CRLF = "Pulp_crlf.lns"  # the same lens; lines it adds end in CRLF (lenses/pulp_crlf.aug)
LENS_FILE = "pulp.aug"

#: The labels of the lens's own nodes; every other label is a section or a key.
COMMENT, EMPTY, REM, CONTINUED = "#comment", "#empty", "#rem", "#continued"
SPECIAL = frozenset({COMMENT, EMPTY, REM, CONTINUED})

#: Where the handle keeps its text and trees (none of them is under /files).
_TEXT_IN = "/pulpinit/text/in"
_TEXT_OUT = "/pulpinit/text/out"
_NULL = "/pulpinit/text/null"  # a node without a value (python-augeas turns None into "")
ORIGINAL = "/pulpinit/original"


def lens_dir() -> Path:
    """The directory holding ``pulp.aug``.

    Installed (wheel): ``site-packages/pulpinit/lenses``.  Source checkout or
    editable install: the top-level ``lenses/`` next to the package, which
    setup.cfg maps to the package ``pulpinit.lenses``.
    """
    package = Path(__file__).resolve().parent.parent
    candidates = [package / "lenses", package.parent / "lenses"]
    try:
        spec = importlib.util.find_spec("pulpinit.lenses")
    except ImportError:  # pragma: no cover - only when the package is half installed
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) for p in spec.submodule_search_locations)
    for candidate in candidates:
        if (candidate / LENS_FILE).is_file():
            return candidate
    raise ConfigFileError(str(candidates[0] / LENS_FILE), "the Pulp lens is not installed")


def newline_of(text: str) -> str:
    """The line end of ``text``'s first line: ``"\\r\\n"`` or ``"\\n"``."""
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


class Node:
    """One node of a tree: its path, label and value (a plain class: cheaper to import than a dataclass)."""

    __slots__ = ("label", "path", "value")

    def __init__(self, path: str, label: str, value: str | None) -> None:
        self.path = path
        self.label = label
        self.value = value

    def __repr__(self) -> str:
        return f"Node({self.path!r}, {self.label!r})"


class LensTree:
    """An Augeas handle that parses and renders one file's text with the Pulp lens."""

    def __init__(self, text: str, source: str) -> None:
        """Parse ``text`` into the tree at :data:`ORIGINAL`; ``source`` names the file in errors.

        Lines added later end like the text's first line (CRLF or LF).
        """
        import augeas

        self.newline = newline_of(text)
        self._lens = LENS_CRLF if self.newline == "\r\n" else LENS

        flags = augeas.Augeas.NO_LOAD | augeas.Augeas.NO_MODL_AUTOLOAD | augeas.Augeas.NO_STDINC
        self._aug: Any = augeas.Augeas(root="/", loadpath=str(lens_dir()), flags=flags)
        self._source = source
        self._aug.set(_TEXT_IN, text)
        self._aug.insert(_TEXT_IN, "null", True)
        try:
            self._aug.text_store(self._lens, _TEXT_IN, ORIGINAL)
        except Exception as exc:  # python-augeas raises ValueError/RuntimeError subclasses
            raise ConfigFileError(source, self._parse_error(text, exc)) from None

    def _parse_error(self, text: str, exc: Exception) -> str:
        """Augeas's error with its line and position, plus a hint; never the line's text."""
        base = f"/augeas/text{ORIGINAL}/error"
        if self._aug.get(base) is None:
            return f"Augeas failed to parse it: {exc}"
        line, char, message = (self._aug.get(f"{base}/{name}") for name in ("line", "char", "message"))
        lines = text.split("\n")
        number = int(line) if str(line).isdigit() else 0
        bad = lines[number - 1] if 0 < number <= len(lines) else ""
        before = lines[: max(number - 1, 0)]
        in_section = any(b.startswith("[") for b in before)
        if bad[:1] in (" ", "\t"):
            hint = (
                "a line starting with a blank continues the value of the entry above it; "
                "here no entry of this section comes before it"
            )
        elif not in_section:
            hint = "Pulp needs a [section] header before the first entry"
        else:
            hint = "expected [section], key: value, key = value, a # or ; comment, a rem line, or a blank line"
        return f"the Pulp lens cannot parse line {line}, char {char} ({message}): {hint}"

    def close(self) -> None:
        self._aug.close()

    # -- reading -----------------------------------------------------------------------------

    def children(self, path: str) -> list[Node]:
        """The children of the node at ``path`` (matching exactly one node), in file order.

        Their paths are positional (``path/*[3]``): valid until something is inserted before them.
        """
        self._aug.defvar("kids", f"{path}/*")
        return [
            Node(f"{path}/*[{index + 1}]", label, value)
            for index in range(self._aug.ns_count("kids"))
            for value, label, _ in (self._aug.ns_attr("kids", index),)
        ]

    # -- editing -----------------------------------------------------------------------------

    def copy(self, src: str, dst: str) -> None:
        self._aug.copy(src, dst)

    def set(self, path: str, value: str | None) -> None:
        """Set the value of the node at ``path``; ``None`` removes it (``key:``, keeping the spacing)."""
        if value is None:
            self._aug.copy(_NULL, path)  # keeps the node's label and place, so its separator too
        else:
            self._aug.set(path, value)

    def insert(self, sibling: str, label: str, *, after: bool) -> str:
        """Insert a new node ``label`` next to ``sibling``; return the new node's (positional) path."""
        parent = str(self._aug.match(f"{sibling}/..")[0])
        position = len(self._aug.match(f"{sibling}/preceding-sibling::*")) + (2 if after else 1)
        self._aug.insert(sibling, label, not after)
        return f"{parent}/*[{position}]"

    def remove(self, path: str) -> None:
        """Remove the node at ``path`` (and its children)."""
        self._aug.remove(path)

    def append(self, parent: str, label: str) -> str:
        """Add a new valueless last child ``label`` (``#empty`` or a validated name) to ``parent``."""
        path = f"{parent}/{label}[last()+1]"
        self._aug.copy(_NULL, path)
        return str(self._aug.match(f"{parent}/*[last()]")[0])

    def render(self, tree: str) -> str:
        """The text of the tree at ``tree``, laid out like the text that was parsed."""
        try:
            self._aug.text_retrieve(self._lens, _TEXT_IN, tree, _TEXT_OUT)
        except Exception as exc:
            error = self._aug.get(f"/augeas/text{tree}/error/message")
            raise ConfigFileError(self._source, f"Augeas cannot write the edit: {error or exc}") from None
        text = self._aug.get(_TEXT_OUT)
        self._aug.remove(_TEXT_OUT)
        return str(text or "")
