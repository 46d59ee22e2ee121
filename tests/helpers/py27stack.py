"""Pulp 2.21's own client stack on Python 2.7, installed once into a cache outside the work tree.

The differential tier (``tests/test_oracle.py``) asks these libraries, not our reading of them,
whether a dependency is up.  The pins are Pulp 2.21's, from the packaging Pulp shipped its EL7
repositories with (``pulp/pulp-packaging``, branch ``2.21``: ``python-celery`` 4.0.2,
``python-kombu`` 4.0.2, ``python-amqp`` 2.2.2, ``python-vine`` 1.1.3, ``python-billiard``
3.5.0.3, ``python-mongoengine`` 0.10.5); where PyPI cannot serve Pulp's build, the nearest:

* ``qpid-python``/``qpid-tools`` 1.36.0.post1: PyPI's newest (Pulp's repositories carried Qpid's
  own 1.37 builds; the connection code kombu drives is the same);
* ``pymongo`` 3.7.0: Pulp shipped 3.2 (``python-pymongo`` 3.2, patched only in ``bson.objectid``),
  which cannot log in to SecantusDB (the MongoDB the tests run offers SCRAM-SHA-256 only, which
  came with pymongo 3.7; the MongoDB servers of Pulp's day offered SCRAM-SHA-1 too).  3.7.0 is the
  oldest 3.x that logs in there, and it answers every case of the corpus as 3.2 does wherever 3.2
  can log in; 3.13.0, the last 3.x, does not (an empty ``replica_set`` line).  Both run beside it
  for information (:data:`ALTERNATES`);
* ``pytz``: any (celery imports it; nothing of it touches a connection);
* ``python-qpid-proton`` 0.32.0 (:data:`PROTON_PINS`, a stack of its own beside the judged one,
  since it compiles for a minute or two): gofer's proton adapter.  Pulp's packaging does not ship
  it (EL7 had it from EPEL; gofer 2.12 asks for >= 0.9); 0.32.0 is a release of Pulp 2.21's time
  that still builds on Python 2.7.  gofer itself is not installed: the driver mirrors its lines.

kombu 4.0.2's patches in Pulp's build (durable qpid messages, a FIPS-safe uuid, two qpid
transport fixes for Celery 4's event loop) do not touch how a connection is made.

:func:`stack` installs the pins with the Python 2.7 ``pip`` into
``${XDG_CACHE_HOME:-~/.cache}/pulpinit/py27-<hash of the pins>`` (a fresh clone reuses it; a new
pin list gets a new directory) and returns how to run ``python2.7`` with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from helpers.py27_configparser import find_python27

#: Pulp 2.21's client stack (module docstring: where each pin comes from).
PINS: tuple[str, ...] = (
    "celery==4.0.2",
    "kombu==4.0.2",
    "amqp==2.2.2",
    "vine==1.1.3",
    "billiard==3.5.0.3",
    "pytz==2019.3",
    "qpid-python==1.36.0.post1",
    "qpid-tools==1.36.0.post1",
    "mongoengine==0.10.5",
    "pymongo==3.7.0",
)


def pinned(project: str, pins: tuple[str, ...] = PINS) -> str:
    """The pin of ``project`` in ``pins`` (``amqp`` → ``amqp==2.2.2``)."""
    return next(p for p in pins if p.partition("==")[0] == project)


def with_pin(pin: str, pins: tuple[str, ...] = PINS) -> tuple[str, ...]:
    """``pins`` with ``pin`` in place of the same project's pin."""
    project = pin.partition("==")[0]
    return tuple(pin if p.partition("==")[0] == project else p for p in pins)


#: Other versions the tier runs beside the judged stack, for information (never judged): pin → the
#: client whose cases it runs.  py-amqp 2.1.4 is an older release Pulp deployments run (Pulp's packaging
#: ships 2.2.2); pymongo 3.2 is the one Pulp shipped (it cannot log in to SecantusDB), 3.13.0 the
#: last 3.x (what a Pulp installed with pip may have).
ALTERNATES: dict[str, str] = {"amqp==2.1.4": "celery", "pymongo==3.2": "mongodb", "pymongo==3.13.0": "mongodb"}


#: gofer's proton adapter's client library, installed apart from :data:`PINS` (it is compiled).
PROTON_PINS: tuple[str, ...] = ("python-qpid-proton==0.32.0",)


@dataclass(frozen=True)
class Stack:
    """A Python 2.7 and a directory holding the pinned libraries (and more directories to import from)."""

    python: str
    site: Path
    extra: tuple[Path, ...] = ()

    def env(self) -> dict[str, str]:
        """The environment to run ``python`` with this stack (nothing of the caller's Python leaks in)."""
        keep = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        path = os.pathsep.join(str(p) for p in (self.site, *self.extra))
        return {**keep, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pulpinit"


def pins_key(pins: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(pins).encode()).hexdigest()[:12]


def unavailable_reason() -> str | None:
    """Why the stack cannot be had here, or None."""
    if find_python27() is None:
        return "no Python 2.7 here (pyenv's ~/.pyenv/versions/2.7*/bin/python2.7, or set PULPINIT_PYTHON2)"
    return None


def stack(pins: tuple[str, ...] = PINS, timeout: float = 600) -> Stack:
    """The installed stack for ``pins``: from the cache, or installed now (~10 s); raises on failure."""
    python = find_python27()
    if python is None:
        raise RuntimeError(unavailable_reason())
    site = cache_root() / f"py27-{pins_key(pins)}"
    if (site / ".complete").exists():
        return Stack(python, site)
    site.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{site.name}.", dir=site.parent))
    try:
        done = subprocess.run(
            [
                python,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-warn-script-location",
                "--target",
                str(staging),
                *pins,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip could not install Pulp's client stack {pins}: {done.stderr[-2000:]}")
        (staging / ".complete").write_text("\n".join(pins) + "\n")
        with contextlib.suppress(OSError):  # another run installed the same pins meanwhile: use that
            staging.rename(site)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Stack(python, site)
