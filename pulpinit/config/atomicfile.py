"""Write server.conf where containers put it: atomically if possible, private when it holds secrets.

The normal way: the new content goes to a temporary file in the same directory
(created ``0600``), is fsync'ed, gets its mode and ownership, and is renamed over
the old file; then the directory is fsync'ed so the rename survives a crash.  A
concurrent reader sees the old file or the new one, never a half-written one.
The temporary file is removed on any error and when a signal interrupts the
write (pulpinit's stop handler turns a stop signal into an exception); a temporary
file left by a killed run (SIGKILL, node loss) is removed by a later run once it
is older than :data:`STALE_AFTER_S` — younger ones may belong to a replica
sharing the volume and writing right now.

Mode and ownership:

* the file keeps its mode, owner and group — except that a file holding a
  secret (``private``) loses every "other" bit, and, when pulpinit is root,
  gets the group of the user who runs Pulp with group read (``0640
  root:apache``, as Pulp's RPM ships it);
* a new file is ``0640``, group the Pulp user's group when root;
* not root (OpenShift's arbitrary UID): nothing is chown'ed;
* when root, the Pulp user must be able to read the result (every directory on
  the way included), else :class:`~pulpinit.errors.ConfigFileError` (exit 78)
  before anything is written: Pulp would not start.

Every write holds an exclusive ``flock`` on the existing file, from the check
that it is unchanged to the rename: replicas sharing a volume take turns.  When
the directory cannot be written (EACCES, EPERM, EROFS on the temporary file) or
the rename fails with EBUSY or EXDEV (a single-file bind mount, a Kubernetes
``subPath``), the file is rewritten in place instead, under that lock, with the
stop signals held back while it is written, truncated and fsync'ed.  :func:`replace_file` then returns why
atomicity was lost, for a warning.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pulpinit.errors import ConfigFileChanged, ConfigFileError
from pulpinit.knobs import FORWARDED
from pulpinit.privileges import READ, SEARCH, Identity, permits
from pulpinit.regularfile import FileProblem, read_regular

#: A temporary file older than this is a leftover of a killed run.
STALE_AFTER_S = 600.0
_SUFFIX = ".pulpinit"
_HELD_BACK = set(FORWARDED)  # every signal that could stop pulpinit (PULPINIT_STOP_SIGNAL included)
_NO_DIRECTORY = {errno.EACCES, errno.EPERM, errno.EROFS}
_NO_RENAME = {
    errno.EBUSY: "it is a mount point (a single-file bind mount or a Kubernetes subPath: EBUSY)",
    errno.EXDEV: "the rename crosses file systems (EXDEV)",
}


@dataclass(frozen=True)
class Attributes:
    """What the written file should be: mode, and owner/group to set (None: leave as is)."""

    mode: int
    uid: int | None
    gid: int | None


def temp_pattern(target: Path) -> str:
    """The glob of the temporary files written beside ``target``."""
    return os.path.join(glob.escape(str(target.parent)), f".{glob.escape(target.name)}.*{_SUFFIX}")


def remove_stale_temps(path: Path, now: float | None = None) -> list[str]:
    """Remove temporary files of killed runs beside ``path`` older than :data:`STALE_AFTER_S`."""
    target = path.resolve()
    now = time.time() if now is None else now
    removed = []
    for name in glob.glob(temp_pattern(target)):
        with contextlib.suppress(OSError):
            info = os.lstat(name)
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime > STALE_AFTER_S:
                os.unlink(name)
                removed.append(name)
    return removed


def attributes(
    before: os.stat_result | None, *, private: bool, reader: Identity | None, root: bool | None = None
) -> Attributes:
    """The mode and ownership the new file gets (see the module doc)."""
    root = os.geteuid() == 0 if root is None else root
    group = reader.gid if root and reader is not None else None
    if before is None:
        return Attributes(0o640, None, group)
    mode = stat.S_IMODE(before.st_mode)
    uid, gid = (before.st_uid, before.st_gid) if root else (None, None)
    if private:
        mode &= ~0o007
        if group is not None:
            gid, mode = group, mode | 0o040
    return Attributes(mode, uid, gid)


def check_readable(
    path: Path, target: Path, attrs: Attributes, before: os.stat_result | None, reader: Identity
) -> None:
    """Raise :class:`ConfigFileError` unless ``reader`` can read the file as it will be."""
    me = os.getuid(), os.getgid()
    uid = attrs.uid if attrs.uid is not None else before.st_uid if before is not None else me[0]
    gid = attrs.gid if attrs.gid is not None else before.st_gid if before is not None else me[1]
    who = f"{reader.name} (uid {reader.uid}), who runs Pulp,"
    if not permits(reader, READ, stat.S_IFREG | attrs.mode, uid, gid):
        raise ConfigFileError(
            str(path),
            f"{who} could not read it (mode {attrs.mode:04o}, owner {uid}, group "
            f"{gid}) and Pulp would fail to start: give group {reader.gid} read access",
        )
    for directory in target.parents:
        try:
            info = os.stat(directory)
        except OSError:
            continue
        if not permits(reader, SEARCH, info.st_mode, info.st_uid, info.st_gid):
            raise ConfigFileError(
                str(path),
                f"{who} could not reach it: no search (x) permission on "
                f"{directory} (mode {stat.S_IMODE(info.st_mode):04o}, owner {info.st_uid}, "
                f"group {info.st_gid}), and Pulp would fail to start",
            )


def check_unchanged_readable(path: Path, reader: Identity) -> None:
    """:func:`check_readable` for a file left as it is."""
    target = path.resolve()
    try:
        before = os.stat(target)
    except OSError:
        return
    attrs = Attributes(stat.S_IMODE(before.st_mode), before.st_uid, before.st_gid)
    check_readable(path, target, attrs, before, reader)


def check_replace(path: Path, *, private: bool, reader: Identity | None) -> None:
    """What :func:`replace_file` checks before it writes, without writing (``--dry-run``).

    Raises the :class:`ConfigFileError` a write would end with: the file is no regular file,
    ``reader`` could not read the result, or neither a new file beside it nor the file itself may
    be written.  (A write can still fail on what only writing shows: a full disk.)
    """
    target = path.resolve()
    try:
        before: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        before = None
    except OSError as exc:
        raise ConfigFileError(str(path), f"cannot be opened: {exc.strerror}") from None
    if before is not None and not stat.S_ISREG(before.st_mode):
        raise ConfigFileError(str(path), "is not a regular file")
    attrs = attributes(before, private=private, reader=reader)
    if reader is not None:
        check_readable(path, target, attrs, before, reader)
    if os.access(target.parent, os.W_OK | os.X_OK):
        return
    strerror = os.strerror(errno.EROFS if _read_only(target.parent) else errno.EACCES)
    if before is None:
        raise ConfigFileError(str(path), f"cannot write next to it: {strerror}")
    if not os.access(target, os.W_OK):
        why = f"cannot create a file in {target.parent} ({strerror})"
        raise ConfigFileError(str(path), f"cannot write it (permission denied), nor a new file beside it: {why}")


def _read_only(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def replace_file(
    path: Path, data: bytes, expected: bytes | None, *, private: bool = False, reader: Identity | None = None
) -> str | None:
    """Replace ``path`` with ``data``; ``None`` when done atomically, else why it was rewritten in place.

    ``expected`` is the content that was read (None: the file did not exist): if the file
    changed since, nothing is written (:class:`ConfigFileChanged`).  ``private``: the data
    holds a secret.  ``reader``: who runs Pulp (when pulpinit is root).  Writers take an
    exclusive ``flock`` on the existing file first, so replicas sharing a volume take turns (the
    later one then finds the file changed and plans again).
    """
    target = path.resolve()  # replace a symlink's target, not the symlink
    lock = _lock(path, target)
    try:
        return _replace_locked(path, target, data, expected, lock=lock, private=private, reader=reader)
    finally:
        if lock is not None:
            os.close(lock.fd)  # releases the lock


@dataclass(frozen=True)
class _Lock:
    fd: int
    writable: bool


def _lock(path: Path, target: Path) -> _Lock | None:
    """An exclusive ``flock`` on the existing file (None when there is none yet); waits for other writers."""
    import fcntl

    flags = os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    try:
        fd, writable = os.open(target, os.O_RDWR | flags), True
    except FileNotFoundError:
        return None
    except OSError:
        try:
            fd, writable = os.open(target, os.O_RDONLY | flags), False
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigFileError(str(path), f"cannot be opened: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigFileError(str(path), "is not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):  # no flock here: go on unlocked
            os.close(fd)
            raise ConfigFileError(str(path), f"cannot lock it: {exc.strerror}") from None
    except BaseException:
        os.close(fd)
        raise
    return _Lock(fd, writable)


def _replace_locked(
    path: Path,
    target: Path,
    data: bytes,
    expected: bytes | None,
    *,
    lock: _Lock | None,
    private: bool,
    reader: Identity | None,
) -> str | None:
    before = _current(path, target, expected)
    attrs = attributes(before, private=private, reader=reader)
    if reader is not None:
        check_readable(path, target, attrs, before, reader)
    try:
        fd, tmp = _temporary(target)
    except OSError as exc:
        if exc.errno in _NO_DIRECTORY and lock is not None:
            why = f"cannot create a file in {target.parent} ({exc.strerror})"
            return _rewrite_in_place(path, lock, data, attrs=attrs, why=why)
        raise ConfigFileError(str(path), f"cannot write next to it: {exc.strerror}") from None
    try:
        try:
            _write_all(fd, data)
            _set_attributes(fd, attrs)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, target)
        except OSError as exc:
            if exc.errno not in _NO_RENAME or lock is None:
                raise
            Path(tmp).unlink(missing_ok=True)
            return _rewrite_in_place(path, lock, data, attrs=attrs, why=_NO_RENAME[exc.errno])
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigFileError(str(path), f"cannot write it: {exc.strerror or exc}") from None
    except BaseException:  # a signal turned into an exception, or a bug: leave no copy of the secrets
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)
    return None


def _temporary(target: Path) -> tuple[int, str]:
    """A new private file beside ``target`` (``.NAME.RANDOM.pulpinit``, 0600), open for writing.

    What :func:`tempfile.mkstemp` does (``O_EXCL``, no symlink followed, close-on-exec), without
    the ~4 ms its module costs every start.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = os.path.join(target.parent, f".{target.name}.{os.urandom(6).hex()}{_SUFFIX}")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {target}")


def _current(path: Path, target: Path, expected: bytes | None) -> os.stat_result | None:
    """The file's stat now; raises :class:`ConfigFileChanged` when its content is not ``expected``."""
    try:
        before: os.stat_result | None = os.stat(target)
        current: bytes | None = read_regular(str(target))
    except FileNotFoundError:
        before, current = None, None
    except FileProblem as exc:
        if not exc.missing:
            raise ConfigFileError(str(path), f"cannot read it back: {exc.problem}") from None
        before, current = None, None
    except OSError as exc:
        raise ConfigFileError(str(path), f"cannot read it back: {exc.strerror}") from None
    if current != expected:
        raise ConfigFileChanged(str(path))
    return before


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _set_attributes(fd: int, attrs: Attributes) -> list[str]:
    """Apply ``attrs`` to the open file; returns what could not be done (not root, not the owner)."""
    problems = []
    try:
        os.fchmod(fd, attrs.mode)
    except PermissionError:
        problems.append(f"could not set its mode to {attrs.mode:04o} (not its owner)")
    if attrs.uid is not None or attrs.gid is not None:
        mine = os.fstat(fd)
        wanted = (mine.st_uid if attrs.uid is None else attrs.uid, mine.st_gid if attrs.gid is None else attrs.gid)
        if (mine.st_uid, mine.st_gid) != wanted:
            os.fchown(fd, *wanted)
    return problems


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold the stop signals back (they stay pending) while the file is half written."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_BACK)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _rewrite_in_place(path: Path, lock: _Lock, data: bytes, *, attrs: Attributes, why: str) -> str:
    """Rewrite the locked file (its content was checked under the lock) with the stop signals held back."""
    if not lock.writable:
        raise ConfigFileError(str(path), f"cannot write it (permission denied), nor a new file beside it: {why}")
    try:
        with _signals_held():
            problems = _set_attributes(lock.fd, attrs)  # private before the secrets go in
            os.lseek(lock.fd, 0, os.SEEK_SET)
            _write_all(lock.fd, data)
            os.ftruncate(lock.fd, len(data))
            os.fsync(lock.fd)
    except OSError as exc:
        raise ConfigFileError(str(path), f"cannot rewrite it in place: {exc.strerror or exc}") from None
    return "; ".join([f"rewrote it in place, not atomically (a reader may see it half written): {why}", *problems])


def _fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
