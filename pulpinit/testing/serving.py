"""Run a fake service in the foreground until SIGTERM or SIGINT (the ``python -m`` entry points).

Prints one line, ``ready <port>``, once the service listens, so a parent process (the demo, a
test, a shell script) knows the port without polling.  :func:`free_port` is a loopback port
nobody listens on.
"""

from __future__ import annotations

import signal
import socket
import time
from typing import Protocol


def free_port() -> int:
    """A loopback port nobody listens on right now (bound to port 0, read back, released).

    A connection to it is refused; a server that must be told its port in advance (RabbitMQ)
    may still lose it to someone else before it binds: bind to port 0 wherever possible.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Service(Protocol):
    @property
    def port(self) -> int: ...

    def stop(self) -> None: ...


def stop_signal() -> list[int]:
    """A list that SIGTERM and SIGINT append to, from now on, in this process.

    A plain list, not a :class:`threading.Event`: the handler runs in the main thread between
    two bytecodes, and ``Event.set`` would take the lock that the main thread may be holding
    inside ``Event.wait`` right then — a deadlock that leaves the process running after SIGTERM.
    """
    received: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _: received.append(number))
    return received


def wait_for(received: list[int]) -> None:
    """Block until a stop signal was received (in slices, so the signal handlers run)."""
    while not received:
        time.sleep(0.1)


def serve_until_signal(service: Service) -> int:
    """Announce ``ready <port>``, wait for SIGTERM/SIGINT, stop the service; returns 0."""
    stop = stop_signal()
    print(f"ready {service.port}", flush=True)
    wait_for(stop)
    service.stop()
    return 0
