"""Stand-ins for Pulp's programs: ``pulp-manage-db`` and ``celery``.

Real executables (a shebang to this Python), written into a directory of the
caller's, so pulpinit runs, streams, signals and execs them exactly as it
would the real ones.

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
  run as root (exit 64), as the real one does.
* celery: prints its argv as JSON and its uid/gid, then waits; SIGTERM makes
  it print ``warm shutdown`` and exit 0, like Celery's warm shutdown.
* httpd: prints its argv as JSON, its uid/gid/groups, which of the files named in
  ``STANDIN_HTTPD_FILES`` (``os.pathsep``-separated) it can open for reading, and the names of
  the ``PULP*``/``CRANE*`` variables it got; then waits.  SIGWINCH (httpd's graceful stop) or
  SIGTERM makes it print the signal and exit 0.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

_MANAGE_DB = r"""#!{python}
import fcntl, os, signal, sys, time
runs = os.environ.get("STANDIN_RUNS") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs.log")
def record(text):
    with open(runs, "a") as f:
        f.write(f"{{os.getpid()}} {{text}} {{time.monotonic():.6f}}\n")
def stop(signum, frame):
    record("end 143")
    os._exit(143)
if os.geteuid() == 0 and os.environ.get("STANDIN_ALLOW_ROOT") != "1":
    print("This script may not be run as root. Please run as apache.", flush=True)
    sys.exit(64)
signal.signal(signal.SIGTERM, stop)
lock = open(os.path.splitext(runs)[0] + ".lock", "a")
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    record("overlap")
record(f"{{os.getuid()}} start")
print("Loading content types.", flush=True)
print("Applying pulp.server.db.migrations version 28", flush=True)
time.sleep(float(os.environ.get("STANDIN_SECONDS", "0.2")))
code = int(os.environ.get("STANDIN_EXIT", "0"))
print("Database migrations complete." if code == 0 else "Database migrations failed.", flush=True)
record(f"end {{code}}")
sys.exit(code)
"""

_CELERY = r"""#!{python}
import json, os, signal, sys, time
def stop(signum, frame):
    print(f"celery: {{signal.Signals(signum).name}} received: warm shutdown", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
print("celery argv: " + json.dumps(sys.argv), flush=True)
print(f"celery uid={{os.getuid()}} gid={{os.getgid()}} pid={{os.getpid()}} umask={{os.umask(0o22):04o}}", flush=True)
if os.environ.get("STANDIN_EXIT_AT_ONCE"):
    sys.exit(int(os.environ["STANDIN_EXIT_AT_ONCE"]))
while True:
    time.sleep(3600)
"""

_HTTPD = r"""#!{python}
import json, os, signal, sys, time
def stop(signum, frame):
    print(f"httpd: {{signal.Signals(signum).name}} received: stopping", flush=True)
    sys.exit(0)
for name in ("SIGWINCH", "SIGTERM", "SIGINT"):
    signal.signal(getattr(signal, name), stop)
print("httpd argv: " + json.dumps(sys.argv), flush=True)
ids = f"uid={{os.getuid()}} gid={{os.getgid()}} groups={{sorted(os.getgroups())}} pid={{os.getpid()}}"
print("httpd " + ids, flush=True)
readable = {{}}
for path in filter(None, os.environ.get("STANDIN_HTTPD_FILES", "").split(os.pathsep)):
    try:
        with open(path, "rb"):
            readable[path] = True
    except OSError:
        readable[path] = False
print("httpd can read: " + json.dumps(readable), flush=True)
print("httpd environ: " + json.dumps(sorted(k for k in os.environ if k.startswith(("PULP", "CRANE")))), flush=True)
if os.environ.get("STANDIN_EXIT_AT_ONCE"):
    sys.exit(int(os.environ["STANDIN_EXIT_AT_ONCE"]))
while True:
    time.sleep(3600)
"""


def interpreter() -> str:
    """A Python every user can run: the system's when present (a venv under /root is not)."""
    system = "/usr/bin/python3"
    return system if os.access(system, os.X_OK) else sys.executable


def _write(directory: Path, name: str, template: str) -> Path:
    path = directory / name
    path.write_text(template.format(python=interpreter()))
    path.chmod(0o755)
    return path


def write_manage_db(directory: str | os.PathLike[str]) -> Path:
    """Write the pulp-manage-db stand-in into ``directory``; returns its path."""
    return _write(Path(directory), "pulp-manage-db", _MANAGE_DB)


def write_celery(directory: str | os.PathLike[str]) -> Path:
    """Write the celery stand-in into ``directory``; returns its path."""
    return _write(Path(directory), "celery", _CELERY)


def write_httpd(directory: str | os.PathLike[str]) -> Path:
    """Write the httpd stand-in into ``directory``; returns its path."""
    return _write(Path(directory), "httpd", _HTTPD)


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
    """The runs recorded in ``directory``, in the order they started."""
    starts: dict[int, tuple[int, float]] = {}
    ends: dict[int, tuple[int, float]] = {}
    overlaps: set[int] = set()
    for line in runs(directory):
        words = line.split()
        pid = int(words[0])
        if words[1] == "overlap":
            overlaps.add(pid)
        elif words[1] == "end":
            ends[pid] = (int(words[2]), float(words[3]))
        elif words[2] == "start":
            starts[pid] = (int(words[1]), float(words[3]))
    return sorted(
        (
            Run(pid, uid, t, ends.get(pid, (None, None))[1], ends.get(pid, (None, None))[0], pid in overlaps)
            for pid, (uid, t) in starts.items()
        ),
        key=lambda run: run.started,
    )
