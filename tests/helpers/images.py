"""Reading what the images and manifests run: Dockerfile instructions, and pulpinit's own parser.

:func:`instructions` and :func:`stages` read a Dockerfile the way the builder does (logical
lines, continuations joined, comments dropped; a stage starts with ``FROM``);
:func:`check_parses` asserts that a command line would be accepted by pulpinit's CLI.
"""

from __future__ import annotations

from typing import Any

from pulpinit.cli import parse
from pulpinit.errors import UsageError


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` per logical line: continuations joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not pending and not stripped):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = (pending + stripped).strip()
        pending = ""
        if logical:
            word, _, rest = logical.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, in order (a stage starts with FROM)."""
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def check_parses(argv: list[str], what: str) -> Any:
    assert argv[0] == "pulpinit", f"{what}: {argv} does not run pulpinit"
    try:
        return parse(argv[1:])
    except UsageError as exc:
        raise AssertionError(f"{what}: pulpinit would reject {argv}: {exc}") from None
