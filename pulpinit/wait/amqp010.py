"""AMQP 0-10, as far as the connection handshake: what Celery's ``qpid://`` transport speaks.

Pulp's Celery reaches a ``qpid://`` broker through kombu's qpid transport,
which uses python-qpid's ``qpid.messaging`` — an AMQP 0-10 client (Qpid C++
speaks 0-10 and, with its amqp module, 1.0 on the same port).  This module
writes and reads the few controls of the 0-10 ``connection`` class from the
specification (``amqp.0-10-qpid-errata.xml``), so the probe checks the
credentials in the protocol Celery will use.

The frames, controls and typed values are :mod:`pulpinit.wait.amqp010frames`'.

The exchange (specification, ``connection`` class; as ``qpid.messaging``
does it): header ↔ header, ``start`` (server properties, SASL mechanisms,
locales) → ``start-ok`` (PLAIN ``\\0user\\0password`` when the URL has both,
ANONYMOUS with no response otherwise, locale ``en_US``) → ``tune`` (the
credentials are accepted) or ``close`` (refused; Qpid C++ sends 320
"Authentication failed") → ``tune-ok`` and ``open`` (no virtual host, as
``qpid.messaging``) → ``open-ok`` → ``close`` → ``close-ok``.

A server that answers the header with another header does not speak 0-10:
RabbitMQ answers ``AMQP 0-9-1`` to anything, an AMQP-1.0-only server its 1.0
header; the error says what it offered and what to do.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pulpinit.parse import format_hostport
from pulpinit.targets import Failure
from pulpinit.wait.amqp010frames import (
    CLOSE,
    CLOSE_INVALID_PATH,
    CLOSE_NORMAL,
    CLOSE_OK,
    CONNECTION,
    HEARTBEAT,
    OPEN,
    OPEN_OK,
    PROTOCOL_HEADER,
    REDIRECT,
    SECURE,
    SECURE_OK,
    START,
    START_OK,
    TUNE,
    TUNE_OK,
    Control,
    Framer,
    control_frame,
)
from pulpinit.wait.net import (
    Deadline,
    ProbeFailed,
    Reader,
    amqp_header_name,
    not_this_protocol,
    one_line,
)
from pulpinit.wait.net import send as send_all
from pulpinit.wait.wording import CELERY_QPID, Client

_quiet = contextlib.suppress(ProbeFailed, OSError, EOFError, ValueError, struct.error)


# --- the client handshake -----------------------------------------------------------------------


def mismatch_advice(header: bytes, host: str, port: int, client: Client = CELERY_QPID) -> str:
    """Why ``client`` (an AMQP 0-10 client) cannot work with a server that answered ``header``, and what to do."""
    offered = amqp_header_name(header)
    known = "AMQP 0-9-1" if offered in ("AMQP 0-9-1", "AMQP 0-9", "AMQP 0-8") else offered
    known = "AMQP 1.0" if known.startswith("AMQP 1.0") else known
    what = {"AMQP 0-9-1": f"broker offers {offered} (RabbitMQ?)", "AMQP 1.0": "server offers only AMQP 1.0"}
    advice = client.switch(known, format_hostport(host, port))
    return f"{client.name} speaks AMQP 0-10; this {what.get(known, f'server offers {offered}')}" + (
        f": {advice}" if advice else ""
    )


@dataclass(frozen=True)
class Login:
    """What ``start-ok`` says: mechanism and initial response (None: the field is absent)."""

    mechanism: str
    response: bytes | None
    who: str  # for messages: "login as 'alice'" / "anonymous login"
    #: the URL's password that kombu drops because ``tasks.login_method`` is set: the hint to give
    dropped: bool = False


DROPPED = "kombu's qpid:// transport drops the URL's password when tasks.login_method is set: unset tasks.login_method"


def login_for(
    user: str | None,
    password: str | None,
    login_method: str | None = None,
    offered: Sequence[str] | None = None,
    *,
    restricted: bool = True,
) -> Login | None:
    """The login of kombu's qpid transport and python-qpid's own SASL client (``qpid/sasl.py``).

    kombu permits one mechanism: ``login_method`` when set (and passes the user only: the password
    is dropped), else PLAIN with user and password, ANONYMOUS without.  gofer's qpid adapter
    (``restricted=False``) permits any.  python-qpid keeps the offered mechanisms (``offered``;
    None: all) that are permitted and takes PLAIN when it has a user (a missing or dropped password
    is sent as ``None``: python-qpid formats it with ``%s``), else ANONYMOUS, else EXTERNAL.  None:
    no mechanism agreed.
    """
    if restricted:
        permitted = (login_method or ("PLAIN" if user and password else "ANONYMOUS")).split()
    else:
        permitted = ["PLAIN", "ANONYMOUS", "EXTERNAL"]
    usable = [m for m in (permitted if offered is None else offered) if m in permitted]
    dropped = bool(restricted and login_method and password)
    if user and "PLAIN" in usable:
        sent = "None" if dropped or not password else password
        who = f"login as {user!r}" + (" without its password" if dropped else "")
        return Login("PLAIN", b"\x00" + user.encode() + b"\x00" + sent.encode(), who, dropped)
    if "ANONYMOUS" in usable:
        return Login("ANONYMOUS", None, "anonymous login (no password in the URL)", dropped)
    if "EXTERNAL" in usable:
        return Login("EXTERNAL", str(user).encode(), "EXTERNAL login", dropped)
    return None


def handshake(
    sock: socket.socket,
    deadline: Deadline,
    *,
    host: str,
    port: int,
    user: str | None,
    password: str | None,
    login_method: str | None = None,
    tls: bool = False,
    speaks_tls: Callable[[], bool] | None = None,
    client: Client = CELERY_QPID,
    restricted: bool = True,
) -> str | None:
    """Open and close a 0-10 connection on ``sock``; return the server's version or raise ProbeFailed.

    ``speaks_tls`` is asked when a plain connection is closed without a word: if the port
    completes a TLS handshake, the failure is a TLS mismatch rather than a protocol one.
    ``client`` names whom the errors speak for; ``restricted`` is :func:`login_for`'s.
    """
    reader = Reader(sock, deadline)
    login = login_for(user, password, login_method, restricted=restricted) or Login(
        str(login_method), None, f"{login_method} login"
    )

    def send(data: bytes, stage: str) -> None:
        send_all(sock, data, deadline, stage)

    send(PROTOCOL_HEADER, "sending the AMQP 0-10 protocol header")
    header = reader.read_upto(8, "waiting for the AMQP 0-10 protocol header")
    _check_header(header, host, port, tls, speaks_tls, client=client)

    framer = Framer(reader)
    start = _next(framer, "waiting for connection.start", login)
    if start.code != START:
        raise ProbeFailed(Failure.PROTOCOL, f"expected connection.start, got {start.name}")
    props = start.fields.get("server-properties") or {}
    product, version = props.get("product"), props.get("version")
    server_version = " ".join(str(v) for v in (product, version) if v) or None
    mechanisms = [str(m) for m in start.fields.get("mechanisms") or []]
    login = _agreed(user, password, login_method, mechanisms, client=client, restricted=restricted)

    props = {"product": "pulpinit", "qpid.client_process": "pulpinit check-deps"}
    send(
        control_frame(
            START_OK,
            {"client-properties": props, "mechanism": login.mechanism, "response": login.response, "locale": "en_US"},
        ),
        "sending connection.start-ok",
    )
    verdict = f"waiting for the broker's answer to the {login.who} (connection.tune)"
    answered_challenge = False
    while True:
        control = _next(framer, verdict, login)
        if control.code == SECURE and not answered_challenge:
            answered_challenge = True  # a server may ask for the initial response again
            send(control_frame(SECURE_OK, {"response": login.response or b""}), "sending connection.secure-ok")
            continue
        break
    if control.code == CLOSE:
        _close_ok(send)
        raise _refusal(control, login, client)
    if control.code != TUNE:
        raise ProbeFailed(Failure.PROTOCOL, f"expected connection.tune, got {control.name}")

    tune_ok = {"channel-max": control.fields.get("channel-max") or 1}
    send(control_frame(TUNE_OK, tune_ok) + control_frame(OPEN, {}), "sending connection.tune-ok and open")
    opened = _next(framer, "waiting for connection.open-ok", login)
    if opened.code == CLOSE:
        _close_ok(send)
        code, text = _reason(opened)
        if code == CLOSE_INVALID_PATH:
            raise ProbeFailed(Failure.VHOST, f"the broker has no default virtual host: {code} {text}")
        raise ProbeFailed(Failure.OTHER, f"the broker closed the connection on connection.open: {code} {text}")
    if opened.code == REDIRECT:
        target = opened.fields.get("host", "?")
        raise ProbeFailed(
            Failure.OTHER,
            f"the broker redirects clients to {target}, which {client.name} does not follow: "
            f"point {client.url_key} there",
        )
    if opened.code != OPEN_OK:
        raise ProbeFailed(Failure.PROTOCOL, f"expected connection.open-ok, got {opened.name}")

    with _quiet:  # close politely; the answer is known, so do not wait long
        send(control_frame(CLOSE, {"reply-code": CLOSE_NORMAL, "reply-text": "pulpinit probe"}), "closing")
        short = Deadline(min(0.2, deadline.left("closing")), connected=True)
        Framer(Reader(sock, short)).next_control("waiting for connection.close-ok")
    return server_version


def _check_header(
    header: bytes, host: str, port: int, tls: bool, speaks_tls: Callable[[], bool] | None, *, client: Client
) -> None:
    if header == PROTOCOL_HEADER:
        return
    if header.startswith(b"AMQP") and len(header) == 8:
        raise ProbeFailed(Failure.PROTOCOL, mismatch_advice(header, host, port, client))
    if header:
        raise not_this_protocol(header, "the AMQP 0-10 protocol header", client.tls_advice)
    if not tls and speaks_tls is not None and speaks_tls():
        raise ProbeFailed(
            Failure.TLS_MISMATCH,
            "the broker hung up on the AMQP 0-10 protocol header, and the port "
            f"completes a TLS handshake: it speaks TLS; {client.tls_advice}",
        )
    raise ProbeFailed(
        Failure.RESET,
        "the server closed the connection without answering the AMQP 0-10 protocol header "
        "(a server that does not speak AMQP 0-10, or one still starting)",
    )


def _next(framer: Framer, stage: str, login: Login) -> Control:
    """The next control that is not a heartbeat; the end of the stream is classified by the stage."""
    while True:
        try:
            control = framer.next_control(stage)
        except EOFError:
            if "connection.tune" in stage:
                raise ProbeFailed(
                    Failure.AUTH,
                    f"the broker hung up after the {login.who} ({login.mechanism}): credentials or mechanism refused"
                    + (f"; {DROPPED}" if login.dropped else ""),
                ) from None
            raise ProbeFailed(Failure.RESET, f"the broker closed the connection ({stage})") from None
        if control.class_code == CONNECTION and control.code == HEARTBEAT:
            continue
        return control


def _agreed(
    user: str | None,
    password: str | None,
    login_method: str | None,
    mechanisms: Sequence[str],
    *,
    client: Client,
    restricted: bool,
) -> Login:
    login = login_for(user, password, login_method, mechanisms, restricted=restricted)
    if login is not None:
        return login
    offered = " ".join(mechanisms) or "none"
    if login_method:
        raise ProbeFailed(
            Failure.SASL,
            f"the broker offers {offered}, tasks.login_method allows only {login_method} (python-qpid: "
            "sasl negotiation failed): change tasks.login_method, or unset it",
        )
    if user and (password or not restricted):
        raise ProbeFailed(
            Failure.SASL,
            f"the broker does not offer SASL PLAIN for the user and password in the URL (it offers: {offered})",
        )
    where = client.url_key
    hint = f"put {user!r} and a password in {where}" if user else f"put user:password in {where}"
    raise ProbeFailed(Failure.SASL, f"the broker does not offer SASL ANONYMOUS (it offers: {offered}): {hint}")


def _reason(control: Control) -> tuple[int, str]:
    return int(control.fields.get("reply-code") or 0), one_line(str(control.fields.get("reply-text") or ""))


def _refusal(close: Control, login: Login, client: Client) -> ProbeFailed:
    code, text = _reason(close)
    if "encrypt" in text.lower():
        return ProbeFailed(Failure.TLS_MISMATCH, f"the broker requires TLS: {code} {text}; {client.tls_advice}")
    return ProbeFailed(Failure.AUTH, f"{login.who} refused: {code} {text}" + (f"; {DROPPED}" if login.dropped else ""))


def _close_ok(send: Callable[[bytes, str], None]) -> None:
    with _quiet:
        send(control_frame(CLOSE_OK), "sending connection.close-ok")
