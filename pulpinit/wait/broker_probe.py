"""Probe the Celery broker (Pulp's ``tasks.broker_url``) over the protocol Celery will speak.

The URL scheme chooses the protocol, as it does for Celery (kombu):

==============  ============  ========================================  ==========================
scheme          protocol      TLS                                       servers
==============  ============  ========================================  ==========================
``qpid://``     AMQP 0-10     ``tasks.celery_require_ssl``              Qpid C++ (qpidd)
``amqp://``     AMQP 0-9-1    ``tasks.celery_require_ssl``              RabbitMQ
``pyamqp://``   AMQP 0-9-1    ``tasks.celery_require_ssl``              RabbitMQ
``amqps://``    AMQP 0-9-1    always                                    RabbitMQ (TLS listener)
==============  ============  ========================================  ==========================

The other broker, ``[messaging]`` (gofer's, to the consumer agents), has its own probe:
:mod:`pulpinit.wait.messaging_probe`.

Everything below is what Pulp 2.21's client stack does (the differential tier,
``tests/test_oracle.py``, checks it against that stack; the URL is read as kombu
reads it, :mod:`pulpinit.settings.brokerurl`).  The default port is 5672; for
``amqp://`` with TLS on, 5671.  TLS is done with Python's ``ssl`` on our own
socket (:mod:`pulpinit.wait.tls`).  With ``celery_require_ssl``
(``BrokerTarget.ssl``) Pulp gives Celery ``BROKER_USE_SSL`` with
``cert_reqs = CERT_REQUIRED`` and no server name: the chain is verified against
``tasks.cacert`` and ``tasks.certfile``/``tasks.keyfile`` are the client
certificate; ``qpid://`` then checks the host name with python-qpid's rule (DNS
subjectAltNames and CN only), ``amqp://`` does not check it at all.
``amqps://`` and a ``?ssl=`` query option replace ``BROKER_USE_SSL`` by "TLS,
verify nothing, no client certificate": the probe does the same and its result
carries a warning saying so.

Logins, as the clients do them: ``qpid://`` as kombu's qpid transport and
python-qpid (:func:`pulpinit.wait.amqp010.login_for`: PLAIN with user and
password, ANONYMOUS without; with ``tasks.login_method`` that mechanism, and
kombu drops the password); ``amqp://`` as py-amqp 2.2: AMQPLAIN when the broker
offers it, else PLAIN (``tasks.login_method`` is not used), with the URL's
credentials and ``guest`` for a missing or empty user or password; the URL's path
is the virtual host (``/`` when empty; ``amqp://h//`` is ``/``).

:func:`probe_broker` never raises for a broker problem: it returns a
:class:`~pulpinit.targets.ProbeResult` whose error is one line without the password.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pulpinit.redact import MASK, mask_url
from pulpinit.settings import brokerurl
from pulpinit.targets import Address, BrokerTarget, Dependency, Failure, ProbeResult
from pulpinit.wait import amqp010, amqp091, tls
from pulpinit.wait.net import Deadline, ProbeFailed, Resolver, connect, one_line, speaks_tls

#: The protocols Celery speaks to a broker, by the name in messages.
Protocol = Literal["AMQP 0-10", "AMQP 0-9-1"]
AMQP010: Protocol = "AMQP 0-10"
AMQP091: Protocol = "AMQP 0-9-1"

# scheme → (protocol, TLS forced by the scheme)
SCHEMES: dict[str, tuple[Protocol, bool]] = {
    "qpid": (AMQP010, False),
    "amqp": (AMQP091, False),
    "pyamqp": (AMQP091, False),
    "amqps": (AMQP091, True),
}


@dataclass(frozen=True)
class BrokerEndpoint:
    """A parsed broker URL: where to connect, with which protocol and credentials, as kombu reads it."""

    protocol: Protocol
    host: str
    port: int
    tls: bool
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    vhost: str = "/"
    #: TLS that verifies nothing: ``amqps://`` or ``?ssl=`` (kombu then drops BROKER_USE_SSL)
    unverified: bool = False
    login_method: str | None = None  # the effective one (the URL's, else tasks.login_method)


def parse_broker_url(url: str, *, ssl: bool = False, login_method: str = "") -> BrokerEndpoint:
    """Parse a ``tasks.broker_url`` as kombu does; raises :class:`ProbeFailed` (class OTHER) when unusable."""
    shown = mask_url(url)
    try:
        kombu = brokerurl.read(url)
    except ValueError as exc:
        raise ProbeFailed(Failure.OTHER, f"invalid broker URL {shown}: {exc}") from None
    if kombu.scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ProbeFailed(Failure.OTHER, f"unsupported broker URL scheme in {shown} (known: {known})")
    protocol, forced_tls = SCHEMES[kombu.scheme]
    unverified = protocol == AMQP091 and (forced_tls or kombu.ssl_option)
    use_tls = forced_tls or ssl or unverified
    # kombu's pyamqp transport defaults the port to 5671 whenever TLS is on; its qpid transport to 5672
    default_port = 5671 if use_tls and protocol != AMQP010 else 5672
    return BrokerEndpoint(
        protocol,
        kombu.host or "localhost",
        kombu.port or default_port,
        use_tls,
        kombu.user,
        kombu.password,
        kombu.vhost or "/",
        unverified,
        brokerurl.login_method(kombu, login_method),
    )


def tls_policy(endpoint: BrokerEndpoint, target: BrokerTarget) -> tls.TlsPolicy:
    """How Celery does TLS for this URL (see the module docstring)."""
    if endpoint.unverified or not target.ssl:
        return tls.TlsPolicy(verify=False)
    key, cert, ca = target.keyfile, target.certfile, target.cacert
    return tls.TlsPolicy(
        verify=True,
        cafile=tls.TlsFile("tasks.cacert", ca) if ca else None,
        certfile=tls.TlsFile("tasks.certfile", cert) if cert else None,
        keyfile=tls.TlsFile("tasks.keyfile", key) if key and key != cert else None,
        host_rule=tls.HostRule.QPID if endpoint.protocol == AMQP010 else tls.HostRule.NONE,
    )


UNVERIFIED = (
    "the broker connection is encrypted but not verified: with amqps:// or ?ssl= kombu drops "
    "BROKER_USE_SSL and checks no certificate (and sends none); to verify, use amqp:// with "
    "tasks.celery_require_ssl: true and tasks.cacert"
)


def probe_broker(target: BrokerTarget, timeout_s: float = 1.0, *, resolver: Resolver | None = None) -> ProbeResult:
    """Connect, authenticate and close once, within ``timeout_s``; classify any failure.

    ``resolver`` replaces :func:`socket.getaddrinfo` (tests simulate DNS failures with it).
    """
    secrets: list[str] = []

    def attempt() -> tuple[str | None, tuple[str, ...]]:
        endpoint = parse_broker_url(target.url, ssl=target.ssl, login_method=target.login_method)
        secrets.append(endpoint.password or "")
        warnings = (UNVERIFIED,) if endpoint.unverified else ()
        return _handshake(endpoint, target, Deadline(timeout_s), resolver), warnings

    return answer("broker", target.endpoint, attempt, secrets)


def answer(
    name: Dependency,
    endpoint: str,
    attempt: Callable[[], tuple[str | None, tuple[str, ...]]],
    secrets: Sequence[str] = (),
) -> ProbeResult:
    """Run one probe ``attempt`` (returning the server's version and warnings) and make its result.

    Never raises: every failure is classified, and no string of ``secrets`` (filled in by the
    attempt as it learns them) is left in the error text, even inside a server's message.
    """
    started = time.perf_counter()
    version: str | None = None
    warnings: tuple[str, ...] = ()
    failure: Failure | None = None
    error: str | None = None
    refused: tuple[Address, ...] = ()
    try:
        version, warnings = attempt()
    except ProbeFailed as exc:
        failure, error, refused = exc.failure, exc.message, exc.refused
    except (struct.error, ValueError, IndexError, UnicodeError) as exc:
        failure, error = Failure.PROTOCOL, f"malformed answer from the {name}: {one_line(str(exc))}"
    except Exception as exc:  # a probe must answer, whatever happens
        failure, error = Failure.OTHER, f"{type(exc).__name__}: {one_line(str(exc))}"
    for secret in secrets:
        error = error.replace(secret, MASK) if error and secret else error
    return ProbeResult(
        name=name,
        endpoint=endpoint,
        ok=failure is None,
        latency_ms=(time.perf_counter() - started) * 1000.0,
        version=version,
        failure=failure,
        error=error,
        refused=refused,
        warnings=warnings if failure is None else (),
    )


def _handshake(
    endpoint: BrokerEndpoint, target: BrokerTarget, deadline: Deadline, resolver: Resolver | None
) -> str | None:
    policy = tls_policy(endpoint, target) if endpoint.tls else None
    ctx = tls.context(policy) if policy else None  # a missing or broken file is named before connecting
    with opened(endpoint.host, endpoint.port, deadline, resolver, policy=policy, ctx=ctx) as (sock, tls_probe):
        if endpoint.protocol == AMQP010:
            return amqp010.handshake(
                sock,
                deadline,
                host=endpoint.host,
                port=endpoint.port,
                user=endpoint.user,
                password=endpoint.password,
                login_method=endpoint.login_method,
                tls=endpoint.tls,
                speaks_tls=tls_probe,
            )
        return amqp091.handshake(  # py-amqp: guest for a missing (or empty) user or password
            sock,
            deadline,
            endpoint.user or "guest",
            endpoint.password or "guest",
            endpoint.vhost,
            tls=endpoint.tls,
            speaks_tls=tls_probe,
        )


@contextlib.contextmanager
def opened(
    host: str,
    port: int,
    deadline: Deadline,
    resolver: Resolver | None,
    *,
    policy: tls.TlsPolicy | None,
    ctx: ssl.SSLContext | None,
) -> Iterator[tuple[socket.socket, Callable[[], bool]]]:
    """A connection to ``host:port`` (through TLS with ``policy``), closed afterwards, and the question
    the handshakes ask when a plain connection is hung up on: does the port speak TLS?"""
    sock = connect(host, port, deadline, resolver)
    try:
        if policy is not None:
            sock = tls.handshake(sock, policy, host, deadline, ctx)
        yield sock, functools.partial(speaks_tls, host, port, deadline, resolver)
    finally:
        sock.close()
