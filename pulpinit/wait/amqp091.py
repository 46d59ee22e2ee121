"""A minimal AMQP 0-9-1 client handshake over a raw socket (RabbitMQ's ``amqp://``).

Just enough of the protocol to answer "is the broker up and does it accept
these credentials for this virtual host?":

1. send the protocol header ``AMQP 0 0 9 1``;
2. read ``Connection.Start`` (class 10, method 10): server properties
   (``product``, ``version``) and the offered SASL mechanisms;
3. ``Start-Ok`` with AMQPLAIN, or PLAIN when the broker offers only that (as
   py-amqp 2.2 chooses, :func:`login_for`), and the client capability
   ``authentication_failure_close`` so a bad password is answered with
   ``Connection.Close`` (403) instead of a bare disconnect;
4. ``Tune`` → ``Tune-Ok`` and ``Connection.Open`` for the virtual host;
5. ``Connection.Close`` and wait (briefly) for ``Close-Ok``.

A server that answers with another protocol header (a Qpid broker answers
``AMQP 0-10``, an AMQP-1.0-only one its 1.0 header) is a protocol mismatch;
TLS bytes on a plain connection are a TLS mismatch.  A broker with neither
AMQPLAIN nor PLAIN is a SASL mismatch; ``Connection.Close`` 530 "vhost … not found" on
``Open`` is a missing virtual host (RabbitMQ), 530 "access to vhost …
refused" a user without permission on it.  Without credentials in the URL,
``guest``/``guest`` is used, as Celery's default transport (py-amqp via
kombu) does.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Any

from pulpinit.targets import Failure
from pulpinit.wait.net import (
    Deadline,
    ProbeFailed,
    Reader,
    amqp_header_name,
    not_this_protocol,
    one_line,
)
from pulpinit.wait.net import send as send_all
from pulpinit.wait.wording import CELERY_AMQP, Client

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEARTBEAT, FRAME_END = 1, 8, 0xCE
START, START_OK, TUNE, TUNE_OK = (10, 10), (10, 11), (10, 30), (10, 31)
OPEN, OPEN_OK, CLOSE, CLOSE_OK = (10, 40), (10, 41), (10, 50), (10, 51)
MAX_FRAME = 1 << 20
NOT_ALLOWED, INVALID_PATH = 530, 402

# Failures while closing are ignored: the probe's answer is already known.
_quiet = contextlib.suppress(ProbeFailed, OSError, EOFError, struct.error)


# --- encoding -----------------------------------------------------------------------------------


def _shortstr(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">B", len(raw)) + raw


def _longstr(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def _table(items: dict[str, Any]) -> bytes:
    out = b""
    for key, value in items.items():
        out += _shortstr(key)
        if isinstance(value, bool):
            out += b"t" + struct.pack(">B", value)
        elif isinstance(value, dict):
            out += b"F" + _table(value)
        else:
            out += b"S" + _longstr(str(value).encode())
    return _longstr(out)


def method_frame(method: tuple[int, int], args: bytes = b"", channel: int = 0) -> bytes:
    payload = struct.pack(">HH", *method) + args
    return struct.pack(">BHI", FRAME_METHOD, channel, len(payload)) + payload + bytes([FRAME_END])


# --- decoding -----------------------------------------------------------------------------------

_FIXED = {
    "b": ">b",
    "B": ">B",
    "s": ">h",
    "u": ">H",
    "I": ">i",
    "i": ">I",
    "l": ">q",
    "L": ">Q",
    "f": ">f",
    "d": ">d",
    "T": ">Q",
}


def _value(data: bytes, pos: int) -> tuple[Any, int]:
    kind = chr(data[pos])
    pos += 1
    if kind == "t":
        return bool(data[pos]), pos + 1
    if kind in _FIXED:
        fmt = _FIXED[kind]
        return struct.unpack_from(fmt, data, pos)[0], pos + struct.calcsize(fmt)
    if kind in "Sx":
        (n,) = struct.unpack_from(">I", data, pos)
        raw = data[pos + 4 : pos + 4 + n]
        return (raw.decode("utf-8", "replace") if kind == "S" else raw), pos + 4 + n
    if kind == "D":
        return None, pos + 5
    if kind == "V":
        return None, pos
    if kind == "F":
        return read_table(data, pos)
    if kind == "A":
        (n,) = struct.unpack_from(">I", data, pos)
        end, pos, items = pos + 4 + n, pos + 4, []
        while pos < end:
            item, pos = _value(data, pos)
            items.append(item)
        return items, end
    raise ValueError(f"unknown field type {kind!r}")


def read_table(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
    (n,) = struct.unpack_from(">I", data, pos)
    end, pos, table = pos + 4 + n, pos + 4, {}
    while pos < end:
        klen = data[pos]
        key = data[pos + 1 : pos + 1 + klen].decode("utf-8", "replace")
        table[key], pos = _value(data, pos + 1 + klen)
    return table, end


def _read_shortstr(data: bytes, pos: int) -> tuple[str, int]:
    n = data[pos]
    return data[pos + 1 : pos + 1 + n].decode("utf-8", "replace"), pos + 1 + n


def _read_longstr(data: bytes, pos: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from(">I", data, pos)
    return data[pos + 4 : pos + 4 + n], pos + 4 + n


# --- the handshake ------------------------------------------------------------------------------


def _first_method(
    reader: Reader, tls: bool, speaks_tls: Callable[[], bool] | None, client: Client
) -> tuple[tuple[int, int], bytes]:
    """The server's answer to our header: ``Connection.Start``, or a classified mismatch."""
    stage = "waiting for Connection.Start"
    first = reader.read_upto(7, stage)
    if first.startswith(b"AMQP"):
        header = first + reader.read_upto(1, stage)
        if header == PROTOCOL_HEADER:  # the spec's way to say "not this version"
            raise ProbeFailed(Failure.PROTOCOL, "the server refused the AMQP 0-9-1 protocol header")
        offered = amqp_header_name(header)
        advice = client.switch("AMQP 1.0" if offered.startswith("AMQP 1.0") else offered, "")
        raise ProbeFailed(
            Failure.PROTOCOL,
            f"the server answered with the {offered} protocol header, not AMQP 0-9-1: it is not a "
            f"RabbitMQ-style broker" + (f" ({advice})" if advice else ""),
        )
    if not first:
        if not tls and speaks_tls is not None and speaks_tls():
            raise ProbeFailed(
                Failure.TLS_MISMATCH,
                "the broker hung up on the AMQP 0-9-1 protocol header, and the "
                f"port completes a TLS handshake: it speaks TLS; {client.tls_advice}",
            )
        raise ProbeFailed(Failure.RESET, "the server closed the connection before Connection.Start")
    if len(first) < 7 or first[0] != FRAME_METHOD:
        raise not_this_protocol(first, "the AMQP 0-9-1 protocol header", client.tls_advice)
    reader.buf = first + reader.buf
    return _next_method(reader, stage)


def _next_method(reader: Reader, stage: str) -> tuple[tuple[int, int], bytes]:
    """The next method frame on channel 0 (heartbeats skipped)."""
    while True:
        head = reader.read(7, stage)
        kind, _channel, size = struct.unpack(">BHI", head)
        if kind not in (FRAME_METHOD, 2, 3, FRAME_HEARTBEAT) or size > MAX_FRAME:
            raise ProbeFailed(Failure.PROTOCOL, f"the server does not speak AMQP 0-9-1 (got {head[:4]!r})")
        body = reader.read(size + 1, stage)
        if body[-1] != FRAME_END:
            raise ProbeFailed(Failure.PROTOCOL, "malformed AMQP 0-9-1 frame from the server")
        if kind == FRAME_METHOD:
            class_id, method_id = struct.unpack_from(">HH", body)
            return (class_id, method_id), body[4:-1]


def _close_reason(args: bytes) -> tuple[int, str]:
    (code,) = struct.unpack_from(">H", args)
    text, _ = _read_shortstr(args, 2)
    return code, one_line(text)


def _vhost_refusal(vhost: str, user: str, code: int, text: str) -> ProbeFailed:
    """RabbitMQ: 530 "vhost x not found" (missing) or "access to vhost 'x' refused for user 'u'";
    402 (invalid-path) for a missing one elsewhere (garagemq)."""
    if code == INVALID_PATH or (code == NOT_ALLOWED and "not found" in text):  # 402: garagemq
        return ProbeFailed(Failure.VHOST, f"virtual host {vhost!r} does not exist on the broker: {code} {text}")
    if code in (NOT_ALLOWED, 403) and ("access" in text or "refused" in text.lower()):
        return ProbeFailed(Failure.AUTH, f"user {user!r} may not use virtual host {vhost!r}: {code} {text}")
    return ProbeFailed(Failure.OTHER, f"virtual host {vhost!r} refused: {code} {text}")


def login_for(offered: list[bytes], user: str, password: str, client: Client = CELERY_AMQP) -> tuple[str, bytes]:
    """py-amqp 2.2's choice: the first of AMQPLAIN and PLAIN the broker offers (``login_method`` plays
    no part), with its response; no common mechanism is a SASL mismatch."""
    if b"AMQPLAIN" in offered:  # a field table without its length: LOGIN, PASSWORD
        return "AMQPLAIN", _table({"LOGIN": user, "PASSWORD": password})[4:]
    if b"PLAIN" in offered:
        return "PLAIN", b"\x00" + user.encode() + b"\x00" + password.encode()
    shown = b" ".join(offered).decode(errors="replace").strip() or "none"
    raise ProbeFailed(
        Failure.SASL,
        f"the broker offers neither AMQPLAIN nor PLAIN, the mechanisms {client.name} logs in with "
        f"(it offers: {shown}); enable one of them on the broker",
    )


def handshake(
    sock: socket.socket,
    deadline: Deadline,
    user: str,
    password: str,
    vhost: str,
    *,
    tls: bool = False,
    speaks_tls: Callable[[], bool] | None = None,
    client: Client = CELERY_AMQP,
) -> str | None:
    """Run the handshake on a connected socket; return the server's version or raise.

    ``speaks_tls`` is asked when a plain connection is closed without a word (see amqp010);
    ``client`` names whom the errors speak for.
    """
    reader = Reader(sock, deadline)

    def send(data: bytes, stage: str) -> None:
        send_all(sock, data, deadline, stage)

    send(PROTOCOL_HEADER, "sending the AMQP 0-9-1 header")
    try:
        method, args = _first_method(reader, tls, speaks_tls, client)
    except EOFError:
        raise ProbeFailed(Failure.RESET, "the server closed the connection before Connection.Start") from None
    if method != START:
        raise ProbeFailed(Failure.PROTOCOL, f"expected Connection.Start, got method {method}")
    props, pos = read_table(args, 2)
    mechanisms, _ = _read_longstr(args, pos)
    product, version = props.get("product"), props.get("version")
    server_version = " ".join(str(v) for v in (product, version) if v) or None
    mechanism, response = login_for(mechanisms.split(), user, password, client)
    properties = {"product": "pulpinit", "capabilities": {"authentication_failure_close": True}}
    send(
        method_frame(START_OK, _table(properties) + _shortstr(mechanism) + _longstr(response) + _shortstr("en_US")),
        "sending Connection.Start-Ok",
    )
    try:
        method, args = _next_method(
            reader, f"waiting for the broker's answer to the login as {user!r} (Connection.Tune)"
        )
    except EOFError:
        raise ProbeFailed(
            Failure.AUTH, f"the broker closed the connection after the credentials of user {user!r}"
        ) from None
    if method == CLOSE:
        code, text = _close_reason(args)
        raise ProbeFailed(Failure.AUTH, f"login as {user!r} refused: {code} {text}")
    if method != TUNE:
        raise ProbeFailed(Failure.PROTOCOL, f"expected Connection.Tune, got method {method}")
    channel_max, frame_max, _heartbeat = struct.unpack_from(">HIH", args)

    send(
        method_frame(TUNE_OK, struct.pack(">HIH", channel_max, frame_max, 0))
        + method_frame(OPEN, _shortstr(vhost) + _shortstr("") + b"\x00"),
        "opening the virtual host",
    )
    try:
        method, args = _next_method(reader, f"waiting for Connection.Open-Ok of virtual host {vhost!r}")
    except EOFError:
        raise ProbeFailed(Failure.RESET, f"the broker closed the connection on virtual host {vhost!r}") from None
    if method == CLOSE:
        code, text = _close_reason(args)
        with _quiet:
            send(method_frame(CLOSE_OK), "Close-Ok")
        raise _vhost_refusal(vhost, user, code, text)
    if method != OPEN_OK:
        raise ProbeFailed(Failure.PROTOCOL, f"expected Connection.Open-Ok, got method {method}")

    # Close politely; the answer is not worth waiting long for.
    with _quiet:
        send(
            method_frame(CLOSE, struct.pack(">H", 200) + _shortstr("pulpinit probe") + struct.pack(">HH", 0, 0)),
            "closing",
        )
        short = Deadline(min(0.2, deadline.left("closing")), connected=True)
        _next_method(Reader(sock, short), "waiting for Close-Ok")
    return server_version
