"""Keep secrets out of every line pulpinit prints.

Two tools: :func:`mask_url` hides the password inside a URL, and
:class:`Redactor` replaces every known secret string (passwords, ``_FILE``
contents) wherever it appears, which the log processor and the error path use
as a last line of defence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

# scheme://user:password@host  (the password may hold anything but '@' and '/')
_URL_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:)(?P<pw>[^@/]*)(?=@)")


def mask_url(url: str) -> str:
    """``qpid://u:secret@h:5672/`` → ``qpid://u:***@h:5672/``; URLs without a password unchanged."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, url, count=1)


class Redactor:
    """Replaces every registered secret in a string with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        # Very short strings would mask ordinary text; passwords of 1-2 chars are
        # still never printed because every renderer masks secret values first.
        self._secrets.update(s for s in secrets if s and len(s) >= 3)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._secrets)


#: The process-wide redactor: settings register every secret they resolve.
REDACTOR = Redactor()
