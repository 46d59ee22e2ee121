"""Command failures injected into the fake MongoDB: mongod's ``failCommand`` fail point.

The same command a test sends to a real ``mongod --setParameter enableTestCommands=1`` (or to
SecantusDB) arms it on the fake::

    client.admin.command("configureFailPoint", "failCommand", mode={"times": 1},
                         data={"failCommands": ["findAndModify"], "errorCode": 91})

or, in-process, ``fake.fail_command("findAndModify", error_code=91)``.  Supported: ``mode``
``"alwaysOn"``, ``"off"``, ``{"times": n}`` and ``{"skip": n}``; ``data`` with
``failCommands``, ``errorCode`` (the reply is ``{ok: 0, code, codeName, errmsg}``),
``closeConnection`` (the connection is closed without a reply), ``blockConnection`` with
``blockTimeMS`` (the reply comes that much later), and ``appName`` (only connections whose
client metadata carries that application name are hit).  ``configureFailPoint`` itself is
never failed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NAME = "failCommand"


class FailPointError(ValueError):
    """A ``configureFailPoint`` command the fake does not understand (answered as BadValue)."""


@dataclass(frozen=True)
class Failure:
    """What one hit of the fail point does to a command."""

    error_code: int | None = None  # reply with this error
    close_connection: bool = False  # close the connection instead of replying
    block_s: float = 0.0  # delay the reply (or the failure) this long


@dataclass
class _Armed:
    commands: frozenset[str]
    failure: Failure
    app_name: str | None
    times: int | None  # None: until turned off
    skip: int = 0


class FailPoints:
    """The ``failCommand`` fail point of one fake server (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: _Armed | None = None

    def arm(
        self,
        commands: Iterable[str],
        *,
        times: int | None = 1,
        skip: int = 0,
        error_code: int | None = None,
        close_connection: bool = False,
        block_s: float = 0.0,
        app_name: str | None = None,
    ) -> None:
        """Fail the next ``times`` (None: every) of ``commands``, after letting ``skip`` pass."""
        if error_code is None and not close_connection and not block_s:
            raise FailPointError("failCommand needs errorCode, closeConnection or blockConnection")
        if times is not None and times <= 0:
            self.off()
            return
        with self._lock:
            self._armed = _Armed(
                frozenset(commands), Failure(error_code, close_connection, block_s), app_name, times, skip
            )

    def off(self) -> None:
        with self._lock:
            self._armed = None

    @property
    def armed(self) -> bool:
        with self._lock:
            return self._armed is not None

    def configure(self, body: Mapping[str, Any]) -> None:
        """Apply a ``configureFailPoint`` command document (raises :class:`FailPointError`)."""
        if body.get("configureFailPoint") != NAME:
            raise FailPointError(f"unknown fail point {body.get('configureFailPoint')!r}: the fake has only {NAME}")
        mode, data = body.get("mode"), body.get("data") or {}
        if mode == "off":
            self.off()
            return
        times: int | None
        skip = 0
        if mode == "alwaysOn":
            times = None
        elif isinstance(mode, Mapping) and "times" in mode:
            times = int(mode["times"])
        elif isinstance(mode, Mapping) and "skip" in mode:
            times, skip = None, int(mode["skip"])
        else:
            raise FailPointError(f"unsupported mode {mode!r}: alwaysOn, off, {{times: n}} or {{skip: n}}")
        if not isinstance(data, Mapping) or not data.get("failCommands"):
            raise FailPointError("data.failCommands must name at least one command")
        self.arm(
            [str(name) for name in data["failCommands"]],
            times=times,
            skip=skip,
            error_code=int(data["errorCode"]) if "errorCode" in data else None,
            close_connection=bool(data.get("closeConnection", False)),
            block_s=int(data.get("blockTimeMS", 0)) / 1000 if data.get("blockConnection") else 0.0,
            app_name=str(data["appName"]) if "appName" in data else None,
        )

    def take(self, command: str, app_name: str | None) -> Failure | None:
        """The failure for this command of a connection with ``app_name``, counting the hit."""
        if command == "configureFailPoint":
            return None
        with self._lock:
            armed = self._armed
            if armed is None or command not in armed.commands:
                return None
            if armed.app_name is not None and armed.app_name != app_name:
                return None
            if armed.skip > 0:
                armed.skip -= 1
                return None
            if armed.times is not None:
                armed.times -= 1
                if armed.times <= 0:
                    self._armed = None
            return armed.failure
