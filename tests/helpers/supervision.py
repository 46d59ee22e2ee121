"""Drive the real supervisor as a subprocess: read its child's output, find its PID, read its logs.

``Supervised`` starts ``python -m pulpinit.supervise …`` either plainly (the
supervisor becomes a child subreaper) or as PID 1 of a new PID namespace via
``unshare --pid --fork --mount-proc``.  In the namespace case the process to
signal is the namespace's PID 1 seen from the host — the child of ``unshare`` —
never ``unshare`` itself.  Output is read by threads into queues, so tests
poll for lines with a deadline instead of sleeping.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from helpers.processes import Spawned, children, first_child

HELPERS = Path(__file__).resolve().parent
REPO = HELPERS.parent.parent


def _public_tree() -> Path:
    """A world-readable copy of the helper scripts and the pulpinit package.

    Children that run as an unprivileged user (``nobody``, an arbitrary uid) cannot read a
    checkout that lives below a private directory (a CI clone in ``mktemp -d``, ``/root``).
    """
    root = Path(tempfile.mkdtemp(prefix="pulpinit-public-"))
    for name in ("print_signals.py", "orphans.py", "resident_modules.py"):
        shutil.copy(HELPERS / name, root / name)
    shutil.copytree(REPO / "pulpinit", root / "pulpinit", ignore=shutil.ignore_patterns("__pycache__"))
    for path in (root, *root.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    atexit.register(shutil.rmtree, root, True)
    return root


PUBLIC = _public_tree()
PRINT_SIGNALS = str(PUBLIC / "print_signals.py")
ORPHANS = str(PUBLIC / "orphans.py")
PYTHON = sys.executable
# The venv's interpreter lives under /root (mode 700): a dropped user runs the system one.
SYSTEM_PYTHON = "/usr/bin/python3"
#: ``python -c BLOCKED_THEN_EXEC [pending] CMD...``: block the supervisor's signals as pulpinit does
#: before it execs the supervisor (with ``pending``: and SIGTERM itself meanwhile), then exec it.
BLOCKED_THEN_EXEC = (
    "import os, signal, sys\n"
    "from pulpinit.knobs import FORWARDED\n"
    "from pulpinit.signals import block_for_handoff\n"
    "block_for_handoff(FORWARDED)\n"  # what pulpinit does before it execs the supervisor
    "if sys.argv[1] == 'pending':\n"
    "    os.kill(os.getpid(), signal.SIGTERM)\n"  # a docker stop during the exec: pending, not lost
    "os.execv(sys.executable, [sys.executable, '-m', 'pulpinit.supervise', '--', *sys.argv[2:]])\n"
)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for {pid}")


class Supervised(Spawned):
    """One supervisor run; use as a context manager (kills everything on exit)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        options: Sequence[str] = (),
        pid1: bool = False,
        python_options: Sequence[str] = (),
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> None:
        argv = [PYTHON, *python_options, "-m", "pulpinit.supervise", *options, "--", *command]
        if pid1:
            argv = ["unshare", "--pid", "--fork", "--mount-proc", *argv]
        self.pid1 = pid1
        super().__init__(argv, env=env, stdin=stdin, session=True)

    @property
    def stdout(self) -> list[str]:
        return self.out

    @property
    def stderr(self) -> list[str]:
        return self.err

    def expect(self, wanted: str, timeout: float = 15) -> str:  # type: ignore[override]
        """Wait for the next stdout line starting with *wanted*; return it (earlier lines are kept)."""
        return super().expect(wanted, prefix=True, timeout=timeout)

    @property
    def supervisor_pid(self) -> int:
        """The host PID of the supervisor (the namespace's PID 1 when ``pid1``)."""
        if not self.pid1:
            return self.proc.pid
        return first_child(self.proc.pid)

    def child(self, command: str, timeout: float = 10) -> int:
        """The supervised child's PID, once it runs ``command`` (its exec is done)."""
        supervisor = self.supervisor_pid
        deadline = time.monotonic() + timeout
        while True:
            found = children(supervisor)
            if found and _comm(found[0]) == command:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"the supervisor's child does not run {command!r} within {timeout} s")
            time.sleep(0.005)

    def kill(self, signum: int | None = None) -> None:  # type: ignore[override]
        """Send ``signum`` to the supervisor; without one, SIGKILL the whole run (the context's exit)."""
        if signum is None:
            super().kill()
        else:
            os.kill(self.supervisor_pid, signum)


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return None


def run(
    command: Sequence[str],
    *,
    options: Sequence[str] = (),
    pid1: bool = False,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a supervisor to completion and capture its output."""
    argv = [PYTHON, "-m", "pulpinit.supervise", *options, "--", *command]
    if pid1:
        argv = ["unshare", "--pid", "--fork", "--mount-proc", *argv]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, check=False, stdin=subprocess.DEVNULL
    )
