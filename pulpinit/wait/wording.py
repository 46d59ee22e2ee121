"""Whom an AMQP handshake speaks for: the client its errors name and the settings its advice names.

The AMQP handshakes (:mod:`~pulpinit.wait.amqp010`, :mod:`~pulpinit.wait.amqp091`,
:mod:`~pulpinit.wait.amqp10`) serve two of Pulp's clients: Celery, at ``tasks.broker_url``, and
gofer, at ``[messaging]`` (the broker of the consumer agents).  The same server answer needs other
advice for each: Celery changes the scheme of its URL, gofer its ``messaging.transport``.  A
:class:`Client` carries those texts; the handshakes only fill them in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Client:
    """The texts of one client's errors."""

    name: str  # "Celery's qpid:// transport", "gofer's qpid adapter"
    tls_advice: str  # how to turn TLS on (or off) for this client
    url_key: str  # the setting that holds the URL's credentials
    #: the protocol a server offers instead ("AMQP 0-9-1") → what to set to reach it (``{where}``: host:port)
    instead: Mapping[str, str] = field(default_factory=dict)

    def switch(self, offered: str, where: str) -> str:
        """What to change for a server that offers ``offered``; "" when this client knows no way."""
        advice = self.instead.get(offered, "")
        return advice.format(where=where)


CELERY_QPID = Client(
    "Celery's qpid:// transport",
    "set tasks.celery_require_ssl: true (with tasks.cacert), or use the plain port",
    "broker_url",
    {
        "AMQP 0-9-1": "use amqp://USER:PASSWORD@{where}/VHOST",
        "AMQP 1.0": "no Celery transport speaks AMQP 1.0: use a broker with AMQP 0-10 (Qpid C++, qpid://) "
        "or 0-9-1 (RabbitMQ, amqp://)",
    },
)
CELERY_AMQP = Client(
    "Celery's amqp:// transport (py-amqp)",
    "use amqps:// or set tasks.celery_require_ssl: true (with tasks.cacert), or use the plain port",
    "broker_url",
    {"AMQP 0-10": "a Qpid broker wants qpid://"},
)

_GOFER_TLS = "use ssl:// (or amqps://) in messaging.url for a TLS port, tcp:// (or amqp://) for a plain one"
_GOFER_INSTEAD = {
    "AMQP 0-10": "set messaging.transport: qpid",
    "AMQP 0-9-1": "set messaging.transport: rabbitmq",
    "AMQP 1.0": "set messaging.transport: proton",
}
GOFER_QPID = Client("gofer's qpid adapter (python-qpid)", _GOFER_TLS, "messaging.url", _GOFER_INSTEAD)
GOFER_AMQP = Client("gofer's amqp adapter (py-amqp)", _GOFER_TLS, "messaging.url", _GOFER_INSTEAD)
GOFER_PROTON = Client(
    "gofer's proton adapter (python-qpid-proton)",
    "use amqps:// in messaging.url for a TLS port (with the proton adapter only amqps:// turns TLS on), "
    "tcp:// or amqp:// for a plain one",
    "messaging.url",
    _GOFER_INSTEAD,
)
