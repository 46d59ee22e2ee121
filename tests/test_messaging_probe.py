"""``[messaging]`` read as gofer reads it, and probed over each transport's protocol, over real TCP.

Peers: the fake Qpid-like broker (AMQP 0-10 for the ``qpid`` transport and AMQP 1.0 through
proton for ``proton`` on one port, as a Qpid C++ with its amqp module), byte-level fakes from
``pulpinit.testing.faults``, and certificates made for the test.  RabbitMQ (the ``rabbitmq``
transport, and ``proton`` through its AMQP 1.0 plugin) is in ``test_rabbitmq.py``; Pulp's own
clients judge the same cases in the differential tier (``test_oracle.py``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers.dns import resolver
from helpers.pki import Pki

from pulpinit.settings import goferurl
from pulpinit.targets import Failure, MessagingTarget, ProbeResult
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.faults import TLS_ALERT, AnswerServer, ResetServer, SilentServer
from pulpinit.testing.plugin import FakeServices
from pulpinit.testing.serving import free_port
from pulpinit.wait.messaging_probe import probe_messaging

SECRET = "s3cr:t%w0rd"  # gofer decodes nothing: ':' and '%' pass as they are ('@' and '/' cannot be written)
RABBIT_HEADER, AMQP10_PLAIN = b"AMQP\x00\x00\x09\x01", b"AMQP\x00\x01\x00\x00"


@pytest.fixture(scope="module")
def brokers(module_fakes: FakeServices) -> tuple[FakeAmqpBroker, FakeAmqpBroker]:
    """One that knows alice, one that verifies nothing (qpidd with auth=no)."""
    return module_fakes.broker(users={"alice": SECRET}), module_fakes.broker()


@pytest.fixture
def broker(brokers: tuple[FakeAmqpBroker, FakeAmqpBroker]) -> FakeAmqpBroker:
    return brokers[0]


def target(transport: str, scheme: str, port: int, cred: str = f"alice:{SECRET}@", **files: str) -> MessagingTarget:
    return MessagingTarget(
        transport, f"{scheme}://{cred}127.0.0.1:{port}", files.get("cacert", ""), files.get("cert", "")
    )


def check(result: ProbeResult, failure: Failure, *words: str) -> None:
    assert result.name == "messaging"
    assert result.failure is failure, result.error
    assert result.error and "\n" not in result.error
    for word in words:
        assert word in result.error, result.error
    assert result.hint == failure.hint
    assert SECRET not in repr(result) + str(result.as_json())


# --- gofer's reading -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transport", "url", "expected"),
    [
        ("qpid", "tcp://localhost:5672", ("qpid", "localhost", 5672, False, None, None, "/")),
        ("qpid", "ssl://u:p%41:x@h", ("qpid", "h", 5671, True, "u", "p%41:x", "/")),  # nothing decoded
        ("qpid", "amqps://u@h:99", ("qpid", "h", 99, True, "u", None, "/")),
        ("rabbitmq", "tcp://h:5673/pulp", ("amqp", "h", 5673, False, "guest", "guest", "pulp")),
        ("rabbit", "amqp://u:p@h//", ("amqp", "h", 5672, False, "u", "p", "/")),
        ("amqp-0-9-1", "amqp://:p@h/", ("amqp", "h", 5672, False, "guest", "p", "/")),
        ("proton", "amqp://u:p%41@h:5672", ("proton", "h", 5672, False, "u", "pA", "/")),  # proton decodes
        ("proton", "amqps://u@h:5672", ("proton", "h", 5671, True, "u", "None", "/")),  # canonical: port gone
        ("amqp-1-0", "ssl://h:5673", ("proton", "h", 5673, False, None, None, "/")),  # TLS for amqps:// only
        ("qpid.messaging", "tcp://h:1", ("qpid", "h", 1, False, None, None, "/")),
    ],
)
def test_gofer_reads_the_url_as_each_adapter_connects(transport: str, url: str, expected: tuple[object, ...]) -> None:
    conn = goferurl.connection(goferurl.read(transport, url))
    assert (conn.adapter, conn.host, conn.port, conn.tls, conn.user, conn.password, conn.vhost) == expected
    assert conn.tls_files is url.startswith(("ssl", "amqps"))


@pytest.mark.parametrize(
    ("transport", "url", "key", "words"),
    [
        ("amqplib", "tcp://h", "messaging.transport", "gofer 2.4 removed the amqplib adapter"),
        ("Qpid", "tcp://h", "messaging.transport", "no messaging adapter 'Qpid'"),
        ("", "tcp://h", "messaging.transport", "(empty)"),
        ("qpid", "TCP://h", "messaging.url", "in lower case"),
        ("qpid", "http://h", "messaging.url", "tcp://, amqp://, ssl://, amqps://"),
        ("qpid", "tcp://[::1]:5672", "messaging.url", "IPv6"),
        ("rabbitmq", "tcp://u:p@ss@h", "messaging.url", "first '@'"),
        ("proton", "tcp://h:5672", "messaging.url", "no default port for tcp://"),
        ("proton", "ssl://h", "messaging.url", "leaves the port 5671 out"),
    ],
)
def test_what_gofer_cannot_use_is_named(transport: str, url: str, key: str, words: str) -> None:
    refused = goferurl.refusal(transport, url)
    assert refused is not None and refused.key == key and words in str(refused), refused


def test_refusals_are_probe_failures_that_connect_nowhere() -> None:
    result = probe_messaging(MessagingTarget("amqplib", f"tcp://alice:{SECRET}@127.0.0.1:1"))
    check(result, Failure.OTHER, "gofer cannot use messaging.transport", "amqplib")
    assert result.endpoint == "amqplib+tcp://alice:***@127.0.0.1:1"


# --- up, over each protocol ----------------------------------------------------------------------


def test_qpid_transport_logs_in_with_plain_over_amqp_0_10(broker: FakeAmqpBroker) -> None:
    result = probe_messaging(target("qpid", "tcp", broker.port))
    assert result.ok, result.error
    assert result.endpoint == f"qpid+tcp://alice:***@127.0.0.1:{broker.port}"
    last = broker.connections[-1]
    assert (last.protocol, last.user, last.mech) == ("AMQP 0-10", "alice", "PLAIN")


def test_proton_transport_logs_in_over_amqp_1_0_on_the_same_port(broker: FakeAmqpBroker) -> None:
    result = probe_messaging(target("proton", "amqp", broker.port))
    assert result.ok, result.error
    assert (broker.connections[-1].protocol, broker.connections[-1].user) == ("AMQP 1.0", "alice")


def test_without_credentials_both_log_in_anonymously(brokers: tuple[FakeAmqpBroker, FakeAmqpBroker]) -> None:
    open_broker = brokers[1]
    for transport, scheme in (("qpid", "tcp"), ("proton", "amqp")):
        assert probe_messaging(target(transport, scheme, open_broker.port, "")).ok
        assert open_broker.connections[-1].mech == "ANONYMOUS"


def test_a_user_without_a_password_sends_none_as_its_password(broker: FakeAmqpBroker) -> None:
    """python-qpid formats a missing password with %s, gofer's canonical URL writes ``user:None``."""
    for transport, scheme in (("qpid", "tcp"), ("proton", "amqp")):
        check(probe_messaging(target(transport, scheme, broker.port, "alice@")), Failure.AUTH, "alice")


def test_a_percent_encoded_password_is_decoded_by_proton_only() -> None:
    with FakeAmqpBroker(users={"alice": "p@ss"}) as fake:
        assert probe_messaging(target("proton", "amqp", fake.port, "alice:p%40ss@")).ok
        check(probe_messaging(target("qpid", "tcp", fake.port, "alice:p%40ss@")), Failure.AUTH)


# --- down ----------------------------------------------------------------------------------------


def test_wrong_password_refused_and_dns(broker: FakeAmqpBroker) -> None:
    for transport, scheme in (("qpid", "tcp"), ("proton", "amqp"), ("rabbitmq", "tcp")):
        check(probe_messaging(target(transport, scheme, free_port())), Failure.REFUSED)
        bad_name = MessagingTarget(transport, f"{scheme}://no-such-host.test:5679")
        check(probe_messaging(bad_name, resolver=resolver()), Failure.DNS, "no-such-host.test")
    for transport, scheme in (("qpid", "tcp"), ("proton", "amqp")):
        wrong = target(transport, scheme, broker.port, "alice:wrong@")
        check(probe_messaging(wrong), Failure.AUTH, "login as 'alice'")


def test_another_protocol_names_the_transport_to_set(broker: FakeAmqpBroker) -> None:
    check(probe_messaging(target("rabbitmq", "tcp", broker.port)), Failure.PROTOCOL, "messaging.transport: qpid")
    with AnswerServer(RABBIT_HEADER) as rabbit:
        for transport, scheme in (("qpid", "tcp"), ("proton", "amqp")):
            result = probe_messaging(target(transport, scheme, rabbit.port))
            check(result, Failure.PROTOCOL, "AMQP 0-9-1", "set messaging.transport: rabbitmq")
    with FakeAmqpBroker(amqp010=False) as only10:
        result = probe_messaging(target("qpid", "tcp", only10.port, ""))
        check(result, Failure.PROTOCOL, "gofer's qpid adapter", "only AMQP 1.0", "set messaging.transport: proton")


def test_an_amqp10_server_without_a_sasl_layer() -> None:
    """It answers the SASL header with the plain 1.0 header: it would never check the credentials."""
    with AnswerServer(AMQP10_PLAIN) as no_sasl:
        for cred in (f"alice:{SECRET}@", ""):
            result = probe_messaging(target("proton", "amqp", no_sasl.port, cred))
            check(result, Failure.SASL, "offers no SASL layer")


def test_silent_and_resetting_servers() -> None:
    steps = {"qpid": "AMQP 0-10 protocol header", "rabbitmq": "Connection.Start", "proton": "AMQP 1.0 header"}
    with SilentServer() as silent, ResetServer(read_bytes=8) as reset:
        for transport, step in steps.items():
            scheme = "amqp" if transport == "proton" else "tcp"
            result = probe_messaging(target(transport, scheme, silent.port), timeout_s=0.3)
            check(result, Failure.STALLED, "no answer within 0.3 s", step)
            check(probe_messaging(target(transport, scheme, reset.port)), Failure.RESET)


def test_plain_transports_at_a_tls_port_are_a_tls_mismatch() -> None:
    with AnswerServer(TLS_ALERT) as alert:
        for transport, scheme in (("qpid", "tcp"), ("proton", "amqp"), ("proton", "ssl"), ("rabbitmq", "tcp")):
            check(probe_messaging(target(transport, scheme, alert.port)), Failure.TLS_MISMATCH, "speaks TLS")


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture
def combined(pki: Pki, tmp_path: Path) -> str:
    """``messaging.clientcert``: Pulp gives gofer one file, the key inside."""
    path = tmp_path / "client.pem"
    path.write_bytes(pki.client_cert.read_bytes() + pki.client_key.read_bytes())
    return str(path)


def test_tls_qpid_verifies_the_chain_but_no_host_name(pki: Pki, combined: str) -> None:
    with FakeAmqpBroker(users={"alice": SECRET}, tls_certfile=str(pki.wrong)) as fake:  # names neither
        result = probe_messaging(target("qpid", "ssl", fake.port, cacert=str(pki.ca), cert=combined))
        assert result.ok, result.error
        foreign = target("qpid", "ssl", fake.port, cacert=str(pki.other_ca), cert=combined)
        check(probe_messaging(foreign), Failure.TLS, "certificate")
        assert probe_messaging(target("qpid", "amqps", fake.port, cacert="", cert=combined)).ok  # no cacert: no check


def test_tls_proton_verifies_nothing_and_needs_amqps(pki: Pki, combined: str) -> None:
    with FakeAmqpBroker(users={"alice": SECRET}, tls_certfile=str(pki.foreign)) as fake:
        assert probe_messaging(target("proton", "amqps", fake.port, cacert=str(pki.ca), cert=combined)).ok
        result = probe_messaging(target("proton", "ssl", fake.port, cacert=str(pki.ca), cert=combined))
        check(result, Failure.TLS_MISMATCH, "speaks TLS", "only amqps:// turns TLS on")


def test_tls_client_certificate_is_messaging_clientcert(pki: Pki, combined: str) -> None:
    with FakeAmqpBroker(tls_certfile=str(pki.dns), tls_client_ca=str(pki.ca)) as fake:
        for transport, scheme in (("qpid", "ssl"), ("proton", "amqps")):
            assert probe_messaging(target(transport, scheme, fake.port, "", cacert=str(pki.ca), cert=combined)).ok
            without = target(transport, scheme, fake.port, "", cacert=str(pki.ca))
            check(probe_messaging(without), Failure.TLS, "client certificate")


def test_missing_tls_files_are_named_even_where_proton_then_connects_in_plain(tmp_path: Path, pki: Pki) -> None:
    missing = str(tmp_path / "ca.crt")
    for transport, scheme in (("qpid", "ssl"), ("rabbitmq", "amqps"), ("proton", "ssl")):
        port = 5673 if transport == "proton" else free_port()  # proton+ssl: a port gofer keeps in the URL
        result = probe_messaging(MessagingTarget(transport, f"{scheme}://127.0.0.1:{port}", missing, ""))
        check(result, Failure.TLS, f"cannot read messaging.cacert {missing}")
    names = resolver({"msg.pulp.test": "127.0.0.1"})
    with FakeAmqpBroker() as fake:
        up = MessagingTarget("qpid", f"tcp://msg.pulp.test:{fake.port}", missing, "")  # plain: files not read
        assert probe_messaging(up, resolver=names).ok


def test_check_deps_imports_proton_only_for_the_proton_transport(broker: FakeAmqpBroker) -> None:
    code = (
        "import sys; from pulpinit.wait.messaging_probe import probe_messaging; "
        "from pulpinit.targets import MessagingTarget; "
        f"r = probe_messaging(MessagingTarget(sys.argv[1], sys.argv[2] + '://127.0.0.1:{broker.port}')); "
        "print(r.ok, 'proton' in sys.modules)"
    )
    runs = {
        t: subprocess.run([sys.executable, "-c", code, t, s], capture_output=True, text=True, check=True)
        for t, s in (("qpid", "tcp"), ("proton", "amqp"))
    }
    assert runs["qpid"].stdout.split() == ["False", "False"]  # the fake wants a login: down, and no proton
    assert runs["proton"].stdout.split()[1] == "True"
