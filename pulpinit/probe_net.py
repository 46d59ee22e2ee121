"""TCP plumbing shared by the broker probes: deadlines, DNS, connect, classified errors.

Every step runs against one :class:`Deadline`, so a probe never takes longer
than its timeout, even when DNS hangs (the lookup runs in a daemon thread).
Problems are raised as :class:`ProbeFailed`, which carries the
:class:`~pulpinit.probe.Failure` class and a one-line message; the probes turn
it into a :class:`~pulpinit.probe.ProbeResult`.
"""

from __future__ import annotations

import errno
import socket
import ssl
import threading
import time
from typing import Any

from pulpinit.probe import Failure

#: Exception-to-class table for errors raised by socket calls once connected.
_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}


class ProbeFailed(Exception):
    """A classified probe failure; ``str()`` is the one-line error."""

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message

    def __str__(self) -> str:
        return self.message


class Deadline:
    """The time left for one probe; :meth:`left` raises TIMEOUT once it is spent."""

    def __init__(self, seconds: float) -> None:
        self.total = seconds
        self.end = time.monotonic() + seconds

    def left(self, stage: str) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise ProbeFailed(Failure.TIMEOUT, f"no answer within {self.total:g} s ({stage})")
        return remaining


def resolve(host: str, port: int, deadline: Deadline) -> list[tuple[Any, ...]]:
    """``getaddrinfo`` bounded by the deadline; DNS failure → :attr:`Failure.DNS`."""
    box: dict[str, Any] = {}

    def lookup() -> None:
        try:
            box["ok"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            box["err"] = exc

    thread = threading.Thread(target=lookup, name="pulpinit-dns", daemon=True)
    thread.start()
    thread.join(deadline.left(f"resolving {host}"))
    if thread.is_alive():
        raise ProbeFailed(Failure.TIMEOUT, f"DNS lookup of {host} took longer than {deadline.total:g} s")
    if "err" in box:
        exc = box["err"]
        reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else str(exc)
        raise ProbeFailed(Failure.DNS, f"cannot resolve {host}: {reason}")
    infos: list[tuple[Any, ...]] = box["ok"]
    return infos


def connect(host: str, port: int, deadline: Deadline) -> socket.socket:
    """A connected TCP socket to the first address of ``host`` that answers."""
    last: ProbeFailed | None = None
    for family, kind, proto, _name, addr in resolve(host, port, deadline):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.left(f"connecting to {host}:{port}"))
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            last = classify_os_error(exc, f"connect to {host}:{port}")
            if last.failure is Failure.TIMEOUT:
                break  # the deadline is spent: no time for the other addresses
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise last or ProbeFailed(Failure.DNS, f"{host} has no address")


def classify_os_error(exc: BaseException, doing: str) -> ProbeFailed:
    """Map a socket/TLS exception to a :class:`ProbeFailed` (one line, no secrets)."""
    if isinstance(exc, ProbeFailed):
        return exc
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or exc.strerror or str(exc)
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = exc.verify_message or reason
        if reason == "WRONG_VERSION_NUMBER":
            reason += " (the server does not speak TLS on that port?)"
        return ProbeFailed(Failure.TLS, f"TLS handshake failed: {one_line(str(reason))}")
    if isinstance(exc, TimeoutError | socket.timeout):
        return ProbeFailed(Failure.TIMEOUT, f"no answer in time ({doing})")
    if isinstance(exc, ConnectionRefusedError):
        return ProbeFailed(Failure.REFUSED, f"connection refused ({doing})")
    if isinstance(exc, OSError) and exc.errno in _RESET_ERRNOS:
        return ProbeFailed(Failure.RESET, f"connection reset by the server ({doing})")
    if isinstance(exc, OSError) and exc.strerror:
        return ProbeFailed(Failure.OTHER, f"{exc.strerror.lower()} ({doing})")
    return ProbeFailed(Failure.OTHER, f"{type(exc).__name__}: {one_line(str(exc))} ({doing})")


def tls_context(cacert: str | None, certfile: str | None, keyfile: str | None) -> ssl.SSLContext:
    """A client context that verifies the server (chain and host name)."""
    try:
        ctx = ssl.create_default_context(cafile=cacert or None)
        if certfile:
            ctx.load_cert_chain(certfile, keyfile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ProbeFailed(Failure.TLS, f"cannot load the TLS files: {one_line(str(exc))}") from None
    return ctx


def wrap_tls(sock: socket.socket, ctx: ssl.SSLContext, host: str, deadline: Deadline) -> ssl.SSLSocket:
    """Run the TLS handshake on ``sock`` within the deadline."""
    sock.settimeout(deadline.left("TLS handshake"))
    try:
        return ctx.wrap_socket(sock, server_hostname=host)
    except ssl.SSLEOFError:
        sock.close()
        raise ProbeFailed(
            Failure.TLS, "TLS handshake failed: the server closed the connection (is TLS enabled there?)"
        ) from None
    except OSError as exc:
        sock.close()
        raise classify_os_error(exc, "TLS handshake") from None


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace and cut overly long texts."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
