"""Human-readable output: the settings table, the check-deps table and the dry-run plan.

Only display values are ever rendered (:attr:`pulpinit.settings.resolve.Value.display`),
so a password or URL credential cannot reach stdout from here.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from pulpinit.migrate.migrator import Migration
from pulpinit.pipeline import Context, DryRun
from pulpinit.privileges import running_as_root
from pulpinit.redact import REDACTOR, mask_argv
from pulpinit.settings.resolve import Settings
from pulpinit.wait.report import Report
from pulpinit.wait.targets import broker_target, mongo_target


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain left-aligned text table."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def settings_table(settings: Settings) -> str:
    rows = [(key, value.display, value.source) for key, value in sorted(settings.values.items())]
    knob_values = settings.as_json()["pulpinit"]
    knobs = [(name, knob_values[name]["value"], source) for name, source in settings.knob_sources.items()]
    return REDACTOR(
        table(("server.conf key", "value", "source"), rows)
        + "\n\n"
        + table(("pulpinit knob", "value", "source"), knobs)
    )


def check_deps_table(report: Report) -> str:
    """The ``check-deps`` table, then one hint line per dependency that is down."""
    rows = []
    for c in report.checks:
        data = c.as_json()
        rows.append(
            (
                c.name,
                c.endpoint,
                "up" if c.ok else "DOWN",
                f"{c.latency_ms:.0f} ms",
                c.version or "-",
                str(data["error"] or "-"),
            )
        )
    text = table(("dependency", "endpoint", "status", "latency", "version", "error"), rows)
    hints = [f"hint ({c.name}): {c.hint}" for c in report.checks if c.hint]
    return "\n".join([text, *(["", *hints] if hints else [])])


def _fingerprint(ctx: Context) -> str:
    if ctx.fingerprint is not None:
        return f"fingerprint {ctx.fingerprint[0]} ({ctx.fingerprint[1]})"
    return "fingerprint UNKNOWN (it cannot be derived here: see ## checks)"


def migration_decision(ctx: Context, migration: Migration) -> str:
    toolkit = ctx.toolkit
    where = f"{ctx.settings.get('database.name')}.{toolkit.lock_collection}"
    if migration is Migration.SKIP:
        return "skip: PULPINIT_MIGRATION_WAIT=false, this role neither migrates nor waits"
    fingerprint = _fingerprint(ctx)
    if migration is Migration.WAIT:
        return (
            f"wait: start once {where} records {fingerprint} as done; "
            f"exit 75 after {toolkit.migration_timeout:g} s without a live lease holder, "
            "or at once if it is recorded as failed"
        )
    return (
        f"migrate: run {toolkit.manage_db} under the lease lock in {where} unless {fingerprint} "
        "is recorded as done there; --dry-run connects to nothing, so the record is not read"
    )


def checks(ctx: Context) -> str:
    """The settings-stage checks of the role (:mod:`pulpinit.settings.preflight`) and what a run would do."""
    if ctx.preflight is None:
        return "none"
    rows = [(check.status, check.name, check.detail) for check in ctx.preflight.checks]
    text = table(("status", "check", "result"), rows)
    problems = ctx.preflight.problems
    if not problems:
        return text + "\nall passed"
    first = problems[0].error
    assert first is not None  # noqa: S101 - problems have errors
    return text + (
        f"\na run would stop in the settings stage with exit {int(first.exit_code)}, "
        "before server.conf is touched or anything is waited for"
    )


def plan(dry: DryRun, *, init: bool) -> str:
    """The dry-run plan: settings, config diff, migration decision, final argv."""
    ctx, role, config = dry.ctx, dry.role, dry.config
    toolkit = ctx.toolkit
    parts = [f"# pulpinit {role.name} --dry-run: nothing is changed, nothing is contacted", ""]
    parts += ["## settings", settings_table(ctx.settings), ""]
    parts += ["## checks", checks(ctx), ""]
    parts += [f"## {toolkit.config}", config.diff().rstrip("\n") or "no change", ""]
    parts += [
        "## wait",
        f"mongodb at {mongo_target(ctx.settings).endpoint}, broker at "
        f"{broker_target(ctx.settings).endpoint}; deadline {toolkit.wait_timeout:g} s",
        "",
    ]
    parts += ["## migrations", migration_decision(ctx, role.migration), ""]
    if role.argv:
        user = f"as {toolkit.user}" if running_as_root() else "as the current user (not root)"
        mode = "supervise as PID 1" if init or toolkit.init else "exec"
        parts += ["## hand-off", f"{mode} {user}, umask {toolkit.umask:04o}:", shlex.join(mask_argv(role.argv))]
    return REDACTOR("\n".join(parts))
