"""How Celery's kombu (4.0.2, Pulp 2.21's) reads ``tasks.broker_url``, and which URLs it cannot use.

The settings stage refuses (exit 78) a URL that Pulp's Celery would fail on whatever the broker
says, and the broker probe (:mod:`pulpinit.wait.broker_probe`) connects with what kombu takes
from the URL.  kombu's reading (``kombu/utils/url.py``, ``url_to_parts``; ``kombu/connection.py``):

* the part after ``scheme://`` is parsed as an HTTP URL; user, password, host and the path after
  its first ``/`` (the virtual host) are percent-decoded, and an **empty** user or password counts
  as none (``amqp://guest:@h//`` has no password: py-amqp then uses ``guest``);
* every query option becomes a keyword of kombu's ``Connection`` and overrides the setting of
  the same name: ``?ssl=…`` replaces ``BROKER_USE_SSL`` (any text is "true"), ``?login_method=``
  replaces ``BROKER_LOGIN_METHOD``; an option kombu has no parameter for is a ``TypeError``;
* the scheme picks the transport, case-insensitively.

What kombu's ``qpid://`` transport (``kombu/transport/qpid.py``, ``establish_connection``)
cannot use: a user without a password or a password without a user when no login method is set
("Username configured but no password"); any ``?ssl=`` (it indexes ``BROKER_USE_SSL`` as a
dict); an IPv6 address (python-qpid cannot parse it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

#: The keywords kombu's ``Connection._init_params`` takes: the query options a URL may carry.
KOMBU_OPTIONS = frozenset(
    {
        "hostname",
        "userid",
        "password",
        "virtual_host",
        "port",
        "insist",
        "ssl",
        "transport",
        "connect_timeout",
        "login_method",
        "heartbeat",
    }
)


@dataclass(frozen=True)
class KombuUrl:
    """A broker URL as kombu reads it (None: absent or empty)."""

    scheme: str  # lower case
    host: str | None
    port: int | None
    user: str | None
    password: str | None = field(repr=False)
    vhost: str | None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def ssl_option(self) -> bool:
        """``?ssl=`` given: kombu then connects with TLS and verifies nothing."""
        return "ssl" in self.options


def read(url: str) -> KombuUrl:
    """kombu's reading of ``url``; raises ValueError for what no parser can read."""
    scheme = urlsplit(url).scheme.lower()
    parts = urlsplit("http://" + url[len(scheme) + 3 :])
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return KombuUrl(
        scheme=scheme,
        host=unquote(parts.hostname or "") or None,
        port=parts.port,
        user=unquote(parts.username or "") or None,
        password=unquote(parts.password or "") or None,
        vhost=unquote(path) or None,
        options=dict(parse_qsl(parts.query)),
    )


def login_method(url: KombuUrl, configured: str) -> str | None:
    """The login method kombu ends up with: the URL's ``?login_method=``, else ``tasks.login_method``.

    Pulp sets ``BROKER_LOGIN_METHOD`` only when ``login_method`` is not empty
    (``celery_instance.py``, ``configure_login_method``).
    """
    return url.options.get("login_method") or configured or None


def refusal(url: str, configured_login_method: str = "") -> str | None:
    """Why Pulp's Celery cannot use ``url`` whatever the broker says, or None."""
    try:
        kombu = read(url)
    except ValueError as exc:
        return f"kombu cannot parse it ({exc})"
    unknown = sorted(set(kombu.options) - KOMBU_OPTIONS)
    if unknown:
        return (
            f"kombu passes the query option {unknown[0]!r} to its Connection, which has no such "
            f"parameter (TypeError); it knows: {', '.join(sorted(KOMBU_OPTIONS))}"
        )
    if kombu.scheme != "qpid":
        return None
    if kombu.host and ":" in kombu.host:
        return "python-qpid (Celery's qpid:// transport) cannot parse an IPv6 address: use a host name"
    if kombu.ssl_option:
        return (
            "kombu's qpid:// transport cannot take ?ssl= (it needs BROKER_USE_SSL as a dict): "
            "remove it and set tasks.celery_require_ssl: true"
        )
    if login_method(kombu, configured_login_method) is None:
        if kombu.user and not kombu.password:
            return (
                "kombu's qpid:// transport refuses a user without a password (\"Username configured but "
                'no password"): add the password, or drop the user to log in anonymously'
            )
        if kombu.password and not kombu.user:
            return "kombu's qpid:// transport refuses a password without a user: add the user"
    return None
