"""Read a file only when it is a regular file of bounded size: never hang, never exhaust memory.

A FIFO opened for reading blocks until a writer comes, ``/dev/zero`` never ends, a
directory cannot be read: :func:`read_regular` opens with ``O_NONBLOCK`` (so a FIFO
opens at once), checks with ``fstat`` that the file (after symlinks) is a regular
file no larger than the limit, and only then reads, at most ``limit + 1`` bytes
(a file that grows meanwhile is still refused).
"""

from __future__ import annotations

import errno
import os
import stat

#: The largest server.conf or ``_FILE`` secret pulpinit reads.
MAX_BYTES = 1024 * 1024

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileProblem(Exception):
    """The file cannot be used; ``problem`` says why in a few words (no contents)."""

    def __init__(self, problem: str, missing: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.missing = missing


def kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    return next((name for check, name in _KINDS if check(mode)), "not a regular file")


def read_regular(path: str, limit: int = MAX_BYTES) -> bytes:
    """The contents of ``path``; raises :class:`FileProblem` unless it is a regular file of ≤ ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise FileProblem("does not exist", missing=True) from None
    except OSError as exc:
        raise FileProblem(f"cannot be opened: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem(f"is {kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise FileProblem(f"is larger than {_size(limit)} ({info.st_size} bytes); is it the right file?")
        chunks = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise FileProblem(f"cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise FileProblem(f"is larger than {_size(limit)}; is it the right file?")
    return data


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"


def unreadable(path: str) -> str | None:
    """Why ``path`` cannot be read (``No such file or directory``, ``is a FIFO, …``), or None.

    Never blocks: a FIFO or a device is named, not read.
    """
    try:
        read_regular(path)
    except FileProblem as problem:
        return os.strerror(errno.ENOENT) if problem.missing else problem.problem
    return None
