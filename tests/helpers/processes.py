"""Spawn a process and wait for its lines: the one way tests, benchmarks and the stage holds do it.

:class:`Spawned` starts a process and collects its stdout and stderr lines as they come (one
thread per stream), so a caller waits for a line — a fake service's ``ready <port>``, a
supervised child's ``ready``, a pulpinit log event — with a deadline instead of sleeping, and
fails with the lines seen so far when the line does not come or the process exits first.
:func:`children`, :func:`first_child` and :func:`pid_namespaces_reason` serve the tests that
run processes as PID 1 of a PID namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from typing_extensions import Self

Stream = Literal["out", "err"]
#: How long :meth:`Spawned.wait` waits for the readers once the process exited: a grandchild that
#: kept the pipe open (it should not) costs this, never a hang.
DRAIN_S = 5.0


def children(pid: int) -> list[int]:
    """The PIDs of ``pid``'s children (of its main thread), from ``/proc``; ``[]`` once it is gone."""
    try:
        return [int(word) for word in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def first_child(pid: int, timeout: float = 10) -> int:
    """The first child of ``pid`` (the namespace's PID 1 under ``unshare --fork``), once there is one."""
    deadline = time.monotonic() + timeout
    while not (found := children(pid)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{pid} has no child within {timeout:g} s")
        time.sleep(0.005)
    return found[0]


def pid_namespaces_reason() -> str | None:
    """None when ``unshare --pid`` works here, else why not (root is needed): the reason to skip."""
    if os.geteuid() != 0:
        return "needs root for PID namespaces"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=30, check=False
    )
    return None if probe.returncode == 0 else f"unshare --pid does not work here: {probe.stderr.decode().strip()}"


class Spawned:
    """A child process whose output lines are collected as they come (a context manager: killed on exit)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: bool = False,
        session: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.session = session
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=session,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._cursor: dict[Stream, int] = {"out": 0, "err": 0}
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            with self._changed:
                into.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _lines(self, stream: Stream) -> list[str]:
        return self.out if stream == "out" else self.err

    def _done(self) -> bool:
        return self.proc.poll() is not None and not any(reader.is_alive() for reader in self._readers)

    def _await(self, find: Callable[[], Any], what: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = find()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self._done():
                    state = "exited" if self._done() else f"no such line within {timeout:g} s"
                    raise AssertionError(
                        f"{self.argv[:4]}: {state} before {what}; stdout: {self.out[-10:]}; stderr: {self.err[-10:]}"
                    )
                self._changed.wait(min(left, 0.1))

    def expect(self, text: str, *, stream: Stream = "out", prefix: bool = False, timeout: float = 30) -> str:
        """The next line of ``stream`` (after the last one this returned) that holds ``text``
        (that starts with it, with ``prefix``); waits for it."""

        def find() -> str | None:
            lines = self._lines(stream)
            for index in range(self._cursor[stream], len(lines)):
                line = lines[index]
                if line.startswith(text) if prefix else text in line:
                    self._cursor[stream] = index + 1
                    return line
            return None

        found: str = self._await(find, repr(text), timeout)
        return found

    def ready_port(self, timeout: float = 30) -> int:
        """The port of the ``ready <port>`` line a fake service prints on stdout, first, once it listens."""
        line = self.expect("", timeout=timeout)  # the next line, whatever it is
        word, _, port = line.partition(" ")
        if word != "ready" or not port.isdigit():
            raise AssertionError(f"{self.argv[:4]}: the first line is {line!r}, not 'ready <port>'")
        return int(port)

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines on stderr so far (anything else there is left out)."""
        with self._changed:
            lines = list(self.err)
        found = []
        for line in lines:
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
        return found

    def event(self, name: str, timeout: float = 30) -> dict[str, Any]:
        """The first log line (from the start) whose ``event`` is ``name``; waits for it."""

        def find() -> dict[str, Any] | None:
            return next((e for e in self.events() if e.get("event") == name), None)

        found: dict[str, Any] = self._await(find, repr(name), timeout)
        return found

    def send(self, text: str) -> None:
        """Write ``text`` to its stdin (``stdin=True``)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def wait(self, timeout: float = 60) -> int:
        """Wait for the exit, then for the rest of its output; returns the exit code (-N: signal N)."""
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(DRAIN_S)
        return code

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        """:meth:`wait`, then (exit code, whole stdout, whole stderr)."""
        code = self.wait(timeout)
        return code, "\n".join(self.out), "\n".join(self.err)

    def kill(self) -> None:
        """SIGKILL it (its whole process group when it has its own session) and reap it."""
        if self.proc.poll() is None:
            if self.session:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.kill()
