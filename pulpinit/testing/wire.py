"""MongoDB wire-protocol framing for the fake server: OP_MSG, legacy OP_QUERY and OP_REPLY.

Every message starts with a 16-byte header (``messageLength``, ``requestID``,
``responseTo``, ``opCode``, all little-endian int32).  Drivers talk OP_MSG
(2013): a flag word and sections, kind 0 holding the command document and
kind 1 holding document sequences (pymongo sends ``insert``'s ``documents``,
``update``'s ``updates`` and ``delete``'s ``deletes`` that way).  The very
first handshake of pymongo 4 is still a legacy OP_QUERY (2004) on
``admin.$cmd``, answered with an OP_REPLY (1).  BSON itself is pymongo's
``bson`` package.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import bson
from bson.codec_options import CodecOptions

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013
KNOWN_OPCODES = frozenset({OP_QUERY, OP_MSG, OP_COMPRESSED})

MSG_CHECKSUM_PRESENT = 1 << 0
MSG_MORE_TO_COME = 1 << 1

MAX_MESSAGE_SIZE = 48_000_000
_HEADER = struct.Struct("<iiii")
_INT32 = struct.Struct("<i")
_UINT32 = struct.Struct("<I")

#: Naive UTC datetimes, plain dicts: the same types mongomock stores.
CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=False)


class ProtocolError(Exception):
    """The peer sent something that is not a MongoDB message; the connection is dropped."""


@dataclass
class Message:
    """One request: its header fields and the bytes after the header."""

    request_id: int
    response_to: int
    op_code: int
    payload: bytes


@dataclass
class Command:
    """A decoded command: the body with kind-1 sequences merged in, and how to answer it."""

    body: dict[str, Any]
    database: str
    legacy: bool  # came as OP_QUERY: answer with OP_REPLY
    more_to_come: bool  # OP_MSG moreToCome: the client expects no answer

    @property
    def name(self) -> str:
        return next(iter(self.body), "")


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_message(sock: socket.socket) -> Message | None:
    """The next message, or ``None`` at end of stream; :class:`ProtocolError` on garbage."""
    header = _recv_exactly(sock, _HEADER.size)
    if header is None:
        return None
    length, request_id, response_to, op_code = _HEADER.unpack(header)
    if op_code not in KNOWN_OPCODES or not _HEADER.size <= length <= MAX_MESSAGE_SIZE:
        # Checked only now: a MongoDB message of 790 bytes also starts with 16 03.
        if header[0] == 0x16 and header[1] == 0x03:
            raise ProtocolError("TLS handshake received but this server speaks plain TCP")
        raise ProtocolError(f"not a MongoDB message (opCode {op_code}, length {length})")
    payload = _recv_exactly(sock, length - _HEADER.size)
    if payload is None:
        return None
    return Message(request_id, response_to, op_code, payload)


def _cstring(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(b"\x00", offset)
    return data[offset:end].decode("utf-8"), end + 1


def decode_command(message: Message) -> Command:
    """Turn an OP_MSG or OP_QUERY into a :class:`Command`."""
    if message.op_code == OP_MSG:
        return _decode_op_msg(message.payload)
    if message.op_code == OP_QUERY:
        return _decode_op_query(message.payload)
    raise ProtocolError("compressed messages are not supported (none was negotiated)")


def _decode_op_msg(payload: bytes) -> Command:
    (flags,) = _UINT32.unpack_from(payload, 0)
    end = len(payload) - (4 if flags & MSG_CHECKSUM_PRESENT else 0)
    offset = 4
    body: dict[str, Any] | None = None
    sequences: dict[str, list[Any]] = {}
    while offset < end:
        kind = payload[offset]
        offset += 1
        (size,) = _INT32.unpack_from(payload, offset)
        if kind == 0:
            body = bson.decode(payload[offset : offset + size], CODEC)
        elif kind == 1:
            ident, docs_at = _cstring(payload, offset + 4)
            sequences.setdefault(ident, []).extend(bson.decode_all(payload[docs_at : offset + size], CODEC))
        else:
            raise ProtocolError(f"unknown OP_MSG section kind {kind}")
        offset += size
    if body is None:
        raise ProtocolError("OP_MSG without a body section")
    body.update(sequences)
    database = str(body.get("$db", "admin"))
    return Command(body, database, legacy=False, more_to_come=bool(flags & MSG_MORE_TO_COME))


def _decode_op_query(payload: bytes) -> Command:
    full_name, offset = _cstring(payload, 4)
    offset += 8  # numberToSkip, numberToReturn
    (size,) = _INT32.unpack_from(payload, offset)
    query = bson.decode(payload[offset : offset + size], CODEC)
    database, _, collection = full_name.partition(".")
    if collection != "$cmd":
        raise ProtocolError(f"legacy OP_QUERY on {full_name} is not supported (only commands)")
    if "$query" in query:  # the old wrapped form {$query: {...}, $readPreference: ...}
        query = dict(query["$query"])
    return Command(query, database, legacy=True, more_to_come=False)


def encode_reply(command: Command, response_to: int, request_id: int, reply: Mapping[str, Any]) -> bytes:
    """The answer to ``command``: OP_REPLY for a legacy query, OP_MSG otherwise."""
    doc = bson.encode(reply)
    if command.legacy:
        body = struct.pack("<iqii", 0, 0, 0, 1) + doc
        op_code = OP_REPLY
    else:
        body = _UINT32.pack(0) + b"\x00" + doc
        op_code = OP_MSG
    return _HEADER.pack(_HEADER.size + len(body), request_id, response_to, op_code) + body
