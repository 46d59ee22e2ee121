"""The armed wait: while nothing listens, knock on the port instead of waiting out the backoff.

A dependency whose last probe ended in ``connection_refused`` (what a Kubernetes Service
without ready endpoints answers) costs nothing to ask again: the kernel answers a TCP
connect with a reset, no server process runs.  So while the failure class is "refused",
the wait's backoff pause is spent *knocking*: a bare TCP connect to the addresses that
refused (the probe resolved them and hands them over in
:attr:`~pulpinit.targets.ProbeResult.refused`) every 0.05 s (the wait's pace,
:data:`pulpinit.wait.waiter.PACING`).  The moment a knock is accepted the pause ends and the full protocol probe runs
at once; the knock's connection is closed at once with a FIN (``shutdown`` then
``close``: no byte sent, nothing left half-open on the server).

What it leaves alone:

* the full probe still runs on the normal backoff schedule, and that is when the name is
  resolved again (addresses change when pods restart; every lookup is work for the
  cluster's DNS server): a knock never resolves anything, and a name that does not
  resolve yet (``dns_failure``) is never armed;
* failures that involve the server (timeouts after the connect, authentication, TLS,
  protocol, version, replica set, resets) are never armed: they keep the backoff and its
  cap, so a server that is up but failing is probed exactly as often as without knocking;
* a knock that neither connects nor is refused (a time-out, an unreachable network) ends
  the knocking for the rest of that pause: the next probe classifies it;
* a port that accepted a knock but refused the probe right after (a flapping listener)
  gets one plain pause before it is armed again: knocks add at most one probe per backoff
  interval, and only one that the port refused.

Knocks are not probes: they are counted apart (``knocks`` in ``dep.up``), and the
``attempts`` of the log lines stay the protocol probes.  The pause takes the wait's clock,
sleep and stop event, so tests run it on an injected clock and a stop signal ends it at once.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from pulpinit.targets import Address


class Knock(enum.Enum):
    """What one round of knocks on a dependency's addresses found."""

    ACCEPTED = "accepted"  # something listens now: probe at once
    REFUSED = "refused"  # still nothing listening on any address
    OTHER = "other"  # neither (time-out, unreachable): stop knocking, let the probe classify


#: ``knocker(addresses, timeout)``: one round of knocks (injectable: tests knock on a fake clock).
Knocker = Callable[[tuple[Address, ...], float], Knock]


def knock(addresses: tuple[Address, ...], timeout: float) -> Knock:
    """A TCP connect to each address in turn, without sending a byte.

    :attr:`Knock.ACCEPTED` at the first that accepts (that connection is closed at once with a
    FIN), :attr:`Knock.REFUSED` when every one refused, else :attr:`Knock.OTHER`.
    """
    verdict = Knock.REFUSED
    for family, sockaddr in addresses:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            verdict = Knock.OTHER
            continue
        with sock:
            sock.settimeout(timeout)
            try:
                code = sock.connect_ex(sockaddr)
            except OSError:  # a time-out (as an exception on some Pythons), a bad address
                code = -1
            if code == 0:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)  # FIN now; the close below releases the socket
                return Knock.ACCEPTED
        if code != errno.ECONNREFUSED:
            verdict = Knock.OTHER
    return verdict


@dataclass
class ArmedPause:
    """A backoff pause that knocks every ``interval`` seconds; counts the knocks of one waiter."""

    interval: float
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    stop: threading.Event
    knocker: Knocker = knock
    knocks: int = 0

    def __call__(self, seconds: float, addresses: tuple[Address, ...], knock_timeout: float) -> bool:
        """Pause ``seconds`` (or until stopped), knocking on ``addresses``; True when one accepted.

        No knock right before the scheduled probe, which connects itself.
        """
        end = self.clock() + seconds
        while not self.stop.is_set():
            left = end - self.clock()
            if left <= self.interval:
                if left > 0:
                    self.sleep(left)
                return False
            self.sleep(self.interval)
            if self.stop.is_set():
                return False
            self.knocks += 1
            verdict = self.knocker(addresses, max(0.001, min(knock_timeout, end - self.clock())))
            if verdict is Knock.ACCEPTED:
                return True
            if verdict is Knock.OTHER:
                rest = end - self.clock()
                if rest > 0:
                    self.sleep(rest)
                return False
        return False
