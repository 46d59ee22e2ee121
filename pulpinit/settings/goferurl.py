"""How gofer (2.12, Pulp 2.21's) reads ``[messaging]``: the adapter ``transport`` names, and the URL.

Pulp reaches the consumer agents through gofer at ``'+'.join((transport, url))``
(``server/pulp/server/agent/connector.py`` lines 14-16), with ``[messaging] cacert`` and
``clientcert`` as the TLS files (lines 26-27; no key file, no host-name check).  What gofer 2.12.5
(jortel/gofer, ``src/gofer/messaging/adapter``) makes of it:

* **the adapter** (``factory.py`` lines 88-107): each adapter package is found under its directory
  name and the names in its ``PROVIDES``, loaded in sorted order, so a later one wins a shared
  name: ``qpid`` is the qpid adapter (the proton adapter provides ``qpid`` too, and takes it only
  where python-qpid is not installed).  The lookup is case-sensitive.  There is no ``amqplib``
  adapter: it was removed in gofer 2.4;
* **the URL** (``url.py`` lines 77-102, 132-261): the scheme must be one of ``tcp``, ``amqp``
  (default port 5672), ``ssl``, ``amqps`` (5671), case-sensitive; then the text is cut at the
  *first* ``/`` (the rest is the path: the virtual host for the amqp adapter), the first ``@``
  (credentials before it), the first ``:`` of the credentials (user, password) and of the host
  (host, port).  Nothing is percent-decoded.  TLS is on for ``ssl`` and ``amqps``
  (``model.py`` lines 1100-1106);
* **each adapter's connection** (:func:`connection`):

  - ``qpid`` (``qpid/connection.py`` lines 58-117): python-qpid, AMQP 0-10, with the URL's
    host, port, user and password as they are; TLS verifies the chain against ``cacert`` when it
    is set (no host-name check) and sends ``clientcert`` (its key in the same file);
  - ``amqp`` (``amqp/connection.py`` lines 41-105): py-amqp, AMQP 0-9-1; user and password
    default to ``guest``, the path is the virtual host (``/`` when empty); TLS as for qpid;
  - ``proton`` (``proton/connection.py`` lines 35-92): python-qpid-proton, AMQP 1.0, opened with
    the URL's *canonical* form (``url.py`` lines 104-117), which drops a port of 5672 or 5671
    (whatever the scheme) and writes a user without a password as ``user:None``.  proton then
    reads that URL itself: it percent-decodes user and password, takes the scheme's default port
    where none is left (``amqp`` 5672, ``amqps`` 5671; ``tcp`` and ``ssl`` have none, which is
    an error), and turns TLS on only for ``amqps``; the TLS it does checks no certificate
    (``ANONYMOUS_PEER``) and sends ``clientcert``.

gofer checks, before connecting, that ``cacert`` and ``clientcert`` exist and can be read when
TLS is on (``model.py`` lines 960-967).  The differential tier drives these adapters' client
libraries on Python 2.7 the same way (``tests/helpers/pulp_clients27.py``) and judges the probe
(:mod:`pulpinit.wait.messaging_probe`) against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal
from urllib.parse import unquote

#: gofer's adapters (the directory names under ``gofer/messaging/adapter``).
Adapter = Literal["qpid", "proton", "amqp"]
#: gofer 2.12's adapter catalog: every name ``messaging.transport`` may give, and the adapter it finds.
ADAPTERS: Mapping[str, Adapter] = MappingProxyType(
    {
        "amqp": "amqp",
        "amqp-0-9-1": "amqp",
        "rabbitmq": "amqp",
        "rabbit": "amqp",
        "gofer.messaging.adapter.amqp": "amqp",
        "proton": "proton",
        "amqp-1-0": "proton",
        "gofer.messaging.adapter.proton": "proton",
        "qpid": "qpid",
        "amqp-0-10": "qpid",
        "qpid.messaging": "qpid",
        "gofer.messaging.adapter.qpid": "qpid",
    }
)
#: The protocol each adapter speaks, by the name in messages.
PROTOCOLS: Mapping[Adapter, str] = MappingProxyType({"qpid": "AMQP 0-10", "amqp": "AMQP 0-9-1", "proton": "AMQP 1.0"})
#: gofer's URL schemes and their default ports (``url.py`` lines 22-34).
PORTS: Mapping[str, int] = MappingProxyType({"tcp": 5672, "amqp": 5672, "ssl": 5671, "amqps": 5671})
TLS_SCHEMES = ("ssl", "amqps")
#: Ports :attr:`GoferUrl.canonical` leaves out (``url.py`` line 115: ``PORT.values()``).
_DEFAULT_PORTS = frozenset(PORTS.values())
#: The ports proton gives a URL without one, by scheme (``proton/_url.py``, ``Url.Port``).
_PROTON_PORTS = {"amqp": 5672, "amqps": 5671}


class Unusable(ValueError):
    """What gofer fails on whatever the broker says; ``key`` is the setting to change."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class GoferUrl:
    """``transport+url`` as gofer reads it (nothing decoded)."""

    adapter: Adapter
    scheme: str
    host: str
    port: int
    user: str | None
    password: str | None = field(repr=False)
    path: str | None

    @property
    def tls(self) -> bool:
        """gofer's ``use_ssl()``: it validates the TLS files and hands the adapter its TLS settings."""
        return self.scheme in TLS_SCHEMES

    @property
    def canonical(self) -> str:
        """``URL.canonical``: what the proton adapter opens (the port left out when it is 5672 or 5671)."""
        cred = f"{self.user}:{self.password}@" if self.user else ""
        port = "" if self.port in _DEFAULT_PORTS else f":{self.port}"
        return f"{self.scheme}://{cred}{self.host}{port}"


@dataclass(frozen=True)
class Connection:
    """What an adapter connects with: the socket's end, TLS, and the login."""

    adapter: Adapter
    host: str
    port: int
    tls: bool  # TLS on the socket
    user: str | None
    password: str | None = field(repr=False)
    vhost: str = "/"  # the amqp adapter's virtual host
    #: gofer validates the TLS files (``use_ssl()``), even where the adapter then connects in plain text
    tls_files: bool = False


def read(transport: str, url: str) -> GoferUrl:
    """gofer's reading of ``transport+url``; raises :class:`Unusable` saying what gofer fails on."""
    if transport not in ADAPTERS:
        known = ", ".join(name for name in ADAPTERS if "." not in name)
        hint = " (gofer 2.4 removed the amqplib adapter: use rabbitmq)" if transport.lower() == "amqplib" else ""
        shown = repr(transport) if transport else "(empty)"
        message = f"gofer has no messaging adapter {shown}{hint}; gofer 2.12 knows: {known}"
        raise Unusable("messaging.transport", message)
    head, sep, rest = url.partition("://")
    if not sep or head not in PORTS:
        schemes = ", ".join(f"{s}://" for s in PORTS)
        raise Unusable("messaging.url", f"gofer takes only the schemes {schemes}, in lower case")
    location, slash, path = rest.partition("/")
    auth, at, hostport = location.partition("@")
    if not at:
        auth, hostport = "", location
    if "@" in hostport:
        raise Unusable(
            "messaging.url",
            "gofer ends the credentials at the first '@' and decodes no %40: a user or password holding '@' "
            "cannot be written",
        )
    user, colon, password = auth.partition(":")
    name, colon_port, number = hostport.partition(":")
    if not name:
        raise Unusable("messaging.url", "gofer finds no host in it")
    if colon_port and not number.strip().isdigit():
        raise Unusable(
            "messaging.url",
            f"gofer cuts the host at the first ':' and reads the port {number!r}: an IPv6 address cannot be "
            "written (use a host name)",
        )
    return GoferUrl(
        adapter=ADAPTERS[transport],
        scheme=head,
        host=name,
        port=int(number) if colon_port else PORTS[head],
        user=user or None,
        password=password if colon else None,
        path=path if slash else None,
    )


def connection(gofer: GoferUrl) -> Connection:
    """What gofer's adapter connects with (see the module docstring); raises :class:`Unusable` where it cannot."""
    if gofer.adapter == "qpid":
        return Connection("qpid", gofer.host, gofer.port, gofer.tls, gofer.user, gofer.password, tls_files=gofer.tls)
    if gofer.adapter == "amqp":
        return Connection(
            "amqp",
            gofer.host,
            gofer.port,
            gofer.tls,
            gofer.user or "guest",
            gofer.password or "guest",
            gofer.path or "/",
            tls_files=gofer.tls,
        )
    return _proton(gofer)


def _proton(gofer: GoferUrl) -> Connection:
    """proton's reading of :attr:`GoferUrl.canonical`."""
    port = gofer.port
    if port in _DEFAULT_PORTS:
        if gofer.scheme not in _PROTON_PORTS:
            raise Unusable(
                "messaging.url",
                f"gofer's proton adapter leaves the port {port} out of the URL it opens ({gofer.scheme}://…, "
                f"URL.canonical), and proton has no default port for {gofer.scheme}://: use "
                f"{'amqps' if gofer.tls else 'amqp'}:// instead",
            )
        port = _PROTON_PORTS[gofer.scheme]
    user = unquote(gofer.user) if gofer.user else None
    password = unquote(str(gofer.password)) if gofer.user else None  # a missing one is written "None"
    return Connection("proton", gofer.host, port, gofer.scheme == "amqps", user, password, tls_files=gofer.tls)


def refusal(transport: str, url: str) -> Unusable | None:
    """Why gofer cannot connect with ``[messaging]`` whatever the broker says (and which key to change), or None."""
    try:
        connection(read(transport, url))
    except Unusable as exc:
        return exc
    return None
