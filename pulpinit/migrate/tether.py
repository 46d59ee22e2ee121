"""Start a command tied to its parent: it dies when pulpinit dies, even by SIGKILL, PID 1 or not.

``python -m pulpinit.migrate.tether --parent PID --status-fd FD [--user SPEC] [--umask 0022] -- CMD [ARG...]``

pulpinit starts pulp-manage-db through this small stdlib-only program, which

1. drops privileges to ``--user`` (setgroups, setgid, setuid; HOME/USER/LOGNAME),
   first: a credential change clears the parent-death signal, so it must come before;
2. sets ``PR_SET_PDEATHSIG`` = SIGKILL: the kernel kills this process (and, after the
   exec, the command) when the *thread* that forked it ends — pulpinit forks it from
   its main thread, which lives exactly as long as pulpinit;
3. checks that ``getppid()`` is still ``PID``: a parent that died before step 2 cannot
   signal any more, so the command is not started at all;
4. marks ``FD`` close-on-exec and execs the command.  A successful exec closes ``FD``:
   the parent reads end-of-file and knows the command runs.  A failure writes one line
   ``CODE message`` to ``FD`` and exits with CODE: 127 (not found), 126 (not
   executable), 78 (the user), 70 (anything else).

Why a separate program: a ``preexec_fn`` would run Python between fork and exec in a
process with threads (pymongo's monitors, the lease keeper), which can deadlock; and
CentOS 7's util-linux has no ``setpriv --pdeathsig``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from pulpinit.errors import EnvValueError, UserError
from pulpinit.privileges import drop, resolve_user
from pulpinit.settings.knobs import umask

PR_SET_PDEATHSIG = 1
PARENT_GONE = 70


def _fail(fd: int, code: int, message: str) -> int:
    try:
        os.write(fd, f"{code} {message}".encode(errors="replace"))
    except OSError:
        pass
    return code


def _pdeathsig(signum: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def main(argv: list[str]) -> int:
    cut = argv.index("--") if "--" in argv else len(argv)
    options, command = argv[:cut], argv[cut + 1 :]
    values = dict(zip(options[::2], options[1::2], strict=False))
    fd = int(values["--status-fd"])
    parent = int(values["--parent"])
    if not command:
        return _fail(fd, 70, "no command given")
    try:
        mask = umask(values.get("--umask", "0022"), "--umask")
        if "--user" in values:
            drop(resolve_user(values["--user"]), mask)
        elif "--umask" in values:
            os.umask(mask)
    except (UserError, EnvValueError) as exc:
        return _fail(fd, 78, str(exc))
    try:
        _pdeathsig(signal.SIGKILL)
    except OSError as exc:
        return _fail(fd, 70, f"prctl(PR_SET_PDEATHSIG): {exc.strerror}")
    if os.getppid() != parent:
        return _fail(fd, PARENT_GONE, f"parent {parent} is gone; not starting {command[0]}")
    os.set_inheritable(fd, False)
    try:
        os.execvp(command[0], command)  # noqa: S606 - the migration command, from the operator's settings
    except FileNotFoundError:
        return _fail(fd, 127, "not found")
    except PermissionError:
        return _fail(fd, 126, "not executable")
    except OSError as exc:
        return _fail(fd, 126, exc.strerror or str(exc))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
