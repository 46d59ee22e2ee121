"""The broker probe against a real RabbitMQ 3.10 with the ``rabbitmq_amqp1_0`` plugin on loopback.

One broker for the whole session (``rabbitmq`` fixture in conftest.py); skipped with the reason
when rabbitmq-server is not installed or we are not root.
"""

from __future__ import annotations

import socket

import pytest
from rabbitmq import RabbitMQ

from pulpinit.broker_probe import probe_broker
from pulpinit.probe import BrokerTarget, Failure
from pulpinit.testing.faults import Proxy

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

BAD = "not-the-password"


@pytest.mark.parametrize("scheme", ["qpid", "amqp"])
def test_good_credentials(rabbitmq: RabbitMQ, scheme: str) -> None:
    result = probe_broker(BrokerTarget(rabbitmq.url(scheme)))
    assert result.ok, result.error
    assert result.version is not None and result.version.startswith("RabbitMQ 3.")
    assert result.latency_ms < 500
    assert "guest:***@" in result.endpoint


def test_anonymous_amqp10_and_default_guest_091(rabbitmq: RabbitMQ) -> None:
    # qpid:// without a password logs in ANONYMOUS (the plugin maps it to guest);
    # amqp:// without credentials uses guest/guest like kombu.
    assert probe_broker(BrokerTarget(rabbitmq.url("qpid", None, None))).ok
    assert probe_broker(BrokerTarget(rabbitmq.url("amqp", None, None))).ok


def test_bad_password_amqp091_is_auth(rabbitmq: RabbitMQ) -> None:
    result = probe_broker(BrokerTarget(rabbitmq.url("amqp", "guest", BAD)))
    assert result.failure is Failure.AUTH
    assert "403 ACCESS_REFUSED" in (result.error or "")
    assert BAD not in repr(result) and BAD not in str(result.as_json())


def test_bad_password_amqp10_is_auth_when_waiting_long_enough(rabbitmq: RabbitMQ) -> None:
    # RabbitMQ's AMQP 1.0 plugin answers a rejected SASL PLAIN only after ~3 s.
    result = probe_broker(BrokerTarget(rabbitmq.url("qpid", "guest", BAD)), timeout_s=6)
    assert result.failure is Failure.AUTH, result.error
    assert BAD not in repr(result) and BAD not in str(result.as_json())


def test_bad_password_amqp10_within_one_second_says_why(rabbitmq: RabbitMQ) -> None:
    result = probe_broker(BrokerTarget(rabbitmq.url("qpid", "guest", BAD)), timeout_s=1)
    assert result.failure is Failure.TIMEOUT
    assert "SASL outcome" in (result.error or "") and "RabbitMQ delays" in (result.error or "")
    assert BAD not in repr(result)


def test_unknown_vhost(rabbitmq: RabbitMQ) -> None:
    result = probe_broker(BrokerTarget(rabbitmq.url("amqp") + "no-such-vhost"))
    assert not result.ok
    assert "530 NOT_ALLOWED" in (result.error or "")


def test_protocol_mismatch_qpid_url_without_the_amqp10_plugin(rabbitmq: RabbitMQ) -> None:
    """The real misconfiguration: qpid:// against a RabbitMQ that has no AMQP 1.0 plugin."""
    with rabbitmq.amqp10_unloaded():
        result = probe_broker(BrokerTarget(rabbitmq.url("qpid")))
        assert result.failure is Failure.PROTOCOL, result.error
        assert "AMQP 0-9-1" in (result.error or "")
        assert probe_broker(BrokerTarget(rabbitmq.url("amqp"))).ok  # 0-9-1 is unaffected
    assert probe_broker(BrokerTarget(rabbitmq.url("qpid"))).ok


def test_rabbitmq_answers_an_unknown_header_with_its_own(rabbitmq: RabbitMQ) -> None:
    # AMQP 0-10 (what Pulp's old qpid.messaging spoke) gets RabbitMQ's 0-9-1 header back.
    with socket.create_connection((rabbitmq.host, rabbitmq.port), timeout=5) as sock:
        sock.sendall(b"AMQP\x01\x01\x00\x0a")
        answer = sock.recv(8)
    assert answer == b"AMQP\x00\x00\x09\x01"


@pytest.mark.parametrize("scheme", ["qpid+ssl", "amqps"])
def test_tls_against_the_plain_port(rabbitmq: RabbitMQ, scheme: str) -> None:
    result = probe_broker(BrokerTarget(rabbitmq.url(scheme)))
    assert result.failure is Failure.TLS, result.error


@pytest.mark.parametrize("scheme", ["qpid", "amqp"])
def test_through_a_flapping_proxy(rabbitmq: RabbitMQ, scheme: str) -> None:
    with Proxy((rabbitmq.host, rabbitmq.port), up=False) as proxy:
        url = f"{scheme}://guest:guest@127.0.0.1:{proxy.port}/"
        assert probe_broker(BrokerTarget(url)).failure is Failure.REFUSED
        proxy.go_up()
        assert probe_broker(BrokerTarget(url)).ok
        proxy.go_down()
        assert probe_broker(BrokerTarget(url)).failure is Failure.REFUSED


def test_probe_latency_is_well_under_a_second(rabbitmq: RabbitMQ) -> None:
    for scheme in ("qpid", "amqp"):
        latencies = sorted(probe_broker(BrokerTarget(rabbitmq.url(scheme))).latency_ms for _ in range(20))
        assert latencies[-1] < 250, (scheme, latencies)
