"""The layout is the data flow: the package's import graph, read with ``ast`` (nothing is imported).

Every import counts — at module level, inside functions, under ``TYPE_CHECKING`` — so that no
cycle and no upward dependency can hide behind a lazy import.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pulpinit"

#: Shared leaves: every stage may use them; they use only each other.
LEAVES = {"errors", "knobs", "log", "parse", "redact", "signals", "privileges", "regularfile", "spawn", "targets"}
#: The stages, in the order the pipeline runs them: each imports only earlier ones.
STAGES = ("settings", "config", "wait", "migrate", "handoff")
#: The homes of one role's own steps: each imports leaves, pki, the stages and roles; only the
#: pipeline imports one, inside the function that enters it, so no other role loads it.
HOMES = ("api", "crane")
#: Above the stages, in order: each imports only earlier ones (and anything below).
TOP = ("roles", "pipeline", "render", "commands", "cli", "__main__")
#: What the resident supervisor may import of pulpinit (all standard library only).
SUPERVISOR_MAY_IMPORT = {"errors", "privileges", "spawn", "knobs"}


#: Every file of the package and its room (a shared leaf, a stage, or a module above them), by hand:
#: a new file is placed here, and a file this table does not name fails the suite.
ROOMS: dict[str, tuple[str, ...]] = {
    "pulpinit": ("__init__.py",),
    "errors": ("errors.py",),
    "knobs": ("knobs.py",),
    "log": ("log.py",),
    "parse": ("parse.py",),
    "privileges": ("privileges.py",),
    "redact": ("redact.py",),
    "regularfile": ("regularfile.py",),
    "signals": ("signals.py",),
    "spawn": ("spawn.py",),
    "targets": ("targets.py",),
    "pki": (
        "pki/__init__.py",
        "pki/check.py",
        "pki/command.py",
        "pki/generate.py",
    ),
    "settings": (
        "settings/__init__.py",
        "settings/brokerurl.py",
        "settings/checks.py",
        "settings/childenv.py",
        "settings/confvars.py",
        "settings/cranevars.py",
        "settings/discovery.py",
        "settings/fingerprint.py",
        "settings/goferurl.py",
        "settings/preflight.py",
        "settings/resolve.py",
        "settings/secretfile.py",
        "settings/toolkit.py",
        "settings/value.py",
    ),
    "config": (
        "config/__init__.py",
        "config/atomicfile.py",
        "config/edits.py",
        "config/inivalue.py",
        "config/lens.py",
        "config/sections.py",
        "config/serverconf.py",
    ),
    "wait": (
        "wait/__init__.py",
        "wait/amqp010.py",
        "wait/amqp010frames.py",
        "wait/amqp091.py",
        "wait/amqp10.py",
        "wait/armed.py",
        "wait/broker_probe.py",
        "wait/documents.py",
        "wait/messaging_probe.py",
        "wait/mongo_client.py",
        "wait/mongo_probe.py",
        "wait/mongo_wire.py",
        "wait/net.py",
        "wait/report.py",
        "wait/tls.py",
        "wait/waiter.py",
        "wait/wording.py",
        "wait/workers.py",
    ),
    "migrate": (
        "migrate/__init__.py",
        "migrate/holding.py",
        "migrate/keeper.py",
        "migrate/lease.py",
        "migrate/migrator.py",
        "migrate/policy.py",
        "migrate/quiet.py",
        "migrate/retry.py",
        "migrate/runner.py",
        "migrate/state.py",
        "migrate/watchdog.py",
    ),
    "handoff": (
        "handoff/__init__.py",
        "handoff/exec.py",
    ),
    "api": (
        "api/__init__.py",
        "api/admin.py",
        "api/publish.py",
    ),
    "crane": (
        "crane/__init__.py",
        "crane/conf.py",
        "crane/settings.py",
        "crane/stages.py",
    ),
    "supervise": ("supervise.py",),
    "roles": ("roles.py",),
    "pipeline": ("pipeline.py",),
    "render": ("render.py",),
    "commands": ("commands.py",),
    "cli": ("cli.py",),
    "__main__": ("__main__.py",),
    "testing": (
        "testing/__init__.py",
        "testing/amqp010server.py",
        "testing/demo.py",
        "testing/failpoints.py",
        "testing/fakeamqp.py",
        "testing/fakemongo.py",
        "testing/faults.py",
        "testing/keys.py",
        "testing/mongoauth.py",
        "testing/mongocmds.py",
        "testing/plugin.py",
        "testing/pulpstandin.py",
        "testing/runner.py",
        "testing/sandbox.py",
        "testing/scram.py",
        "testing/serving.py",
        "testing/standins.py",
        "testing/tryit.py",
        "testing/wire.py",
    ),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> Iterator[tuple[str, int]]:
    """``(module, line)`` for every pulpinit module ``name`` imports, anywhere in it."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            targets = [
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target == "pulpinit" or target.startswith("pulpinit."):
                yield target, node.lineno


def graph() -> dict[str, set[str]]:
    return {name: {target for target, _ in imports(name) if target != name} for name in MODULES}


def short(name: str) -> str:
    return name.removeprefix("pulpinit.").removeprefix("pulpinit")


#: The room of every module, by its dotted name: ``pulpinit.wait.net`` → ``wait``, ``pulpinit.log`` → ``log``.
ROOM_OF = {module_name(PACKAGE / file): room for room, files in ROOMS.items() for file in files}


def component(name: str) -> str:
    """The room of ``name`` in :data:`ROOMS`."""
    return ROOM_OF[name]


def third_party_imports(name: str) -> set[str]:
    """Top-level names of the non-pulpinit, non-stdlib modules ``name`` imports at run time."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return {top for top in found if top != "pulpinit" and top not in sys.stdlib_module_names and top != "__future__"}


def test_every_module_has_a_place() -> None:
    """The table names every file of the package, and only those; every room is a known one."""
    assert set(ROOM_OF) == set(MODULES), {
        "not in the table": set(MODULES) - set(ROOM_OF),
        "gone": set(ROOM_OF) - set(MODULES),
    }
    known = LEAVES | set(STAGES) | set(HOMES) | set(TOP) | {"pulpinit", "supervise", "pki", "testing"}
    assert set(ROOMS) <= known, set(ROOMS) - known


def test_a_room_is_its_path() -> None:
    """A newcomer can name the room of every file from its path: a package's files are in its room."""
    wrong = [
        file
        for room, files in ROOMS.items()
        for file in files
        if room != "pulpinit" and file.split("/")[0].removesuffix(".py") != room
    ]
    assert not wrong, wrong


def test_no_relative_import() -> None:
    """Every import names its module in full (``from pulpinit.wait import net``): the graph reads them all."""
    wrong = [
        f"{short(name)}:{node.lineno}"
        for name, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert not wrong, wrong


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " → ".join(short(n) for n in cycle))
            if target in edges and target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("name", [name for name in MODULES if component(name) not in ("testing",)])
def test_imports_go_down_the_pipeline_only(name: str) -> None:
    """Leaves import leaves; a stage imports leaves, pki and earlier stages; a role's home imports leaves, pki,
    the stages and roles; the top imports downwards."""
    mine = component(name)
    wrong = []
    for target, line in imports(name):
        theirs = component(target)
        if theirs in (mine, "pulpinit"):
            continue
        if theirs == "testing":
            allowed = False  # production code never imports the fakes
        elif mine in LEAVES or mine == "pki":
            allowed = theirs in LEAVES
        elif mine in STAGES:
            allowed = (
                theirs in LEAVES or theirs == "pki" or (theirs in STAGES and STAGES.index(theirs) < STAGES.index(mine))
            )
        elif mine in HOMES:
            allowed = theirs in LEAVES or theirs in STAGES or theirs in ("pki", "roles")
        elif mine == "supervise":
            allowed = short(target) in SUPERVISOR_MAY_IMPORT
        elif mine in TOP:
            allowed = theirs not in TOP or TOP.index(theirs) < TOP.index(mine)
        else:
            allowed = True
        if not allowed:
            wrong.append(f"{short(name)}:{line} imports {short(target)}")
    assert not wrong, wrong


@pytest.mark.parametrize("program", ["pulpinit.supervise", "pulpinit.migrate.watchdog"])
def test_the_resident_programs_and_what_they_import_are_standard_library_only(program: str) -> None:
    """The resident supervisor and the migration watchdog must stay small: no third-party module."""
    seen, todo = set(), [program]
    while todo:
        name = todo.pop()
        if name in seen or name not in MODULES:
            continue
        seen.add(name)
        assert not third_party_imports(name), (name, third_party_imports(name))
        todo += [target for target, _ in imports(name)]
    assert {short(name) for name in seen} - {short(program)} <= SUPERVISOR_MAY_IMPORT | {"", "settings", "migrate"}


def test_stage_packages_import_nothing_on_their_own() -> None:
    """Importing ``pulpinit.knobs`` (the supervisor does) loads nothing but its package's docstring."""
    for stage in (*STAGES, *HOMES):
        assert not list(imports(f"pulpinit.{stage}")), stage


def _run_time_imports(name: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """pulpinit modules ``name`` imports at run time: ``(at module level, inside functions)``.

    Imports under ``if TYPE_CHECKING:`` are left out: they are never executed.
    """
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    skipped: set[int] = set()
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            skipped |= {id(child) for child in ast.walk(node)}
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside |= {id(child) for child in ast.walk(node)}
    top: list[tuple[str, int]] = []
    lazy: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif node.module and not node.level:
            targets = [
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                for alias in node.names
            ]
        else:
            continue
        found = [(t, node.lineno) for t in targets if t == "pulpinit" or t.startswith("pulpinit.")]
        (lazy if id(node) in inside else top).extend(found)
    return top, lazy


#: The stages and homes a command may not need: the pipeline imports them where it enters them.
ENTERED = ("wait", "migrate", "handoff", *HOMES)


def test_a_stage_is_imported_where_the_pipeline_enters_it() -> None:
    """Only the pipeline imports a stage inside a function, and the later stages only there.

    The settings and configure stages, which every command runs, load with the pipeline; the wait,
    migrate and hand-off stages, and the homes of the ``api`` and ``crane`` roles, load in the
    pipeline's function that enters them, so ``configure`` never loads them (nor the key checks of
    ``pki``, which only the roles make).  No other module reaches into a stage from inside a
    function (inside its own stage a module may load a part only the rarer path needs: the
    migrator's holding of the lock), nothing above the stages imports one of the later stages at
    run time, and nothing but the pipeline (and the home itself) imports a home at run time.
    """
    wrong = []
    for name in MODULES:
        if component(name) == "testing":
            continue
        top, lazy = _run_time_imports(name)
        if short(name) != "pipeline":
            wrong += [
                f"{short(name)}:{line} imports {short(t)} in a function"
                for t, line in lazy
                if component(t) in STAGES and component(t) != component(name)
            ]
            wrong += [
                f"{short(name)}:{line} imports the home {short(t)}"
                for t, line in top + lazy
                if component(t) in HOMES and component(t) != component(name)
            ]
        if component(name) in TOP:
            wrong += [f"{short(name)}:{line} imports {short(t)}" for t, line in top if component(t) in ENTERED]
        if short(name) == "pipeline":
            wrong += [
                f"pipeline:{line} imports {short(t)} in a function"
                for t, line in lazy
                if component(t) not in (*ENTERED, "pki") and short(t) != "targets"
            ]
    assert not wrong, wrong


def test_no_test_module_imports_another() -> None:
    """Shared fixtures live in conftest.py and pulpinit.testing.plugin, shared functions in tests/helpers."""
    tests = Path(__file__).resolve().parent
    wrong = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            wrong += [
                f"{path.name} imports {name}" for name in names if name.split(".")[-1].startswith(("test_", "conftest"))
            ]
    assert not wrong, wrong


def test_one_module_starts_long_lived_children() -> None:
    """Only :mod:`pulpinit.spawn` forks and sets a parent-death signal; the others start children through it."""
    found = {
        short(name)
        for name, path in MODULES.items()
        if component(name) != "testing"
        and any(word in path.read_text(encoding="utf-8") for word in ("os.fork(", "_PR_SET_PDEATHSIG =", "preexec_fn"))
    }
    assert found == {"spawn"}, found
