"""The fake Qpid-like broker: AMQP 0-10 byte by byte, and a real proton client over AMQP 1.0."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.processes import Spawned
from proton import ConnectionException, Message
from proton.utils import BlockingConnection

from pulpinit.testing.amqp010server import (
    SESSION,
    SESSION_ATTACH,
    SESSION_ATTACHED,
    SESSION_DETACH,
    SESSION_DETACHED,
    session_control,
)
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.wait import amqp010frames as frames
from pulpinit.wait.net import Deadline, Reader


def connect(broker: FakeAmqpBroker, user: str | None = None, password: str | None = None) -> BlockingConnection:
    kwargs: dict[str, Any] = {}
    if user is not None:
        kwargs = {"user": user, "password": password, "allowed_mechs": "PLAIN", "allow_insecure_mechs": True}
    return BlockingConnection(f"127.0.0.1:{broker.port}", timeout=5, **kwargs)


def test_port_zero_gives_the_real_bound_port() -> None:
    with FakeAmqpBroker() as broker:
        assert broker.port > 0
        socket.create_connection(("127.0.0.1", broker.port), timeout=2).close()
        assert broker.url() == f"qpid://127.0.0.1:{broker.port}/"
        assert broker.url("u", "p") == f"qpid://u:p@127.0.0.1:{broker.port}/"


def test_anonymous_and_message_round_trip() -> None:
    with FakeAmqpBroker() as broker:
        conn = connect(broker)
        try:
            assert conn.conn is not None and conn.conn.remote_properties["product"] == "pulpinit-fakeamqp"
            conn.create_sender("celery").send(Message(body="task-1"))
            receiver = conn.create_receiver("celery")
            assert receiver.receive(timeout=5).body == "task-1"
            receiver.accept()
        finally:
            conn.close()
        assert [addr for addr, _ in broker.received] == ["celery"]
        assert broker.connections[0].mech == "ANONYMOUS"


def test_plain_users() -> None:
    with FakeAmqpBroker(users={"alice": "s3cret", "bob": "hunter22"}) as broker:
        for user, password in (("alice", "s3cret"), ("bob", "hunter22")):
            connect(broker, user, password).close()
        assert [(c.user, c.mech) for c in broker.connections] == [("alice", "PLAIN"), ("bob", "PLAIN")]
        with pytest.raises(ConnectionException, match="unauthorized-access"):
            connect(broker, "alice", "wrong")
        with pytest.raises(ConnectionException, match="unauthorized-access"):
            connect(broker)  # ANONYMOUS is not offered when users are configured


def test_stop_releases_the_port_and_file_descriptors() -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        broker = FakeAmqpBroker().start()
        connect(broker).close()
        broker.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", broker.port), timeout=2)
    assert len(os.listdir("/proc/self/fd")) <= before


def test_stop_with_a_client_still_connected() -> None:
    broker = FakeAmqpBroker().start()
    conn = connect(broker)
    broker.stop()  # the idle client never answers the close: the grace period ends it
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", broker.port), timeout=2)
    assert conn.conn is not None
    conn.conn.close()


@contextlib.contextmanager
def fake_process(*args: str) -> Iterator[int]:
    """``python -m pulpinit.testing.fakeamqp --port 0 ARGS``: yields the port of its ``ready`` line, then SIGTERM."""
    with Spawned([sys.executable, "-m", "pulpinit.testing.fakeamqp", "--port", "0", *args]) as proc:
        yield proc.ready_port()
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_command_line_ready_line_and_sigterm() -> None:
    from pulpinit.targets import BrokerTarget
    from pulpinit.wait.broker_probe import probe_broker

    with fake_process("--user", "guest:guest") as port:
        assert probe_broker(BrokerTarget(f"qpid://guest:guest@127.0.0.1:{port}/"), timeout_s=3).ok


# --- AMQP 0-10, as a dual-protocol Qpid C++ broker answers it ---------------------------------------


def converse(port: int, *messages: bytes) -> bytes:
    """Send ``messages`` one by one and return everything the broker sent until it hung up."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for message in messages:
            sock.sendall(message)
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    return got


def start_ok(mechanism: str, response: bytes | None) -> bytes:
    from pulpinit.wait import amqp010frames as frames

    return frames.control_frame(
        frames.START_OK,
        {"client-properties": {}, "mechanism": mechanism, "response": response, "locale": "en_US"},
    )


def test_amqp010_header_gets_the_header_and_connection_start() -> None:
    from pulpinit.wait import amqp010frames as frames
    from pulpinit.wait.net import Deadline, Reader

    with (
        FakeAmqpBroker(users={"alice": "s3cret"}) as broker,
        socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock,
    ):
        sock.sendall(b"AMQP\x01\x01\x00\x0a")
        assert sock.recv(8) == b"AMQP\x01\x01\x00\x0a"
        start = frames.Framer(Reader(sock, Deadline(5, connected=True))).next_control("start")
    assert start.code == frames.START and start.fields["mechanisms"] == ["PLAIN"]
    assert start.fields["locales"] == ["en_US"] and start.fields["server-properties"]["product"] == "pulpinit-fakeamqp"


def test_amqp010_credentials_are_verified() -> None:
    from pulpinit.wait import amqp010frames as frames

    header = b"AMQP\x01\x01\x00\x0a"
    with FakeAmqpBroker(users={"alice": "s3cret"}) as broker:
        good = converse(broker.port, header, start_ok("PLAIN", b"\x00alice\x00s3cret"))
        assert (
            frames.control_frame(
                frames.TUNE,
                {"channel-max": 32767, "max-frame-size": 65535, "heartbeat-min": 0, "heartbeat-max": 120},
            )
            in good
        )
        bad = converse(broker.port, header, start_ok("PLAIN", b"\x00alice\x00wrong"))
        assert bad.endswith(
            frames.control_frame(frames.CLOSE, {"reply-code": 320, "reply-text": "Authentication failed"})
        )
        # a mechanism that was not offered: the socket is closed without another word (the spec's rule)
        anonymous = converse(broker.port, header, start_ok("ANONYMOUS", None))
        assert good.startswith(anonymous) and anonymous.endswith(b"\x00\x05en_US")  # header + start, nothing more
    assert [(c.protocol, c.user) for c in broker.connections] == []  # no connection.open happened


def test_amqp010_without_users_is_auth_no() -> None:
    from pulpinit.targets import BrokerTarget
    from pulpinit.wait.broker_probe import probe_broker

    with FakeAmqpBroker() as broker:
        assert probe_broker(BrokerTarget(broker.url("anyone", "whatever"))).ok
        assert probe_broker(BrokerTarget(broker.url())).ok
    assert [(c.protocol, c.user, c.mech) for c in broker.connections] == [
        ("AMQP 0-10", "anyone", "PLAIN"),
        ("AMQP 0-10", "anonymous", "ANONYMOUS"),
    ]


def test_other_headers_get_the_010_header_and_a_hang_up() -> None:
    with FakeAmqpBroker() as broker:
        assert converse(broker.port, b"AMQP\x00\x00\x09\x01") == b"AMQP\x01\x01\x00\x0a"
        assert converse(broker.port, b"GET / HTTP/1.1\r\n\r\n") == b"AMQP\x01\x01\x00\x0a"


def test_amqp10_only_broker_answers_010_with_its_own_header() -> None:
    with FakeAmqpBroker(amqp010=False) as broker:
        assert converse(broker.port, b"AMQP\x01\x01\x00\x0a")[:8] in (b"AMQP\x00\x01\x00\x00", b"AMQP\x03\x01\x00\x00")
        conn = connect(broker)  # AMQP 1.0 still works
        conn.close()


def test_command_line_amqp10_only() -> None:
    with fake_process("--amqp10-only") as port:
        assert converse(port, b"AMQP\x01\x01\x00\x0a")[:4] == b"AMQP"
        assert converse(port, b"AMQP\x01\x01\x00\x0a")[:8] != b"AMQP\x01\x01\x00\x0a"


def _opened_010(port: int) -> tuple[socket.socket, frames.Framer]:
    """A raw AMQP 0-10 connection to the fake, anonymous, up to ``open-ok``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(frames.PROTOCOL_HEADER)
    reader = Reader(sock, Deadline(5, connected=True))
    assert reader.read(8, "header") == frames.PROTOCOL_HEADER
    framer = frames.Framer(reader)
    assert framer.next_control("start").code == frames.START
    sock.sendall(frames.control_frame(frames.START_OK, {"mechanism": "ANONYMOUS", "locale": "en_US"}))
    assert framer.next_control("tune").code == frames.TUNE
    sock.sendall(frames.control_frame(frames.TUNE_OK, {"channel-max": 1}) + frames.control_frame(frames.OPEN))
    assert framer.next_control("open-ok").code == frames.OPEN_OK
    return sock, framer


def test_amqp010_sessions_attach_and_detach_as_python_qpid_expects() -> None:
    with FakeAmqpBroker() as broker:
        sock, framer = _opened_010(broker.port)
        with sock:
            sock.sendall(session_control(SESSION_ATTACH, 1, b"pulp-session"))
            assert framer.next_segment("attached") == (
                frames.CONTROL,
                1,
                session_control(SESSION_ATTACHED, 1, b"pulp-session")[12:],
            )
            sock.sendall(session_control(SESSION_DETACH, 1, b"pulp-session"))
            segment, channel, payload = framer.next_segment("detached")
            assert (segment, channel, payload[:2]) == (frames.CONTROL, 1, bytes([SESSION, SESSION_DETACHED]))
            sock.sendall(frames.control_frame(frames.CLOSE, {"reply-code": 200}))
            assert framer.next_control("close-ok").code == frames.CLOSE_OK


def test_amqp010_commands_it_does_not_implement_are_closed_with_a_reason() -> None:
    with FakeAmqpBroker() as broker:
        sock, framer = _opened_010(broker.port)
        with sock:
            sock.sendall(session_control(SESSION_ATTACH, 1, b"s"))
            framer.next_segment("attached")
            sync = bytes([3, 1, 0, 0])  # execution.sync, no fields
            sock.sendall(frames.frame(sync, segment=frames.COMMAND, track=1, channel=1))
            close = framer.next_control("close")
            assert close.code == frames.CLOSE
            assert close.fields["reply-code"] == 540
            assert "does not implement execution command 1" in close.fields["reply-text"]


def test_a_refused_client_certificate_reaches_a_tls13_client_as_the_alert_not_a_reset(pki: Any) -> None:
    """Under TLS 1.3 the client's handshake ends before the server checks its certificate and the client
    speaks first; the fake still lets its "certificate required" alert through, every time."""
    import ssl

    client = ssl.create_default_context(cafile=str(pki.ca))
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    with FakeAmqpBroker(tls_certfile=str(pki.dns), tls_client_ca=str(pki.ca)) as broker:
        for _ in range(5):
            with (
                socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw,
                client.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                tls.sendall(frames.PROTOCOL_HEADER)
                with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
                    tls.recv(8)


def test_after_refusing_a_login_the_fake_leaves_the_hang_up_to_the_client() -> None:
    """python-qpid reports the reason of a close only if the socket is still open when it looks."""
    with (
        FakeAmqpBroker(users={"alice": "s3cret"}) as broker,
        socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock,
    ):
        sock.sendall(frames.PROTOCOL_HEADER + start_ok("PLAIN", b"\x00alice\x00wrong"))
        reader = Reader(sock, Deadline(5, connected=True))
        assert reader.read(8, "header") == frames.PROTOCOL_HEADER
        framer = frames.Framer(reader)
        assert framer.next_control("start").code == frames.START
        close = framer.next_control("close")
        assert (close.code, close.fields["reply-code"]) == (frames.CLOSE, 320)
        sock.sendall(frames.control_frame(frames.CLOSE_OK))
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # still open: the fake waits for us
