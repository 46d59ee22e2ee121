"""A section of an INI file's lens tree as Python 2.7's ``ConfigParser`` reads it.

Its entries (a key, its value and its continuation lines), the live one of a key (the last,
which is what Pulp reads), the commented default of a key (``# seeds: localhost:27017``) and
where the section's *body* ends: the run of lines under its header up to the first blank line,
extended by every live key after it together with the comment lines directly under that key.
:mod:`pulpinit.config.serverconf` places a new line by them.
"""

from __future__ import annotations

import re

from pulpinit.config.lens import COMMENT, CONTINUED, EMPTY, SPECIAL, Node

__all__ = ["Section", "body_end_of", "is_entry", "option_name"]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_COMMENTED_KEY = re.compile(r"([A-Za-z0-9_.-]+)[ \t]*[:=]")


def option_name(label: str) -> str:
    """A key as SafeConfigParser names it: ASCII lower case (Python 2 ``str.lower``)."""
    return label.translate(_ASCII_LOWER)


def is_entry(node: Node) -> bool:
    """Whether ``node`` is a ``key: value`` line (not a comment, a blank or a continuation)."""
    return node.label not in SPECIAL


class Section:
    """A section node, its children, and where its body ends (see the module doc)."""

    __slots__ = ("body_end", "children", "node")

    def __init__(self, node: Node, children: list[Node]) -> None:
        self.node = node
        self.children = children
        self.body_end = body_end_of(children)  # the body's last child; -1: the header alone

    def entries(self) -> list[tuple[int, Node, list[str]]]:
        """``(index, node, continuation texts)`` of every entry, in file order."""
        found: list[tuple[int, Node, list[str]]] = []
        for index, child in enumerate(self.children):
            if is_entry(child):
                found.append((index, child, []))
            elif child.label == CONTINUED and found and child.value:
                found[-1][2].append(child.value)
        return found

    def live(self, key: str) -> tuple[int, Node, list[str]] | None:
        found = [e for e in self.entries() if option_name(e[1].label) == key]
        return found[-1] if found else None

    def continuations(self, index: int) -> list[Node]:
        """The continuation lines of the entry at ``index``."""
        found = []
        for child in self.children[index + 1 :]:
            if is_entry(child):
                break
            if child.label == CONTINUED:
                found.append(child)
        return found

    def safe_after(self, index: int) -> int:
        """``index``, or later: a new line must not come between an entry and its continuation lines."""
        for later in range(index + 1, len(self.children)):
            child = self.children[later]
            if is_entry(child):
                break
            if child.label == CONTINUED:
                index = later
        return index

    def commented_default(self, key: str) -> int | None:
        for index, child in enumerate(self.children[: self.body_end + 1]):
            if child.label == COMMENT and child.value:
                match = _COMMENTED_KEY.match(child.value)
                if match and option_name(match.group(1)) == key:
                    return index
        return None


def body_end_of(children: list[Node]) -> int:
    """The index of the body's last child (module doc); -1: the header alone."""
    end, in_run = -1, True
    for index, child in enumerate(children):
        if child.label == EMPTY:
            in_run = False
        elif is_entry(child) or child.label == CONTINUED:
            end, in_run = index, True
        elif in_run:
            end = index
    return end
