"""The broker probe over real TCP: every failure class produced for real, secrets never shown."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from pulpinit.broker_probe import parse_broker_url, probe_broker
from pulpinit.probe import BrokerTarget, Failure
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.faults import Proxy, ResetServer, SilentServer

SECRET = "pa:ss@w/rd%"  # a test password with URL-special characters
QUOTED = "pa%3Ass%40w%2Frd%25"


class StubServer:
    """Sends ``payload`` to every client after reading its first bytes, then closes."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(64)
                conn.sendall(self.payload)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def broker() -> Iterator[FakeAmqpBroker]:
    with FakeAmqpBroker(users={"alice": SECRET}) as fake:
        yield fake


@pytest.fixture(scope="module")
def anonymous_broker() -> Iterator[FakeAmqpBroker]:
    with FakeAmqpBroker() as fake:
        yield fake


def stub(payload: bytes) -> Iterator[StubServer]:
    server = StubServer(payload)
    yield server
    server.close()


amqp091_server = pytest.fixture(lambda: (yield from stub(b"AMQP\x00\x00\x09\x01")))
amqp10_server = pytest.fixture(lambda: (yield from stub(b"AMQP\x03\x01\x00\x00")))
http_server = pytest.fixture(lambda: (yield from stub(b"HTTP/1.1 400 Bad Request\r\n\r\n")))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # bound, never listening, closed on exit


def assert_clean(result: object) -> None:
    text = repr(result) + str(getattr(result, "as_json")())  # noqa: B009
    assert SECRET not in text and QUOTED not in text


# --- success ---------------------------------------------------------------------------------------


def test_plain_login(broker: FakeAmqpBroker) -> None:
    result = probe_broker(BrokerTarget(f"qpid://alice:{QUOTED}@127.0.0.1:{broker.port}/"))
    assert result.ok, result.error
    assert result.version == "pulpinit-fakeamqp 1.0"
    assert result.endpoint == f"qpid://alice:***@127.0.0.1:{broker.port}/"
    assert broker.connections[-1].user == "alice" and broker.connections[-1].mech == "PLAIN"
    assert_clean(result)


def test_anonymous_login(anonymous_broker: FakeAmqpBroker) -> None:
    for url in (anonymous_broker.url(), anonymous_broker.url("guest")):  # 2014 default: user only
        result = probe_broker(BrokerTarget(url))
        assert result.ok, result.error
        assert anonymous_broker.connections[-1].mech == "ANONYMOUS"


def test_latency_well_under_a_second(broker: FakeAmqpBroker) -> None:
    target = BrokerTarget(f"qpid://alice:{QUOTED}@127.0.0.1:{broker.port}/")
    latencies = sorted(probe_broker(target).latency_ms for _ in range(20))
    assert latencies[len(latencies) // 2] < 100 and latencies[-1] < 500, latencies


# --- failure classes -------------------------------------------------------------------------------


def test_dns() -> None:
    for scheme in ("qpid", "amqp"):
        result = probe_broker(BrokerTarget(f"{scheme}://u:{QUOTED}@no-such-host.invalid:5672/"))
        assert result.failure is Failure.DNS and "no-such-host.invalid" in (result.error or "")
        assert_clean(result)


def test_refused() -> None:
    port = closed_port()
    for scheme in ("qpid", "amqp"):
        result = probe_broker(BrokerTarget(f"{scheme}://u:{QUOTED}@127.0.0.1:{port}/"))
        assert result.failure is Failure.REFUSED
        assert result.hint and "nothing listens" in result.hint


def test_timeout_on_a_silent_server() -> None:
    with SilentServer() as silent:
        for scheme in ("qpid", "amqp"):
            result = probe_broker(BrokerTarget(f"{scheme}://u:{QUOTED}@127.0.0.1:{silent.port}/"), timeout_s=0.3)
            assert result.failure is Failure.TIMEOUT
            assert 250 < result.latency_ms < 800
            assert_clean(result)


def test_reset_mid_handshake() -> None:
    with ResetServer(read_bytes=8) as reset:
        for scheme in ("qpid", "amqp"):
            result = probe_broker(BrokerTarget(f"{scheme}://u:{QUOTED}@127.0.0.1:{reset.port}/"))
            assert result.failure is Failure.RESET, result.error
        assert reset.accepted == 2


def test_bad_password(broker: FakeAmqpBroker) -> None:
    result = probe_broker(BrokerTarget(f"qpid://alice:wrong-{QUOTED}@127.0.0.1:{broker.port}/"))
    assert result.failure is Failure.AUTH and "alice" in (result.error or "")
    assert_clean(result)


def test_anonymous_refused_by_a_broker_that_wants_plain(broker: FakeAmqpBroker) -> None:
    result = probe_broker(BrokerTarget(broker.url("alice")))
    assert result.failure is Failure.AUTH and "no password" in (result.error or "")


def test_tls_against_a_plain_listener(broker: FakeAmqpBroker, amqp091_server: StubServer) -> None:
    for url, ssl in (
        (f"qpid://alice:{QUOTED}@127.0.0.1:{broker.port}/", True),
        (f"qpid+ssl://alice:{QUOTED}@127.0.0.1:{broker.port}/", False),
        (f"amqps://alice:{QUOTED}@127.0.0.1:{amqp091_server.port}/", False),
        (f"amqp://alice:{QUOTED}@127.0.0.1:{amqp091_server.port}/", True),
    ):
        result = probe_broker(BrokerTarget(url, ssl=ssl))
        assert result.failure is Failure.TLS, (url, result.error)
        assert_clean(result)


def test_tls_with_a_missing_ca_file(broker: FakeAmqpBroker) -> None:
    for scheme in ("qpid+ssl", "amqps"):
        target = BrokerTarget(f"{scheme}://127.0.0.1:{broker.port}/", cacert="/nonexistent/ca.pem")
        assert probe_broker(target).failure is Failure.TLS


def test_protocol_mismatch_qpid_url_against_amqp091(amqp091_server: StubServer) -> None:
    result = probe_broker(BrokerTarget(f"qpid://u:{QUOTED}@127.0.0.1:{amqp091_server.port}/"))
    assert result.failure is Failure.PROTOCOL
    assert result.error == "the server answered with the AMQP 0-9-1 protocol header, not AMQP 1.0"


def test_protocol_mismatch_amqp_url_against_amqp10(amqp10_server: StubServer) -> None:
    result = probe_broker(BrokerTarget(f"amqp://u:{QUOTED}@127.0.0.1:{amqp10_server.port}/"))
    assert result.failure is Failure.PROTOCOL and "AMQP 1.0" in (result.error or "")


def test_protocol_mismatch_amqp_url_against_the_real_proton_broker(broker: FakeAmqpBroker) -> None:
    result = probe_broker(BrokerTarget(f"amqp://alice:{QUOTED}@127.0.0.1:{broker.port}/"))
    assert result.failure is Failure.PROTOCOL and "AMQP 1.0" in (result.error or "")


def test_not_amqp_at_all(http_server: StubServer) -> None:
    for scheme in ("qpid", "amqp"):
        result = probe_broker(BrokerTarget(f"{scheme}://127.0.0.1:{http_server.port}/"))
        assert result.failure is Failure.PROTOCOL and "HTTP" in (result.error or "")


def test_slow_server_within_and_beyond_the_timeout(broker: FakeAmqpBroker) -> None:
    with Proxy(("127.0.0.1", broker.port), first_answer_delay=0.3) as slow:
        url = f"qpid://alice:{QUOTED}@127.0.0.1:{slow.port}/"
        assert probe_broker(BrokerTarget(url), timeout_s=0.1).failure is Failure.TIMEOUT
        result = probe_broker(BrokerTarget(url), timeout_s=2)
        assert result.ok and result.latency_ms >= 300


def test_bad_urls() -> None:
    for url in ("redis://h/", f"amqp://u:{QUOTED}@h:99999/"):
        result = probe_broker(BrokerTarget(url))
        assert result.failure is Failure.OTHER
        assert_clean(result)


# --- URL parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "ssl", "expected"),
    [
        ("qpid://localhost/", False, ("AMQP 1.0", "localhost", 5672, False, None, None, "/")),
        ("qpid://guest@db:1234", False, ("AMQP 1.0", "db", 1234, False, "guest", None, "/")),
        ("qpid://u:p@h/", True, ("AMQP 1.0", "h", 5671, True, "u", "p", "/")),
        ("qpid+ssl://h", False, ("AMQP 1.0", "h", 5671, True, None, None, "/")),
        ("ssl://h:5674", False, ("AMQP 1.0", "h", 5674, True, None, None, "/")),
        ("amqp://guest:guest@h//", False, ("AMQP 0-9-1", "h", 5672, False, "guest", "guest", "/")),
        ("amqp://h/pulp", False, ("AMQP 0-9-1", "h", 5672, False, None, None, "pulp")),
        ("amqps://h/%2Fx", False, ("AMQP 0-9-1", "h", 5671, True, None, None, "/x")),
        (f"amqp://u:{QUOTED}@[::1]:5672/", False, ("AMQP 0-9-1", "::1", 5672, False, "u", SECRET, "/")),
    ],
)
def test_parse_broker_url(url: str, ssl: bool, expected: tuple[object, ...]) -> None:
    ep = parse_broker_url(url, ssl=ssl)
    assert (ep.protocol, ep.host, ep.port, ep.tls, ep.user, ep.password, ep.vhost) == expected
    assert SECRET not in repr(ep)
