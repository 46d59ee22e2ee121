"""TCP fault injection that works in front of any server (fake MongoDB, fake AMQP, RabbitMQ).

Every fault server owns a port from construction to :meth:`FaultServer.stop`,
and is deterministic: tests switch it with explicit calls, timers are only
conveniences for the demo.

* **start late / flap** – a server built with ``up=False`` refuses connections
  (the port is reserved by a bound, non-listening socket, so nobody else can
  take it) until :meth:`~FaultServer.go_up`; :meth:`~FaultServer.go_down`
  refuses again and resets the open connections. :meth:`~FaultServer.up_after`
  and :meth:`~FaultServer.flap` do the same on timers.
* :class:`SilentServer` – accepts, reads, never answers (a hung server).
* :class:`ResetServer` – reads ``read_bytes`` of the client's handshake, then
  resets the connection (``SO_LINGER`` 0 → RST).
* :class:`AnswerServer` – answers every connection with fixed bytes and hangs up: an
  HTTP server, an AMQP broker refusing a header, a TLS server's alert, in a few bytes.
* :class:`TlsServer` – a TLS server (Python's ``ssl``) that hangs up after the
  handshake, or answers fixed bytes inside TLS.
* :class:`BlackHole` – a port whose TCP handshake never completes (its accept queue is
  full, so the kernel drops the SYNs): a firewall that drops packets, on loopback.
* :class:`Proxy` – forwards to a real server; ``first_answer_delay`` holds the
  server's first answer back by that many seconds (a slow server); combined
  with ``up=False`` it is a late server, with ``go_down()``/``go_up()`` a
  flapping one.  It counts the connections whose client hung up (FIN) without sending
  a byte (:attr:`Proxy.quiet`): what the armed wait's knocks cost the server behind it.

Example::

    with Proxy(("127.0.0.1", mongo.port), up=False) as late:
        ...                       # clients get "connection refused" on late.port
        late.go_up()              # now they reach the fake MongoDB through it
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self


def _abort(conn: socket.socket) -> None:
    """Make the coming close send RST, and wake the thread blocked reading ``conn``.

    ``SHUT_RD`` sends nothing (unlike ``SHUT_WR``, which would send a FIN first); the
    owner's ``close()`` then resets the connection.
    """
    _linger0(conn)
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RD)


def _linger0(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _reusable_socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


class FaultServer:
    """Base class: a reserved port, an accept loop, one thread per connection (:meth:`handle`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, up: bool = True) -> None:
        self.host = host
        self._reserve = _reusable_socket(host)  # bound, never listening: refusals, and ours
        self._reserve.bind((host, port))
        self.port: int = self._reserve.getsockname()[1]
        self._initially_up = up
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopped = threading.Event()
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._timers: list[threading.Timer] = []
        self._loop: threading.Thread | None = None
        self.accepted = 0

    # --- control ----------------------------------------------------------------------------------

    def start(self) -> Self:
        self._loop = threading.Thread(target=self._accept_loop, name=f"fault-{self.port}", daemon=True)
        self._loop.start()
        if self._initially_up:
            self.go_up()
        return self

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def go_up(self) -> None:
        """Listen: connections are accepted from now on (returns once they are)."""
        with self._lock:
            if self._listener is None and not self._stopped.is_set():
                listener = _reusable_socket(self.host)
                listener.bind((self.host, self.port))
                listener.listen(64)
                self._listener = listener
        self._wake()

    def go_down(self, *, reset_open: bool = True) -> None:
        """Stop listening (new connections are refused); by default reset the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns = list(self._conns) if reset_open else []
        self._wake()
        if listener is not None:
            # shutdown() stops listening at once; close() alone would wait for the accept
            # loop's select() to drop its reference, so a connect could still succeed.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            _abort(conn)

    def up_after(self, delay: float) -> None:
        """Come up after ``delay`` seconds (a timer; tests should call :meth:`go_up`)."""
        self._timer(delay, self.go_up)

    def flap(self, up_s: float, down_s: float) -> None:
        """Alternate down/up forever (``down_s`` down, then ``up_s`` up) until :meth:`stop`."""

        def down() -> None:
            self.go_down()
            self._timer(down_s, up)

        def up() -> None:
            self.go_up()
            self._timer(up_s, down)

        (down if self.is_up else up)()

    def wait_accepted(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` connections have been accepted in total."""
        with self._changed:
            return self._changed.wait_for(lambda: self.accepted >= count, timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until no accepted connection is open any more (every one was closed)."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._conns, timeout)

    def stop(self) -> None:
        """Refuse, reset every connection, end every thread, release the port."""
        self._stopped.set()
        for timer in self._timers:
            timer.cancel()
        self.go_down()
        if self._loop is not None:
            self._loop.join(5)
        for thread in list(self._threads):
            thread.join(5)
        for sock in (self._reserve, self._wake_r, self._wake_w):
            sock.close()

    def __enter__(self) -> Self:
        return self.start() if self._loop is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- machinery --------------------------------------------------------------------------------

    def handle(self, conn: socket.socket) -> None:
        """Serve one accepted connection; the caller closes it afterwards."""
        raise NotImplementedError

    def _timer(self, delay: float, action: Callable[[], None]) -> None:
        if self._stopped.is_set():
            return
        timer = threading.Timer(delay, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"!")

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            try:
                ready, _, _ = select.select([self._wake_r, *([listener] if listener else [])], [], [])
            except (OSError, ValueError):
                continue  # the listener was closed under us: read the new state
            if self._wake_r in ready:
                self._wake_r.recv(4096)
                continue
            try:
                conn, _ = listener.accept()  # type: ignore[union-attr]
            except OSError:
                continue
            with self._changed:
                self.accepted += 1
                self._conns.add(conn)
                self._changed.notify_all()
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.add(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handle(conn)
        except OSError:
            pass
        finally:
            with self._changed:
                self._conns.discard(conn)
                self._changed.notify_all()
            conn.close()
            self._threads.discard(threading.current_thread())


class SilentServer(FaultServer):
    """Accepts connections and reads everything, but never sends a byte."""

    def handle(self, conn: socket.socket) -> None:
        while conn.recv(65536):
            pass


class ResetServer(FaultServer):
    """Reads ``read_bytes`` of the client's first message, then resets the connection."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, up: bool = True, read_bytes: int = 1) -> None:
        super().__init__(host, port, up=up)
        self.read_bytes = read_bytes

    def handle(self, conn: socket.socket) -> None:
        got = 0
        while got < self.read_bytes:
            chunk = conn.recv(self.read_bytes - got)
            if not chunk:
                break
            got += len(chunk)
        _linger0(conn)  # the close that follows sends RST


class AnswerServer(FaultServer):
    """Reads the client's first bytes (``read_bytes``, or whatever arrives first), sends ``answer``, hangs up.

    ``answer=b"HTTP/1.1 400 Bad Request\\r\\n\\r\\n"`` is an HTTP server,
    ``b"AMQP\\x00\\x00\\x09\\x01"`` RabbitMQ refusing a header, ``TLS_ALERT`` a TLS server
    refusing bytes that are not TLS, ``b""`` a server that hangs up without a word.
    """

    def __init__(
        self, answer: bytes, host: str = "127.0.0.1", port: int = 0, *, up: bool = True, read_bytes: int = 1
    ) -> None:
        super().__init__(host, port, up=up)
        self.answer = answer
        self.read_bytes = read_bytes

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        got = b""
        while len(got) < self.read_bytes and (chunk := conn.recv(65536)):
            got += chunk
        conn.sendall(self.answer)


#: A TLS 1.0-framed fatal alert, protocol_version (70): what TLS servers send to bytes that are not TLS.
TLS_ALERT = b"\x15\x03\x01\x00\x02\x02\x46"


class TlsServer(FaultServer):
    """A TLS server (certificate and key in one PEM): completes handshakes, answers ``answer``, hangs up.

    A client that does not speak TLS gets what Python's ``ssl`` does to it (an alert or a
    hang-up); ``client_ca`` requires client certificates from that CA.
    """

    def __init__(
        self,
        certfile: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        up: bool = True,
        answer: bytes = b"",
        client_ca: str | None = None,
    ) -> None:
        super().__init__(host, port, up=up)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile)
        if client_ca:
            self.context.load_verify_locations(client_ca)
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.answer = answer
        self.handshakes = 0

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            secure = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with secure:
            self.handshakes += 1
            with contextlib.suppress(OSError):
                if secure.recv(65536) and self.answer:
                    secure.sendall(self.answer)


class BlackHole:
    """A loopback port that never completes a TCP connection: ``connect()`` times out.

    It listens with a backlog of 0 and fills that queue with connections it never accepts;
    Linux then drops further SYNs.  Use as a context manager; ``port`` is the port.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.socket()
        self._listener.bind((host, 0))
        self._listener.listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._fillers: list[socket.socket] = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((host, self.port))
            self._fillers.append(filler)

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in (*self._fillers, self._listener):
            sock.close()


def splice(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways between two connected sockets until both directions have ended."""
    back = threading.Thread(target=_copy, args=(b, a), daemon=True)
    back.start()
    _copy(a, b)
    back.join()


def _copy(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except (OSError, ValueError):
        pass
    finally:
        if not isinstance(dst, ssl.SSLSocket):  # shutting down one TLS direction would end both
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


class Proxy(FaultServer):
    """Forwards each connection to ``target``; the server's first answer waits ``first_answer_delay`` s."""

    def __init__(
        self,
        target: tuple[str, int],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        up: bool = True,
        first_answer_delay: float = 0.0,
    ) -> None:
        super().__init__(host, port, up=up)
        self.target = target
        self.first_answer_delay = first_answer_delay
        self.quiet = 0  # connections the client closed cleanly without sending a byte

    def handle(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _linger0(conn)  # reset, like a load balancer whose backend is gone
            return
        upstream.settimeout(None)
        with self._lock:
            self._conns.add(upstream)
        back = threading.Thread(target=self._pump, args=(upstream, conn, self.first_answer_delay), daemon=True)
        back.start()
        try:
            sent = self._pump(conn, upstream, 0.0)
        finally:
            back.join()
            with self._lock:
                self._conns.discard(upstream)
            upstream.close()
        if sent == 0:
            with self._lock:
                self.quiet += 1

    def _pump(self, src: socket.socket, dst: socket.socket, first_delay: float) -> int | None:
        """Copy until ``src`` ends; the bytes copied, None when it ended with an error (a reset)."""
        sent: int | None = 0
        try:
            while data := src.recv(65536):
                if first_delay > 0:
                    if self._stopped.wait(first_delay):
                        break
                    first_delay = 0.0
                dst.sendall(data)
                sent = (sent or 0) + len(data)
        except OSError:
            sent = None
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        return sent
