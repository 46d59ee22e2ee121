"""Role command lines, worker numbers and migration modes (pure functions)."""

from __future__ import annotations

import pytest

from pulpinit.errors import EnvValueError, UsageError
from pulpinit.roles import Migration, celery_argv, extra_args, migration_for, worker_number


def test_beat_argv():
    assert celery_argv("beat", celery="/usr/bin/celery", node_name="n") == (
        "/usr/bin/celery",
        "beat",
        "--app=pulp.server.async.celery_instance.celery",
        "--scheduler=pulp.server.async.scheduler.Scheduler",
        "--workdir=/var/lib/pulp/celery",
        "--pidfile=",
        "--loglevel=INFO",
    )


def test_resource_manager_argv_with_log_dir_and_extra():
    argv = celery_argv(
        "resource-manager",
        celery="celery",
        node_name="pulp.example.com",
        log_dir="/var/log/pulp/",
        extra=("--maxtasksperchild=5",),
    )
    assert argv == (
        "celery",
        "worker",
        "--app=pulp.server.async.app",
        "-n",
        "resource_manager@pulp.example.com",
        "-Q",
        "resource_manager",
        "-c",
        "1",
        "--events",
        "--umask=18",
        "--loglevel=INFO",
        "--logfile=/var/log/pulp/resource_manager.log",
        "--maxtasksperchild=5",
    )


def test_worker_argv():
    argv = celery_argv("worker", celery="celery", node_name="h", number=7)
    assert "reserved_resource_worker-7@h" in argv and "-Q" not in argv


@pytest.mark.parametrize(
    ("argument", "configured", "hostname", "expected"),
    [
        ("4", 9, "pulp-worker-2", 4),  # the argument wins
        (None, 9, "pulp-worker-2", 9),  # then PULP_WORKER_NUMBER
        (None, None, "pulp-worker-2", 2),  # then the StatefulSet ordinal
        (None, None, "pulp-worker-12.pulp-worker.ns.svc", 12),
        (None, None, "pulp-worker", 0),  # else 0
        (None, None, "worker7", 0),
    ],
)
def test_worker_number_precedence(argument, configured, hostname, expected):
    assert worker_number(argument, configured, hostname) == expected


def test_worker_number_must_be_an_integer():
    with pytest.raises(UsageError):
        worker_number("-1", None, "h")


def test_extra_args_env_then_dashes():
    assert extra_args(["--b"], "--a 'x y'") == ("--a", "x y", "--b")
    with pytest.raises(EnvValueError) as err:
        extra_args([], "--a 'unclosed")
    assert err.value.variable == "PULPINIT_CELERY_ARGS"


def test_who_migrates():
    assert migration_for("beat", True) is Migration.RUN
    assert migration_for("migrate", False) is Migration.RUN
    assert migration_for("worker", True) is Migration.WAIT
    assert migration_for("run", False) is Migration.SKIP
