"""Probe ``[messaging]``, the broker Pulp reaches the consumer agents through, as gofer's adapter would.

Pulp's API and workers send consumer agents their requests (bind, unbind, content install) through
gofer at ``'+'.join((transport, url))``; :mod:`pulpinit.settings.goferurl` reads that as gofer
2.12 does and says what each adapter connects with.  The probe then speaks the adapter's
protocol:

=============================================  ===========  =================================
``messaging.transport``                        protocol     handshake
=============================================  ===========  =================================
``qpid`` (``amqp-0-10``, ``qpid.messaging``)   AMQP 0-10    :mod:`~pulpinit.wait.amqp010`, login as python-qpid
                                                            without a mechanism list: PLAIN with a user, else
                                                            ANONYMOUS, else EXTERNAL
``rabbitmq``, ``amqp`` (``rabbit``, …)         AMQP 0-9-1   :mod:`~pulpinit.wait.amqp091`, ``guest`` for a
                                                            missing user or password, the path as virtual host
``proton`` (``amqp-1-0``)                      AMQP 1.0     :mod:`~pulpinit.wait.amqp10` (python-qpid-proton,
                                                            imported only here)
=============================================  ===========  =================================

TLS (``ssl://``, ``amqps://``) takes ``messaging.cacert`` and ``messaging.clientcert``, as Pulp
gives them to gofer: both must be readable (gofer checks); qpid and amqp verify the chain
against ``cacert`` when it is set and check no host name; proton verifies nothing, and turns TLS
on only for ``amqps://``.  The result is named ``messaging``; a ``[messaging]`` gofer cannot use
whatever the broker says (an unknown transport, a URL gofer reads otherwise) is a failure of
class ``error`` whose text says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

from pulpinit.settings import goferurl
from pulpinit.targets import Failure, MessagingTarget, ProbeResult
from pulpinit.wait import amqp010, amqp091, amqp10, tls  # amqp10 imports python-qpid-proton when it runs
from pulpinit.wait.broker_probe import answer, opened
from pulpinit.wait.net import Deadline, ProbeFailed, Resolver
from pulpinit.wait.wording import GOFER_AMQP, GOFER_QPID


def tls_policy(conn: goferurl.Connection, target: MessagingTarget) -> tls.TlsPolicy:
    """How gofer's adapter does TLS with Pulp's ``cacert`` and ``clientcert`` (see the module docstring)."""
    ca, cert = target.cacert, target.clientcert
    return tls.TlsPolicy(
        verify=conn.adapter != "proton" and bool(ca),
        cafile=tls.TlsFile("messaging.cacert", ca) if ca else None,
        certfile=tls.TlsFile("messaging.clientcert", cert) if cert else None,
        host_rule=tls.HostRule.NONE,
    )


def probe_messaging(
    target: MessagingTarget, timeout_s: float = 1.0, *, resolver: Resolver | None = None
) -> ProbeResult:
    """Connect as gofer's adapter does, log in and close once, within ``timeout_s``; classify any failure."""
    secrets: list[str] = []

    def attempt() -> tuple[str | None, tuple[str, ...]]:
        try:
            gofer = goferurl.read(target.transport, target.url)
            secrets.append(gofer.password or "")
            conn = goferurl.connection(gofer)
        except goferurl.Unusable as exc:
            raise ProbeFailed(Failure.OTHER, f"gofer cannot use {exc.key}: {exc}") from None
        secrets.append(conn.password or "")
        return _handshake(conn, target, Deadline(timeout_s), resolver), ()

    return answer("messaging", target.endpoint, attempt, secrets)


def _handshake(
    conn: goferurl.Connection, target: MessagingTarget, deadline: Deadline, resolver: Resolver | None
) -> str | None:
    policy = tls_policy(conn, target)
    ctx = tls.context(policy) if conn.tls_files else None  # gofer checks the files first, TLS or not
    on_tls = policy if conn.tls else None
    with opened(conn.host, conn.port, deadline, resolver, policy=on_tls, ctx=ctx) as (sock, tls_probe):
        side = _Side(tls=conn.tls, speaks_tls=tls_probe)
        if conn.adapter == "amqp":
            user, password = conn.user or "guest", conn.password or "guest"
            return amqp091.handshake(sock, deadline, user, password, conn.vhost, client=GOFER_AMQP, **side)
        login = _Login(host=conn.host, user=conn.user, password=conn.password)
        if conn.adapter == "qpid":
            qpid = amqp010.handshake
            return qpid(sock, deadline, port=conn.port, client=GOFER_QPID, restricted=False, **login, **side)
        return amqp10.handshake(sock, deadline, **login, **side)


class _Side(TypedDict):
    """What every handshake is told about the connection."""

    tls: bool
    speaks_tls: Callable[[], bool]


class _Login(TypedDict):
    """Where and as whom the AMQP 0-10 and 1.0 handshakes log in."""

    host: str
    user: str | None
    password: str | None
