"""TCP fault injection: late start, silence, reset, slowness, flapping — over real sockets."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.pki import make_pki

from pulpinit.testing.faults import (
    TLS_ALERT,
    AnswerServer,
    BlackHole,
    FaultServer,
    Proxy,
    ResetServer,
    SilentServer,
    TlsServer,
)


class EchoServer(FaultServer):
    """The 'real' server behind the proxies: echoes every byte."""

    def handle(self, conn: socket.socket) -> None:
        while data := conn.recv(65536):
            conn.sendall(data)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server  # type: ignore[misc]


def talk(port: int, data: bytes = b"ping", timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return sock.recv(65536)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_start_late_on_demand(echo: EchoServer) -> None:
    with Proxy(("127.0.0.1", echo.port), up=False) as late:
        assert not late.is_up and refused(late.port)
        late.go_up()
        assert talk(late.port) == b"ping"
        assert late.wait_accepted(1, timeout=2)


def test_a_down_port_stays_reserved() -> None:
    with SilentServer(up=False) as server, socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", server.port))


def test_up_after_a_delay(echo: EchoServer) -> None:
    with Proxy(("127.0.0.1", echo.port), up=False) as late:
        late.up_after(0.05)
        deadline = time.monotonic() + 5
        while refused(late.port):  # poll for readiness
            assert time.monotonic() < deadline
        assert talk(late.port) == b"ping"


def test_silent_server_accepts_and_never_answers() -> None:
    with SilentServer() as silent, socket.create_connection(("127.0.0.1", silent.port), timeout=0.2) as sock:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert silent.accepted == 1


def test_reset_mid_handshake_after_some_bytes() -> None:
    with ResetServer(read_bytes=4) as reset, socket.create_connection(("127.0.0.1", reset.port), timeout=2) as sock:
        sock.sendall(b"AMQP")
        with pytest.raises(ConnectionResetError):
            sock.recv(1)


@pytest.mark.slow  # real processes: seconds
def test_slow_first_answer_only(echo: EchoServer) -> None:
    with (
        Proxy(("127.0.0.1", echo.port), first_answer_delay=1.0) as slow,
        socket.create_connection(("127.0.0.1", slow.port), timeout=2) as sock,
    ):
        started = time.monotonic()
        sock.sendall(b"one")
        assert sock.recv(16) == b"one"
        first = time.monotonic() - started
        started = time.monotonic()
        sock.sendall(b"two")
        assert sock.recv(16) == b"two"
        assert first >= 1.0 and time.monotonic() - started < 0.5  # not delayed again


def test_flap_by_hand_resets_open_connections(echo: EchoServer) -> None:
    with Proxy(("127.0.0.1", echo.port)) as flappy:
        sock = socket.create_connection(("127.0.0.1", flappy.port), timeout=2)
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        flappy.go_down()
        assert refused(flappy.port)
        with pytest.raises((ConnectionResetError, BrokenPipeError, AssertionError)):
            sock.sendall(b"y")
            assert sock.recv(1) == b"y"  # EOF (b"") or a reset: the connection is gone
        sock.close()
        flappy.go_up()
        assert talk(flappy.port) == b"ping"


def test_flap_on_timers(echo: EchoServer) -> None:
    with Proxy(("127.0.0.1", echo.port)) as flappy:
        flappy.flap(up_s=0.05, down_s=0.05)
        seen: set[bool] = set()
        deadline = time.monotonic() + 5
        while seen != {True, False}:  # poll until both states were observed
            seen.add(flappy.is_up)
            assert time.monotonic() < deadline
            time.sleep(0.005)


def test_proxy_resets_when_the_backend_is_gone() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with Proxy(("127.0.0.1", dead)) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        with sock, pytest.raises(ConnectionResetError):
            sock.sendall(b"x")
            sock.recv(1)


def test_stop_ends_threads_and_frees_the_port(echo: EchoServer) -> None:
    before = threading.active_count()
    proxy = Proxy(("127.0.0.1", echo.port)).start()
    held = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    held.sendall(b"x")
    assert held.recv(1) == b"x"
    proxy.stop()
    held.close()
    assert threading.active_count() <= before + 1  # the echo handler may still be finishing
    with socket.socket() as again:
        again.bind(("127.0.0.1", proxy.port))


def test_in_front_of_the_fake_mongodb() -> None:
    fakemongo = pytest.importorskip("pulpinit.testing.fakemongo")
    pymongo = pytest.importorskip("pymongo")
    with fakemongo.FakeMongo() as mongo, Proxy(("127.0.0.1", mongo.port), up=False) as late:
        client = pymongo.MongoClient("127.0.0.1", late.port, serverSelectionTimeoutMS=300, connect=False)
        try:
            with pytest.raises(pymongo.errors.ServerSelectionTimeoutError):
                client.admin.command("ping")
            late.go_up()
            client.close()
            client = pymongo.MongoClient("127.0.0.1", late.port, serverSelectionTimeoutMS=3000)
            assert client.admin.command("ping")["ok"] == 1
        finally:
            client.close()


def test_answer_server_sends_its_bytes_and_hangs_up() -> None:
    with AnswerServer(b"AMQP\x00\x00\x09\x01") as rabbit, AnswerServer(b"") as mute:
        assert talk(rabbit.port, b"AMQP\x01\x01\x00\x0a") == b"AMQP\x00\x00\x09\x01"
        assert talk(mute.port) == b""
        assert rabbit.wait_accepted(1) and mute.wait_accepted(1)


def test_tls_server_completes_handshakes_and_refuses_plain_bytes(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    with TlsServer(str(pki.ip), answer=b"pong") as server:
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=2) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            sock.sendall(b"ping")
            assert sock.recv(4) == b"pong"
        assert server.handshakes == 1
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as plain:
            plain.sendall(b"AMQP\x00\x00\x09\x01")
            try:
                answer = plain.recv(64)
            except ConnectionResetError:
                answer = b""
        assert answer == b"" or answer[:1] == b"\x15"  # a hang-up or a TLS alert, never plain bytes


def test_black_hole_never_completes_a_connection() -> None:
    with BlackHole() as hole, pytest.raises(TimeoutError):
        socket.create_connection(("127.0.0.1", hole.port), timeout=0.2)


def test_tls_alert_is_a_tls_record() -> None:
    assert TLS_ALERT[0] == 0x15 and TLS_ALERT[1] == 3 and len(TLS_ALERT) == 5 + TLS_ALERT[4]
