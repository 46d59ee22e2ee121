"""Writing server.conf where containers put it: private when it holds secrets, readable by Pulp,
atomic where possible, in place where not (OpenShift's arbitrary UID, single-file bind mounts),
no temporary file left behind, and only regular, bounded files read."""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from helpers.processes import pid_namespaces_reason
from helpers.workdirs import reachable

from pulpinit.config import atomicfile
from pulpinit.config.edits import Assignment
from pulpinit.config.serverconf import ServerConf
from pulpinit.errors import ConfigFileError, EnvValueError
from pulpinit.privileges import resolve_user
from pulpinit.settings.resolve import from_environ
from pulpinit.testing import SAMPLE_CONF

PASSWORD = Assignment("database", "password", "s3cr3t-pw", "PULP_DB_PASSWORD", secret=True)
SEEDS = Assignment("database", "seeds", "db:27017", "PULP_DB_SEEDS")
root_only = pytest.mark.root  # chown, setpriv, mount namespaces


@pytest.fixture
def etc() -> Iterator[Path]:
    """A directory other users can reach, with a copy of the sample server.conf (0644)."""
    with reachable("writes") as path:
        (path / "server.conf").chmod(0o644)
        yield path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".pulpinit"))


def pulpinit(argv: list[str], env: dict[str, str], *, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PULPINIT_LOG_FORMAT": "json", **env}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "pulpinit", *argv],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def events(stderr: str, name: str) -> list[dict[str, object]]:
    return [e for e in (json.loads(x) for x in stderr.splitlines() if x.startswith("{")) if e["event"] == name]


# -- private when it holds a secret ---------------------------------------------------------------


def test_a_file_without_secrets_keeps_its_mode(etc: Path) -> None:
    conf = etc / "server.conf"
    ServerConf.load(conf).plan([SEEDS]).write()
    assert mode(conf) == 0o644


def test_a_password_makes_the_file_lose_its_other_bits(etc: Path) -> None:
    conf = etc / "server.conf"
    plan = ServerConf.load(conf).plan([SEEDS, PASSWORD])
    assert plan.private
    plan.write()
    assert mode(conf) & 0o007 == 0
    assert "password: s3cr3t-pw" in conf.read_text()


def test_a_url_with_a_password_counts_as_a_secret_a_key_url_does_not(etc: Path) -> None:
    conf = etc / "server.conf"
    plain = ServerConf.load(conf).plan([Assignment("server", "key_url", "/pulp/gpg", "PULP_CONF__SERVER__KEY_URL")])
    assert not plain.private
    url = Assignment("tasks", "broker_url", "qpid://pulp:pw-in-url@h/", "PULP_BROKER_URL")
    assert ServerConf.load(conf).plan([url]).private


@root_only
def test_as_root_the_file_gets_the_pulp_users_group_and_0640(etc: Path) -> None:
    conf = etc / "server.conf"
    ServerConf.load(conf).plan([SEEDS, PASSWORD]).write("nobody")
    info = conf.stat()
    assert (mode(conf), info.st_uid, info.st_gid) == (0o640, 0, pwd.getpwnam("nobody").pw_gid)
    nobody = resolve_user("nobody")
    done = subprocess.run(
        ["setpriv", f"--reuid={nobody.uid}", f"--regid={nobody.gid}", "--clear-groups", "cat", str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "s3cr3t-pw" in done.stdout  # Pulp's user can read it; "other" cannot


@root_only
def test_create_makes_0640_root_and_the_users_group(etc: Path) -> None:
    conf = etc / "new.conf"
    ServerConf.load(conf, create=True).plan([SEEDS]).write("nobody")
    info = conf.stat()
    assert (mode(conf), info.st_uid, info.st_gid) == (0o640, 0, pwd.getpwnam("nobody").pw_gid)


@root_only
def test_a_file_pulp_could_not_read_is_exit_78_and_left_alone(etc: Path) -> None:
    conf = etc / "server.conf"
    etc.chmod(0o700)  # the user cannot reach it
    before = conf.read_bytes()
    with pytest.raises(ConfigFileError) as caught:
        ServerConf.load(conf).plan([SEEDS, PASSWORD]).write("nobody")
    assert caught.value.exit_code == 78
    assert str(caught.value).startswith(f"{conf}: nobody (uid ")
    assert f"no search (x) permission on {etc}" in str(caught.value)
    assert conf.read_bytes() == before and leftovers(etc) == []


@root_only
def test_an_unreadable_file_stays_an_error_through_the_cli(etc: Path) -> None:
    conf = etc / "server.conf"
    conf.chmod(0o600)
    os.chown(conf, 0, 0)
    done = pulpinit(
        ["configure"], {"PULPINIT_CONFIG": str(conf), "PULPINIT_USER": "nobody", "PULP_DB_SEEDS": "db:27017"}
    )
    assert done.returncode == 78
    error = events(done.stderr, "pulpinit.error")[0]["error"]
    assert str(conf) in str(error) and "could not read it (mode 0600" in str(error)


# -- temporary files ---------------------------------------------------------------------------------


def test_the_temporary_file_is_0600_and_gone_after_a_failed_rename(etc: Path, monkeypatch) -> None:
    conf = etc / "server.conf"
    created: list[int] = []
    renamed: list[int] = []
    real_temporary = atomicfile._temporary

    def observed_temporary(target: Path) -> tuple[int, str]:
        fd, name = real_temporary(target)
        created.append(mode(Path(name)))
        return fd, name

    def failing_replace(src: str, dst: object) -> None:
        renamed.append(mode(Path(src)))
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(atomicfile, "_temporary", observed_temporary)
    monkeypatch.setattr(atomicfile.os, "replace", failing_replace)
    before = conf.read_bytes()
    with pytest.raises(ConfigFileError, match="cannot write it: Input/output error"):
        ServerConf.load(conf).plan([PASSWORD]).write()
    assert created == [0o600]  # before the password goes in
    assert renamed == [0o640]  # the final mode: 0644 without its "other" bits
    assert leftovers(etc) == [] and conf.read_bytes() == before


SLOW_FSYNC = """
import os, sys, time
ready = sys.argv[1]
def slow_fsync(fd):
    open(ready, "w").close()  # the temporary file holds the password now
    time.sleep(30)
os.fsync = slow_fsync
from pulpinit.cli import run
sys.argv[1:] = ["configure"]
run()
"""


def test_sigterm_during_configure_leaves_no_temporary_file(etc: Path) -> None:
    """A slow disk (an fsync that takes 30 s, standing in for one) holds the write open for the signal."""
    conf, ready = etc / "server.conf", etc / "ready"
    before = conf.read_bytes()
    env = {
        "PATH": os.environ["PATH"],
        "PULPINIT_CONFIG": str(conf),
        "PULPINIT_LOG_FORMAT": "json",
        "PULPINIT_USER": "nobody",
        "PULP_DB_USERNAME": "pulp",
        "PULP_DB_PASSWORD": "s3cr3t-pw",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_FSYNC, str(ready)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert leftovers(etc)  # the temporary file exists now, with the password
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert leftovers(etc) == []
    assert conf.read_bytes() == before
    assert "SIGTERM received during configure" in err


def test_old_leftovers_are_removed_young_ones_kept(etc: Path) -> None:
    old, young = etc / ".server.conf.abc123.pulpinit", etc / ".server.conf.def456.pulpinit"
    for leftover in (old, young):
        leftover.write_text("password: from a killed run\n")
    long_ago = time.time() - atomicfile.STALE_AFTER_S - 60
    os.utime(old, (long_ago, long_ago))
    assert ServerConf.load(etc / "server.conf").plan([SEEDS]).write() is True
    assert leftovers(etc) == [young.name]  # a replica sharing the volume may be writing that one now


# -- where containers put files -----------------------------------------------------------------------

ARBITRARY_UID = 1000770000  # OpenShift-style: no passwd entry, group 0


def as_arbitrary_uid() -> list[str]:
    prefix = ["setpriv", f"--reuid={ARBITRARY_UID}", "--regid=0", "--clear-groups"]
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import augeas, structlog"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"this Python cannot be run as uid {ARBITRARY_UID}: {probe.stderr.decode()[-200:]}")
    return prefix


@root_only
def test_openshift_recipe_as_an_arbitrary_uid(etc: Path) -> None:
    """The OpenShift recipe (docs/deployment.md): server.conf and its directory in group 0, group-writable,
    no "other" bits."""
    conf = etc / "server.conf"
    os.chown(etc, 0, 0)
    etc.chmod(0o775)
    os.chown(conf, 0, 0)
    conf.chmod(0o660)
    prefix = as_arbitrary_uid()
    env = {
        "PULPINIT_CONFIG": str(conf),
        "PULP_DB_USERNAME": "pulp",
        "PULP_DB_PASSWORD": "s3cr3t-pw",
        "PULP_DB_SEEDS": "db:27017",
    }
    inode = conf.stat().st_ino
    done = pulpinit(["configure"], env, prefix=prefix)
    assert done.returncode == 0, done.stderr[-1000:]
    info = conf.stat()
    assert info.st_ino != inode  # atomic: a new file renamed over the old one
    assert (info.st_uid, info.st_gid, mode(conf)) == (ARBITRARY_UID, 0, 0o660)  # nothing chown'ed
    assert "password: s3cr3t-pw" in conf.read_text() and leftovers(etc) == []
    assert not events(done.stderr, "config.in_place")

    # the directory not writable (the file alone is): rewritten in place, with one warning
    etc.chmod(0o755)
    os.chown(conf, 0, 0)
    inode = conf.stat().st_ino
    done = pulpinit(["configure"], {**env, "PULP_DB_SEEDS": "db2:27017"}, prefix=prefix)
    assert done.returncode == 0, done.stderr[-1000:]
    assert conf.stat().st_ino == inode and "seeds: db2:27017" in conf.read_text()
    [warning] = events(done.stderr, "config.in_place")
    assert "not atomically" in str(warning["reason"]) and f"cannot create a file in {etc}" in str(warning["reason"])
    assert (conf.stat().st_uid, conf.stat().st_gid, mode(conf)) == (0, 0, 0o660)


@root_only
def test_a_single_file_bind_mount_is_rewritten_in_place(etc: Path) -> None:
    """Kubernetes subPath / docker -v file:file: the rename fails with EBUSY inside the mount namespace."""
    reason = pid_namespaces_reason()
    if reason:
        pytest.skip(reason)
    source, target = etc / "source.conf", etc / "server.conf"
    shutil.copy(SAMPLE_CONF, source)
    target.write_text("")
    script = f'mount --bind "{source}" "{target}" && exec "{sys.executable}" -m pulpinit configure'
    environ = {
        "PATH": os.environ["PATH"],
        "PULPINIT_LOG_FORMAT": "json",
        "PULPINIT_CONFIG": str(target),
        "PULPINIT_USER": "nobody",
        "PULP_DB_SEEDS": "db:27017",
    }
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-1000:]
    [warning] = events(done.stderr, "config.in_place")
    assert "EBUSY" in str(warning["reason"]) and "not atomically" in str(warning["reason"])
    assert "seeds: db:27017\n" in source.read_text()  # written through the mount
    assert target.read_text() == "" and leftovers(etc) == []


# -- only regular files, bounded -------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory", "too-large", "symlink-to-fifo"])
def test_server_conf_must_be_a_regular_bounded_file(etc: Path, kind: str) -> None:
    conf = etc / "odd"
    if kind in ("fifo", "symlink-to-fifo"):
        os.mkfifo(etc / "fifo")
        conf = etc / "fifo"
        if kind == "symlink-to-fifo":
            (etc / "link").symlink_to(etc / "fifo")
            conf = etc / "link"
    elif kind == "dev-zero":
        conf = Path("/dev/zero")
    elif kind == "directory":
        conf.mkdir()
    else:
        conf.write_bytes(b"# x\n" * (300 * 1024))
    done = pulpinit(["settings"], {"PULPINIT_CONFIG": str(conf)})
    assert done.returncode == 78, done.stderr[-500:]
    [error] = events(done.stderr, "pulpinit.error")
    words = {
        "fifo": "FIFO",
        "symlink-to-fifo": "FIFO",
        "dev-zero": "character device",
        "directory": "directory",
        "too-large": "larger than 1 MiB",
    }[kind]
    assert str(error["error"]).startswith(f"{conf}: ") and words in str(error["error"])
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory", "too-large"])
def test_a_file_secret_must_be_a_regular_bounded_file(etc: Path, kind: str) -> None:
    path = etc / "secret"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(EnvValueError) as caught:
        from_environ({"PULP_DB_PASSWORD_FILE": str(path)}, {}, hostname="h")
    assert caught.value.variable == "PULP_DB_PASSWORD_FILE"
    assert "not a regular file" in str(caught.value) or "larger than 1 MiB" in str(caught.value)


def test_a_bom_in_a_file_secret_is_not_part_of_the_password(etc: Path) -> None:
    (etc / "pw").write_bytes("\ufeffs3cr3t-pw\r\n".encode())
    settings = from_environ({"PULP_DB_USERNAME": "pulp", "PULP_DB_PASSWORD_FILE": str(etc / "pw")}, {}, hostname="h")
    assert settings.values["database.password"].value == "s3cr3t-pw"
    assert settings.values["database.password"].source == "file:PULP_DB_PASSWORD_FILE"


def test_a_bom_in_server_conf_is_refused(etc: Path) -> None:
    conf = etc / "server.conf"
    conf.write_bytes(b"\xef\xbb\xbf" + SAMPLE_CONF.read_bytes())
    with pytest.raises(ConfigFileError, match="byte order mark"):
        ServerConf.load(conf)


@root_only
def test_an_unchanged_file_pulp_could_not_read_is_an_error_too(etc: Path) -> None:
    conf = etc / "server.conf"
    ServerConf.load(conf).plan([SEEDS]).write("nobody")
    conf.chmod(0o600)
    before = conf.read_bytes()
    with pytest.raises(ConfigFileError, match="could not read it"):
        ServerConf.load(conf).plan([SEEDS]).write("nobody")
    assert conf.read_bytes() == before


def test_writers_take_turns_and_the_later_one_sees_the_change(etc: Path) -> None:
    """A replica sharing the volume holds the lock and writes: pulpinit waits, then plans again (ConfigFileChanged)."""
    import fcntl
    import threading

    from helpers.stages import _waits_for_lock

    from pulpinit.errors import ConfigFileChanged

    conf = etc / "server.conf"
    plan = ServerConf.load(conf).plan([SEEDS])
    fd = os.open(conf, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    outcome: list[BaseException | bool] = []
    writer = threading.Thread(target=lambda: outcome.append(_catch(plan.write)))
    writer.start()
    try:
        deadline = time.monotonic() + 10
        while not _waits_for_lock(conf.stat().st_ino):
            assert writer.is_alive() and time.monotonic() < deadline, outcome
            time.sleep(0.01)
        os.write(fd, b"# the other replica's edit\n")  # meanwhile the other writer changes it
    finally:
        os.close(fd)  # releases the lock
        writer.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], ConfigFileChanged)
    assert conf.read_bytes().startswith(b"# the other replica's edit\n") and leftovers(etc) == []


def _catch(write: Callable[[], bool]) -> BaseException | bool:
    try:
        return write()
    except BaseException as exc:  # handed to the test's thread
        return exc
