"""The migration watchdog: runs one command (pulp-manage-db, ``PULPINIT_PRE_MIGRATE``) and fences it by the lease.

``python -m pulpinit.migrate.watchdog --parent PID --control-fd R --status-fd W --deadline T
--stop-timeout S --margin M [--user SPEC] [--umask 0022] -- CMD [ARG...]``

pulpinit holds the migration lease and starts every command it runs under the lock through this
small stdlib-only program, which stays resident as the command's parent:

1. it dies with pulpinit (``PR_SET_PDEATHSIG`` = SIGKILL, :func:`pulpinit.spawn.die_with_parent`)
   and refuses to start when pulpinit is already gone;
2. it starts the command with :func:`pulpinit.spawn.start` — the one way pulpinit's programs
   start a long-lived child: own process group, default signal dispositions and an empty mask,
   the privilege drop, the parent-death signal (so the command dies with the watchdog), one
   exec-error mapping — and reports ``started PID`` (or ``error CODE message``) on ``W``;
3. it knows the **lease deadline** ``T`` (CLOCK_MONOTONIC, which every process of the machine
   shares) that pulpinit last confirmed.  pulpinit writes ``renew T`` on ``R`` after every
   confirmed renewal.  When no renewal has moved the deadline by ``T − S − M``, the watchdog
   sends the command SIGTERM and reports ``fence SECONDS_LEFT``; at ``T − M`` it SIGKILLs the
   command's process group (``kill lease``) — at once, without the SIGTERM, when it finds itself
   past that already (the whole container was frozen and resumed).  So the command is gone before the lease can pass
   to anyone else **even when pulpinit itself is frozen** (SIGSTOP, a stuck interpreter): only a
   frozen machine or cgroup, which freezes the watchdog too, escapes the fence;
4. ``stop N`` on ``R`` forwards signal N to the command (pulpinit received a stop signal) and
   SIGKILLs its group ``S`` seconds later if it is still there (``kill stop-timeout``); ``kill``
   SIGKILLs the group at once (pulpinit saw the lease taken over: ``kill request``); end-of-file
   on ``R`` means pulpinit is gone: SIGKILL at once (``kill parent-gone``);
5. when the command has ended it reports ``exit CODE`` (128+n for a signal) and exits with it.

Stop signals sent to the watchdog itself (a terminal's Ctrl-C reaches the whole foreground
group) are ignored: pulpinit receives them too and decides.  The command runs in its own group.
"""

from __future__ import annotations

import math
import os
import select
import signal
import sys
import time

from pulpinit import spawn
from pulpinit.errors import EnvValueError, ExecError, ExitCode, UserError
from pulpinit.knobs import umask

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

PARENT_GONE = 70
#: The signals pulpinit decides about: the watchdog ignores them, its command gets the defaults.
IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class Watch:
    """The running command and its deadlines; ``clock`` is CLOCK_MONOTONIC (injected in tests)."""

    def __init__(
        self,
        pid: int,
        *,
        deadline: float,
        stop_timeout: float,
        margin: float,
        report: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pid = pid
        self.deadline = deadline
        self.stop_timeout = stop_timeout
        self.margin = margin
        self.report = report
        self.clock = clock
        self.fenced = False
        self.killed = False
        self.kill_at = math.inf
        self.kill_reason = ""

    def _kill_by(self, at: float, reason: str) -> None:
        if at < self.kill_at:
            self.kill_at, self.kill_reason = at, reason

    def message(self, line: str) -> None:
        """One line from pulpinit: ``renew T``, ``stop N`` or ``kill``."""
        word, _, value = line.strip().partition(" ")
        if word == "renew" and not self.fenced:
            self.deadline = max(self.deadline, float(value))
        elif word == "stop":
            self._signal(int(value))
            self._kill_by(self.clock() + self.stop_timeout, "stop-timeout")
        elif word == "kill":
            self.kill("request")

    def tick(self) -> float:
        """Act on the deadlines at the current time; returns the seconds until the next one."""
        now = self.clock()
        term_at = self.deadline - self.stop_timeout - self.margin
        if not self.fenced and now >= term_at:
            self.fenced = True
            self.report(f"fence {self.deadline - now:.3f}")
            self._kill_by(self.deadline - self.margin, "lease")
            if now < self.kill_at:  # late (resumed from a freeze): no time for a graceful stop, SIGKILL below
                self._signal(signal.SIGTERM)
        if now >= self.kill_at:
            self.kill(self.kill_reason)
        upcoming = [t for t in (term_at if not self.fenced else math.inf, self.kill_at) if t > now]
        return min(upcoming, default=math.inf) - now

    def kill(self, reason: str) -> None:
        if not self.killed:
            self.killed = True
            self.kill_at = math.inf
            self.report(f"kill {reason}")
            spawn.kill_group(self.pid)

    def _signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass


def _loop(watch: Watch, control: int) -> int:
    """Wait for the command, reading ``control`` and keeping the deadlines; returns its exit code."""
    try:
        exited = os.pidfd_open(watch.pid)
    except OSError:  # kernels before 5.3: poll
        exited = -1
    buffer = b""
    readers = [control, *([exited] if exited >= 0 else [])]
    while True:
        pid, status = os.waitpid(watch.pid, os.WNOHANG)
        if pid:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code
        pause = watch.tick()
        timeout = max(0.0, min(pause, 0.05 if exited < 0 else 3600.0))
        ready, _, _ = select.select(readers, [], [], timeout)
        if control in ready:
            chunk = os.read(control, 4096)
            if not chunk:
                readers.remove(control)
                watch.kill("parent-gone")
                continue
            buffer += chunk
            *lines, rest = buffer.split(b"\n")
            buffer = rest
            for line in lines:
                watch.message(line.decode(errors="replace"))


def _options(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    cut = argv.index("--") if "--" in argv else len(argv)
    options, command = argv[:cut], argv[cut + 1 :]
    return dict(zip(options[::2], options[1::2], strict=False)), command


def main(argv: list[str]) -> int:
    values, command = _options(argv)
    status = int(values["--status-fd"])

    def report(line: str) -> None:
        try:
            os.write(status, (line + "\n").encode(errors="replace"))
        except OSError:
            pass  # pulpinit is gone: nobody to tell

    def fail(code: int, message: str) -> int:
        report(f"error {code} {message}")
        return code

    if not command:
        return fail(ExitCode.MIGRATION_FAILED, "no command given")
    parent = int(values["--parent"])
    if not spawn.die_with_parent(parent):
        return fail(PARENT_GONE, f"parent {parent} is gone; not starting {command[0]}")
    for number in IGNORED:
        signal.signal(number, signal.SIG_IGN)
    try:
        mask = umask(values.get("--umask", "0022"), "--umask")
        pid = spawn.start(command, env=os.environ, identity=values.get("--user"), umask=mask)
    except (UserError, EnvValueError) as exc:
        return fail(ExitCode.CONFIG, str(exc))
    except ExecError as exc:
        return fail(exc.exit_code, exc.problem)
    report(f"started {pid}")
    watch = Watch(
        pid,
        deadline=float(values["--deadline"]),
        stop_timeout=float(values["--stop-timeout"]),
        margin=float(values["--margin"]),
        report=report,
    )
    code = _loop(watch, int(values["--control-fd"]))
    report(f"exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
