"""An AMQP 1.0 connection handshake with python-qpid-proton's engine over our own socket.

The probe drives a proton ``Transport`` by hand (no reactor): we own the
socket, so the deadline, the TCP errors and the first bytes the server sends
are ours to classify.  Steps: SASL (PLAIN with the URL's user and password,
ANONYMOUS without a password), optional TLS inside proton, ``Open`` → the
server's ``Open`` (its ``product``/``version`` connection properties are the
version), then ``Close``.

A server that answers the AMQP 1.0 header with another AMQP protocol header
(RabbitMQ without the 1.0 plugin answers ``AMQP 0-9-1``; a Qpid broker
without its amqp module ``AMQP 0-10``) is a protocol mismatch.

proton is imported inside :func:`handshake`, so importing this module is cheap.
"""

from __future__ import annotations

import socket
from typing import Any

from pulpinit.amqp091 import header_name
from pulpinit.probe import Failure
from pulpinit.probe_net import Deadline, ProbeFailed, classify_os_error, one_line

# The headers an AMQP 1.0 server may send first (plain, TLS, SASL layers).
HANDSHAKE = "AMQP 1.0 handshake"
_AMQP10_HEADERS = (b"AMQP\x00\x01\x00\x00", b"AMQP\x02\x01\x00\x00", b"AMQP\x03\x01\x00\x00")


def _ssl_domain(cacert: str | None, certfile: str | None, keyfile: str | None) -> Any:
    from proton import SSL, SSLDomain, SSLException

    if not SSL.present():
        raise ProbeFailed(Failure.TLS, "this python-qpid-proton was built without TLS support")
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    try:
        if cacert:
            domain.set_trusted_ca_db(cacert)
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME, cacert or None)
        if certfile:
            domain.set_credentials(certfile, keyfile or certfile, None)  # one PEM may hold both
    except SSLException as exc:
        raise ProbeFailed(Failure.TLS, f"cannot load the TLS files: {one_line(str(exc))}") from None
    return domain


def _classify_condition(cond: Any, tls: bool, who: str) -> ProbeFailed:
    name = str(getattr(cond, "name", "") or "")
    text = one_line(str(getattr(cond, "description", "") or ""))
    if name == "amqp:unauthorized-access":
        return ProbeFailed(Failure.AUTH, f"{who} refused: {text or name}")
    if tls and ("SSL" in text or "TLS" in text):
        return ProbeFailed(Failure.TLS, f"TLS handshake failed: {text}")
    if "header mismatch" in text.lower():
        return ProbeFailed(Failure.PROTOCOL, f"the server does not speak AMQP 1.0: {text}")
    return ProbeFailed(Failure.OTHER, f"{name}: {text}" if text else name or "unknown AMQP error")


def _sniff(first: bytes) -> None:
    """Raise PROTOCOL when the first bytes of a plain connection are not an AMQP 1.0 header."""
    if len(first) >= 8 and first[:8] not in _AMQP10_HEADERS:
        if first[:4] == b"AMQP":
            raise ProbeFailed(
                Failure.PROTOCOL,
                f"the server answered with the {header_name(first[:8])} protocol header, not AMQP 1.0",
            )
        raise ProbeFailed(Failure.PROTOCOL, f"the server does not speak AMQP (first bytes {first[:8]!r})")


def _stage(stage: str, received: int, outcome: int | None, who: str) -> str:
    """What the probe waits for, for the timeout message."""
    if stage != HANDSHAKE:
        return stage
    if received == 0:
        return "waiting for the AMQP 1.0 header"
    if received > 8 and outcome is None:
        # The broker has our SASL init. RabbitMQ answers a wrong password only after 3 s.
        return f"waiting for the SASL outcome of the {who}; RabbitMQ delays a rejection by 3 s"
    return "waiting for the AMQP Open"


def handshake(
    sock: socket.socket,
    deadline: Deadline,
    *,
    host: str,
    user: str | None,
    password: str | None,
    tls: bool = False,
    cacert: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> str | None:
    """Open and close an AMQP 1.0 connection on ``sock``; return the server's version or raise."""
    from proton import SSL, Connection, Endpoint, ProtonException, Transport

    conn = Connection()
    conn.container = "pulpinit-probe"
    conn.hostname = host
    transport = Transport(Transport.CLIENT)
    sasl = transport.sasl()
    if user and password is not None:
        sasl.allow_insecure_mechs = True  # PLAIN without TLS is what Pulp's qpid:// URLs do
        sasl.allowed_mechs("PLAIN")
        conn.user, conn.password = user, password
        who = f"login as {user!r}"
    else:
        sasl.allowed_mechs("ANONYMOUS")
        who = "anonymous login (no password in the URL)"
    if tls:
        SSL(transport, _ssl_domain(cacert, certfile, keyfile)).peer_hostname = host
    transport.bind(conn)
    conn.open()

    def flush(stage: str) -> None:
        while (pending := transport.pending()) > 0:
            sock.settimeout(deadline.left(stage))
            try:
                data = transport.peek(pending)
                if data is None:
                    return
                sent = sock.send(data)
            except OSError as exc:
                raise classify_os_error(exc, stage) from None
            transport.pop(sent)

    def pump(stage: str, until: int) -> None:
        first = b""
        received = 0
        while True:
            flush(stage)
            if transport.condition is not None:
                raise _classify_condition(transport.condition, tls, who)
            if conn.state & until:
                return
            waiting_for = _stage(stage, received, sasl.outcome, who)
            sock.settimeout(deadline.left(waiting_for))
            try:
                data = sock.recv(65536)
            except OSError as exc:
                raise classify_os_error(exc, waiting_for) from None
            if not data:
                try:
                    transport.close_tail()
                except ProtonException:
                    pass
                if transport.condition is not None and transport.condition.name == "amqp:unauthorized-access":
                    raise _classify_condition(transport.condition, tls, who)
                if tls and not first:
                    raise ProbeFailed(
                        Failure.TLS, "TLS handshake failed: the server closed the connection "
                        "(TLS is not enabled on that port?)"
                    )
                raise ProbeFailed(Failure.RESET, f"the server closed the connection ({stage})")
            received += len(data)
            if len(first) < 8:
                first += data[: 8 - len(first)]
                if not tls:
                    _sniff(first)
                elif first[:4] == b"AMQP":
                    raise ProbeFailed(
                        Failure.TLS, "TLS handshake failed: the server answered in plain AMQP "
                        "(TLS is not enabled on that port?)"
                    )
            try:
                while data:
                    room = transport.capacity()
                    if room <= 0:
                        break
                    transport.push(data[:room])
                    data = data[room:]
            except ProtonException:
                pass  # the condition says why, on the next turn

    pump(HANDSHAKE, Endpoint.REMOTE_ACTIVE | Endpoint.REMOTE_CLOSED)
    if conn.state & Endpoint.REMOTE_CLOSED and conn.remote_condition is not None:
        raise _classify_condition(conn.remote_condition, tls, who)
    props = conn.remote_properties or {}
    product, version = props.get("product"), props.get("version")
    server_version = " ".join(str(v) for v in (product, version) if v) or None

    conn.close()
    deadline = Deadline(min(0.2, deadline.left("closing")))  # flush/pump see the new one
    try:
        pump("closing", Endpoint.REMOTE_CLOSED)
    except ProbeFailed:
        pass  # the answer is known; a server that hangs up on close is fine
    return server_version
