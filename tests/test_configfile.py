"""server.conf editing: where lines go, what is refused, idempotence, atomic writes, secrets."""

from __future__ import annotations

import configparser
import difflib
import io
import json
import os
import random
import stat
import subprocess
import tempfile
import threading
from collections import Counter
from pathlib import Path

import pytest
from helpers.inifiles import VALUE, ini_file, stock
from helpers.py27_configparser import find_python27
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulpinit.config.edits import Assignment, KeyChange
from pulpinit.config.inivalue import pulp_reads, value_problem
from pulpinit.config.serverconf import ServerConf
from pulpinit.errors import ConfigFileError, EnvValueError, ExitCode

DATA = Path(__file__).resolve().parent / "data"

# The 2014 scripts' four keys, as `pulpinit configure` sets them.
FOUR = [
    Assignment("database", "seeds", "db:27017", "PULP_DB_SEEDS"),
    Assignment("server", "server_name", "pulp.example.com", "PULP_SERVER_NAME"),
    Assignment("messaging", "url", "tcp://msg:5672", "PULP_MESSAGING_URL"),
    Assignment("tasks", "broker_url", "qpid://guest@msg:5672/", "PULP_BROKER_URL"),
]


def copy_of(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "server.conf"
    target.write_bytes(source.read_bytes())
    return target


def read_back(path: Path) -> dict[str, str]:
    """Every live key as Python's configparser (interpolation on) reads it."""
    parser = configparser.ConfigParser()
    with path.open(encoding="utf-8") as handle:
        parser.read_file(handle)
    return {f"{s}.{k}": parser.get(s, k) for s in parser.sections() for k in parser.options(s)}


def apply(path: Path, assignments: list[Assignment]) -> tuple[KeyChange, ...]:
    before = read_back(path) if path.exists() else {}
    plan = ServerConf.load(path).plan(assignments)
    assert plan.write() is True
    expected = dict(before, **{f"{a.section}.{a.key}": a.value for a in assignments})
    assert read_back(path) == expected  # the asked values, and nothing else changed
    return plan.changes


def added_lines(old: str, new: str) -> list[tuple[int, str]]:
    """(index in the new text, line) of every added line; fails if anything else changed."""
    matcher = difflib.SequenceMatcher(a=old.splitlines(True), b=new.splitlines(True), autojunk=False)
    added: list[tuple[int, str]] = []
    new_lines = new.splitlines(True)
    for tag, _i1, _i2, j1, j2 in matcher.get_opcodes():
        assert tag in ("equal", "insert"), f"{tag}: lines were changed or removed"
        if tag == "insert":
            added.extend((j, new_lines[j]) for j in range(j1, j2))
    return added


# -- where a value lands, on both stock files --------------------------------------------------


@pytest.mark.parametrize("name", ["pulp-2.4-server.conf", "pulp-2.21-server.conf"])
def test_commented_default_gets_the_live_line_right_after_it(name: str, tmp_path: Path) -> None:
    path = copy_of(stock(name), tmp_path)
    old = path.read_text()
    changes = apply(path, FOUR)
    assert {c.how for c in changes} == {"inserted-after-comment"}
    new_lines = path.read_text().splitlines()
    for index, line in added_lines(old, path.read_text()):
        key = line.split(":")[0]
        assert new_lines[index - 1].startswith(f"# {key}:"), (index, line)
    assert "seeds: db:27017\n" in path.read_text()


@pytest.mark.parametrize(
    ("name", "last_entry"),
    [("pulp-2.4-server.conf", "# log_level: INFO"), ("pulp-2.21-server.conf", "# working_directory: /var/cache/pulp")],
)
def test_new_key_goes_after_the_sections_last_entry(name: str, last_entry: str, tmp_path: Path) -> None:
    path = copy_of(stock(name), tmp_path)
    old = path.read_text()
    changes = apply(path, [Assignment("server", "pulpinit_marker", "on", "PULPINIT_MARKER")])
    assert [c.how for c in changes] == ["appended"]
    [(index, line)] = added_lines(old, path.read_text())
    lines = path.read_text().splitlines()
    assert line == "pulpinit_marker: on\n"
    assert lines[index - 1] == last_entry
    # ... and before the blank lines and prose that introduce [authentication]
    assert lines[index + 1 : index + 4] == ["", "", "# = Authentication ="]


@pytest.mark.parametrize("name", ["pulp-2.4-server.conf", "pulp-2.21-server.conf"])
def test_missing_section_is_created_at_the_end(name: str, tmp_path: Path) -> None:
    path = copy_of(stock(name), tmp_path)
    old = path.read_text()
    changes = apply(
        path,
        [Assignment("pulpinit", "role", "worker", "PULPINIT_ROLE"), Assignment("pulpinit", "n", "2", "N")],
    )
    assert [c.how for c in changes] == ["new-section", "new-section"]
    assert path.read_text() == old + "\n[pulpinit]\nrole: worker\nn: 2\n"


@pytest.mark.parametrize("name", ["pulp-2.4-server.conf", "pulp-2.21-server.conf"])
def test_live_key_is_updated_in_place(name: str, tmp_path: Path) -> None:
    path = copy_of(stock(name), tmp_path)
    apply(path, FOUR)
    first = path.read_text()
    changes = apply(path, [Assignment("database", "seeds", "db1:27017,db2:27017", "PULP_DB_SEEDS")])
    assert [(c.how, c.old, c.new) for c in changes] == [("updated", "db:27017", "db1:27017,db2:27017")]
    assert path.read_text() == first.replace("seeds: db:27017\n", "seeds: db1:27017,db2:27017\n")


def test_update_keeps_separator_spacing_and_trailing_blanks(tmp_path: Path) -> None:
    path = copy_of(DATA / "live-keys.conf", tmp_path)
    old = path.read_text()
    changes = apply(
        path,
        [
            Assignment("server", "server_name", "pulp.new.example.com", "PULP_SERVER_NAME"),
            Assignment("server", "default_password", "n3w", "PULP_DEFAULT_PASSWORD", secret=True),
            Assignment("authentication", "rsa_key", "/etc/pki/pulp/rsa.key", "PULP_RSA_KEY"),
            Assignment("database", "password", "pw", "PULP_DB_PASSWORD", secret=True),
        ],
    )
    assert {c.how for c in changes} == {"updated"}
    expected = (
        old.replace("server_name = pulp.old.example.com\n", "server_name = pulp.new.example.com\n")
        .replace("default_password:\tadmin   \n", "default_password:\tn3w   \n")
        .replace("rsa_key =\n", "rsa_key = /etc/pki/pulp/rsa.key\n")
        .replace("password:   \n", "password: pw   \n")
    )
    assert path.read_text() == expected


def test_prose_that_looks_like_a_key_does_not_attract_the_line(tmp_path: Path) -> None:
    path = copy_of(DATA / "prose-only.conf", tmp_path)
    apply(path, [FOUR[0], FOUR[1]])
    lines = path.read_text().splitlines()
    assert lines[lines.index("seeds: db:27017") - 1] == "# seeds: localhost:27017"
    assert lines[lines.index("server_name: pulp.example.com") - 1] == "# server_name: server_hostname"


# -- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["50%", "%%", "%(name)s", "p#ss;word", "#start", ";start", 'quo"te', "'amq.topic'", "x=y:z", "ünï", "a b"],
)
def test_value_reads_back_exactly(value: str, tmp_path: Path) -> None:
    path = copy_of(DATA / "live-keys.conf", tmp_path)
    apply(path, [Assignment("database", "password", value, "PULP_DB_PASSWORD", secret=True)])
    assert ServerConf.load(path).get("database", "password") == value
    assert "%" not in value or "%%" in path.read_text()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (" s3cr3t-lead", "whitespace"),
        ("s3cr3t-trail\t", "whitespace"),
        ("s3cr3t\nlines", "U+000A"),
        ("s3cr3t\0nul", "U+0000"),
        ("s3cr3t\abell", "U+0007"),
        ("s3cr3t\u2028sep", "U+2028"),
        ("s3cr3t\udcffbad", "U+DCFF"),
        ("s3cr3t ;comment", "';' after whitespace"),
        ("a;b ;c", "';' after whitespace"),  # Python 2 reads this one literally; refused all the same
        ('""', "empty value"),
    ],
)
def test_value_pulp_would_read_differently_is_refused(value: str, problem: str, tmp_path: Path) -> None:
    path = copy_of(DATA / "live-keys.conf", tmp_path)
    before = path.read_bytes()
    conf = ServerConf.load(path)
    with pytest.raises(EnvValueError) as caught:
        conf.plan([FOUR[0], Assignment("database", "password", value, "PULP_DB_PASSWORD", secret=True)])
    assert caught.value.exit_code == ExitCode.CONFIG == 78
    assert caught.value.variable == "PULP_DB_PASSWORD"
    assert str(caught.value).startswith("PULP_DB_PASSWORD: ")
    assert problem in str(caught.value)
    assert "s3cr3t" not in str(caught.value)
    assert path.read_bytes() == before


def test_get_reads_like_pulp() -> None:
    assert pulp_reads("db:27017 ; the database") == "db:27017"  # ';' after a blank: comment
    assert pulp_reads("a;b ;c") == "a;b ;c"  # Python 2 only looks at the first ';'
    assert pulp_reads("50%%") == "50%"
    assert pulp_reads('""') == ""
    assert pulp_reads(None) == ""


def test_empty_value_is_written_as_key_colon(tmp_path: Path) -> None:
    path = copy_of(DATA / "prose-only.conf", tmp_path)
    apply(path, [Assignment("database", "name", "", "PULP_DB_NAME")])
    assert "# name: pulp_database\nname:\n" in path.read_text()


def test_duplicate_assignment_is_a_programming_error(tmp_path: Path) -> None:
    conf = ServerConf.load(copy_of(DATA / "live-keys.conf", tmp_path))
    with pytest.raises(ValueError, match="PULP_A and PULP_B"):
        conf.plan([Assignment("s", "k", "1", "PULP_A"), Assignment("s", "k", "2", "PULP_B")])


# -- idempotence, atomic writes, ownership -------------------------------------------------------


@pytest.mark.parametrize("name", ["pulp-2.4-server.conf", "pulp-2.21-server.conf"])
def test_second_run_writes_nothing(name: str, tmp_path: Path) -> None:
    path = copy_of(stock(name), tmp_path)
    apply(path, FOUR)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = path.read_bytes()
    plan = ServerConf.load(path).plan(FOUR)
    assert plan.changes == ()
    assert plan.diff() == ""
    assert plan.write() is False
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == 1_000_000_000


def test_plan_alone_writes_nothing(tmp_path: Path) -> None:
    path = copy_of(DATA / "live-keys.conf", tmp_path)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = path.read_bytes()
    plan = ServerConf.load(path).plan(FOUR)
    assert plan.changes and plan.diff()
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == 1_000_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.conf"]


@pytest.mark.root  # chown to another user
def test_write_keeps_mode_owner_group_and_replaces_the_inode(tmp_path: Path) -> None:
    path = copy_of(DATA / "live-keys.conf", tmp_path)
    os.chown(path, 4321, 8765)
    path.chmod(0o640)
    inode = path.stat().st_ino
    apply(path, FOUR)
    info = path.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o640, 4321, 8765)
    assert info.st_ino != inode  # a rename, not a rewrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.conf"]


@pytest.mark.slow  # real processes: seconds
def test_concurrent_reader_sees_whole_files_only(tmp_path: Path) -> None:
    path = copy_of(DATA / "live-keys.conf", tmp_path)
    contents = {path.read_bytes()}
    for n in range(30):
        plan = ServerConf.load(path).plan([Assignment("server", "server_name", f"host{n}", "PULP_SERVER_NAME")])
        contents.add(plan.new_text.encode())
    path.write_bytes(min(contents))
    seen: list[bytes] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            seen.append(path.read_bytes())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(30):
            ServerConf.load(path).plan([Assignment("server", "server_name", f"host{n}", "X")]).write()
    finally:
        done.set()
        thread.join()
    assert seen and set(seen) <= contents


def test_symlinked_file_is_written_through_the_link(tmp_path: Path) -> None:
    real = copy_of(DATA / "live-keys.conf", tmp_path)
    link = tmp_path / "link.conf"
    link.symlink_to(real.name)
    assert ServerConf.load(link).plan(FOUR).write()
    assert link.is_symlink()
    assert read_back(real)["database.seeds"] == "db:27017"


def test_file_changed_since_it_was_read_is_not_overwritten(tmp_path: Path) -> None:
    path = copy_of(DATA / "live-keys.conf", tmp_path)
    plan = ServerConf.load(path).plan(FOUR)
    path.write_text(path.read_text() + "# edited meanwhile\n")
    with pytest.raises(ConfigFileError, match="changed on disk"):
        plan.write()
    assert path.read_text().endswith("# edited meanwhile\n")


def test_missing_final_newline_is_added_only_when_editing(tmp_path: Path) -> None:
    path = tmp_path / "server.conf"
    path.write_text("[database]\nseeds: db:27017")
    assert ServerConf.load(path).plan([FOUR[0]]).write() is False
    assert path.read_text() == "[database]\nseeds: db:27017"
    apply(path, [Assignment("database", "name", "pulp", "PULP_DB_NAME")])
    assert path.read_text() == "[database]\nseeds: db:27017\nname: pulp\n"


# -- bad files -------------------------------------------------------------------------------------


def test_unparseable_file_is_exit_78_with_position_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "server.conf"
    path.write_text("[database]\nseeds: db:27017\npassword hunter2\n")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = path.read_bytes()
    with pytest.raises(ConfigFileError) as caught:
        ServerConf.load(path).plan(FOUR).write()
    assert caught.value.exit_code == 78
    assert "line 3, char 0" in str(caught.value)
    assert str(path) in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == 1_000_000_000


@pytest.mark.parametrize(("data", "problem"), [(b"[a]\nk: \xff\n", "not UTF-8"), (b"[a]\nk: \0\n", "NUL")])
def test_binary_file_is_refused(data: bytes, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "server.conf"
    path.write_bytes(data)
    with pytest.raises(ConfigFileError, match=problem):
        ServerConf.load(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as caught:
        ServerConf.load(tmp_path / "server.conf")
    assert caught.value.exit_code == 78
    assert "no such file" in str(caught.value)
    assert not (tmp_path / "server.conf").exists()


def test_missing_file_is_created_on_request(tmp_path: Path) -> None:
    path = tmp_path / "server.conf"
    plan = ServerConf.load(path, create=True).plan(FOUR)
    assert not path.exists()
    assert plan.diff().count("\n+") == 12
    assert plan.write() is True
    assert read_back(path) == {f"{a.section}.{a.key}": a.value for a in FOUR}
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # private from the start: 0640 like Pulp's RPM


# -- secrets -----------------------------------------------------------------------------------------


def test_secrets_never_appear_in_diff_repr_or_log(tmp_path: Path) -> None:
    path = copy_of(DATA / "live-keys.conf", tmp_path)
    text = path.read_text().replace("username:\n", "username: pulp\n")
    path.write_text(text.replace("password:   \n", "password: s3cr3t-0ld\n"))
    secret = Assignment("database", "password", "n3w-s3cr3t%", "PULP_DB_PASSWORD", secret=True)
    url = Assignment("tasks", "broker_url", "amqp://pulp:url-s3cr3t@mq//", "PULP_BROKER_URL")
    plan = ServerConf.load(path).plan([Assignment("database", "username", "admin", "PULP_DB_USERNAME"), secret, url])
    diff = plan.diff()
    assert "\n-password: ***\n" in diff
    assert "\n+password: ***\n" in diff  # a changed secret shows, masked on both sides
    assert "+broker_url: amqp://pulp:***@mq//" in diff
    shown = diff + repr(plan.changes) + repr(secret) + json.dumps([(c.shown_old, c.shown_new) for c in plan.changes])
    for leaked in ("s3cr3t-0ld", "n3w-s3cr3t", "url-s3cr3t"):
        assert leaked not in shown
    from pulpinit import log

    stream = io.StringIO()
    log.configure("json", stream=stream)
    plan.log_changes()
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["key"] for e in events] == ["database.username", "database.password", "tasks.broker_url"]
    assert {e["event"] for e in events} == {"config.changed"}
    assert events[1]["new"] == "***" and events[1]["old"] == "***"
    assert not any(s in stream.getvalue() for s in ("s3cr3t-0ld", "n3w-s3cr3t", "url-s3cr3t"))


def test_value_problem_accepts_what_pulp_reads_literally() -> None:
    for value in ["db:27017", "p#ss", "a;b", '"quoted"', "100%", ""]:
        assert value_problem(value) is None, value


# -- Pulp's own reader: Python 2's SafeConfigParser ----------------------------------------------

PY2_READ = """
import ConfigParser, io, json, sys
parser = ConfigParser.SafeConfigParser()
parser.readfp(io.open(sys.argv[1], encoding="utf-8"))
json.dump(dict(("%s.%s" % (s, k), parser.get(s, k)) for s in parser.sections() for k in parser.options(s)),
          sys.stdout)
"""


def python2() -> str:
    found = find_python27()
    if found is None:
        pytest.skip("no Python 2.7 to run Pulp's SafeConfigParser (set PULPINIT_PYTHON2)")
    return found


def pulp_read(path: Path) -> dict[str, str]:
    result = subprocess.run([python2(), "-c", PY2_READ, str(path)], capture_output=True, text=True, check=True)
    values: dict[str, str] = json.loads(result.stdout)
    return values


@pytest.mark.slow  # real processes: seconds
def test_python2_safeconfigparser_reads_every_accepted_value_exactly(tmp_path: Path) -> None:
    alphabet = "ab z#;%\"'=:[]\\\t{}()/@é€😀"
    rng = random.Random(2014)
    values = ["50%", "%(x)s", "#x", ";x", "x;", "a;b ;c", '"', '""x', "'amq.topic'", "q\"uo'te", "é€😀"]
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(400)]
    accepted = [v for v in dict.fromkeys(values) if value_problem(v) is None]
    assert len(accepted) > 150
    path = copy_of(DATA / "live-keys.conf", tmp_path)
    apply(path, [Assignment("values", f"k{n}", v, f"PULP_K{n}") for n, v in enumerate(accepted)])
    read = pulp_read(path)
    assert {n: read[f"values.k{n}"] for n in range(len(accepted))} == dict(enumerate(accepted))
    assert read["database.seeds"] == "localhost:27017"


@pytest.mark.parametrize("raw", [" lead", "trail ", "a ;comment", '""'])
def test_python2_really_reads_refused_values_differently(raw: str, tmp_path: Path) -> None:
    """The refusals are needed: written as is, Pulp would read something else."""
    assert value_problem(raw) is not None
    path = tmp_path / "server.conf"
    path.write_text(f"[s]\nk:{raw}\n")
    assert pulp_read(path)["s.k"] != raw


# -- property: any edit of any generated file -----------------------------------------------------


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ini_file(), st.data())
@pytest.mark.slow  # real processes: seconds
def test_any_edit_reads_back_or_is_refused_naming_the_variable(
    generated: tuple[str, dict[str, str]], data: st.DataObject
) -> None:
    text, before = generated
    sections = sorted({key.split(".")[0] for key in before} | {"pulp_new"})
    keys = sorted({key.split(".")[1] for key in before} | {"seeds"})
    targets = data.draw(st.lists(st.tuples(st.sampled_from(sections), st.sampled_from(keys)), unique=True, max_size=5))
    values = data.draw(st.lists(st.one_of(VALUE, st.text(max_size=12)), min_size=len(targets), max_size=len(targets)))
    items = [Assignment(s, k, v, f"PULP_V{n}") for n, ((s, k), v) in enumerate(zip(targets, values, strict=True))]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "server.conf"
        path.write_text(text)
        refused = [i for i in items if value_problem(i.value) is not None]
        if refused:
            with pytest.raises(EnvValueError) as caught:
                ServerConf.load(path).plan(items)
            assert caught.value.variable == refused[0].variable
            assert path.read_text() == text
            return
        ServerConf.load(path).plan(items).write()
        assert read_back(path) == dict(before, **{f"{i.section}.{i.key}": i.value for i in items})
        allowed = {i.key for i in items} | {f"[{i.section}]" for i in items} | {""}
        for line, _ in added_lines_or_updates(text, path.read_text()):
            assert line.split(":")[0].split("=")[0].strip() in allowed, line
        assert ServerConf.load(path).plan(items).changes == ()


def added_lines_or_updates(old: str, new: str) -> list[tuple[str, str]]:
    """(new line, "") for each line that was added; a line may only disappear when its key was updated.

    Counted as multisets: a diff's alignment is ambiguous when a file repeats a line.
    """

    def key_of(line: str) -> str:
        return line.split(":", maxsplit=1)[0].split("=", maxsplit=1)[0].strip()

    old_lines, new_lines = Counter(old.splitlines(True)), Counter(new.splitlines(True))
    added, removed = new_lines - old_lines, old_lines - new_lines
    added_keys = {key_of(line) for line in added.elements()}
    for line in removed.elements():
        assert key_of(line) in added_keys and not line.lstrip().startswith(("#", ";")), f"line disappeared: {line!r}"
    return [(line, "") for line in added.elements()]


# -- lines Pulp reads (Python 2.7's ConfigParser), edited losslessly ---------------------------------------


def edit(tmp_path: Path, text: str, items: list[Assignment]) -> tuple[str, tuple[str, ...]]:
    path = tmp_path / "server.conf"
    path.write_bytes(text.encode())
    plan = ServerConf.load(path).plan(items)
    plan.write()
    return path.read_bytes().decode(), plan.warnings


def test_crlf_files_get_crlf_lines(tmp_path: Path) -> None:
    text = "[database]\r\n# seeds: localhost:27017\r\nname: pulp\r\n"
    new, _ = edit(tmp_path, text, [FOUR[0], Assignment("tasks", "broker_url", "qpid://h/", "PULP_BROKER_URL")])
    assert new == (
        "[database]\r\n# seeds: localhost:27017\r\nseeds: db:27017\r\nname: pulp\r\n"
        "\r\n[tasks]\r\nbroker_url: qpid://h/\r\n"
    )


def test_a_missing_final_newline_of_a_crlf_file_is_crlf(tmp_path: Path) -> None:
    new, _ = edit(tmp_path, "[database]\r\nname: pulp", [FOUR[0]])
    assert new == "[database]\r\nname: pulp\r\nseeds: db:27017\r\n"


def test_a_value_starting_with_a_semicolon_is_refused_in_a_crlf_file(tmp_path: Path) -> None:
    path = tmp_path / "server.conf"
    path.write_bytes(b"[database]\r\n")
    with pytest.raises(EnvValueError, match="CRLF"):
        ServerConf.load(path).plan([Assignment("database", "password", ";pw", "PULP_DB_PASSWORD", secret=True)])
    path.write_bytes(b"[database]\n")
    ServerConf.load(path).plan([Assignment("database", "password", ";pw", "PULP_DB_PASSWORD", secret=True)]).write()
    assert ServerConf.load(path).get("database", "password") == ";pw"


def test_headers_with_comments_keys_with_blanks_and_rem_lines_are_edited_losslessly(tmp_path: Path) -> None:
    text = "[database] ; the database\n# seeds: localhost:27017\nmy key = 1\nrem an old comment\n\n[tasks]junk\n"
    new, _ = edit(tmp_path, text, [FOUR[0], Assignment("tasks", "login_method", "PLAIN", "X")])
    assert new == (
        "[database] ; the database\n# seeds: localhost:27017\nseeds: db:27017\nmy key = 1\n"
        "rem an old comment\n\n[tasks]junk\nlogin_method: PLAIN\n"
    )
    assert ServerConf.load(tmp_path / "server.conf").values()["database.my key"] == "1"


def test_a_section_with_blanks_in_its_brackets_is_another_section_for_pulp(tmp_path: Path) -> None:
    text = "[ database ]\nseeds: old:27017\n"
    new, warnings = edit(tmp_path, text, [FOUR[0]])
    assert new == "[ database ]\nseeds: old:27017\n\n[database]\nseeds: db:27017\n"
    [warning] = warnings
    assert "' database '" in warning and "Pulp ignores it" in warning
    conf = ServerConf.load(tmp_path / "server.conf")
    assert conf.get("database", "seeds") == "db:27017" and conf.get(" database ", "seeds") == "old:27017"


def test_updating_a_value_with_continuation_lines_removes_them(tmp_path: Path) -> None:
    text = "[database]\nseeds: a:1,\n  b:2\n# about name\n  c:3\nname: pulp\n"
    conf = tmp_path / "server.conf"
    conf.write_text(text)
    assert ServerConf.load(conf).get("database", "seeds") == "a:1,\nb:2\nc:3"  # as Python 2.7 reads it
    new, _ = edit(tmp_path, text, [FOUR[0]])
    assert new == "[database]\nseeds: db:27017\n# about name\nname: pulp\n"


def test_a_new_line_never_splits_an_entry_from_its_continuation(tmp_path: Path) -> None:
    text = "[server]\nkey_url: /pulp/gpg\n# server_name: server_hostname\n  continued\n\n# prose\n"
    new, _ = edit(tmp_path, text, [FOUR[1]])
    assert new == (
        "[server]\nkey_url: /pulp/gpg\n# server_name: server_hostname\n  continued\n"
        "server_name: pulp.example.com\n\n# prose\n"
    )
    values = ServerConf.load(tmp_path / "server.conf").values()
    assert values == {"server.key_url": "/pulp/gpg\ncontinued", "server.server_name": "pulp.example.com"}


def test_a_secret_with_continuation_lines_is_masked_on_every_line(tmp_path: Path) -> None:
    path = tmp_path / "server.conf"
    path.write_text("[database]\npassword: first-part\n  second-part\n")
    plan = ServerConf.load(path).plan([Assignment("database", "password", "n3w-pw", "PULP_DB_PASSWORD", secret=True)])
    diff = plan.diff()
    assert "-password: ***\n" in diff and "-  ***\n" in diff and "+password: ***\n" in diff
    assert not any(s in diff for s in ("first-part", "second-part", "n3w-pw"))
