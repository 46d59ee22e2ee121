"""The commands behind the CLI: each takes the parsed arguments and the environment.

They print their results on stdout (logs go to stderr) and return an exit
code; every failure is a :class:`~pulpinit.errors.PulpinitError` raised to
the CLI.  The role commands run the whole pipeline and do not return when
they hand off.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping

from pulpinit import pipeline, render, roles
from pulpinit.errors import ExitCode

Args = argparse.Namespace


def settings(args: Args, environ: Mapping[str, str]) -> int:
    ctx = pipeline.resolve(environ)
    if args.json:
        print(json.dumps(ctx.settings.as_json(), indent=2))
    else:
        print(render.settings_table(ctx.settings))
    return ExitCode.OK


def configure(args: Args, environ: Mapping[str, str]) -> int:
    ctx = pipeline.resolve(environ, create=args.create)
    if args.dry_run:
        plan = pipeline.plan_config(ctx)
        sys.stdout.write(plan.diff() or f"# {ctx.toolkit.config}: no change\n")
        return ExitCode.OK
    pipeline.configure(ctx)
    return ExitCode.OK


def check_deps(args: Args, environ: Mapping[str, str]) -> int:
    from pulpinit.wait.report import check

    ctx = pipeline.resolve(environ)
    report = check(ctx, wait=args.wait, timeout=args.timeout)
    print(json.dumps(report.as_json(), indent=2) if args.json else report.table())
    return ExitCode.OK if report.ok else ExitCode.UNAVAILABLE


def _role(args: Args, ctx: pipeline.Context) -> roles.Role:
    toolkit = ctx.toolkit
    if args.command == "run":
        return roles.Role("run", tuple(args.rest), roles.migration_for("run", toolkit.migration_wait))
    node = ctx.settings.get("server.server_name") or ctx.hostname
    number = roles.worker_number(getattr(args, "number", None), toolkit.worker_number, ctx.hostname)
    argv = roles.celery_argv(
        args.command,
        celery=toolkit.celery,
        node_name=node,
        number=number,
        log_dir=toolkit.celery_log_dir,
        extra=roles.extra_args(args.rest, toolkit.celery_args),
    )
    return roles.Role(args.command, argv, roles.migration_for(args.command, toolkit.migration_wait))


def role(args: Args, environ: Mapping[str, str]) -> int:
    """beat, resource-manager, worker [N], run: the full pipeline, then exec (or supervise) the command."""
    ctx, chosen = pipeline.prepare(environ, lambda c: _role(args, c), dry_run=args.dry_run)
    if args.dry_run:
        print(render.plan(ctx, chosen, pipeline.plan_config(ctx), init=args.init))
        return ExitCode.OK
    pipeline.configure(ctx)
    pipeline.wait(ctx)
    pipeline.migrate(ctx, chosen.migration)
    pipeline.handoff(ctx, chosen.argv, init=args.init)


run = role


def migrate(args: Args, environ: Mapping[str, str]) -> int:
    """One-shot: configure, wait, migrate once under the lock, exit 0."""
    chosen = roles.Role("migrate", (), roles.Migration.RUN)
    ctx, _ = pipeline.prepare(environ, lambda _: chosen, dry_run=args.dry_run)
    if args.dry_run:
        print(render.plan(ctx, chosen, pipeline.plan_config(ctx), init=False))
        return ExitCode.OK
    pipeline.configure(ctx)
    pipeline.wait(ctx)
    pipeline.migrate(ctx, chosen.migration)
    return ExitCode.OK
