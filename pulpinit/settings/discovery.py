"""Find a Service's host and port in the variables Kubernetes (or Docker links) inject.

For a Service named ``db`` Kubernetes sets ``DB_SERVICE_HOST`` and
``DB_SERVICE_PORT``, plus the Docker-link forms ``DB_PORT=tcp://ip:port`` and
``DB_PORT_27017_TCP_ADDR`` / ``DB_PORT_27017_TCP_PORT``.  The name is
upper-cased with ``-`` and ``.`` turned into ``_``.  Lookups try the forms in
that order and return the first that is present; a present but invalid value is
an error naming the variable, never silently skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pulpinit import parse
from pulpinit.errors import EnvValueError


@dataclass(frozen=True)
class Endpoint:
    """A host and port found for a Service, and the variable the host came from."""

    host: str
    port: int
    service: str  # the Service name as configured, e.g. "db"
    variable: str  # e.g. "DB_SERVICE_HOST"

    @property
    def source(self) -> str:
        return f"k8s:{self.service}"

    @property
    def hostport(self) -> str:
        return parse.format_hostport(self.host, self.port)


def env_prefix(service: str) -> str:
    """``pulp-db`` → ``PULP_DB`` (Kubernetes' rule for service variable names)."""
    return re.sub(r"[-.]", "_", service).upper()


def looked_for(service: str) -> tuple[str, ...]:
    """The variables :func:`find_service` reads for ``service``, for messages."""
    prefix = env_prefix(service)
    return (f"{prefix}_SERVICE_HOST", f"{prefix}_PORT", f"{prefix}_PORT_<port>_TCP_ADDR")


def find_service(environ: Mapping[str, str], service: str, default_port: int) -> Endpoint | None:
    """The first of the three variable forms present for ``service``, validated; None when absent."""
    prefix = env_prefix(service)
    host_var = f"{prefix}_SERVICE_HOST"
    if host_var in environ:
        host = parse.host(environ[host_var], host_var)
        port_var = f"{prefix}_SERVICE_PORT"
        port = parse.port(environ[port_var], port_var) if port_var in environ else default_port
        return Endpoint(host, port, service, host_var)

    link_var = f"{prefix}_PORT"
    if link_var in environ:
        return _from_link_url(environ[link_var], link_var, service)

    addr = re.compile(rf"^{re.escape(prefix)}_PORT_(\d+)_TCP_ADDR$")
    for name in sorted(environ):
        match = addr.match(name)
        if match:
            host = parse.host(environ[name], name)
            port_var = f"{prefix}_PORT_{match.group(1)}_TCP_PORT"
            port = parse.port(environ.get(port_var, match.group(1)), port_var)
            return Endpoint(host, port, service, name)
    return None


def _from_link_url(raw: str, variable: str, service: str) -> Endpoint:
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme not in ("tcp", "udp"):
        raise EnvValueError(variable, f"{parse.quoted(raw)} is not of the form tcp://host:port")
    if not rest or rest.endswith(":") or "/" in rest:
        raise EnvValueError(variable, f"{parse.quoted(raw)} is not of the form tcp://host:port")
    host, port = parse.hostport(rest, variable, default_port=0)
    if port == 0:
        raise EnvValueError(variable, f"{parse.quoted(raw)} has no port")
    return Endpoint(host, port, service, variable)
