"""Run pulp-manage-db while holding the lease: record, stream, renew, forward signals, release.

Called by :class:`pulpinit.migration.Migrator` once it holds the lock.  The
command runs as the unprivileged user (Popen's ``user``/``group``/
``extra_groups``, no ``preexec_fn``: a heartbeat thread is running), its
output streamed line by line into pulpinit's log.  SIGTERM or SIGINT is
forwarded to it; pulpinit then waits for it (at most
``PULPINIT_MANAGE_DB_STOP_TIMEOUT`` s, then SIGKILL), records the state,
releases the lock and exits 128+signal.  The lock is released on success and
on every failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from pulpinit import signals
from pulpinit.errors import ExecError, ExitCode, Interrupted, MigrationFailed

if TYPE_CHECKING:
    from pulpinit.migration import Migrator


def _popen_identity(migrator: Migrator) -> dict[str, Any]:
    from pulpinit.privileges import identity_for

    who = identity_for(migrator.toolkit.user)  # None when not root: run it as we are
    if who is None:
        return {}
    env = dict(os.environ, HOME=who.home, USER=who.name, LOGNAME=who.name)
    return {"user": who.uid, "group": who.gid, "extra_groups": list(who.groups), "env": env}


def _stream(pipe: IO[str], migrator: Migrator) -> None:
    for line in pipe:
        migrator.log.info("migration.output", line=line.rstrip("\n"))


def _record(migrator: Migrator, fields: dict[str, Any]) -> None:
    """Update the state document, but only while it is ours."""
    from pulpinit.migration import STATE_ID

    migrator.collection.update_one({"_id": STATE_ID, "owner": migrator.owner}, {"$set": fields})


def run_locked(migrator: Migrator) -> None:
    """Migrate unless done (re-checked under the lock); always release the lock."""
    from pulpinit.migration import EXIT_MEANINGS, STATE_ID

    try:
        if migrator.is_done(migrator.state()):
            migrator.log.info("migration.skipped", reason="done by another replica while we waited")
            return
        started_at = migrator.now()
        migrator.collection.replace_one(
            {"_id": STATE_ID},
            {"_id": STATE_ID, "fingerprint": migrator.fingerprint, "status": "running", "owner": migrator.owner,
             "started_at": started_at, "finished_at": None, "exit_code": None, "duration_s": None, "error": None},
            upsert=True,
        )
        migrator.log.info("migration.start", command=migrator.toolkit.manage_db, owner=migrator.owner)
        started = time.monotonic()
        code, signum = _run(migrator)
        duration = round(time.monotonic() - started, 3)
        if code == 0 and signum is None:
            _record(migrator, {"status": "done", "finished_at": migrator.now(), "exit_code": 0, "duration_s": duration})
            migrator.log.info("migration.done", duration_s=duration)
            return
        if signum is not None:
            error = f"interrupted by {signal.Signals(signum).name} (pulp-manage-db exit {code})"
        else:
            error = EXIT_MEANINGS.get(code, f"pulp-manage-db exited with {code}")
        _record(migrator, {"status": "failed", "finished_at": migrator.now(), "exit_code": code,
                           "duration_s": duration, "error": error})
        migrator.log.error("migration.failed", exit_code=code, error=error, duration_s=duration)
        if signum is not None:
            raise Interrupted(signum, "migrate")
        raise MigrationFailed(f"migration failed: {error}")
    finally:
        migrator.lock.release()
        migrator.log.info("migration.lock_released")


def _run(migrator: Migrator) -> tuple[int, int | None]:
    """Run the command; returns (exit code, the signal that interrupted us or None)."""
    command = migrator.toolkit.manage_db
    try:
        proc = subprocess.Popen([command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", umask=migrator.toolkit.umask, **_popen_identity(migrator))
    except FileNotFoundError:
        raise ExecError(command, "not found (PULPINIT_MANAGE_DB)", ExitCode.NOT_FOUND) from None
    except PermissionError:
        raise ExecError(command, "not executable (PULPINIT_MANAGE_DB)", ExitCode.NOT_EXECUTABLE) from None
    assert proc.stdout is not None  # noqa: S101 - stdout=PIPE above
    received: list[tuple[int, float]] = []  # (signal, when)

    def forward(signum: int, _frame: FrameType | None) -> None:
        received.append((signum, time.monotonic()))
        migrator.log.warning("migration.signal", signal=signal.Signals(signum).name, action="forwarded")
        proc.send_signal(signals.for_child(signum))  # the image's stop signal (SIGWINCH) becomes SIGTERM

    stop = threading.Event()
    give_back = signals.take_over(forward)  # every stop signal, until given back
    reader = threading.Thread(target=_stream, args=(proc.stdout, migrator), daemon=True)
    reader.start()
    heartbeat(migrator, stop, lost=proc.terminate)
    try:
        while True:
            try:
                code = proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                if received and time.monotonic() - received[0][1] > migrator.toolkit.manage_db_stop_timeout:
                    migrator.log.error("migration.kill", reason="did not exit after the signal")
                    proc.kill()
    finally:
        stop.set()
        give_back()
        reader.join(timeout=2)
    return code, (received[0][0] if received else None)


def heartbeat(migrator: Migrator, stop: threading.Event, lost: Callable[[], None]) -> threading.Thread:
    """Renew the lease every lease/3 until ``stop``; call ``lost`` once if it is no longer ours."""

    def beat() -> None:
        interval = migrator.toolkit.lease_seconds / 3
        while not stop.wait(interval):
            try:
                if not migrator.lock.renew():
                    migrator.log.error("migration.lease_lost", lock=migrator.lock.holder().describe(migrator.now()))
                    lost()
                    return
            except Exception as exc:  # a failed renewal is retried at the next beat
                migrator.log.warning("migration.renew_failed", error=str(exc))

    thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
    thread.start()
    return thread
