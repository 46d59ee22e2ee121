"""MongoDB errors in the migrate stage: transient ones are retried until a deadline, the rest classified.

Every MongoDB operation of the migrate stage (state reads, the lock's acquire,
renew and release, recording the result) goes through :meth:`Retrier.call`:

* **transient** errors — a failover, a restart, a network blip — are retried
  with the dependency wait's backoff (:class:`~pulpinit.wait.waiter.Backoff`: 0.1 s
  growing 1.5× per attempt, capped) until the operation's deadline; then the
  caller's ``give_up`` error is raised (exit 75 for a waiting role, 70 for the
  holder).  Transient means every ``ConnectionFailure`` (``AutoReconnect``,
  ``NotPrimaryError``, ``NetworkTimeout``, server-selection time-outs) and an
  ``OperationFailure`` whose code says "not primary / shutting down /
  interrupted by a state change" or that carries the ``RetryableWriteError``
  label;
* **permanent** errors become one line without secrets: ``Unauthorized`` (13)
  → :class:`~pulpinit.errors.NotAuthorized` (exit 78) naming the user, the
  database and the action; ``AuthenticationFailed`` (18) → exit 78; anything
  else → :class:`~pulpinit.errors.MigrationFailed` (exit 70).

Only pymongo's errors are caught: a signal raised as
:class:`~pulpinit.errors.Interrupted` in an attempt or in a backoff sleep
propagates at once, and no sleep is longer than the backoff's cap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pulpinit.errors import ConfigError, MigrationFailed, NotAuthorized, PulpinitError
from pulpinit.log import Logger, Throttle
from pulpinit.targets import MongoTarget
from pulpinit.wait.mongo_probe import scrubbed
from pulpinit.wait.waiter import Backoff

T = TypeVar("T")

#: Server error codes after which another attempt (maybe on another member) can succeed:
#: HostUnreachable, HostNotFound, MaxTimeMSExpired, NetworkTimeout, ShutdownInProgress,
#: PrimarySteppedDown, ExceededTimeLimit, SocketException, NotWritablePrimary,
#: InterruptedAtShutdown, InterruptedDueToReplStateChange, NotPrimaryNoSecondaryOk,
#: NotPrimaryOrSecondary.
TRANSIENT_CODES = frozenset({6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})
UNAUTHORIZED = 13
AUTHENTICATION_FAILED = 18


def is_transient(exc: BaseException) -> bool:
    """True for the MongoDB errors that a later attempt may not meet (see the module docstring)."""
    from pymongo import errors

    if isinstance(exc, errors.ConnectionFailure):
        return True
    if isinstance(exc, errors.OperationFailure):
        return exc.code in TRANSIENT_CODES or exc.has_error_label("RetryableWriteError")
    return False


class Retrier:
    """Runs MongoDB operations for one target with the policy of the module docstring."""

    def __init__(
        self,
        target: MongoTarget,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        log: Logger,
        cap: float = 2.0,
        log_interval: float = 10.0,
    ) -> None:
        self.target = target
        self.clock = clock
        self.sleep = sleep
        self.log = log
        self.cap = cap
        self._throttle = Throttle(log_interval, clock)

    def describe(self, exc: BaseException, *, brief: bool = False) -> str:
        """One line about a pymongo error, secrets masked; ``brief``: the server's message only."""
        details = getattr(exc, "details", None)
        message = details.get("errmsg") if brief and isinstance(details, dict) else None
        return scrubbed(str(message) if message else f"{type(exc).__name__}: {exc}", self.target, limit=240)

    def call(
        self,
        fn: Callable[[], T],
        *,
        what: str,
        action: str,
        deadline: float | Callable[[], float],
        give_up: Callable[[str], PulpinitError],
    ) -> T:
        """``fn()``, retried while it fails transiently and ``deadline`` (monotonic) is ahead.

        ``what`` says what the operation is for ("read the migration state"), ``action`` what it
        does on which collection ("find on pulpinit_locks") — both end up in the one-line errors.
        """
        from pymongo.errors import PyMongoError

        def until() -> float:
            return deadline() if callable(deadline) else deadline

        started = self.clock()
        try:
            return fn()  # the usual case: no retry, and tenacity is not even imported
        except PyMongoError as exc:
            if not is_transient(exc):
                raise self.permanent(exc, what, action) from None
            replay = [exc]  # tenacity's first attempt: the retries go on from it

        import tenacity

        def again() -> T:
            if replay:
                raise replay.pop()
            return fn()

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is not None and self._throttle.ready(force=state.attempt_number == 1):
                self.log.warning(
                    "migration.db_retry",
                    operation=what,
                    error=self.describe(exc),
                    attempt=state.attempt_number,
                    waited_s=round(self.clock() - started, 1),
                )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            stop=lambda _: self.clock() >= until(),
            wait=Backoff(0.1, self.cap),
            sleep=lambda seconds: self.sleep(max(0.0, min(seconds, until() - self.clock()))),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(again)
        except PyMongoError as exc:
            if is_transient(exc):
                raise give_up(f"MongoDB did not answer ({what}) within the deadline: {self.describe(exc)}") from None
            raise self.permanent(exc, what, action) from None

    def permanent(self, exc: BaseException, what: str, action: str) -> PulpinitError:
        """The one-line error (and exit code) for an error that no retry will cure."""
        code = getattr(exc, "code", None)
        detail = self.describe(exc)
        if code == UNAUTHORIZED:
            return NotAuthorized(
                self.target.username,
                self.target.database,
                action,
                f"needed to {what}: {self.describe(exc, brief=True)}",
            )
        if code == AUTHENTICATION_FAILED:
            return ConfigError(
                f"MongoDB rejected the credentials of user {self.target.username!r} (needed to {what}): {detail}"
            )
        return MigrationFailed(f"MongoDB refused to {what} ({action}): {detail}")
