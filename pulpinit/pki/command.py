"""``pulpinit pki init DIR``: make the deployment's keys, then say how to store them.

The CLI builds its parser with :func:`add_parser` on every start and calls :func:`run`; this module
imports nothing heavy: :mod:`pulpinit.pki.generate` (and :mod:`cryptography`) load only when
``pki init`` runs.

Exit codes: 0 when the files are there afterwards (made now or kept: like Pulp's scripts,
existing files are never overwritten and a complete set is "nothing generated"), 64 for a bad
``--server-name``/``--days``, 78 for a directory that holds something unusable, a bad
``PULP_SERVER_NAME``, an unknown ``--group`` or a file that cannot be written.
"""

from __future__ import annotations

import argparse
import grp
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pulpinit.errors import ConfigError, EnvValueError, UsageError
from pulpinit.pki import CA_DAYS, SERVER_DAYS

__all__ = ["add_parser", "run"]

SECRET_NAME = "pulp-keys"  # noqa: S105 (the Secret's name, not a secret)


def add_parser(commands: Any) -> None:
    """Add ``pki`` (with its action ``init``) to the CLI's subparsers ``commands``."""
    pki = commands.add_parser("pki", help="Pulp's keys: pki init DIR makes them once per deployment")
    actions = pki.add_subparsers(dest="pki_action", metavar="ACTION", parser_class=type(pki))
    actions.required = True
    init = actions.add_parser(
        "init", help="make Pulp's CA, message-signing pair and httpd's certificate in DIR (never overwrites)"
    )
    init.add_argument("directory", metavar="DIR", help="where to write the files (created when missing)")
    init.add_argument(
        "--server-name",
        action="append",
        dest="server_names",
        metavar="NAME",
        help="a DNS name or IP address for httpd's certificate (repeat for more; "
        "default: PULP_SERVER_NAME, else the host name)",
    )
    init.add_argument(
        "--days",
        type=int,
        default=SERVER_DAYS,
        help=f"validity of httpd's certificate in days (default {SERVER_DAYS}, at most {CA_DAYS}; "
        f"the CA gets {CA_DAYS}, as Pulp's script gives it)",
    )
    init.add_argument("--group", help="group (name or gid) that may read the private keys: they become 0640")


def _server_names(args: argparse.Namespace, environ: Mapping[str, str]) -> list[str]:
    from pulpinit.pki.generate import server_name_problem

    if args.server_names:
        for name in args.server_names:
            problem = server_name_problem(name)
            if problem:
                raise UsageError(f"pulpinit pki init: --server-name: {problem}")
        return list(dict.fromkeys(args.server_names))
    name = environ.get("PULP_SERVER_NAME")
    if name:
        problem = server_name_problem(name)
        if problem:
            raise EnvValueError("PULP_SERVER_NAME", problem)
        return [name]
    return [os.uname().nodename]  # gethostname(), without the socket module


def _group(spec: str | None) -> int | None:
    if spec is None:
        return None
    if spec.isdigit():
        return int(spec)
    try:
        return grp.getgrnam(spec).gr_gid
    except KeyError:
        raise ConfigError(f"pulpinit pki init: --group: no such group {spec!r} in the group database") from None


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run ``pulpinit pki ACTION``; returns the exit code (errors raise, the CLI maps them)."""
    if not 1 <= args.days <= CA_DAYS:
        raise UsageError(f"pulpinit pki init: --days must be between 1 and {CA_DAYS}")
    from pulpinit.pki.generate import generate

    names = _server_names(args, environ)
    directory = Path(args.directory).absolute()
    result = generate(directory, names, days=args.days, group=_group(args.group))
    out = sys.stdout
    if result.created:
        out.write(f"Created in {directory}: {' '.join(result.created)}\n")
    if result.kept:
        out.write(f"Already there, kept: {' '.join(result.kept)}\n")
    if not result.created:
        out.write("Nothing generated.\n")
    if result.server_not_after is not None:
        out.write(
            f"httpd's certificate is for {', '.join(result.server_names)}, "
            f"valid until {result.server_not_after:%Y-%m-%d} (signed by ca.crt)\n"
        )
    quoted = shlex.quote(str(directory))
    out.write(
        "\nStore them in Kubernetes (once per deployment; keep a copy of the directory somewhere safe):\n"
        f"  kubectl create secret generic {SECRET_NAME} --from-file={quoted}\n"
        "With Compose, mount the directory read-only where each role reads its keys "
        '(docs/operations.md, "Which role mounts which key").\n'
    )
    return 0
