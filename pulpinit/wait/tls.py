"""TLS for the probes: client contexts from server.conf's files, each client's host-name rule.

The probes do TLS with Python's :mod:`ssl` on sockets they own (proton's own
TLS does not match an IP address against an IP subjectAltName, and Kubernetes
service variables give IP addresses).  A :class:`TlsPolicy` says what to
verify and with which files; each file carries the server.conf key it came
from, so an error names both (``tasks.certfile /etc/pki/…: No such file or
directory``).

Host-name rules (:class:`HostRule`), because the check must be the one the
real client makes:

* ``X509`` — Python's ``ssl`` (OpenSSL, RFC 6125): an IP address matches an
  IP subjectAltName, a name matches a DNS subjectAltName.  pymongo and py-amqp
  (``amqp://``) use it.
* ``QPID`` — python-qpid's ``qpid.messaging`` (Celery's ``qpid://``
  transport): the host is compared with the DNS subjectAltNames and the
  subject's common name only, ``*`` as a label wildcard; IP subjectAltNames are
  not looked at, so an IP address must appear as a DNS name or the CN.

* ``PYMONGO2`` — pymongo 3 on Python 2, as Pulp runs it (``ssl_match_hostname`` without the
  ``ipaddress`` backport): the host is compared, as text, with the DNS subjectAltNames; IP
  subjectAltNames never match; the common name counts only in a certificate without any
  subjectAltName.
* ``NONE`` — py-amqp with Pulp's ``BROKER_USE_SSL`` (``amqp://`` and ``celery_require_ssl``): it
  passes no server name, so the chain is verified and the name is not checked at all.

(The settings stage checks beforehand that a TLS file the configuration names
can be read: exit 78 before anything connects.)
"""

from __future__ import annotations

import enum
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from pulpinit.regularfile import unreadable
from pulpinit.targets import Failure
from pulpinit.wait.net import Deadline, ProbeFailed, classify_os_error


class HostRule(enum.Enum):
    X509 = "x509"
    QPID = "qpid"
    PYMONGO2 = "pymongo2"
    NONE = "none"


@dataclass(frozen=True)
class TlsFile:
    """A file named by server.conf: its key (for messages) and its path."""

    key: str
    path: str

    def __str__(self) -> str:
        return f"{self.key} {self.path}"


@dataclass(frozen=True)
class TlsPolicy:
    """How to do one TLS handshake: what to verify, with which files."""

    verify: bool = True  # the chain (against ``cafile``, else the system CAs) and the host name
    cafile: TlsFile | None = None
    certfile: TlsFile | None = None
    keyfile: TlsFile | None = None  # None: the key is in ``certfile``
    host_rule: HostRule = HostRule.X509


def context(policy: TlsPolicy) -> ssl.SSLContext:
    """A client context for ``policy``; a file that cannot be used is named in the TLS failure."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for item in (policy.cafile, policy.certfile, policy.keyfile):
        problem = unreadable(item.path) if item else None
        if item and problem:
            raise ProbeFailed(Failure.TLS, f"cannot read {item}: {problem}")
    try:
        if policy.cafile:
            ctx.load_verify_locations(cafile=policy.cafile.path)
        elif policy.verify:
            ctx.load_default_certs()
    except ssl.SSLError as exc:
        raise ProbeFailed(Failure.TLS, f"{policy.cafile} holds no usable CA certificate ({exc.reason})") from None
    if policy.certfile:
        try:
            ctx.load_cert_chain(policy.certfile.path, policy.keyfile.path if policy.keyfile else None)
        except ssl.SSLError as exc:
            files = " and ".join(str(f) for f in (policy.certfile, policy.keyfile) if f)
            raise ProbeFailed(
                Failure.TLS,
                f"cannot load the client certificate from {files} "
                f"(not PEM, or key and certificate do not match: {exc.reason})",
            ) from None
    ctx.check_hostname = policy.verify and policy.host_rule is HostRule.X509
    ctx.verify_mode = ssl.CERT_REQUIRED if policy.verify else ssl.CERT_NONE
    return ctx


def handshake(
    sock: socket.socket, policy: TlsPolicy, host: str, deadline: Deadline, ctx: ssl.SSLContext | None = None
) -> ssl.SSLSocket:
    """Run the TLS handshake on ``sock`` within the deadline; close it and raise on failure.

    ``ctx`` is :func:`context` of ``policy`` when the caller built it already.
    """
    ctx = ctx or context(policy)
    sock.settimeout(deadline.left("TLS handshake"))
    try:
        tls = ctx.wrap_socket(sock, server_hostname=host)
    except OSError as exc:
        sock.close()
        raise classify_os_error(exc, "TLS handshake", deadline) from None
    if policy.verify and policy.host_rule in _TEXT_RULES:
        client, read = _TEXT_RULES[policy.host_rule]
        names = read(tls.getpeercert() or {})
        if not any(qpid_name_matches(host, name) for name in names):
            tls.close()
            shown = ", ".join(names) or "none"
            raise ProbeFailed(
                Failure.TLS,
                f"the server's certificate does not name {host} the way {client} checks it "
                f"(names compared: {shown}; an IP address must appear there as text, "
                "IP subjectAltNames are not read)",
            )
    return tls


def pymongo2_names(cert: dict[str, Any]) -> list[str]:
    """The names pymongo 3 on Python 2 compares the host with: DNS subjectAltNames, or the CN without any."""
    sans = cert.get("subjectAltName", ())
    if sans:
        return [value.lower() for kind, value in sans if kind == "DNS"]
    return [value.lower() for rdn in cert.get("subject", ()) for attr, value in rdn if attr == "commonName"]


def qpid_names(cert: dict[str, Any]) -> list[str]:
    """The names python-qpid compares the host with: DNS subjectAltNames, then the common name(s)."""
    names = [value.lower() for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    for rdn in cert.get("subject", ()):
        names += [value.lower() for attr, value in rdn if attr == "commonName"]
    return names


def qpid_name_matches(host: str, pattern: str) -> bool:
    """python-qpid's rule: equal, or label by label with ``*`` matching within one label."""
    host = host.lower()
    if "*" not in pattern:
        return host == pattern
    host_labels, pattern_labels = host.split("."), pattern.split(".")
    if len(host_labels) != len(pattern_labels):
        return False
    for label, want in zip(host_labels, pattern_labels, strict=True):
        prefix, star, suffix = want.partition("*")
        if not star:
            if label != want:
                return False
        elif not (label.startswith(prefix) and label.endswith(suffix)):
            return False
    return True


#: Host-name rules that compare text: the client's name for messages, and the names it reads.
_TEXT_RULES = {
    HostRule.QPID: ("Celery's qpid:// transport", qpid_names),
    HostRule.PYMONGO2: ("Pulp's pymongo (Python 2)", pymongo2_names),
}
