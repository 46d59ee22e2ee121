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
