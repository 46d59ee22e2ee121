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
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    "from pulpinit.settings.knobs import FORWARDED\n"
    "from pulpinit.signals import block_for_handoff\n"
    "block_for_handoff(FORWARDED)\n"  # what pulpinit does before it execs the supervisor
    "if sys.argv[1] == 'pending':\n"
    "    os.kill(os.getpid(), signal.SIGTERM)\n"  # a docker stop during the exec: pending, not lost
    "os.execv(sys.executable, [sys.executable, '-m', 'pulpinit.supervise', '--', *sys.argv[2:]])\n"
)


def can_unshare() -> str | None:
    """None when PID namespaces are usable, else the reason to skip."""
    if os.geteuid() != 0:
        return "needs root for PID namespaces"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        return f"unshare --pid does not work here: {probe.stderr.decode().strip()}"
    return None


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(word) for word in text.split()]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for {pid}")


class Supervised:
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
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        self._err = threading.Thread(target=self._collect, args=(self.proc.stderr,), daemon=True)
        self._err.start()

    @staticmethod
    def _pump(stream: Any, into: queue.Queue[str]) -> None:
        for raw in stream:
            into.put(raw.decode(errors="replace").rstrip("\n"))

    def _collect(self, stream: Any) -> None:
        for raw in stream:
            self.stderr.append(raw.decode(errors="replace").rstrip("\n"))

    def __enter__(self) -> Supervised:
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def expect(self, wanted: str, timeout: float = 15) -> str:
        """Wait for a stdout line starting with *wanted*; return it (earlier lines are kept)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line {wanted!r} within {timeout}s; saw {self.stdout}; stderr {self.stderr}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.stdout.append(line)
            if line.startswith(wanted):
                return line

    @property
    def supervisor_pid(self) -> int:
        """The host PID of the supervisor (the namespace's PID 1 when ``pid1``)."""
        if not self.pid1:
            return self.proc.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = children(self.proc.pid)
            if found:
                return found[0]
            time.sleep(0.01)
        raise AssertionError("unshare has no child")

    def kill(self, signum: int) -> None:
        os.kill(self.supervisor_pid, signum)

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def wait(self, timeout: float = 20) -> int:
        code = self.proc.wait(timeout)
        self._err.join(5)
        return code

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines the supervisor wrote to stderr."""
        out = []
        for line in self.stderr:
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


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
