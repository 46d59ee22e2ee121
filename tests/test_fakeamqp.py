"""The fake AMQP 1.0 broker: a real proton client connects, authenticates and moves messages."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
from proton import ConnectionException, Message
from proton.utils import BlockingConnection

from pulpinit.testing.fakeamqp import FakeAmqpBroker


def connect(broker: FakeAmqpBroker, user: str | None = None, password: str | None = None) -> BlockingConnection:
    kwargs: dict[str, object] = {}
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
            assert conn.conn.remote_properties["product"] == "pulpinit-fakeamqp"
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
    conn.conn.close()


def test_command_line_ready_line_and_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pulpinit.testing.fakeamqp", "--port", "0", "--user", "guest:guest"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        word, port = proc.stdout.readline().split()
        assert word == "ready"
        from pulpinit.broker_probe import probe_broker
        from pulpinit.probe import BrokerTarget

        assert probe_broker(BrokerTarget(f"qpid://guest:guest@127.0.0.1:{port}/"), timeout_s=3).ok
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
