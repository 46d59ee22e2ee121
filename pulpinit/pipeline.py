"""The order of the stages, and the stop signals of each: settings → configure → wait → migrate → hand-off.

:func:`run` is the whole pipeline of a role (``beat``, ``resource-manager``, ``worker``, ``run``,
``migrate``): the commands only choose the role and its options.  :func:`plan` is the settings
stage of a role and the server.conf edit it would make (``--dry-run``); :func:`resolve`,
:func:`configure` and :func:`check_deps` are the partial pipelines of ``settings``,
``configure`` and ``check-deps``.

Each stage is named once, by :func:`_stage`: for the ``stage.start`` / ``stage.end`` log lines
(with ``duration_ms``) and for the stop handler (:mod:`pulpinit.signals`: a SIGTERM in any stage
ends pulpinit with one ``pulpinit.interrupted`` line naming it).  The stages get plain inputs
from here (the settings, the knobs, a target, a policy); none of them knows the others.
Heavy modules are imported by the stage modules where they are used: pymongo only when waiting
or migrating, augeas only when server.conf is read, tenacity only when waiting, and none of
them survives the hand-off.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from pulpinit import log, roles, signals
from pulpinit.config.serverconf import Assignment, ConfigPlan, ServerConf
from pulpinit.errors import ConfigFileChanged, ExitCode
from pulpinit.handoff.exec import hand_off
from pulpinit.log import Logger
from pulpinit.migrate import fingerprint
from pulpinit.migrate.migrator import Migration, MigrationPolicy, owner_name
from pulpinit.migrate.migrator import migrate as migrate_stage
from pulpinit.redact import REDACTOR
from pulpinit.settings.preflight import Preflight, check_role
from pulpinit.settings.resolve import Settings, from_environ, register_secrets
from pulpinit.settings.toolkit import Toolkit, toolkit_from_environ
from pulpinit.wait.report import Report, check
from pulpinit.wait.targets import ProbeResult, mongo_target
from pulpinit.wait.waiter import WaitPolicy, probes_for, wait_all


@dataclass(frozen=True)
class Context:
    """What the stages share: the environment, the resolved settings and the loaded server.conf."""

    environ: Mapping[str, str]
    settings: Settings
    conf: ServerConf
    hostname: str
    preflight: Preflight | None = None  # the settings-stage checks of the role (None: not a role)

    @property
    def toolkit(self) -> Toolkit:
        return self.settings.toolkit

    @property
    def fingerprint(self) -> tuple[str, str] | None:
        """``(fingerprint, how it was derived)`` when the settings stage derived it."""
        return self.preflight.fingerprint if self.preflight else None


@dataclass(frozen=True)
class DryRun:
    """What ``--dry-run`` shows: the settings stage of a role and the server.conf edit it would make."""

    ctx: Context
    role: roles.Role
    config: ConfigPlan


@contextmanager
def _stage(name: str, **fields: Any) -> Iterator[Logger]:
    """Run a stage: named for the stop handler, logged with ``stage.start`` and ``stage.end``."""
    signals.enter(name)
    with log.stage(name, **fields) as logger:
        yield logger


# -- the pipeline of a role -----------------------------------------------------------------------
def run(environ: Mapping[str, str], request: roles.Request, *, init: bool = False) -> int:
    """The whole pipeline of the role ``request`` asks for; returns only for ``migrate`` (0).

    Every other role ends in the hand-off: pulpinit is replaced by the role's process (or by the
    resident supervisor, with ``init`` or ``PULPINIT_INIT``).
    """
    ctx, role = _settings(environ, request, dry_run=False)
    configure(ctx)
    wait(ctx)
    migrate(ctx, role.migration)
    if not role.argv:
        return ExitCode.OK
    handoff(ctx, role.argv, init=init)


def plan(environ: Mapping[str, str], request: roles.Request) -> DryRun:
    """The settings stage of a role with every check made, and its server.conf edit (nothing is written)."""
    ctx, role = _settings(environ, request, dry_run=True)
    return DryRun(ctx, role, plan_config(ctx))


# -- stage 1: settings --------------------------------------------------------------------------
def _load(environ: Mapping[str, str], create: bool) -> Context:
    register_secrets(environ)  # before anything parses them: no error can show a secret
    toolkit = toolkit_from_environ(environ)  # the knobs, parsed once per run
    conf = ServerConf.load(toolkit.config, create=create or toolkit.create_config)
    hostname = socket.gethostname()
    settings = from_environ(environ, conf.values(), hostname=hostname, toolkit=toolkit)
    REDACTOR.add(*settings.secrets())
    for warning in settings.warnings:
        log.get_logger(stage="settings").warning("settings.warning", warning=warning)
    return Context(environ, settings, conf, hostname)


def resolve(environ: Mapping[str, str], *, create: bool = False) -> Context:
    """Stage 1: read server.conf and resolve the settings (nothing is written)."""
    with _stage("settings"):
        return _load(environ, create)


def _settings(environ: Mapping[str, str], request: roles.Request, *, dry_run: bool) -> tuple[Context, roles.Role]:
    """Stage 1 of a role: :func:`resolve`, choose the role, then validate first (:mod:`pulpinit.settings.preflight`).

    The user, the commands and the migration fingerprint are checked before server.conf is
    touched or anything is waited for; the first problem is raised (78, 127, 126) unless
    ``dry_run``, whose plan reports every check.
    """
    with _stage("settings"):
        ctx = _load(environ, False)
        role = roles.choose(request, ctx.settings, ctx.hostname)
        report = check_role(
            ctx.toolkit,
            role.commands(ctx.toolkit),
            environ.get("PATH", os.defpath),
            fingerprint=None if role.migration is Migration.SKIP else fingerprint.derive,
            complete=dry_run,
        )
        if not dry_run:
            report.raise_first()
        return replace(ctx, preflight=report), role


# -- stage 2: configure -------------------------------------------------------------------------
def plan_config(ctx: Context) -> ConfigPlan:
    """The server.conf edit the settings call for (validated; nothing written)."""
    assignments = []
    for key, value in ctx.settings.to_write():
        section, name = value.option
        assignments.append(Assignment(section, name, value.value, value.variable or key, value.secret))
    return ctx.conf.plan(assignments)


def configure(ctx: Context, attempts: int = 5) -> ConfigPlan:
    """Stage 2: write the settings into server.conf (atomically; nothing when unchanged).

    When another process (a replica sharing the volume) wrote the file between our read and
    our write, read it again and re-plan: usually it wrote the same values and nothing is left.
    """
    with _stage("configure", path=ctx.toolkit.config) as logger:
        attempt = 0
        while True:
            attempt += 1
            plan = plan_config(ctx)
            try:
                written = plan.write(ctx.toolkit.user)  # a stop signal removes the temporary file
            except ConfigFileChanged:
                if attempt == attempts:
                    raise
                logger.info("config.reread", reason="changed on disk by another process", attempt=attempt)
                ctx = replace(ctx, conf=ServerConf.load(ctx.toolkit.config))
                continue
            plan.log_changes()  # one config.changed per key, secrets and URL passwords masked
            logger.info("config.written" if written else "config.unchanged", changes=len(plan.changes))
            return plan


# -- stage 3: wait ------------------------------------------------------------------------------
def wait(ctx: Context) -> dict[str, ProbeResult]:
    """Stage 3: wait until MongoDB and the broker answer (exit 69 at the deadline).

    A stop signal ends every waiting thread at once (the event of :func:`pulpinit.signals.linked`).
    """
    with _stage("wait"), signals.linked() as stop:
        return wait_all(probes_for(ctx.settings), WaitPolicy.from_toolkit(ctx.toolkit), stop=stop)


def check_deps(environ: Mapping[str, str], *, wait: bool = False, timeout: float | None = None) -> Report:
    """``check-deps``: the settings stage, then one probe of each dependency (or the wait policy)."""
    ctx = resolve(environ)
    probes, policy = probes_for(ctx.settings), WaitPolicy.from_toolkit(ctx.toolkit)
    if not wait:
        return check(probes, policy, timeout=timeout)
    signals.enter("check-deps")
    with signals.linked() as stop:
        return check(probes, policy, wait=True, timeout=timeout, stop=stop)


# -- stage 4: migrate ---------------------------------------------------------------------------
def migrate(ctx: Context, mode: Migration) -> None:
    """Stage 4: migrate once (beat, migrate), wait until the migrations are done, or skip.

    Its waits sleep with :func:`pulpinit.signals.sleep`, so a stop ends them even when a stop
    signal's exception was swallowed on the way; running pulp-manage-db, it takes the stop
    signals over to forward them (:func:`pulpinit.signals.take_over`).
    """
    signals.enter("migrate")
    derived = ctx.fingerprint  # derived in the settings stage (validate first)
    if derived is None and mode is not Migration.SKIP:
        derived = fingerprint.derive(ctx.toolkit.migration_fingerprint)
    migrate_stage(
        mode,
        mongo_target(ctx.settings),
        derived[0] if derived else "",
        MigrationPolicy.from_toolkit(ctx.toolkit),
        owner=owner_name(ctx.environ),
        sleep=signals.sleep,
    )


# -- stage 5: hand-off --------------------------------------------------------------------------
def handoff(ctx: Context, argv: Sequence[str], *, init: bool) -> NoReturn:
    """Stage 5: exec the role's process as the unprivileged user, or exec the resident supervisor.

    Signals stay handled until the exec; the supervisor's are blocked across it (pending, not lost).
    """
    signals.enter("handoff")
    toolkit = ctx.toolkit
    hand_off(
        argv,
        user=toolkit.user,
        umask=toolkit.umask,
        supervise=init or toolkit.init,
        stop_timeout=toolkit.stop_timeout,
        drop_env=() if toolkit.keep_secret_env else ctx.settings.secret_variables,
    )
