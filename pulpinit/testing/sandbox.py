"""A place to run pulpinit against the fakes: a writable server.conf, the stand-ins, the variables.

:func:`prepare` fills a directory with a copy of the sample server.conf, the stand-ins for
``pulp-manage-db``, ``celery`` and ``httpd`` (:mod:`pulpinit.testing.standins`), readable and
runnable by the user pulpinit drops to, and the deployment's keys as ``pulpinit pki init`` makes
them (:mod:`pulpinit.testing.keys`; the worker, api and crane roles check theirs);
:func:`variables` gives the environment that points pulpinit at that directory and at the fake
services — the five variables pulpinit needs outside a Pulp image (``PULPINIT_CONFIG``,
``PULPINIT_USER``, ``PULPINIT_MIGRATION_FINGERPRINT``, ``PULPINIT_MANAGE_DB``,
``PULPINIT_CELERY``), the key paths and the addresses and credentials of the fakes.
``python -m pulpinit.testing.tryit`` (the README's "Try it by hand") uses them; :class:`Sandbox`
(the pytest plugin's ``pulpinit_sandbox``) adds the runs of a test: pulpinit's commands or an
image's entrypoint script, each a :class:`~pulpinit.testing.runner.Result`.
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pulpinit.testing import SAMPLE_CONF, runner, standins
from pulpinit.testing.keys import keys_env, make_keys, reader_group
from pulpinit.testing.runner import Result

if TYPE_CHECKING:  # the fakes need the testing extra (mongomock): not imported to use this module
    from pulpinit.testing.fakeamqp import FakeAmqpBroker
    from pulpinit.testing.fakemongo import FakeMongo

#: The migration fingerprint of a sandbox (no Pulp RPMs to derive one from).
FINGERPRINT = "pulp-2.21.5-sandbox"
SERVER_NAME = "pulp.example.com"


@dataclass(frozen=True)
class Workdir:
    """A prepared directory: ``server.conf``, ``bin/`` with the stand-ins and ``keys/``."""

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

    @property
    def httpd(self) -> Path:
        return self.bindir / "httpd"

    @property
    def keys(self) -> Path:
        """The six files of ``pulpinit pki init`` (private keys readable by the user's group)."""
        return self.root / "keys"


def prepare(root: str | os.PathLike[str], sample: str | os.PathLike[str] = SAMPLE_CONF) -> Workdir:
    """Fill ``root`` (created when missing) with a copy of ``sample``, the stand-ins and the keys.

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
    standins.write_httpd(workdir.bindir)
    if not workdir.keys.exists():
        make_keys(workdir.keys, server_name=SERVER_NAME, group=reader_group(user()))
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
        **keys_env(workdir.keys),
    }


#: What a test run adds to :func:`variables`: JSON logs to parse, short deadlines, quick stand-ins.
TEST_VARIABLES = {
    "PULPINIT_LOG_FORMAT": "json",
    "PULPINIT_WAIT_TIMEOUT": "30",
    "PULPINIT_MIGRATION_TIMEOUT": "30",
    "STANDIN_SECONDS": "0",  # the pulp-manage-db stand-in is done at once
    "STANDIN_EXIT_AT_ONCE": "0",  # the celery stand-in prints its argv, then exits 0
}
#: Variables of the calling environment that would steer pulpinit or the stand-ins (a CI pod's
#: Service variables, a developer's PULP_*): a sandbox's runs do not inherit them.
_FOREIGN = ("PULP", "DB_", "MSG_", "SERVICE_HOST", "STANDIN_")


class Sandbox:
    """pulpinit against a fake MongoDB and a fake broker, in a work directory of its own.

    :meth:`run` runs a pulpinit command, :meth:`run_script` any command (an image's entrypoint
    script: ``pulpinit`` on its ``PATH`` is this one); both return a
    :class:`~pulpinit.testing.runner.Result`.  :attr:`env` holds the variables every run gets
    (:func:`variables` and :data:`TEST_VARIABLES`); a run's ``env`` adds to them or overrides them.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        mongo: FakeMongo,
        broker: FakeAmqpBroker,
        *,
        db_user: str | None = None,
        db_password: str | None = None,
        broker_user: str | None = None,
        broker_password: str | None = None,
    ) -> None:
        self.workdir = prepare(root)
        self.mongo, self.broker = mongo, broker
        self.env: dict[str, str] = {
            **variables(
                self.workdir,
                seeds=mongo.hostport,
                broker_url=broker.url(broker_user, broker_password),
                db_user=db_user,
                db_password=db_password,
            ),
            **TEST_VARIABLES,
        }

    @property
    def config(self) -> Path:
        """The server.conf pulpinit edits (``PULPINIT_CONFIG``)."""
        return self.workdir.config

    def use_config(self, source: str | os.PathLike[str]) -> Path:
        """Start from this server.conf (an image's own) instead of the sample; returns :attr:`config`."""
        shutil.copyfile(source, self.config)
        return self.config

    def environ(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a run: the caller's (without :data:`_FOREIGN`), :attr:`env`, then ``env``."""
        base = {name: value for name, value in os.environ.items() if not name.startswith(_FOREIGN)}
        return {**base, **self.env, **(env or {})}

    def run(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Result:
        """``pulpinit ARGS`` (this interpreter's) in the sandbox."""
        return runner.run(runner.pulpinit_argv(*args), self.environ(env), timeout=timeout)

    def run_script(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Result:
        """Any command (an image's entrypoint script) in the sandbox."""
        return runner.run(argv, self.environ(env), timeout=timeout, cwd=cwd)

    def migrations(self) -> list[standins.Run]:
        """The runs of the pulp-manage-db stand-in so far."""
        return standins.parsed_runs(self.workdir.bindir)
