"""Who the role runs as: resolve ``PULPINIT_USER`` and drop root the way gosu does.

Stdlib only: the resident supervisor (:mod:`pulpinit.supervise`) imports this
module, and it must stay small.

* :func:`resolve_user` accepts ``user``, ``user:group``, ``uid`` and
  ``uid:gid``.  Numeric ids need no passwd/group entry (``HOME`` is then
  ``/`` and, without an explicit group, the gid equals the uid so that the
  process never silently keeps the root group).  An unknown *name* raises
  :class:`~pulpinit.errors.UserError` (exit 78).
* Supplementary groups come from the group database when only a user is named
  (like gosu/su-exec); an explicit group means that group alone.
* :func:`drop` calls ``setgroups`` → ``setgid`` → ``setuid`` (this order: the
  first two need root), sets ``HOME``/``USER``/``LOGNAME`` and the umask, then
  checks that root cannot be regained (``setuid(0)`` must fail with EPERM).
* When the process is not root (OpenShift's arbitrary UID) nothing can be
  switched: :func:`identity_for` returns ``None`` and the caller runs the
  command as is, logging one info line.
"""

from __future__ import annotations

import dataclasses
import errno
import grp
import os
import pwd
import stat
from collections.abc import MutableMapping
from pathlib import Path

from pulpinit.errors import UserError

__all__ = [
    "EXECUTE",
    "READ",
    "SEARCH",
    "WRITE",
    "Identity",
    "access_problem",
    "drop",
    "identity_for",
    "permits",
    "resolve_user",
    "running_as_root",
]


@dataclasses.dataclass(frozen=True)
class Identity:
    """A resolved user: what :func:`drop` switches to."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    def environ(self) -> dict[str, str]:
        """The variables a login would set for this user (``HOME``, ``USER``, ``LOGNAME``)."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def running_as_root() -> bool:
    """True when the effective uid is 0, i.e. when a privilege drop is possible."""
    return os.geteuid() == 0


def _resolve_group(spec: str, group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise UserError(spec, f"no such group {group!r} in the group database") from None


def resolve_user(spec: str) -> Identity:
    """Resolve ``user``, ``user:group``, ``uid`` or ``uid:gid`` to an :class:`Identity`."""
    user, sep, group = spec.partition(":")
    if not user or (sep and not group):
        raise UserError(spec, "expected user, user:group, uid or uid:gid")
    entry: pwd.struct_passwd | None
    if user.isdigit():
        try:
            entry = pwd.getpwuid(int(user))
        except KeyError:
            entry = None
    else:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise UserError(spec, f"no such user {user!r} in the passwd database") from None
    if entry is None:
        uid = int(user)
        gid = _resolve_group(spec, group) if group else uid
        return Identity(name=user, uid=uid, gid=gid, groups=(gid,), home="/")
    if group:
        gid = _resolve_group(spec, group)
        groups: tuple[int, ...] = (gid,)
    else:
        gid = entry.pw_gid
        groups = tuple(dict.fromkeys([gid, *os.getgrouplist(entry.pw_name, gid)]))
    return Identity(name=entry.pw_name, uid=entry.pw_uid, gid=gid, groups=groups, home=entry.pw_dir or "/")


def identity_for(spec: str) -> Identity | None:
    """The identity to drop to, or ``None`` when not root (run as is: OpenShift).

    The spec is resolved only when a drop will happen, so an arbitrary UID
    without a passwd entry never fails on a user it could not switch to anyway.
    """
    if not running_as_root():
        return None
    return resolve_user(spec)


def _check_no_way_back(identity: Identity) -> None:
    """Raise unless root is gone for good (setuid(0)/setgid(0) fail with EPERM)."""
    probes: list[tuple[str, int]] = []
    if identity.uid != 0:
        probes.append(("setuid", 0))
    if identity.gid != 0 and identity.uid != 0:
        probes.append(("setgid", 0))
    for call, target in probes:
        try:
            getattr(os, call)(target)
        except PermissionError:
            continue
        except OSError as err:
            if err.errno == errno.EPERM:
                continue
            raise UserError(identity.name, f"{call}(0) failed oddly after the drop: {err}") from None
        raise UserError(identity.name, f"{call}(0) succeeded after the drop: root can be regained")


def drop(
    identity: Identity,
    umask: int = 0o022,
    *,
    environ: MutableMapping[str, str] | None = None,
) -> None:
    """Switch this process to *identity* for good, then set the umask.

    ``HOME``, ``USER`` and ``LOGNAME`` are set in *environ* (``os.environ`` by
    default; pass the mapping you will hand to ``execve``).  Raises
    :class:`~pulpinit.errors.UserError` when a call fails or root could be
    regained afterwards.
    """
    try:
        os.setgroups(list(identity.groups))
        os.setgid(identity.gid)
        os.setuid(identity.uid)
    except OSError as err:
        raise UserError(
            identity.name, f"cannot switch to uid {identity.uid} gid {identity.gid}: {err.strerror}"
        ) from None
    _check_no_way_back(identity)
    target = os.environ if environ is None else environ
    target.update(identity.environ())
    os.umask(umask)


# -- what a user may read --------------------------------------------------------------------

_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2
#: Permission bits, or'ed in ``want``: read, write, execute (search, for a directory).
READ, WRITE, EXECUTE = 4, 2, 1
SEARCH = EXECUTE


def _root_capabilities() -> tuple[bool, bool]:
    """``(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)`` in this process's effective set, when it runs as root.

    A role that stays root keeps them across the hand-over; a container started with
    ``--cap-drop`` may lack them, and then uid 0 gets the permission bits like anyone else.
    """
    if not running_as_root():
        return False, False
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    return bool(caps >> _CAP_DAC_OVERRIDE & 1), bool(caps >> _CAP_DAC_READ_SEARCH & 1)
    except (OSError, ValueError):
        pass
    return False, False


def permits(who: Identity, want: int, mode: int, uid: int, gid: int) -> bool:
    """Whether the kernel grants ``who`` every permission of ``want`` on a file of ``mode`` owned by ``uid:gid``.

    The one permission check of the package, for the user a role runs as after the drop.  uid 0
    with CAP_DAC_OVERRIDE reads, writes and searches anything and executes a file with any x bit
    (with only CAP_DAC_READ_SEARCH it reads and searches anything); any other user gets the bits
    of the one class it falls in — owner, else group (primary or supplementary), else other —
    even when a later class would grant more.  ``mode`` includes the file type when ``want`` asks
    to execute.  ACLs are not read.
    """
    if who.uid == 0:
        override, read_search = _root_capabilities()
        directory = stat.S_ISDIR(mode)
        if override and (not want & EXECUTE or directory or mode & 0o111):
            return True
        if read_search and not want & WRITE and (not want & EXECUTE or directory):
            return True
    if who.uid == uid:
        bits = mode >> 6
    elif gid == who.gid or gid in who.groups:
        bits = mode >> 3
    else:
        bits = mode
    return bits & want == want


def _allowed(st: os.stat_result, who: Identity, want: int) -> bool:
    return permits(who, want, st.st_mode, st.st_uid, st.st_gid)


def access_problem(real: Path, who: Identity, want: int = READ) -> str | None:
    """Why ``who`` cannot read (``want`` 4; 5 to list a directory) the symlink-free path ``real``, or None.

    The permission bits of ``real`` and of every directory above it (search), as the kernel
    checks them for that uid and its groups (:func:`permits`).
    """
    for directory in reversed(real.parents):
        if not _allowed(os.stat(directory), who, SEARCH):
            return f"not readable by {who.name} (uid {who.uid}): no search permission on {directory}"
    st = os.stat(real)
    if not _allowed(st, who, want):
        return (
            f"not readable by {who.name} (uid {who.uid}, gid {who.gid}): mode {stat.S_IMODE(st.st_mode):04o}, "
            f"owner {st.st_uid}:{st.st_gid}"
        )
    return None
