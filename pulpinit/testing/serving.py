"""Run a fake service in the foreground until SIGTERM or SIGINT (the ``python -m`` entry points).

Prints one line, ``ready <port>``, once the service listens, so a parent process (the demo, a
test, a shell script) knows the port without polling.
"""

from __future__ import annotations

import signal
import threading
from typing import Protocol


class Service(Protocol):
    @property
    def port(self) -> int: ...

    def stop(self) -> None: ...


def serve_until_signal(service: Service) -> int:
    """Announce ``ready <port>``, wait for SIGTERM/SIGINT, stop the service; returns 0."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"ready {service.port}", flush=True)
    while not stop.wait(0.2):
        pass
    service.stop()
    return 0
