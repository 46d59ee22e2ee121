"""Stand-ins for Pulp's programs: ``pulp-manage-db``, ``celery``, ``httpd``, and a backup command.

Real executables (a shebang to the system's Python), written into a directory of the
caller's, so pulpinit runs, streams, signals and execs them exactly as it
would the real ones.  ``celery``, ``pulp-manage-db`` and ``httpd`` are one program,
:mod:`pulpinit.testing.pulpstandin` (its docstring is their full contract):

* manage-db: appends one line ``<pid> <uid> start <t>`` / ``<pid> end <code> <t>``
  (``t``: ``time.monotonic()``, the machine-wide CLOCK_MONOTONIC, so times of
  different runs compare) to the file named by ``STANDIN_RUNS`` (default
  ``runs.log`` beside it), prints a few lines like Pulp's, sleeps
  ``STANDIN_SECONDS`` (default 0.2) and exits with ``STANDIN_EXIT`` (default
  0); SIGTERM ends it early with 143, recorded as ``end 143``.  While it runs it
  holds an exclusive ``flock`` on ``runs.lock`` beside the runs file; when
  another run still holds it (two runs at once, however short) it records
  ``<pid> overlap <t>`` — the kernel drops the lock when a run dies, even by
  SIGKILL, so a killed run counts exactly as long as it lived.  It refuses to
  run as root (exit 64), as the real one does.  With ``STANDIN_MIGRATION_WAIT``
  it applies Pulp >= 2.12's refusal rule to the ``workers`` collection, with
  ``STANDIN_SCHEMA`` it keeps a schema version in ``migration_trackers`` (65 on a
  newer database).
* celery: prints its argv as JSON and its uid/gid, then waits; SIGTERM makes
  it print ``warm shutdown`` and exit 0, like Celery's warm shutdown.  With
  ``STANDIN_HEARTBEAT=1`` it heartbeats into ``workers`` as Pulp's processes do and
  deletes its document on the warm shutdown; ``STANDIN_CELERY_RUNS`` records its life.
* pre-migrate: records ``<pid> <uid> backup <t>`` in ``STANDIN_PRE_MIGRATE_RUNS`` and
  exits ``STANDIN_PRE_MIGRATE_EXIT`` (default 0).
* httpd: prints its argv as JSON, its uid/gid/groups, which of the files named in
  ``STANDIN_HTTPD_FILES`` (``os.pathsep``-separated) it can open for reading, and the names of
  the ``PULP*``/``CRANE*`` variables it got; then waits.  SIGWINCH (httpd's graceful stop) or
  SIGTERM makes it print the signal and exit 0.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

#: The backup stand-in for ``PULPINIT_PRE_MIGRATE`` (see the module docstring).
_PRE_MIGRATE = r"""#!{python}
import os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
runs = os.environ.get("STANDIN_PRE_MIGRATE_RUNS") or os.path.join(here, "pre-migrate.log")
with open(runs, "a") as f:
    f.write(f"{{os.getpid()}} {{os.getuid()}} backup {{time.monotonic():.6f}}\n")
print("dumping pulp_database to /var/lib/pulp/backup", flush=True)
sys.exit(int(os.environ.get("STANDIN_PRE_MIGRATE_EXIT", "0")))
"""

_PROGRAM = Path(__file__).with_name("pulpstandin.py")
#: The document of ``migration_trackers`` where the manage-db stand-in keeps its schema version.
TRACKER_ID = "pulp.server.db.migrations"


def interpreter() -> str:
    """A Python every user can run: the system's when present (a venv under /root is not)."""
    system = "/usr/bin/python3"
    return system if os.access(system, os.X_OK) else sys.executable


def libraries(directory: str | os.PathLike[str]) -> Path:
    """A copy of pymongo and bson in ``directory``/lib, readable by every user; returns its path.

    The heartbeating stand-ins run as the unprivileged user with the system's Python, which has
    no pymongo, and the project's venv may sit below a private directory (a CI clone under
    /root): they import this copy of the venv's own packages instead.
    """
    import bson
    import pymongo

    lib = Path(directory) / "lib"
    for package in (pymongo, bson):
        source = Path(package.__file__ or "").parent
        target = lib / source.name
        if not target.exists():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    # compiled now, by the interpreter that will import it: nobody may not write __pycache__ there
    subprocess.run([interpreter(), "-m", "compileall", "-q", str(lib)], check=True, capture_output=True)
    for path in (lib, *lib.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return lib


def _write_program(directory: Path, name: str, libs: Path | None) -> Path:
    source = _PROGRAM.read_text()
    marker = "LIBS: list[str] = []"
    assert marker in source  # noqa: S101 - the writer and the program are kept together
    source = source.replace(marker, f"LIBS: list[str] = {[str(libs)] if libs else []!r}", 1)
    path = directory / name
    path.write_text(f"#!{interpreter()}\n{source}")
    path.chmod(0o755)
    return path


def write_manage_db(directory: str | os.PathLike[str], libs: Path | None = None) -> Path:
    """Write the pulp-manage-db stand-in into ``directory``; returns its path.

    ``libs`` (from :func:`libraries`) is needed for ``STANDIN_MIGRATION_WAIT`` and
    ``STANDIN_SCHEMA``, which read Pulp's database.
    """
    return _write_program(Path(directory), "pulp-manage-db", libs)


def write_celery(directory: str | os.PathLike[str], libs: Path | None = None) -> Path:
    """Write the celery stand-in into ``directory``; returns its path (``libs``: for heartbeats)."""
    return _write_program(Path(directory), "celery", libs)


def write_pre_migrate(directory: str | os.PathLike[str]) -> Path:
    """Write the backup stand-in (for ``PULPINIT_PRE_MIGRATE``) into ``directory``; returns its path."""
    path = Path(directory) / "pre-migrate"
    path.write_text(_PRE_MIGRATE.format(python=interpreter()))
    path.chmod(0o755)
    return path


def write_httpd(directory: str | os.PathLike[str]) -> Path:
    """Write the httpd stand-in into ``directory``; returns its path."""
    return _write_program(Path(directory), "httpd", None)


def runs(directory: str | os.PathLike[str]) -> list[str]:
    """The lines the manage-db stand-in recorded (default runs file)."""
    path = Path(directory) / "runs.log"
    return path.read_text().splitlines() if path.exists() else []


@dataclass(frozen=True)
class Run:
    """One run of the manage-db stand-in, from its runs file."""

    pid: int
    uid: int
    started: float  # time.monotonic() of the machine
    ended: float | None  # None: still running, or killed (SIGKILL leaves no line)
    code: int | None
    overlapped: bool  # it found another run holding the lock when it started


def parsed_runs(directory: str | os.PathLike[str]) -> list[Run]:
    """The runs recorded in ``directory`` (its default runs file), in the order they started."""
    return parsed_runs_file(Path(directory) / "runs.log")


def _lines(path: str | os.PathLike[str]) -> list[list[str]]:
    return [line.split() for line in Path(path).read_text().splitlines()] if Path(path).exists() else []


def parsed_runs_file(path: str | os.PathLike[str]) -> list[Run]:
    """The runs recorded in the runs file ``path`` (``STANDIN_RUNS``), in the order they started.

    Read in order: runs in different PID namespaces may share a pid, so an ``end`` belongs to the
    latest unfinished run of its pid, and an ``overlap`` to the next run of its pid that starts.
    """
    runs: list[Run] = []
    open_runs: dict[int, int] = {}  # pid → index in runs of its unfinished run
    overlapping: set[int] = set()
    for words in _lines(path):
        pid = int(words[0])
        if words[1] == "overlap":
            overlapping.add(pid)
        elif words[1] == "end" and pid in open_runs:
            index = open_runs.pop(pid)
            runs[index] = replace(runs[index], ended=float(words[3]), code=int(words[2]))
        elif len(words) == 4 and words[2] == "start":
            open_runs[pid] = len(runs)
            runs.append(Run(pid, int(words[1]), float(words[3]), None, None, pid in overlapping))
            overlapping.discard(pid)
    return sorted(runs, key=lambda run: run.started)


@dataclass(frozen=True)
class CeleryRun:
    """One life of the celery stand-in, from a ``STANDIN_CELERY_RUNS`` file."""

    pid: int
    name: str  # the process name in ``workers`` (``scheduler@host``, ``reserved_resource_worker-N@host``)
    version: str  # STANDIN_VERSION
    started: float  # time.monotonic() of the machine
    ended: float | None  # None: still running, or killed (SIGKILL leaves no line)


def celery_runs(path: str | os.PathLike[str]) -> list[CeleryRun]:
    """The lives recorded in ``path``, in the order they started (an ``end`` belongs to the latest
    unfinished life of its pid and name: pids repeat across PID namespaces)."""
    lives: list[CeleryRun] = []
    open_lives: dict[tuple[int, str], int] = {}
    for words in _lines(path):
        key = (int(words[0]), words[2])
        if words[1] == "start":
            open_lives[key] = len(lives)
            lives.append(CeleryRun(key[0], words[2], words[3], float(words[4]), None))
        elif words[1] == "end" and key in open_lives:
            index = open_lives.pop(key)
            lives[index] = replace(lives[index], ended=float(words[3]))
    return lives


def pre_migrate_runs(path: str | os.PathLike[str]) -> list[tuple[int, int, float]]:
    """``(pid, uid, t)`` of every run of the backup stand-in recorded in ``path``."""
    return [(int(w[0]), int(w[1]), float(w[3])) for w in _lines(path)]


def schema_version(uri: str, database: str) -> int | None:
    """The schema version the manage-db stand-in (``STANDIN_SCHEMA``) recorded in ``database``."""
    import pymongo

    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000, directConnection=True) as client:
        tracker: dict[str, Any] = client[database]["migration_trackers"].find_one({"_id": TRACKER_ID}) or {}
    version = tracker.get("version")
    return int(version) if version is not None else None
