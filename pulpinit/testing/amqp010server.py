"""The fake broker's AMQP 0-10 side: one connection as qpidd serves it, from header to close.

:class:`Amqp010Session` sends the 0-10 header and ``connection.start`` (server properties, SASL
mechanisms, ``en_US``), checks a PLAIN response against its user table (``close`` 320
"Authentication failed" when wrong), answers ``tune``/``open``, then serves sessions (``attach``,
``detach``, ``request-timeout``: what kombu's qpid transport sends right after ``open-ok``) until
``close``.  Any command, and any other control that asks for something, gets ``close`` 540 "does
not implement …".  The frames are :mod:`pulpinit.wait.amqp010frames`', shared with the probe;
:mod:`pulpinit.testing.fakeamqp` accepts the connections and hands the 0-10 ones here.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable, Mapping
from typing import Any

from pulpinit.wait import amqp010frames as frames
from pulpinit.wait.net import ProbeFailed, Reader

PRODUCT = "pulpinit-fakeamqp"
VERSION = "1.0"


class Amqp010Session:
    """One AMQP 0-10 connection: the handshake, then controls until the client closes."""

    def __init__(
        self,
        conn: socket.socket,
        reader: Reader,
        users: Mapping[str, str] | None,
        opened: Callable[[str | None, str], None],
    ) -> None:
        """``users`` checks PLAIN (``None``: any credentials, as qpidd's ``auth=no``); ``opened(user,
        mechanism)`` is called once the connection is open."""
        self.conn, self.users, self.opened = conn, users, opened
        self.framer = frames.Framer(reader)

    def send(self, code: int, fields: dict[str, Any] | None = None) -> None:
        self.conn.sendall(frames.control_frame(code, fields))

    def next(self) -> frames.Control:
        while True:
            control = self.framer.next_control("serving AMQP 0-10")
            if control.code != frames.HEARTBEAT:
                return control

    def run(self) -> None:
        try:
            self._run()
        except (EOFError, ProbeFailed, ValueError, OSError):
            pass  # the client went away or sent garbage: drop the connection

    def _run(self) -> None:
        mechanisms = ["PLAIN"] if self.users else ["ANONYMOUS", "PLAIN"]
        self.conn.sendall(frames.PROTOCOL_HEADER)
        self.send(
            frames.START,
            {
                "server-properties": {"product": PRODUCT, "version": VERSION},
                "mechanisms": mechanisms,
                "locales": ["en_US"],
            },
        )
        start_ok = self.next()
        mechanism = start_ok.fields.get("mechanism")
        if start_ok.code != frames.START_OK or mechanism not in mechanisms:
            return  # the specification: close the socket without sending anything more
        user: str | None = "anonymous"
        if mechanism == "PLAIN":
            response = bytes(start_ok.fields.get("response") or b"")
            parts = response.split(b"\x00")
            user, password = (
                (parts[1].decode(errors="replace"), parts[2].decode(errors="replace"))
                if len(parts) == 3
                else (None, None)
            )
            if self.users and (user is None or self.users.get(user) != password):
                self.send(
                    frames.CLOSE,
                    {"reply-code": frames.CLOSE_FORCED, "reply-text": "Authentication failed"},
                )
                self._await_close_ok()  # as qpidd: the client reads the reason before the socket closes
                return
        self.send(
            frames.TUNE,
            {"channel-max": 32767, "max-frame-size": 65535, "heartbeat-min": 0, "heartbeat-max": 120},
        )
        while (control := self.next()).code == frames.TUNE_OK:
            pass
        if control.code != frames.OPEN:
            return
        self.send(frames.OPEN_OK, {"known-hosts": []})
        self.opened(user, str(mechanism))
        self._serve()

    def _serve(self) -> None:
        """After ``open-ok``: sessions attach and detach; anything else is closed, saying what it was."""
        while True:
            segment, channel, payload = self.framer.next_segment("serving AMQP 0-10")
            if len(payload) < 2:
                raise ValueError("truncated AMQP 0-10 segment")
            class_code, code = payload[0], payload[1]
            if segment == frames.CONTROL and class_code == frames.CONNECTION:
                if code == frames.CLOSE:
                    self.send(frames.CLOSE_OK)
                    return
                if code == frames.HEARTBEAT:
                    continue
            elif segment == frames.CONTROL and class_code == SESSION:
                self._session(channel, code, payload)
                continue
            elif segment != frames.COMMAND:
                continue  # a header or body of a command refused below
            self._not_implemented(segment, class_code, code)
            return

    def _session(self, channel: int, code: int, payload: bytes) -> None:
        """``session.attach`` → ``attached``, ``detach`` → ``detached``, ``request-timeout`` → ``timeout 0``;
        the bookkeeping controls (command-point, flush, completed …) need no answer here."""
        if code == SESSION_ATTACH:
            self.conn.sendall(session_control(SESSION_ATTACHED, channel, _session_name(payload)))
        elif code == SESSION_DETACH:
            self.conn.sendall(session_control(SESSION_DETACHED, channel, _session_name(payload), b"\x00"))
        elif code == SESSION_REQUEST_TIMEOUT:
            self.conn.sendall(session_control(SESSION_TIMEOUT, channel, None, struct.pack(">I", 0)))

    def _not_implemented(self, segment: int, class_code: int, code: int) -> None:
        kind = "command" if segment == frames.COMMAND else "control"
        what = f"{CLASSES.get(class_code, f'class {class_code}')} {kind} {code}"
        self.send(
            frames.CLOSE,
            {"reply-code": NOT_IMPLEMENTED, "reply-text": f"{PRODUCT} does not implement {what}"},
        )
        self._await_close_ok()

    def _await_close_ok(self, linger_s: float = 1.0) -> None:
        """Wait for ``close-ok``, then leave the hang-up to the client (at most ``linger_s``).

        python-qpid records the reason of a ``close`` and reports it when its caller next looks;
        if the socket ends before that, it replaces the reason by "connection aborted".  A client
        hangs up at once after reading a ``close``, so waiting for it costs nothing and makes what
        the client reports not depend on thread scheduling.
        """
        with contextlib.suppress(EOFError, ProbeFailed, ValueError, OSError):
            while self.next().code != frames.CLOSE_OK:
                pass
            self.conn.settimeout(linger_s)
            while self.conn.recv(4096):
                pass


#: AMQP 0-10 class codes (specification), for "does not implement" messages.
CLASSES = {
    1: "connection",
    2: "session",
    3: "execution",
    4: "message",
    5: "tx",
    6: "dtx",
    7: "exchange",
    8: "queue",
    9: "file",
    10: "stream",
}
SESSION = 2
SESSION_ATTACH, SESSION_ATTACHED, SESSION_DETACH, SESSION_DETACHED = 1, 2, 3, 4
SESSION_REQUEST_TIMEOUT, SESSION_TIMEOUT = 5, 6
NOT_IMPLEMENTED = 540  # connection.close-code: not-implemented


def _session_name(payload: bytes) -> bytes:
    """The ``name`` (vbin16, the first field) of a session control, or empty when absent."""
    flags = payload[2] | payload[3] << 8
    if not flags & 1 or len(payload) < 6:
        return b""
    (size,) = struct.unpack_from(">H", payload, 4)
    return payload[6 : 6 + size]


def session_control(code: int, channel: int, name: bytes | None, rest: bytes = b"") -> bytes:
    """A ``session`` control frame: the name (vbin16) when given, then ``rest`` (the next field)."""
    fields, flags = b"", 0
    if name is not None:
        fields += struct.pack(">H", len(name)) + name
        flags |= 1
    if rest:
        fields += rest
        flags |= 2 if name is not None else 1
    payload = struct.pack(">BB", SESSION, code) + bytes([flags & 0xFF, flags >> 8]) + fields
    return frames.frame(payload, channel=channel)
