"""Hand the process over to the role's command: drop privileges, then ``execvpe``.

Stdlib only (the resident supervisor shares :func:`exec_failure` and
:func:`child_environ`).  Nothing stays resident after :func:`exec_command`:
like gosu, the command replaces pulpinit and inherits its PID, so under
``docker run`` it *is* PID 1 and gets the signals directly.

Exit codes follow the shells and tini: a command that cannot be found → 127,
one that exists but cannot be executed (no ``x`` bit, a directory, a bad
interpreter line) → 126.  The error message names the command and the reason
in one line.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from typing import NoReturn

from pulpinit.errors import ExecError, ExitCode, UsageError
from pulpinit.privileges import Identity, drop

__all__ = ["child_environ", "exec_command", "exec_failure", "restore_signals"]

# Python ignores these; an ignored disposition survives execve, so reset them
# (subprocess does the same with restore_signals=True).
_RESTORED = ("SIGPIPE", "SIGXFZ", "SIGXFSZ")


def restore_signals() -> dict[int, object]:
    """Give the next program the dispositions a shell would: SIGPIPE etc. back to default.

    Returns the previous dispositions, for putting back if the exec fails.
    """
    previous: dict[int, object] = {}
    for name in _RESTORED:
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, signal.SIG_DFL)
    return previous


def child_environ(env: Mapping[str, str] | None, drop: Iterable[str] = ()) -> dict[str, str]:
    """A private copy of *env* (default ``os.environ``) for ``execve``, without the variables in *drop*.

    pulpinit drops the secret variables it consumed (they are in server.conf now) unless
    ``PULPINIT_KEEP_SECRET_ENV`` is set.
    """
    environ = dict(os.environ if env is None else env)
    for name in drop:
        environ.pop(name, None)
    return environ


def exec_failure(command: str, err: OSError, path: str | None = None) -> ExecError:
    """The :class:`ExecError` (127/126 and a one-line reason) for a failed ``execve``."""
    code = err.errno
    if code in (errno.ENOENT, errno.ENOTDIR):
        where = "" if "/" in command else f" in PATH={path if path is not None else os.defpath}"
        return ExecError(command, f"command not found{where}", ExitCode.NOT_FOUND)
    if code == errno.EACCES:
        problem = "permission denied (not executable by this user, or a directory on the way is not)"
    elif code == errno.ENOEXEC:
        problem = "exec format error (not a binary and no #! line)"
    elif code == errno.EISDIR:
        problem = "is a directory"
    else:
        problem = f"cannot execute: {err.strerror or err}"
    if "/" in command and os.path.isdir(command):
        problem = "is a directory"
    return ExecError(command, problem, ExitCode.NOT_EXECUTABLE)


def exec_command(
    argv: Sequence[str],
    *,
    identity: Identity | None = None,
    umask: int = 0o022,
    env: Mapping[str, str] | None = None,
) -> NoReturn:
    """Drop to *identity* (if given), set the umask, and replace this process with *argv*.

    *env* defaults to ``os.environ`` (with ``HOME``/``USER``/``LOGNAME`` of the
    identity).  Never returns: on failure raises
    :class:`~pulpinit.errors.ExecError` (exit 127 or 126) or
    :class:`~pulpinit.errors.UserError` (exit 78, the drop failed).
    """
    if not argv:
        raise UsageError("no command to execute")
    environ = child_environ(env)
    if identity is not None:
        drop(identity, umask, environ=environ)
    else:
        os.umask(umask)
    previous = restore_signals()
    try:
        os.execvpe(argv[0], list(argv), environ)  # noqa: S606 - argv as given, no shell
    except OSError as err:
        for number, handler in previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
        raise exec_failure(argv[0], err, environ.get("PATH")) from None
