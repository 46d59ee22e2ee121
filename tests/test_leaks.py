"""No secret in any output: every captured output (stdout, stderr, diffs, JSON) is searched for it.

Secrets are searched for in every encoding they can take (:func:`encodings`, made with the
standard library, not with pulpinit's own :func:`pulpinit.redact.forms`: raw, percent-decoded,
percent-encoded three ways, each as is or ``%%``-escaped, each as is, JSON-escaped (ASCII and
UTF-8) or repr-escaped: 40 encodings) and, for the generated ones, by the unique markers at their
start, middle and end, so that a piece of a secret counts too.  Every secret is put in each of
:data:`PLACEMENTS` (20 places: variables, ``_FILE``s, URLs with and without a scheme, command
lines, server.conf).  User names are not secrets and stay visible.

Secrets that are common words — the log's own vocabulary among them (``error``, ``info``,
``event``, ``admin``) — are masked in every value, and the log lines keep their keys, event names
and levels (:func:`test_a_secret_that_is_a_common_word_leaves_every_line_whole`).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import shlex
import shutil
import string
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.workdirs import reachable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulpinit.cli import main
from pulpinit.log import EVENTS, KEYS, LEVELS, is_log_word
from pulpinit.redact import MIN_LENGTH, REDACTOR
from pulpinit.testing import SAMPLE_CONF
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.keys import keys_env
from pulpinit.testing.plugin import FakeServices

SAMPLE = SAMPLE_CONF
COMMANDS = (["settings"], ["settings", "--json"], ["configure", "--dry-run"], ["beat", "--dry-run"], ["configure"])
BASE = {
    "PULPINIT_LOG_FORMAT": "json",
    "PULPINIT_MIGRATION_FINGERPRINT": "2.21.5",
    "PULPINIT_LOG_LEVEL": "debug",
    "PULPINIT_USER": "nobody",
    "PULPINIT_CELERY": "/bin/true",  # found: the dry run's checks pass
    "PULPINIT_MANAGE_DB": "/bin/true",
}


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory PULPINIT_USER (nobody) can reach, unlike pytest's 0700 tmp_path."""
    with reachable("leaks", sample=False) as path:
        yield path


URL_ENCODINGS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "percent-decoded": urllib.parse.unquote,
    "percent-encoded": lambda s: urllib.parse.quote(s, safe=""),
    "percent-encoded, / kept": urllib.parse.quote,
    "form-encoded": urllib.parse.quote_plus,
}
CONF_ENCODINGS: dict[str, Callable[[str], str]] = {"": lambda s: s, ", %%-escaped": lambda s: s.replace("%", "%%")}
STRING_ENCODINGS: dict[str, Callable[[str], str]] = {
    "": lambda s: s,
    ", JSON": lambda s: json.dumps(s)[1:-1],
    ", JSON (UTF-8)": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    ", repr": lambda s: repr(s)[1:-1],
}


def encodings(secret: str) -> dict[str, str]:
    """Every encoding of ``secret`` in output, by name (40 of them), from the standard library."""
    return {
        f"{u}{c}{t}": to_text(to_conf(to_url(secret)))
        for u, to_url in URL_ENCODINGS.items()
        for c, to_conf in CONF_ENCODINGS.items()
        for t, to_text in STRING_ENCODINGS.items()
    }


def leaks(output: str, secret: str, pieces: tuple[str, ...] = ()) -> list[str]:
    """The encodings of ``secret`` (and the ``pieces`` of it) found in ``output`` (none shorter than the
    redactor's MIN_LENGTH: a 1-2 character string is ordinary text)."""
    found = set(encodings(secret).values()) | set(pieces)
    return sorted(f for f in found if len(f) >= MIN_LENGTH and f in output)


def run_main(argv: list[str], env: dict[str, str], workdir: Path) -> tuple[int, str]:
    """``pulpinit ARGV`` in this process (a fresh redactor, as in a new process): exit code, all output."""
    code, out, err = run_main_apart(argv, env, workdir)
    return code, out + err


def run_main_apart(argv: list[str], env: dict[str, str], workdir: Path) -> tuple[int, str, str]:
    """:func:`run_main` with stdout and stderr apart."""
    conf = workdir / "server.conf"
    if not conf.exists():
        shutil.copy(SAMPLE, conf)
    REDACTOR.reset()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv, {**BASE, "PULPINIT_CONFIG": str(conf), **env})
    return code, out.getvalue(), err.getvalue()


def run_process(argv: list[str], env: dict[str, str], workdir: Path) -> tuple[int, str]:
    """``pulpinit ARGV`` as a real process: exit code, stdout and stderr."""
    conf = workdir / "server.conf"
    if not conf.exists():
        shutil.copy(SAMPLE, conf)
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **BASE, "PULPINIT_CONFIG": str(conf), **env}
    done = subprocess.run(
        [sys.executable, "-m", "pulpinit", *argv], env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    return done.returncode, done.stdout + done.stderr


# -- secrets that once showed, one by one ---------------------------------------------------------------

#: (environment, the secret, pieces of it that must not show either, exit code of `settings`)
SHOWN_CASES = [
    ({"PULP_BROKER_URL": "qpid://u:SEKsl/RET99@h:5672/"}, "SEKsl/RET99", ("SEKsl", "RET99"), 78),
    ({"PULP_BROKER_URL": "qpid://u:SEKha#RET99@h/"}, "SEKha#RET99", ("SEKha", "RET99"), 78),
    ({"PULP_BROKER_URL": "qpid://u:SEKha?RET99@h/"}, "SEKha?RET99", ("SEKha", "RET99"), 78),
    ({"PULP_BROKER_URL": "qpid://u:SEK@RET99@h/"}, "SEK@RET99", ("RET99",), 0),  # kombu: password "SEK@RET99"
    ({"PULP_BROKER_URL": "qpid://SEK@usr:RET99@h/"}, "RET99", (), 0),  # kombu: user "SEK@usr", password "RET99"
    ({"PULP_MESSAGING_URL": "tcp://u:SEKsl/RET99@h:5672"}, "SEKsl/RET99", ("SEKsl", "RET99"), 78),
    ({"PULP_BROKER_URL": "qpid://u:SEK[RET99@h/"}, "SEK[RET99", ("RET99",), 78),
    ({"PULPINIT_CELERY_ARGS": "--broker=amqp://x:SEKargsRET99@h//"}, "SEKargsRET99", (), 0),
    ({"PULP_CONF__PULPINIT__BACKUP_URL": "amqp://u:SEKurl RET99@h//"}, "SEKurl RET99", (), 0),
    ({"MSG_SERVICE_HOST": "10.0.0.1", "MSG_SERVICE_PASSWORD": "SEK p@ss/w%rd RET99"}, "SEK p@ss/w%rd RET99", (), 0),
    ({"PULP_CONF__X__BROKER_URL": "pulp:SEKnoschemeRET99@h:5672"}, "SEKnoschemeRET99", (), 0),  # no scheme
]


@pytest.mark.parametrize(("env", "secret", "pieces", "code"), SHOWN_CASES)
def test_shown_cases_show_nothing_in_any_command(env, secret, pieces, code, workdir: Path) -> None:
    for argv in COMMANDS:
        got, output = run_main(argv, env, workdir)
        assert got == code, (argv, output[-500:])
        assert leaks(output, secret, pieces) == [], (argv, output)
        assert "Traceback" not in output


def test_the_no_scheme_url_shows_masked_in_settings_the_diff_and_config_changed(workdir: Path) -> None:
    env = {"PULP_CONF__X__BROKER_URL": "pulp:SEKnoschemeRET99@h:5672"}
    _, output = run_main(["settings"], env, workdir)
    assert "pulp:***@h:5672" in output
    _, output = run_main(["configure", "--dry-run"], env, workdir)
    assert "+broker_url: pulp:***@h:5672" in output
    _, output = run_main(["configure"], env, workdir)
    [changed] = [json.loads(x) for x in output.splitlines() if '"config.changed"' in x]
    assert changed["new"] == "pulp:***@h:5672"
    assert (workdir / "server.conf").stat().st_mode & 0o007 == 0  # it holds a password: private


def test_an_error_line_keeps_its_structure_when_the_password_is_error(workdir: Path) -> None:
    """Never ``{"***": …, "event": "pulpinit.***", "level": "***"}`` for PULP_DB_PASSWORD=error."""
    code, _, err = run_main_apart(["settings"], {"PULP_DB_PASSWORD": "error", "PULP_BROKER_URL": "http://h/"}, workdir)
    last = json.loads(err.splitlines()[-1])
    assert code == 78
    assert (last["event"], last["level"], set(last)) == (
        "pulpinit.error",
        "error",
        {"error", "exit_code", "event", "level", "timestamp"},
    )
    assert last["error"].startswith("PULP_BROKER_URL: unknown URL scheme")


def test_user_names_stay_visible(workdir: Path) -> None:
    _, output = run_main(["settings"], {"PULP_BROKER_URL": "qpid://SEK@usr:RET99@h/"}, workdir)
    assert "qpid://SEK@usr:***@h/" in output
    _, output = run_main(["settings", "--json"], {"PULP_BROKER_URL": "qpid://u:SEK@RET99@h/"}, workdir)
    assert json.loads(output[: output.index("\n}") + 2])["settings"]["tasks.broker_url"]["value"] == "qpid://u:***@h/"


def test_rejected_url_message_masks_the_userinfo_and_says_to_percent_encode(workdir: Path) -> None:
    code, output = run_main(["settings"], {"PULP_BROKER_URL": "qpid://u:SEKsl/RET99@h:5672/"}, workdir)
    error = json.loads(output.strip().splitlines()[-1])["error"]
    assert code == 78
    assert error.startswith("PULP_BROKER_URL: 'qpid://***@h:5672/': ")
    assert "percent-encode" in error


def test_argv_credentials_are_masked_in_settings_dry_run_and_plan(workdir: Path) -> None:
    env = {"PULPINIT_CELERY_ARGS": "--broker=amqp://x:SEKargs1@h// -l INFO"}
    code, output = run_main(["beat", "--dry-run", "--", "--result=amqp://y:SEKdash2@q//"], env, workdir)
    assert code == 0
    assert leaks(output, "SEKargs1") == leaks(output, "SEKdash2") == []
    assert "'--broker=amqp://x:***@h//'" in output and "'--result=amqp://y:***@q//'" in output


@pytest.mark.parametrize(("env", "secret", "pieces", "code"), [SHOWN_CASES[0], SHOWN_CASES[3], SHOWN_CASES[9]])
@pytest.mark.slow  # real processes: seconds
def test_shown_cases_as_real_processes(env, secret, pieces, code, workdir: Path) -> None:
    for argv in (["settings", "--json"], ["beat", "--dry-run"], ["configure"]):
        got, output = run_process(argv, env, workdir)
        assert got == code, output[-500:]
        assert leaks(output, secret, pieces) == []


def test_key_url_is_no_secret_but_a_url_with_a_password_is(workdir: Path) -> None:
    env = {"PULP_CONF__SERVER__KEY_URL": "/pulp/gpg", "PULP_CONF__PULPINIT__OTHER_URL": "amqp://u:SEKotherRET@h//"}
    _, output = run_main(["settings", "--json"], env, workdir)
    values = json.loads(output[: output.index("\n}") + 2])["settings"]
    assert values["server.key_url"] == {"value": "/pulp/gpg", "source": "env:PULP_CONF__SERVER__KEY_URL"}
    assert values["pulpinit.other_url"]["value"] == "amqp://u:***@h//"


# -- the hand-off: argv in the handoff.exec line, and the child's environment ---------------------------


@pytest.fixture(scope="module")
def services(module_fakes: FakeServices) -> tuple[FakeMongo, FakeAmqpBroker]:
    mongo = module_fakes.mongo(users={("pulp_database", "pulp"): "SEKmongoRET"})
    return mongo, module_fakes.broker(users={"pulp": "SEKbrokerRET"})


@pytest.fixture
def live_env(services, workdir: Path, pulp_keys: Path) -> dict[str, str]:
    mongo, broker = services
    (workdir / "db-password").write_text("SEKmongoRET\n")
    return {
        **keys_env(pulp_keys),  # the worker checks its message-signing pair
        "PULP_DB_SEEDS": mongo.hostport,
        "PULP_DB_USERNAME": "pulp",
        "PULP_DB_PASSWORD_FILE": str(workdir / "db-password"),
        "PULP_BROKER_URL": broker.url("pulp", "SEKbrokerRET"),
        "PULPINIT_MIGRATION_WAIT": "false",
        "PULP_CONF__SERVER__DEFAULT_PASSWORD": "SEKadminRET",
        "PULPINIT_CELERY": "/bin/true",
        "PULPINIT_CELERY_ARGS": "--broker=amqp://x:SEKargsRET@h//",
    }


SECRETS = ("SEKmongoRET", "SEKbrokerRET", "SEKadminRET", "SEKargsRET", "SEKdashRET")


def test_handoff_exec_line_masks_argv(live_env, workdir: Path) -> None:
    code, output = run_process(["worker", "1", "--", "--result=amqp://y:SEKdashRET@q//"], live_env, workdir)
    assert code == 0, output[-1000:]
    [line] = [json.loads(x) for x in output.splitlines() if '"handoff.exec"' in x]
    assert line["argv"][-2:] == ["--broker=amqp://x:***@h//", "--result=amqp://y:***@q//"]
    assert [s for s in SECRETS if leaks(output, s)] == []


def child_environment(output: str) -> dict[str, str]:
    return dict(x.split("=", 1) for x in output.splitlines() if "=" in x and not x.startswith("{"))


@pytest.mark.parametrize("init", [False, True])
@pytest.mark.slow  # real processes: seconds
def test_consumed_secret_variables_do_not_reach_the_child(live_env, workdir: Path, init: bool) -> None:
    env = {**live_env, "MSG_SERVICE_PASSWORD": "SEKmsgRET", "PULP_CONF__X__PLAIN": "visible"}
    argv = ["run", *(["--init"] if init else []), "--", "/usr/bin/env"]
    code, output = run_process(argv, env, workdir)
    assert code == 0, output[-1000:]
    child = child_environment(output)
    for name in (
        "PULP_DB_PASSWORD_FILE",
        "PULP_BROKER_URL",
        "PULP_CONF__SERVER__DEFAULT_PASSWORD",
        "MSG_SERVICE_PASSWORD",
    ):
        assert name not in child
    assert child["PULP_DB_SEEDS"] == live_env["PULP_DB_SEEDS"] and child["PULP_CONF__X__PLAIN"] == "visible"
    assert child["PULP_DB_USERNAME"] == "pulp"  # a user name is no secret
    assert not [s for s in (*SECRETS, "SEKmsgRET") if s in output]  # not even in what the child printed
    code, output = run_process(argv, {**env, "PULPINIT_KEEP_SECRET_ENV": "1"}, workdir)
    assert code == 0
    assert child_environment(output)["MSG_SERVICE_PASSWORD"] == "SEKmsgRET"  # the operator asked for it


# -- property: random secrets in every secret variable and URL password --------------------------------

_COUNTER = itertools.count()
PRINTABLE = st.text(st.sampled_from(string.printable), max_size=8)
Placement = Callable[[str, Path], tuple[dict[str, str], list[str]]]  # (environment, extra argv)


def _file(secret: str, tmp: Path) -> str:
    path = tmp / "secret"
    path.write_bytes(secret.encode("utf-8"))
    return str(path)


def _conf_password(secret: str, tmp: Path) -> tuple[dict[str, str], list[str]]:
    (tmp / "server.conf").write_bytes(SAMPLE.read_bytes() + f"\n[pulpinit]\npassword: {secret}\n".encode())
    return {}, []


PLACEMENTS: dict[str, Placement] = {
    "PULP_DB_PASSWORD": lambda s, t: ({"PULP_DB_PASSWORD": s}, []),
    "PULP_DB_PASSWORD_FILE": lambda s, t: ({"PULP_DB_PASSWORD_FILE": _file(s, t)}, []),
    "PULP_BROKER_URL raw": lambda s, t: ({"PULP_BROKER_URL": f"qpid://pulp:{s}@10.0.0.1:5672/"}, []),
    "PULP_BROKER_URL encoded": lambda s, t: (
        {"PULP_BROKER_URL": f"qpid://pulp:{urllib.parse.quote(s, safe='')}@10.0.0.1:5672/"},
        [],
    ),
    "PULP_BROKER_URL_FILE": lambda s, t: ({"PULP_BROKER_URL_FILE": _file(f"amqp://pulp:{s}@10.0.0.1//", t)}, []),
    "PULP_MESSAGING_URL raw": lambda s, t: ({"PULP_MESSAGING_URL": f"tcp://pulp:{s}@10.0.0.1:5672"}, []),
    "PULP_BROKER_PASSWORD": lambda s, t: ({"MSG_SERVICE_HOST": "10.0.0.1", "PULP_BROKER_PASSWORD": s}, []),
    "MSG_SERVICE_PASSWORD": lambda s, t: ({"MSG_SERVICE_HOST": "10.0.0.1", "MSG_SERVICE_PASSWORD": s}, []),
    "MSG_SERVICE_PASSWORD_FILE": lambda s, t: (
        {"MSG_SERVICE_HOST": "10.0.0.1", "MSG_SERVICE_PASSWORD_FILE": _file(s, t)},
        [],
    ),
    "PULP_CONF__ password": lambda s, t: ({"PULP_CONF__SERVER__DEFAULT_PASSWORD": s}, []),
    "PULP_CONF__ url": lambda s, t: ({"PULP_CONF__PULPINIT__BACKUP_URL": f"amqp://pulp:{s}@10.0.0.2//"}, []),
    "PULPINIT_CELERY_ARGS": lambda s, t: (
        {"PULPINIT_CELERY_ARGS": "-l INFO " + shlex.quote(f"--broker=amqp://pulp:{s}@10.0.0.3//")},
        [],
    ),
    "argv after --": lambda s, t: ({}, [f"--broker=amqp://pulp:{s}@10.0.0.3//"]),
    "server.conf password": _conf_password,
    "PULP_ADMIN_PASSWORD": lambda s, t: ({"PULP_ADMIN_PASSWORD": s}, []),
    "PULP_ADMIN_PASSWORD_FILE": lambda s, t: ({"PULP_ADMIN_PASSWORD_FILE": _file(s, t)}, []),
    "PULP_MESSAGING_URL_FILE": lambda s, t: (
        {"PULP_MESSAGING_URL_FILE": _file(f"ssl://pulp:{s}@10.0.0.1:5671", t)},
        [],
    ),
    "PULP_CONF__ password_FILE": lambda s, t: ({"PULP_CONF__PULPINIT__PASSWORD_FILE": _file(s, t)}, []),
    "PULP_CONF__ url without a scheme": lambda s, t: ({"PULP_CONF__X__BROKER_URL": f"pulp:{s}@10.0.0.2:5672"}, []),
    "PULPINIT_PRE_MIGRATE": lambda s, t: (
        {"PULPINIT_PRE_MIGRATE": "/bin/true " + shlex.quote(f"--uri=mongodb://pulp:{s}@10.0.0.4/")},
        [],
    ),
}


@st.composite
def marked_secrets(draw: st.DrawFn) -> tuple[str, tuple[str, ...]]:
    """A secret of printable characters with unique markers at its start, middle and end."""
    n = next(_COUNTER)
    markers = tuple(f"Mk{n}{part}Zq" for part in "abc")
    return markers[0] + draw(PRINTABLE) + markers[1] + draw(PRINTABLE) + markers[2], markers


def check_no_leak(secret: str, markers: tuple[str, ...], placement: str, argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)
        env, extra = PLACEMENTS[placement](secret, Path(tmp))
        code, output = run_main([*argv, *(["--", *extra] if extra and argv[0] == "beat" else [])], env, Path(tmp))
    assert code in (0, 78), output[-2000:]
    assert "Traceback" not in output
    assert leaks(output, secret, markers) == [], output


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(marked_secrets(), st.sampled_from(sorted(PLACEMENTS)), st.sampled_from(COMMANDS))
@pytest.mark.slow  # real processes: seconds
def test_no_random_secret_leaks_whatever_the_exit_code(
    marked: tuple[str, tuple[str, ...]], placement: str, argv: list[str]
) -> None:
    secret, markers = marked
    check_no_leak(secret, markers, placement, argv)


NASTY = "p@ss/w?rd#x;y %41 z:é\"'\\\t"


@pytest.mark.parametrize("placement", sorted(PLACEMENTS))
def test_a_nasty_secret_in_every_place_and_command(placement: str) -> None:
    for argv in COMMANDS:
        check_no_leak(f"MkNaStyA{NASTY}MkNaStyB", ("MkNaStyA", "MkNaStyB"), placement, argv)


# -- property: secrets that are common words ---------------------------------------------------------

#: Words as secrets: the log lines' own vocabulary (levels, event names, keys, their parts) and words
#: pulpinit prints in values (none shorter than MIN_LENGTH: the masking threshold stays where it is).
WORDS = sorted(
    word
    for word in {
        *LEVELS,
        *EVENTS,
        *KEYS,
        *(part for name in (*EVENTS, *KEYS) for part in name.replace("_", ".").split(".")),
        *("admin", "pulp", "guest", "true", "false", "database", "server", "settings", "json", "localhost"),
        *("celery", "apache", "nobody", "default", "file", "env", "qpid", "amqp", "conf", "none", "value"),
    }
    if len(word) >= MIN_LENGTH
)
#: The placements of a secret that the settings resolve (the arguments after -- come later).
RESOLVED = sorted(set(PLACEMENTS) - {"argv after --"})


def values_of(record: object) -> list[str]:
    """Every string value inside a parsed JSON document (dict keys excluded)."""
    if isinstance(record, dict):
        return [v for value in record.values() for v in values_of(value)]
    if isinstance(record, list):
        return [v for value in record for v in values_of(value)]
    return [record] if isinstance(record, str) else []


def check_word(word: str, placement: str, argv: list[str]) -> None:
    if placement == "argv after --" and argv[0] != "beat":
        return  # only a role takes arguments after --: here the word is no secret
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)
        env, extra = PLACEMENTS[placement](word, Path(tmp))
        argv = [*argv, *(["--", *extra] if extra and argv[0] == "beat" else [])]
        code, out, err = run_main_apart(argv, env, Path(tmp))
    assert code in (0, 78), err[-2000:]
    records = [json.loads(line) for line in err.splitlines()]  # every line stays JSON
    for record in records:
        assert set(record) <= set(KEYS), record  # its keys intact
        assert record["event"] in EVENTS and record["level"] in LEVELS, record
        shown = [v for key, value in record.items() if key not in ("event", "level") for v in values_of(value)]
        assert [v for v in shown if leaks(v, word)] == [], record
    if argv[:2] == ["settings", "--json"] and code == 0:
        document = json.loads(out)
        assert "***" not in json.dumps(list(document["settings"]) + list(document["pulpinit"]))
        assert [v for v in values_of(document) if leaks(v, word)] == []
    warned = [r for r in records if r["event"] == "settings.log_word"]
    if code == 0 and placement in RESOLVED:
        assert len(warned) == (1 if is_log_word(word) else 0), (word, warned)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(WORDS), st.sampled_from(sorted(PLACEMENTS)), st.sampled_from(COMMANDS))
@pytest.mark.slow  # real processes: seconds
def test_a_secret_that_is_a_common_word_leaves_every_line_whole(word: str, placement: str, argv: list[str]) -> None:
    """Never ``{"***": …, "event": "pulpinit.***", "level": "***"}``: the line's keys stay whole."""
    check_word(word, placement, argv)


@pytest.mark.parametrize("word", ["error", "info", "event", "admin", "level", "stage"])
def test_the_log_words_in_every_place(word: str) -> None:
    for placement in sorted(PLACEMENTS):
        check_word(word, placement, ["settings", "--json"])
