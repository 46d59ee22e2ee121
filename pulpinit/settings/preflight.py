"""Validate first: what a role will run is checked in the settings stage, before anything changes.

A missing user or command used to be found only after server.conf was rewritten and the whole
dependency wait was over.  For the roles, ``run`` and ``migrate`` these checks run in the
settings stage instead, in this order:

* ``PULPINIT_USER`` — when root, the user (and group) must exist: 78;
* the command the role hands over to — ``PULPINIT_CELERY`` for beat, resource-manager and
  worker, ``CMD`` for ``run -- CMD`` — must be found (127) and executable (126) by that user,
  searched in ``PATH`` the way the exec will;
* ``PULPINIT_PRE_MIGRATE`` (when set) and ``PULPINIT_MANAGE_DB`` for the migrating roles (beat,
  migrate): the same;
* the keys of the role (:data:`pulpinit.pki.check.ROLE_KEYS`: ``api``, ``crane``, ``worker``),
  each usable by who reads it (:func:`check_keys`): 78 naming the file; a certificate near its
  end is a warning, logged by the caller;
* the migration fingerprint for every role that migrates or waits for migrations: 78 when it
  cannot be derived (``rpm -qa`` finds no Pulp packages and ``PULPINIT_MIGRATION_FINGERPRINT``
  is not set).

``api`` and ``crane`` hand httpd over as root: their command is found and judged executable for
root, not for ``PULPINIT_USER``.

The role itself is not known here (roles are chosen above the stages): the checks get the
commands to find, as ``(variable, command)`` pairs, and the function that derives the
fingerprint (:func:`pulpinit.settings.fingerprint.derive`), or None when the role neither
migrates nor waits.  A run stops at the first problem, with its exit code and one line naming
the variable.
``--dry-run`` makes every check and reports each in the plan; a fingerprint that cannot be
derived is shown as unknown, with the reason.

"Executable by that user" is judged from the mode bits (owner, group, other) of the file and
of every directory on its path, as the kernel would for that uid and its groups; ACLs and file
capabilities are not consulted.  The exec itself still reports anything this misses (126/127).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pulpinit.errors import ConfigError, ExecError, KeyFileError, PulpinitError, UserError, exec_failure
from pulpinit.privileges import EXECUTE, SEARCH, Identity, permits, resolve_user, running_as_root
from pulpinit.settings.toolkit import Toolkit

if TYPE_CHECKING:
    from pulpinit.pki.check import KeyWarning

Status = Literal["ok", "problem", "unknown", "warning"]
OK: Status = "ok"
PROBLEM: Status = "problem"
UNKNOWN: Status = "unknown"  # a fingerprint that cannot be derived
WARNING: Status = "warning"  # worth a line, not a stop (crane's data_dir)
#: Derives the migration fingerprint from ``PULPINIT_MIGRATION_FINGERPRINT`` (or rpm).
Fingerprinter = Callable[[str | None], tuple[str, str]]


@dataclass(frozen=True)
class Check:
    """One check: what was checked, its status, and what was found (or the one-line problem)."""

    name: str  # the variable (PULPINIT_USER, PULPINIT_CELERY, PULPINIT_MANAGE_DB), "command" or "fingerprint"
    status: Status
    detail: str
    error: PulpinitError | None = None


@dataclass(frozen=True)
class Preflight:
    """The checks of one role, and the migration fingerprint when it was derived."""

    checks: tuple[Check, ...]
    fingerprint: tuple[str, str] | None = None  # (fingerprint, how it was derived)
    keys: KeyReport | None = None  # the key check, when the role uses keys and it ran

    @property
    def problems(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if check.error is not None)

    def raise_first(self) -> None:
        """Raise the first problem's error (exit 78, 127 or 126)."""
        for check in self.problems:
            assert check.error is not None  # noqa: S101 - problems have errors
            raise check.error


@dataclass(frozen=True)
class KeyReport:
    """What the key check of a role found: its row, the files it checked, the warnings to log."""

    check: Check
    files: tuple[str, ...] = ()
    warnings: tuple[KeyWarning, ...] = ()


#: The key check of a role (:func:`check_keys` with the role's name and settings bound; None: no key).
KeyChecker = Callable[[], "KeyReport | None"]


def check_role(
    toolkit: Toolkit,
    commands: Sequence[tuple[str | None, str]],
    search_path: str,
    *,
    fingerprint: Fingerprinter | None,
    complete: bool = False,
    as_root: bool = False,
    keys: KeyChecker | None = None,
) -> Preflight:
    """Check a role in order: the user, ``commands`` (``(variable or None, command)`` for every
    program it starts; the first one as root when ``as_root``), the keys (``keys``), then the
    fingerprint (unless ``fingerprint`` is None); stop at the first problem unless ``complete``
    (``--dry-run``)."""
    checks: list[Check] = []
    user, identity = check_user(toolkit)
    checks.append(user)
    for index, (variable, command) in enumerate(commands):
        if checks[-1].error is not None and not complete:
            return Preflight(tuple(checks))
        who = resolve_user("0") if as_root and index == 0 and running_as_root() else identity
        checks.append(check_command(variable, command, search_path, who))
    report = None
    if keys is not None and (complete or checks[-1].error is None):
        report = keys()
        if report is not None:
            checks.append(report.check)
    derived = None
    if fingerprint is not None and (complete or checks[-1].error is None):
        found, derived = check_fingerprint(toolkit, fingerprint)
        checks.append(found)
    return Preflight(tuple(checks), derived, report)


def check_keys(role: str, conf: Mapping[str, str], toolkit: Toolkit) -> KeyReport | None:
    """The key check of ``role`` (:func:`pulpinit.pki.check.check_keys`); None when it uses no key.

    ``conf`` is server.conf's effective ``{section.key: value}`` (where Pulp reads its keys);
    httpd's pair is where ``PULPINIT_HTTPD_CERT``/``PULPINIT_HTTPD_KEY`` say.
    """
    from pulpinit.pki import check

    needed = check.ROLE_KEYS.get(role, ())
    if not needed:
        return None
    paths = check.key_paths(conf, httpd_cert=toolkit.httpd_cert, httpd_key=toolkit.httpd_key)
    files = tuple(paths[key.name] for key in needed)
    try:
        warnings = check.check_keys(role, paths, check.readers_for(toolkit.user))
    except KeyFileError as exc:
        return KeyReport(Check("keys", PROBLEM, str(exc), exc), files)
    except UserError as exc:  # the user check above reports it; the keys cannot be judged for it
        return KeyReport(Check("keys", UNKNOWN, f"not checked: {exc}"), files)
    return KeyReport(Check("keys", OK, f"{len(files)} files of the {role} role"), files, tuple(warnings))


def check_user(toolkit: Toolkit) -> tuple[Check, Identity | None]:
    """``PULPINIT_USER`` must exist when root (it is not used otherwise)."""
    if not running_as_root():
        return Check("PULPINIT_USER", OK, f"not root: runs as uid {os.getuid()}, the variable is not used"), None
    try:
        who = resolve_user(toolkit.user)
    except UserError as exc:
        return Check("PULPINIT_USER", PROBLEM, str(exc), exc), None
    return Check("PULPINIT_USER", OK, f"{who.name}: uid {who.uid}, gid {who.gid}"), who


def check_command(variable: str | None, command: str, search_path: str, who: Identity | None) -> Check:
    """The command must be found (127) and executable by ``who`` (126)."""
    try:
        path = locate(command, search_path, who)
    except ExecError as exc:
        if variable:
            exc = ExecError(exc.command, f"{exc.problem} ({variable})", exc.exit_code)
        return Check(variable or "command", PROBLEM, str(exc), exc)
    return Check(variable or "command", OK, path)


def check_fingerprint(toolkit: Toolkit, derive: Fingerprinter) -> tuple[Check, tuple[str, str] | None]:
    """Derive the migration fingerprint (``rpm -qa`` unless it is set)."""
    try:
        value, how = derive(toolkit.migration_fingerprint)
    except ConfigError as exc:
        return Check("fingerprint", UNKNOWN, str(exc), exc), None
    return Check("fingerprint", OK, f"{value} ({how})"), (value, how)


def locate(command: str, search_path: str, who: Identity | None) -> str:
    """The file the exec will run for ``command`` as ``who`` (None: as this process).

    Searched like ``os.execvpe``: a name with a ``/`` is taken as it is, any other is looked up
    in every ``PATH`` directory in turn; a file found but not executable is remembered and the
    search goes on.  Raises :class:`ExecError` 127 (nothing found) or 126 (not executable).
    """
    if "/" in command:
        candidates = [command]
    else:
        candidates = [os.path.join(directory or ".", command) for directory in search_path.split(os.pathsep)]
    refused: OSError | None = None
    for candidate in candidates:
        problem = _refusal(candidate, who)
        if problem is None:
            return candidate
        if problem.errno not in (errno.ENOENT, errno.ENOTDIR) and refused is None:
            refused = problem
    raise exec_failure(command, refused or OSError(errno.ENOENT, "not found"), search_path)


def _refusal(path: str, who: Identity | None) -> OSError | None:
    """Why ``path`` cannot be executed by ``who``, or None when it can."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return exc
    if stat.S_ISDIR(info.st_mode):
        return OSError(errno.EISDIR, "is a directory")
    denied = OSError(errno.EACCES, "permission denied")
    if not stat.S_ISREG(info.st_mode):
        return denied
    if who is None:
        return None if os.access(path, os.X_OK) else denied
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        try:
            parent_info = os.stat(directory)
            searchable = permits(who, SEARCH, parent_info.st_mode, parent_info.st_uid, parent_info.st_gid)
        except OSError as exc:
            return exc
        if not searchable:
            return denied
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return None if permits(who, EXECUTE, info.st_mode, info.st_uid, info.st_gid) else denied
