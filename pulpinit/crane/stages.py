"""The ``crane`` role's steps, which the pipeline runs in its order: resolve crane.conf's settings, check data_dir.

crane reads no database and no broker: its pipeline (:func:`pulpinit.pipeline.run_crane`) is
the settings stage (these steps and the role's checks), the configure stage (crane.conf,
:mod:`pulpinit.crane.conf`) and the hand-off of httpd as root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pulpinit import roles
from pulpinit.crane.conf import CraneConf, load
from pulpinit.crane.settings import CraneSettings, data_dir_warning, from_environ
from pulpinit.log import Logger
from pulpinit.redact import REDACTOR
from pulpinit.settings.cranevars import config_path, register_secrets
from pulpinit.settings.preflight import WARNING, Check, Preflight
from pulpinit.settings.toolkit import Toolkit

__all__ = ["CraneContext", "data_dir_check", "resolve"]


@dataclass(frozen=True)
class CraneContext:
    """The crane role's stages share crane.conf's settings, the loaded file and the knobs."""

    environ: Mapping[str, str]
    toolkit: Toolkit
    settings: CraneSettings
    conf: CraneConf
    role: roles.Role
    preflight: Preflight


def resolve(environ: Mapping[str, str], logger: Logger) -> tuple[CraneSettings, CraneConf]:
    """Read crane.conf (``CRANE_CONFIG_PATH``) and resolve its settings; log their warnings."""
    path = config_path(environ)
    register_secrets(environ, {})  # before anything parses them: no error can show a secret
    conf = load(path)
    settings = from_environ(environ, conf.values(), path, conf.unreadable())
    REDACTOR.add(*settings.secrets())
    for warning in settings.warnings:
        logger.warning("settings.warning", warning=warning)
    return settings, conf


def data_dir_check(data_dir: str, toolkit: Toolkit, logger: Logger) -> Check:
    """Whether crane's WSGI processes (``PULPINIT_USER``) can list ``data_dir``: a warning, never a stop."""
    from pulpinit.pki.check import readers_for

    problem = data_dir_warning(data_dir, readers_for(toolkit.user)["pulp"])
    if problem is None:
        return Check("data_dir", "ok", data_dir)
    logger.warning("crane.data_dir", path=data_dir, problem=problem)
    return Check("data_dir", WARNING, f"{data_dir}: {problem}")
