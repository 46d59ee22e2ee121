"""Validate first: the user, the commands and the fingerprint are checked in the settings stage.

Every failing check must end pulpinit with its code (78 / 127 / 126) and one line naming the
variable, *before* server.conf changes (its sha256 is compared) and without waiting: MongoDB and
the broker are down and the wait deadline is long, so a check that came late would show as exit
69 after the wait, or as a configure or wait stage in the log.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.workdirs import with_standins

from pulpinit.cli import main
from pulpinit.errors import ExecError
from pulpinit.privileges import resolve_user
from pulpinit.settings.preflight import locate
from pulpinit.testing import standins
from pulpinit.testing.keys import keys_env
from pulpinit.testing.serving import free_port

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="PULPINIT_USER is checked only when root")


@pytest.fixture
def workdir() -> Iterator[Path]:
    """Searchable by the user pulpinit drops to (pytest's tmp_path is below a 0700 directory)."""
    with with_standins("preflight") as path:
        yield path


def environment(workdir: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": f"{workdir / 'bin'}:/usr/bin:/bin",
        "PULPINIT_CONFIG": str(workdir / "server.conf"),
        "PULPINIT_LOG_FORMAT": "json",
        "PULP_DB_SEEDS": f"127.0.0.1:{free_port()}",  # down, and a change server.conf would get
        "PULP_BROKER_URL": f"qpid://127.0.0.1:{free_port()}/",
        "PULPINIT_WAIT_TIMEOUT": "30",
        "PULPINIT_CELERY": str(workdir / "celery"),
        "PULPINIT_MANAGE_DB": str(workdir / "pulp-manage-db"),
        "PULPINIT_USER": "nobody",
        "PULPINIT_MIGRATION_FINGERPRINT": "2.21.5-1",
    }
    env.update(extra)
    return env


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_checked(capsys, workdir: Path, argv: list[str], **extra: str) -> tuple[int, dict, list[dict]]:
    """Run the CLI; return the code, the one error line, and every log line."""
    before = digest(workdir / "server.conf")
    started = time.monotonic()
    code = main(argv, environment(workdir, **extra))
    elapsed = time.monotonic() - started
    _, err = capsys.readouterr()
    events = [json.loads(line) for line in err.splitlines()]
    assert digest(workdir / "server.conf") == before, "server.conf changed before the checks"
    stages = {e["stage"] for e in events if e["event"] == "stage.start"}
    assert stages == {"settings"}, f"got past the settings stage: {stages}"
    assert elapsed < 10  # nothing was waited for (the wait deadline is 30 s)
    errors = [e for e in events if e["event"] == "pulpinit.error"]
    assert len(errors) == 1, err
    assert errors[0]["exit_code"] == code
    return code, errors[0], events


@ROOT_ONLY
@pytest.mark.parametrize(
    ("argv", "user", "words"),
    [
        (["beat"], "no-such-user", "PULPINIT_USER=no-such-user: no such user"),
        (["migrate"], "nobody:no-such-group", "PULPINIT_USER=nobody:no-such-group: no such group"),
        (["run", "--", "/bin/true"], "no-such-user", "PULPINIT_USER=no-such-user"),
    ],
)
def test_unknown_user_is_78(capsys, workdir, argv, user, words):
    code, error, _ = run_checked(capsys, workdir, argv, PULPINIT_USER=user)
    assert code == 78
    assert words in error["error"]


@pytest.mark.parametrize(
    ("argv", "setting", "expected"),
    [
        (["worker", "2"], ("PULPINIT_CELERY", "/nonexistent/celery"), (127, "command not found (PULPINIT_CELERY)")),
        (["resource-manager"], ("PULPINIT_CELERY", "WORKDIR/not-executable"), (126, "permission denied")),
        (["beat"], ("PULPINIT_CELERY", "WORKDIR/bin"), (126, "is a directory")),
        (["beat"], ("PULPINIT_MANAGE_DB", "/nonexistent/pulp-manage-db"), (127, "(PULPINIT_MANAGE_DB)")),
        (["migrate"], ("PULPINIT_MANAGE_DB", "WORKDIR/not-executable"), (126, "(PULPINIT_MANAGE_DB)")),
        (["migrate"], ("PULPINIT_PRE_MIGRATE", "/nonexistent/backup --all"), (127, "(PULPINIT_PRE_MIGRATE)")),
        (["beat"], ("PULPINIT_PRE_MIGRATE", "WORKDIR/not-executable"), (126, "(PULPINIT_PRE_MIGRATE)")),
        (["beat"], ("PULPINIT_CELERY", "celery-on-path"), (127, "command not found in PATH=")),
    ],
)
def test_missing_or_unexecutable_command_of_a_variable(capsys, workdir, argv, setting, expected):
    variable, value = setting[0], setting[1].replace("WORKDIR", str(workdir))
    got, error, _ = run_checked(capsys, workdir, argv, **{variable: value})
    assert got == expected[0]
    assert expected[1] in error["error"] and variable in error["error"]


@pytest.mark.parametrize(
    ("command", "code", "words"),
    [
        ("no-such-command-pulpinit", 127, "no-such-command-pulpinit: command not found in PATH="),
        ("/nonexistent/httpd", 127, "/nonexistent/httpd: command not found"),
        ("WORKDIR/not-executable", 126, "WORKDIR/not-executable: permission denied"),
        ("/usr", 126, "/usr: is a directory"),
    ],
)
def test_run_command_is_found_and_executable(capsys, workdir, command, code, words):
    command, words = command.replace("WORKDIR", str(workdir)), words.replace("WORKDIR", str(workdir))
    got, error, _ = run_checked(capsys, workdir, ["run", "--", command, "--an-argument"])
    assert got == code
    assert error["error"].startswith(words)


@ROOT_ONLY
def test_a_command_root_may_run_but_the_user_may_not_is_126(capsys, workdir):
    private = workdir / "private"
    private.mkdir(mode=0o700)
    shutil.copy(workdir / "celery", private / "celery")
    code, error, _ = run_checked(capsys, workdir, ["worker"], PULPINIT_CELERY=str(private / "celery"))
    assert code == 126 and "permission denied" in error["error"]
    # the same command for a user who may enter the directory passes the check
    code, error, _ = run_checked(
        capsys,
        workdir,
        ["worker"],
        PULPINIT_CELERY=str(private / "celery"),
        PULPINIT_USER="root",
        PULPINIT_MIGRATION_FINGERPRINT="",
        PATH="/nonexistent",
    )
    assert code == 78 and "rsa.key: does not exist" in error["error"]  # the next check (the worker's keys), not 126


def test_fingerprint_that_cannot_be_derived_is_78_before_anything(capsys, workdir):
    code, error, _ = run_checked(capsys, workdir, ["run", "--", "/bin/true"], PULPINIT_MIGRATION_FINGERPRINT="")
    assert code == 78
    assert "cannot derive the migration fingerprint" in error["error"]
    assert "PULPINIT_MIGRATION_FINGERPRINT" in error["error"]


@ROOT_ONLY
def test_the_user_is_checked_before_the_commands(capsys, workdir):
    code, error, _ = run_checked(
        capsys, workdir, ["beat"], PULPINIT_USER="no-such-user", PULPINIT_CELERY="/nonexistent/celery"
    )
    assert code == 78 and "PULPINIT_USER" in error["error"]


def test_only_what_the_role_runs_is_checked(capsys, workdir, pulp_keys):
    """A worker neither migrates (no PULPINIT_MANAGE_DB) nor, with waiting off, needs a fingerprint."""
    env = environment(
        workdir,
        **keys_env(pulp_keys),
        PULPINIT_MANAGE_DB="/nonexistent/pulp-manage-db",
        PULPINIT_MIGRATION_WAIT="false",
        PULPINIT_MIGRATION_FINGERPRINT="",
        PULPINIT_WAIT_TIMEOUT="0.3",
    )
    assert main(["worker"], env) == 69  # past the checks, then the dependencies are down
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert {e["stage"] for e in events if e["event"] == "stage.start"} == {"settings", "configure", "wait"}


def test_a_real_process_exits_with_the_code_before_touching_server_conf(workdir):
    env = {**os.environ, **environment(workdir, PULPINIT_CELERY="/nonexistent/celery")}
    before = digest(workdir / "server.conf")
    done = subprocess.run(
        [sys.executable, "-m", "pulpinit", "beat"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 127
    assert digest(workdir / "server.conf") == before
    assert [json.loads(line)["event"] for line in done.stderr.splitlines()] == [
        "stage.start",
        "stage.end",
        "pulpinit.error",
    ]


def test_dry_run_reports_every_check_and_an_unknown_fingerprint(capsys, workdir):
    """No rpm database here: the plan is shown anyway, the fingerprint marked unknown with the reason."""
    env = environment(workdir, PULPINIT_MIGRATION_FINGERPRINT="", PULPINIT_CELERY="/nonexistent/celery")
    before = digest(workdir / "server.conf")
    assert main(["beat", "--dry-run"], env) == 127  # what the run would end with
    out = capsys.readouterr().out
    assert digest(workdir / "server.conf") == before
    rows = {
        line.split()[1]: line.split()[0]
        for line in out.split("## checks")[1].split("\n\n")[0].splitlines()[3:]
        if line and not line.startswith("a run")
    }
    expected_user = "ok"
    assert rows == {
        "PULPINIT_USER": expected_user,
        "PULPINIT_CELERY": "problem",
        "PULPINIT_MANAGE_DB": "ok",
        "fingerprint": "unknown",
        "server.conf": "ok",
    }
    assert "/nonexistent/celery: command not found (PULPINIT_CELERY)" in out
    assert "no Pulp packages in an rpm database; set PULPINIT_MIGRATION_FINGERPRINT" in out
    assert "a run would stop in the settings stage with exit 127" in out
    assert "fingerprint UNKNOWN" in out
    assert "## hand-off" in out and "/nonexistent/celery beat --app=" in out  # the plan is all there


def test_dry_run_with_every_check_passing_shows_the_derived_fingerprint(capsys, workdir, monkeypatch):
    rpm = workdir / "bin" / "rpm"
    rpm.write_text("#!/bin/sh\nprintf 'pulp-server-2.21.5-1.el7\\npython-pulp-common-2.21.5-1.el7\\n'\n")
    rpm.chmod(0o755)
    monkeypatch.setenv("PATH", environment(workdir)["PATH"])  # rpm is run with this process's PATH
    assert main(["migrate", "--dry-run"], environment(workdir, PULPINIT_MIGRATION_FINGERPRINT="")) == 0
    out = capsys.readouterr().out
    assert "all passed" in out
    assert "2 installed Pulp packages" in out and "fingerprint rpm:" in out


def test_dry_run_names_the_quiet_wait_and_the_backup(capsys, workdir):
    backup = standins.write_pre_migrate(workdir)
    env = environment(
        workdir, PULPINIT_PRE_MIGRATE=f"{backup} --uri mongodb://pulp:s3cret@db/", PULPINIT_QUIET_SECONDS="30"
    )
    assert main(["migrate", "--dry-run"], env) == 0  # MongoDB is down: the dry-run connects to nothing
    out = capsys.readouterr().out
    assert "wait until no Pulp process heartbeated for 30 s (PULPINIT_QUIET_SECONDS)" in out
    assert f"run {backup} --uri 'mongodb://pulp:***@db/' (PULPINIT_PRE_MIGRATE), then run" in out
    assert "s3cret" not in out
    rows = {line.split()[1]: line.split()[0] for line in out.split("## checks")[1].splitlines()[3:6]}
    assert rows["PULPINIT_PRE_MIGRATE"] == "ok"
    assert main(["migrate", "--dry-run"], environment(workdir, PULPINIT_QUIET_SECONDS="0")) == 0
    assert "do not wait for a quiet database (PULPINIT_QUIET_SECONDS=0)" in capsys.readouterr().out


def test_locate_searches_path_like_exec(tmp_path: Path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "tool").write_text("#!/bin/sh\n")
    (first / "tool").chmod(0o644)  # found first but not executable: the search goes on
    (second / "tool").write_text("#!/bin/sh\n")
    (second / "tool").chmod(0o755)
    path = f"{tmp_path / 'missing'}:{first}:{second}"
    assert locate("tool", path, None) == str(second / "tool")
    (second / "tool").chmod(0o644)
    with pytest.raises(ExecError) as refused:
        locate("tool", path, None)
    assert refused.value.exit_code == 126  # found, but nowhere executable
    with pytest.raises(ExecError) as missing:
        locate("other", path, None)
    assert missing.value.exit_code == 127


@ROOT_ONLY
def test_locate_judges_the_mode_bits_for_the_user(workdir: Path):
    nobody = resolve_user("nobody")
    root = resolve_user("root")
    tool = workdir / "tool"
    tool.write_text("#!/bin/sh\n")
    for mode, nobody_may in ((0o755, True), (0o750, False), (0o705, True), (0o700, False), (0o100, False)):
        tool.chmod(mode)
        assert (_may(tool, nobody), _may(tool, root)) == (nobody_may, True), oct(mode)
    tool.chmod(0o644)
    assert not _may(tool, root)  # root too needs one x bit
    os.chown(tool, nobody.uid, 0)
    tool.chmod(0o500)
    assert _may(tool, nobody)  # the owner's bits
    tool.chmod(0o755)
    workdir.chmod(stat.S_IRWXU)
    assert not _may(tool, nobody)  # a directory on the way it may not search
    assert _may(tool, root)


def _may(path: Path, who) -> bool:
    try:
        locate(str(path), "", who)
    except ExecError:
        return False
    return True


@pytest.mark.parametrize(
    ("program", "words"),
    [
        ("#!/bin/sh\nexec sleep 30\n", "-qa did not finish within 0.5 s"),  # a hung rpm database lock
        ("\x7fELF but not one\n", "cannot be run (Exec format error)"),
    ],
)
def test_an_rpm_that_hangs_or_cannot_run_is_78_or_unknown_in_a_dry_run(tmp_path: Path, program: str, words: str):
    from pulpinit.errors import ConfigError
    from pulpinit.migrate import fingerprint
    from pulpinit.settings.preflight import check_fingerprint
    from pulpinit.settings.toolkit import toolkit_from_environ

    rpm = tmp_path / "rpm"
    rpm.write_text(program)
    rpm.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(ConfigError) as failed:
        fingerprint.derive(None, rpm=str(rpm), timeout=0.5)
    assert time.monotonic() - started < 10  # the hung rpm was killed at its timeout
    assert failed.value.exit_code == 78
    assert f"{rpm} {words}" in str(failed.value) and "set PULPINIT_MIGRATION_FINGERPRINT" in str(failed.value)
    check, derived = check_fingerprint(
        toolkit_from_environ({}), lambda configured: fingerprint.derive(configured, rpm=str(rpm), timeout=0.5)
    )
    assert (check.status, derived) == ("unknown", None) and words in check.detail


@ROOT_ONLY
@pytest.mark.parametrize("argv", [["configure"], ["configure", "--dry-run"]])
def test_configure_checks_the_user_as_the_roles_do(capsys, workdir, argv):
    """The file's group and the check that the user can read it depend on the user: an unknown one is 78."""
    code, error, _ = run_checked(capsys, workdir, argv, PULPINIT_USER="no-such-user")
    assert code == 78
    assert error["error"].startswith("PULPINIT_USER=no-such-user: no such user")
