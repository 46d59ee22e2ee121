"""The armed wait's pieces on real loopback sockets: the knock, and the addresses a refused probe hands over.

The policy itself (when to knock, when not) is tested on the injected clock in test_wait.py; the
whole process against a refused-then-listening fake in test_checkdeps.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from helpers.dns import resolver

from pulpinit.targets import BrokerTarget, Failure, MongoTarget
from pulpinit.testing.faults import BlackHole
from pulpinit.wait.armed import Knock, knock
from pulpinit.wait.broker_probe import probe_broker
from pulpinit.wait.mongo_probe import probe_mongodb


@pytest.fixture
def closed() -> Iterator[tuple[str, int]]:
    """A bound, never listening port: connections to it are refused (and nobody else takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        sock.settimeout(5)
        yield sock


def test_knock_on_a_port_nothing_listens_on_is_refused(closed):
    assert knock(((socket.AF_INET, closed),), 1.0) is Knock.REFUSED


def test_knock_that_is_accepted_sends_nothing_and_closes_politely(listener):
    assert knock(((socket.AF_INET, listener.getsockname()),), 1.0) is Knock.ACCEPTED
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(5)
        assert conn.recv(1) == b""  # an orderly FIN without a byte: a reset would raise here


def test_knock_tries_every_address(closed, listener):
    addresses = ((socket.AF_INET, closed), (socket.AF_INET, listener.getsockname()))
    assert knock(addresses, 1.0) is Knock.ACCEPTED


def test_knock_that_gets_no_answer_is_neither():
    with BlackHole() as hole:
        assert knock(((socket.AF_INET, ("127.0.0.1", hole.port)),), 0.2) is Knock.OTHER


def test_a_refused_broker_probe_hands_over_the_resolved_address(closed):
    names = resolver({"msg.test": "127.0.0.1"})  # the knock must not resolve the name again
    result = probe_broker(BrokerTarget(f"amqp://guest:guest@msg.test:{closed[1]}//"), 1.0, resolver=names)
    assert result.failure is Failure.REFUSED
    assert result.refused == ((socket.AF_INET, closed),)
    assert "refused" not in result.as_json()  # internal: not part of the check-deps JSON


def test_a_refused_mongodb_probe_hands_over_every_seed_that_refused(closed):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        seeds = (closed, other.getsockname())  # numeric: pymongo resolves seeds itself, not through ours
        result = probe_mongodb(MongoTarget(seeds=seeds, replica_set="rs0"), 1.0, resolver=resolver())
        assert result.failure is Failure.REFUSED
        assert set(result.refused) == {(socket.AF_INET, closed), (socket.AF_INET, other.getsockname())}


def test_failures_other_than_refused_hand_over_nothing(closed):
    dns = probe_mongodb(MongoTarget(seeds=(("db.test", closed[1]),)), 1.0, resolver=resolver())
    assert dns.failure is Failure.DNS and dns.refused == ()
    with BlackHole() as hole:
        silent = probe_broker(BrokerTarget(f"amqp://127.0.0.1:{hole.port}//"), 0.3)
    assert silent.failure is Failure.TIMEOUT and silent.refused == ()
