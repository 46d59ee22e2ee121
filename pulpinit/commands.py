"""The commands behind the CLI: each takes the parsed arguments and the environment.

A command chooses what to run — a role and its options, or a partial pipeline — and calls
:mod:`pulpinit.pipeline`; the order of the stages lives there only.  Results go to stdout
(logs go to stderr, :mod:`pulpinit.render` formats them) and a command returns an exit code;
every failure is a :class:`~pulpinit.errors.PulpinitError` raised to the CLI.  The role
commands do not return when they hand off.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import cast

from pulpinit import pipeline
from pulpinit.errors import ExitCode, PulpinitError
from pulpinit.redact import REDACTOR
from pulpinit.roles import Request, RoleName

Args = argparse.Namespace


def settings(args: Args, environ: Mapping[str, str]) -> int:
    ctx = pipeline.resolve(environ)
    if args.json:
        print(json.dumps(ctx.settings.as_json(), indent=2))
    else:
        from pulpinit import render  # the tables: only the commands that print one load them

        print(render.settings_table(ctx.settings))
    return ExitCode.OK


def configure(args: Args, environ: Mapping[str, str]) -> int:
    """Write server.conf (``--dry-run``: print the diff, and make the checks a write makes)."""
    ctx = pipeline.resolve(environ, create=args.create, user=True)
    if args.dry_run:
        plan = pipeline.plan_config(ctx)
        sys.stdout.write(plan.diff() or f"# {ctx.toolkit.config}: no change\n")
        plan.check(ctx.toolkit.user)
        return ExitCode.OK
    pipeline.configure(ctx)
    return ExitCode.OK


def check_deps(args: Args, environ: Mapping[str, str]) -> int:
    """The report and its exit code (:attr:`pulpinit.wait.report.Report.exit_code`); with ``--json``
    one JSON document whatever happens, a failure before the report included (its ``error``)."""
    try:
        report, processes = pipeline.check_deps(environ, wait=args.wait, timeout=args.timeout)
    except Exception as exc:
        if args.json:  # the error itself is logged by the CLI, as always
            code = exc.exit_code if isinstance(exc, PulpinitError) else ExitCode.UNEXPECTED
            error = str(exc) if isinstance(exc, PulpinitError) else f"unexpected {type(exc).__name__}: {exc}"
            document = {"ok": False, "exit_code": int(code), "error": error, "checks": []}
            print(json.dumps(REDACTOR.deep({**document, "pulp_processes": {"error": "not read"}}), indent=2))
        raise
    if args.json:
        print(json.dumps(REDACTOR.deep({**report.as_json(), "pulp_processes": processes}), indent=2))
    else:
        from pulpinit import render

        print(render.check_deps_table(report) + "\n\n" + render.processes(processes))
    return report.exit_code


def role(args: Args, environ: Mapping[str, str]) -> int:
    """beat, resource-manager, worker [N], run, migrate: the whole pipeline of the role (or its plan)."""
    request = Request(cast(RoleName, args.command), getattr(args, "number", None), tuple(args.rest))
    init = getattr(args, "init", False)
    if args.dry_run:
        dry = pipeline.plan(environ, request)
        from pulpinit import render

        print(render.plan(dry, init=init))
        return dry.exit_code  # what the run would end with at its first local problem
    return pipeline.run(environ, request, init=init)


run = migrate = role
