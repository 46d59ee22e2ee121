"""Secrets from files: ``X_FILE=/run/secrets/x`` instead of ``X=value``.

The convention of the official postgres, mongo and rabbitmq images: setting
both ``X`` and ``X_FILE`` is an error, the file's contents are the value (one
trailing newline removed, as ``echo`` and ``kubectl create secret`` leave
one), and an unreadable file is an error naming the variable and the path —
never the contents.  Only a regular file of at most 1 MiB is read (a FIFO or
``/dev/zero`` is an error, not a hang), and a UTF-8 byte order mark at its start
(Windows editors write one) is not part of the secret.  The contents are
registered with the process-wide redactor as soon as they are read.
"""

from __future__ import annotations

from collections.abc import Mapping

from pulpinit.errors import EnvValueError
from pulpinit.redact import REDACTOR
from pulpinit.regularfile import FileProblem, read_regular


def lookup(environ: Mapping[str, str], name: str, *, allow_file: bool) -> str | None:
    """The value of ``name`` from the environment or from ``name_FILE``; None when neither is set."""
    file_var = f"{name}_FILE"
    if file_var not in environ:
        return environ.get(name)
    if not allow_file:
        raise EnvValueError(file_var, f"only secrets can be read from files; set {name} instead")
    if name in environ:
        raise EnvValueError(file_var, f"both {name} and {file_var} are set; set only one")
    return read(environ[file_var], file_var)


def origin(environ: Mapping[str, str], name: str) -> str:
    """The variable a value was taken from: ``name_FILE`` when that is set, else ``name``."""
    return f"{name}_FILE" if f"{name}_FILE" in environ else name


def read(path: str, variable: str) -> str:
    """Read a secret file; errors name the variable and the path, not the contents."""
    if not path:
        raise EnvValueError(variable, "is empty; expected the path of a file holding the secret")
    try:
        data = read_regular(path)
    except FileProblem as exc:
        raise EnvValueError(variable, f"{path!r} {exc.problem}") from None
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvValueError(variable, f"{path!r} is not UTF-8 text") from None
    value = value.removeprefix("\ufeff")
    REDACTOR.add(value, value.rstrip("\r\n"))
    if value.endswith("\r\n"):
        return value[:-2]
    return value.removesuffix("\n")
