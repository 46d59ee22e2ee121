"""The AMQP 0-10 codec and client handshake against byte sequences derived from the specification.

No AMQP 0-10 broker can be installed here (Qpid C++ is in neither Debian nor PyPI), so every
byte below is written out by hand from ``amqp.0-10-qpid-errata.xml`` (frame header, control
encoding, packing flags, str8/str16/vbin32/map/array) — independently of ``pulpinit.wait.amqp010`` —
and a scripted server plays a Qpid C++ broker byte by byte (its ``connection.start`` carries
what qpidd's ConnectionHandler puts there; a refusal is ``close`` 320 "Authentication failed").
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pulpinit.targets import BrokerTarget, Failure
from pulpinit.wait import amqp010, amqp010frames
from pulpinit.wait.broker_probe import probe_broker
from pulpinit.wait.net import Deadline, ProbeFailed, Reader

# --- hand-written encodings (specification, "type definitions") -----------------------------------


def str8(text: str) -> bytes:  # uint8 length, UTF-8 octets
    return bytes([len(text.encode())]) + text.encode()


def str16(text: str) -> bytes:  # uint16 length, UTF-8 octets
    return struct.pack(">H", len(text.encode())) + text.encode()


def vbin32(raw: bytes) -> bytes:  # uint32 length, octets
    return struct.pack(">I", len(raw)) + raw


def map_(*entries: bytes) -> bytes:  # uint32 size (of count + entries), uint32 count, entries
    body = struct.pack(">I", len(entries)) + b"".join(entries)
    return struct.pack(">I", len(body)) + body


def array16(*items: str) -> bytes:  # uint32 size, type code 0x95 (str16), uint32 count, values
    body = b"\x95" + struct.pack(">I", len(items)) + b"".join(str16(i) for i in items)
    return struct.pack(">I", len(body)) + body


def frame(payload: bytes, flags: int = 0x0F, channel: int = 0) -> bytes:
    # flags, segment type 0 (control), size incl. the 12-octet header, reserved, track 0, channel, 4 reserved
    return (
        bytes([flags, 0])
        + struct.pack(">H", 12 + len(payload))
        + b"\x00\x00"
        + struct.pack(">H", channel)
        + b"\x00" * 4
        + payload
    )


QPIDD_START = frame(
    b"\x01\x01"  # class connection (0x1), control start (0x1)
    + b"\x07\x00"  # packing flags: server-properties, mechanisms, locales present
    + map_(
        str8("product") + b"\x95" + str16("qpid-cpp"),
        str8("version") + b"\x95" + str16("1.39.0"),
        str8("qpid.federation_tag") + b"\x95" + str16("6c3a5c0e-8f2b-4a47-9a8b-1f2b7c0d9e11"),
        str8("x.uint32") + b"\x22" + b"\x00\x00\x00\x07",  # fixed width 4 (0x20-0x2f)
        str8("x.uuid") + b"\x48" + bytes(range(16)),  # fixed width 16 (0x40-0x4f): skipped by its code
        str8("x.dec32") + b"\xc8" + b"\x01\x00\x00\x00\x05",  # fixed width 5 (0xc0-0xcf)
        str8("x.flag") + b"\x08" + b"\x01",  # boolean
    )
    + array16("ANONYMOUS", "PLAIN")
    + array16("en_US")
)
QPIDD_TUNE = frame(b"\x01\x05" + b"\x0f\x00" + struct.pack(">HHHH", 32767, 65535, 0, 120))
QPIDD_OPEN_OK = frame(b"\x01\x08" + b"\x01\x00" + struct.pack(">I", 5) + b"\x95" + struct.pack(">I", 0))
QPIDD_CLOSE_OK = frame(b"\x01\x0c\x00\x00")
QPIDD_AUTH_FAILED = frame(b"\x01\x0b" + b"\x03\x00" + struct.pack(">H", 320) + str8("Authentication failed"))


# --- encoding -----------------------------------------------------------------------------------


def test_protocol_header() -> None:
    assert b"AMQP" + bytes([1, 1, 0, 10]) == amqp010frames.PROTOCOL_HEADER


def test_close_control_frame() -> None:
    expected = bytes.fromhex("0f 00 0015 00 00 0000 00000000") + bytes.fromhex("010b 0300 00c8") + b"\x02ok"
    assert amqp010frames.control_frame(amqp010frames.CLOSE, {"reply-code": 200, "reply-text": "ok"}) == expected


def test_tune_ok_and_open_without_a_virtual_host() -> None:
    assert amqp010frames.control_frame(amqp010frames.TUNE_OK, {"channel-max": 1}) == bytes.fromhex(
        "0f00 0012 0000 0000 00000000 0106 0100 0001"
    )
    assert amqp010frames.control_frame(amqp010frames.OPEN) == bytes.fromhex("0f00 0010 0000 0000 00000000 0107 0000")


def test_start_ok_plain() -> None:
    payload = (
        b"\x01\x02"
        + b"\x0f\x00"
        + map_(str8("product") + b"\x95" + str16("pulpinit"))
        + str8("PLAIN")
        + vbin32(b"\x00alice\x00s3cret")
        + str8("en_US")
    )
    encoded = amqp010frames.control_frame(
        amqp010frames.START_OK,
        {
            "client-properties": {"product": "pulpinit"},
            "mechanism": "PLAIN",
            "response": b"\x00alice\x00s3cret",
            "locale": "en_US",
        },
    )
    assert encoded == frame(payload)


def test_start_ok_anonymous_leaves_the_response_out() -> None:
    # python-qpid's ANONYMOUS has no initial response: the packing flag of "response" (bit 2) is clear
    encoded = amqp010frames.encode_control(
        amqp010frames.START_OK, {"client-properties": {}, "mechanism": "ANONYMOUS", "response": None, "locale": "en_US"}
    )
    assert encoded == b"\x01\x02" + b"\x0b\x00" + map_() + str8("ANONYMOUS") + str8("en_US")


# --- decoding -----------------------------------------------------------------------------------


def read_controls(data: bytes) -> list[amqp010frames.Control]:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(data)
        a.shutdown(socket.SHUT_WR)
        framer = amqp010frames.Framer(Reader(b, Deadline(2, connected=True)))
        found = []
        with pytest.raises(EOFError):
            while True:
                found.append(framer.next_control("test"))
    return found


def test_start_as_qpidd_sends_it() -> None:
    (start,) = read_controls(QPIDD_START)
    assert start.code == amqp010frames.START and start.name == "connection.start"
    props = start.fields["server-properties"]
    assert props["product"] == "qpid-cpp" and props["version"] == "1.39.0"
    assert props["x.uint32"] == 7 and props["x.uuid"] == bytes(range(16)) and props["x.flag"] is True
    assert props["x.dec32"] == b"\x01\x00\x00\x00\x05"
    assert start.fields["mechanisms"] == ["ANONYMOUS", "PLAIN"] and start.fields["locales"] == ["en_US"]


def test_a_control_split_over_frames_and_a_heartbeat() -> None:
    payload = QPIDD_START[12:]
    first = frame(payload[:20], flags=0x0A)  # first segment + first frame
    second = frame(payload[20:], flags=0x05)  # last segment + last frame
    heartbeat = frame(b"\x01\x0a\x00\x00")
    controls = read_controls(heartbeat + first + second + QPIDD_TUNE)
    assert [c.code for c in controls] == [amqp010frames.HEARTBEAT, amqp010frames.START, amqp010frames.TUNE]
    assert controls[1].fields["mechanisms"] == ["ANONYMOUS", "PLAIN"]
    assert controls[2].fields == {
        "channel-max": 32767,
        "max-frame-size": 65535,
        "heartbeat-min": 0,
        "heartbeat-max": 120,
    }


def test_reserved_type_codes_and_bad_frames_are_errors() -> None:
    bad_map = frame(b"\x01\x01\x01\x00" + map_(str8("k") + b"\xb0"))  # 0xb0-0xbf are reserved
    with pytest.raises(ValueError, match="reserved"):
        read_controls(bad_map)
    with pytest.raises(ProbeFailed) as caught:
        read_controls(b"\xcf" + QPIDD_TUNE[1:])  # framing version bits set
    assert caught.value.failure is Failure.PROTOCOL


def test_encode_decode_round_trip_of_every_connection_control() -> None:
    samples: dict[int, dict[str, Any]] = {
        amqp010frames.START_OK: {
            "client-properties": {"a": "b", "n": 3, "t": True},
            "mechanism": "PLAIN",
            "response": b"\x00u\x00p",
            "locale": "en_US",
        },
        amqp010frames.SECURE: {"challenge": b"c"},
        amqp010frames.SECURE_OK: {"response": b"r"},
        amqp010frames.TUNE_OK: {"channel-max": 5, "max-frame-size": 4096, "heartbeat": 10},
        amqp010frames.OPEN: {"virtual-host": "v", "capabilities": ["x"], "insist": True},
        amqp010frames.REDIRECT: {"host": "amqp:tcp:h:5672", "known-hosts": ["a", "b"]},
        amqp010frames.CLOSE: {"reply-code": 402, "reply-text": "no"},
        amqp010frames.CLOSE_OK: {},
    }
    for code, fields in samples.items():
        assert amqp010frames.decode_control(amqp010frames.encode_control(code, fields)).fields == fields


# --- the client against a scripted Qpid C++ --------------------------------------------------------


class ScriptedBroker:
    """Plays qpidd byte by byte: answers each expected client message with hand-written bytes."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.script = script
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(5)
            try:
                self.script(conn)
            except BaseException as exc:  # reported by the test
                self.error = exc

    def finish(self) -> None:
        self.thread.join(5)
        self.sock.close()
        if self.error:
            raise self.error


def expect(conn: socket.socket, data: bytes) -> None:
    got = b""
    while len(got) < len(data) and (chunk := conn.recv(len(data) - len(got))):
        got += chunk
    assert got == data


def recv_frame(conn: socket.socket) -> bytes:
    head = b""
    while len(head) < 12:
        head += conn.recv(12 - len(head))
    size = struct.unpack(">H", head[2:4])[0]
    body = b""
    while len(body) < size - 12:
        body += conn.recv(size - 12 - len(body))
    return head + body


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[socket.socket], None]], ScriptedBroker]]:
    made: list[ScriptedBroker] = []

    def make(script: Callable[[socket.socket], None]) -> ScriptedBroker:
        made.append(ScriptedBroker(script))
        return made[-1]

    yield make
    for broker in made:
        broker.finish()


def test_plain_login_byte_by_byte(scripted: Callable[..., ScriptedBroker]) -> None:
    def qpidd(conn: socket.socket) -> None:
        expect(conn, b"AMQP\x01\x01\x00\x0a")
        conn.sendall(b"AMQP\x01\x01\x00\x0a" + QPIDD_START)
        start_ok = recv_frame(conn)
        assert start_ok[:2] == b"\x0f\x00" and start_ok[12:16] == b"\x01\x02\x0f\x00"
        assert start_ok.endswith(str8("PLAIN") + vbin32(b"\x00alice\x00s3cret") + str8("en_US"))
        conn.sendall(QPIDD_TUNE)
        assert recv_frame(conn) == frame(b"\x01\x06\x01\x00" + struct.pack(">H", 32767))  # tune-ok
        assert recv_frame(conn) == frame(b"\x01\x07\x00\x00")  # open, no virtual host
        conn.sendall(QPIDD_OPEN_OK)
        assert recv_frame(conn)[12:16] == b"\x01\x0b\x03\x00"  # close 200
        conn.sendall(QPIDD_CLOSE_OK)

    broker = scripted(qpidd)
    result = probe_broker(BrokerTarget(f"qpid://alice:s3cret@127.0.0.1:{broker.port}/"))
    assert result.ok, result.error
    assert result.version == "qpid-cpp 1.39.0"


def test_anonymous_login_byte_by_byte(scripted: Callable[..., ScriptedBroker]) -> None:
    def qpidd(conn: socket.socket) -> None:
        expect(conn, b"AMQP\x01\x01\x00\x0a")
        conn.sendall(b"AMQP\x01\x01\x00\x0a" + QPIDD_START)
        start_ok = recv_frame(conn)
        assert start_ok[14:16] == b"\x0b\x00"  # client-properties, mechanism, locale; no response
        assert str8("ANONYMOUS") + str8("en_US") in start_ok
        conn.sendall(QPIDD_TUNE)
        recv_frame(conn)
        recv_frame(conn)
        conn.sendall(QPIDD_OPEN_OK)

    broker = scripted(qpidd)
    assert probe_broker(BrokerTarget(f"qpid://127.0.0.1:{broker.port}/")).ok


def test_refused_login_byte_by_byte(scripted: Callable[..., ScriptedBroker]) -> None:
    def qpidd(conn: socket.socket) -> None:
        expect(conn, b"AMQP\x01\x01\x00\x0a")
        conn.sendall(b"AMQP\x01\x01\x00\x0a" + QPIDD_START)
        recv_frame(conn)
        conn.sendall(QPIDD_AUTH_FAILED)
        assert recv_frame(conn) == frame(b"\x01\x0c\x00\x00")  # close-ok

    broker = scripted(qpidd)
    result = probe_broker(BrokerTarget(f"qpid://alice:wrong@127.0.0.1:{broker.port}/"))
    assert result.failure is Failure.AUTH
    assert result.error == "login as 'alice' refused: 320 Authentication failed"


def test_hang_up_after_the_credentials(scripted: Callable[..., ScriptedBroker]) -> None:
    def qpidd(conn: socket.socket) -> None:  # the spec's answer to a mechanism it did not offer
        expect(conn, b"AMQP\x01\x01\x00\x0a")
        conn.sendall(b"AMQP\x01\x01\x00\x0a" + QPIDD_START)
        recv_frame(conn)

    broker = scripted(qpidd)
    result = probe_broker(BrokerTarget(f"qpid://alice:pw@127.0.0.1:{broker.port}/"))
    assert result.failure is Failure.AUTH and "hung up after the login as 'alice'" in (result.error or "")


def test_mechanisms_the_url_cannot_use(scripted: Callable[..., ScriptedBroker]) -> None:
    start = frame(b"\x01\x01\x06\x00" + array16("GSSAPI", "DIGEST-MD5") + array16("en_US"))

    def qpidd(conn: socket.socket) -> None:
        expect(conn, b"AMQP\x01\x01\x00\x0a")
        conn.sendall(b"AMQP\x01\x01\x00\x0a" + start)

    broker = scripted(qpidd)
    result = probe_broker(BrokerTarget(f"qpid://alice:pw@127.0.0.1:{broker.port}/"))
    assert result.failure is Failure.SASL
    assert result.error == (
        "the broker does not offer SASL PLAIN for the user and password in the URL (it offers: GSSAPI DIGEST-MD5)"
    )


def test_a_stalled_verdict_names_the_step(scripted: Callable[..., ScriptedBroker]) -> None:
    done = threading.Event()

    def slow(conn: socket.socket) -> None:
        expect(conn, b"AMQP\x01\x01\x00\x0a")
        conn.sendall(b"AMQP\x01\x01\x00\x0a" + QPIDD_START)
        recv_frame(conn)
        done.wait(5)  # like RabbitMQ's delayed rejection

    broker = scripted(slow)
    result = probe_broker(BrokerTarget(f"qpid://alice:pw@127.0.0.1:{broker.port}/"), timeout_s=0.3)
    done.set()
    assert result.failure is Failure.STALLED
    assert "answer to the login as 'alice' (connection.tune)" in (result.error or "")
    assert "check-deps --timeout 5" in (result.hint or "")


def test_login_rule_is_kombus() -> None:
    def mechanism(user: str | None, password: str | None) -> tuple[str, bytes | None]:
        login = amqp010.login_for(user, password)
        assert login is not None
        return login.mechanism, login.response

    assert mechanism("u", "p") == ("PLAIN", b"\x00u\x00p")
    assert mechanism("u", "") == ("ANONYMOUS", None)  # kombu reads an empty password as none
    assert mechanism("u", None) == ("ANONYMOUS", None)
    assert mechanism(None, None) == ("ANONYMOUS", None)


def test_login_method_drops_the_password_as_kombu_does() -> None:
    plain = amqp010.login_for("u", "p", "PLAIN", ["PLAIN", "ANONYMOUS"])
    assert plain is not None and plain.response == b"\x00u\x00None" and plain.dropped
    anonymous = amqp010.login_for("u", "p", "ANONYMOUS", ["PLAIN", "ANONYMOUS"])
    assert anonymous is not None and anonymous.mechanism == "ANONYMOUS"
    assert amqp010.login_for("u", "p", "AMQPLAIN", ["PLAIN", "ANONYMOUS"]) is None  # no mechanism agreed
