"""Adversarial values for the secret masking: what the test suite and ``benchmarks/bench_masking.py``
feed to :mod:`pulpinit.redact`.

Each shape is a value an operator can hand pulpinit (a ``_FILE`` holds up to 1 MiB) that made a
naive masker quadratic: many ``scheme://``, many ``:`` and ``@``, unreadable userinfo pieces, long
runs a scheme regular expression backtracks over, percent escapes, every printable byte.
:func:`masking_ms` is the masking work one such value costs: registering it as a secret, judging
and displaying it as a URL value, and redacting a log line that holds it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from pulpinit import redact

MIB = 1 << 20
#: The one secret that is already registered when a value is masked (``repeated secret`` repeats it).
KNOWN_SECRET = "s3cr3t!"


def fill(unit: str, size: int) -> str:
    """``unit`` repeated to exactly ``size`` characters."""
    return (unit * (size // len(unit) + 1))[:size]


def shapes(size: int = MIB) -> Mapping[str, str]:
    """The adversarial values of ``size`` characters, by name."""
    return {
        "many x://": fill("x://", size),
        "many : and @": fill(":@", size),
        "many u:p@": fill("u:p@", size),
        "one URL of : and @": "qpid://u:" + fill(":@", size - 12) + "@h/",
        "many x://a:b@": fill("x://a:b@", size),
        "pieces ab/c@": fill("ab/c@", size),
        "one letter run": fill("a", size),
        "many 1:// (no scheme)": fill("1://", size),
        "percent escapes": fill("%41", size),
        "every printable byte": fill("".join(chr(i) for i in range(32, 127)), size),
        "repeated secret": fill(KNOWN_SECRET, size),
    }


def masking_ms(value: str) -> float:
    """Milliseconds to mask ``value``: register it as a secret (a ``_FILE``'s contents, whole), judge
    and display it as a URL-valued key, and redact a JSON log line holding it."""
    line = json.dumps({"event": "settings.value", "value": value})
    redactor = redact.Redactor([KNOWN_SECRET])
    started = time.perf_counter()
    redactor.add_value(value, whole=True)
    redact.is_secret("x.broker_url", value)
    redact.display("x.broker_url", value)
    redactor(line)
    return (time.perf_counter() - started) * 1000
