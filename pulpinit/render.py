"""Human-readable output: the settings table, the check-deps table and the dry-run plan.

Only display values are ever rendered (:attr:`pulpinit.settings.value.Value.display`),
so a password or URL credential cannot reach stdout from here; every value then goes through
the redactor as the last line of defence.  Keys, headings and column titles are pulpinit's own
vocabulary and are never masked (a secret equal to one of them would otherwise hide them).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pulpinit.knobs import LOCK_COLLECTION
from pulpinit.pipeline import Context, CraneDryRun, DryRun
from pulpinit.privileges import running_as_root
from pulpinit.redact import REDACTOR, mask_argv
from pulpinit.roles import Migration
from pulpinit.settings.preflight import Preflight
from pulpinit.settings.resolve import Settings

if TYPE_CHECKING:
    from pulpinit.wait.report import Report


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain left-aligned text table."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def settings_table(settings: Settings) -> str:
    """Every server.conf value and knob with its source; values and sources redacted, keys not."""
    data = settings.as_json()
    rows = [(key, item["value"], item["source"]) for key, item in data["settings"].items()]
    knobs = [(name, item["value"], item["source"]) for name, item in data["pulpinit"].items()]
    return (
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
                REDACTOR(c.endpoint),
                REDACTOR(report.source(c)),
                "up" if c.ok else "DOWN",
                f"{c.latency_ms:.0f} ms",
                REDACTOR(c.version or "-"),
                REDACTOR(str(data["error"] or "-")),
            )
        )
    text = table(("dependency", "endpoint", "source", "status", "latency", "version", "error"), rows)
    hints = [f"hint ({c.name}): {c.hint}" for c in report.checks if c.hint]
    hints += [
        f"note ({c.name}): not counted in the exit code: no role waits for it unless PULPINIT_WAIT_MESSAGING=1"
        for c in report.checks
        if not c.ok and c.name in report.uncounted
    ]
    hints += [f"warning ({c.name}): {w}" for c in report.checks for w in c.warnings]
    return "\n".join([text, *(["", *hints] if hints else [])])


def processes(report: Mapping[str, Any]) -> str:
    """The ``pulp_processes`` of ``check-deps``: who heartbeats in Pulp's ``workers`` collection."""
    if "error" in report:
        return f"pulp processes: unknown ({REDACTOR(report['error'])})"
    threshold = report["threshold_s"]
    rows = [
        (REDACTOR(beat["name"]), "-" if beat["age_s"] is None else f"{beat['age_s']:.1f} s ago", state)
        for state, key in (("live", "live"), (f"stale (none for {threshold:g} s)", "stale"))
        for beat in report[key]
    ]
    if not rows:
        return "pulp processes: none heartbeating (the workers collection is empty)"
    return table(("pulp process", "last heartbeat", "state"), rows)


def _fingerprint(ctx: Context) -> str:
    if ctx.fingerprint is not None:
        return f"fingerprint {ctx.fingerprint[0]} ({ctx.fingerprint[1]})"
    return "fingerprint UNKNOWN (it cannot be derived here: see ## checks)"


def migration_decision(ctx: Context, migration: Migration) -> str:
    toolkit = ctx.toolkit
    where = f"{ctx.settings.get('database.name')}.{LOCK_COLLECTION}"
    if migration is Migration.SKIP:
        return "skip: PULPINIT_MIGRATION_WAIT=false, this role neither migrates nor waits"
    fingerprint = _fingerprint(ctx)
    if migration is Migration.WAIT:
        return (
            f"wait: start once {where} records {fingerprint} as done; "
            f"exit 75 after {toolkit.migration_timeout:g} s without a live lease holder, "
            "or at once if it is recorded as failed (an interrupted one is waited through)"
        )
    quiet = (
        f"wait until no Pulp process heartbeated for {toolkit.quiet_seconds:g} s (PULPINIT_QUIET_SECONDS), "
        if toolkit.quiet_seconds > 0
        else "do not wait for a quiet database (PULPINIT_QUIET_SECONDS=0), "
    )
    backup = f"run {shlex.join(mask_argv(toolkit.pre_migrate))} (PULPINIT_PRE_MIGRATE), " if toolkit.pre_migrate else ""
    return (
        f"migrate: under the lease lock in {where}, unless {fingerprint} is recorded as done there: "
        f"{quiet}{backup}then run {toolkit.manage_db}; --dry-run connects to nothing, so the record is not read"
    )


def checks(ctx: Context) -> str:
    """The settings-stage checks of the role (:mod:`pulpinit.settings.preflight`) and what a run would do."""
    return preflight_rows(ctx.preflight)


def preflight_rows(preflight: Preflight | None) -> str:
    """The checks as a table, and the exit code a run would stop with."""
    if preflight is None:
        return "none"
    rows = [(check.status, check.name, REDACTOR(check.detail)) for check in preflight.checks]
    text = table(("status", "check", "result"), rows)
    problems = preflight.problems
    if not problems:
        return text + "\nall passed"
    first = problems[0].error
    assert first is not None  # noqa: S101 - problems have errors
    if problems[0].name in ("server.conf", "crane.conf"):
        return text + (
            f"\na run would stop in the configure stage with exit {int(first.exit_code)}, "
            f"before {problems[0].name} is written or anything is waited for"
        )
    return text + (
        f"\na run would stop in the settings stage with exit {int(first.exit_code)}, "
        "before server.conf is touched or anything is waited for"
    )


def hand_off(argv: Sequence[str], as_root: bool, user: str, umask: int, supervise: bool) -> list[str]:
    """The ``## hand-off`` section: how and as whom the role's process starts, and its argv."""
    mode = "supervise as PID 1" if supervise else "exec"
    if as_root:
        how = f"{mode} as root (httpd drops its own children to User apache), umask {umask:04o}:"
    else:
        who = f"as {user}" if running_as_root() else "as the current user (not root)"
        how = f"{mode} {who}, umask {umask:04o}:"
    return ["## hand-off", REDACTOR(how), REDACTOR(shlex.join(mask_argv(argv)))]


def admin_step(ctx: Context) -> list[str]:
    """The api role's steps after the migrations."""
    configured = ctx.settings.values.get("server.default_password")
    source = configured.source if configured is not None and configured.from_environment else None
    set_it = f"store PULP_ADMIN_PASSWORD ({source}) when it does not verify" if source else "warn while it is admin"
    login = ctx.settings.get("server.default_login") or "admin"
    return [
        "## after the migrations",
        REDACTOR(
            f"admin password: check the admin user's stored hash ({login} in "
            f"{ctx.settings.get('database.name')}.users) and {set_it}"
        ),
        REDACTOR(f"public key: link rsa_pub.key into {ctx.toolkit.static_dir} when it is missing"),
        "",
    ]


def crane_plan(dry: CraneDryRun, *, init: bool) -> str:
    """crane's dry-run plan: crane.conf's settings, the checks, the crane.conf diff, the final argv."""
    ctx = dry.ctx
    toolkit = ctx.toolkit
    parts = ["# pulpinit crane --dry-run: nothing is changed, nothing is contacted", ""]
    rows = [(key, value, REDACTOR(source)) for key, value, source in ctx.settings.rows()]
    parts += ["## settings", table(("crane.conf key", "value", "source"), rows), ""]
    parts += ["## checks", preflight_rows(ctx.preflight), ""]
    parts += [f"## {REDACTOR(ctx.settings.path)}", REDACTOR(dry.config.diff().rstrip("\n")) or "no change", ""]
    parts += ["## wait", "nothing: crane reads no database and no broker", ""]
    parts += ["## migrations", "none: crane reads the published metadata only", ""]
    parts += hand_off(ctx.role.argv, True, toolkit.user, toolkit.umask, init or toolkit.init)
    return "\n".join(parts)


def plan(dry: DryRun | CraneDryRun, *, init: bool) -> str:
    """The dry-run plan: settings, config diff, migration decision, final argv."""
    if isinstance(dry, CraneDryRun):
        return crane_plan(dry, init=init)
    ctx, role, config = dry.ctx, dry.role, dry.config
    toolkit = ctx.toolkit
    parts = [f"# pulpinit {role.name} --dry-run: nothing is changed, nothing is contacted", ""]
    parts += ["## settings", settings_table(ctx.settings), ""]
    parts += ["## checks", checks(ctx), ""]
    parts += [f"## {REDACTOR(toolkit.config)}", REDACTOR(config.diff().rstrip("\n")) or "no change", ""]
    ends = dry.endpoints
    agents = f", messaging at {ends['messaging']} (PULPINIT_WAIT_MESSAGING)" if "messaging" in ends else ""
    wait = f"mongodb at {ends['mongodb']}, broker at {ends['broker']}{agents}; deadline {toolkit.wait_timeout:g} s"
    parts += ["## wait", REDACTOR(wait), ""]
    parts += ["## migrations", REDACTOR(migration_decision(ctx, role.migration)), ""]
    if role.name == "api":
        parts += admin_step(ctx)
    if role.argv:
        parts += hand_off(role.argv, role.as_root, toolkit.user, toolkit.umask, init or toolkit.init)
    return "\n".join(parts)
