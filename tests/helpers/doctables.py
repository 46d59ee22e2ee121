"""The tables of docs/ that are generated from pulpinit's own tables, so that the docs cannot drift.

Each block sits between ``<!-- generated:NAME:begin -->`` and ``<!-- generated:NAME:end -->`` in
its page; :data:`BLOCKS` says which page holds which block and what renders it:

* ``docs/configuration.md``: the explicit variables (``pulpinit.settings.resolve.EXPLICIT``), the
  knobs (``pulpinit.knobs.KNOBS``), the removed knobs (``knobs.REMOVED``) and crane's
  variables (``pulpinit.crane.settings.EXPLICIT``);
* ``docs/waiting.md``: the failure classes with their hints (``pulpinit.targets.Failure``).

``python tests/helpers/doctables.py`` (``make docs``) rewrites the blocks; ``tests/test_docs.py``
fails when a page is not what this renders.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    """A Markdown table; the cells as given (code spans already marked), pipes escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def explicit_table() -> str:
    from pulpinit.settings.resolve import EXPLICIT

    secret = " (a secret: also as `_FILE`)"
    rows = [(f"`{v.name}`", f"`{v.key}`", v.meaning + (secret if v.secret else "")) for v in EXPLICIT]
    return _table(("variable", "server.conf key", "meaning"), rows)


def crane_table() -> str:
    from pulpinit.crane.settings import EXPLICIT

    return _table(
        ("variable", "crane.conf key", "meaning"), [(f"`{v.name}`", f"`{v.key}`", v.meaning) for v in EXPLICIT]
    )


def knob_table() -> str:
    from pulpinit.knobs import KNOBS

    rows = [(f"`{k.name}`", f"`{k.default}`" if k.default else "—", k.meaning, k.why) for k in KNOBS]
    return _table(("variable", "default", "what it does", "set it for"), rows)


def removed_table() -> str:
    from pulpinit.knobs import LOCK_COLLECTION, REMOVED

    refused = f"`{LOCK_COLLECTION}`: a `settings.warning`; any other value: exit 78 naming it"
    ignored = "ignored, with a `settings.warning` naming it"
    rows = [
        (f"`{name}`", now, refused if name == "PULPINIT_LOCK_COLLECTION" else ignored) for name, now in REMOVED.items()
    ]
    return _table(("variable", "what holds instead", "still set"), rows)


def failure_table() -> str:
    from pulpinit.targets import Failure

    return _table(("class", "hint"), [(f"`{f.value}`", f.hint) for f in Failure])


#: page → {block name → renderer}.
BLOCKS: Mapping[str, Mapping[str, Callable[[], str]]] = {
    "configuration.md": {
        "explicit": explicit_table,
        "knobs": knob_table,
        "removed-knobs": removed_table,
        "crane": crane_table,
    },
    "waiting.md": {"failures": failure_table},
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- generated:{name}:begin -->", f"<!-- generated:{name}:end -->"


def read_block(text: str, name: str) -> str | None:
    """The block ``name`` of a page's text, or None when the page has none."""
    begin, end = markers(name)
    if begin not in text or end not in text:
        return None
    return text.partition(begin)[2].partition(end)[0].removeprefix("\n")


def render(text: str, blocks: Mapping[str, Callable[[], str]]) -> str:
    """The page's text with every block replaced by what renders it (a missing block is left missing)."""
    for name, renderer in blocks.items():
        begin, end = markers(name)
        if begin not in text:
            continue
        before, _, rest = text.partition(begin)
        _, _, after = rest.partition(end)
        text = f"{before}{begin}\n{renderer()}{end}{after}"
    return text


def rewrite() -> list[Path]:
    """Rewrite every page's blocks; the pages that changed."""
    changed = []
    for page, blocks in BLOCKS.items():
        path = DOCS / page
        text = path.read_text()
        new = render(text, blocks)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


if __name__ == "__main__":
    for path in rewrite():
        print(f"rewrote {path.relative_to(ROOT)}", file=sys.stderr)
