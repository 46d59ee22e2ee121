"""The whole pipeline of a role, as a real process: exec, supervise as PID 1, signals while waiting."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.supervision import can_unshare, children, rss_kb

from pulpinit.testing import standins
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.faults import ResetServer

SAMPLE = Path(__file__).parent.parent / "pulpinit" / "testing" / "sample-server.conf"
HEAVY = ("pymongo", "bson", "proton", "augeas", "_cffi_backend")


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[FakeMongo, FakeAmqpBroker]]:
    with FakeMongo() as mongo, FakeAmqpBroker() as broker:
        yield mongo, broker


@pytest.fixture
def env(services) -> Iterator[dict[str, str]]:
    mongo, broker = services
    root = Path(tempfile.mkdtemp(prefix="pulpinit-e2e-"))
    root.chmod(0o777)
    shutil.copy(SAMPLE, root / "server.conf")
    standins.write_celery(root)
    standins.write_manage_db(root)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PULP", "STANDIN"))}
    environ.update(
        {
            "PULPINIT_CONFIG": str(root / "server.conf"),
            "PULPINIT_LOG_FORMAT": "json",
            "PULPINIT_CELERY": str(root / "celery"),
            "PULPINIT_MANAGE_DB": str(root / "pulp-manage-db"),
            "PULPINIT_USER": "nobody",
            "PULPINIT_MIGRATION_FINGERPRINT": f"e2e-{root.name}",
            "PULP_DB_SEEDS": mongo.hostport,
            "PULP_BROKER_URL": broker.url(),
            "PULP_SERVER_NAME": "pulp.test",
            "STANDIN_SECONDS": "0.1",
        }
    )
    yield environ
    shutil.rmtree(root, ignore_errors=True)


class Run:
    """A pulpinit process whose stdout lines are collected by a thread, so tests poll for them."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True).start()

    @staticmethod
    def _pump(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_for(self, text: str, where: str = "out", timeout: float = 30) -> str:
        lines = self.out if where == "out" else self.err
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(lines):
                if text in line:
                    return line
            if self.proc.poll() is not None and not any(text in line for line in lines):
                time.sleep(0.1)
                if not any(text in line for line in lines):
                    break
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not seen; stdout={self.out[-5:]} stderr={self.err[-5:]}")

    def finish(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)


def pulpinit_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pulpinit", *args]


def in_pid_namespace(env: dict[str, str], *args: str) -> Run:
    """``pulpinit ARGS`` as PID 1 of a new PID namespace (the test is skipped where that cannot be)."""
    reason = can_unshare()
    if reason:
        pytest.skip(reason)
    return Run(["unshare", "--pid", "--fork", "--mount-proc", *pulpinit_argv(*args)], env)


def migrate_first(env: dict[str, str]) -> None:
    done = subprocess.run(pulpinit_argv("migrate"), env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop needs root")
def test_worker_execs_celery_as_the_unprivileged_user(env):
    migrate_first(env)
    run = Run(pulpinit_argv("worker", "3", "--", "--maxtasksperchild=2"), env)
    argv = json.loads(run.wait_for("celery argv: ").removeprefix("celery argv: "))
    assert argv[1:] == [
        "worker",
        "--app=pulp.server.async.app",
        "-n",
        "reserved_resource_worker-3@pulp.test",
        "-c",
        "1",
        "--events",
        "--umask=18",
        "--loglevel=INFO",
        "--maxtasksperchild=2",
    ]
    ids = run.wait_for("celery uid=")
    nobody = pwd.getpwnam("nobody")
    assert f"uid={nobody.pw_uid} gid={nobody.pw_gid}" in ids
    assert f"pid={run.proc.pid}" in ids  # exec: celery replaced pulpinit, same PID, nothing resident
    assert "umask=0022" in ids
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 0
    assert any("migration.ready" in line for line in run.err)  # a worker waits for migrations...
    assert not any("migration.start" in line for line in run.err)  # ...it never runs them


@pytest.mark.slow
@pytest.mark.root
def test_beat_init_supervises_as_pid1_without_heavy_modules(env):
    run = in_pid_namespace(env, "beat", "--init")
    run.wait_for("celery uid=")
    pid1 = children(run.proc.pid)[0]  # the namespace's PID 1, seen from here
    maps = Path(f"/proc/{pid1}/maps").read_text()
    assert not [name for name in HEAVY if name in maps]
    cmdline = Path(f"/proc/{pid1}/cmdline").read_bytes().split(b"\0")
    assert b"pulpinit.supervise" in cmdline
    assert rss_kb(pid1) <= 15 * 1024
    os.kill(pid1, signal.SIGTERM)
    assert run.finish() == 0  # celery's warm shutdown exits 0, and PID 1 passes that on
    assert any("warm shutdown" in line for line in run.out)
    assert any("migration.done" in line for line in run.err)


@pytest.mark.slow
@pytest.mark.root
def test_sigterm_to_pid1_while_waiting_exits_143(env):
    with ResetServer() as closed:
        port = closed.port
    env.update(PULP_DB_SEEDS=f"127.0.0.1:{port}", PULPINIT_WAIT_INITIAL="5", PULPINIT_WAIT_MAX_INTERVAL="30")
    run = in_pid_namespace(env, "beat")
    run.wait_for('"dep.down"', where="err")
    pid1 = children(run.proc.pid)[0]
    sent = time.monotonic()
    os.kill(pid1, signal.SIGTERM)  # as PID 1 it gets it only because pulpinit installed a handler
    assert run.finish(timeout=10) == 143
    assert time.monotonic() - sent < 2.0


@pytest.mark.parametrize(
    ("command", "code", "words"),
    [
        ("/nonexistent/celery", 127, "not found"),
        ("/etc/hostname", 126, ""),
    ],
)
def test_missing_or_unexecutable_command(env, command, code, words):
    migrate_first(env)
    done = subprocess.run(
        pulpinit_argv("run", "--", command), env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == code
    error = json.loads(done.stderr.strip().splitlines()[-1])
    assert error["event"] == "pulpinit.error" and error["error"].startswith(command) and words in error["error"]


@pytest.mark.slow
def test_init_honours_the_console_log_format(env):
    """The stdlib-only supervisor writes console lines when pulpinit does, not JSON."""
    migrate_first(env)
    done = subprocess.run(
        pulpinit_argv("--log-format", "console", "run", "--init", "--", "/bin/echo", "hi"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "hi\n"
    events = [line.split("] ", 1)[1].split()[0] for line in done.stderr.splitlines()]
    assert events[-3:] == ["handoff.supervise", "supervise.start", "supervise.exit"]
    assert not [line for line in done.stderr.splitlines() if line.startswith("{")]
