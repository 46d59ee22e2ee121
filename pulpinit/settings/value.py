"""One resolved server.conf value and the layer it came from; the secrets among values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

from pulpinit import redact
from pulpinit.redact import is_secret_key

#: The layer a value came from (the ``source`` string adds the variable or the Service after a colon).
SourceKind = Literal["env", "file", "k8s", "server.conf", "default"]


@dataclass(frozen=True)
class Value:
    """One effective server.conf value and where it came from."""

    value: str = field(repr=False)
    # "env:PULP_DB_SEEDS", "file:PULP_DB_PASSWORD_FILE", "k8s:db", "env:SERVICE_HOST", "server.conf", "default"
    source: str
    variable: str | None = None  # the environment variable (or server.conf key) to name in errors
    secret: bool = False  # a password, a URL with credentials, or a _FILE's contents
    display: str = ""  # the value as it may be printed (see redact.display)
    option: tuple[str, str] = ("", "")  # (section, key) in server.conf

    @property
    def kind(self) -> SourceKind:
        return cast(SourceKind, self.source.partition(":")[0])

    @property
    def from_environment(self) -> bool:
        """True when pulpinit must write it into server.conf (layers 1-3)."""
        return self.kind in ("env", "file", "k8s")


def secrets_of(values: Mapping[str, Value]) -> set[str]:
    """Every secret string among ``values`` (passwords whole, URLs by their passwords)."""
    found: set[str] = set()
    for key, value in values.items():
        if value.secret and value.value:
            found.update(redact.secrets_in(value.value, whole=is_secret_key(key) or "://" not in value.value))
    return found
