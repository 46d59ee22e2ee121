"""The environment of every program pulpinit starts: one policy, read by everyone who execs.

pulpinit consumes its secrets — passwords, URLs with credentials, the ``_FILE`` variables
naming secret files, ``PULPINIT_CELERY_ARGS`` holding a URL with a password — and writes them
into server.conf (or crane.conf), which the programs read themselves.  So no program it starts
gets them, by :class:`Purpose`:

* :attr:`Purpose.ROLE` — the role's process: celery (beat, resource manager, workers), the
  httpd of ``api`` and of ``crane`` (root: it must not hold Pulp's database or broker
  passwords), and ``run``'s command.  Every secret variable of Pulp's settings *and* of
  crane's is removed, whatever the role reads, unless ``PULPINIT_KEEP_SECRET_ENV=1``;
* :attr:`Purpose.MANAGE_DB` — pulp-manage-db reads server.conf itself: every secret variable
  is removed (``PULPINIT_KEEP_SECRET_ENV`` is about the role's process only);
* :attr:`Purpose.PRE_MIGRATE` — the backup hook keeps the database credentials (the variables
  that set ``[database] username`` and ``password``, and their ``_FILE`` forms): a
  ``mongodump`` needs them; every other secret is removed.

Which variables are secret is the settings stage's one rule
(:func:`pulpinit.settings.resolve.register_secrets` and
:func:`pulpinit.settings.cranevars.register_secrets`); this module only chooses, by purpose,
which of them a program keeps.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from pulpinit.settings import cranevars, resolve
from pulpinit.settings.confvars import generic_key

__all__ = ["DATABASE_KEYS", "Purpose", "child_environ", "secret_variables"]

#: The server.conf keys whose variables the backup hook keeps.
DATABASE_KEYS = frozenset({"database.username", "database.password"})


class Purpose(enum.Enum):
    """What the program is, for the environment it gets."""

    ROLE = "role"
    MANAGE_DB = "manage-db"
    PRE_MIGRATE = "pre-migrate"


def secret_variables(environ: Mapping[str, str]) -> frozenset[str]:
    """Every variable of ``environ`` that holds a secret pulpinit consumes (Pulp's and crane's alike)."""
    return resolve.register_secrets(environ) | cranevars.register_secrets(environ, {})


def _sets_database_credentials(name: str) -> bool:
    base = name.removesuffix("_FILE")
    explicit = {var.name: var.key for var in resolve.EXPLICIT}
    key = explicit.get(base) or generic_key(base, resolve.GENERIC_PREFIX)
    return key in DATABASE_KEYS


def dropped(environ: Mapping[str, str], purpose: Purpose, *, keep_secret_env: bool = False) -> frozenset[str]:
    """The names :func:`child_environ` leaves out for ``purpose``."""
    if purpose is Purpose.ROLE and keep_secret_env:
        return frozenset()
    secrets = secret_variables(environ)
    if purpose is Purpose.PRE_MIGRATE:
        return frozenset(name for name in secrets if not _sets_database_credentials(name))
    return secrets


def child_environ(environ: Mapping[str, str], purpose: Purpose, *, keep_secret_env: bool = False) -> dict[str, str]:
    """A copy of ``environ`` for a program of ``purpose``, without the secrets it must not get (module docstring)."""
    leave_out = dropped(environ, purpose, keep_secret_env=keep_secret_env)
    return {name: value for name, value in environ.items() if name not in leave_out}
