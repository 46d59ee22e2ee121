"""Privilege drop with real accounts: resolve_user, drop, exec_command and the supervisor's --user.

The root tests create a user, its primary group and a supplementary group
with ``groupadd``/``useradd`` (unique names, removed afterwards) and look from
*inside* the child: uid, gid, groups, HOME/USER/LOGNAME, umask, and that
``setuid(0)`` fails.  The child is the system Python (``/usr/bin/python3``):
the venv's lives under /root, which a dropped user cannot enter.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.supervision import PUBLIC, PYTHON, SYSTEM_PYTHON

from pulpinit.errors import ExecError, UserError
from pulpinit.handoff.exec import exec_command
from pulpinit.privileges import Identity, identity_for, resolve_user

root = pytest.mark.root  # creates users and switches to them

CHECK = r"""
import json, os
mask = os.umask(0); os.umask(mask)
try:
    os.setuid(0); regained = "yes"
except PermissionError:
    regained = "EPERM"
print(json.dumps({"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
                  "groups": sorted(os.getgroups()), "HOME": os.environ.get("HOME"),
                  "USER": os.environ.get("USER"), "LOGNAME": os.environ.get("LOGNAME"),
                  "umask": oct(mask), "regained": regained}))
"""


@dataclass(frozen=True)
class Account:
    user: str
    uid: int
    primary: str
    primary_gid: int
    extra: str
    extra_gid: int
    home: str


def _free_id(database: str) -> int:
    for candidate in range(42000, 43000):
        if subprocess.run(["getent", database, str(candidate)], capture_output=True, check=False).returncode:
            return candidate
    raise RuntimeError("no free id")


@pytest.fixture
def account() -> Iterator[Account]:
    tag = secrets.token_hex(4)
    user, primary, extra = f"pit{tag}", f"pitp{tag}", f"pits{tag}"
    home = f"/nonexistent/pit{tag}"
    subprocess.run(["groupadd", primary], check=True)
    subprocess.run(["groupadd", extra], check=True)
    try:
        subprocess.run(
            ["useradd", "-M", "-d", home, "-s", "/usr/sbin/nologin", "-g", primary, "-G", extra, user], check=True
        )
        try:
            entry = pwd.getpwnam(user)
            gids = {
                name: int(
                    subprocess.run(["getent", "group", name], capture_output=True, text=True, check=True).stdout.split(
                        ":"
                    )[2]
                )
                for name in (primary, extra)
            }
            yield Account(user, entry.pw_uid, primary, gids[primary], extra, gids[extra], home)
        finally:
            subprocess.run(["userdel", user], check=False)
    finally:
        subprocess.run(["groupdel", extra], check=False)
        subprocess.run(["groupdel", primary], check=False)


def _checked(stdout: str) -> dict[str, object]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, stdout
    result: dict[str, object] = json.loads(lines[-1])
    return result


def _assert_dropped(seen: dict[str, object], acc: Account, umask: str) -> None:
    assert (seen["uid"], seen["euid"]) == (acc.uid, acc.uid)
    assert (seen["gid"], seen["egid"]) == (acc.primary_gid, acc.primary_gid)
    assert seen["groups"] == sorted({acc.primary_gid, acc.extra_gid})
    assert (seen["HOME"], seen["USER"], seen["LOGNAME"]) == (acc.home, acc.user, acc.user)
    assert seen["umask"] == umask
    assert seen["regained"] == "EPERM"


@root
def test_resolve_user_by_name_uid_and_with_group(account: Account) -> None:
    ident = resolve_user(account.user)
    assert ident == Identity(account.user, account.uid, account.primary_gid, ident.groups, account.home)
    assert set(ident.groups) == {account.primary_gid, account.extra_gid}
    assert ident.groups[0] == account.primary_gid
    assert resolve_user(str(account.uid)) == ident
    explicit = resolve_user(f"{account.user}:{account.extra}")
    assert (explicit.gid, explicit.groups) == (account.extra_gid, (account.extra_gid,))
    assert resolve_user(f"{account.uid}:{account.extra_gid}").gid == account.extra_gid


@root
def test_exec_command_drops_everything(account: Account) -> None:
    code = (
        "import sys\nfrom pulpinit.handoff.exec import exec_command\nfrom pulpinit.privileges import resolve_user\n"
        f"exec_command([{SYSTEM_PYTHON!r}, '-I', '-c', sys.argv[1]], identity=resolve_user({account.user!r}),"
        " umask=0o027)\n"
    )
    env = {**os.environ, "HOME": "/root", "USER": "root", "LOGNAME": "root"}
    done = subprocess.run(
        [PYTHON, "-c", code, CHECK], capture_output=True, text=True, check=False, env=env, timeout=30, cwd="/"
    )
    assert done.returncode == 0, done.stderr
    _assert_dropped(_checked(done.stdout), account, "0o27")


@root
@pytest.mark.parametrize("pid1", [False, True])
def test_supervisor_drops_privileges_in_the_child(account: Account, pid1: bool) -> None:
    argv = [
        PYTHON,
        "-m",
        "pulpinit.supervise",
        "--user",
        account.user,
        "--umask",
        "0077",
        "--",
        SYSTEM_PYTHON,
        "-I",
        "-c",
        CHECK,
    ]
    if pid1:
        argv = ["unshare", "--pid", "--fork", "--mount-proc", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30, cwd="/")
    assert done.returncode == 0, done.stderr
    _assert_dropped(_checked(done.stdout), account, "0o77")


@root
def test_numeric_ids_without_passwd_entry() -> None:
    uid, gid = _free_id("passwd"), _free_id("group")
    assert resolve_user(f"{uid}:{gid}") == Identity(str(uid), uid, gid, (gid,), "/")
    assert resolve_user(str(uid)) == Identity(str(uid), uid, uid, (uid,), "/")  # never the root group
    done = subprocess.run(
        [PYTHON, "-m", "pulpinit.supervise", "--user", f"{uid}:{gid}", "--", SYSTEM_PYTHON, "-I", "-c", CHECK],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    seen = _checked(done.stdout)
    assert (seen["uid"], seen["gid"], seen["groups"], seen["HOME"]) == (uid, gid, [gid], "/")
    assert (seen["umask"], seen["regained"]) == ("0o22", "EPERM")


@pytest.mark.parametrize("spec", ["no-such-user-pulpinit", "root:no-such-group-pulpinit", "", ":0", "root:"])
def test_unknown_user_or_bad_spec_is_a_config_error(spec: str) -> None:
    with pytest.raises(UserError) as caught:
        resolve_user(spec)
    assert caught.value.exit_code == 78


@root
def test_supervisor_exits_78_for_an_unknown_user() -> None:
    done = subprocess.run(
        [PYTHON, "-m", "pulpinit.supervise", "--user", "no-such-user-pulpinit", "--", "true"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 78
    assert "no such user" in done.stderr


def test_not_root_runs_as_is() -> None:
    """OpenShift: an arbitrary UID cannot switch, so nothing is resolved (even an unknown user)."""
    if os.geteuid() != 0:
        assert identity_for("no-such-user-pulpinit") is None
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(54321)
            os.setuid(54321)
            os._exit(0 if identity_for("no-such-user-pulpinit") is None else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@root
def test_supervisor_as_arbitrary_uid_logs_one_line_and_runs(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PUBLIC)}  # readable by uid 54321
    done = subprocess.run(
        [SYSTEM_PYTHON, "-m", "pulpinit.supervise", "--user", "apache", "--", "id", "-u"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env=env,
        user=54321,
        group=0,
        extra_groups=[],
        cwd=tmp_path.anchor,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "54321"
    keep = [json.loads(line) for line in done.stderr.splitlines() if '"privileges.keep"' in line]
    assert len(keep) == 1 and keep[0]["level"] == "info"


def test_exec_command_failures_are_127_and_126(tmp_path: Path) -> None:
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    old = os.umask(0o022)
    try:
        with pytest.raises(ExecError) as missing:
            exec_command(["no-such-command-pulpinit"], env={"PATH": str(tmp_path)})
        assert missing.value.exit_code == 127
        assert str(missing.value) == f"no-such-command-pulpinit: command not found in PATH={tmp_path}"
        with pytest.raises(ExecError) as denied:
            exec_command([str(script)])
        assert denied.value.exit_code == 126
        with pytest.raises(ExecError) as directory:
            exec_command([str(tmp_path)])
        assert (directory.value.exit_code, directory.value.problem) == (126, "is a directory")
    finally:
        os.umask(old)


# -- the one permission check: what the role's user may read, write, execute --------------------


def _reader(uid: int, gid: int, groups: tuple[int, ...] = ()) -> Identity:
    return Identity("reader", uid, gid, groups, "/")


@pytest.mark.root
def test_uid_0_passes_the_bits_but_executes_only_what_has_an_x_bit(tmp_path: Path) -> None:
    """Root with CAP_DAC_OVERRIDE reads and writes a mode-0000 file of another owner; every checker agrees."""
    from pulpinit.config.atomicfile import check_unchanged_readable
    from pulpinit.privileges import EXECUTE, READ, SEARCH, WRITE, access_problem, permits
    from pulpinit.settings.preflight import locate

    root = _reader(0, 0)
    secret = tmp_path / "locked" / "server.conf"
    secret.parent.mkdir()
    secret.write_text("[server]\n")
    os.chown(secret, 4242, 4242)
    secret.chmod(0o000)
    secret.parent.chmod(0o000)
    info = secret.stat()
    assert permits(root, READ | WRITE, info.st_mode, info.st_uid, info.st_gid)
    assert permits(root, SEARCH, secret.parent.stat().st_mode, 4242, 4242)
    assert not permits(root, EXECUTE, info.st_mode, info.st_uid, info.st_gid)  # no x bit anywhere
    assert permits(root, EXECUTE, info.st_mode | 0o001, info.st_uid, info.st_gid)
    assert access_problem(secret, root) is None
    check_unchanged_readable(secret, root)  # no error: root reads it
    secret.parent.chmod(0o755)
    with pytest.raises(ExecError):
        locate(str(secret), "", root)  # readable by root, yet not a program


def test_a_user_gets_the_bits_of_its_one_class(tmp_path: Path) -> None:
    """Owner, else group (primary or supplementary), else other, even when a later class would grant more."""
    from pulpinit.privileges import READ, WRITE, permits

    path = tmp_path / "file"
    path.write_text("x")
    info = path.stat()
    uid, gid = info.st_uid + 5000, info.st_gid + 5000  # a user who neither owns the file nor is in its group
    owner, member, supplementary, other = (
        _reader(info.st_uid, gid),
        _reader(uid, info.st_gid),
        _reader(uid, gid, (gid + 1, info.st_gid)),
        _reader(uid, gid, (gid + 1,)),
    )
    group_only = 0o040
    assert permits(member, READ, group_only, info.st_uid, info.st_gid)
    assert permits(supplementary, READ, group_only, info.st_uid, info.st_gid)
    assert not permits(other, READ, group_only, info.st_uid, info.st_gid)
    assert not permits(member, READ | WRITE, group_only, info.st_uid, info.st_gid)
    other_only = 0o004
    assert permits(other, READ, other_only, info.st_uid, info.st_gid)
    assert not permits(member, READ, other_only, info.st_uid, info.st_gid)  # the group class denies
    if info.st_uid != 0:
        assert not permits(owner, READ, other_only, info.st_uid, info.st_gid)  # the owner class denies


def test_the_config_writer_names_a_group_or_other_reader_it_leaves_out() -> None:
    """server.conf's check asks the one checker: group bits let a member read, other bits anyone else."""
    import tempfile

    from pulpinit.config.atomicfile import check_unchanged_readable
    from pulpinit.errors import ConfigFileError

    with tempfile.TemporaryDirectory() as directory:  # in /tmp: every user may search the way there
        Path(directory).chmod(0o755)
        _check_group_and_other_readers(Path(directory) / "server.conf", check_unchanged_readable, ConfigFileError)


def _check_group_and_other_readers(conf: Path, check, error: type[Exception]) -> None:
    from pulpinit.privileges import access_problem

    conf.write_text("[server]\n")
    info = conf.stat()
    member = _reader(info.st_uid + 5000, info.st_gid + 5000, (info.st_gid,))
    stranger = _reader(info.st_uid + 5000, info.st_gid + 5000)
    for mode, reader, left_out in ((0o640, member, stranger), (0o604, stranger, member)):
        conf.chmod(mode)
        assert access_problem(conf, reader) is None
        assert f"mode {mode:04o}" in str(access_problem(conf, left_out))
        check(conf, reader)
        with pytest.raises(error, match=f"mode {mode:04o}"):
            check(conf, left_out)
