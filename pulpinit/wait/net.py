"""TCP plumbing shared by the probes: deadlines, DNS, connect, and classified errors.

Every step runs against one :class:`Deadline`, so a probe never takes longer
than its timeout, even when DNS hangs (the lookup runs in a daemon thread).
Problems are raised as :class:`ProbeFailed`, which carries the
:class:`~pulpinit.targets.Failure` class and a one-line message; the probes turn
it into a :class:`~pulpinit.targets.ProbeResult`.

Failures are classified by phase: running out of time before the TCP
connection is up is :attr:`~pulpinit.targets.Failure.TIMEOUT` (a network
problem); once connected it is :attr:`~pulpinit.targets.Failure.STALLED`, and
the message names the step that stalled.  What a server sends first is
described by :func:`describe_bytes` (a TLS record, an HTTP response, another
AMQP protocol header, …), so a port that speaks something else is named.

The resolver is injectable (``resolver=``, default :func:`socket.getaddrinfo`):
tests simulate DNS failures with it instead of asking the machine's resolver.
"""

from __future__ import annotations

import errno
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from pulpinit.parse import format_hostport
from pulpinit.targets import Address, Failure

#: ``getaddrinfo``'s signature: ``resolver(host, port, type=socket.SOCK_STREAM)``.
Resolver = Callable[..., list[tuple[Any, ...]]]

_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}

# OpenSSL reasons that mean "the peer's answer is not TLS at all".
_NOT_TLS_REASONS = {
    "WRONG_VERSION_NUMBER",
    "UNKNOWN_PROTOCOL",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "HTTP_REQUEST",
    "UNEXPECTED_RECORD",
}

# AMQP protocol headers a server may answer with: b"AMQP" + these 4 bytes.
_AMQP_HEADERS = {
    b"\x00\x00\x09\x01": "AMQP 0-9-1",
    b"\x01\x01\x00\x09": "AMQP 0-9",
    b"\x01\x01\x00\x0a": "AMQP 0-10",
    b"\x01\x01\x08\x00": "AMQP 0-8",
    b"\x01\x01\x09\x01": "AMQP 0-9-1",  # the pre-standard spelling some 0-9-1 servers answer with
    b"\x00\x01\x00\x00": "AMQP 1.0",
    b"\x02\x01\x00\x00": "AMQP 1.0 (TLS layer)",
    b"\x03\x01\x00\x00": "AMQP 1.0 (SASL layer)",
}


class ProbeFailed(Exception):
    """A classified probe failure; ``str()`` is the one-line error.

    ``refused`` lists the resolved addresses that refused the connection (with
    :attr:`Failure.REFUSED`): the probe result passes them on to the armed wait.
    """

    def __init__(self, failure: Failure, message: str, refused: tuple[Address, ...] = ()) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message
        self.refused = refused

    def __str__(self) -> str:
        return self.message


class Deadline:
    """The time left for one probe; :meth:`left` raises once it is spent.

    Before :attr:`connected` is set the failure is :attr:`Failure.TIMEOUT`, afterwards
    :attr:`Failure.STALLED`: the server answered the TCP connection, then stopped.
    """

    def __init__(self, seconds: float, *, connected: bool = False) -> None:
        self.total = seconds
        self.end = time.monotonic() + seconds
        self.connected = connected

    def left(self, stage: str) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise self.expired(stage)
        return remaining

    def expired(self, stage: str) -> ProbeFailed:
        """The failure for "no answer in time while ``stage``", classified by phase."""
        if self.connected:
            return ProbeFailed(Failure.STALLED, f"connected, but no answer within {self.total:g} s ({stage})")
        return ProbeFailed(Failure.TIMEOUT, f"no answer within {self.total:g} s ({stage})")


def resolve(host: str, port: int, deadline: Deadline, resolver: Resolver | None = None) -> list[tuple[Any, ...]]:
    """``getaddrinfo`` bounded by the deadline; DNS failure → :attr:`Failure.DNS`."""
    box: dict[str, Any] = {}
    lookup_with = resolver or socket.getaddrinfo

    def lookup() -> None:
        try:
            box["ok"] = lookup_with(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            box["err"] = exc

    thread = threading.Thread(target=lookup, name="pulpinit-dns", daemon=True)
    thread.start()
    thread.join(deadline.left(f"resolving {host}"))
    if thread.is_alive():
        raise ProbeFailed(Failure.TIMEOUT, f"DNS lookup of {host} took longer than {deadline.total:g} s")
    if "err" in box:
        exc = box["err"]
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ProbeFailed(Failure.DNS, f"cannot resolve {host}: {reason}")
    infos: list[tuple[Any, ...]] = box["ok"]
    return infos


def connect(host: str, port: int, deadline: Deadline, resolver: Resolver | None = None) -> socket.socket:
    """A connected TCP socket to the first address of ``host`` that answers; marks the deadline connected.

    When the last address refused, the failure carries every address that refused.
    """
    last: ProbeFailed | None = None
    refused: list[Address] = []
    for family, kind, proto, _name, addr in resolve(host, port, deadline, resolver):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.left(f"connecting to {format_hostport(host, port)}"))
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            last = classify_os_error(exc, f"connecting to {format_hostport(host, port)}", deadline)
            if last.failure is Failure.REFUSED:
                refused.append((family, tuple(addr)))
            if last.failure is Failure.TIMEOUT:
                break  # the deadline is spent: no time for the other addresses
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline.connected = True
        return sock
    if last is not None and last.failure is Failure.REFUSED:
        raise ProbeFailed(Failure.REFUSED, last.message, tuple(refused))
    raise last or ProbeFailed(Failure.DNS, f"{host} has no address")


class Reader:
    """Buffered reads of exact sizes from a socket, bounded by the deadline."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self.sock, self.deadline, self.buf = sock, deadline, b""

    def _fill(self, n: int, stage: str, reset_is_end: bool = False) -> bool:
        """Read until ``n`` bytes are buffered; False at end of stream (or a reset, when ``reset_is_end``)."""
        while len(self.buf) < n:
            self.sock.settimeout(self.deadline.left(stage))
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                if reset_is_end:
                    return False
                raise classify_os_error(ConnectionResetError(), stage, self.deadline) from None
            except OSError as exc:
                raise classify_os_error(exc, stage, self.deadline) from None
            if not chunk:
                return False
            self.buf += chunk
        return True

    def read(self, n: int, stage: str) -> bytes:
        """Exactly ``n`` bytes; EOFError when the server closes first."""
        if not self._fill(n, stage):
            raise EOFError(stage)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_upto(self, n: int, stage: str) -> bytes:
        """``n`` bytes, or fewer when the server hangs up first (a 7-byte TLS alert, nothing at all).

        A reset counts as a hang-up here: TLS servers reset connections whose bytes they refused.
        """
        self._fill(n, stage, reset_is_end=True)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def send(sock: socket.socket, data: bytes, deadline: Deadline, stage: str) -> None:
    """``sendall`` within the deadline; failures classified."""
    sock.settimeout(deadline.left(stage))
    try:
        sock.sendall(data)
    except OSError as exc:
        raise classify_os_error(exc, stage, deadline) from None


def classify_os_error(exc: BaseException, doing: str, deadline: Deadline | None = None) -> ProbeFailed:
    """Map a socket/TLS exception to a :class:`ProbeFailed` (one line, no secrets)."""
    if isinstance(exc, ProbeFailed):
        return exc
    if isinstance(exc, ssl.SSLError):
        return classify_ssl_error(exc)
    if isinstance(exc, TimeoutError | socket.timeout):
        if deadline is not None:
            return deadline.expired(doing)
        return ProbeFailed(Failure.TIMEOUT, f"no answer in time ({doing})")
    if isinstance(exc, ConnectionRefusedError):
        return ProbeFailed(Failure.REFUSED, f"connection refused ({doing})")
    if isinstance(exc, OSError) and exc.errno in _RESET_ERRNOS:
        return ProbeFailed(Failure.RESET, f"connection reset by the server ({doing})")
    if isinstance(exc, OSError) and exc.strerror:
        return ProbeFailed(Failure.OTHER, f"{exc.strerror.lower()} ({doing})")
    return ProbeFailed(Failure.OTHER, f"{type(exc).__name__}: {one_line(str(exc))} ({doing})")


def classify_ssl_error(exc: ssl.SSLError) -> ProbeFailed:
    """A TLS error: certificate problems and refusals are TLS, a peer that is not TLS is TLS_MISMATCH."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        return ProbeFailed(Failure.TLS, f"the server's certificate is not accepted: {one_line(str(reason))}")
    reason = str(exc.reason or exc.strerror or exc)
    if reason in _NOT_TLS_REASONS:
        return ProbeFailed(Failure.TLS_MISMATCH, f"the server does not speak TLS on that port ({reason})")
    if isinstance(exc, ssl.SSLEOFError) or "EOF" in reason:
        return ProbeFailed(
            Failure.TLS,
            "the server closed the connection during the TLS handshake "
            "(does it require a client certificate, or is TLS off on that port?)",
        )
    if "ALERT" in reason:
        alert = reason.split("ALERT_", 1)[-1].lower().replace("_", " ")
        extra = ": it requires a client certificate" if "certificate required" in alert else ""
        if "unknown ca" in alert or "bad certificate" in alert:
            extra = ": it does not accept the client certificate"
        return ProbeFailed(Failure.TLS, f"the server refused the TLS handshake ({alert}){extra}")
    return ProbeFailed(Failure.TLS, f"TLS handshake failed: {one_line(reason)}")


def looks_like_tls(data: bytes) -> bool:
    """Whether ``data`` starts with a TLS record (alert or handshake, SSL 3.0 to TLS 1.3)."""
    return len(data) >= 3 and data[0] in (0x15, 0x16) and data[1] == 3 and data[2] <= 4


def amqp_header_name(header: bytes) -> str:
    """``b"AMQP\\x00\\x00\\x09\\x01"`` → ``"AMQP 0-9-1"``; unknown ones shown escaped."""
    return _AMQP_HEADERS.get(header[4:8], f"AMQP header {header[:8]!r}")


def describe_bytes(data: bytes) -> str:
    """What the first bytes of a server's answer are, for an error message."""
    if looks_like_tls(data):
        return "a TLS alert" if data[0] == 0x15 else "a TLS record"
    if data.startswith(b"AMQP") and len(data) >= 8:
        return f"the {amqp_header_name(data)} protocol header"
    if data.startswith(b"HTTP/"):
        status = data.split(b"\r\n", 1)[0].decode("latin-1")
        return f"an HTTP response ({one_line(status, 60)})"
    if data.startswith(b"SSH-"):
        return "an SSH greeting"
    return f"bytes that are not {'' if data else 'anything '}of this protocol ({data[:16]!r})"


def not_this_protocol(data: bytes, expected: str, tls_advice: str) -> ProbeFailed:
    """The failure for a server whose first bytes are not ``expected``: TLS_MISMATCH or PROTOCOL.

    ``tls_advice`` says how to turn TLS on (the setting differs between the broker and MongoDB).
    """
    if looks_like_tls(data):
        return ProbeFailed(
            Failure.TLS_MISMATCH,
            f"the server answered {expected} with {describe_bytes(data)}: that port speaks TLS; {tls_advice}",
        )
    return ProbeFailed(Failure.PROTOCOL, f"the server answered {expected} with {describe_bytes(data)}")


#: The longest :func:`speaks_tls` waits for the connection, then for the handshake (within the deadline).
TLS_CHECK_S = 3.0


def speaks_tls(host: str, port: int, deadline: Deadline, resolver: Resolver | None = None) -> bool:
    """Whether ``host:port`` completes a TLS handshake (certificate not checked): a diagnosis aid.

    Used when a plain client is hung up on without a word, which is what many TLS servers
    do with bytes that are not TLS.  It may take up to :data:`TLS_CHECK_S` of what is left of the
    probe's time: a TLS server on a loaded machine can take a second to answer, and a check cut
    short would call the port's hang-up a reset.  Never raises.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        within = Deadline(min(TLS_CHECK_S, deadline.left("checking for TLS")), connected=True)
        sock = connect(host, port, within, resolver)
    except ProbeFailed:
        return False
    try:
        sock.settimeout(max(0.05, min(TLS_CHECK_S, deadline.end - time.monotonic())))
        with ctx.wrap_socket(sock, server_hostname=None):
            return True
    except ssl.SSLError as exc:
        # An alert is a TLS answer too (e.g. "certificate required" from a server that wants one).
        return "ALERT" in str(exc.reason or "")
    except OSError:
        return False
    finally:
        sock.close()


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace and cut overly long texts."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
