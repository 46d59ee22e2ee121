"""Validators for the values pulpinit accepts from the environment and server.conf.

Each function takes the raw string and the *origin* to name in an error (an
environment variable such as ``PULP_DB_SEEDS``, or ``server.conf [database]
seeds``) and either returns the parsed value or raises
:class:`~pulpinit.errors.EnvValueError`.  Secret values are never quoted in an
error: pass ``secret=True`` and the message describes the problem only.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

from pulpinit.errors import EnvValueError
from pulpinit.knobs import plain_number
from pulpinit.redact import REDACTOR, UrlParts, display, mask_text, split_url

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_DB_NAME_FORBIDDEN = set('/\\. "$*<>:|?')
_BOOLEANS = {"1": True, "yes": True, "true": True, "on": True, "0": False, "no": False, "false": False, "off": False}

#: Schemes Celery (through kombu) accepts for Pulp's ``tasks.broker_url``.
BROKER_SCHEMES = ("qpid", "amqp", "amqps", "pyamqp")
#: Schemes gofer (Pulp's ``messaging.url``) accepts: :mod:`pulpinit.settings.goferurl`.
MESSAGING_SCHEMES = ("tcp", "ssl", "amqp", "amqps")


def quoted(value: str) -> str:
    """``value`` quoted for a message: URL credentials and registered secrets masked, then cut to 60."""
    shown = repr(REDACTOR(display("", value)))
    return shown if len(shown) <= 62 else shown[:58] + "..." + shown[-1]


def _show(value: str, secret: bool) -> str:
    return "" if secret else f" {quoted(value)}"


def text(value: str, origin: str, *, secret: bool = False, allow_empty: bool = True) -> str:
    """Any value: no control characters or newlines, no leading or trailing whitespace."""
    if not value and not allow_empty:
        raise EnvValueError(origin, "must not be empty")
    if _CONTROL.search(value):
        raise EnvValueError(origin, f"contains a control character or newline{_show(value, secret)}")
    if value != value.strip():
        raise EnvValueError(origin, f"has leading or trailing whitespace{_show(value, secret)}")
    return value


def host(value: str, origin: str) -> str:
    """A DNS name, an IPv4 address, or an IPv6 address (with or without brackets)."""
    text(value, origin, allow_empty=False)
    if any(c.isspace() for c in value):
        raise EnvValueError(origin, f"host {quoted(value)} contains whitespace")
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if ":" in bare:
        try:
            ipaddress.IPv6Address(bare)
        except ValueError:
            raise EnvValueError(origin, f"{quoted(value)} is not a valid host name or address") from None
        return bare
    if not _HOSTNAME.match(bare) or len(bare) > 253:
        raise EnvValueError(origin, f"{quoted(value)} is not a valid host name or address")
    return bare


_PORT = re.compile(r"([+-]?)([0-9]+)")


def port(value: str, origin: str) -> int:
    """A TCP port, 1-65535, written in decimal digits only (at most 5 of them)."""
    text(value, origin, allow_empty=False)
    match = _PORT.fullmatch(value)
    if not match or match.group(1) == "+":
        raise EnvValueError(origin, f"port{_show(value, False)} is not a number")
    sign, digits = match.groups()
    if sign or len(digits) > 5 or not 1 <= int(digits) <= 65535:
        raise EnvValueError(origin, f"port{_show(value, False)} is out of range 1-65535")
    return int(digits)


def hostport(value: str, origin: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    text(value, origin, allow_empty=False)
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise EnvValueError(origin, f"{quoted(value)}: unclosed '[' in an IPv6 address")
        rest = value[end + 1 :]
        if rest and not rest.startswith(":"):
            raise EnvValueError(origin, f"{quoted(value)} is not host:port")
        return host(value[: end + 1], origin), port(rest[1:], origin) if rest else default_port
    if value.count(":") > 1:
        raise EnvValueError(origin, f"{quoted(value)}: write IPv6 addresses in brackets, e.g. [::1]:27017")
    name, sep, number = value.partition(":")
    return host(name, origin), port(number, origin) if sep else default_port


def seeds(value: str, origin: str) -> tuple[tuple[str, int], ...]:
    """Pulp's ``database.seeds``: comma-separated ``host:port`` (port defaults to 27017)."""
    text(value, origin, allow_empty=False)
    if "://" in value:
        shown = mask_text(value, stop_at_space=False)
        raise EnvValueError(origin, f"{quoted(shown)}: seeds are host:port[,host:port...], not a URL")
    parts = value.split(",")
    if any(not p for p in parts):
        raise EnvValueError(origin, f"{quoted(value)} has an empty entry")
    return tuple(hostport(p, origin, 27017) for p in parts)


def format_hostport(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[::1]:27017``): how every address is written."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url(value: str, origin: str, schemes: tuple[str, ...]) -> str:
    """A URL with one of ``schemes``, a valid host and port, read alike by kombu and urllib.

    The userinfo is split as kombu splits it (:func:`pulpinit.redact.split_url`); a user or
    password holding an unescaped ``/``, ``?``, ``#``, ``[`` or ``]`` is refused, since no
    parser reads it as meant.  Errors show the URL with its password (or userinfo) masked and
    never quote a parser's own message (it may hold a piece of the password).
    """
    text(value, origin, secret=True, allow_empty=False)
    parts = split_url(value)
    expected = "expected one of " + ", ".join(f"{s}://" for s in schemes)
    if parts is None:
        shown = f" {quoted(value)}" if "@" not in value else ""
        raise EnvValueError(origin, f"unknown URL scheme (none) in{shown or ' the URL'}; {expected}")
    shown = parts.masked
    if parts.scheme.lower() not in schemes:
        raise EnvValueError(origin, f"unknown URL scheme {quoted(parts.scheme)} in {quoted(shown)}; {expected}")
    if parts.ambiguous or (parts.userinfo and set(parts.userinfo) & set("[]")):
        raise EnvValueError(
            origin,
            f"{quoted(shown)}: the user or password holds '/', '?', '#', '[' or ']', which no URL parser "
            "reads as meant; percent-encode them (%2F, %3F, %23, %5B, %5D)",
        )
    if not parts.hostport:
        raise EnvValueError(origin, f"URL {quoted(shown)} has no host")
    if parts.hostport.endswith(":"):
        raise EnvValueError(origin, f"URL {quoted(shown)} has an empty port")
    bare, number = hostport(parts.hostport, origin, 0)
    _agrees_with_urllib(value, parts, (bare.lower(), number or None), origin, shown)
    return value


def _agrees_with_urllib(value: str, parts: UrlParts, where: tuple[str, int | None], origin: str, shown: str) -> None:
    """Python's own parser (which kombu builds on) must read the same user, password, host and port."""
    ours = (parts.user if parts.userinfo is not None else None, parts.password, *where)
    try:
        theirs = urllib.parse.urlsplit("http://" + value[len(parts.scheme) + 3 :])
        read: tuple[object, ...] | None = (theirs.username, theirs.password, theirs.hostname, theirs.port)
    except ValueError:
        read = None
    if read != ours:
        raise EnvValueError(
            origin, f"{quoted(shown)} is not read alike by every URL parser; percent-encode the user and password"
        )


def boolean(value: str, origin: str) -> bool:
    """The spellings Python's ConfigParser.getboolean accepts (as Pulp reads them)."""
    try:
        return _BOOLEANS[value.strip().lower()]
    except KeyError:
        raise EnvValueError(origin, f"{quoted(value)} is not a boolean (true/false, yes/no, on/off, 1/0)") from None


def db_name(value: str, origin: str) -> str:
    """A MongoDB database name."""
    text(value, origin, allow_empty=False)
    bad = sorted(set(value) & _DB_NAME_FORBIDDEN)
    if bad or len(value) > 63:
        raise EnvValueError(origin, f"{quoted(value)} is not a valid MongoDB database name")
    return value


def seconds(value: str, origin: str, *, minimum: float = 0.0) -> float:
    """A non-negative number of seconds (``0.5``, ``300``) in ASCII digits (:func:`pulpinit.knobs.plain_number`)."""
    text(value, origin, allow_empty=False)
    if not plain_number(value):
        raise EnvValueError(origin, f"{quoted(value)} is not a number of seconds (digits 0-9 and one '.')")
    number = float(value)
    if not number >= minimum or number == float("inf"):
        raise EnvValueError(origin, f"{value} must be a finite number >= {minimum:g}")
    return number


def absolute_path(value: str, origin: str) -> str:
    """A non-empty absolute path (``/etc/crane.conf``)."""
    text(value, origin, allow_empty=False)
    if not value.startswith("/"):
        raise EnvValueError(origin, f"{quoted(value)} is not an absolute path")
    return value
