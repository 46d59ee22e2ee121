"""A fake MongoDB server that pymongo talks to over real TCP.

:class:`FakeMongo` listens on a TCP port, frames requests with
:mod:`pulpinit.testing.wire`, answers the handshake (``hello`` /
``isMaster``: configurable wire versions, clock, replica-set mode), checks
users and what they may do (:mod:`pulpinit.testing.mongoauth`: SCRAM logins, a
``read_only`` user's writes refused as mongod refuses them) when users are
configured, optionally serves TLS (with client certificates required when a
client CA is given), and hands data commands to :class:`~pulpinit.testing.mongocmds.Engine`
over an in-memory mongomock client, under one lock.  Unknown commands answer
``CommandNotFound`` (59).  Command failures are
injected as on a mongod with test commands enabled: ``configureFailPoint`` ``failCommand``
(:mod:`pulpinit.testing.failpoints`), or in-process :meth:`FakeMongo.fail_command`.

``lax_upserts`` imitates MongoDB-compatible servers that answer a colliding
upsert (one whose query matches no document while its ``_id`` exists)
without an error: ``findAndModify`` then returns no document instead of
``E11000``.  ``dates_as_strings`` imitates servers with looser types: a date
written with ``$set`` is stored, and returned, as ``str(datetime)``
(``'2026-12-06 18:07:00.499000'``).

Run it on its own (the demo and subprocess tests do)::

    python -m pulpinit.testing.fakemongo --port 0 --user pulp_database:pulp:secret

prints ``ready <port>`` once listening and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import itertools
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar

import mongomock
from bson import ObjectId, Timestamp
from bson.errors import InvalidDocument

from pulpinit.parse import format_hostport
from pulpinit.testing.failpoints import FailPointError, FailPoints
from pulpinit.testing.mongoauth import Accounts, Logins
from pulpinit.testing.mongocmds import CommandError, Doc, Engine
from pulpinit.testing.scram import MECHANISMS, AuthError
from pulpinit.testing.serving import serve_until_signal
from pulpinit.testing.wire import Command, decode_command, encode_reply, read_message

#: (first wire version, server version it stands for), newest first.
_VERSIONS = (
    (25, "8.0.4"),
    (21, "7.0.15"),
    (17, "6.0.19"),
    (13, "5.0.30"),
    (9, "4.4.29"),
    (8, "4.2.25"),
    (7, "4.0.28"),
    (6, "3.6.23"),
    (5, "3.4.24"),
    (4, "3.2.22"),
    (3, "3.0.15"),
    (2, "2.6.12"),
    (0, "2.4.14"),
)


def version_for_wire(wire_version: int) -> str:
    """The MongoDB release that introduced ``wire_version`` (e.g. 17 → 6.0.x)."""
    return next(v for w, v in _VERSIONS if w <= wire_version)


@dataclass
class _Connection:
    id: int
    sock: socket.socket
    logins: Logins = field(default_factory=Logins)
    app_name: str | None = None  # from the client metadata of its first hello (failCommand's appName)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeMongo


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.fake._serve(self.request)


class FakeMongo:
    """One fake ``mongod``; see the module docstring.  Attributes may be changed while it runs."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        wire_version: int = 17,
        min_wire_version: int = 0,
        replica_set: str | None = None,
        users: Mapping[tuple[str, str], str] | None = None,
        clock_offset_s: float = 0.0,
        version: str | None = None,
        reply_delay_s: float = 0.0,
        advertised_host: str | None = None,
        tls_certfile: str | None = None,
        tls_client_ca: str | None = None,
        read_only_users: Mapping[tuple[str, str], str] | None = None,
        lax_upserts: bool = False,
        dates_as_strings: bool = False,
    ) -> None:
        self.host = host
        self.wire_version = wire_version
        self.min_wire_version = min_wire_version
        self.replica_set = replica_set
        self.clock_offset_s = clock_offset_s
        self.reply_delay_s = reply_delay_s
        wildcard = host in ("", "0.0.0.0", "::")  # noqa: S104 (only compared, to advertise loopback)
        self.advertised_host = advertised_host or ("127.0.0.1" if wildcard else host)
        self._version = version
        self._port = port
        self.accounts = Accounts()
        for (database, user), password in (users or {}).items():
            self.add_user(database, user, password)
        for (database, user), password in (read_only_users or {}).items():
            self.add_user(database, user, password, read_only=True)
        self.client: Any = mongomock.MongoClient()  # untyped library
        self.lock = threading.RLock()
        self.engine = Engine(self.client, self.now)
        self.engine.lax_upserts = lax_upserts
        self.engine.dates_as_strings = dates_as_strings
        self.commands: collections.Counter[str] = collections.Counter()
        self.fail_points = FailPoints()  # mongod's failCommand: see fail_command()
        self._connections: dict[int, _Connection] = {}
        self._ids = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._tls: ssl.SSLContext | None = None
        if tls_certfile:  # one PEM: certificate and key
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(tls_certfile)
            if tls_client_ca:  # mutual TLS: clients must present a certificate from this CA
                self._tls.load_verify_locations(tls_client_ca)
                self._tls.verify_mode = ssl.CERT_REQUIRED

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> FakeMongo:
        """Listen (again, on the same port after a :meth:`stop`) and serve in a thread."""
        if self._server is not None:
            return self
        server_class = (
            type("_Server6", (_Server,), {"address_family": socket.AF_INET6}) if ":" in self.host else _Server
        )
        self._server = server_class((self.host, self._port), _Handler)
        self._server.fake = self
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fakemongo-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection (clients see a reset)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self.lock:
            connections = list(self._connections.values())
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        deadline = time.monotonic() + 2
        while self.connection_count and time.monotonic() < deadline:
            time.sleep(0.005)

    def __enter__(self) -> FakeMongo:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- knobs and inspection -------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return (self.advertised_host, self._port)

    @property
    def hostport(self) -> str:
        return format_hostport(self.advertised_host, self._port)

    @property
    def uri(self) -> str:
        """``mongodb://host:port/`` (plus ``replicaSet=`` / ``tls=true`` when on); no credentials."""
        query = "&".join(
            ([f"replicaSet={self.replica_set}"] if self.replica_set else []) + (["tls=true"] if self._tls else [])
        )
        return f"mongodb://{self.hostport}/" + (f"?{query}" if query else "")

    @property
    def version(self) -> str:
        return self._version or version_for_wire(self.wire_version)

    def set_clock_offset(self, seconds: float) -> None:
        self.clock_offset_s = seconds

    def now(self) -> datetime.datetime:
        """The fake's clock (UTC, millisecond precision, shifted by ``clock_offset_s``)."""
        now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=self.clock_offset_s)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    @property
    def mechanisms(self) -> tuple[str, ...]:
        """Like mongod: SCRAM-SHA-256 from 4.0 (wire 7) on; speculative authentication from 4.4 (9)."""
        return MECHANISMS if self.wire_version >= 7 else MECHANISMS[1:]

    def add_user(self, database: str, user: str, password: str, *, read_only: bool = False) -> None:
        """Add (or change) a user; it may then authenticate with SCRAM-SHA-256 or SCRAM-SHA-1.

        ``read_only``: the user may read but every write command answers ``Unauthorized``.
        """
        self.accounts.add(database, user, password, read_only=read_only)

    def fail_command(
        self,
        *commands: str,
        times: int | None = 1,
        error_code: int | None = None,
        close_connection: bool = False,
        block_s: float = 0.0,
        app_name: str | None = None,
    ) -> None:
        """Fail the next ``times`` (None: every) of ``commands``, as ``configureFailPoint``
        ``failCommand`` does on mongod (see :mod:`pulpinit.testing.failpoints`)."""
        self.fail_points.arm(
            commands,
            times=times,
            error_code=error_code,
            close_connection=close_connection,
            block_s=block_s,
            app_name=app_name,
        )

    def command_count(self, name: str) -> int:
        with self.lock:
            return self.commands[name]

    def reset_counts(self) -> None:
        with self.lock:
            self.commands.clear()

    @property
    def connection_count(self) -> int:
        """Connections open right now."""
        with self.lock:
            return len(self._connections)

    # -- serving --------------------------------------------------------------------------
    def _serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(next(self._ids), sock)
        with self.lock:
            self._connections[conn.id] = conn
        try:
            if self._tls is not None:
                sock.settimeout(5)
                conn.sock = sock = self._tls.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
            while self._server is not None:
                message = read_message(sock)
                if message is None:
                    break
                command = decode_command(message)
                failure = self.fail_points.take(command.name, conn.app_name)
                if failure is not None and failure.block_s:
                    time.sleep(failure.block_s)
                if failure is not None and failure.close_connection:
                    break
                if failure is not None and failure.error_code is not None:
                    with self.lock:
                        self.commands[command.name] += 1
                    reply = CommandError(
                        failure.error_code, f"Failing command {command.name} via 'failCommand' failpoint"
                    ).reply()
                else:
                    reply = self._dispatch(conn, command)
                if command.more_to_come:
                    continue
                if self.reply_delay_s > 0:
                    time.sleep(self.reply_delay_s)
                try:
                    data = encode_reply(command, message.request_id, next(self._ids), reply)
                except InvalidDocument as exc:
                    error = CommandError(1, f"fake mongod: cannot encode the reply: {exc}", "InternalError")
                    data = encode_reply(command, message.request_id, next(self._ids), error.reply())
                sock.sendall(data)
        except Exception:  # noqa: S110 (garbage or a vanished peer: drop the connection like mongod)
            pass
        finally:
            with self.lock:
                self._connections.pop(conn.id, None)
            sock.close()

    def _dispatch(self, conn: _Connection, command: Command) -> Doc:
        name = command.name
        with self.lock:
            self.commands[name] += 1
        try:
            self.accounts.check(conn.logins, command)
            local = self._server_commands.get(name)
            if local is not None:
                return local(self, conn, command)
            if name in self.engine.handlers:
                with self.lock:
                    return self.engine.run(name, command.database, command.body)
            raise CommandError(59, f"no such command: '{name}'", "CommandNotFound")
        except CommandError as exc:
            return exc.reply()
        except Exception as exc:  # a bug in the fake must not look like a network failure
            return CommandError(1, f"fake mongod: {type(exc).__name__}: {exc}", "InternalError").reply()

    def _hello(self, conn: _Connection, command: Command) -> Doc:
        body = command.body
        client = body.get("client")
        if isinstance(client, dict) and isinstance(client.get("application"), dict):
            conn.app_name = str(client["application"].get("name"))
        reply: Doc = {"helloOk": True} if body.get("helloOk") else {}
        reply["isWritablePrimary" if command.name == "hello" else "ismaster"] = True
        if self.replica_set:
            me = self.hostport
            reply.update(
                setName=self.replica_set,
                setVersion=1,
                hosts=[me],
                primary=me,
                me=me,
                secondary=False,
                electionId=ObjectId("7fffffff0000000000000001"),
                lastWrite={"opTime": {"ts": Timestamp(int(time.time()), 1), "t": 1}, "lastWriteDate": self.now()},
            )
        reply.update(
            maxBsonObjectSize=16 * 1024 * 1024,
            maxMessageSizeBytes=48_000_000,
            maxWriteBatchSize=100_000,
            localTime=self.now(),
            logicalSessionTimeoutMinutes=30,
            connectionId=conn.id,
            minWireVersion=self.min_wire_version,
            maxWireVersion=self.wire_version,
            readOnly=False,
        )
        mechs = body.get("saslSupportedMechs")
        if isinstance(mechs, str) and self.wire_version >= 7 and self.accounts.knows(mechs):
            reply["saslSupportedMechs"] = list(self.mechanisms)
        speculative = body.get("speculativeAuthenticate")
        if isinstance(speculative, dict) and self.wire_version >= 9 and speculative.get("mechanism") in self.mechanisms:
            # like mongod: an unknown user gets no speculative answer and falls back to saslStart
            with contextlib.suppress(AuthError):
                reply["speculativeAuthenticate"] = self.accounts.start(
                    conn.logins, str(speculative.get("db", command.database)), speculative
                )
        reply["ok"] = 1.0
        return reply

    def _build_info(self, conn: _Connection, command: Command) -> Doc:
        parts = [int(p) for p in self.version.split(".")[:3] if p.isdigit()]
        return {
            "version": self.version,
            "versionArray": [*parts, 0],
            "gitVersion": "fakemongo",
            "maxBsonObjectSize": 16 * 1024 * 1024,
            "bits": 64,
            "ok": 1.0,
        }

    def _sasl_start(self, conn: _Connection, command: Command) -> Doc:
        return self.accounts.sasl_start(conn.logins, command, self.mechanisms)

    def _sasl_continue(self, conn: _Connection, command: Command) -> Doc:
        return self.accounts.sasl_continue(conn.logins, command)

    def _connection_status(self, conn: _Connection, command: Command) -> Doc:
        return conn.logins.status()

    def _server_status(self, conn: _Connection, command: Command) -> Doc:
        return {
            "host": self.hostport,
            "version": self.version,
            "process": "mongod",
            "pid": os.getpid(),
            "uptime": time.monotonic() - self._started,
            "localTime": self.now(),
            "connections": {"current": self.connection_count},
            "ok": 1.0,
        }

    def _ok(self, conn: _Connection, command: Command) -> Doc:
        return {"ok": 1.0}

    def _configure_fail_point(self, conn: _Connection, command: Command) -> Doc:
        try:
            self.fail_points.configure(command.body)
        except (FailPointError, TypeError, ValueError) as exc:
            raise CommandError(2, str(exc), "BadValue") from exc
        return {"ok": 1.0}

    _server_commands: ClassVar[dict[str, Callable[[FakeMongo, _Connection, Command], Doc]]] = {
        "hello": _hello,
        "isMaster": _hello,
        "ismaster": _hello,
        "ping": _ok,
        "endSessions": _ok,
        "buildInfo": _build_info,
        "buildinfo": _build_info,
        "saslStart": _sasl_start,
        "saslContinue": _sasl_continue,
        "connectionStatus": _connection_status,
        "serverStatus": _server_status,
        "configureFailPoint": _configure_fail_point,
    }


def _user(spec: str) -> tuple[tuple[str, str], str]:
    database, user, password = spec.split(":", 2)
    return (database, user), password


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pulpinit.testing.fakemongo``: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m pulpinit.testing.fakemongo",
        description="Serve a fake MongoDB; prints 'ready <port>' once listening.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--wire-version", type=int, default=17)
    parser.add_argument("--min-wire-version", type=int, default=0)
    parser.add_argument("--replica-set", default=None)
    parser.add_argument("--user", action="append", type=_user, default=[], metavar="DB:USER:PASSWORD")
    parser.add_argument("--read-only-user", action="append", type=_user, default=[], metavar="DB:USER:PASSWORD")
    parser.add_argument("--lax-upserts", action="store_true", help="answer colliding upserts without an error")
    parser.add_argument("--clock-offset", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--reply-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--server-version", default=None, help="buildInfo version (default: from wire)")
    parser.add_argument("--advertised-host", default=None, help="host name in replica-set hello replies")
    parser.add_argument("--tls-cert", default=None, help="serve TLS with this PEM (certificate + key)")
    parser.add_argument("--tls-client-ca", default=None, help="require client certificates from this CA")
    args = parser.parse_args(argv)
    fake = FakeMongo(
        args.host,
        args.port,
        wire_version=args.wire_version,
        min_wire_version=args.min_wire_version,
        replica_set=args.replica_set,
        users=dict(args.user),
        clock_offset_s=args.clock_offset,
        version=args.server_version,
        reply_delay_s=args.reply_delay,
        advertised_host=args.advertised_host,
        tls_certfile=args.tls_cert,
        tls_client_ca=args.tls_client_ca,
        read_only_users=dict(args.read_only_user),
        lax_upserts=args.lax_upserts,
    ).start()
    return serve_until_signal(fake)


if __name__ == "__main__":
    sys.exit(main())
