"""Start a long-lived child: the one way pulpinit's resident programs fork and exec a command.

Two small stdlib-only programs start the long-lived children of pulpinit, and both start them
here: the resident supervisor (:mod:`pulpinit.supervise`: the role's process under ``--init``)
and the migration watchdog (:mod:`pulpinit.migrate.watchdog`: pulp-manage-db and
``PULPINIT_PRE_MIGRATE``).  Both are single-threaded, so Python may run between ``fork`` and
``exec`` (in pulpinit itself, with pymongo's threads, it could deadlock: that is why pulpinit
starts the watchdog as a fresh interpreter).

:func:`start` forks; the child, in this order,

1. calls ``setsid``: its own session and process group, so that a stop can reach the whole job
   (SIGKILL to the group) and a signal meant for pulpinit's group does not reach it twice;
   a terminal on stdin stays its controlling terminal (best effort, for an interactive shell);
2. sets **every** signal disposition to its default (:func:`default_dispositions`): handlers are
   reset by ``execve`` anyway, but an *ignored* signal stays ignored across it — Python ignores
   SIGPIPE and SIGXFSZ, a parent may ignore SIGHUP (``nohup``) or the stop signals — and a
   backup pipeline or Celery must get the dispositions a shell would give them;
3. drops privileges to the user (resolved after the fork, so that the privilege module never
   sits in the resident parent), then sets the umask;
4. asks for SIGKILL when its parent dies (:func:`die_with_parent`, ``PR_SET_PDEATHSIG``): after
   the drop, because a change of credentials clears it; then checks that the parent is still
   there (one that died before cannot signal any more);
5. empties its signal mask (its parent blocks the signals it takes with ``sigwaitinfo``);
6. execs the command.

Any failure before the exec goes back through a close-on-exec pipe, so the parent reads
end-of-file when the exec succeeded, or the reason when it did not, and raises one error:
:func:`pulpinit.errors.exec_failure` (127 not found, 126 not executable — the one mapping the
hand-off uses too) or :class:`~pulpinit.errors.UserError` (78, the privilege drop).

SIGKILL as the parent-death signal because it is the only signal certain to end the child, and
nobody is left to follow up: a child may ignore any catchable signal, and no parent remains to
enforce a stop timeout.  It is what the kernel does to every process of a PID namespace whose
PID 1 dies, so every mode ends alike.

Standard library only, no ``typing`` at run time, and :mod:`pulpinit.privileges` only in the
child after the fork: the resident supervisor imports this module.
"""

from __future__ import annotations

import contextlib
import os
import signal

from pulpinit.errors import ExecError, ExitCode, UserError, exec_failure

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~0.5 MB resident
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from ctypes import CDLL

    from pulpinit.privileges import Identity

__all__ = ["default_dispositions", "die_with_parent", "kill_group", "start"]

_PR_SET_PDEATHSIG = 1
_UNCATCHABLE = frozenset((signal.SIGKILL, signal.SIGSTOP))


def _libc() -> CDLL:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent: int, libc: CDLL | None = None) -> bool:
    """Be SIGKILLed when the parent (the thread that forked this process) dies; False when it is gone already.

    ``parent`` is the pid the caller expects as its parent: a parent that died before the
    ``prctl`` cannot signal any more, and ``getppid`` then names another process.  ``libc`` may be
    loaded beforehand (a dropped user may not read the interpreter's standard library).
    """
    import ctypes

    if (libc or _libc()).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl(PR_SET_PDEATHSIG): {os.strerror(code)}")
    return os.getppid() == parent


def default_dispositions(numbers: Iterable[int] | None = None) -> Callable[[], None]:
    """Set every signal's disposition (or those of ``numbers``) to SIG_DFL; returns the function that puts them back.

    For a program about to be exec'ed: an ignored disposition survives ``execve``.  The hand-off
    (an exec without a fork) puts them back when its exec failed and pulpinit reports it.
    """
    previous: dict[int, object] = {}
    for number in signal.valid_signals() if numbers is None else numbers:
        if number in _UNCATCHABLE:
            continue
        with contextlib.suppress(OSError, ValueError):  # e.g. signals the C library reserves
            previous[number] = signal.signal(number, signal.SIG_DFL)

    def restore() -> None:
        for number, old in previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(number, old)  # type: ignore[arg-type]

    return restore


def kill_group(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads (every child :func:`start` made leads one), else ``pid``."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _keep_terminal() -> None:
    if os.isatty(0):
        try:
            import fcntl
            import termios

            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        except OSError:
            pass


def _child(
    argv: Sequence[str], identity: Identity | str | None, umask: int, env: dict[str, str], *, report: int, parent: int
) -> None:
    """In the forked child: the steps of the module docstring; any failure goes to ``report``. Never returns."""
    stage = "exec"
    try:
        os.setsid()
        _keep_terminal()
        default_dispositions()
        libc = _libc()  # before the drop: the user may not be able to read the standard library
        if identity is not None:
            stage = "user"
            from pulpinit.privileges import drop, resolve_user

            drop(resolve_user(identity) if isinstance(identity, str) else identity, umask, environ=env)
            stage = "exec"
        else:
            os.umask(umask)
        if not die_with_parent(parent, libc):
            os.kill(os.getpid(), signal.SIGKILL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.execvpe(argv[0], list(argv), env)  # noqa: S606 - argv as given, no shell
    except UserError as err:
        os.write(report, f"user\0{err.user}\0{err.problem}".encode())
    except OSError as err:
        os.write(report, f"{stage}\0{err.errno or 0}\0{err.strerror or err}".encode())
    except BaseException as err:  # the child must never return into the parent's code
        os.write(report, f"{stage}\0{0}\0{err}".encode())
    finally:
        os._exit(ExitCode.NOT_FOUND)


def _read_report(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def start(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    identity: Identity | str | None = None,
    umask: int = 0o022,
) -> int:
    """Fork and exec ``argv`` as the module docstring says; return its pid once the exec succeeded.

    ``identity``: an :class:`~pulpinit.privileges.Identity`, or a user spec (``user[:group]``,
    ``uid[:gid]``) resolved in the child; ``None`` keeps the current user.  Raises
    :class:`~pulpinit.errors.ExecError` (127/126) or :class:`~pulpinit.errors.UserError` (78);
    the child has been reaped by then.  Call it from a single-threaded process only.
    """
    environ = dict(env)
    read_end, write_end = os.pipe()  # both close-on-exec
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _child(argv, identity, umask, environ, report=write_end, parent=parent)
    os.close(write_end)
    report = _read_report(read_end)
    if not report:
        return pid
    os.waitpid(pid, 0)
    stage, number, problem = report.decode(errors="replace").split("\0", 2)
    if stage == "user":
        raise UserError(number, problem)
    if not int(number):
        raise ExecError(argv[0], problem, ExitCode.NOT_EXECUTABLE)
    raise exec_failure(argv[0], OSError(int(number), problem), environ.get("PATH"))
