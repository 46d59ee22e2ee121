"""Hand the process over to the role's command: drop privileges, then ``execvpe``.

:func:`hand_off` is the stage: it execs the role's command as ``PULPINIT_USER`` (or as is when
not root), or, with ``--init``, the resident supervisor (``python -m pulpinit.supervise``), a
fresh interpreter with no pymongo, proton or augeas loaded that resolves the user itself, in the
child, after the fork.  Nothing stays resident after :func:`exec_command`: like gosu, the command replaces pulpinit and
inherits its PID, so under ``docker run`` it *is* PID 1 and gets the signals directly.

Exit codes follow the shells and tini: a command that cannot be found → 127, one that exists
but cannot be executed (no ``x`` bit, a directory, a bad interpreter line) → 126
(:func:`pulpinit.errors.exec_failure`, which the resident supervisor shares).  The error
message names the command and the reason in one line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from pulpinit import log, signals, spawn
from pulpinit.errors import UsageError, exec_failure
from pulpinit.knobs import FORWARDED
from pulpinit.privileges import Identity, drop, identity_for
from pulpinit.redact import mask_argv

__all__ = ["exec_command", "hand_off"]


def hand_off(
    argv: Sequence[str],
    *,
    user: str,
    umask: int,
    supervise: bool,
    stop_timeout: float | None,
    env: Mapping[str, str],
    as_root: bool = False,
) -> NoReturn:
    """Exec ``argv`` as ``user`` (when root), or the resident supervisor around it (``supervise``).

    ``env`` is the role's environment (:func:`pulpinit.settings.childenv.child_environ`: without
    the secrets pulpinit consumed).  ``as_root``: keep root for ``argv`` (httpd, which drops its own children), logged
    as ``privileges.keep``.  Raises :class:`~pulpinit.errors.ExecError` (127/126) or
    :class:`~pulpinit.errors.UserError` (78) when the exec or the drop fails.
    """
    logger = log.get_logger(stage="handoff")
    identity = None if as_root else identity_for(user)  # None when not root (OpenShift's arbitrary UID)
    if as_root and os.geteuid() == 0:
        logger.info(
            "privileges.keep",
            uid=os.getuid(),
            gid=os.getgid(),
            reason="httpd binds 443 and reads its key as root, then drops its own children (User apache)",
        )
    elif identity is None:
        logger.info(
            "privileges.as_is", uid=os.getuid(), gid=os.getgid(), reason="not root: running as the current user"
        )
    if supervise:
        supervisor = [sys.executable, "-m", "pulpinit.supervise", "--umask", f"{umask:04o}"]
        supervisor += ["--log-format", log.current_format()]  # the supervisor logs as pulpinit did
        if identity is not None:
            supervisor += ["--user", user]
        if stop_timeout is not None:
            supervisor += ["--stop-timeout", f"{stop_timeout:g}"]
        logger.info("handoff.supervise", command=argv[0], user=identity.name if identity else None)
        unblock = signals.block_for_handoff(FORWARDED)
        try:
            exec_command([*supervisor, "--", *argv], env=env)
        finally:  # reached only when the exec failed
            unblock()
    if identity is not None:
        logger.info(
            "privileges.drop", user=identity.name, uid=identity.uid, gid=identity.gid, groups=list(identity.groups)
        )
    logger.info("handoff.exec", argv=mask_argv(argv))
    exec_command(list(argv), identity=identity, umask=umask, env=env)


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
    environ = dict(os.environ if env is None else env)  # a private copy: the drop sets HOME, USER, LOGNAME
    if identity is not None:
        drop(identity, umask, environ=environ)
    else:
        os.umask(umask)
    restore = spawn.default_dispositions()  # an ignored signal would stay ignored in the command
    try:
        os.execvpe(argv[0], list(argv), environ)  # noqa: S606 - argv as given, no shell
    except OSError as err:
        restore()
        raise exec_failure(argv[0], err, environ.get("PATH")) from None
