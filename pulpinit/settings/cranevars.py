"""crane's variables as every role sees them: the file's variable, the ``CRANE_CONF__`` prefix, the secrets.

Every role removes crane's secret variables from its child's environment
(:mod:`pulpinit.settings.childenv`) and registers them before the first log line, so this rule
is part of the settings stage that every command loads.  What crane does with the values —
its keys, their validation and crane.conf — is the ``crane`` role's own
(:mod:`pulpinit.crane`), which only that role loads.
"""

from __future__ import annotations

from collections.abc import Mapping

from pulpinit import parse, redact
from pulpinit.redact import REDACTOR, is_secret_key, may_hold_secret
from pulpinit.settings.confvars import generic_key

__all__ = ["CONFIG_VARIABLE", "DEFAULT_CONFIG", "GENERIC_PREFIX", "config_path", "register_secrets"]

#: crane's own variable naming its file; pulpinit writes the file it names.
CONFIG_VARIABLE = "CRANE_CONFIG_PATH"
DEFAULT_CONFIG = "/etc/crane.conf"
GENERIC_PREFIX = "CRANE_CONF__"


def config_path(environ: Mapping[str, str]) -> str:
    """The crane.conf crane will read: ``CRANE_CONFIG_PATH``, else ``/etc/crane.conf``."""
    return parse.absolute_path(environ.get(CONFIG_VARIABLE, DEFAULT_CONFIG), CONFIG_VARIABLE)


def register_secrets(environ: Mapping[str, str], conf: Mapping[str, str]) -> frozenset[str]:
    """Register the secrets of the crane variables and of crane.conf before anything parses them.

    Returns the secret variables consumed (they are in crane.conf now).
    """
    consumed: set[str] = set()
    for name, raw in environ.items():
        base = name.removesuffix("_FILE")
        key = generic_key(base, GENERIC_PREFIX)
        if key is None:
            continue
        if base != name:
            if may_hold_secret(key):
                consumed.add(name)  # secretfile registers the contents as it reads them
            continue
        REDACTOR.add_value(raw, whole=is_secret_key(key))
        if redact.is_secret(key, raw):
            consumed.add(name)
    for key, raw in conf.items():
        REDACTOR.add_value(raw, whole=is_secret_key(key))
    return frozenset(consumed)
