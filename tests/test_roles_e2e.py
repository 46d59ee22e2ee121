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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import pace
from helpers.processes import Spawned, children, pid_namespaces_reason
from helpers.supervision import rss_kb

from pulpinit.testing import SAMPLE_CONF, standins
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.keys import keys_env
from pulpinit.testing.serving import free_port

HEAVY = ("pymongo", "bson", "proton", "augeas", "_cffi_backend")


@pytest.fixture
def env(fake_services: tuple[FakeMongo, FakeAmqpBroker], pulp_keys: Path) -> Iterator[dict[str, str]]:
    mongo, broker = fake_services
    root = Path(tempfile.mkdtemp(prefix="pulpinit-e2e-"))
    root.chmod(0o777)
    shutil.copy(SAMPLE_CONF, root / "server.conf")
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
            **keys_env(pulp_keys),  # the worker checks its message-signing pair
        }
    )
    yield environ
    shutil.rmtree(root, ignore_errors=True)


def pulpinit_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pulpinit", *args]


def in_pid_namespace(env: dict[str, str], *args: str, pulpinit: list[str] | None = None) -> Spawned:
    """``pulpinit ARGS`` as PID 1 of a new PID namespace (the test is skipped where that cannot be);
    ``pulpinit``: the program's command line, when not ``python -m pulpinit`` (a paced one)."""
    reason = pid_namespaces_reason()
    if reason:
        pytest.skip(reason)
    command = [*pulpinit, *args] if pulpinit else pulpinit_argv(*args)
    return Spawned(["unshare", "--pid", "--fork", "--mount-proc", *command], env=env)


def migrate_first(env: dict[str, str]) -> None:
    done = subprocess.run(pulpinit_argv("migrate"), env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.root  # the privilege drop
def test_worker_execs_celery_as_the_unprivileged_user(env):
    migrate_first(env)
    run = Spawned(pulpinit_argv("worker", "3", "--", "--maxtasksperchild=2"), env=env)
    argv = json.loads(run.expect("celery argv: ").removeprefix("celery argv: "))
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
    ids = run.expect("celery uid=")
    nobody = pwd.getpwnam("nobody")
    assert f"uid={nobody.pw_uid} gid={nobody.pw_gid}" in ids
    assert f"pid={run.proc.pid}" in ids  # exec: celery replaced pulpinit, same PID, nothing resident
    assert "umask=0022" in ids
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait() == 0
    assert any("migration.ready" in line for line in run.err)  # a worker waits for migrations...
    assert not any("migration.start" in line for line in run.err)  # ...it never runs them


@pytest.mark.slow
@pytest.mark.root
def test_beat_init_supervises_as_pid1_without_heavy_modules(env):
    run = in_pid_namespace(env, "beat", "--init")
    run.expect("celery uid=")
    pid1 = children(run.proc.pid)[0]  # the namespace's PID 1, seen from here
    maps = Path(f"/proc/{pid1}/maps").read_text()
    assert not [name for name in HEAVY if name in maps]
    cmdline = Path(f"/proc/{pid1}/cmdline").read_bytes().split(b"\0")
    assert b"pulpinit.supervise" in cmdline
    assert rss_kb(pid1) <= 15 * 1024
    os.kill(pid1, signal.SIGTERM)
    assert run.wait() == 0  # celery's warm shutdown exits 0, and PID 1 passes that on
    assert any("warm shutdown" in line for line in run.out)
    assert any("migration.done" in line for line in run.err)


@pytest.mark.slow
@pytest.mark.root
def test_sigterm_to_pid1_while_waiting_exits_143(env):
    env["PULP_DB_SEEDS"] = f"127.0.0.1:{free_port()}"
    run = in_pid_namespace(env, "beat", pulpinit=pace.argv(initial=60, max_interval=60, armed_interval=0))
    run.event("dep.down")
    pid1 = children(run.proc.pid)[0]
    sent = time.monotonic()
    os.kill(pid1, signal.SIGTERM)  # as PID 1 it gets it only because pulpinit installed a handler
    assert run.wait(timeout=60) == 143
    assert time.monotonic() - sent < 20  # not the 60 s backoff interval (room for a loaded machine)


@pytest.mark.parametrize(
    ("command", "code", "words"),
    [
        ("/nonexistent/celery", 127, "not found"),
        ("/etc/hostname", 126, ""),
    ],
)
@pytest.mark.slow  # real processes: seconds
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
