"""The order of the stages, and the stop signals of each: settings → configure → wait → migrate → hand-off.

:func:`run` is the whole pipeline of a role (``beat``, ``resource-manager``, ``worker``, ``run``,
``migrate``, ``api``, ``crane``): the commands only choose the role and its options.  ``api``
adds two steps after the migrate stage — the admin password and the public key's link, from
its home :mod:`pulpinit.api` — and hands httpd over as root; ``crane`` has a pipeline of its
own (:func:`run_crane`), its steps from its home :mod:`pulpinit.crane`: settings (crane.conf's),
configure (crane.conf), hand-off as root, with no wait and no migrations.  :func:`plan` is the settings
stage of a role and the server.conf edit it would make (``--dry-run``); :func:`resolve`,
:func:`configure` and :func:`check_deps` are the partial pipelines of ``settings``,
``configure`` and ``check-deps``.

Each stage is named once, by :func:`_stage`: for the ``stage.start`` / ``stage.end`` log lines
(with ``duration_ms``) and for the stop handler (:mod:`pulpinit.signals`: a SIGTERM in any stage
ends pulpinit with one ``pulpinit.interrupted`` line naming it).  The stages get plain inputs
from here (the settings, the knobs, a target, a policy); none of them knows the others.
**Imports follow the command.**  The settings and configure stages, which every command runs,
are imported with this module; the wait, migrate and hand-off stages are imported here only,
by the function that enters each of them, and nowhere else: ``configure`` and ``settings``
load neither the wait nor the migrate stage nor a role's home (``api``, ``crane``: entered
only for that role), ``check-deps`` loads the probes and the census of
Pulp's processes (:mod:`pulpinit.wait.workers`) but not the migrate stage.  Heavy modules are
imported by the stage modules where they are used: pymongo only when waiting or migrating,
augeas only when server.conf is read, tenacity only when waiting, and none of them survives
the hand-off.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from pulpinit import knobs, log, roles, signals
from pulpinit.config.edits import assignments
from pulpinit.config.serverconf import ConfigPlan, ServerConf
from pulpinit.errors import ConfigError, ConfigFileChanged, ExitCode
from pulpinit.log import Logger
from pulpinit.redact import REDACTOR
from pulpinit.settings import cranevars, fingerprint
from pulpinit.settings.childenv import Purpose, child_environ
from pulpinit.settings.preflight import (
    PROBLEM,
    Check,
    Preflight,
    check_keys,
    check_role,
    check_user,
)
from pulpinit.settings.resolve import Settings, from_environ, register_early, register_secrets
from pulpinit.settings.toolkit import Toolkit, toolkit_from_environ

if TYPE_CHECKING:
    from pulpinit.crane.stages import CraneContext
    from pulpinit.settings.preflight import KeyReport
    from pulpinit.targets import ProbeResult
    from pulpinit.wait.report import Report

_Conf = TypeVar("_Conf", bound=ServerConf)


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
    endpoints: dict[str, str]  # what the wait stage would wait for, by dependency (mongodb, broker, messaging)

    @property
    def exit_code(self) -> int:
        """What a run would end with at its first local problem (0: every local check passed)."""
        return _first_exit_code(self.ctx.preflight)


@dataclass(frozen=True)
class CraneDryRun:
    """What ``crane --dry-run`` shows: its settings stage and the crane.conf edit it would make."""

    ctx: CraneContext
    config: ConfigPlan

    @property
    def exit_code(self) -> int:
        """What a run would end with at its first local problem (0: every local check passed)."""
        return _first_exit_code(self.ctx.preflight)


def _first_exit_code(preflight: Preflight | None) -> int:
    problems = preflight.problems if preflight is not None else ()
    return int(problems[0].error.exit_code) if problems and problems[0].error is not None else int(ExitCode.OK)


def long_running() -> None:
    """pulpinit may run for minutes from here on: collect garbage (the entry point switched it off).

    What the start-up made is frozen first: it lives until the exit, and no collection looks at it again.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


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
    if request.name == "crane":
        run_crane(environ, request, init=init)
    ctx, role = _settings(environ, request, dry_run=False)
    configure(ctx)
    wait(ctx, role)
    if role.migration is roles.Migration.SKIP:
        log.get_logger(stage="migrate").info("migration.not_waiting", reason="PULPINIT_MIGRATION_WAIT=false")
    else:
        migrate(ctx, role.migration, retry_failed=role.name == "migrate")
    if role.name == "api":
        api_steps(ctx)
    if not role.argv:
        return ExitCode.OK
    handoff(ctx, role, init=init)


def plan(environ: Mapping[str, str], request: roles.Request) -> DryRun | CraneDryRun:
    """The settings stage of a role with every check made, and its config edit (nothing is written).

    The later stages are not entered: the plan shows the endpoints the wait stage would wait for.
    """
    from pulpinit.targets import broker_target, messaging_target, mongo_target

    if request.name == "crane":
        from pulpinit.crane import conf as craneconf

        crane_ctx = _crane_settings(environ, request, dry_run=True)
        crane_plan = craneconf.plan(crane_ctx.settings, crane_ctx.conf)
        crane_checked = with_config_check(crane_ctx.preflight, crane_plan, crane_ctx.toolkit.user, "crane.conf")
        return CraneDryRun(replace(crane_ctx, preflight=crane_checked), crane_plan)
    ctx, role = _settings(environ, request, dry_run=True)
    config = plan_config(ctx)
    assert ctx.preflight is not None  # noqa: S101 - a role's settings stage made its checks
    checked = replace(ctx, preflight=with_config_check(ctx.preflight, config, ctx.toolkit.user))
    endpoints = {"mongodb": mongo_target(ctx.settings).endpoint, "broker": broker_target(ctx.settings).endpoint}
    if waits_for_messaging(ctx, role):
        endpoints["messaging"] = messaging_target(ctx.settings).endpoint
    return DryRun(checked, role, config, endpoints)


def with_config_check(preflight: Preflight, config: ConfigPlan, user: str, name: str = "server.conf") -> Preflight:
    """``preflight`` and the configure stage's own check (:meth:`ConfigPlan.check`), as a run makes them."""
    try:
        config.check(user)
    except ConfigError as exc:
        return replace(preflight, checks=(*preflight.checks, Check(name, PROBLEM, str(exc), exc)))
    done = "written" if config.changed else "left as it is"
    return replace(preflight, checks=(*preflight.checks, Check(name, "ok", f"{config.conf.path}: {done}")))


def run_crane(environ: Mapping[str, str], request: roles.Request, *, init: bool) -> NoReturn:
    """crane: its settings stage, crane.conf, then httpd as root; no database, no broker, no migrations."""
    from pulpinit.crane import conf as craneconf

    ctx = _crane_settings(environ, request, dry_run=False)
    with _stage("configure", path=ctx.settings.path):
        _write_config(
            ctx.conf,
            lambda conf: craneconf.plan(ctx.settings, conf),
            lambda: craneconf.load(ctx.settings.path),
            ctx.toolkit.user,
        )
    _hand_over(ctx.environ, ctx.toolkit, ctx.role, init=init)


# -- stage 1: settings --------------------------------------------------------------------------
#: The warning for a secret that is a word of the log lines' vocabulary (``settings.log_word``).
LOG_WORD_WARNING = (
    "holds a word pulpinit's log lines are made of (a level, an event name or a key), which they show as "
    "it is; it is masked in every value, but choose another"
)


def secrets_first(environ: Mapping[str, str], command: str, rest: Sequence[str] = ()) -> None:
    """Register every secret before the first line is written (even the settings stage's
    ``stage.start``): the environment's, the ``_FILE``s', server.conf's (crane.conf's for
    ``crane``), leniently, and the URL passwords of the arguments after ``--`` (``rest``); the
    settings stage reports what it cannot read."""
    for arg in rest:
        REDACTOR.add_value(arg, whole=False)
    cranevars.register_secrets(environ, {})
    config: str | None
    try:
        if command == "crane":
            config = cranevars.config_path(environ)
        else:
            config = knobs.raw(environ, knobs.BY_NAME["PULPINIT_CONFIG"])
    except ConfigError:
        return
    register_early(environ, config or "")


def _load(environ: Mapping[str, str], create: bool) -> Context:
    register_secrets(environ)  # before anything parses them: no error can show a secret
    toolkit = toolkit_from_environ(environ)  # the knobs, parsed once per run
    conf = ServerConf.load(toolkit.config, create=create or toolkit.create_config)
    hostname = os.uname().nodename  # gethostname(), without the socket module
    settings = from_environ(environ, conf.values(), hostname=hostname, toolkit=toolkit, unreadable=conf.unreadable())
    REDACTOR.add(*settings.secrets())
    logger = log.get_logger(stage="settings")
    for warning in settings.warnings:
        logger.warning("settings.warning", warning=warning)
    for variable in settings.log_word_secrets:
        logger.warning("settings.log_word", variable=variable, warning=LOG_WORD_WARNING)
    return Context(environ, settings, conf, hostname)


def resolve(environ: Mapping[str, str], *, create: bool = False, user: bool = False) -> Context:
    """Stage 1: read server.conf and resolve the settings (nothing is written).

    ``user``: check ``PULPINIT_USER`` too, as the roles do (``configure``: the file's group and the
    check that the user can read it depend on it; when root, an unknown user is 78).
    """
    with _stage("settings"):
        ctx = _load(environ, create)
        if user:
            found, _ = check_user(ctx.toolkit)
            if found.error is not None:
                raise found.error
        return ctx


def _settings(environ: Mapping[str, str], request: roles.Request, *, dry_run: bool) -> tuple[Context, roles.Role]:
    """Stage 1 of a role: :func:`resolve`, choose the role, then validate first (:mod:`pulpinit.settings.preflight`).

    The user, the commands and the migration fingerprint are checked before server.conf is
    touched or anything is waited for; the first problem is raised (78, 127, 126) unless
    ``dry_run``, whose plan reports every check.
    """
    with _stage("settings"):
        ctx = _load(environ, False)
        role = roles.choose(request, ctx.settings, ctx.hostname)
        values = {key: value.value for key, value in ctx.settings.values.items()}
        waits = role.migration is not roles.Migration.SKIP
        report = _check_role(environ, ctx.toolkit, role, values, fingerprinted=waits, dry_run=dry_run)
        return replace(ctx, preflight=report), role


def _check_role(
    environ: Mapping[str, str],
    toolkit: Toolkit,
    role: roles.Role,
    values: Mapping[str, str],
    *,
    fingerprinted: bool,
    dry_run: bool,
) -> Preflight:
    """The role's checks (:func:`check_role`): the first problem is raised unless ``dry_run``."""
    report = check_role(
        toolkit,
        role.commands(toolkit),
        environ.get("PATH", os.defpath),
        fingerprint=fingerprint.derive if fingerprinted else None,
        complete=dry_run,
        as_root=role.as_root,
        keys=_key_check(role.name, values, toolkit),
    )
    _log_keys(role.name, report)
    if not dry_run:
        report.raise_first()
    return report


def _key_check(role: str, values: Mapping[str, str], toolkit: Toolkit) -> Callable[[], KeyReport | None]:
    """The key check of ``role`` for :func:`check_role` (it reports None when the role uses no key)."""
    return lambda: check_keys(role, values, toolkit)


def _log_keys(role: str, report: Preflight) -> None:
    """``keys.checked`` when the role's keys passed, one ``keys.expiring`` per certificate near its end."""
    if report.keys is None:
        return
    logger = log.get_logger(stage="settings")
    for warning in report.keys.warnings:
        logger.warning(
            "keys.expiring", path=warning.path, problem=warning.problem, not_after=warning.not_after.isoformat()
        )
    if report.keys.check.status == "ok":
        logger.info("keys.checked", role=role, files=list(report.keys.files))


def _crane_settings(environ: Mapping[str, str], request: roles.Request, *, dry_run: bool) -> CraneContext:
    """Stage 1 of crane: crane.conf's settings, then the user, httpd (as root), the keys and data_dir."""
    from pulpinit.crane import stages as crane

    with _stage("settings") as logger:
        toolkit = toolkit_from_environ(environ)
        settings, conf = crane.resolve(environ, logger)
        role = roles.httpd_role(request, toolkit)
        report = _check_role(environ, toolkit, role, {}, fingerprinted=False, dry_run=dry_run)
        report = replace(report, checks=(*report.checks, crane.data_dir_check(settings.data_dir, toolkit, logger)))
        return crane.CraneContext(environ, toolkit, settings, conf, role, report)


# -- stage 2: configure -------------------------------------------------------------------------
def plan_config(ctx: Context) -> ConfigPlan:
    """The server.conf edit the settings call for (validated; nothing written)."""
    return ctx.conf.plan(assignments(ctx.settings.to_write()))


def configure(ctx: Context) -> ConfigPlan:
    """Stage 2: write the settings into server.conf (atomically; nothing when unchanged)."""
    with _stage("configure", path=ctx.toolkit.config):
        return _write_config(
            ctx.conf,
            lambda conf: conf.plan(assignments(ctx.settings.to_write())),
            lambda: ServerConf.load(ctx.toolkit.config),
            ctx.toolkit.user,
        )


def _write_config(
    conf: _Conf, plan_for: Callable[[_Conf], ConfigPlan], load: Callable[[], _Conf], user: str, attempts: int = 5
) -> ConfigPlan:
    """Write ``plan_for(conf)`` (atomically; nothing when unchanged).

    When another process (a replica sharing the volume) wrote the file between our read and our
    write, ``load()`` it again and re-plan: usually it wrote the same values and nothing is left.
    """
    logger = log.get_logger(stage="configure")
    attempt = 0
    while True:
        attempt += 1
        plan = plan_for(conf)
        try:
            written = plan.write(user)  # a stop signal removes the temporary file
        except ConfigFileChanged:
            if attempt == attempts:
                raise
            logger.info("config.reread", reason="changed on disk by another process", attempt=attempt)
            conf = load()
            continue
        plan.log_changes()  # one config.changed per key, secrets and URL passwords masked
        logger.info("config.written" if written else "config.unchanged", changes=len(plan.changes))
        return plan


# -- stage 3: wait ------------------------------------------------------------------------------
def waits_for_messaging(ctx: Context, role: roles.Role) -> bool:
    """Whether ``role`` waits for ``[messaging]``: it talks to the agents and ``PULPINIT_WAIT_MESSAGING`` is on."""
    return ctx.toolkit.wait_messaging and role.talks_to_agents


def wait(ctx: Context, role: roles.Role) -> dict[str, ProbeResult]:
    """Stage 3: wait until MongoDB and the broker answer, and ``[messaging]`` where asked (exit 69 at the deadline).

    A stop signal ends every waiting thread at once (the event of :func:`pulpinit.signals.linked`).
    """
    from pulpinit.wait.waiter import WaitPolicy, probes_for, wait_all

    long_running()
    probes = probes_for(ctx.settings, messaging=waits_for_messaging(ctx, role))
    with _stage("wait"), signals.linked() as stop:
        return wait_all(probes, WaitPolicy.from_toolkit(ctx.toolkit), stop=stop)


def check_deps(
    environ: Mapping[str, str], *, wait: bool = False, timeout: float | None = None
) -> tuple[Report, dict[str, Any]]:
    """``check-deps``: the settings stage, then one probe of each dependency (or the wait policy),
    and the Pulp processes heartbeating in Pulp's ``workers`` (``pulp_processes``: read beside the
    probes, within the same budget; it does not change the exit code).  ``[messaging]`` is probed
    too; it counts in the exit code (and ``--wait`` waits for it) only with ``PULPINIT_WAIT_MESSAGING``.

    The whole run — settings, probes or wait, and the census — ends by one deadline: ``timeout``
    after the start, or without it the probe timeout (one probe) or the wait timeout (``wait``).
    """
    from pulpinit.targets import address_sources, mongo_target
    from pulpinit.wait.report import check
    from pulpinit.wait.waiter import WaitPolicy, messaging_probe, probes_for
    from pulpinit.wait.workers import MIGRATION_WAIT_TIME, Survey

    started = time.monotonic()
    ctx = resolve(environ)
    counted = ctx.toolkit.wait_messaging
    probes, policy = probes_for(ctx.settings, messaging=counted), WaitPolicy.from_toolkit(ctx.toolkit)
    aside = {} if counted else {"messaging": messaging_probe(ctx.settings)}
    budget = timeout if timeout is not None else policy.timeout if wait else policy.probe_timeout
    left = max(0.05, started + budget - time.monotonic())
    target, threshold = mongo_target(ctx.settings), ctx.toolkit.quiet_seconds or MIGRATION_WAIT_TIME
    sources = address_sources(ctx.settings)
    survey = Survey(target, left, threshold)  # beside the probes (pymongo waits for a server that comes up)
    if not wait:
        return check(probes, policy, timeout=left, sources=sources, uncounted=aside), survey.result()
    signals.enter("check-deps")
    long_running()
    with signals.linked() as stop:
        report = check(probes, policy, wait=True, timeout=left, stop=stop, sources=sources, uncounted=aside)
    return report, survey.result()


# -- stage 4: migrate ---------------------------------------------------------------------------
def migrate(ctx: Context, mode: roles.Migration, *, retry_failed: bool = False) -> None:
    """Stage 4: migrate once (beat, migrate) or wait until the migrations are done (``mode`` RUN or WAIT).

    Only ``pulpinit migrate`` (``retry_failed``) runs a migration recorded as failed again.

    Its waits sleep with :func:`pulpinit.signals.sleep`, so a stop ends them even when a stop
    signal's exception was swallowed on the way; running pulp-manage-db, it takes the stop
    signals over to forward them (:func:`pulpinit.signals.take_over`).
    """
    from pulpinit.migrate.migrator import MigrationPolicy, owner_name
    from pulpinit.migrate.migrator import migrate as migrate_stage
    from pulpinit.targets import mongo_target

    signals.enter("migrate")
    long_running()
    derived = ctx.fingerprint or fingerprint.derive(ctx.toolkit.migration_fingerprint)  # validate first: derived
    migrate_stage(
        "run" if mode is roles.Migration.RUN else "wait",
        mongo_target(ctx.settings),
        derived[0],
        MigrationPolicy.from_toolkit(ctx.toolkit),
        owner=owner_name(ctx.environ),
        sleep=signals.sleep,
        retry_failed=retry_failed,
        environ=ctx.environ,
    )


# -- the api role's steps after the migrations --------------------------------------------------
def api_steps(ctx: Context) -> None:
    """The stage ``api``: the admin password, then the public key's link."""
    from pulpinit.api.admin import check_admin
    from pulpinit.api.publish import publish

    with _stage("api") as logger:
        check_admin(ctx.settings, logger, sleep=signals.sleep)
        publish(ctx.settings, logger)


# -- stage 5: hand-off --------------------------------------------------------------------------
def handoff(ctx: Context, role: roles.Role, *, init: bool) -> NoReturn:
    """Stage 5: exec the role's process as the unprivileged user (as root for httpd), or the resident supervisor."""
    _hand_over(ctx.environ, ctx.toolkit, role, init=init)


def _hand_over(environ: Mapping[str, str], toolkit: Toolkit, role: roles.Role, *, init: bool) -> NoReturn:
    """Signals stay handled until the exec; the supervisor's are blocked across it (pending, not lost).

    The role's environment is the one child-environment policy's (:mod:`pulpinit.settings.childenv`).
    """
    from pulpinit.handoff.exec import hand_off

    signals.enter("handoff")
    hand_off(
        role.argv,
        user=toolkit.user,
        umask=toolkit.umask,
        supervise=init or toolkit.init,
        stop_timeout=toolkit.stop_timeout,
        env=child_environ(environ, Purpose.ROLE, keep_secret_env=toolkit.keep_secret_env),
        as_root=role.as_root,
    )
