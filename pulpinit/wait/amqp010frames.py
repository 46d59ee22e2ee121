"""AMQP 0-10 on the wire: frames, the ``connection`` class's controls and their typed values.

The codec the probe (:mod:`pulpinit.wait.amqp010`) and the fake broker share, from the
specification (``amqp.0-10-qpid-errata.xml``). Wire format (specification, transport and type sections):

* protocol header: ``AMQP`` then class 1, instance 1, major 0, minor 10;
* frame: a 12-octet header — flags (``0x08`` first segment, ``0x04`` last
  segment, ``0x02`` first frame, ``0x01`` last frame; the top two bits are the
  framing version, 0), segment type (0 control, 1 command, 2 header, 3 body),
  frame size including the header (uint16), one reserved octet, the track
  (low nibble; controls travel on track 0), the channel (uint16), four reserved
  octets — then the payload;
* control: class code (octet, ``connection`` = 1), control code (octet), two
  octets of packing flags (bit *i* of the first octet set when field *i* is
  present, the second octet for fields 8–15), then the present fields in order;
* types: ``uint16`` big-endian; ``str8``/``vbin8`` an octet length, ``str16``
  a uint16 length, ``vbin32`` a uint32 length, each followed by the octets;
  ``map`` = uint32 size, uint32 count, entries of (str8 key, type-code octet,
  value); ``array`` = uint32 size, type-code octet, uint32 count, values;
  ``bit`` fields have no octets, the packing flag is the value.  The width of a
  type follows from its code (``0x00``–``0x0f`` one octet … ``0xa0``–``0xaf`` a
  uint32 length), so unknown types in a map are skipped safely.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pulpinit.targets import Failure
from pulpinit.wait.net import ProbeFailed, Reader

PROTOCOL_HEADER = b"AMQP\x01\x01\x00\x0a"
FRAME_HEADER = struct.Struct(">BBHxBH4x")  # flags, segment type, size, track, channel
FIRST_SEG, LAST_SEG, FIRST_FRAME, LAST_FRAME = 0x08, 0x04, 0x02, 0x01
WHOLE = FIRST_SEG | LAST_SEG | FIRST_FRAME | LAST_FRAME
CONTROL, COMMAND, HEADER, BODY = 0, 1, 2, 3
MAX_FRAME = 65535  # the size field is a uint16

CONNECTION = 0x01
START, START_OK, SECURE, SECURE_OK, TUNE, TUNE_OK, OPEN, OPEN_OK, REDIRECT, HEARTBEAT, CLOSE, CLOSE_OK = range(1, 13)
NAMES = {
    START: "connection.start",
    START_OK: "connection.start-ok",
    SECURE: "connection.secure",
    SECURE_OK: "connection.secure-ok",
    TUNE: "connection.tune",
    TUNE_OK: "connection.tune-ok",
    OPEN: "connection.open",
    OPEN_OK: "connection.open-ok",
    REDIRECT: "connection.redirect",
    HEARTBEAT: "connection.heartbeat",
    CLOSE: "connection.close",
    CLOSE_OK: "connection.close-ok",
}

#: The fields of each ``connection`` control, in wire order, with their types.
FIELDS: dict[int, tuple[tuple[str, str], ...]] = {
    START: (("server-properties", "map"), ("mechanisms", "str16-array"), ("locales", "str16-array")),
    START_OK: (("client-properties", "map"), ("mechanism", "str8"), ("response", "vbin32"), ("locale", "str8")),
    SECURE: (("challenge", "vbin32"),),
    SECURE_OK: (("response", "vbin32"),),
    TUNE: (
        ("channel-max", "uint16"),
        ("max-frame-size", "uint16"),
        ("heartbeat-min", "uint16"),
        ("heartbeat-max", "uint16"),
    ),
    TUNE_OK: (("channel-max", "uint16"), ("max-frame-size", "uint16"), ("heartbeat", "uint16")),
    OPEN: (("virtual-host", "str8"), ("capabilities", "str16-array"), ("insist", "bit")),
    OPEN_OK: (("known-hosts", "str16-array"),),
    REDIRECT: (("host", "str16"), ("known-hosts", "str16-array")),
    HEARTBEAT: (),
    CLOSE: (("reply-code", "uint16"), ("reply-text", "str8")),
    CLOSE_OK: (),
}

# Type codes (specification, "type definitions").
STR8, STR16, VBIN32, MAP, LIST, ARRAY, VOID, BOOLEAN = 0x85, 0x95, 0xA0, 0xA8, 0xA9, 0xAA, 0xF0, 0x08
CLOSE_NORMAL, CLOSE_FORCED, CLOSE_INVALID_PATH, CLOSE_FRAMING = 200, 320, 402, 501


@dataclass(frozen=True)
class Control:
    """One decoded control: ``(class, code)`` and the fields that were present."""

    code: int
    fields: Mapping[str, Any] = field(default_factory=dict)
    class_code: int = CONNECTION

    @property
    def name(self) -> str:
        return (
            NAMES.get(self.code, f"control {self.class_code}.{self.code}")
            if self.class_code == CONNECTION
            else f"control {self.class_code}.{self.code}"
        )


# --- encoding -----------------------------------------------------------------------------------


def _sized(fmt: str, raw: bytes) -> bytes:
    return struct.pack(fmt, len(raw)) + raw


def encode_value(kind: str, value: Any) -> bytes:
    """One field or map value of type ``kind`` (``str8``, ``str16``, ``vbin32``, ``uint16``, ``map``, …)."""
    if kind == "str8":
        return _sized(">B", value.encode())
    if kind == "str16":
        return _sized(">H", value.encode())
    if kind == "vbin32":
        return _sized(">I", value)
    if kind == "uint16":
        return struct.pack(">H", value)
    if kind == "map":
        return encode_map(value)
    if kind == "str16-array":
        items = b"".join(_sized(">H", item.encode()) for item in value)
        return _sized(">I", struct.pack(">BI", STR16, len(value)) + items)
    raise ValueError(f"cannot encode type {kind}")


def encode_map(items: Mapping[str, object]) -> bytes:
    """A ``map``: strings as str16, booleans, integers as int64 (as ``qpid.messaging`` does)."""
    entries = b""
    for key, value in items.items():
        entries += _sized(">B", key.encode())
        if isinstance(value, bool):
            entries += struct.pack(">BB", BOOLEAN, value)
        elif isinstance(value, int):
            entries += struct.pack(">Bq", 0x31, value)
        else:
            entries += bytes([STR16]) + _sized(">H", str(value).encode())
    return _sized(">I", struct.pack(">I", len(items)) + entries)


def encode_control(code: int, fields: Mapping[str, Any] | None = None, class_code: int = CONNECTION) -> bytes:
    """The payload of a control: class, code, packing flags, the present fields."""
    fields = fields or {}
    flags, body = 0, b""
    for i, (name, kind) in enumerate(FIELDS[code] if class_code == CONNECTION else ()):
        value = fields.get(name)
        if value is None or value is False:
            continue
        flags |= 1 << i
        if kind != "bit":
            body += encode_value(kind, value)
    return struct.pack(">BB", class_code, code) + bytes([flags & 0xFF, flags >> 8]) + body


def frame(payload: bytes, *, segment: int = CONTROL, flags: int = WHOLE, track: int = 0, channel: int = 0) -> bytes:
    """One frame around ``payload``."""
    return FRAME_HEADER.pack(flags, segment, FRAME_HEADER.size + len(payload), track, channel) + payload


def control_frame(code: int, fields: Mapping[str, Any] | None = None, channel: int = 0) -> bytes:
    return frame(encode_control(code, fields), channel=channel)


# --- decoding -----------------------------------------------------------------------------------


def _width(code: int) -> tuple[int, int]:
    """``(fixed width, size-prefix width)`` of a type code, from the specification's code ranges."""
    high = code >> 4
    fixed = {0x0: 1, 0x1: 2, 0x2: 4, 0x3: 8, 0x4: 16, 0x5: 32, 0x6: 64, 0x7: 128, 0xC: 5, 0xD: 9, 0xF: 0}
    if high in fixed:
        return fixed[high], 0
    if high in (0x8, 0x9, 0xA):
        return 0, {0x8: 1, 0x9: 2, 0xA: 4}[high]
    raise ValueError(f"reserved AMQP 0-10 type code 0x{code:02x}")


def _take(data: bytes, pos: int, n: int) -> tuple[bytes, int]:
    if pos + n > len(data):
        raise ValueError("truncated AMQP 0-10 value")
    return data[pos : pos + n], pos + n


def decode_typed(code: int, data: bytes, pos: int) -> tuple[Any, int]:
    """A value of type ``code`` at ``pos``: strings, integers, booleans, maps, lists, arrays; others as bytes."""
    fixed, prefix = _width(code)
    if prefix:
        (size,) = struct.unpack_from({1: ">B", 2: ">H", 4: ">I"}[prefix], data, pos)
        raw, end = _take(data, pos + prefix, size)
        if code in (0x84, 0x85, 0x94, 0x95):  # str8-latin, str8, str16-latin, str16
            return raw.decode("latin-1" if code in (0x84, 0x94) else "utf-8", "replace"), end
        if code == MAP:
            return _decode_entries(raw, named=True), end
        if code == LIST:
            return _decode_entries(raw, named=False), end
        if code == ARRAY:
            return _decode_array(raw), end
        return raw, end
    raw, end = _take(data, pos, fixed)
    if code == BOOLEAN:
        return raw != b"\x00", end
    ints = {0x01: ">b", 0x02: ">B", 0x11: ">h", 0x12: ">H", 0x21: ">i", 0x22: ">I", 0x31: ">q", 0x32: ">Q", 0x38: ">Q"}
    if code in ints:
        return struct.unpack(ints[code], raw)[0], end
    return (None if fixed == 0 else raw), end


def _decode_entries(raw: bytes, *, named: bool) -> Any:
    if not raw:
        return {} if named else []
    (count,) = struct.unpack_from(">I", raw, 0)
    pos, table, items = 4, {}, []
    for _ in range(count):
        if named:
            (klen,) = struct.unpack_from(">B", raw, pos)
            key, pos = _take(raw, pos + 1, klen)
        code, pos = raw[pos], pos + 1
        value, pos = decode_typed(code, raw, pos)
        if named:
            table[key.decode("utf-8", "replace")] = value
        else:
            items.append(value)
    return table if named else items


def _decode_array(raw: bytes) -> list[Any]:
    if not raw:
        return []
    code, (count,) = raw[0], struct.unpack_from(">I", raw, 1)
    pos, items = 5, []
    for _ in range(count):
        value, pos = decode_typed(code, raw, pos)
        items.append(value)
    return items


_FIELD_CODES = {"str8": 0x85, "str16": 0x95, "vbin32": VBIN32, "uint16": 0x12, "map": MAP, "str16-array": ARRAY}


def decode_control(payload: bytes) -> Control:
    """A control payload (class, code, flags, fields) → :class:`Control`; unknown classes keep no fields."""
    if len(payload) < 4:
        raise ValueError("truncated AMQP 0-10 control")
    class_code, code = payload[0], payload[1]
    if class_code != CONNECTION or code not in FIELDS:
        return Control(code, {}, class_code)
    flags = payload[2] | payload[3] << 8
    pos, fields = 4, {}
    for i, (name, kind) in enumerate(FIELDS[code]):
        if not flags & (1 << i):
            continue
        if kind == "bit":
            fields[name] = True
            continue
        fields[name], pos = decode_typed(_FIELD_CODES[kind], payload, pos)
    return Control(code, fields)


class Framer:
    """Reads frames from a :class:`~pulpinit.wait.net.Reader` and joins them into control payloads."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.partial: dict[tuple[int, int], bytes] = {}

    def next_segment(self, stage: str) -> tuple[int, int, bytes]:
        """The next complete segment on any channel: ``(segment type, channel, payload)``."""
        while True:
            head = self.reader.read(FRAME_HEADER.size, stage)
            flags, segment, size, track, channel = FRAME_HEADER.unpack(head)
            if flags & 0xF0 or segment > BODY or size < FRAME_HEADER.size or track > 1:
                raise ProbeFailed(Failure.PROTOCOL, f"malformed AMQP 0-10 frame from the server ({head!r})")
            payload = self.reader.read(size - FRAME_HEADER.size, stage)
            key = (channel, track)
            payload = self.partial.pop(key, b"") + payload
            if not flags & LAST_FRAME:
                self.partial[key] = payload
                continue
            return segment, channel, payload

    def next_control(self, stage: str) -> Control:
        """The next complete control on any channel (commands, headers and bodies are skipped)."""
        while True:
            segment, _channel, payload = self.next_segment(stage)
            if segment == CONTROL:
                return decode_control(payload)
