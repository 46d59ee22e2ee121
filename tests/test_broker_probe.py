"""The broker probe over real TCP: every failure class produced for real, secrets never shown.

Peers: the fake Qpid-like broker (AMQP 0-10 written here), byte-level
fakes from ``pulpinit.testing.faults`` (a few bytes each: an AMQP-1.0-only server, RabbitMQ's
answer to a foreign header, an HTTP server, a TLS alert, a silent or hanging-up server, a real
TLS server), and certificates made for the test.  DNS never leaves the machine: the probe gets
an injected resolver.  ``[messaging]``'s probe (AMQP 1.0 among others) is tested in
``test_messaging_probe.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.dns import resolver
from helpers.pki import Pki

from pulpinit.targets import BrokerTarget, Failure, ProbeResult
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.faults import TLS_ALERT, AnswerServer, BlackHole, Proxy, ResetServer, SilentServer, TlsServer
from pulpinit.testing.plugin import FakeServices
from pulpinit.testing.serving import free_port
from pulpinit.wait.broker_probe import parse_broker_url, probe_broker

SECRET = "pa:ss@w/rd%"  # a test password with URL-special characters
QUOTED = "pa%3Ass%40w%2Frd%25"
SCHEMES = ("qpid", "amqp")  # AMQP 0-10, 0-9-1
RABBIT_HEADER, AMQP10_SASL = b"AMQP\x00\x00\x09\x01", b"AMQP\x03\x01\x00\x00"


@pytest.fixture(scope="module")
def broker(module_fakes: FakeServices) -> FakeAmqpBroker:
    return module_fakes.broker(users={"alice": SECRET})


@pytest.fixture(scope="module")
def open_broker(module_fakes: FakeServices) -> FakeAmqpBroker:
    """Like qpidd with auth=no: ANONYMOUS and PLAIN, credentials not verified."""
    return module_fakes.broker()


def url(scheme: str, port: int, cred: str = f"alice:{QUOTED}@", host: str = "127.0.0.1") -> str:
    return f"{scheme}://{cred}{host}:{port}/"


def assert_clean(result: ProbeResult) -> None:
    text = repr(result) + str(result.as_json())
    assert SECRET not in text and QUOTED not in text


def check(result: ProbeResult, failure: Failure, *words: str) -> None:
    assert result.failure is failure, result.error
    assert result.error and "\n" not in result.error
    for word in words:
        assert word in result.error, result.error
    assert result.hint == failure.hint
    assert_clean(result)


# --- success ---------------------------------------------------------------------------------------


def test_qpid_url_speaks_amqp_0_10_with_plain(broker: FakeAmqpBroker) -> None:
    result = probe_broker(BrokerTarget(url("qpid", broker.port)))
    assert result.ok, result.error
    assert result.version == "pulpinit-fakeamqp 1.0"
    assert result.endpoint == f"qpid://alice:***@127.0.0.1:{broker.port}/"
    last = broker.connections[-1]
    assert (last.protocol, last.user, last.mech) == ("AMQP 0-10", "alice", "PLAIN")
    assert_clean(result)


def test_qpid_url_without_a_password_logs_in_anonymously(open_broker: FakeAmqpBroker) -> None:
    for target in (open_broker.url(), open_broker.url("guest")):  # 2014 default: user only
        result = probe_broker(BrokerTarget(target))
        assert result.ok, result.error
        assert open_broker.connections[-1].mech == "ANONYMOUS"


def test_a_broker_without_authentication_accepts_any_password(open_broker: FakeAmqpBroker) -> None:
    # qpidd with auth=no offers PLAIN and does not verify it: Celery connects, so the probe says up.
    result = probe_broker(BrokerTarget(open_broker.url("anyone", "anything")))
    assert result.ok and open_broker.connections[-1].mech == "PLAIN"


def test_latency_well_under_a_second(broker: FakeAmqpBroker) -> None:
    target = BrokerTarget(url("qpid", broker.port))
    latencies = sorted(probe_broker(target).latency_ms for _ in range(20))
    assert latencies[len(latencies) // 2] < 100 and latencies[-1] < 500, latencies


# --- network phase ---------------------------------------------------------------------------------


def test_dns_failure_through_an_injected_resolver() -> None:
    for scheme in SCHEMES:
        result = probe_broker(BrokerTarget(url(scheme, 5672, host="no-such-host.test")), resolver=resolver())
        check(result, Failure.DNS, "no-such-host.test", "Name or service not known")


def test_a_name_the_resolver_knows(broker: FakeAmqpBroker) -> None:
    names = resolver({"msg.pulp.test": "127.0.0.1"})
    assert probe_broker(BrokerTarget(url("qpid", broker.port, host="msg.pulp.test")), resolver=names).ok


def test_refused() -> None:
    port = free_port()
    for scheme in SCHEMES:
        check(probe_broker(BrokerTarget(url(scheme, port))), Failure.REFUSED)


def test_no_tcp_connection_in_time_is_a_network_timeout() -> None:
    with BlackHole() as hole:
        for scheme in SCHEMES:
            result = probe_broker(BrokerTarget(url(scheme, hole.port)), timeout_s=0.2)
            check(result, Failure.TIMEOUT, "connecting to 127.0.0.1")
            assert "NetworkPolicies" in (result.hint or "")
            assert 150 < result.latency_ms < 5000  # the 0.2 s budget, not the silence (room for a loaded machine)


@pytest.mark.slow  # real processes: seconds
def test_a_silent_server_is_a_stalled_handshake_naming_the_step() -> None:
    steps = {"qpid": "AMQP 0-10 protocol header", "amqp": "Connection.Start"}
    with SilentServer() as silent:
        for scheme, step in steps.items():
            result = probe_broker(BrokerTarget(url(scheme, silent.port)), timeout_s=0.3)
            check(result, Failure.STALLED, "connected, but no answer within 0.3 s", step)
            assert 250 < result.latency_ms < 5000  # the 0.3 s budget, not the silence (room for a loaded machine)


def test_reset_mid_handshake() -> None:
    # Hung up on right after the header: a reset for every protocol (Pulp's clients say no more).
    expected = {"qpid": Failure.RESET, "amqp": Failure.RESET}
    with ResetServer(read_bytes=8) as reset:
        for scheme, failure in expected.items():
            check(probe_broker(BrokerTarget(url(scheme, reset.port))), failure)
        assert reset.accepted >= len(expected)  # plus the connections that checked for TLS


def test_slow_server_within_and_beyond_the_timeout(broker: FakeAmqpBroker) -> None:
    with Proxy(("127.0.0.1", broker.port), first_answer_delay=0.3) as slow:
        target = BrokerTarget(url("qpid", slow.port))
        check(probe_broker(target, timeout_s=0.1), Failure.STALLED, "AMQP 0-10 protocol header")
        result = probe_broker(target, timeout_s=2)
        assert result.ok and result.latency_ms >= 300


# --- authentication --------------------------------------------------------------------------------


def test_bad_password(broker: FakeAmqpBroker) -> None:
    result = probe_broker(BrokerTarget(url("qpid", broker.port, f"alice:wrong-{QUOTED}@")))
    check(result, Failure.AUTH, "login as 'alice' refused")


def test_anonymous_against_a_broker_that_wants_plain_is_a_sasl_mismatch(broker: FakeAmqpBroker) -> None:
    result = probe_broker(BrokerTarget(broker.url("alice")))
    check(result, Failure.SASL, "does not offer SASL ANONYMOUS (it offers: PLAIN)", "put 'alice' and a password")


# --- another protocol on the port ------------------------------------------------------------------


def test_qpid_url_against_rabbitmq_style_header_names_amqp_url() -> None:
    with AnswerServer(RABBIT_HEADER) as rabbit:
        result = probe_broker(BrokerTarget(url("qpid", rabbit.port)))
    check(
        result,
        Failure.PROTOCOL,
        "Celery's qpid:// transport speaks AMQP 0-10; this broker offers AMQP 0-9-1 "
        f"(RabbitMQ?): use amqp://USER:PASSWORD@127.0.0.1:{rabbit.port}/VHOST",
    )


def test_qpid_url_against_an_amqp10_only_server() -> None:
    with AnswerServer(AMQP10_SASL) as only10:
        check(probe_broker(BrokerTarget(url("qpid", only10.port))), Failure.PROTOCOL, "offers only AMQP 1.0")
    with FakeAmqpBroker(amqp010=False) as proton_only:  # a real AMQP 1.0 implementation answering 0-10
        check(probe_broker(BrokerTarget(proton_only.url())), Failure.PROTOCOL, "offers only AMQP 1.0")


def test_qpid_url_against_a_server_that_hangs_up_on_the_header() -> None:
    with AnswerServer(b"") as mute:
        check(
            probe_broker(BrokerTarget(url("qpid", mute.port))),
            Failure.RESET,
            "closed the connection without answering the AMQP 0-10 protocol header",
        )


def test_other_headers_for_the_other_schemes(broker: FakeAmqpBroker) -> None:
    check(probe_broker(BrokerTarget(url("amqp", broker.port))), Failure.PROTOCOL, "AMQP 0-10 protocol header")
    with AnswerServer(AMQP10_SASL) as only10:
        check(probe_broker(BrokerTarget(url("amqp", only10.port))), Failure.PROTOCOL, "AMQP 1.0")


def test_an_http_server_on_the_broker_port() -> None:
    with AnswerServer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n") as http:
        for scheme in SCHEMES:
            check(probe_broker(BrokerTarget(url(scheme, http.port))), Failure.PROTOCOL, "an HTTP response")


# --- TLS on one side only --------------------------------------------------------------------------


def test_plain_client_gets_a_tls_alert() -> None:
    with AnswerServer(TLS_ALERT) as alert:
        for scheme in SCHEMES:
            check(
                probe_broker(BrokerTarget(url(scheme, alert.port))),
                Failure.TLS_MISMATCH,
                "a TLS alert",
                "that port speaks TLS",
            )


def test_plain_client_at_a_real_tls_server(pki: Pki) -> None:
    with TlsServer(str(pki.ip)) as server:
        for scheme in SCHEMES:
            result = probe_broker(BrokerTarget(url(scheme, server.port)))
            check(result, Failure.TLS_MISMATCH, "TLS")


def test_tls_client_at_plain_ports(broker: FakeAmqpBroker, pki: Pki) -> None:
    ca = str(pki.ca)
    with AnswerServer(RABBIT_HEADER, read_bytes=8) as rabbit:
        cases = [
            (url("qpid", broker.port), True),
            (url("amqps", rabbit.port), False),
            (url("amqp", rabbit.port), True),
        ]
        for target, ssl in cases:
            result = probe_broker(BrokerTarget(target, ssl=ssl, cacert=ca))
            check(result, Failure.TLS_MISMATCH, "does not speak TLS")


def test_tls_client_at_a_silent_plain_port(pki: Pki) -> None:
    with SilentServer() as silent:
        result = probe_broker(BrokerTarget(url("qpid", silent.port), ssl=True, cacert=str(pki.ca)), timeout_s=0.3)
    check(result, Failure.STALLED, "TLS handshake")


# --- TLS with certificates -------------------------------------------------------------------------


def tls_broker(pki: Pki, cert: Path, **kwargs: object) -> FakeAmqpBroker:
    return FakeAmqpBroker(users={"alice": SECRET}, tls_certfile=str(cert), **kwargs)  # type: ignore[arg-type]


def tls_target(scheme: str, port: int, pki: Pki, host: str = "127.0.0.1", **files: str) -> BrokerTarget:
    return BrokerTarget(
        url(scheme, port, host=host),
        ssl=True,
        cacert=files.get("cacert", str(pki.ca)),
        certfile=files.get("certfile"),
        keyfile=files.get("keyfile"),
    )


def test_tls_to_an_ip_address(pki: Pki) -> None:
    """The Service-IP case: qpid:// follows python-qpid, which does not read IP subjectAltNames."""
    with tls_broker(pki, pki.ip) as fake:
        result = probe_broker(tls_target("qpid", fake.port, pki))
        check(
            result,
            Failure.TLS,
            "does not name 127.0.0.1 the way Celery's qpid:// transport checks it",
            "IP subjectAltNames are not read",
        )
    with tls_broker(pki, pki.qpid) as fake:  # 127.0.0.1 as a DNS name and as the CN: python-qpid accepts it
        result = probe_broker(tls_target("qpid", fake.port, pki))
        assert result.ok, result.error
        assert fake.connections[-1].protocol == "AMQP 0-10"


def test_tls_to_a_host_name(pki: Pki) -> None:
    names = resolver({"localhost": "127.0.0.1"})
    with tls_broker(pki, pki.dns) as fake:
        assert probe_broker(tls_target("qpid", fake.port, pki, host="localhost"), resolver=names).ok
        check(probe_broker(tls_target("qpid", fake.port, pki)), Failure.TLS, "127.0.0.1")


@pytest.mark.parametrize(
    ("cert", "words"),
    [
        ("wrong", "127.0.0.1"),
        ("foreign", "unable to get local issuer certificate"),
        ("expired", "certificate has expired"),
    ],
)
def test_bad_server_certificates(pki: Pki, cert: str, words: str) -> None:
    with tls_broker(pki, getattr(pki, cert)) as fake:
        check(probe_broker(tls_target("qpid", fake.port, pki)), Failure.TLS, words)
        # amqps://: kombu connects with ssl=True and checks nothing: past TLS, the fake speaks AMQP 0-10
        check(probe_broker(tls_target("amqps", fake.port, pki)), Failure.PROTOCOL, "not AMQP 0-9-1")


def test_client_certificate_required(pki: Pki) -> None:
    with tls_broker(pki, pki.qpid, tls_client_ca=str(pki.ca)) as fake:
        check(probe_broker(tls_target("qpid", fake.port, pki)), Failure.TLS, "client certificate")
        with_cert = tls_target("qpid", fake.port, pki, certfile=str(pki.client_cert), keyfile=str(pki.client_key))
        assert probe_broker(with_cert).ok


def test_missing_tls_files_are_named(pki: Pki, tmp_path: Path) -> None:
    port = free_port()
    for files, named in (
        ({"cacert": str(tmp_path / "ca.crt")}, "tasks.cacert"),
        ({"certfile": str(tmp_path / "client.crt")}, "tasks.certfile"),
        ({"certfile": str(pki.client_cert), "keyfile": str(tmp_path / "k")}, "tasks.keyfile"),
    ):
        result = probe_broker(tls_target("qpid", port, pki, **files))
        check(result, Failure.TLS, f"cannot read {named} {tmp_path}", "No such file or directory")
    (tmp_path / "junk.pem").write_text("not a certificate")
    check(
        probe_broker(tls_target("amqp", port, pki, certfile=str(tmp_path / "junk.pem"))),
        Failure.TLS,
        "cannot load the client certificate from tasks.certfile",
    )


def test_amqps_without_celery_require_ssl_does_not_verify(pki: Pki) -> None:
    """Celery then uses ssl=True, which verifies nothing: a foreign CA still gets through TLS."""
    with tls_broker(pki, pki.foreign) as fake:
        result = probe_broker(BrokerTarget(url("amqps", fake.port)))
    check(result, Failure.PROTOCOL, "AMQP 0-10")  # through TLS, then the fake Qpid's own header


# --- URLs ------------------------------------------------------------------------------------------


def test_bad_urls() -> None:
    # tcp:// and ssl:// are [messaging]'s schemes, which no Celery transport takes
    for target in ("redis://h/", f"amqp://u:{QUOTED}@h:99999/", "qpid+ssl://h/", "tcp://h:5672", "ssl://h/"):
        result = probe_broker(BrokerTarget(target))
        check(result, Failure.OTHER)


@pytest.mark.parametrize(
    ("url_", "ssl", "expected"),
    [
        ("qpid://localhost/", False, ("AMQP 0-10", "localhost", 5672, False, None, None, "/")),
        ("qpid://guest@db:1234", False, ("AMQP 0-10", "db", 1234, False, "guest", None, "/")),
        ("qpid://u:p@h/", True, ("AMQP 0-10", "h", 5672, True, "u", "p", "/")),  # kombu qpid: 5672 even with TLS
        ("amqp://guest:guest@h//", False, ("AMQP 0-9-1", "h", 5672, False, "guest", "guest", "/")),
        ("amqp://h/pulp", False, ("AMQP 0-9-1", "h", 5672, False, None, None, "pulp")),
        ("amqps://h/%2Fx", False, ("AMQP 0-9-1", "h", 5671, True, None, None, "/x")),
        (f"amqp://u:{QUOTED}@[::1]:5672/", False, ("AMQP 0-9-1", "::1", 5672, False, "u", SECRET, "/")),
    ],
)
def test_parse_broker_url(url_: str, ssl: bool, expected: tuple[object, ...]) -> None:
    ep = parse_broker_url(url_, ssl=ssl)
    assert (ep.protocol, ep.host, ep.port, ep.tls, ep.user, ep.password, ep.vhost) == expected
    assert SECRET not in repr(ep)
