"""Replace a file atomically, keeping its mode, owner and group.

A concurrent reader sees either the old file or the new one, never a half
written one: the new content goes to a temporary file in the same directory,
is fsync'ed, gets the old file's mode and ownership, and is renamed over the
old file; then the directory is fsync'ed so the rename survives a crash.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pulpinit.errors import ConfigFileChanged, ConfigFileError


def replace_file(path: Path, data: bytes, expected: bytes | None) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it over ``path``.

    The mode, owner and group of the file are kept (a new file gets ``0666 & ~umask``).
    ``expected`` is the content that was read: if the file changed since, nothing is written.
    """
    import tempfile

    target = path.resolve()  # replace a symlink's target, not the symlink
    try:
        before: os.stat_result | None = os.stat(target)
        current = target.read_bytes()
    except FileNotFoundError:
        before, current = None, None
    except OSError as exc:
        raise ConfigFileError(str(path), f"cannot read it back: {exc.strerror}") from None
    if current != expected:
        raise ConfigFileChanged(str(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".pulpinit")
    except OSError as exc:
        raise ConfigFileError(str(path), f"cannot write next to it: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            if before is not None:
                os.fchmod(out.fileno(), stat.S_IMODE(before.st_mode))
                mine = os.fstat(out.fileno())
                if (mine.st_uid, mine.st_gid) != (before.st_uid, before.st_gid):
                    os.fchown(out.fileno(), before.st_uid, before.st_gid)
            else:
                umask = os.umask(0o022)
                os.umask(umask)
                os.fchmod(out.fileno(), 0o666 & ~umask)
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigFileError(str(path), f"cannot write it: {exc.strerror or exc}") from None
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
