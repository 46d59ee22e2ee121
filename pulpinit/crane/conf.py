"""crane.conf: the ``crane`` role's file, with server.conf's lens and atomic write.

crane.conf is an INI file that Python 2.7 reads, like server.conf, so the same Augeas lens
edits it in place and losslessly (:class:`~pulpinit.config.serverconf.ServerConf`: a commented
default gets its live line right below it, nothing else moves, the file is replaced
atomically, only when something changed, private when it holds a secret and then readable by
``PULPINIT_USER``'s group, which crane's WSGI processes run as).  One difference: crane reads it
with the plain ``ConfigParser`` (:data:`pulpinit.config.inivalue.BASIC`), so ``%`` is written as it is
and a value holding ``%(`` is refused.  A missing file is created (crane.conf is optional to
crane itself, but pulpinit's values must be somewhere).
"""

from __future__ import annotations

from pulpinit.config.edits import assignments
from pulpinit.config.inivalue import BASIC, Dialect
from pulpinit.config.serverconf import ConfigPlan, ServerConf
from pulpinit.crane.settings import CraneSettings

__all__ = ["CraneConf", "load", "plan"]


class CraneConf(ServerConf):
    """One parsed crane.conf (or the empty file it will become)."""

    dialect: Dialect = BASIC


def load(settings_path: str) -> CraneConf:
    """Read crane.conf (a missing one reads as empty and will be created)."""
    return CraneConf.load(settings_path, create=True)


def plan(settings: CraneSettings, conf: CraneConf) -> ConfigPlan:
    """The crane.conf edit the settings call for (validated; nothing written)."""
    return conf.plan(assignments(settings.to_write()))
