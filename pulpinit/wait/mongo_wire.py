"""Is it MongoDB on that port?  A raw hello before pymongo's, to name what is there instead.

pymongo reports a TLS server, an HTTP server or an AMQP broker on the MongoDB
port as a reset, a timeout or "Got response id …", and a TLS client at a plain
port waits for its whole timeout (the server reads the TLS ClientHello as the
length of a 33 MB message).  So before pymongo connects, the probe opens its
own connection to each seed and sends the legacy ``isMaster`` command
(OP_QUERY on ``admin.$cmd``: every MongoDB from 3.6 to 8.0 answers it, it is
the drivers' first message) in plain text:

* an OP_REPLY/OP_MSG header answering our request id is MongoDB;
* a TLS record is a TLS port, anything else (HTTP, an AMQP protocol header, …)
  is another protocol, both named by their first bytes;
* a silent hang-up is looked at again with a TLS handshake: if one completes,
  the port speaks TLS.

With ``database.ssl`` on, a MongoDB answer to the plain hello means the port
does not speak TLS (``tls_mismatch``, at once instead of a timeout); otherwise
the TLS handshake is done with Python's ``ssl`` as pymongo will do it (chain,
host name — an IP address matches an IP subjectAltName — client certificate,
``verify_ssl``), and the hello is sent again inside TLS.  Every failure comes
with its phase: no TCP connection in time is ``timeout``, a server that
accepted the connection and then said nothing is ``handshake_timeout``.

Several seeds are checked in parallel; the preflight succeeds as soon as one
of them answers like MongoDB, and reports the first seed's failure when none
does.  The probe runs it beside pymongo (see :func:`pulpinit.wait.mongo_probe.probe_mongodb`).
"""

from __future__ import annotations

import dataclasses
import queue
import socket
import struct
import threading
import time
from itertools import count

from pulpinit.parse import format_hostport
from pulpinit.targets import Address, Failure, MongoTarget
from pulpinit.wait import tls
from pulpinit.wait.net import (
    Deadline,
    ProbeFailed,
    Reader,
    Resolver,
    connect,
    not_this_protocol,
    resolve,
    send,
    speaks_tls,
)

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode
MAX_MESSAGE = 48_000_000
TLS_ON = "set database.ssl: true (with database.ca_path), or use the plain port"
TLS_OFF = "set database.ssl: false, or use the server's TLS port"
_request_ids = count(0x5A17)
# {isMaster: 1} as BSON: int32 size, int32 element "isMaster" = 1, terminator.
_IS_MASTER = struct.pack("<i", 19) + b"\x10isMaster\x00" + struct.pack("<i", 1) + b"\x00"


def hello_message(request_id: int) -> bytes:
    """An OP_QUERY ``{isMaster: 1}`` on ``admin.$cmd`` (flags 0, skip 0, return -1)."""
    body = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + _IS_MASTER
    return HEADER.pack(HEADER.size + len(body), request_id, 0, OP_QUERY) + body


def is_reply(header: bytes, request_id: int) -> bool:
    """Whether ``header`` (16 bytes) is a MongoDB reply to ``request_id``."""
    if len(header) < HEADER.size:
        return False
    length, _rid, response_to, op_code = HEADER.unpack(header[: HEADER.size])
    return HEADER.size <= length <= MAX_MESSAGE and response_to == request_id and op_code in (OP_REPLY, OP_MSG)


def _ask(sock: socket.socket, deadline: Deadline, where: str) -> tuple[bytes, int]:
    """Send a hello on ``sock``; the first bytes of the answer (fewer, or none, when it hangs up)."""
    request_id = next(_request_ids)
    stage = f"waiting for MongoDB's answer to a hello from {where}"
    send(sock, hello_message(request_id), deadline, f"sending a hello to {where}")
    return Reader(sock, deadline).read_upto(HEADER.size, stage), request_id


def check_seed(target: MongoTarget, host: str, port: int, deadline: Deadline, resolver: Resolver | None = None) -> None:
    """Raise ProbeFailed unless ``host:port`` answers like MongoDB (in TLS when ``target.ssl``)."""
    where = format_hostport(host, port)
    policy = _tls_policy(target) if target.ssl else None
    ctx = tls.context(policy) if policy else None  # a missing file is named before connecting
    sock = connect(host, port, deadline, resolver)
    try:
        answer, request_id = _ask(sock, deadline, where)
    finally:
        sock.close()
    plain_mongo = is_reply(answer, request_id)
    if policy is None or ctx is None:
        if plain_mongo:
            return
        if answer:
            raise not_this_protocol(answer, f"a MongoDB hello from {where}", TLS_ON)
        if speaks_tls(host, port, deadline, resolver):
            raise ProbeFailed(
                Failure.TLS_MISMATCH,
                f"{where} hung up on a plain MongoDB hello and completes a TLS handshake: it speaks TLS; {TLS_ON}",
            )
        raise ProbeFailed(Failure.RESET, f"{where} closed the connection without answering a MongoDB hello")
    if plain_mongo:
        raise ProbeFailed(
            Failure.TLS_MISMATCH, f"{where} answered a plain MongoDB hello: that port does not speak TLS; {TLS_OFF}"
        )
    if answer and answer[0] not in (0x15, 0x16):
        raise not_this_protocol(answer, f"a MongoDB hello from {where}", TLS_OFF)
    sock = connect(host, port, deadline, resolver)
    try:
        secure = tls.handshake(sock, policy, host, deadline, ctx)
        with secure:
            answer, request_id = _ask(secure, deadline, where)
    finally:
        sock.close()
    if not is_reply(answer, request_id):
        if not answer:
            raise ProbeFailed(Failure.RESET, f"{where} closed the TLS connection without answering a MongoDB hello")
        raise ProbeFailed(
            Failure.PROTOCOL, f"{where} speaks TLS, but what answers inside is not MongoDB ({answer[:16]!r})"
        )


def _tls_policy(target: MongoTarget) -> tls.TlsPolicy:
    """TLS as pymongo does it with server.conf's [database] keys (see :mod:`pulpinit.wait.mongo_client`)."""
    cert, key = target.ssl_certfile, target.ssl_keyfile
    return tls.TlsPolicy(
        verify=target.verify_ssl,
        cafile=tls.TlsFile("database.ca_path", target.ca_path) if target.ca_path else None,
        certfile=tls.TlsFile("database.ssl_certfile", cert) if cert else None,
        keyfile=tls.TlsFile("database.ssl_keyfile", key) if cert and key and key != cert else None,
        host_rule=tls.HostRule.PYMONGO2,
    )


def resolve_seeds(
    target: MongoTarget, deadline: Deadline, resolver: Resolver | None = None
) -> tuple[MongoTarget, tuple[Address, ...]]:
    """``target`` with the seeds that resolve, and their addresses; the first seed's DNS failure when none does.

    pymongo then never looks up a name that does not resolve (it would ask the system resolver
    again, and tests must not).  The addresses are for the armed wait, when pymongo is refused.
    """
    seeds, failures, addresses = [], [], []
    for host, port in target.seeds:
        try:
            infos = resolve(host, port, deadline, resolver)
        except ProbeFailed as exc:
            failures.append(exc)
        else:
            seeds.append((host, port))
            addresses += [(family, tuple(addr)) for family, _kind, _proto, _name, addr in infos]
    if not seeds:
        raise failures[0]
    if len(seeds) < len(target.seeds):
        target = dataclasses.replace(target, seeds=tuple(seeds))
    return target, tuple(dict.fromkeys(addresses))


def preflight(target: MongoTarget, deadline: Deadline, resolver: Resolver | None = None) -> None:
    """Return once one seed answers like MongoDB; raise the first seed's failure when none does."""
    if len(target.seeds) == 1:
        host, port = target.seeds[0]
        check_seed(target, host, port, deadline, resolver)
        return
    outcomes: queue.Queue[tuple[int, ProbeFailed | None]] = queue.Queue()

    def one(index: int, host: str, port: int) -> None:
        try:
            check_seed(target, host, port, Deadline(deadline.end - time.monotonic()), resolver)
        except ProbeFailed as exc:
            outcomes.put((index, exc))
        except Exception as exc:  # a thread must report, whatever happens
            outcomes.put((index, ProbeFailed(Failure.OTHER, f"{type(exc).__name__}: {exc}")))
        else:
            outcomes.put((index, None))

    for index, (host, port) in enumerate(target.seeds):
        threading.Thread(target=one, args=(index, host, port), name="pulpinit-mongo-preflight", daemon=True).start()
    failures: dict[int, ProbeFailed] = {}
    while len(failures) < len(target.seeds):
        index, failure = outcomes.get()
        if failure is None:
            return
        failures[index] = failure
    raise failures[min(failures)]
