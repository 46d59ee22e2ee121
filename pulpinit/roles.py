"""The roles: what each one runs, and whether it migrates or waits for migrations.

A command of the CLI asks for a role (:class:`Request`: its name and options); once the
settings are resolved, :func:`choose` makes it a :class:`Role` (its final argv and what it does
about migrations) from the settings, the knobs and the host name.

The celery command lines follow Pulp 2.21's systemd units (see docs/roles.md's
table of final argv), adapted to containers: logs go to stdout/stderr unless
``PULPINIT_CELERY_LOG_DIR`` names a directory, and celery beat keeps no pid
file (a stale one on a persistent volume would stop the next start).

``api`` and ``crane`` exec ``httpd -DFOREGROUND`` (:func:`httpd_role`) **as root**: httpd binds
port 443 and reads its TLS key as root, then starts its children as ``User apache`` itself, so
pulpinit must not drop first.  ``crane`` reads no database: it neither waits nor migrates.

:data:`AGENT_ROLES` are the roles whose processes send the consumer agents their requests through
gofer's ``[messaging]`` broker; with ``PULPINIT_WAIT_MESSAGING`` they wait for it too.
"""

from __future__ import annotations

import enum
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pulpinit import knobs
from pulpinit.errors import EnvValueError, UsageError
from pulpinit.settings.resolve import Settings
from pulpinit.settings.toolkit import Toolkit

__all__ = [
    "AGENT_ROLES",
    "HTTPD_ROLES",
    "ROLES",
    "Migration",
    "Request",
    "Role",
    "celery_argv",
    "choose",
    "extra_args",
    "httpd_role",
    "worker_number",
]

BEAT_APP = "pulp.server.async.celery_instance.celery"
WORKER_APP = "pulp.server.async.app"
SCHEDULER = "pulp.server.async.scheduler.Scheduler"
_ORDINAL = re.compile(r"-(\d+)$")
#: The roles that exec celery.
ROLES = ("beat", "resource-manager", "worker")
#: The roles that exec httpd, as root: it binds 443 and reads its key, then drops its own children.
HTTPD_ROLES = ("api", "crane")
#: The roles that talk to the consumer agents (Pulp 2.21, pulp/pulp ``server/pulp/server``): the API
#: starts gofer's reply listener on ``pulp.task`` at start-up (``webservices/application.py`` lines
#: 69, 86) and sends agent requests from its views (``webservices/views/consumers.py`` lines 258,
#: 421, 568-617; ``views/tasks.py`` line 147 → ``async/tasks.py`` lines 828-835); the workers run the
#: tasks that do (``tasks/consumer.py`` lines 127-168 and ``controllers/consumer.py``'s bind and
#: unbind, lines 36-39, 78-79, 119-120, as tasks from ``managers/consumer/group/cud.py`` lines
#: 255-299).  Beat and the resource manager only schedule and route tasks: nothing of theirs
#: imports ``pulp.server.agent``.
AGENT_ROLES = ("api", "worker")
RoleName = Literal["beat", "resource-manager", "worker", "run", "migrate", "api", "crane"]


class Migration(enum.Enum):
    """What a role does about database migrations before it starts."""

    RUN = "run"  # take the lock and migrate unless this version is done (beat, migrate)
    WAIT = "wait"  # wait until this version's migrations are done (other roles)
    SKIP = "skip"  # neither (PULPINIT_MIGRATION_WAIT=false): the migrate stage is not entered


@dataclass(frozen=True)
class Request:
    """A role as the command line asks for it: its name, the worker number argument, the arguments after ``--``."""

    name: RoleName
    number: str | None = None
    rest: tuple[str, ...] = ()


@dataclass(frozen=True)
class Role:
    """A resolved role: its name, final argv and migration behaviour."""

    name: str
    argv: tuple[str, ...]
    migration: Migration
    as_root: bool = False  # hand over as root: httpd drops its own children (api, crane)

    @property
    def talks_to_agents(self) -> bool:
        """Whether its process sends the consumer agents requests through ``[messaging]`` (:data:`AGENT_ROLES`)."""
        return self.name in AGENT_ROLES

    def commands(self, toolkit: Toolkit) -> list[tuple[str | None, str]]:
        """``(variable or None, command)`` for every program the role will start (the checks of validate first)."""
        found: list[tuple[str | None, str]] = []
        if self.argv:
            variable = "PULPINIT_HTTPD" if self.as_root else "PULPINIT_CELERY"
            found.append((None if self.name == "run" else variable, self.argv[0]))
        if self.migration is Migration.RUN:
            if toolkit.pre_migrate:
                found.append(("PULPINIT_PRE_MIGRATE", toolkit.pre_migrate[0]))
            found.append(("PULPINIT_MANAGE_DB", toolkit.manage_db))
        return found


def choose(request: Request, settings: Settings, hostname: str) -> Role:
    """The role ``request`` asks for, with the final argv the settings and knobs give it."""
    toolkit = settings.toolkit
    migration = migration_for(request.name, toolkit.migration_wait)
    if request.name == "migrate":
        return Role("migrate", (), migration)
    if request.name == "run":
        return Role("run", request.rest, migration)
    if request.name in HTTPD_ROLES:
        return httpd_role(request, toolkit)
    argv = celery_argv(
        request.name,
        celery=toolkit.celery,
        node_name=settings.get("server.server_name") or hostname,
        number=worker_number(request.number, toolkit.worker_number, hostname),
        log_dir=toolkit.celery_log_dir,
        extra=extra_args(request.rest, toolkit.celery_args),
    )
    return Role(request.name, argv, migration)


def httpd_role(request: Request, toolkit: Toolkit) -> Role:
    """``api`` or ``crane``: ``httpd -DFOREGROUND`` and the arguments after ``--``, handed over as root."""
    argv = (toolkit.httpd, "-DFOREGROUND", *request.rest)
    if request.name == "crane":
        return Role("crane", argv, Migration.SKIP, as_root=True)
    return Role(request.name, argv, migration_for(request.name, toolkit.migration_wait), as_root=True)


def worker_number(argument: str | None, configured: int | None, hostname: str) -> int:
    """N from the argument, else ``PULP_WORKER_NUMBER``, else the StatefulSet ordinal, else 0.

    The argument follows the rule of the knob (:func:`pulpinit.knobs.worker_number`);
    a bad one is a usage error (64).
    """
    if argument is not None:
        try:
            return knobs.worker_number(argument, "worker: N")
        except EnvValueError:
            shown = argument if len(argument) <= 20 else argument[:17] + "..."
            raise UsageError(f"worker: N must be a non-negative integer of at most 9 digits, not {shown!r}") from None
    if configured is not None:
        return configured
    match = _ORDINAL.search(hostname.split(".", 1)[0])
    return int(match.group(1)) if match else 0


def extra_args(after_dashes: Sequence[str], from_env: str) -> tuple[str, ...]:
    """Extra celery arguments: ``PULPINIT_CELERY_ARGS`` (shell-quoted) then those after ``--``.

    They may hold URLs with credentials (``--broker=amqp://u:p@h//``): whoever prints an argv
    prints :func:`pulpinit.redact.mask_argv` of it.
    """
    try:
        env_args = shlex.split(from_env)
    except ValueError as exc:
        raise EnvValueError("PULPINIT_CELERY_ARGS", f"cannot split it like a shell would: {exc}") from None
    return (*env_args, *after_dashes)


def _logfile(log_dir: str | None, name: str) -> tuple[str, ...]:
    return (f"--logfile={log_dir.rstrip('/')}/{name}.log",) if log_dir else ()


def celery_argv(
    role: str,
    *,
    celery: str,
    node_name: str,
    number: int = 0,
    log_dir: str | None = None,
    extra: Sequence[str] = (),
) -> tuple[str, ...]:
    """The final argv of ``beat``, ``resource-manager`` or ``worker``."""
    if role == "beat":
        base: tuple[str, ...] = (
            celery,
            "beat",
            f"--app={BEAT_APP}",
            f"--scheduler={SCHEDULER}",
            "--workdir=/var/lib/pulp/celery",
            "--pidfile=",
            "--loglevel=INFO",
            *_logfile(log_dir, "celerybeat"),
        )
    elif role == "resource-manager":
        base = (
            celery,
            "worker",
            f"--app={WORKER_APP}",
            "-n",
            f"resource_manager@{node_name}",
            "-Q",
            "resource_manager",
            "-c",
            "1",
            "--events",
            "--umask=18",
            "--loglevel=INFO",
            *_logfile(log_dir, "resource_manager"),
        )
    elif role == "worker":
        base = (
            celery,
            "worker",
            f"--app={WORKER_APP}",
            "-n",
            f"reserved_resource_worker-{number}@{node_name}",
            "-c",
            "1",
            "--events",
            "--umask=18",
            "--loglevel=INFO",
            *_logfile(log_dir, f"reserved_resource_worker-{number}"),
        )
    else:
        raise UsageError(f"unknown role {role!r}")
    return (*base, *extra)


def migration_for(role: str, wait_enabled: bool) -> Migration:
    """beat and migrate run migrations; every other role waits unless waiting is switched off."""
    if role in ("beat", "migrate"):
        return Migration.RUN
    return Migration.WAIT if wait_enabled else Migration.SKIP
