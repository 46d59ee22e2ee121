"""The stages every role runs, in order: settings → configure → wait → migrate → hand off.

Each stage is a function of a :class:`Context` and logs ``stage.start`` /
``stage.end`` with ``duration_ms``.  Heavy modules are imported inside the
stage that needs them: pymongo only when waiting or migrating, augeas only
when server.conf is read, and none of them survives the hand-off.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from pulpinit import log
from pulpinit.errors import Interrupted
from pulpinit.knobs import Toolkit, toolkit_from_environ
from pulpinit.redact import REDACTOR
from pulpinit.settings import Settings, from_environ, register_secrets

if TYPE_CHECKING:
    from pulpinit.configfile import ConfigPlan, ServerConf
    from pulpinit.probe import ProbeResult


@dataclass(frozen=True)
class Context:
    """What the stages share: the environment, the resolved settings and the loaded server.conf."""

    environ: Mapping[str, str]
    settings: Settings
    conf: ServerConf
    hostname: str

    @property
    def toolkit(self) -> Toolkit:
        return self.settings.toolkit


def resolve(environ: Mapping[str, str], *, create: bool = False) -> Context:
    """Stage 1: read server.conf and resolve the settings (nothing is written)."""
    from pulpinit.configfile import ServerConf

    with log.stage("settings") as logger:
        register_secrets(environ)  # before anything parses them: no error can show a secret
        toolkit = toolkit_from_environ(environ)
        conf = ServerConf.load(toolkit.config, create=create or toolkit.create_config)
        hostname = socket.gethostname()
        settings = from_environ(environ, conf.values(), hostname=hostname)
        REDACTOR.add(*settings.secrets())
        for warning in settings.warnings:
            logger.warning("settings.warning", warning=warning)
        return Context(environ, settings, conf, hostname)


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

    with log.stage("configure", path=ctx.toolkit.config) as logger, interruptible("configure"):
        attempt = 0
        while True:
            attempt += 1
            plan = plan_config(ctx)
            try:
                written = plan.write(ctx.toolkit.user)  # a signal removes the temporary file
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

    with log.stage("wait"), interruptible("wait") as stop:
        return wait_all(probes(ctx), WaitPolicy.from_toolkit(ctx.toolkit), stop=stop)


@contextmanager
def interruptible(stage: str) -> Iterator[threading.Event]:
    """SIGTERM/SIGINT during ``stage`` raise :class:`Interrupted` (exit 143/130) in the main thread.

    The yielded event is set as well, so helper threads (probes, backoff sleeps) stop at once.
    """
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        raise Interrupted(signum, stage)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        stop.set()
        for sig, old in previous.items():
            signal.signal(sig, old)


def handoff(ctx: Context, argv: Sequence[str], *, init: bool) -> NoReturn:
    """Stage 5: exec the role's process as the unprivileged user, or exec the resident supervisor.

    The supervisor is a fresh interpreter (``python -m pulpinit.supervise``) with no pymongo,
    proton or augeas loaded; it resolves the user itself, in the child, after the fork.
    """
    from pulpinit.handoff import child_environ, exec_command
    from pulpinit.privileges import identity_for
    from pulpinit.redact import mask_argv

    toolkit = ctx.toolkit
    logger = log.get_logger(stage="handoff")
    env = child_environ(None, drop=() if toolkit.keep_secret_env else ctx.settings.secret_variables)
    identity = identity_for(toolkit.user)  # None when not root (OpenShift's arbitrary UID)
    if identity is None:
        logger.info("privileges.as_is", uid=os.getuid(), gid=os.getgid(),
                    reason="not root: running as the current user")
    if init or toolkit.init:
        supervisor = [sys.executable, "-m", "pulpinit.supervise", "--umask", f"{toolkit.umask:04o}"]
        if identity is not None:
            supervisor += ["--user", toolkit.user]
        if toolkit.stop_timeout is not None:
            supervisor += ["--stop-timeout", f"{toolkit.stop_timeout:g}"]
        logger.info("handoff.supervise", command=argv[0], user=identity.name if identity else None)
        exec_command([*supervisor, "--", *argv], env=env)
    if identity is not None:
        logger.info("privileges.drop", user=identity.name, uid=identity.uid, gid=identity.gid,
                    groups=list(identity.groups))
    logger.info("handoff.exec", argv=mask_argv(argv))
    exec_command(list(argv), identity=identity, umask=toolkit.umask, env=env)
