"""The child runner: a command under the lock (pulp-manage-db, ``PULPINIT_PRE_MIGRATE``), run by its watchdog.

:meth:`Runner.start` starts ``python -m pulpinit.migrate.watchdog`` (:mod:`pulpinit.migrate.watchdog`)
around the command — a fresh interpreter, because pulpinit has threads (pymongo's monitors, the
lease keeper) and must not run Python between ``fork`` and ``exec`` — and returns once the
command was exec'ed: a missing command (127), a non-executable one (126) or an unknown user (78)
raises, and nothing has run.  The watchdog's status pipe says what happened; its control pipe
carries what pulpinit decides (the protocol is the watchdog's).

:meth:`Running.supervise` then waits for the command, with the main thread:

* every lease renewal the keeper confirmed is passed on (``renew T``): the watchdog fences the
  command by that deadline on its own, even while pulpinit is frozen;
* a renewal that found another owner: ``kill`` at once (the lease is someone else's);
* a permanent MongoDB error in the keeper: ``stop SIGTERM``;
* a stop signal (SIGTERM, SIGINT, the image's stop signal) is forwarded (``stop N``: SIGINT
  stays SIGINT, any other is SIGTERM) and the command is SIGKILLed by the watchdog
  ``PULPINIT_MANAGE_DB_STOP_TIMEOUT`` later if it is still there — from the moment the watchdog
  exists until :meth:`Running.close`, so none is lost between the start and the wait;
* the command's output (stdout and stderr) goes into the log line by line.

The environment is the caller's: :mod:`pulpinit.settings.childenv` says which one each command gets.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO

from pulpinit import signals
from pulpinit.errors import ConfigError, ExecError, ExitCode, MigrationFailed
from pulpinit.log import Logger
from pulpinit.migrate.keeper import Lease

__all__ = ["Outcome", "Runner", "Running"]

POLL_S = 0.05


@dataclass
class Outcome:
    """How the command ended."""

    code: int
    signum: int | None = None  # the stop signal that made us stop it
    lost: str | None = None  # why the lease was lost, when it was


@dataclass(frozen=True)
class Runner:
    """How commands are started under the lock: the watchdog's timing, the user and the umask."""

    log: Logger
    stop_timeout: float  # PULPINIT_MANAGE_DB_STOP_TIMEOUT
    margin: float  # how long before the lease ends the command must be gone
    umask: int
    user: str | None  # None: run as is (not root)

    def start(
        self, command: Sequence[str], *, variable: str, env: Mapping[str, str], lease: Lease, event: str
    ) -> Running:
        """Start ``command`` under its watchdog; returns once it was exec'ed.

        ``variable`` names the knob that names the command (for errors), ``event`` the log
        event of its output lines.
        """
        status_r, status_w = os.pipe()
        control_r, control_w = os.pipe()
        argv = [sys.executable, "-m", "pulpinit.migrate.watchdog", "--parent", str(os.getpid())]
        argv += ["--status-fd", str(status_w), "--control-fd", str(control_r)]
        argv += ["--deadline", repr(lease.confirmed_until), "--stop-timeout", f"{self.stop_timeout:g}"]
        argv += ["--margin", f"{self.margin:g}", "--umask", f"{self.umask:04o}"]
        if self.user is not None:
            argv += ["--user", self.user]
        try:
            proc = subprocess.Popen(
                [*argv, "--", *command],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env),
                text=True,
                errors="replace",
                pass_fds=(status_w, control_r),
            )
        except BaseException:
            for fd in (status_r, control_w):
                os.close(fd)
            raise
        finally:
            os.close(status_w)
            os.close(control_r)
        running = Running(proc, status_r, control_w, self.log, event)
        running.give_back = signals.take_over(running.forward)  # from now on a stop signal goes to the command
        try:
            running.started(command[0], variable)
        except BaseException:
            running.close()
            raise
        return running


class Running:
    """One command under its watchdog (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen[str], status: int, control: int, log: Logger, event: str) -> None:
        self.proc = proc
        self.status = status
        self.control = control
        self.log = log
        self.event = event
        self.pid = 0  # the command's (the watchdog's child)
        self.received: list[int] = []
        self._buffer = b""
        self._lines: list[str] = []
        self._eof = False
        self.code: int | None = None
        self.fenced: str | None = None
        self.give_back: Callable[[], None] = lambda: None

    # -- the status pipe ------------------------------------------------------------------
    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.status], [], [], timeout)
        if not ready:
            return
        chunk = os.read(self.status, 4096)
        if not chunk:
            self._eof = True
            return
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        self._lines += [line.decode(errors="replace") for line in lines]

    def _next_line(self) -> str | None:
        while not self._lines and not self._eof:
            self._read(3600)
        return self._lines.pop(0) if self._lines else None

    def started(self, command: str, variable: str) -> None:
        """Wait for the watchdog's ``started PID``; raise as :func:`pulpinit.errors.exec_failure` says otherwise."""
        line = self._next_line() or "error 70 the watchdog ended without a word"
        word, _, rest = line.partition(" ")
        if word == "started":
            self.pid = int(rest)
            return
        self.proc.wait()
        number, _, message = rest.partition(" ")
        code = int(number) if number.isdigit() else int(ExitCode.MIGRATION_FAILED)
        if code in (ExitCode.NOT_FOUND, ExitCode.NOT_EXECUTABLE):
            raise ExecError(command, f"{message} ({variable})", code)
        if code == ExitCode.CONFIG:
            raise ConfigError(message)
        raise MigrationFailed(f"cannot start {command}: {message}")

    # -- the control pipe -----------------------------------------------------------------
    def send(self, line: str) -> None:
        try:
            os.write(self.control, (line + "\n").encode())
        except OSError:
            pass  # the watchdog is gone: its end says how the command ended

    def forward(self, signum: int, _frame: FrameType | None) -> None:
        """The stop-signal handler while the command runs (see :func:`pulpinit.signals.take_over`)."""
        self.received.append(signum)
        self.log.warning("migration.signal", signal=signal.Signals(signum).name, action="forwarded")
        self.send(f"stop {signals.for_child(signum)}")  # the image's stop signal (SIGWINCH) becomes SIGTERM

    # -- waiting --------------------------------------------------------------------------
    def supervise(self, lease: Lease, clock: Callable[[], float] = time.monotonic) -> Outcome:
        """Wait for the command's end; pass renewals on; forward stop signals; stop it when the lease is gone."""
        assert self.proc.stdout is not None  # noqa: S101 - stdout=PIPE in start
        reader = threading.Thread(target=self._stream, args=(self.proc.stdout,), daemon=True)
        reader.start()
        sent, lost, stopped = lease.confirmed_until, None, False
        try:
            while self.code is None and not self._eof:
                if lease.confirmed_until > sent:
                    sent = lease.confirmed_until
                    self.send(f"renew {sent!r}")
                if lease.lost_to is not None and lost is None:
                    lost = f"the lease was taken: the lock is {lease.lost_to}"
                    self.log.error("migration.lease_lost", lock=lease.lost_to, action="killing pulp-manage-db")
                    self.send("kill")
                if lease.fatal is not None and not stopped:
                    stopped = True
                    self.send(f"stop {signal.SIGTERM}")
                self._read(POLL_S)
                while self._lines:
                    self._status(self._lines.pop(0), lease, clock)
        finally:
            self.close()
            reader.join(timeout=2)
        code = self.code if self.code is not None else 128 + signal.SIGKILL
        if self.code is None:
            self.log.error("migration.kill", reason="the watchdog ended unexpectedly")
        return Outcome(code, self.received[0] if self.received else None, lost or self.fenced)

    def _status(self, line: str, lease: Lease, clock: Callable[[], float]) -> None:
        word, _, rest = line.partition(" ")
        if word == "exit":
            self.code = int(rest)
        elif word == "fence":
            overdue = clock() - (lease.confirmed_until - lease.lease_s)
            self.fenced = f"the lease could not be renewed for {overdue:.1f} s (lease {lease.lease_s:g} s)"
            self.log.error(
                "migration.lease_lost",
                reason=self.fenced,
                lease_left_s=round(float(rest), 2),
                action="the watchdog stops pulp-manage-db before the lease ends",
            )
        elif word == "kill":
            self.log.error("migration.kill", reason=_KILL_REASONS.get(rest, rest))

    def close(self) -> None:
        """Give the stop signals back, close the pipes and reap the watchdog (closing ``control`` kills the command)."""
        self.give_back()
        self.give_back = lambda: None
        for fd in (self.control, self.status):
            try:
                os.close(fd)
            except OSError:
                pass
        self.control = self.status = -1
        self.proc.wait()

    def _stream(self, pipe: IO[str]) -> None:
        for line in pipe:
            self.log.info(self.event, line=line.rstrip("\n"))


_KILL_REASONS = {
    "lease": "the lease ends",
    "stop-timeout": "did not exit within PULPINIT_MANAGE_DB_STOP_TIMEOUT of SIGTERM",
    "request": "the lease belongs to someone else",
    "parent-gone": "pulpinit is gone",
}
