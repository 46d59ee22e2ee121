"""The broker probes against a real RabbitMQ 3.10 (``rabbitmq_amqp1_0`` plugin, plain and TLS listeners).

Celery's broker (``tasks.broker_url``, AMQP 0-9-1) and ``[messaging]`` with gofer's ``rabbitmq``
(AMQP 0-9-1) and ``proton`` (AMQP 1.0, through the plugin) transports.

One broker for the whole session (``rabbitmq`` fixture in conftest.py); skipped with the reason
when rabbitmq-server is not installed or we are not root.  Its TLS listener has a certificate
that names 127.0.0.1 as an IP subjectAltName only and requires a client certificate; TLS on the
RabbitMQ side is Erlang's own implementation, an independent peer for Python's ``ssl``.
"""

from __future__ import annotations

import socket

import pytest
from helpers.dns import resolver
from helpers.rabbitmq import RabbitMQ

from pulpinit.targets import BrokerTarget, Failure, MessagingTarget, ProbeResult
from pulpinit.testing.faults import Proxy
from pulpinit.wait.broker_probe import probe_broker
from pulpinit.wait.messaging_probe import probe_messaging

# the harness runs the broker as root; one worker starts it (once per session)
pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.root, pytest.mark.xdist_group("rabbitmq")]

BAD = "not-the-password"


def check(result: ProbeResult, failure: Failure, *words: str) -> None:
    assert result.failure is failure, result.error
    for word in words:
        assert word in (result.error or ""), result.error
    assert BAD not in repr(result) and BAD not in str(result.as_json())


def tls_target(
    rabbitmq: RabbitMQ,
    scheme: str = "amqps",
    *,
    client_cert: bool = True,
    host: str | None = None,
    cacert: str | None = None,
) -> BrokerTarget:
    pki = rabbitmq.pki
    assert pki is not None
    return BrokerTarget(
        rabbitmq.tls_url(scheme, host=host),
        ssl=True,
        cacert=cacert or str(pki.ca),
        certfile=str(pki.client_cert) if client_cert else None,
        keyfile=str(pki.client_key) if client_cert else None,
    )


def agents(
    rabbitmq: RabbitMQ, url: str, transport: str = "proton", *, cacert: str = "", client_cert: bool = True
) -> MessagingTarget:
    """``[messaging]`` at ``url`` with the TLS files Pulp would hand gofer (its certificate and key in one file)."""
    pki = rabbitmq.pki
    assert pki is not None
    combined = pki.directory / "client-combined.pem"
    if not combined.exists():
        combined.write_bytes(pki.client_cert.read_bytes() + pki.client_key.read_bytes())
    return MessagingTarget(transport, url, cacert or str(pki.ca), str(combined) if client_cert else "")


def test_everything_listens_on_loopback(rabbitmq: RabbitMQ) -> None:
    listening = rabbitmq.listening()
    assert f"127.0.0.1:{rabbitmq.port}" in listening and f"127.0.0.1:{rabbitmq.tls_port}" in listening
    assert f"127.0.0.1:{rabbitmq.dist_port}" in listening and f"127.0.0.1:{rabbitmq.epmd_port}" in listening
    assert all(address.startswith(("127.0.0.1:", "::1:")) for address in listening), listening


@pytest.mark.parametrize(("transport", "scheme"), [("celery", "amqp"), ("proton", "amqp"), ("rabbitmq", "tcp")])
def test_good_credentials(rabbitmq: RabbitMQ, transport: str, scheme: str) -> None:
    url = rabbitmq.url(scheme)
    result = (
        probe_broker(BrokerTarget(url)) if transport == "celery" else probe_messaging(agents(rabbitmq, url, transport))
    )
    assert result.ok, result.error
    assert result.version is not None and result.version.startswith("RabbitMQ 3.")
    assert result.latency_ms > 0
    assert "guest:***@" in result.endpoint


def test_qpid_url_is_told_to_use_amqp(rabbitmq: RabbitMQ) -> None:
    """Celery's qpid:// transport speaks AMQP 0-10: RabbitMQ cannot serve it, with or without the 1.0 plugin."""
    advice = (
        "Celery's qpid:// transport speaks AMQP 0-10; this broker offers AMQP 0-9-1 (RabbitMQ?): "
        f"use amqp://USER:PASSWORD@127.0.0.1:{rabbitmq.port}/VHOST"
    )
    check(probe_broker(BrokerTarget(rabbitmq.url("qpid"))), Failure.PROTOCOL, advice)
    proton = agents(rabbitmq, rabbitmq.url("amqp"))
    with rabbitmq.amqp10_unloaded():
        check(probe_broker(BrokerTarget(rabbitmq.url("qpid"))), Failure.PROTOCOL, advice)
        check(probe_messaging(proton), Failure.PROTOCOL, "AMQP 0-9-1", "set messaging.transport: rabbitmq")
        assert probe_broker(BrokerTarget(rabbitmq.url("amqp"))).ok  # 0-9-1 is unaffected
    assert probe_messaging(proton).ok


def test_gofer_qpid_transport_is_told_to_use_rabbitmq(rabbitmq: RabbitMQ) -> None:
    result = probe_messaging(agents(rabbitmq, rabbitmq.url("tcp"), "qpid"))
    check(result, Failure.PROTOCOL, "gofer's qpid adapter", "AMQP 0-9-1", "set messaging.transport: rabbitmq")


def test_anonymous_amqp10_and_default_guest_091(rabbitmq: RabbitMQ) -> None:
    # proton without a user logs in ANONYMOUS (the plugin maps it to guest);
    # amqp:// without credentials uses guest/guest like kombu, and so does gofer's rabbitmq adapter.
    assert probe_messaging(agents(rabbitmq, rabbitmq.url("amqp", None, None))).ok
    assert probe_broker(BrokerTarget(rabbitmq.url("amqp", None, None))).ok
    assert probe_messaging(agents(rabbitmq, rabbitmq.url("tcp", None, None), "rabbitmq")).ok


def test_bad_password_amqp091_is_auth(rabbitmq: RabbitMQ) -> None:
    result = probe_broker(BrokerTarget(rabbitmq.url("amqp", "guest", BAD)), timeout_s=6)
    check(result, Failure.AUTH, "403 ACCESS_REFUSED")


def test_bad_password_amqp10_is_auth_when_waiting_long_enough(rabbitmq: RabbitMQ) -> None:
    # RabbitMQ's AMQP 1.0 plugin answers a rejected SASL PLAIN only after ~3 s.
    check(probe_messaging(agents(rabbitmq, rabbitmq.url("amqp", "guest", BAD)), timeout_s=6), Failure.AUTH)
    result = probe_messaging(agents(rabbitmq, rabbitmq.url("tcp", "guest", BAD), "rabbitmq"), timeout_s=6)
    check(result, Failure.AUTH, "403 ACCESS_REFUSED")


def test_bad_password_within_one_second_is_a_stalled_sasl_step(rabbitmq: RabbitMQ) -> None:
    result = probe_messaging(agents(rabbitmq, rabbitmq.url("amqp", "guest", BAD)), timeout_s=1)
    check(result, Failure.STALLED, "SASL outcome", "RabbitMQ delays")
    assert "check-deps --timeout 5" in (result.hint or "") and "NetworkPolicies" not in (result.hint or "")


def test_missing_vhost_names_it(rabbitmq: RabbitMQ) -> None:
    result = probe_broker(BrokerTarget(rabbitmq.url("amqp") + "no-such-vhost"))
    check(result, Failure.VHOST, "virtual host 'no-such-vhost' does not exist", "530 NOT_ALLOWED")
    assert "rabbitmqctl" not in (result.hint or "") and "VHOST" in (result.hint or "")


def test_rabbitmq_answers_an_unknown_header_with_its_own(rabbitmq: RabbitMQ) -> None:
    # The fact the qpid:// advice rests on: AMQP 0-10 gets RabbitMQ's 0-9-1 header back.
    with socket.create_connection((rabbitmq.host, rabbitmq.port), timeout=5) as sock:
        sock.sendall(b"AMQP\x01\x01\x00\x0a")
        answer = sock.recv(8)
    assert answer == b"AMQP\x00\x00\x09\x01"


# --- TLS listener ----------------------------------------------------------------------------------


def tls_agents(rabbitmq: RabbitMQ, transport: str, **files: object) -> MessagingTarget:
    """gofer's TLS schemes: ``ssl://`` for the rabbitmq adapter, ``amqps://`` for proton (its only TLS scheme)."""
    url = rabbitmq.tls_url("amqps" if transport == "proton" else "ssl")
    return agents(rabbitmq, url, transport, **files)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["celery", "rabbitmq", "proton"])
def test_tls_to_the_ip_address_in_an_ip_subject_alt_name(rabbitmq: RabbitMQ, transport: str) -> None:
    target = tls_target(rabbitmq, "amqp") if transport == "celery" else tls_agents(rabbitmq, transport)
    result = probe_broker(target) if isinstance(target, BrokerTarget) else probe_messaging(target)
    assert result.ok, result.error
    assert result.version is not None and result.version.startswith("RabbitMQ 3.")


def test_tls_bad_certificate_cases(rabbitmq: RabbitMQ) -> None:
    pki = rabbitmq.pki
    assert pki is not None
    wrong_ca = tls_target(rabbitmq, "amqp", cacert=str(pki.other_ca))
    check(probe_broker(wrong_ca), Failure.TLS, "certificate is not accepted")
    check(probe_broker(tls_target(rabbitmq, "amqp", client_cert=False)), Failure.TLS, "client certificate")
    gofer_wrong_ca = tls_agents(rabbitmq, "rabbitmq", cacert=str(pki.other_ca))
    check(probe_messaging(gofer_wrong_ca), Failure.TLS, "certificate is not accepted")
    check(probe_messaging(tls_agents(rabbitmq, "rabbitmq", client_cert=False)), Failure.TLS, "client certificate")
    # gofer's proton adapter verifies nothing (ANONYMOUS_PEER) but still sends messaging.clientcert
    assert probe_messaging(tls_agents(rabbitmq, "proton", cacert=str(pki.other_ca))).ok
    check(probe_messaging(tls_agents(rabbitmq, "proton", client_cert=False)), Failure.TLS, "client certificate")


def test_a_host_name_the_certificate_does_not_name(rabbitmq: RabbitMQ) -> None:
    """No client of Pulp's checks it: Pulp gives py-amqp no server name, gofer turns the check off."""
    localhost = resolver({"localhost": "127.0.0.1"})
    assert probe_broker(tls_target(rabbitmq, "amqp", host="localhost"), resolver=localhost).ok
    for transport in ("rabbitmq", "proton"):
        target = tls_agents(rabbitmq, transport)
        named = MessagingTarget(
            transport, target.url.replace("127.0.0.1", "localhost"), target.cacert, target.clientcert
        )
        assert probe_messaging(named, resolver=localhost).ok, transport


def test_amqps_verifies_nothing_and_sends_no_client_certificate(rabbitmq: RabbitMQ) -> None:
    """kombu replaces BROKER_USE_SSL by ssl=True for amqps://: a listener that requires a client
    certificate refuses it even when tasks.certfile names one, whatever CA tasks.cacert names."""
    assert rabbitmq.pki is not None
    for target in (tls_target(rabbitmq), tls_target(rabbitmq, cacert=str(rabbitmq.pki.other_ca))):
        check(probe_broker(target), Failure.TLS, "client certificate")


def test_qpid_url_over_tls_is_still_told_to_use_amqp(rabbitmq: RabbitMQ) -> None:
    # The certificate names 127.0.0.1 only as an IP SAN, which python-qpid does not read: a TLS
    # failure that says so comes first. As a DNS name, the protocol answer would be the 0-9-1 header.
    check(probe_broker(tls_target(rabbitmq, "qpid")), Failure.TLS, "qpid:// transport")


@pytest.mark.parametrize("scheme", ["amqp", "qpid"])
def test_plain_client_at_the_tls_port(rabbitmq: RabbitMQ, scheme: str) -> None:
    url = f"{scheme}://guest:guest@127.0.0.1:{rabbitmq.tls_port}/"
    check(probe_broker(BrokerTarget(url)), Failure.TLS_MISMATCH, "TLS")


@pytest.mark.parametrize(("transport", "scheme"), [("proton", "amqp"), ("proton", "ssl"), ("rabbitmq", "tcp")])
def test_gofer_plain_client_at_the_tls_port(rabbitmq: RabbitMQ, transport: str, scheme: str) -> None:
    """proton turns TLS on for amqps:// only: its ssl:// is a plain connection, which the TLS port refuses."""
    url = f"{scheme}://guest:guest@127.0.0.1:{rabbitmq.tls_port}/"
    check(probe_messaging(agents(rabbitmq, url, transport)), Failure.TLS_MISMATCH, "TLS")


def test_tls_client_at_the_plain_port(rabbitmq: RabbitMQ) -> None:
    assert rabbitmq.pki is not None
    target = BrokerTarget(rabbitmq.url("amqps"), ssl=True, cacert=str(rabbitmq.pki.ca))
    check(probe_broker(target), Failure.TLS_MISMATCH, "does not speak TLS")


# --- network -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["celery", "proton"])
def test_through_a_flapping_proxy(rabbitmq: RabbitMQ, transport: str) -> None:
    with Proxy((rabbitmq.host, rabbitmq.port), up=False) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"

        def probe() -> ProbeResult:
            return probe_broker(BrokerTarget(url)) if transport == "celery" else probe_messaging(agents(rabbitmq, url))

        assert probe().failure is Failure.REFUSED
        proxy.go_up()
        assert probe().ok
        proxy.go_down()
        assert probe().failure is Failure.REFUSED


def test_probe_latency_is_well_under_a_second(rabbitmq: RabbitMQ) -> None:
    probes = [
        lambda: probe_broker(BrokerTarget(rabbitmq.url("amqp"))),
        lambda: probe_broker(tls_target(rabbitmq)),
        lambda: probe_messaging(agents(rabbitmq, rabbitmq.url("amqp"))),
    ]
    for probe in probes:  # the figures themselves are measured in benchmarks/; a loaded machine has ample room
        latencies = sorted(probe().latency_ms for _ in range(20))
        assert latencies[len(latencies) // 2] < 1000, latencies
