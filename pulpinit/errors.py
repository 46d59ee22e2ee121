"""The exception hierarchy and the exit codes it maps to.

The core raises; only the entry points turn an exception into an exit code:
:mod:`pulpinit.cli` (pulpinit itself), and the small programs it starts, the resident
supervisor (:mod:`pulpinit.supervise`) and the migration watchdog (:mod:`pulpinit.migrate.watchdog`).
Every leaf error carries the data that explains it (the variable, the file, the
dependency) and renders a one-line message that never contains a secret: callers put
masked values into these errors, never raw ones.

Standard library only, and no ``typing`` at run time: the resident supervisor imports it.
"""

from __future__ import annotations

import enum
import errno
import os
import signal
from collections.abc import Sequence


class ExitCode(enum.IntEnum):
    """Documented exit codes (sysexits.h where one fits)."""

    OK = 0
    #: A bug or a fault nothing in pulpinit expects, turned into one line by the CLI's last-resort
    #: guard: 1, what Python itself returns for an uncaught exception.  It is not 70, which stays
    #: the failed migration's code: pulp-manage-db's own EX_SOFTWARE, the number a migration Job's
    #: retries and an operator's alerts key on.
    UNEXPECTED = 1
    USAGE = 64  # EX_USAGE: bad command line
    UNAVAILABLE = 69  # EX_UNAVAILABLE: a dependency was unreachable by the deadline
    MIGRATION_FAILED = 70  # EX_SOFTWARE, pulp-manage-db's own code: the migration failed
    MIGRATION_PENDING = 75  # EX_TEMPFAIL: migrations not done by the deadline
    CONFIG = 78  # EX_CONFIG: bad environment or server.conf
    NOT_EXECUTABLE = 126
    NOT_FOUND = 127


class PulpinitError(Exception):
    """Base of every error pulpinit reports; ``exit_code`` is what the CLI returns."""

    exit_code: int = ExitCode.UNEXPECTED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(PulpinitError):
    """The command line is wrong; ``hint`` (one line) says how to write it instead."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(PulpinitError):
    """The environment or server.conf is unusable (exit 78)."""

    exit_code = ExitCode.CONFIG


class EnvValueError(ConfigError):
    """One environment variable (or its ``_FILE``) holds an invalid value."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class ConfigFileError(ConfigError):
    """server.conf is missing, unreadable, or cannot be parsed by the lens."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class ConfigFileChanged(ConfigFileError):
    """server.conf changed on disk between reading and writing (another process wrote it)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "changed on disk since it was read; not overwritten")


class UserError(ConfigError):
    """The user to run as does not exist or cannot be switched to."""

    def __init__(self, user: str, problem: str) -> None:
        super().__init__(f"PULPINIT_USER={user}: {problem}")
        self.user = user
        self.problem = problem


class KeyFileError(ConfigError):
    """A key or certificate is missing, unreadable, malformed, unsafe or does not match its pair."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class DependencyUnavailable(PulpinitError):
    """A dependency was still down at the deadline (exit 69)."""

    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, down: Sequence[str]) -> None:
        super().__init__("still down at the deadline: " + "; ".join(down))
        self.down = tuple(down)


class MigrationFailed(PulpinitError):
    """pulp-manage-db failed, or the migration could not be recorded (exit 70)."""

    exit_code = ExitCode.MIGRATION_FAILED


class LeaseLost(MigrationFailed):
    """The migration lease could not be kept: pulp-manage-db was stopped, nothing recorded as ours (70)."""

    def __init__(self, owner: str, problem: str) -> None:
        super().__init__(f"lost the migration lease of {owner}: {problem}")
        self.owner = owner
        self.problem = problem


class NotAuthorized(ConfigError):
    """The MongoDB user may log in but not do what pulpinit needs on Pulp's database (exit 78)."""

    def __init__(self, user: str | None, database: str, action: str, detail: str) -> None:
        who = f"MongoDB user {user!r}" if user else "the MongoDB connection (no user configured)"
        super().__init__(
            f"{who} may not {action} in database {database!r} ({detail}); grant it the readWrite role on {database!r}"
        )
        self.user = user
        self.database = database
        self.action = action


class MigrationPending(PulpinitError):
    """Migrations of this version are not done (waiting roles, exit 75)."""

    exit_code = ExitCode.MIGRATION_PENDING


class NotQuiet(MigrationPending):
    """Pulp processes still heartbeat at the migrating role's deadline: nothing was migrated (75)."""

    def __init__(self, live: Sequence[str], timeout_s: float) -> None:
        super().__init__(
            f"Pulp processes still heartbeat after {timeout_s:g} s (PULPINIT_MIGRATION_TIMEOUT), "
            f"pulp-manage-db would refuse to migrate: {', '.join(live)}; stop the old beat, resource "
            "manager and workers (or let their rollout finish), then start `pulpinit migrate` again"
        )
        self.live = tuple(live)
        self.timeout_s = timeout_s


class ExecError(PulpinitError):
    """The role's command cannot be executed: 127 (not found) or 126 (not executable), as shells and tini say."""

    def __init__(self, command: str, problem: str, exit_code: int) -> None:
        super().__init__(f"{command}: {problem}")
        self.command = command
        self.problem = problem
        self.exit_code = exit_code


def exec_failure(command: str, err: OSError, path: str | None = None) -> ExecError:
    """The :class:`ExecError` (127/126 and a one-line reason) for a failed ``execve`` of ``command``.

    ``path`` is the ``PATH`` the command was searched in (named when it was not found there).
    """
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


class Interrupted(PulpinitError):
    """A stop signal (SIGTERM, SIGINT, ``PULPINIT_STOP_SIGNAL``) arrived while pulpinit itself was working."""

    def __init__(self, signum: int, stage: str) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"{name} received during {stage}")
        self.signum = signum
        self.stage = stage
        self.exit_code = 128 + signum
