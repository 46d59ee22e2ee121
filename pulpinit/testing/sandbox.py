"""A place to run pulpinit against the fakes: a writable server.conf, the stand-ins, the variables.

:func:`prepare` fills a directory with a copy of the sample server.conf and the stand-ins for
``pulp-manage-db`` and ``celery`` (:mod:`pulpinit.testing.standins`), readable and runnable by
the user pulpinit drops to; :func:`variables` gives the environment that points pulpinit at that
directory and at the fake services — the five variables pulpinit needs outside a Pulp image
(``PULPINIT_CONFIG``, ``PULPINIT_USER``, ``PULPINIT_MIGRATION_FINGERPRINT``,
``PULPINIT_MANAGE_DB``, ``PULPINIT_CELERY``) plus the addresses and credentials of the fakes.
``python -m pulpinit.testing.tryit`` (the README's "Try it by hand") and the pytest plugin use it.
"""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from pulpinit.testing import SAMPLE_CONF, standins

#: The migration fingerprint of a sandbox (no Pulp RPMs to derive one from).
FINGERPRINT = "pulp-2.21.5-sandbox"
SERVER_NAME = "pulp.example.com"


@dataclass(frozen=True)
class Workdir:
    """A prepared directory: ``server.conf`` and ``bin/`` with the stand-ins."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "server.conf"

    @property
    def bindir(self) -> Path:
        """The stand-ins; the manage-db stand-in records its runs here (``runs.log``)."""
        return self.root / "bin"

    @property
    def manage_db(self) -> Path:
        return self.bindir / "pulp-manage-db"

    @property
    def celery(self) -> Path:
        return self.bindir / "celery"


def prepare(root: str | os.PathLike[str], sample: str | os.PathLike[str] = SAMPLE_CONF) -> Workdir:
    """Fill ``root`` (created when missing) with a copy of ``sample`` and the stand-ins.

    ``root`` becomes ``0755`` and ``bin/`` ``0777``: running as root, pulpinit checks that the
    user it drops to can read server.conf, and the manage-db stand-in writes its runs file as
    that user.  ``root`` must lie below directories that user can enter (not pytest's 0700
    ``tmp_path`` base): the system's temporary directory is fine.
    """
    workdir = Workdir(Path(root))
    workdir.root.mkdir(parents=True, exist_ok=True)
    workdir.root.chmod(0o755)
    shutil.copyfile(sample, workdir.config)
    workdir.config.chmod(0o644)
    workdir.bindir.mkdir(exist_ok=True)
    workdir.bindir.chmod(0o777)
    standins.write_manage_db(workdir.bindir)
    standins.write_celery(workdir.bindir)
    return workdir


def user() -> str:
    """A user that exists for ``PULPINIT_USER``: ``nobody`` when root (pulpinit drops to it, and the
    manage-db stand-in refuses root as the real one does), else the current user (pulpinit runs as is)."""
    if os.geteuid() == 0:
        return "nobody"
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # an arbitrary UID without a passwd entry: not root, so it is not resolved
        return str(os.getuid())


def variables(
    workdir: Workdir,
    *,
    seeds: str,
    broker_url: str,
    db_user: str | None = None,
    db_password: str | None = None,
    fingerprint: str = FINGERPRINT,
) -> dict[str, str]:
    """The variables that run pulpinit against ``seeds`` (MongoDB) and ``broker_url`` in ``workdir``."""
    found = {"PULP_DB_SEEDS": seeds}
    if db_user is not None:
        found["PULP_DB_USERNAME"] = db_user
    if db_password is not None:
        found["PULP_DB_PASSWORD"] = db_password
    return {
        **found,
        "PULP_BROKER_URL": broker_url,
        "PULP_SERVER_NAME": SERVER_NAME,
        "PULPINIT_CONFIG": str(workdir.config),
        "PULPINIT_USER": user(),
        "PULPINIT_MIGRATION_FINGERPRINT": fingerprint,
        "PULPINIT_MANAGE_DB": str(workdir.manage_db),
        "PULPINIT_CELERY": str(workdir.celery),
    }
