"""Wheels of the distributions installed here, for installs that need no network.

The packaging tests install pulpinit (with and without its ``testing`` extra) into throwaway
virtual environments with ``pip install --no-index --find-links WHEELHOUSE``: pip resolves the
extra itself, from wheels only, and tests talk to nothing but loopback.  :func:`wheelhouse`
repacks the requirements' installed distributions, and everything they require in turn, into such
a directory (``python -m wheel pack`` over the files each distribution's ``RECORD`` lists).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

#: Files of an installed .dist-info that belong to the installation, not to the wheel.
_INSTALLATION = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}


def closure(requirements: Iterable[str], *, skip: Iterable[str] = ()) -> dict[str, metadata.Distribution]:
    """The installed distributions ``requirements`` need, transitively (extras and markers honoured)."""
    skipped = {canonicalize_name(name) for name in skip}
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(text) for text in requirements]
    while todo:
        requirement = todo.pop()
        key = canonicalize_name(requirement.name)
        if (key, frozenset(requirement.extras)) in seen:
            continue
        seen.add((key, frozenset(requirement.extras)))
        dist = metadata.distribution(requirement.name)
        if key not in skipped:
            found[key] = dist
        for text in dist.requires or []:
            needed = Requirement(text)
            extras = requirement.extras or {""}
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(needed)
    return found


def repack(dist: metadata.Distribution, into: Path) -> Path:
    """A wheel of one installed distribution, written into ``into``."""
    site = Path(str(dist.locate_file("")))
    files = [f for f in dist.files or () if f.parts[0] != ".." and "__pycache__" not in f.parts]
    info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    with tempfile.TemporaryDirectory(prefix="pulpinit-repack-") as staging:
        root = Path(staging) / info.removesuffix(".dist-info")
        for name in files:
            source = site / name
            if not source.is_file() or (name.parts[0] == info and name.name in _INSTALLATION):
                continue
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        before = set(into.glob("*.whl"))
        subprocess.run(
            [sys.executable, "-m", "wheel", "pack", "--dest-dir", str(into), str(root)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    (made,) = set(into.glob("*.whl")) - before
    return made


def wheelhouse(requirements: Iterable[str], into: Path, *, skip: Iterable[str] = ()) -> list[Path]:
    """Wheels of everything ``requirements`` need (but ``skip``), in ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    return [repack(dist, into) for dist in closure(requirements, skip=skip).values()]
