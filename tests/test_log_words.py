"""The log lines' own vocabulary (:data:`pulpinit.log.EVENTS`, :data:`~pulpinit.log.KEYS`,
:data:`~pulpinit.log.LEVELS`) is complete: it is what masking leaves alone and what the
``settings.log_word`` warning compares secrets with.

Read from the source: every event name and every keyword of every logging call in the package
(structlog's ``info``/``warning``/``error``/``debug``, ``bind``, ``get_logger``, the stage's fields,
and the resident supervisor's ``log``/``emit``), and the default of every parameter called
``event`` (an event passed on as a value: ``migration.output``).
"""

from __future__ import annotations

import ast
from pathlib import Path

from pulpinit import log

PACKAGE = Path(log.__file__).parent
CALLS = {"info", "warning", "error", "debug", "log", "emit", "bind", "get_logger", "stage", "_stage"}


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.IfExp):  # (log.info if ok else log.warning)("stage.end", ...)
        return _name(func.body)
    return None


def used() -> tuple[set[str], set[str]]:
    events, keys = set(), set()
    for path in PACKAGE.rglob("*.py"):
        if "testing" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and _name(node.func) in CALLS:
                keys |= {kw.arg for kw in node.keywords if kw.arg}
                first = node.args[0] if node.args else None
                if _name(node.func) not in ("bind", "get_logger", "stage", "_stage") and isinstance(
                    first, ast.Constant
                ):
                    events.add(str(first.value))
            if isinstance(node, ast.FunctionDef):
                named = node.args.args[len(node.args.args) - len(node.args.defaults) :]
                events |= {
                    str(d.value)
                    for a, d in zip(named, node.args.defaults, strict=True)
                    if a.arg == "event" and isinstance(d, ast.Constant)
                }
    return events, keys


def test_every_event_name_and_key_of_the_package_is_in_the_vocabulary():
    events, keys = used()
    assert events - set(log.EVENTS) == set()
    assert keys - set(log.KEYS) == set()


def test_a_word_of_the_vocabulary_is_a_log_word_and_an_ordinary_password_is_not():
    assert all(log.is_log_word(word) for word in ("error", "info", "event", "level", "stage", "migration", "quiet"))
    assert log.is_log_word("pulpinit.error") and log.is_log_word("exit_code") and log.is_log_word("code")
    assert not log.is_log_word("Tr0ub4dor-and-3") and not log.is_log_word("secret")
