"""Read what Pulp reads, the way Pulp reads it: the lens and the editor against Python 2.7's ConfigParser.

The oracle (:mod:`helpers.py27_configparser`) is Python 2.7's reading rules rebuilt from its
``SECTCRE``/``OPTCRE`` patterns and continuation handling; a real ``python2.7`` checks the
oracle where one is installed.  Generated files mix every kind of line Python 2.7 accepts —
headers followed by comments or text, blanks inside brackets, keys with blanks, ``#``/``;``
comments, ``rem`` lines, continuation lines, CRLF ends — with lines it refuses.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from helpers import py27_configparser as py27
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pulpinit.config.edits import Assignment
from pulpinit.config.inivalue import escape, value_problem
from pulpinit.config.lens import ORIGINAL, SPECIAL, LensTree
from pulpinit.config.sections import option_name
from pulpinit.config.serverconf import ServerConf
from pulpinit.crane.conf import CraneConf
from pulpinit.errors import ConfigFileError

# -- generated files -------------------------------------------------------------------------

#: Printable text: no control characters (tab aside), no line separators, no "%" (read raw here).
CHARS = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="%") | st.just("\t")
TEXT = st.text(CHARS, max_size=16)
BLANKS = st.sampled_from(["", " ", "\t", "  ", " \t "])
SOME_BLANKS = st.sampled_from([" ", "\t", "  ", "\t "])
KEYS = st.sampled_from(["seeds", "name", "password", "broker_url", "Url", "my key", "rem", "REMOTE", "k.v-1"])
SECTIONS = st.sampled_from(["database", " database ", "tasks", "Database", "a.b", "s p", "DEFAULT", "#x"])


def strip_text(draw: st.DrawFn, blank_edges: bool = False) -> str:
    text = draw(TEXT)
    return text if blank_edges else text.strip(" \t")


LOOSE = ["comment", "rem", "blank"]
IN_SECTION = [*LOOSE, "entry", "entry", "entry", "continued", "continued", "header"]


@st.composite
def line(draw: st.DrawFn, kinds: list[str] = IN_SECTION) -> str:
    kind = draw(st.sampled_from(kinds)) if draw(st.integers(0, 19)) else draw(st.sampled_from(["junk", "entry"]))
    if kind == "comment":
        return draw(st.sampled_from("#;")) + draw(TEXT)
    if kind == "rem":
        word = draw(st.sampled_from(["rem", "REM", "Rem", "rEm"]))
        return word + draw(st.one_of(st.just(""), st.tuples(SOME_BLANKS, TEXT).map("".join)))
    if kind == "blank":
        return draw(BLANKS)
    if kind == "header":
        name = draw(st.one_of(SECTIONS, st.text(CHARS.filter(lambda c: c != "]"), min_size=1, max_size=10)))
        return f"[{name}]" + draw(st.one_of(st.just(""), TEXT))
    if kind == "continued":
        return draw(SOME_BLANKS) + (strip_text(draw) or "x") + draw(BLANKS)
    if kind == "junk":
        return draw(TEXT)
    key = draw(st.one_of(KEYS, st.text(CHARS.filter(lambda c: c not in ":="), min_size=1, max_size=10)))
    value = draw(st.one_of(st.just(""), TEXT, st.sampled_from([";x", ";y ", "a ;b", "a;b", '""', "# v"])))
    sep = draw(st.sampled_from([":", "=", " = ", ": ", "\t:"]))
    return f"{key}{sep}{draw(BLANKS)}{value}{draw(BLANKS)}"


def documented_exception(text: str) -> bool:
    """Lines Python 2.7 accepts that the lens refuses on purpose (see lenses/pulp.aug): a key
    starting with "[" (a "[" line that is no header)."""
    return any(ln.startswith("[") and not py27.SECTCRE.match(ln) for ln in py27.lines_of(text))


@st.composite
def py27_file(draw: st.DrawFn) -> str:
    """A file: some lines before a first header, then sections of lines; LF, CRLF or mixed ends."""
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = draw(st.lists(line(LOOSE), max_size=4))
    for _ in range(draw(st.integers(0, 4))):
        lines.append(f"[{draw(SECTIONS)}]" + draw(st.sampled_from(["", " ; a comment", " junk", "\t"])))
        lines.extend(draw(st.lists(line(LOOSE), max_size=2)))
        if draw(st.integers(0, 4)):
            lines.append(draw(line(["entry"])))
        lines.extend(draw(st.lists(line(), max_size=6)))
    ends = [draw(st.sampled_from(["\n", "\r\n"])) if draw(st.integers(0, 9)) == 0 else newline for _ in lines]
    text = "".join(f"{ln}{end}" for ln, end in zip(lines, ends, strict=True))
    assume(not documented_exception(text))
    assume(not any(f"[{label}]" in text for label in SPECIAL))
    return text


def lens_reads(text: str) -> tuple[bool, dict[tuple[str, str], str] | None, str | None]:
    """(accepted, what ServerConf reads, the lens's unchanged rendering)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "server.conf"
        path.write_bytes(text.encode("utf-8"))
        try:
            conf = ServerConf.load(path)
        except ConfigFileError:
            return False, None, None
        try:
            return True, conf.items(), conf._tree.render(ORIGINAL)
        finally:
            conf.close()


def py27_reads(text: str) -> dict[tuple[str, str], str] | None:
    try:
        return py27.read(text)
    except py27.Py27Error:
        return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(py27_file())
@pytest.mark.slow  # real processes: seconds
def test_the_lens_accepts_exactly_what_python27_accepts_and_reads_the_same(text: str) -> None:
    expected = py27_reads(text)
    accepted, read, rendered = lens_reads(text)
    assert accepted == (expected is not None)
    if accepted:
        assert rendered == text  # lossless
        assert read == expected


# -- the oracle against a real Python 2.7 ------------------------------------------------------------


def python27() -> str:
    found = py27.find_python27()
    if found is None:
        pytest.skip("no Python 2.7 installed (set PULPINIT_PYTHON2); the oracle alone stands for it")
    return found


def run_python27(script: str, texts: list[str], *args: str) -> list:
    """Run ``script`` in a real Python 2.7 on one file per text; its JSON output."""
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for index, text in enumerate(texts):
            name = Path(tmp) / f"{index}.conf"
            name.write_bytes(text.encode("utf-8"))
            names.append(str(name))
        done = subprocess.run([python27(), "-c", script, *args, *names], capture_output=True, check=True)
    return json.loads(done.stdout)


def real_py27_reads(texts: list[str]) -> list[dict[tuple[str, str], str] | None]:
    docs = run_python27(py27.PY2_SCRIPT, texts)
    return [None if "error" in doc else {(s, k): v for s, k, v in doc["values"]} for doc in docs]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(py27_file(), min_size=20, max_size=20))
@pytest.mark.slow  # real processes: seconds
def test_the_oracle_reads_like_a_real_python27(texts: list[str]) -> None:
    assert real_py27_reads(texts) == [py27_reads(t) for t in texts]


def test_odd_lines_are_read_by_python27_and_by_the_lens() -> None:
    text = "[database] ; comment\nseeds: db:27017\n[ s ]\nmy key = 1\nrem old\n[tasks]\nbroker_url: qpid://h/\n  more\n"
    expected = {("database", "seeds"): "db:27017", (" s ", "my key"): "1", ("tasks", "broker_url"): "qpid://h/\nmore"}
    assert py27.read(text) == expected
    assert lens_reads(text)[1] == expected
    if py27.find_python27() is not None:
        assert real_py27_reads([text]) == [expected]


# -- editing such files ------------------------------------------------------------------------------

NEW_VALUE = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=12)


def key_of(ln: str) -> str | None:
    match = py27.OPTCRE.match(ln)
    return option_name(match.group("option").rstrip(py27.BLANKS)) if match and ln[:1] not in "#; \t[" else None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(py27_file(), st.data())
@pytest.mark.slow  # real processes: seconds
def test_edits_of_python27_files_are_lossless_and_read_back_by_python27(text: str, data: st.DataObject) -> None:
    before = py27_reads(text)
    assume(before is not None)
    targets = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(["database", "tasks", "a.b", "new"]),
                st.sampled_from(["seeds", "password", "broker_url", "rem", "k.v-1"]),
            ),
            unique=True,
            min_size=1,
            max_size=4,
        )
    )
    values = [data.draw(NEW_VALUE) for _ in targets]
    newline = "\r\n" if text.split("\n", 1)[0].endswith("\r") else "\n"
    assume(all(value_problem(v, crlf=newline == "\r\n") is None for v in values))
    items = [Assignment(s, k, v, f"PULP_V{n}") for n, ((s, k), v) in enumerate(zip(targets, values, strict=True))]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "server.conf"
        path.write_bytes(text.encode("utf-8"))
        plan = ServerConf.load(path).plan(items)
        plan.write()
        new = path.read_bytes().decode("utf-8")
    after = py27.read(new)
    assert before is not None  # assumed above
    assigned = {(i.section, i.key): escape(i.value) for i in items}
    assert after == {**before, **assigned}  # what was asked, and nothing else changed
    assert LensTree(new, "<edited>").render(ORIGINAL) == new
    old_lines, new_lines = Counter(py27.lines_of(text)), Counter(py27.lines_of(new))
    keys = {k for _, k in assigned}
    removed = list((old_lines - new_lines).elements())
    for line_ in removed:  # updated entries and their continuation lines only
        assert line_[:1] in (" ", "\t") or key_of(line_) in keys, line_
    updated = {key_of(line_) for line_ in removed}
    for line_ in (new_lines - old_lines).elements():
        assert line_.strip() == "" or key_of(line_) in keys or line_.startswith("["), line_
        if key_of(line_) not in updated:  # an added line ends like the file's first line
            assert line_.endswith(newline) and (newline == "\r\n" or not line_.endswith("\r\n")), line_
    if (
        "database" in assigned_sections(items)
        and "database" not in headers(text)
        and any(h != "database" and h.strip().lower() == "database" for h in headers(text))
    ):
        assert plan.warnings


def headers(text: str) -> set[str]:
    return {m.group("header") for ln in py27.lines_of(text) if (m := py27.SECTCRE.match(ln))}


def assigned_sections(items: list[Assignment]) -> set[str]:
    return {i.section for i in items}


# -- '%': interpolation as SafeConfigParser (Pulp, server.conf) and ConfigParser (crane) do it --------

PIECES = ["%", "%%", "%(name)s", "%(NAME)s", "%(nope)s", "%(base)s", "%(value)s", "%(", "%(name)d", "a", "s", ")", " "]
PIECES += ["% %", "%5%", "%-3%", "%(name)%", "%(nope)%", "%*%", "%.2%"]  # Python 2's '%' conversions


def percent_file(value: str) -> str:
    return f"[DEFAULT]\nbase: /b%%\n[database]\nname: pulp\nvalue: {value}\n"


def pulpinit_gets(texts: list[str], dialect_class: type[ServerConf]) -> list[dict[str, list[str]]]:
    """What pulpinit reads for every value of the files: ["ok", value] or ["error", why]."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, text in enumerate(texts):
            path = Path(tmp) / f"{index}.conf"
            path.write_bytes(text.encode("utf-8"))
            conf = dialect_class.load(path)
            problems = conf.unreadable()
            got = {}
            for key, value in conf.values().items():
                if not key.startswith("DEFAULT."):  # Python's sections() leaves DEFAULT out
                    got[key] = ["error", problems[key]] if key in problems else ["ok", value]
            out.append(got)
    return out


def python27_gets(texts: list[str], parser: str) -> list[dict[str, list[str]]]:
    return run_python27(py27.PY2_GET_SCRIPT, texts, parser)


def verdicts(got: list[dict[str, list[str]]]) -> list[dict[str, list[str]]]:
    """Values where read, the word "error" where the parser raises (the exception's name aside)."""
    return [{key: value if value[0] == "ok" else ["error"] for key, value in doc.items()} for doc in got]


@pytest.mark.parametrize(("parser", "conf_class"), [("SafeConfigParser", ServerConf), ("ConfigParser", CraneConf)])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.lists(st.sampled_from(PIECES), min_size=1, max_size=5).map("".join), min_size=40, max_size=40)
)
@pytest.mark.slow  # real processes: seconds
def test_percent_is_read_and_refused_exactly_as_python27_does(parser: str, conf_class: type[ServerConf], values):
    """server.conf: SafeConfigParser raises on a lone '%'; crane.conf: ConfigParser only on a '%(' it
    cannot interpolate.  pulpinit reads the same value, or refuses where the parser raises."""
    texts = [percent_file(value.strip()) for value in values]
    assert verdicts(pulpinit_gets(texts, conf_class)) == verdicts(python27_gets(texts, parser))


def test_a_lone_percent_in_server_conf_is_78_naming_the_key_unless_the_environment_replaces_it(tmp_path: Path):
    from pulpinit.cli import main

    conf = tmp_path / "server.conf"
    conf.write_text("[database]\npassword: 50%off\n[server]\nkey_url: /pulp/%(name)s\n")
    env = {"PULPINIT_CONFIG": str(conf), "PULPINIT_LOG_FORMAT": "json", "PULPINIT_USER": "root"}
    env["PULP_DB_USERNAME"] = "pulp"  # a password without a user is refused on its own
    assert main(["settings"], env) == 78
    assert main(["settings"], {**env, "PULP_DB_PASSWORD": "50%off"}) == 78  # [server] key_url is still unreadable
    conf.write_text("[database]\npassword: 50%off\n")
    assert main(["configure"], {**env, "PULP_DB_PASSWORD": "50%off"}) == 0  # replaced: written as 50%%off
    assert "password: 50%%off\n" in conf.read_text()
