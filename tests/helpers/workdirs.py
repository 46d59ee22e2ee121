"""A work directory the user pulpinit drops to can reach (pytest's tmp_path is below a 0700 directory).

Running as root, pulpinit checks that ``PULPINIT_USER`` can read server.conf, every directory on
the way included: tests that drop to ``nobody`` keep their server.conf here.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pulpinit.testing import SAMPLE_CONF, standins


@contextlib.contextmanager
def reachable(prefix: str, *, sample: bool = True) -> Iterator[Path]:
    """A fresh ``0755`` directory under the system's temporary directory (with a copy of the sample
    server.conf unless ``sample`` is false), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"pulpinit-{prefix}-"))
    path.chmod(0o755)
    if sample:
        shutil.copy(SAMPLE_CONF, path / "server.conf")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def with_standins(prefix: str) -> Iterator[Path]:
    """:func:`reachable`, with the celery and pulp-manage-db stand-ins, a file that is not executable
    (``not-executable``) and an empty ``bin/`` to put first in ``PATH`` (no rpm, no commands)."""
    with reachable(prefix) as path:
        standins.write_celery(path)
        standins.write_manage_db(path)
        (path / "not-executable").write_text("#!/bin/sh\ntrue\n")
        (path / "bin").mkdir()
        yield path
