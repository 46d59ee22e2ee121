"""Server.conf files for the lens and editor tests: Pulp's stock files, and generated ones.

:func:`stock` finds a stock server.conf of the shared fixtures (the test is skipped without
them); :func:`ini_file` generates files in the dialect with every kind of line, odd spacing and
trailing blanks, with the values Python's configparser reads from them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import strategies as st

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"


def stock(name: str) -> Path:
    """The stock server.conf ``name`` of the shared fixtures (skips the test when they are absent)."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"stock file {path} is absent (the shared fixtures are not checked out)")
    return path


# Generated files in the dialect: every kind of line, odd spacing, trailing blanks.
NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
BLANKS = st.sampled_from(["", " ", "\t", "  ", " \t "])
TEXT = (
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="%"),
        min_size=1,
        max_size=30,
    )
    .map(str.strip)
    .filter(bool)
)
VALUE = TEXT.filter(lambda v: " ;" not in v and "\t;" not in v and v != '""' and v == v.strip())


@st.composite
def comment_line(draw: st.DrawFn) -> str:
    mark = draw(st.sampled_from(["#", ";"]))
    body = draw(st.one_of(st.just(""), TEXT, NAMES.map(lambda n: f"{n}: default"), NAMES.map("[{}]".format)))
    return f"{mark}{draw(BLANKS)}{body}{draw(BLANKS)}\n"


@st.composite
def entry_line(draw: st.DrawFn, key: str) -> tuple[str, str]:
    value = draw(st.one_of(st.just(""), VALUE))
    sep = draw(st.sampled_from([":", "="]))
    gap = draw(BLANKS) if value else ""
    return f"{key}{draw(BLANKS)}{sep}{gap}{value}{draw(BLANKS)}\n", value


@st.composite
def ini_file(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """A file in the dialect and the values Python's configparser should read from it."""
    filler = st.one_of(comment_line(), BLANKS.map(lambda b: b + "\n"))
    lines = draw(st.lists(filler, max_size=4))
    expected: dict[str, str] = {}
    for section in draw(st.lists(NAMES, unique=True, max_size=4)):
        lines.append(f"[{section}]{draw(BLANKS)}\n")
        for key in draw(st.lists(NAMES, unique=True, max_size=5)):
            line, value = draw(entry_line(key))
            lines.append(line)
            expected[f"{section}.{key}"] = value
            lines.extend(draw(st.lists(filler, max_size=3)))
    return "".join(lines), expected
