"""A fake dual-protocol broker like Qpid C++ (AMQP 0-10 and 1.0 on one port), for tests and the demo.

:class:`FakeAmqpBroker` listens on TCP and looks at the protocol header of each
connection, as qpidd does:

* ``AMQP`` 1 1 0 10 → the AMQP 0-10 server of :mod:`pulpinit.testing.amqp010server`
  (handshake, PLAIN, sessions, close).  This is what Celery's ``qpid://`` transport
  (python-qpid) talks to.
* an AMQP 1.0 header → python-qpid-proton, listening on a private loopback
  port behind this one (the bytes are spliced through): SASL, Open, sessions,
  links, and a tiny in-memory queue per address — a message sent to an address
  is accepted and handed to the next receiver that attaches to it.
* anything else → the 0-10 header, then the connection is closed (qpidd
  answers an unsupported header with the version it supports).

``amqp010=False`` makes an AMQP-1.0-only broker (every connection goes to
proton, which answers other headers in its own way).  ``tls_certfile`` (one PEM: certificate and key)
serves TLS from the first byte, like qpidd's SSL port, for both protocols;
``tls_client_ca`` requires client certificates from that CA.

Authentication — what is verified and what is not:

* ``users={"u": "p"}`` → both protocols offer only PLAIN.  AMQP 0-10: the fake
  itself compares the PLAIN response (``[authzid] \0 user \0 password``) with
  its table: **verified**, wrong ones get ``close`` 320.  AMQP 1.0: proton
  checks passwords through Cyrus SASL (needs a proton built with Cyrus,
  ``saslpasswd2`` from ``sasl2-bin`` and the ``libsasl2-modules`` plugins):
  verified as well.
* ``users=None`` → AMQP 0-10 behaves like qpidd with ``auth=no``: it offers
  ANONYMOUS and PLAIN and accepts any credentials (**not verified**, as the
  real broker does not verify them either); AMQP 1.0 offers only ANONYMOUS.

Cyrus SASL initialises its server side once per process and reads its
configuration file then, so all brokers of one process share one sasldb (in a
temporary directory removed at exit): a user added by one broker exists for
all of them. Each broker still offers only its own mechanism list.

Command line (the demo uses it)::

    python -m pulpinit.testing.fakeamqp --host 127.0.0.1 --port 0 --user guest:guest [--amqp10-only]

prints ``ready <port>`` once listening and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from proton import SASL, Endpoint, Message, symbol
from proton.handlers import MessagingHandler
from proton.reactor import ApplicationEvent, Container, EventInjector

from pulpinit.testing.amqp010server import PRODUCT, VERSION, Amqp010Session
from pulpinit.testing.faults import FaultServer, splice
from pulpinit.testing.serving import serve_until_signal
from pulpinit.wait import amqp010frames as frames
from pulpinit.wait.net import Deadline, ProbeFailed, Reader

AMQP10_HEADERS = (b"AMQP\x00\x01\x00\x00", b"AMQP\x02\x01\x00\x00", b"AMQP\x03\x01\x00\x00")
IDLE_S = 60.0  # a 0-10 client that says nothing for this long is dropped


@dataclass(frozen=True)
class ConnectionInfo:
    """One connection the broker completed the handshake of."""

    user: str | None
    mech: str | None
    container_id: str | None
    protocol: str = "AMQP 1.0"


class _SaslConfig:
    """The process-wide Cyrus SASL directory: ``proton-server.conf`` plus a sasldb."""

    _lock = threading.Lock()
    _dir: Path | None = None

    @classmethod
    def directory(cls) -> Path:
        with cls._lock:
            if cls._dir is None:
                d = Path(tempfile.mkdtemp(prefix="pulpinit-fakeamqp-sasl-"))
                (d / "proton-server.conf").write_text(
                    f"sasldb_path: {d / 'users.sasldb'}\n"
                    "pwcheck_method: auxprop\n"
                    "auxprop_plugin: sasldb\n"
                    "mech_list: PLAIN ANONYMOUS\n"
                )
                atexit.register(shutil.rmtree, d, True)
                cls._dir = d
            return cls._dir

    @classmethod
    def add_user(cls, user: str, password: str) -> None:
        if shutil.which("saslpasswd2") is None:
            raise RuntimeError("saslpasswd2 not found: install sasl2-bin to check PLAIN passwords")
        db = cls.directory() / "users.sasldb"
        # Cyrus looks users up in the realm of the host name (the server FQDN it is given).
        realm = socket.gethostname()
        with cls._lock:
            subprocess.run(
                ["saslpasswd2", "-c", "-p", "-f", str(db), "-u", realm, user],
                input=password.encode(),
                check=True,
                capture_output=True,
                timeout=10,
            )


class _Handler(MessagingHandler):
    def __init__(self, broker: FakeAmqpBroker) -> None:
        super().__init__(auto_accept=True)
        self.broker = broker
        self.queues: dict[str, collections.deque[Message]] = collections.defaultdict(collections.deque)
        self.senders: dict[str, list[Any]] = collections.defaultdict(list)
        self.acceptor: Any = None
        self.container: Any = None
        self.stopping = False
        self.grace = 1.0
        self.open_connections: set[Any] = set()

    def on_connection_bound(self, event: Any) -> None:
        event.connection.properties = {symbol("product"): PRODUCT, symbol("version"): VERSION}
        sasl = event.transport.sasl()
        if SASL.extended():
            sasl.config_path(str(_SaslConfig.directory()))
            sasl.config_name("proton-server")
        if self.broker.users:
            sasl.allow_insecure_mechs = True
            sasl.allowed_mechs("PLAIN")
        else:
            sasl.allowed_mechs("ANONYMOUS")

    def on_connection_opened(self, event: Any) -> None:
        self.open_connections.add(event.connection)
        sasl = event.transport.sasl()
        self.broker.connections.append(ConnectionInfo(sasl.user, sasl.mech, event.connection.remote_container))

    def on_link_opening(self, event: Any) -> None:
        link = event.link
        if link.is_sender:
            address = link.remote_source.address or ""
            link.source.address = address
            self.senders[address].append(link)
        else:
            link.target.address = link.remote_target.address or ""

    def on_link_closing(self, event: Any) -> None:
        self._forget(event.link)

    def on_disconnected(self, event: Any) -> None:
        self.open_connections.discard(event.connection)
        self._maybe_stop()
        for address in list(self.senders):
            self.senders[address] = [s for s in self.senders[address] if s.connection is not event.connection]

    def _forget(self, link: Any) -> None:
        if link.is_sender:
            address = link.source.address or ""
            if link in self.senders.get(address, []):
                self.senders[address].remove(link)

    def on_message(self, event: Any) -> None:
        address = event.message.address or event.link.target.address or ""
        self.broker.received.append((address, event.message))
        self.queues[address].append(event.message)
        self._dispatch(address)

    def on_sendable(self, event: Any) -> None:
        self._dispatch(event.link.source.address or "")

    def _dispatch(self, address: str) -> None:
        queue = self.queues[address]
        for sender in self.senders.get(address, []):
            while queue and sender.credit > 0 and sender.state & Endpoint.LOCAL_ACTIVE:
                sender.send(queue.popleft())

    def on_fake_stop(self, event: Any) -> None:
        # Close politely (each peer gets an AMQP close), then stop once every peer is
        # gone, or after a grace period for peers that never answer the close.
        self.stopping = True
        if self.acceptor is not None:
            self.acceptor.close()
        for conn in list(self.open_connections):
            conn.close()
        self.container.schedule(self.grace, self)
        self._maybe_stop()

    def on_connection_closed(self, event: Any) -> None:
        self.open_connections.discard(event.connection)
        self._maybe_stop()

    def on_timer_task(self, event: Any) -> None:
        if self.stopping:
            self.container.stop()

    def _maybe_stop(self) -> None:
        if self.stopping and not self.open_connections:
            self.container.stop()


class _Front(FaultServer):
    """The public port: TLS (when on), then dispatch on the protocol header like qpidd."""

    def __init__(self, broker: FakeAmqpBroker, host: str, port: int) -> None:
        super().__init__(host, port)
        self.broker = broker

    def handle(self, conn: socket.socket) -> None:
        if self.broker.tls is None:
            self._dispatch(conn)
            return
        conn.settimeout(10)
        spare = conn.dup()  # the TLS socket closes the connection itself when its handshake fails
        try:
            secure = self.broker.tls.wrap_socket(conn, server_side=True)
        except ssl.SSLError as exc:
            if "CERTIFICATE" in str(exc.reason or ""):
                _let_the_alert_through(spare)
            return  # a client that does not speak TLS, or whose certificate the CA refuses
        except (OSError, ValueError):
            return
        finally:
            spare.close()
        with self._lock:
            self._conns.add(secure)
        try:
            self._dispatch(secure)
        finally:
            with self._lock:
                self._conns.discard(secure)
            secure.close()

    def _dispatch(self, conn: socket.socket) -> None:
        broker = self.broker
        conn.settimeout(IDLE_S)
        reader = Reader(conn, Deadline(IDLE_S, connected=True))
        try:
            header = reader.read_upto(8, "waiting for a protocol header")
        except ProbeFailed:
            return
        if header == frames.PROTOCOL_HEADER and broker.amqp010:
            Amqp010Session(conn, reader, broker.users, broker.opened_amqp010).run()
        elif header in AMQP10_HEADERS or (header and not broker.amqp010):
            backend = socket.create_connection(("127.0.0.1", broker.backend_port), timeout=5)
            backend.settimeout(None)
            conn.settimeout(None)
            with self._lock:
                self._conns.add(backend)
            try:
                backend.sendall(header + reader.buf)
                splice(conn, backend)
            finally:
                with self._lock:
                    self._conns.discard(backend)
                backend.close()
        elif header:
            conn.sendall(frames.PROTOCOL_HEADER)  # the version we speak; then hang up


def _let_the_alert_through(conn: socket.socket, linger_s: float = 2.0) -> None:
    """After refusing a client's certificate: hang up so that the TLS alert reaches the client.

    With TLS 1.3 the client's handshake ends before the server checks its certificate, so the
    client has already sent its first bytes; closing with them unread would reset the connection
    and the alert would be lost (the client would see a reset).  Like RabbitMQ, stop sending, read
    what the client sends until it hangs up (at most ``linger_s``), then close.
    """
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(linger_s)
        end = time.monotonic() + linger_s
        while time.monotonic() < end and conn.recv(65536):
            pass
    except OSError:
        pass


class FakeAmqpBroker:
    """A Qpid-like broker on ``host:port`` (0 = a free port): AMQP 0-10 here, AMQP 1.0 through proton."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        users: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        amqp010: bool = True,
        tls_certfile: str | None = None,
        tls_client_ca: str | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.users: dict[str, str] = dict(users) if users is not None else {}
        if self.users and not SASL.extended():
            raise RuntimeError("this python-qpid-proton has no Cyrus SASL: it cannot check passwords")
        self.amqp010 = amqp010
        self.tls: ssl.SSLContext | None = None
        if tls_certfile:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(tls_certfile)
            if tls_client_ca:
                self.tls.load_verify_locations(tls_client_ca)
                self.tls.verify_mode = ssl.CERT_REQUIRED
        self.connections: list[ConnectionInfo] = []
        self.received: list[tuple[str, Message]] = []
        self.backend_port = 0
        self._front: _Front | None = None
        self._thread: threading.Thread | None = None
        self._injector: EventInjector | None = None
        self._handler: _Handler | None = None

    @property
    def port(self) -> int:
        if self._front is None:
            raise RuntimeError("the broker is not started")
        return self._front.port

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """``qpid://[user[:password]@]host:port/`` for this broker (Pulp's broker_url form)."""
        cred = ""
        if user is not None:
            cred = user + (f":{password}" if password is not None else "") + "@"
        return f"qpid://{cred}{self.host}:{self.port}/"

    def start(self) -> FakeAmqpBroker:
        """Listen (synchronously: the port accepts connections on return) and serve in threads."""
        if self._thread is not None:
            raise RuntimeError("already started")
        for user, password in self.users.items():
            _SaslConfig.add_user(user, password)
        handler = _Handler(self)
        container = Container(handler)
        container.container_id = PRODUCT
        injector = EventInjector()
        container.selectable(injector)
        handler.container = container
        handler.acceptor = container.listen("127.0.0.1:0")
        # Proton does not expose the bound port: read it from the acceptor's socket
        # (binding to port 0 and reading it back has no race, unlike picking a port first).
        self.backend_port = int(handler.acceptor._selectable.getsockname()[1])
        self._handler, self._injector = handler, injector
        self._thread = threading.Thread(
            target=self._serve, args=(container,), name=f"fakeamqp-{self.backend_port}", daemon=True
        )
        self._thread.start()
        self._front = _Front(self, self.host, self._requested_port).start()
        return self

    def _serve(self, container: Any) -> None:
        try:
            container.run()
        finally:
            # Sockets of peers that never answered the close are still open: close them.
            handler = self._handler
            for conn in list(handler.open_connections if handler else ()):
                selectable = getattr(conn.transport, "_selectable", None) if conn.transport else None
                if selectable is not None:
                    selectable.close()
            if self._injector is not None:
                # Proton never closes an EventInjector's pipe; nothing writes to it any more.
                for fd in (self._injector.pipe[0], self._injector.pipe[1]):
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def opened_amqp010(self, user: str | None, mechanism: str) -> None:
        """Record an AMQP 0-10 connection the 0-10 side opened."""
        self.connections.append(ConnectionInfo(user, mechanism, None, protocol="AMQP 0-10"))

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection, and end the threads."""
        if self._front is not None:
            self._front.stop()
        if self._thread is None or self._injector is None:
            return
        self._injector.trigger(ApplicationEvent("fake_stop"))
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> FakeAmqpBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _user(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return user, password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pulpinit.testing.fakeamqp", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", type=_user, action="append", default=[], help="USER:PASSWORD (PLAIN)")
    parser.add_argument("--amqp10-only", action="store_true", help="no AMQP 0-10: an AMQP-1.0-only broker")
    args = parser.parse_args(argv)
    broker = FakeAmqpBroker(args.host, args.port, users=args.user or None, amqp010=not args.amqp10_only)
    return serve_until_signal(broker.start())


if __name__ == "__main__":
    sys.exit(main())
