"""Pulp's keys for tests and the demo: made once like ``pulpinit pki init`` makes them, and where the roles look.

:func:`make_keys` writes the six files of :data:`pulpinit.pki.check.KEY_FILES` into a directory
(private keys 0640 in ``group`` when given, so an unprivileged ``PULPINIT_USER`` of that group
passes the roles' key check); :func:`keys_env` points a role at them: the server.conf keys that
name Pulp's four files (``PULP_CONF__SECURITY__CACERT``, …) and ``PULPINIT_HTTPD_CERT`` /
``PULPINIT_HTTPD_KEY`` for httpd's pair.  In an image the same paths are links into
``/etc/pki/pulp-keys``; here they are plain files anywhere.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from pulpinit.pki.check import KEY_FILES

__all__ = ["keys_env", "make_keys", "reader_group"]


def reader_group(user: str = "nobody") -> int | None:
    """The primary group of ``user`` when this process is root (it then reads keys through it), else None."""
    return pwd.getpwnam(user).pw_gid if os.geteuid() == 0 else None


def make_keys(directory: Path, *, server_name: str = "pulp.test", group: int | None = None) -> Path:
    """The deployment's keys in ``directory`` (created), as ``pulpinit pki init`` makes them."""
    from pulpinit.pki.generate import generate

    generate(directory, [server_name], group=group)
    return directory


def keys_env(directory: Path) -> dict[str, str]:
    """The variables that make every role read its keys from ``directory``."""
    env = {}
    for name, spec in KEY_FILES.items():
        if spec.conf:
            section, key = spec.conf.split(".")
            env[f"PULP_CONF__{section.upper()}__{key.upper()}"] = str(directory / name)
    env["PULPINIT_HTTPD_CERT"] = str(directory / "server.crt")
    env["PULPINIT_HTTPD_KEY"] = str(directory / "server.key")
    return env
