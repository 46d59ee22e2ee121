"""An AMQP 1.0 connection handshake with python-qpid-proton's engine over our own socket.

It serves gofer's ``proton`` adapter, the one AMQP 1.0 client among Pulp's (``[messaging]
transport: proton``, e.g. a Qpid Dispatch router in front of the consumers; see
:mod:`pulpinit.wait.messaging_probe`).  The probe drives a proton ``Transport`` by hand (no reactor): we own the
socket, so the deadline, the TCP errors and the first bytes the server sends
are ours to classify.  TLS, when wanted, is already on the socket (Python's
``ssl``, see :mod:`pulpinit.wait.tls`: proton's own TLS does not match IP
subjectAltNames).  Steps: SASL (PLAIN with the URL's user and password,
ANONYMOUS without a password), ``Open`` → the server's ``Open`` (its
``product``/``version`` connection properties are the version), then
``Close``.

The first 8 bytes decide what the server is: the SASL layer header is
expected; the plain AMQP 1.0 header means the server has no SASL layer (a
SASL mismatch: it would not check the credentials); another AMQP header
(RabbitMQ without the 1.0 plugin answers ``AMQP 0-9-1``, a Qpid broker without
its amqp module ``AMQP 0-10``) is a protocol mismatch; TLS bytes are a TLS
mismatch.

proton is imported inside :func:`handshake`, so importing this module is cheap.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, NoReturn

from pulpinit.targets import Failure
from pulpinit.wait.net import (
    Deadline,
    ProbeFailed,
    amqp_header_name,
    classify_os_error,
    not_this_protocol,
    one_line,
)
from pulpinit.wait.wording import GOFER_PROTON, Client

HANDSHAKE = "AMQP 1.0 handshake"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
PLAIN_HEADER = b"AMQP\x00\x01\x00\x00"


def _classify_condition(cond: Any, who: str) -> ProbeFailed:
    name = str(getattr(cond, "name", "") or "")
    text = one_line(str(getattr(cond, "description", "") or ""))
    if name == "amqp:unauthorized-access" and "mech=none" in text:
        return ProbeFailed(Failure.SASL, f"the broker offers no SASL mechanism for the {who}: {text}")
    if name == "amqp:unauthorized-access":
        return ProbeFailed(Failure.AUTH, f"{who} refused: {text or name}")
    if "header mismatch" in text.lower():
        return ProbeFailed(Failure.PROTOCOL, f"the server does not speak AMQP 1.0: {text}")
    return ProbeFailed(Failure.OTHER, f"{name}: {text}" if text else name or "unknown AMQP error")


def _sniff(first: bytes, who: str, client: Client) -> None:
    """Raise when the server's first 8 bytes are not the AMQP 1.0 SASL header."""
    if first == SASL_HEADER:
        return
    if first == PLAIN_HEADER:
        raise ProbeFailed(
            Failure.SASL,
            f"the broker offers no SASL layer (it answered with the plain AMQP 1.0 "
            f"header), so it cannot take the {who}",
        )
    if first[:4] == b"AMQP":
        offered = amqp_header_name(first)
        advice = client.switch("AMQP 0-9-1" if offered in ("AMQP 0-9", "AMQP 0-8") else offered, "")
        raise ProbeFailed(
            Failure.PROTOCOL,
            f"the server answered with the {offered} protocol header, not AMQP 1.0" + (f": {advice}" if advice else ""),
        )
    raise not_this_protocol(first, "the AMQP 1.0 protocol header", client.tls_advice)


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


class _Session:
    """One AMQP 1.0 connection that proton drives over our socket (see :func:`handshake`)."""

    def __init__(
        self,
        sock: socket.socket,
        deadline: Deadline,
        *,
        host: str,
        user: str | None,
        password: str | None,
        tls: bool,
        speaks_tls: Callable[[], bool] | None,
        client: Client,
    ) -> None:
        from proton import Connection, ProtonException, Transport

        self.sock, self.deadline, self.tls, self.speaks_tls = sock, deadline, tls, speaks_tls
        self.client = client
        self.proton_error: type[Exception] = ProtonException
        self.conn = Connection()
        self.conn.container = "pulpinit-probe"
        self.conn.hostname = host
        self.transport = Transport(Transport.CLIENT)
        self.sasl = self.transport.sasl()
        if user and password is not None:
            self.sasl.allow_insecure_mechs = True  # PLAIN without TLS is what Pulp's URLs do
            self.sasl.allowed_mechs("PLAIN")
            self.conn.user, self.conn.password = user, password
            self.who = f"login as {user!r}"
        else:
            self.sasl.allowed_mechs("ANONYMOUS")
            self.who = "anonymous login (no password in the URL)"
        self.transport.bind(self.conn)
        self.conn.open()

    def flush(self, stage: str) -> None:
        """Send what proton has to say."""
        while (pending := self.transport.pending()) > 0:
            self.sock.settimeout(self.deadline.left(stage))
            try:
                data = self.transport.peek(pending)
                if data is None:
                    return
                sent = self.sock.send(data)
            except OSError as exc:
                raise classify_os_error(exc, stage, self.deadline) from None
            self.transport.pop(sent)

    def pump(self, stage: str, until: int) -> None:
        """Exchange bytes until the connection reaches a state in ``until``; the first 8 bytes are sniffed."""
        first = b""
        received = 0
        while True:
            self.flush(stage)
            if self.transport.condition is not None:
                raise _classify_condition(self.transport.condition, self.who)
            if self.conn.state & until:
                return
            waiting_for = _stage(stage, received, self.sasl.outcome, self.who)
            sniffing = stage == HANDSHAKE and len(first) < 8
            data = self._receive(waiting_for, sniffing)
            if not data:
                self._hung_up(stage, first, sniffing)
            received += len(data)
            if sniffing:
                first += data
                if len(first) < 8:
                    continue  # proton sees the first bytes only once we know what they are
                _sniff(first[:8], self.who, self.client)
                data, first = first, first[:8]
            self._feed(data)

    def _receive(self, waiting_for: str, sniffing: bool) -> bytes:
        self.sock.settimeout(self.deadline.left(waiting_for))
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            if not sniffing:
                raise classify_os_error(ConnectionResetError(), waiting_for, self.deadline) from None
            return b""  # a TLS server resets what it refused: a hang-up, examined by _hung_up
        except OSError as exc:
            raise classify_os_error(exc, waiting_for, self.deadline) from None

    def _hung_up(self, stage: str, first: bytes, sniffing: bool) -> NoReturn:
        """The server closed the connection: say why, as far as its first bytes and proton tell."""
        if sniffing:
            if first:
                _sniff(first, self.who, self.client)
            if not self.tls and self.speaks_tls is not None and self.speaks_tls():
                raise ProbeFailed(
                    Failure.TLS_MISMATCH,
                    "the server hung up on the AMQP 1.0 protocol "
                    f"header, and the port completes a TLS handshake: it speaks TLS; {self.client.tls_advice}",
                )
        try:
            self.transport.close_tail()
        except self.proton_error:
            pass
        condition = self.transport.condition
        if condition is not None and condition.name == "amqp:unauthorized-access":
            raise _classify_condition(condition, self.who)
        raise ProbeFailed(Failure.RESET, f"the server closed the connection ({stage})")

    def _feed(self, data: bytes) -> None:
        try:
            while data:
                room = self.transport.capacity()
                if room <= 0:
                    break
                self.transport.push(data[:room])
                data = data[room:]
        except self.proton_error:
            pass  # the condition says why, on the next turn


def handshake(
    sock: socket.socket,
    deadline: Deadline,
    *,
    host: str,
    user: str | None,
    password: str | None,
    tls: bool = False,
    speaks_tls: Callable[[], bool] | None = None,
    client: Client = GOFER_PROTON,
) -> str | None:
    """Open and close an AMQP 1.0 connection on ``sock``; return the server's version or raise.

    ``speaks_tls`` is asked when a plain connection is closed without a word (see amqp010);
    ``client`` names whom the errors speak for.
    """
    from proton import Endpoint

    session = _Session(
        sock, deadline, host=host, user=user, password=password, tls=tls, speaks_tls=speaks_tls, client=client
    )
    conn = session.conn
    session.pump(HANDSHAKE, Endpoint.REMOTE_ACTIVE | Endpoint.REMOTE_CLOSED)
    if conn.state & Endpoint.REMOTE_CLOSED and conn.remote_condition is not None:
        raise _classify_condition(conn.remote_condition, session.who)
    props = conn.remote_properties or {}
    product, version = props.get("product"), props.get("version")
    server_version = " ".join(str(v) for v in (product, version) if v) or None

    conn.close()
    session.deadline = Deadline(min(0.2, session.deadline.left("closing")), connected=True)
    try:
        session.pump("closing", Endpoint.REMOTE_CLOSED)
    except ProbeFailed:
        pass  # the answer is known; a server that hangs up on close is fine
    return server_version
