"""A resolver for the probes' ``resolver=`` parameter: no query ever leaves the machine.

``resolver({"broker.test": "127.0.0.1"})`` knows those names and numeric addresses; every other
name fails the way an unknown name does (``EAI_NONAME``), without asking the system resolver.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any


def resolver(known: Mapping[str, str] | None = None) -> Callable[..., list[tuple[Any, ...]]]:
    names = dict(known or {})

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        address = names.get(host, host)
        kwargs["flags"] = kwargs.get("flags", 0) | socket.AI_NUMERICHOST  # never a DNS query
        try:
            return socket.getaddrinfo(address, port, *args, **kwargs)
        except socket.gaierror:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None

    return getaddrinfo
