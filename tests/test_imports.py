"""Imports follow the command: what each command loads, pulpinit's modules and the heavy libraries.

Every command runs in a fresh interpreter as the console script runs it (tests/helpers/
command_modules.py); its ``sys.modules`` is compared with the set pinned here, so a module that
creeps onto a start path fails this test rather than a benchmark.  ``configure`` and
``settings`` load neither the wait nor the migrate stage; ``check-deps`` loads its probes and the
census of Pulp's processes, not the migrate stage; no command of a warm start loads tenacity
(only a wait that really waits does), proton (only an AMQP 1.0 broker needs it), cryptography
(only the key checks and ``pki init``) or asyncio (structlog imports it, pulpinit never uses it).
The homes of one role's own steps (``pulpinit.crane``, ``pulpinit.api``) load only for that role.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pulpinit.testing.sandbox import Sandbox

HELPER = Path(__file__).parent / "helpers" / "command_modules.py"
#: The third-party (and costly standard-library) modules whose presence is pinned.
WATCHED = (
    "asyncio",
    "augeas",
    "bson",
    "cryptography",
    "dns",
    "proton",
    "pymongo",
    "shutil",
    "structlog",
    "tenacity",
)

#: What every command loads: the entry point, the CLI and the settings and configure stages.
START = {
    "",
    "__main__",
    "cli",
    "commands",
    "config",
    "config.atomicfile",
    "config.edits",
    "config.inivalue",
    "config.lens",
    "config.sections",
    "config.serverconf",
    "errors",
    "knobs",
    "log",
    "parse",
    "pipeline",
    "privileges",
    "redact",
    "regularfile",
    "roles",
    "settings",
    "settings.brokerurl",
    "settings.checks",
    "settings.childenv",
    "settings.confvars",
    "settings.cranevars",
    "settings.discovery",
    "settings.fingerprint",
    "settings.goferurl",
    "settings.preflight",
    "settings.resolve",
    "settings.secretfile",
    "settings.toolkit",
    "settings.value",
    "signals",
}
#: The probes of the wait stage (``check-deps`` and every role that waits).
PROBES = {
    "wait",
    "wait.amqp010",
    "wait.amqp010frames",
    "wait.amqp091",
    "wait.amqp10",
    "wait.armed",
    "wait.broker_probe",
    "wait.messaging_probe",
    "wait.mongo_client",
    "wait.mongo_probe",
    "wait.mongo_wire",
    "targets",
    "wait.net",
    "wait.tls",
    "wait.waiter",
    "wait.wording",
}
#: The migrate stage as a warm start or a waiting role enters it: the migration state, not the
#: holding of the lock (the quiet wait, the lease keeper, the child), which only a run loads.
MIGRATE = {
    "migrate",
    "migrate.lease",
    "migrate.migrator",
    "migrate.policy",
    "migrate.retry",
    "migrate.state",
    "wait.documents",
}

EXPECTED = {
    "settings": (START | {"render"}, {"augeas", "structlog"}),
    "configure": (START, {"augeas", "structlog"}),
    "check-deps": (
        START | PROBES | {"render", "wait.documents", "wait.report", "wait.workers"},
        {"augeas", "bson", "pymongo", "structlog"},
    ),
    "run": (
        START | PROBES | MIGRATE | {"handoff", "handoff.exec", "pki", "pki.check", "spawn"},
        {"augeas", "bson", "pymongo", "structlog"},
    ),
}
ARGV = {
    "settings": ["settings"],
    "configure": ["configure"],
    "check-deps": ["check-deps"],
    "run": ["run", "--", "true"],
}


def loaded(sandbox: Sandbox, argv: list[str]) -> tuple[set[str], set[str]]:
    """pulpinit's modules (without the ``pulpinit.`` prefix) and the watched ones that ``argv`` loaded."""
    out = sandbox.workdir.root / "modules.txt"
    result = sandbox.run_script([sys.executable, str(HELPER), str(out), *argv], env={"PULPINIT_LOG_LEVEL": "warning"})
    assert result.exit_code == 0, result.stderr
    names = out.read_text().split()
    mine = {name.removeprefix("pulpinit").removeprefix(".") for name in names if name.split(".")[0] == "pulpinit"}
    return mine, {name for name in names if name in WATCHED}


@pytest.mark.parametrize("command", sorted(EXPECTED))
@pytest.mark.slow  # real processes: seconds
def test_each_command_loads_only_what_it_uses(pulpinit_sandbox: Sandbox, command: str) -> None:
    if command == "run":  # a warm start: the migrations are recorded as done, server.conf is written
        assert pulpinit_sandbox.run("migrate").exit_code == 0
    mine, heavy = loaded(pulpinit_sandbox, ARGV[command])
    pulpinit_modules, libraries = EXPECTED[command]
    assert sorted(mine - pulpinit_modules) == [], "loaded, but not pinned"
    assert sorted(pulpinit_modules - mine) == [], "pinned, but not loaded"
    assert heavy == libraries


DEFERRED = """
import sys
import pulpinit.log
import structlog
assert "asyncio.events" not in sys.modules, "imported by structlog's package"
import asyncio
assert "asyncio.events" not in sys.modules, "imported by the import statement"
from asyncio import Queue
import asyncio.subprocess


async def logged() -> str:
    await structlog.get_logger().ainfo("from a coroutine")  # structlog's own use of asyncio
    await asyncio.sleep(0)
    return "done"


print(asyncio.run(logged()), Queue.__module__, asyncio.subprocess.PIPE, sys.modules["asyncio"].__spec__.name)
"""


def test_asyncio_is_imported_on_first_use_and_then_works_as_itself() -> None:
    """The stand-in ``pulpinit.log`` puts in asyncio's place costs nothing until used, then is asyncio."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", DEFERRED], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    *logged, last = done.stdout.splitlines()
    assert last.split() == ["done", "asyncio.queues", "-1", "asyncio"]
    assert len(logged) == 1 and "from a coroutine" in logged[0]  # structlog's default: a line on stdout
