"""Keep secrets out of every line pulpinit prints: one rule, one path.

* :func:`is_secret_key` is *the* rule for which server.conf keys hold a
  secret by their name (passwords); :func:`is_secret` adds the values that
  are secret by their content (URLs with a password).  Settings, config diffs,
  logs and errors all ask these two.
* :func:`split_url` reads a URL's userinfo the way Celery's kombu does: the
  netloc ends at the first ``/``, ``?`` or ``#``, the userinfo is everything
  before its *last* ``@`` and the password everything after the userinfo's
  first ``:`` — ``qpid://u:p@ss@h/`` has the password ``p@ss``.  An ``@``
  after the end of the netloc means a ``/``, ``?`` or ``#`` in the user or
  password that no parser reads as meant (:attr:`UrlParts.ambiguous`).
* :func:`mask_url`, :func:`mask_argv` and :func:`display` turn values into
  what may be printed.
* :class:`Redactor` replaces every registered secret, in every form it can
  take in output (:func:`forms`: raw, URL-encoded, ``%%``-escaped as written
  to server.conf, JSON- and repr-escaped), wherever it appears.  Secrets are
  registered from their raw values *before* anything parses them (see
  :func:`secrets_in`), so not even a parse error can show one.  The log
  processor, the diff and the settings output use it as the last line of
  defence.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

MASK = "***"

#: Key names (the part after the section) that hold a secret whatever their value.
_SECRET_NAME = re.compile(r"password|passwd|passphrase|secret", re.IGNORECASE)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_NETLOC_END = re.compile(r"[/?#]")
#: Shortest string the redactor replaces: shorter ones would mask ordinary text (every renderer
#: masks secret values itself first, so a 1-2 character password is still never printed).
MIN_LENGTH = 3


def is_secret_key(key: str) -> bool:
    """Whether ``section.key`` holds a secret by its name (``database.password``, ``server.default_password``).

    Not every ``*_url``: ``server.key_url = /pulp/gpg`` is no secret; a URL is secret when it
    holds a password (:func:`is_secret`).
    """
    return bool(_SECRET_NAME.search(key.rpartition(".")[2]))


def may_hold_secret(key: str) -> bool:
    """Whether a key may be given as ``_FILE``: a secret by name, or a URL that may hold a password."""
    return is_secret_key(key) or key.lower().endswith("url")


@dataclass(frozen=True)
class UrlParts:
    """A URL split the way kombu splits it (see the module doc); every part as written."""

    scheme: str
    userinfo: str | None  # None: no '@' in the netloc
    user: str | None
    password: str | None  # None: no ':' in the userinfo; still percent-encoded
    hostport: str
    rest: str  # from the first '/', '?' or '#' after the netloc
    ambiguous: bool  # an '@' after the netloc: '/', '?' or '#' in the user or password

    @property
    def masked(self) -> str:
        """The URL with its password (ambiguous: its whole userinfo) shown as ``***``."""
        head = f"{self.scheme}://"
        if self.ambiguous:
            return f"{head}{MASK}@{self.hostport}{self.rest}"
        if self.userinfo is None:
            return f"{head}{self.hostport}{self.rest}"
        if self.password:
            return f"{head}{self.user}:{MASK}@{self.hostport}{self.rest}"
        return f"{head}{self.userinfo}@{self.hostport}{self.rest}"


def split_url(url: str) -> UrlParts | None:
    """Split ``scheme://[userinfo@]hostport[rest]``; None when ``url`` does not start with a scheme."""
    match = _SCHEME.match(url)
    if not match:
        return None
    scheme = match.group()[:-3]
    after = url[match.end() :]
    end_match = _NETLOC_END.search(after)
    end = end_match.start() if end_match else len(after)
    last_at = after.rfind("@")
    if last_at >= end:  # the '@' is beyond the netloc's end: no parser reads this as meant
        tail = after[last_at + 1 :]
        tail_end = _NETLOC_END.search(tail)
        cut = tail_end.start() if tail_end else len(tail)
        userinfo = after[:last_at]
        user, _, password = userinfo.partition(":")
        return UrlParts(
            scheme, userinfo, user, password if ":" in userinfo else None, tail[:cut], tail[cut:], ambiguous=True
        )
    netloc, rest = after[:end], after[end:]
    if "@" not in netloc:
        return UrlParts(scheme, None, None, None, netloc, rest, ambiguous=False)
    userinfo, _, hostport = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return UrlParts(scheme, userinfo, user, password if colon else None, hostport, rest, ambiguous=False)


def mask_url(url: str) -> str:
    """``qpid://u:secret@h:5672/`` → ``qpid://u:***@h:5672/``; a URL without a password is unchanged."""
    parts = split_url(url)
    return url if parts is None else parts.masked


def _url_starts(text: str, *, stop_at_space: bool) -> Iterator[tuple[int, int, int]]:
    """``(start, next_start, end)`` of every URL in ``text``.

    A URL may run to the end of the text (or of its blank-free word): a password may hold
    anything, even ``scheme://``.  ``next_start`` is where the next URL would begin if it
    does not.
    """
    starts = [m.start() for m in _SCHEME.finditer(text)]
    for index, start in enumerate(starts):
        end = len(text)
        if stop_at_space:
            blank = re.compile(r"\s").search(text, start)
            end = blank.start() if blank else end
        following = next((s for s in starts[index + 1 :] if s < end), end)
        yield start, following, end


def mask_text(text: str, *, stop_at_space: bool = True) -> str:
    """Every URL inside ``text`` masked (``--broker=amqp://u:p@h//`` → ``--broker=amqp://u:***@h//``).

    Each URL is read as running to the end of the text (or blank-free word), the way a parser
    given that rest would read it; an ``@`` further on makes it ambiguous and masks everything
    up to it.  Masking too much is the safe side.
    """
    out, done = [], 0
    for start, _, end in _url_starts(text, stop_at_space=stop_at_space):
        if start < done:
            continue
        out += [text[done:start], mask_url(text[start:end])]
        done = end
    return "".join(out) + text[done:]


def mask_argv(argv: Sequence[str]) -> list[str]:
    """A command line with the credentials of every URL in it masked (a URL may hold blanks)."""
    return [mask_text(arg, stop_at_space=False) for arg in argv]


def _urls(value: str) -> Iterator[UrlParts]:
    """Every way the URLs in ``value`` may be read: each to the end of the value, or to the next URL."""
    for start, following, end in _url_starts(value, stop_at_space=False):
        for stop in {following, end}:
            parts = split_url(value[start:stop])
            if parts is not None:
                yield parts


def is_secret(key: str, value: str) -> bool:
    """The one rule: a password by its key's name, or a value holding a URL with a password."""
    return is_secret_key(key) or any(p.ambiguous or bool(p.password) for p in _urls(value))


def display(key: str, value: str, *, secret: bool = False) -> str:
    """``value`` as it may be printed: a password ``***``, URL passwords masked.

    ``secret`` marks a value that is secret by its origin (a ``_FILE``): shown as ``***`` unless
    it is a URL, which shows with its password masked.
    """
    if is_secret_key(key) or (secret and not _SCHEME.search(value)):
        return MASK if value else ""
    return mask_text(value, stop_at_space=False)


def secrets_in(value: str, *, whole: bool) -> list[str]:
    """The strings to register for ``value``: all of it when ``whole``, and every URL password in it.

    A URL that no parser reads as meant (:attr:`UrlParts.ambiguous`) gives its candidate password
    and the pieces between its ``/``, ``?``, ``#`` and ``@`` too, since a parser may cut it anywhere.
    """
    found = [value] if whole and value else []
    for parts in _urls(value):
        if not parts.userinfo:
            continue
        if parts.password:
            found += [parts.password, urllib.parse.unquote(parts.password)]
        if parts.ambiguous:
            candidate = parts.password if parts.password is not None else parts.userinfo
            found.append(candidate)
            found.extend(p for p in re.split(r"[/?#@]", candidate) if p)
    return found


def forms(secret: str) -> set[str]:
    """Every form ``secret`` can take in pulpinit's output.

    Raw, percent-decoded and percent-encoded (as in a URL), ``%%``-escaped (as written to
    server.conf), and each of those JSON-escaped (ASCII and not) and repr-escaped.
    """
    base = {
        secret,
        urllib.parse.unquote(secret),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
        urllib.parse.quote_plus(secret),
    }
    base |= {b.replace("%", "%%") for b in base}
    out: set[str] = set()
    for b in base:
        out |= {b, json.dumps(b)[1:-1], json.dumps(b, ensure_ascii=False)[1:-1], repr(b)[1:-1]}
    return {s for s in out if len(s) >= MIN_LENGTH}


class Redactor:
    """Replaces every registered secret, in all its :func:`forms`, with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._ordered: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Register raw secrets (every form of each is masked from now on)."""
        new: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_LENGTH:
                new |= forms(secret)
        if new - self._secrets:
            self._secrets |= new
            self._ordered = sorted(self._secrets, key=len, reverse=True)

    def add_value(self, value: str, *, whole: bool) -> None:
        """Register what :func:`secrets_in` finds in ``value``."""
        self.add(*secrets_in(value, whole=whole))

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def deep(self, value: object) -> object:
        """Redact strings inside lists, tuples and dicts too (log fields such as an argv)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, (list, tuple)):
            return type(value)(self.deep(v) for v in value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        return value

    def reset(self) -> None:
        """Forget every secret (a new run in the same process: tests)."""
        self._secrets.clear()
        self._ordered = []

    def __bool__(self) -> bool:
        return bool(self._secrets)


#: The process-wide redactor: settings register every secret before they parse it.
REDACTOR = Redactor()
