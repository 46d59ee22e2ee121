"""The stages every role runs, in order: settings → configure → wait → migrate → hand off.

Each stage is a function of a :class:`Context`; :func:`_stage` is the one place that names a
stage, for the ``stage.start`` / ``stage.end`` log lines (with ``duration_ms``) and for the stop
handler (:mod:`pulpinit.signals`: a SIGTERM in any stage ends pulpinit with one
``pulpinit.interrupted`` line naming it).  Heavy modules are imported inside the stage that needs
them: pymongo only when waiting or migrating, augeas only when server.conf is read, and none of
them survives the hand-off.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NoReturn

from pulpinit import log, signals
from pulpinit.knobs import Toolkit, toolkit_from_environ
from pulpinit.redact import REDACTOR
from pulpinit.settings import Settings, from_environ, register_secrets

if TYPE_CHECKING:
    from pulpinit.configfile import ConfigPlan, ServerConf
    from pulpinit.preflight import Preflight
    from pulpinit.probe import ProbeResult
    from pulpinit.roles import Migration, Role


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


@contextmanager
def _stage(name: str, **fields: Any) -> Iterator[Any]:
    """Run a stage: named for the stop handler, logged with ``stage.start`` and ``stage.end``."""
    signals.enter(name)
    with log.stage(name, **fields) as logger:
        yield logger


def _load(environ: Mapping[str, str], create: bool) -> Context:
    from pulpinit.configfile import ServerConf

    register_secrets(environ)  # before anything parses them: no error can show a secret
    toolkit = toolkit_from_environ(environ)
    conf = ServerConf.load(toolkit.config, create=create or toolkit.create_config)
    hostname = socket.gethostname()
    settings = from_environ(environ, conf.values(), hostname=hostname)
    REDACTOR.add(*settings.secrets())
    for warning in settings.warnings:
        log.get_logger(stage="settings").warning("settings.warning", warning=warning)
    return Context(environ, settings, conf, hostname)


def resolve(environ: Mapping[str, str], *, create: bool = False) -> Context:
    """Stage 1: read server.conf and resolve the settings (nothing is written)."""
    with _stage("settings"):
        return _load(environ, create)


def prepare(
    environ: Mapping[str, str], choose: Callable[[Context], Role], *, dry_run: bool = False
) -> tuple[Context, Role]:
    """Stage 1 of a role: :func:`resolve`, choose the role, then validate first (:mod:`pulpinit.preflight`).

    The user, the commands and the migration fingerprint are checked before server.conf is
    touched or anything is waited for; the first problem is raised (78, 127, 126) unless
    ``dry_run``, whose plan reports every check.
    """
    from pulpinit.preflight import check_role

    with _stage("settings"):
        ctx = _load(environ, False)
        role = choose(ctx)
        report = check_role(ctx.toolkit, role, environ.get("PATH", os.defpath), complete=dry_run)
        if not dry_run:
            report.raise_first()
        return replace(ctx, preflight=report), role


def plan_config(ctx: Context) -> ConfigPlan:
    """The server.conf edit the settings call for (validated; nothing written)."""
    from pulpinit.configfile import Assignment

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
    from pulpinit.configfile import ServerConf
    from pulpinit.errors import ConfigFileChanged

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


def probes(ctx: Context) -> dict[str, Callable[[float], ProbeResult]]:
    """The two dependency probes, bound to their targets."""
    from pulpinit.broker_probe import probe_broker
    from pulpinit.mongo_probe import probe_mongodb

    mongo, broker = ctx.settings.mongo_target(), ctx.settings.broker_target()
    return {
        "mongodb": lambda timeout: probe_mongodb(mongo, timeout),
        "broker": lambda timeout: probe_broker(broker, timeout),
    }


def wait(ctx: Context) -> dict[str, ProbeResult]:
    """Stage 3: wait until MongoDB and the broker answer (exit 69 at the deadline)."""
    from pulpinit.deps import WaitPolicy, wait_all

    with _stage("wait"), signals.linked() as stop:
        return wait_all(probes(ctx), WaitPolicy.from_toolkit(ctx.toolkit), stop=stop)


@contextmanager
def interruptible(stage: str) -> Iterator[threading.Event]:
    """Name ``stage`` for the stop handler; the yielded event is set as soon as a stop signal arrives.

    A stop signal raises :class:`~pulpinit.errors.Interrupted` (exit 143/130) in the main
    thread; the event stops helper threads (probes, backoff sleeps) at once.
    """
    signals.enter(stage)
    with signals.linked() as stop:
        yield stop


def migrate(ctx: Context, mode: Migration) -> None:
    """Stage 4: migrate once (beat, migrate), wait until the migrations are done, or skip.

    Its waits sleep with :func:`pulpinit.signals.sleep`, so a stop ends them even when a stop
    signal's exception was swallowed on the way.
    """
    from pulpinit import migration

    signals.enter("migrate")
    migration.stage(ctx, mode, sleep=signals.sleep)


def handoff(ctx: Context, argv: Sequence[str], *, init: bool) -> NoReturn:
    """Stage 5: exec the role's process as the unprivileged user, or exec the resident supervisor.

    The supervisor is a fresh interpreter (``python -m pulpinit.supervise``) with no pymongo,
    proton or augeas loaded; it resolves the user itself, in the child, after the fork.
    """
    from pulpinit.handoff import child_environ, exec_command
    from pulpinit.privileges import identity_for
    from pulpinit.redact import mask_argv

    toolkit = ctx.toolkit
    signals.enter("handoff")
    logger = log.get_logger(stage="handoff")
    env = child_environ(None, drop=() if toolkit.keep_secret_env else ctx.settings.secret_variables)
    identity = identity_for(toolkit.user)  # None when not root (OpenShift's arbitrary UID)
    if identity is None:
        logger.info(
            "privileges.as_is", uid=os.getuid(), gid=os.getgid(), reason="not root: running as the current user"
        )
    if init or toolkit.init:
        supervisor = [sys.executable, "-m", "pulpinit.supervise", "--umask", f"{toolkit.umask:04o}"]
        supervisor += ["--log-format", log.current_format()]
        if identity is not None:
            supervisor += ["--user", toolkit.user]
        if toolkit.stop_timeout is not None:
            supervisor += ["--stop-timeout", f"{toolkit.stop_timeout:g}"]
        logger.info("handoff.supervise", command=argv[0], user=identity.name if identity else None)
        unblock = signals.block_for_handoff()
        try:
            exec_command([*supervisor, "--", *argv], env=env)
        finally:  # reached only when the exec failed
            unblock()
    if identity is not None:
        logger.info(
            "privileges.drop", user=identity.name, uid=identity.uid, gid=identity.gid, groups=list(identity.groups)
        )
    logger.info("handoff.exec", argv=mask_argv(argv))
    exec_command(list(argv), identity=identity, umask=toolkit.umask, env=env)
