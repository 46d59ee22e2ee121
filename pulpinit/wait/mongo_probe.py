"""Is MongoDB up?  One probe over pymongo, every failure classified.

Up means: the server answered ``ping`` (over an authenticated connection when
credentials are configured), its wire version is inside pymongo's supported
range, ``buildInfo`` told us its version, which the result reports, and
``listCollections`` on the Pulp database succeeded — ``ping`` needs no login,
so only that last command catches a server that requires authentication while
none is configured, or a user without rights on Pulp's database.  Then "can
log in" is told from "can work": an update that matches no document (so it
changes nothing) must be allowed, else the user may not write Pulp's database
and the probe reports ``not_authorized``.  It runs on an existing collection of
the Pulp database (some servers, e.g. SecantusDB, create a missing collection
even for an update that matches nothing), on an empty database on
``pulpinit_locks``, which the migration creates anyway.  Privileges are not
read from ``connectionStatus``: not every server lists them.

The seeds are resolved first (a name that does not resolve never reaches
pymongo), then :func:`pulpinit.wait.mongo_wire.preflight` sends a raw hello to the
seeds beside pymongo: refused, a timeout before the TCP connection, a TLS
port for a plain client or a plain one for a TLS client, and a server that is
not MongoDB at all are named from its answer (pymongo would say reset,
timeout or "Got response id …").  A pymongo timeout after the preflight got
its answer is ``handshake_timeout``: the server answered, then stalled.  A
``connection_refused`` result, whichever side saw it, carries the addresses the
seeds resolved to: the armed wait (:mod:`pulpinit.wait.armed`) knocks on them.

To answer fast in both directions the probe watches pymongo's own server
heartbeats (a ``ServerHeartbeatListener``) instead of sitting in server
selection until the timeout:

* a heartbeat failure on every seed (refused, DNS, TLS, reset, time-out) ends
  the probe at once with that error, classified from the exception chain;
* a heartbeat from a server of another replica set (or of none, when one is
  configured) is a replica-set mismatch, reported at once; pymongo itself
  would only drop the server silently and time out;
* otherwise ``ping`` and ``buildInfo`` run within the remaining budget
  (pymongo's ``timeout()``); an incompatible wire version surfaces there as
  ``ConfigurationError``, bad credentials as ``OperationFailure`` code 18.

The error text is one line without secrets: the password is masked wherever
it appears, URLs go through :func:`~pulpinit.redact.mask_url`, and pymongo's
long "full error" and topology dumps are cut.  ``latency_ms`` excludes the
one-time pymongo import (~100 ms on the first call in a process).
"""

from __future__ import annotations

import functools
import queue
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from pulpinit.knobs import LOCK_COLLECTION
from pulpinit.redact import REDACTOR, Redactor, mask_url
from pulpinit.targets import Address, Dependency, Failure, MongoTarget, ProbeResult
from pulpinit.wait import mongo_wire, net
from pulpinit.wait.mongo_client import connect
from pulpinit.wait.net import ProbeFailed, one_line

NAME: Dependency = "mongodb"
UNAUTHORIZED = 13
WRITE_CHECK_COLLECTION = LOCK_COLLECTION  # the migration lock's, which the migration creates anyway
AUTH_CODES = frozenset({11, 13, 18, 334})  # UserNotFound, Unauthorized, AuthenticationFailed, MechUnavailable
_NOISE = re.compile(
    r"(, full error: .*|, Timeout: [0-9.]+s|, Topology Description: .*"
    r"| \(configured timeouts: [^)]*\))"
)
_PATTERNS = (
    (re.compile(r"SSL|TLS|certificate", re.I), Failure.TLS),
    (re.compile(r"Name or service not known|name resolution|nodename nor servname|getaddrinfo", re.I), Failure.DNS),
    (re.compile(r"Connection refused", re.I), Failure.REFUSED),
    (re.compile(r"connection closed|Connection reset|Broken pipe", re.I), Failure.RESET),
    (re.compile(r"timed out|timeout", re.I), Failure.TIMEOUT),
    (re.compile(r"Authentication failed|requires authentication", re.I), Failure.AUTH),
    (re.compile(r"wire version", re.I), Failure.VERSION),
    (re.compile(r"Got response id|message length .* is larger", re.I), Failure.PROTOCOL),
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify(exc: BaseException) -> Failure:
    """The :class:`Failure` class of a pymongo (or socket) exception."""
    from pymongo import errors

    if "SSL handshake failed" in str(exc):
        return Failure.TLS
    for err in _chain(exc):
        if isinstance(err, errors.ConfigurationError) and "wire version" in str(err):
            return Failure.VERSION
        if isinstance(err, errors.OperationFailure) and err.code in AUTH_CODES:
            return Failure.AUTH
        if isinstance(err, socket.gaierror):
            return Failure.DNS
        if isinstance(err, ConnectionRefusedError):
            return Failure.REFUSED
        if isinstance(err, (ssl.SSLError, ssl.CertificateError)):
            return Failure.TLS
        if isinstance(err, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return Failure.RESET
        if isinstance(err, (TimeoutError, errors.NetworkTimeout, errors.ExecutionTimeout)):
            return Failure.TIMEOUT
    text = str(exc)
    for pattern, failure in _PATTERNS:
        if pattern.search(text):
            return failure
    return Failure.TIMEOUT if isinstance(exc, errors.ServerSelectionTimeoutError) else Failure.OTHER


def scrubbed(text: str, target: MongoTarget, limit: int = 300) -> str:
    """A pymongo error's text as one line of at most ``limit`` characters: secrets masked, noise dropped."""
    if target.password:
        text = Redactor([target.password])(text)
    # mask_url only looks at the start of a string: apply it to every word
    return one_line(_NOISE.sub("", " ".join(mask_url(word) for word in REDACTOR(text).split())), limit)


@functools.cache
def _watch_class() -> type[Any]:
    from pymongo import monitoring

    class HeartbeatWatch(monitoring.ServerHeartbeatListener):
        """Collects the first heartbeat outcome of each server and wakes the probe."""

        def __init__(self, seeds: int, replica_set: str | None) -> None:
            self._seeds = seeds
            self._replica_set = replica_set
            self._cond = threading.Condition()
            self.up = False
            self.failures: dict[Any, BaseException] = {}
            self.mismatches: dict[Any, str | None] = {}

        def started(self, event: monitoring.ServerHeartbeatStartedEvent) -> None:
            pass

        def succeeded(self, event: monitoring.ServerHeartbeatSucceededEvent) -> None:
            name = event.reply.replica_set_name
            with self._cond:
                if self._replica_set and name != self._replica_set:
                    self.mismatches[event.connection_id] = name
                else:
                    self.up = True
                self._cond.notify_all()

        def failed(self, event: monitoring.ServerHeartbeatFailedEvent) -> None:
            with self._cond:
                self.failures.setdefault(event.connection_id, event.reply)
                self._cond.notify_all()

        def _decided(self) -> bool:
            return self.up or len(self.failures) + len(self.mismatches) >= self._seeds

        def wait(self, deadline: float) -> bool:
            """Until a server answered or every seed failed; ``True`` when one answered."""
            with self._cond:
                self._cond.wait_for(
                    lambda: self._decided() or time.monotonic() >= deadline,
                    timeout=max(0.0, deadline - time.monotonic()),
                )
                return self.up

    return HeartbeatWatch


def _mismatch_message(mismatches: dict[Any, str | None], expected: str) -> str:
    (host, port), name = next(iter(mismatches.items()))
    actual = f"belongs to replica set {name!r}" if name else "is not a replica-set member"
    return f"server {host}:{port} {actual}, expected {expected!r}"


def _run(target: MongoTarget, timeout_s: float, deadline: float) -> str:
    import pymongo
    import pymongo.errors

    watch = _watch_class()(len(target.seeds), target.replica_set)
    try:
        client = connect(target, timeout_s, event_listeners=[watch])
    except (OSError, ValueError, pymongo.errors.ConfigurationError) as exc:
        if target.ssl:  # unreadable CA/cert/key file, key not matching the certificate
            raise ProbeFailed(Failure.TLS, f"TLS setup: {exc}") from exc
        raise
    try:
        if not watch.wait(deadline):
            if watch.mismatches:
                raise ProbeFailed(Failure.REPLICA_SET, _mismatch_message(watch.mismatches, str(target.replica_set)))
            if watch.failures:
                error = next(iter(watch.failures.values()))
                raise ProbeFailed(classify(error), str(error))
            raise ProbeFailed(Failure.TIMEOUT, f"no answer from {target.endpoint} within {timeout_s:g} s")
        with pymongo.timeout(max(0.001, deadline - time.monotonic())):
            client.admin.command("ping")
            info = client.admin.command("buildInfo")
            # ping needs no login; Pulp needs its database: a server that requires authentication
            # while no credentials are configured, or a user without rights on it, fails here.
            _check_rights(client, target)
        return str(info.get("version", "unknown"))
    finally:
        client.close()


def _check_rights(client: Any, target: MongoTarget) -> None:
    """Read (listCollections) and write (an update matching nothing) on the Pulp database."""
    from pymongo.errors import OperationFailure

    database = client[target.database]
    try:
        names = database.list_collection_names(filter={"type": "collection"})
        existing = sorted(name for name in names if not name.startswith("system."))
        collection = existing[0] if existing else WRITE_CHECK_COLLECTION
        database[collection].update_one({"_id": {"$in": []}}, {"$set": {"pulpinit_write_check": True}})
    except OperationFailure as exc:
        if exc.code != UNAUTHORIZED or not target.username:
            raise  # without credentials it is the authentication that is missing
        message = (exc.details or {}).get("errmsg") or str(exc)
        raise ProbeFailed(
            Failure.NOT_AUTHORIZED,
            f"user {target.username!r} may log in but not work in {target.database!r}: {message}",
        ) from exc


def probe_mongodb(target: MongoTarget, timeout_s: float = 1.0, *, resolver: net.Resolver | None = None) -> ProbeResult:
    """Probe MongoDB once; never raises for a MongoDB problem.

    The seeds are resolved first (``resolver`` replaces :func:`socket.getaddrinfo`; tests
    simulate DNS failures with it, and a name that does not resolve never reaches pymongo).
    Then the raw hello of :mod:`pulpinit.wait.mongo_wire` and pymongo run side by side, so the
    preflight costs no time: pymongo's success is the answer (with TLS verified, once the
    preflight, which alone checks the host name as Pulp's client does, agrees); when pymongo
    fails, the preflight's failure (which names what is on the port) is preferred to pymongo's.
    """
    import pymongo  # noqa: F401  (pay the import before the clock starts)

    started = time.monotonic()
    failure: Failure | None = None
    error: str | None = None
    version: str | None = None
    resolved: tuple[Address, ...] = ()
    try:
        reachable, resolved = mongo_wire.resolve_seeds(target, net.Deadline(timeout_s), resolver)
        version = _race(reachable, timeout_s, started + timeout_s, resolver)
    except ProbeFailed as exc:
        failure, error = exc.failure, str(exc)
    except Exception as exc:  # every pymongo error is a classified dependency failure
        failure, error = classify(exc), str(exc)
        if failure is Failure.AUTH and target.username:
            error = f"user {target.username!r} on {target.database!r}: {error}"
        elif failure is Failure.AUTH:
            error = f"the server requires authentication and no credentials are configured: {error}"
    latency_ms = (time.monotonic() - started) * 1000
    return ProbeResult(
        name=NAME,
        endpoint=target.endpoint,
        ok=failure is None,
        latency_ms=latency_ms,
        version=version,
        failure=failure,
        error=None if error is None else scrubbed(error, target),
        refused=resolved if failure is Failure.REFUSED else (),
    )


def _race(target: MongoTarget, timeout_s: float, deadline: float, resolver: net.Resolver | None) -> str:
    """pymongo's probe and the raw preflight in parallel; see :func:`probe_mongodb` for who wins."""
    outcomes: queue.Queue[tuple[str, object]] = queue.Queue()

    def run(name: str, work: Callable[[], object]) -> None:
        try:
            outcomes.put((name, work()))
        except Exception as exc:  # reported to the caller below
            outcomes.put((name, exc))

    preflight = functools.partial(mongo_wire.preflight, target, net.Deadline(deadline - time.monotonic()), resolver)
    for name, work in (("preflight", preflight), ("pymongo", lambda: _run(target, timeout_s, deadline))):
        threading.Thread(target=run, args=(name, work), name=f"pulpinit-mongo-{name}", daemon=True).start()
    results: dict[str, object] = {}
    # With TLS verified, only the preflight checks the host name (as Pulp's pymongo on Python 2 does):
    # pymongo's success is then the answer only once the preflight agrees.
    needs_preflight = target.ssl and target.verify_ssl
    while "pymongo" not in results or (
        "preflight" not in results and (needs_preflight or isinstance(results["pymongo"], Exception))
    ):
        name, value = outcomes.get(timeout=max(0.05, deadline - time.monotonic() + 1.0))
        results[name] = value
        if name == "preflight" and isinstance(value, Exception):
            raise value  # a definite diagnosis: no need to wait for pymongo
    answer = results["pymongo"]
    if not isinstance(answer, Exception):
        return str(answer)
    failure = answer.failure if isinstance(answer, ProbeFailed) else classify(answer)
    if failure is Failure.TIMEOUT:  # the preflight got an answer: the server stalled afterwards
        raise ProbeFailed(Failure.STALLED, f"connected, but: {answer}")
    raise answer
