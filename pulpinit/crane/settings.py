"""crane.conf's values from the environment: the settings of the ``crane`` role.

crane (github.com/pulp/crane, 3.x) is a Flask app under httpd/mod_wsgi that serves the Docker
registry API from the metadata files Pulp's docker plugin publishes.  It reads the INI file
named by ``CRANE_CONFIG_PATH`` (default ``/etc/crane.conf``; a path that is set but missing
stops it) with Python 2.7's plain ``ConfigParser`` over its built-in defaults, the ones in
:data:`CRANE_KEYS`.  It needs no database and no broker.

Precedence for every key, highest first:

1. explicit variables (:data:`EXPLICIT`: ``CRANE_DATA_DIR``, ``CRANE_ENDPOINT``,
   ``CRANE_DATA_DIR_POLLING_INTERVAL``) and ``CRANE_CONF__<SECTION>__<KEY>`` for any key
   (``_FILE`` form for a secret: ``CRANE_CONF__CDN__URL_AUTH_SECRET_FILE``); both for one key
   is ambiguous (78);
2. the value already in crane.conf;
3. for ``[general] data_dir`` only, Pulp's: :data:`PULP_DATA_DIR`, where the docker plugin
   publishes crane's metadata on the shared ``/var/lib/pulp``.  crane's own default
   (``/var/lib/crane/metadata/``) is where nothing is published in a Pulp deployment, so this
   one is written into crane.conf when the file has none;
4. crane's built-in default (not written).

Values from layers 1 and 3 are written.  Known keys are validated wherever they come from,
since crane fails on them only when a request loads the app (a ``debug: maybe`` is a
``ValueError`` inside httpd): booleans as ``getboolean`` reads them, integers, the hash
algorithm, a hex URL-signing secret, absolute directories.  A key crane does not read is
accepted with a ``settings.warning`` (a typo is otherwise silent).

:func:`data_dir_warning` says, without failing, when ``data_dir`` is missing or unreadable for
the user crane's WSGI processes run as: normal on a fresh installation, where the docker plugin
has published nothing yet.
"""

from __future__ import annotations

import binascii
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from pulpinit import parse, redact
from pulpinit.errors import EnvValueError
from pulpinit.privileges import READ, SEARCH, Identity, access_problem
from pulpinit.redact import REDACTOR, may_hold_secret
from pulpinit.settings.confvars import read_variables
from pulpinit.settings.cranevars import GENERIC_PREFIX, register_secrets
from pulpinit.settings.value import Value, secrets_of

__all__ = [
    "CRANE_KEYS",
    "EXPLICIT",
    "PULP_DATA_DIR",
    "CraneKey",
    "CraneSettings",
    "data_dir_warning",
    "from_environ",
]

#: Where Pulp's docker plugin publishes crane's metadata (Docker v2), on the shared /var/lib/pulp.
PULP_DATA_DIR = "/var/lib/pulp/published/docker/v2/app/"
#: The source of the data_dir default above.
PULP_DEFAULT = "default:pulp"

Parser = Callable[[str, str], object]


def _integer(minimum: int) -> Parser:
    def whole(value: str, origin: str) -> int:
        if not value.isascii() or not value.isdigit() or len(value) > 9:
            raise EnvValueError(origin, f"{parse.quoted(value)} is not a whole number (crane reads it with int())")
        if int(value) < minimum:
            raise EnvValueError(origin, f"{value} must be at least {minimum}")
        return int(value)

    return whole


def _endpoint(value: str, origin: str) -> str:
    """``host[:port]``: crane sends it as the ``X-Docker-Endpoints`` header, to which Docker adds the
    scheme itself; a URL there is refused as a URL (not as a malformed IPv6 address)."""
    url = redact.split_url(value)
    if url is not None:
        raise EnvValueError(
            origin,
            f"{parse.quoted(value)} is a URL; crane wants host[:port] (Docker adds the scheme), e.g. {url.hostport!r}",
        )
    if value:
        parse.hostport(value, origin, 443)
    return value


def _algorithm(value: str, origin: str) -> str:
    if value and value not in ("sha256", "sha1", "md5"):
        raise EnvValueError(origin, f"{parse.quoted(value)} is not one of crane's sha256, sha1, md5")
    return value


def _hex_secret(value: str, origin: str) -> str:
    try:
        binascii.a2b_hex(value)
    except (binascii.Error, ValueError):
        raise EnvValueError(origin, "is not a hex string (an even number of 0-9a-f), which crane ignores") from None
    return value


@dataclass(frozen=True)
class CraneKey:
    """A key crane reads: its built-in default and how pulpinit validates it."""

    key: str
    default: str
    parse: Parser | None
    meaning: str


#: The keys crane 3.x reads (crane/config.py) and their built-in defaults (crane/data/default_config.conf).
CRANE_KEYS: Mapping[str, CraneKey] = {
    k.key: k
    for k in (
        CraneKey("general.debug", "false", parse.boolean, "Flask debug mode"),
        CraneKey(
            "general.data_dir", "/var/lib/crane/metadata/", parse.absolute_path, "where crane reads the *.json metadata"
        ),
        CraneKey("general.data_dir_polling_interval", "60", _integer(1), "seconds between looks at data_dir"),
        CraneKey("general.endpoint", "", _endpoint, "host[:port] crane names in redirects (default: the request's)"),
        CraneKey("cdn.url_match", "", None, "rewrite content URLs: what to match"),
        CraneKey("cdn.url_replace", "", None, "rewrite content URLs: the replacement"),
        CraneKey("cdn.url_auth_secret", "", _hex_secret, "hex secret that signs CDN URLs"),
        CraneKey("cdn.url_auth_ttl", "300", _integer(0), "seconds a signed CDN URL stays valid"),
        CraneKey("cdn.url_auth_param", "_auth_", None, "query parameter of the signature"),
        CraneKey("cdn.url_auth_algo", "sha256", _algorithm, "sha256, sha1 or md5"),
        CraneKey("serve_content.enable", "false", parse.boolean, "serve the image files itself"),
        CraneKey(
            "serve_content.content_dir_v1", "/var/www/pub/docker/v1/web/", parse.absolute_path, "v1 files to serve"
        ),
        CraneKey(
            "serve_content.content_dir_v2", "/var/www/pub/docker/v2/web/", parse.absolute_path, "v2 files to serve"
        ),
        CraneKey("serve_content.use_x_sendfile", "true", parse.boolean, "let httpd send the files (mod_xsendfile)"),
        CraneKey("gsa.url", "", None, "Google Search Appliance for docker search"),
        CraneKey("solr.url", "", None, "Solr for docker search"),
    )
}


@dataclass(frozen=True)
class CraneVar:
    """An explicit variable and the crane.conf key it sets."""

    name: str
    key: str
    meaning: str

    @property
    def secret(self) -> bool:
        """Whether it may be given as ``_FILE`` (the one rule of :mod:`pulpinit.redact`)."""
        return may_hold_secret(self.key)


EXPLICIT: tuple[CraneVar, ...] = (
    CraneVar("CRANE_DATA_DIR", "general.data_dir", f"where crane reads image metadata; default `{PULP_DATA_DIR}`"),
    CraneVar("CRANE_ENDPOINT", "general.endpoint", "`host[:port]` crane names in its answers; default: the request's"),
    CraneVar(
        "CRANE_DATA_DIR_POLLING_INTERVAL",
        "general.data_dir_polling_interval",
        "seconds between crane's looks for new metadata (default 60)",
    ),
)


@dataclass(frozen=True)
class CraneSettings:
    """crane.conf's effective values by ``section.key`` (with their sources), and the file."""

    path: str
    values: Mapping[str, Value]
    warnings: tuple[str, ...] = ()

    def get(self, key: str) -> str:
        if key in self.values:
            return self.values[key].value
        known = CRANE_KEYS.get(key)
        return known.default if known else ""

    @property
    def data_dir(self) -> str:
        return self.get("general.data_dir")

    def to_write(self) -> tuple[tuple[str, Value], ...]:
        """The values crane.conf must hold: from the environment, and Pulp's data_dir when the file has none."""
        return tuple((k, v) for k, v in sorted(self.values.items()) if v.from_environment or v.source == PULP_DEFAULT)

    def secrets(self) -> set[str]:
        """Every secret string (the URL-signing secret, URL passwords) to register with the redactor."""
        return secrets_of(self.values)

    def rows(self) -> list[tuple[str, str, str]]:
        """``(key, display, source)`` of every value, for the dry-run plan."""
        return [(key, REDACTOR(value.display), value.source) for key, value in sorted(self.values.items())]


def _value(key: str, raw: str, source: str, variable: str, *, from_file: bool = False) -> Value:
    section, _, option = key.partition(".")
    secret = from_file or redact.is_secret(key, raw)
    return Value(raw, source, variable, secret, redact.display(key, raw, secret=from_file), (section, option))


def from_environ(
    environ: Mapping[str, str], conf: Mapping[str, str], path: str, unreadable: Mapping[str, str] | None = None
) -> CraneSettings:
    """Resolve crane.conf's values (module docstring); ``conf`` is the file's ``{section.key: value}``,
    ``unreadable`` the file's values crane's ``ConfigParser`` raises on (an error unless replaced)."""
    register_secrets(environ, conf)
    resolved: dict[str, Value] = {
        key: _value(key, raw, "crane.conf", f"{path} [{key.replace('.', '] ', 1)}") for key, raw in conf.items()
    }
    explicit = ((v.name, v.key, v.secret) for v in EXPLICIT)
    for key, found in read_variables(environ, explicit, GENERIC_PREFIX, "CRANE_CONF__CDN__URL_AUTH_TTL").items():
        source = f"file:{found.origin}" if found.from_file else f"env:{found.name}"
        resolved[key] = _value(key, found.raw, source, found.origin, from_file=found.from_file)
    resolved.setdefault("general.data_dir", _value("general.data_dir", PULP_DATA_DIR, PULP_DEFAULT, "general.data_dir"))
    warnings = []
    for key, value in sorted(resolved.items()):
        origin = value.variable or key
        if value.source == "crane.conf" and key in (unreadable or {}):
            raise EnvValueError(origin, (unreadable or {})[key])
        parse.text(value.value, origin, secret=value.secret)
        known = CRANE_KEYS.get(key)
        if known is None:
            if value.source != "crane.conf":
                warnings.append(f"{origin}: crane does not read [{value.option[0]}] {value.option[1]} (a typo?)")
            continue
        if known.parse is not None and (value.value or known.parse in (parse.absolute_path, parse.boolean)):
            known.parse(value.value, origin)
    return CraneSettings(path, MappingProxyType(resolved), tuple(warnings))


def data_dir_warning(data_dir: str, reader: Identity) -> str | None:
    """Why crane's WSGI processes (``reader``) cannot list ``data_dir`` yet, or None when they can.

    Missing or unreadable is worth a warning, never a failure: the docker plugin creates the
    tree on its first publish.  Permission bits along the whole path, as the kernel checks them
    for that user (:func:`pulpinit.privileges.access_problem`).
    """
    try:
        info = os.stat(data_dir)
    except FileNotFoundError:
        return "does not exist yet: crane serves no image until Pulp's docker plugin first publishes"
    except OSError as exc:
        return f"cannot stat it: {exc.strerror}"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    problem = access_problem(Path(os.path.realpath(data_dir)), reader, READ | SEARCH)
    return f"{problem}: crane sees no image there" if problem else None
