"""The knobs of the migrate stage, as one value: :class:`MigrationPolicy`."""

from __future__ import annotations

from dataclasses import dataclass

from pulpinit.knobs import LOCK_COLLECTION
from pulpinit.settings.toolkit import Toolkit
from pulpinit.wait import waiter

__all__ = ["MigrationPolicy"]


@dataclass(frozen=True)
class MigrationPolicy:
    """The knobs of the migrate stage."""

    lock_collection: str = LOCK_COLLECTION
    lease_seconds: float = 60.0
    timeout: float = 600.0  # PULPINIT_MIGRATION_TIMEOUT
    log_interval: float = 10.0  # the progress lines' pace: the wait's (waiter.PACING)
    connect_timeout: float = 5.0  # per-attempt MongoDB timeout (at least 5 s)
    manage_db: str = "/usr/bin/pulp-manage-db"
    stop_timeout: float = 15.0  # PULPINIT_MANAGE_DB_STOP_TIMEOUT
    user: str = "apache"
    umask: int = 0o022
    quiet_seconds: float = 92.0  # PULPINIT_QUIET_SECONDS (0: do not wait for a quiet database)
    pre_migrate: tuple[str, ...] | None = None  # PULPINIT_PRE_MIGRATE

    @property
    def poll_cap(self) -> float:
        """The longest pause between two looks at the database (and between two retries)."""
        return max(0.2, min(2.0, self.lease_seconds / 3))

    @classmethod
    def from_toolkit(cls, toolkit: Toolkit) -> MigrationPolicy:
        return cls(
            lease_seconds=toolkit.lease_seconds,
            timeout=toolkit.migration_timeout,
            log_interval=waiter.PACING.log_interval,
            connect_timeout=max(toolkit.probe_timeout, 5.0),
            manage_db=toolkit.manage_db,
            stop_timeout=toolkit.manage_db_stop_timeout,
            user=toolkit.user,
            umask=toolkit.umask,
            quiet_seconds=toolkit.quiet_seconds,
            pre_migrate=toolkit.pre_migrate,
        )
