"""The resident supervisor: PID 1 (or a child subreaper) around the role's process.

``python -m pulpinit.supervise [--stop-timeout S] [--user SPEC] [--umask 022] [--log-format F] -- CMD ARGS...``

The main pulpinit process ``os.execv``\\ s into this module once its pipeline is
done, so pymongo, proton, augeas and structlog are not in the resident
process: this module and everything it imports are stdlib only (tested), and
of pulpinit it imports only :mod:`pulpinit.errors`, :mod:`pulpinit.spawn` and the knob table
(:mod:`pulpinit.knobs`: ``PULPINIT_STOP_TIMEOUT``, ``--umask`` and
``--stop-timeout`` are parsed as the settings stage parses them), and, in the
child after the fork, :mod:`pulpinit.privileges`.

Design (race-free, no Python signal handlers):

* The forwarded signals and SIGCHLD are blocked with ``pthread_sigmask``
  *before* the fork and consumed synchronously with ``sigwaitinfo`` (or
  ``sigtimedwait`` while a stop timeout runs).  A signal that arrives at any
  moment stays pending until the loop takes it; nothing can be lost between a
  check and a wait.  Blocked signals are queued even for a namespace's PID 1,
  which otherwise drops signals it has no handler for.
* When not PID 1 the supervisor becomes a child subreaper
  (``PR_SET_CHILD_SUBREAPER``), so orphans of the role are reparented to it and
  reaped here, like ``tini -s``.  No warning is logged for that: it is normal.
* The child is started by :func:`pulpinit.spawn.start`, the one way pulpinit's programs start a
  long-lived child (the migration watchdog uses it too): its own session and process group,
  every signal disposition and the signal mask back to their defaults, the privilege drop, then
  ``PR_SET_PDEATHSIG`` = SIGKILL (it dies with the supervisor however the supervisor dies, even
  when it is not PID 1), then the exec.  A failure before the exec ends the supervisor with 127
  (not found), 126 (not executable) or 78 (privilege drop).
* SIGCHLD → ``waitpid(-1, WNOHANG)`` until nothing is left: every zombie is
  reaped, the main child's status is kept.  Once the main child is gone the
  supervisor exits with its code, or 128+signal.

Forwarding goes to the **child only**, not to its process group (tini's
default, unlike dumb-init's).  Celery's warm shutdown is driven by the main
process: on SIGTERM it stops consuming, lets the prefork pool finish the
running tasks and then stops the pool itself.  The pool processes are in the
child's process group but reset SIGTERM/SIGHUP/SIGUSR1 to their default
action and ignore SIGINT (celery's ``WORKER_SIGRESET``/``WORKER_SIGIGNORE``),
so a signal to the whole group would *kill* every pool process mid-task
(WorkerLostError) — TERM would become a cold shutdown and USR1 (dump
tracebacks) would kill the pool.  ``httpd -DFOREGROUND`` likewise wants its
graceful signals (USR1, WINCH) on the parent only.  The group is signalled in
exactly one case: SIGKILL when ``--stop-timeout`` runs out after a SIGTERM,
because then everything must go.

Log lines go to stderr in the shape of structlog's output: JSON (``event``, ``level``,
``timestamp`` ISO-8601 UTC, then fields), or with ``--log-format console`` (which pulpinit passes
on when its own log is in that format) the line of structlog's console renderer without colours.  Only the
program name of the command is logged: the argv may hold secrets and the
redactor of the main process is not available here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from pulpinit import knobs, spawn
from pulpinit.errors import EnvValueError, PulpinitError, UsageError
from pulpinit.knobs import FORWARDED

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~0.5 MB resident
if TYPE_CHECKING:
    from typing import TypeVar

    from pulpinit.privileges import Identity

    T = TypeVar("T")

__all__ = ["FORWARDED", "main", "supervise"]

_WAITED = frozenset((*FORWARDED, signal.SIGCHLD))
_PR_SET_CHILD_SUBREAPER = 36


_format = ["json"]  # set by --log-format (one of the knob table's LOG_FORMATS)


def log(event: str, level: str = "info", **fields: object) -> None:
    """Write one structlog-shaped line (JSON, or console with ``--log-format console``) to stderr."""
    emit(event, level, fields)


def emit(event: str, level: str, fields: Mapping[str, object]) -> None:
    """:func:`log` with the fields as a mapping."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    if _format[0] == "console":
        line = console_line(stamp, event, level, fields)
    else:
        record = {"event": event, "level": level, "timestamp": stamp, **fields}
        line = "{" + ", ".join(f"{_json(key)}: {_json(value)}" for key, value in record.items()) + "}"
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr gone: supervision matters more than the log


_ESCAPES = {
    **{i: f"\\u{i:04x}" for i in range(32)},
    ord('"'): '\\"',
    ord("\\"): "\\\\",
    ord("\n"): "\\n",
    ord("\t"): "\\t",
    ord("\r"): "\\r",
}


def _json(value: object) -> str:
    """JSON for the few types the log uses (``import json`` costs 2.4 ms and 0.3 MB here)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float) and abs(value) < float("inf"):
        return repr(value)
    return '"' + str(value).translate(_ESCAPES) + '"'


def console_line(stamp: str, event: str, level: str, fields: Mapping[str, object]) -> str:
    """The line structlog's ``ConsoleRenderer(colors=False)`` writes for the same event (keys sorted)."""
    pairs = "".join(f" {key}={_console(fields[key])}" for key in sorted(fields))
    return f"{stamp} [{level:<9}] {event:<30}{pairs}".rstrip()


def _console(value: object) -> str:
    """A value as structlog's console renderer shows it: a plain string bare, anything else as repr."""
    if isinstance(value, str) and not set(value) & {" ", "\t", "=", "\r", "\n", '"', "'"}:
        return value
    return repr(value)


def _become_subreaper() -> bool:
    import ctypes

    return bool(ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def _reap(main_pid: int) -> int | None:
    """Reap every exited child; return the main child's wait status if it was among them."""
    status = None
    while True:
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == main_pid:
            status = raw


def supervise(
    argv: Sequence[str],
    *,
    identity: Identity | str | None = None,
    umask: int = 0o022,
    stop_timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run *argv* as a supervised child until it exits; return its code or 128+signal.

    *identity* is an :class:`~pulpinit.privileges.Identity`, or a user spec
    (``user[:group]``, ``uid[:gid]``) that the child resolves after the fork,
    which keeps the privilege module out of the resident process; ``None``
    runs the child as the current user.  *env* defaults to ``os.environ``.

    Raises :class:`~pulpinit.errors.ExecError` (127/126) when the command
    cannot be executed and :class:`~pulpinit.errors.UserError` (78) when the
    privilege drop fails; the child has been reaped by then.
    """
    if not argv:
        raise UsageError("no command to supervise")
    mode = "pid1" if os.getpid() == 1 else ("subreaper" if _become_subreaper() else "plain")
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
    try:
        pid = spawn.start(argv, env=os.environ if env is None else env, identity=identity, umask=umask)
        user = identity if identity is None or isinstance(identity, str) else identity.name
        log("supervise.start", command=argv[0], pid=pid, mode=mode, user=user, stop_timeout=stop_timeout)
        status: int | None = None
        kill_at: float | None = None
        while status is None:
            info: signal.struct_siginfo | None
            if kill_at is None:
                info = signal.sigwaitinfo(_WAITED)
            else:
                remaining = kill_at - time.monotonic()
                if remaining <= 0:
                    log("supervise.kill", level="warning", pid=pid, stop_timeout=stop_timeout)
                    spawn.kill_group(pid)
                    kill_at = None
                    continue
                info = signal.sigtimedwait(_WAITED, remaining)
                if info is None:
                    continue
            signum = info.si_signo
            if signum == signal.SIGCHLD:
                status = _reap(pid)
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
            log("supervise.forward", signal=signal.Signals(signum).name, pid=pid, sender=info.si_pid)
            if signum == signal.SIGTERM and stop_timeout is not None and kill_at is None:
                kill_at = time.monotonic() + stop_timeout
        _reap(pid)  # orphans that died together with the main child
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        fields: dict[str, object] = {"pid": pid, "exit_code": code}
        if os.WIFSIGNALED(status):
            fields["signal"] = signal.Signals(os.WTERMSIG(status)).name
        emit("supervise.exit", "info", fields)
        return code
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _option(options: Mapping[str, str], name: str, parse: Callable[[str, str], T], default: str) -> T:
    """An option parsed by the knob table's parser of that value; a bad one is a usage error (64)."""
    try:
        return parse(options.get(name, default), name)
    except EnvValueError as err:
        raise UsageError(str(err)) from None


def _parse(args: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    known = ("--stop-timeout", "--user", "--umask", "--log-format")
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            return options, list(args[index + 1 :])
        if not arg.startswith("-"):  # like tini: the command may follow the options directly
            return options, list(args[index:])
        name, sep, value = arg.partition("=")
        if name not in known:
            raise UsageError(
                f"unknown option {arg!r}; usage: python -m pulpinit.supervise "
                "[--stop-timeout S] [--user SPEC] [--umask 022] [--log-format json|console] -- CMD ARGS..."
            )
        if not sep:
            index += 1
            if index >= len(args):
                raise UsageError(f"{name} needs a value")
            value = args[index]
        options[name] = value
        index += 1
    raise UsageError("no command given")


def main(argv: Sequence[str] | None = None) -> int:
    """The ``python -m pulpinit.supervise`` entry point; returns the exit code."""
    try:
        options, command = _parse(sys.argv[1:] if argv is None else argv)
        _format[0] = _option(options, "--log-format", knobs.log_format, "json")
        if "--stop-timeout" in options:
            stop_timeout = _option(options, "--stop-timeout", knobs.stop_timeout, "")
        else:  # the same knob, parsed as the settings stage parses it (78 when bad)
            stop_timeout = knobs.read(os.environ, "PULPINIT_STOP_TIMEOUT", knobs.stop_timeout)
        umask = _option(options, "--umask", knobs.umask, "022")
        identity = None
        if "--user" in options:
            if os.geteuid() == 0:  # resolved (and an unknown user reported, 78) by the child
                identity = options["--user"]
            else:
                log(
                    "privileges.keep",
                    uid=os.getuid(),
                    gid=os.getgid(),
                    requested=options["--user"],
                    reason="not root: running as is",
                )
        return supervise(command, identity=identity, umask=umask, stop_timeout=stop_timeout)
    except PulpinitError as err:
        log("supervise.error", level="error", error=type(err).__name__, message=str(err), exit_code=int(err.exit_code))
        return int(err.exit_code)


if __name__ == "__main__":
    _code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Like tini: leave at once.  Interpreter finalisation would add ~9 ms to every stop, and there is
    # nothing to finalise: no threads, no buffered files, the child is reaped.
    os._exit(_code)
