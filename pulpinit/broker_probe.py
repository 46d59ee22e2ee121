"""Probe the Celery broker (Pulp's ``tasks.broker_url``) over its real protocol.

The URL scheme chooses the protocol, as it does for Celery (kombu):

==================  ============  =====================================================
scheme              protocol      TLS
==================  ============  =====================================================
``qpid://``         AMQP 1.0      when ``BrokerTarget.ssl`` (Pulp's ``celery_require_ssl``)
``qpid+ssl://``     AMQP 1.0      always (pulpinit's spelling of "qpid over TLS")
``tcp://``          AMQP 1.0      when ``BrokerTarget.ssl`` ([messaging] url form, Qpid)
``ssl://``          AMQP 1.0      always ([messaging] url form, Qpid over TLS)
``amqp://``         AMQP 0-9-1    when ``BrokerTarget.ssl``
``pyamqp://``       AMQP 0-9-1    when ``BrokerTarget.ssl``
``amqps://``        AMQP 0-9-1    always (kombu: RabbitMQ over TLS)
==================  ============  =====================================================

The default port is 5672, or 5671 with TLS.  TLS always verifies the server's
certificate chain (``cacert``, else the system CAs) and host name; ``certfile``
/``keyfile`` give a client certificate.

AMQP 1.0 (Qpid, RabbitMQ's ``rabbitmq_amqp1_0`` plugin): SASL PLAIN when the URL
has a user *and* a password, ANONYMOUS otherwise (the 2014 default
``qpid://guest@host`` therefore logs in anonymously).  AMQP 0-9-1: PLAIN with the
URL's credentials, ``guest``/``guest`` for missing ones (kombu's defaults); the
URL's path is the virtual host (``/`` when empty; ``amqp://h//`` is ``/``).

:func:`probe_broker` never raises for a broker problem: it returns a
:class:`~pulpinit.probe.ProbeResult` whose error is one line without the password.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from pulpinit import amqp091, amqp10
from pulpinit.probe import BrokerTarget, Failure, ProbeResult
from pulpinit.probe_net import Deadline, ProbeFailed, connect, one_line, tls_context, wrap_tls
from pulpinit.redact import MASK, mask_url

AMQP10, AMQP091 = "AMQP 1.0", "AMQP 0-9-1"

# scheme → (protocol, TLS forced by the scheme)
SCHEMES: dict[str, tuple[str, bool]] = {
    "qpid": (AMQP10, False),
    "qpid+ssl": (AMQP10, True),
    "tcp": (AMQP10, False),
    "ssl": (AMQP10, True),
    "amqp": (AMQP091, False),
    "pyamqp": (AMQP091, False),
    "amqps": (AMQP091, True),
}


@dataclass(frozen=True)
class BrokerEndpoint:
    """A parsed broker URL: where to connect, with which protocol and credentials."""

    protocol: str  # AMQP10 | AMQP091
    host: str
    port: int
    tls: bool
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    vhost: str = "/"


def parse_broker_url(url: str, *, ssl: bool = False) -> BrokerEndpoint:
    """Parse a ``tasks.broker_url``; raises :class:`ProbeFailed` (class OTHER) when unusable."""
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ProbeFailed(Failure.OTHER, f"invalid broker URL {shown}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ProbeFailed(Failure.OTHER, f"unsupported broker URL scheme in {shown} (known: {known})")
    protocol, forced_tls = SCHEMES[scheme]
    tls = forced_tls or ssl
    host = parts.hostname or "localhost"
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return BrokerEndpoint(protocol, host, port or (5671 if tls else 5672), tls, user, password, vhost)


def probe_broker(target: BrokerTarget, timeout_s: float = 1.0) -> ProbeResult:
    """Connect, authenticate and close once, within ``timeout_s``; classify any failure."""
    started = time.perf_counter()
    password: str | None = None
    try:
        endpoint = parse_broker_url(target.url, ssl=target.ssl)
        password = endpoint.password
        version = _handshake(endpoint, target, Deadline(timeout_s))
    except ProbeFailed as exc:
        return _result(target, started, failure=exc.failure, error=_scrub(exc.message, password))
    except (struct.error, ValueError, IndexError, UnicodeError) as exc:
        error = f"malformed answer from the broker: {one_line(str(exc))}"
        return _result(target, started, failure=Failure.PROTOCOL, error=_scrub(error, password))
    except Exception as exc:  # a probe must answer, whatever happens
        error = f"{type(exc).__name__}: {one_line(str(exc))}"
        return _result(target, started, failure=Failure.OTHER, error=_scrub(error, password))
    return _result(target, started, version=version)


def _handshake(endpoint: BrokerEndpoint, target: BrokerTarget, deadline: Deadline) -> str | None:
    if endpoint.protocol == AMQP091:
        ctx = tls_context(target.cacert, target.certfile, target.keyfile) if endpoint.tls else None
        sock = connect(endpoint.host, endpoint.port, deadline)
        try:
            if ctx is not None:
                sock = wrap_tls(sock, ctx, endpoint.host, deadline)
            return amqp091.handshake(
                sock,
                deadline,
                endpoint.user or "guest",
                endpoint.password if endpoint.password is not None else "guest",
                endpoint.vhost,
            )
        finally:
            sock.close()
    sock = connect(endpoint.host, endpoint.port, deadline)
    try:
        return amqp10.handshake(
            sock,
            deadline,
            host=endpoint.host,
            user=endpoint.user,
            password=endpoint.password,
            tls=endpoint.tls,
            cacert=target.cacert,
            certfile=target.certfile,
            keyfile=target.keyfile,
        )
    finally:
        sock.close()


def _scrub(text: str, password: str | None) -> str:
    """Last line of defence: the password never leaves the probe, even inside a server message."""
    return text.replace(password, MASK) if password else text


def _result(
    target: BrokerTarget,
    started: float,
    *,
    version: str | None = None,
    failure: Failure | None = None,
    error: str | None = None,
) -> ProbeResult:
    return ProbeResult(
        name="broker",
        endpoint=target.endpoint,
        ok=failure is None,
        latency_ms=(time.perf_counter() - started) * 1000.0,
        version=version,
        failure=failure,
        error=error,
    )
