"""Run Pulp's database migrations exactly once per version, across replicas and restarts.

``beat`` and ``pulpinit migrate`` migrate; every other role waits.  A state
document ``{_id: "migration-state", fingerprint, status, owner, started_at,
finished_at, exit_code, duration_s, error}`` beside the lease lock (see
:mod:`pulpinit.lease`) records the last migration.  When its fingerprint is
the current one and its status ``done``, nobody runs pulp-manage-db again.

The fingerprint names the schema version the image expects:
``PULPINIT_MIGRATION_FINGERPRINT`` when set, else ``rpm:`` + the first 16 hex
digits of the SHA-256 of the sorted ``name-version-release`` lines of the
installed Pulp packages (``rpm -qa 'pulp-*' 'python-pulp-*' 'python2-pulp-*'``).
An upgrade changes the packages, so the fingerprint, so it migrates again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import tenacity

from pulpinit import log
from pulpinit.deps import Backoff
from pulpinit.errors import ConfigError, MigrationPending
from pulpinit.knobs import Toolkit
from pulpinit.roles import Migration

if TYPE_CHECKING:
    from pulpinit.pipeline import Context

LOCK_ID = "migration-lock"
STATE_ID = "migration-state"
RPM_PATTERNS = ("pulp-*", "python-pulp-*", "python2-pulp-*")

#: pulp-manage-db's exit codes and what they mean for the operator.
EXIT_MEANINGS = {
    64: "pulp-manage-db refuses to run as root (set PULPINIT_USER to an unprivileged user)",
    65: "the database is newer than this image: run an image of the newer Pulp version",
    70: "pulp-manage-db failed — Pulp >= 2.12 also exits 70 while workers still heartbeat: stop them, "
    "or migrate from a Job first",
}


def fingerprint(toolkit: Toolkit, rpm: str = "rpm") -> tuple[str, str]:
    """``(fingerprint, how it was derived)``; ConfigError when it cannot be derived."""
    if toolkit.migration_fingerprint:
        return toolkit.migration_fingerprint, "PULPINIT_MIGRATION_FINGERPRINT"
    if shutil.which(rpm):
        done = subprocess.run([rpm, "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}\\n", *RPM_PATTERNS],
                              capture_output=True, text=True, timeout=30, check=False)
        packages = sorted(line.strip() for line in done.stdout.splitlines() if line.strip())
        if done.returncode == 0 and packages:
            digest = hashlib.sha256("\n".join(packages).encode()).hexdigest()[:16]
            return f"rpm:{digest}", f"{len(packages)} installed Pulp packages"
    raise ConfigError("cannot derive the migration fingerprint: no Pulp packages in an rpm database; "
                      "set PULPINIT_MIGRATION_FINGERPRINT (e.g. to the image's Pulp version)")


def owner_name(environ: Mapping[str, str]) -> str:
    """The lock owner: pod name (``HOSTNAME``, from the Downward API) or host name, plus the pid."""
    return f"{environ.get('HOSTNAME') or socket.gethostname()}:{os.getpid()}"


class Migrator:
    """The migration state machine of one pulpinit process."""

    def __init__(self, ctx: Context, collection: Any, now: Callable[[], Any],
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        from pulpinit.lease import LeaseLock

        self.ctx = ctx
        self.toolkit = ctx.toolkit
        self.collection = collection
        self.now = now
        self.sleep = sleep
        self.clock = clock
        self.owner = owner_name(ctx.environ)
        self.fingerprint, self.derived = ctx.fingerprint or fingerprint(self.toolkit)  # derived in settings
        self.lock = LeaseLock(collection, LOCK_ID, self.owner, self.toolkit.lease_seconds, now)
        self.log = log.get_logger(stage="migrate", fingerprint=self.fingerprint)

    def state(self) -> dict[str, Any]:
        return self.collection.find_one({"_id": STATE_ID}) or {}

    def is_done(self, state: dict[str, Any]) -> bool:
        return state.get("fingerprint") == self.fingerprint and state.get("status") == "done"

    def _retrying(self) -> tenacity.Retrying:
        cap = max(0.2, min(2.0, self.toolkit.lease_seconds / 3))
        return tenacity.Retrying(
            stop=tenacity.stop_after_delay(self.toolkit.migration_timeout),
            wait=Backoff(0.1, cap),
            retry=tenacity.retry_if_result(lambda finished: not finished),
            sleep=self.sleep,
            retry_error_callback=lambda _: False,
        )

    def run(self) -> None:
        """Migrate once under the lock, or skip when this fingerprint is done."""
        from pulpinit.migration_run import run_locked

        last_log = [-1e9]

        def attempt() -> bool:
            if self.is_done(self.state()):
                self.log.info("migration.skipped", reason="already done for this fingerprint")
                return True
            if self.lock.try_acquire():
                run_locked(self)
                return True
            if self.clock() - last_log[0] >= self.toolkit.wait_log_interval:
                last_log[0] = self.clock()
                self.log.info("migration.lock_held", lock=self.lock.holder().describe(self.now()))
            return False

        if not self._retrying()(attempt):
            raise MigrationPending(
                f"could not take the migration lock within {self.toolkit.migration_timeout:g} s: "
                f"{self.lock.holder().describe(self.now())}"
            )

    def wait(self) -> None:
        """Wait until this fingerprint is done; 75 at the deadline, or at once when it failed."""
        last_log = [-1e9]

        def attempt() -> bool:
            state = self.state()
            if self.is_done(state):
                return True
            if state.get("fingerprint") == self.fingerprint and state.get("status") == "failed":
                raise MigrationPending(f"the migration of {self.fingerprint} failed: {describe(state)}")
            if self.clock() - last_log[0] >= self.toolkit.wait_log_interval:
                last_log[0] = self.clock()
                self.log.info("migration.waiting", state=describe(state),
                              lock=self.lock.holder().describe(self.now()))
            return False

        started = self.clock()
        if not self._retrying()(attempt):
            raise MigrationPending(
                f"migrations for {self.fingerprint} not done after {self.toolkit.migration_timeout:g} s; "
                f"state: {describe(self.state())}; lock {self.lock.holder().describe(self.now())}"
            )
        self.log.info("migration.ready", waited_s=round(self.clock() - started, 3))


def describe(state: dict[str, Any]) -> str:
    """One line about a state document."""
    if not state:
        return "no migration recorded yet"
    text = f"{state.get('status')} (fingerprint {state.get('fingerprint')}, by {state.get('owner')}"
    if state.get("exit_code") is not None:
        text += f", exit {state['exit_code']}"
    text += ")"
    if state.get("error"):
        text += f": {state['error']}"
    return text


def stage(ctx: Context, mode: Migration, *, sleep: Callable[[float], None] = time.sleep) -> None:
    """Stage 4 of the pipeline: migrate (beat, migrate), wait (other roles) or skip."""
    if mode is Migration.SKIP:
        log.get_logger(stage="migrate").info("migration.not_waiting", reason="PULPINIT_MIGRATION_WAIT=false")
        return
    from pulpinit.lease import server_clock
    from pulpinit.mongo import connect

    with log.stage("migrate", mode=mode.value):
        target = ctx.settings.mongo_target()
        client = connect(target, max(ctx.toolkit.probe_timeout, 5.0))
        try:
            database = client[target.database]
            collection = database[ctx.toolkit.lock_collection]
            migrator = Migrator(ctx, collection, server_clock(database), sleep=sleep)
            if mode is Migration.RUN:
                migrator.run()
            else:
                migrator.wait()
        finally:
            client.close()

