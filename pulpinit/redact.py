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
  :func:`split_bare` reads the same without a scheme (``pulp:PASSWORD@h:5672``).
* :func:`mask_url`, :func:`mask_text`, :func:`mask_argv` and :func:`display` turn values into
  what may be printed.
* :class:`Redactor` replaces every registered secret, in every form it can
  take in output (:func:`forms`: raw, URL-encoded, ``%%``-escaped as written
  to server.conf, JSON- and repr-escaped), wherever it appears.  Secrets are
  registered from their raw values *before* anything parses them (see
  :func:`secrets_in`), so not even a parse error can show one.  The log
  processor, the diff and the settings output use it as the last line of
  defence.

Every function here takes time linear in the length of what it reads, whatever that holds: a
value holding more than :data:`MAX_URLS` ``://`` is not read URL by URL but is masked whole
(masking too much is the safe side), so a 1 MiB value of ``x://`` costs what one URL costs.
The scans are C-level string methods and regular expressions that never backtrack more than
once over a character; :func:`forms` percent-encodes and -decodes without a loop per character.
"""

from __future__ import annotations

import codecs
import json
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MASK = "***"

#: Key names (the part after the section) that hold a secret whatever their value.
_SECRET_NAME = re.compile(r"password|passwd|passphrase|secret", re.IGNORECASE)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_SCHEME_CHARS = re.compile(r"[A-Za-z0-9+.-]*")
_LETTER = re.compile(r"[A-Za-z]")
_BLANK = re.compile(r"\s")
#: The scheme-less ``user:password@host`` form, one blank-free word at a time (a value: the whole of it).
#: The user ends at the first ``:``; the password runs to the word's last ``@``, as kombu reads it.
_BARE_WORD = re.compile(r"(?<!\S)([^\s/?#:]*):(\S*)@")
_BARE_VALUE = re.compile(r"\A([^/?#:]*):(.*)@", re.DOTALL)
#: Shortest string the redactor replaces: shorter ones would mask ordinary text (every renderer
#: masks secret values itself first, so a 1-2 character password is still never printed).
MIN_LENGTH = 3
#: A value with more ``://`` than this is masked whole instead of URL by URL (see the module doc).
MAX_URLS = 16
#: Longest secret whose percent-encoded forms are registered too (see :func:`forms`).
MAX_ENCODED = 4096
#: An unreadable (ambiguous) userinfo is registered piece by piece only up to this many pieces.
MAX_PIECES = 16


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

    scheme: str  # "" for the scheme-less user:password@host form
    userinfo: str | None  # None: no '@' in the netloc
    user: str | None
    password: str | None  # None: no ':' in the userinfo; still percent-encoded
    hostport: str
    rest: str  # from the first '/', '?' or '#' after the netloc
    ambiguous: bool  # an '@' after the netloc: '/', '?' or '#' in the user or password

    @property
    def masked(self) -> str:
        """The URL with its password (ambiguous: its whole userinfo) shown as ``***``."""
        head = f"{self.scheme}://" if self.scheme else ""
        if self.ambiguous:
            return f"{head}{MASK}@{self.hostport}{self.rest}"
        if self.userinfo is None:
            return f"{head}{self.hostport}{self.rest}"
        if self.password:
            return f"{head}{self.user}:{MASK}@{self.hostport}{self.rest}"
        return f"{head}{self.userinfo}@{self.hostport}{self.rest}"


def _netloc_end(text: str) -> int:
    """Where the netloc ends: at the first ``/``, ``?`` or ``#`` (the length when none): three ``find``s,
    each a C-level scan, faster than a character class over a long text."""
    found = [at for at in (text.find("/"), text.find("?"), text.find("#")) if at >= 0]
    return min(found) if found else len(text)


def _split_after(scheme: str, after: str) -> UrlParts:
    """Split what follows ``scheme://`` (or a whole scheme-less value) into the kombu parts."""
    end = _netloc_end(after)
    last_at = after.rfind("@")
    if last_at >= end:  # the '@' is beyond the netloc's end: no parser reads this as meant
        tail = after[last_at + 1 :]
        cut = _netloc_end(tail)
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


def split_url(url: str) -> UrlParts | None:
    """Split ``scheme://[userinfo@]hostport[rest]``; None when ``url`` does not start with a scheme."""
    match = _SCHEME.match(url)
    if not match:
        return None
    return _split_after(match.group()[:-3], url[match.end() :])


def split_bare(text: str) -> UrlParts | None:
    """``user:password@host[:port][rest]`` without a scheme, read like :func:`split_url`; None when
    ``text`` is not of that form (no ``@``, or no ``:`` before the first ``/``, ``?``, ``#``)."""
    if "@" not in text:
        return None
    colon = text.find(":")
    if colon < 0 or _netloc_end(text[:colon]) < colon:
        return None
    parts = _split_after("", text)
    return parts if parts.password is not None else None


def mask_url(url: str) -> str:
    """``qpid://u:secret@h:5672/`` → ``qpid://u:***@h:5672/``; a URL without a password is unchanged."""
    parts = split_url(url)
    return url if parts is None else parts.masked


def _run_start(text: str, end: int, reverse: list[str]) -> int:
    """Where the run of scheme characters (``[A-Za-z0-9+.-]``) that ends at ``end`` begins."""
    window = max(0, end - 64)  # a scheme is short: a longer run is measured on the reversed text
    length = len(_SCHEME_CHARS.match(text[window:end][::-1]).group())  # type: ignore[union-attr]
    if length < end - window or window == 0:
        return end - length
    if not reverse:
        reverse.append(text[::-1])
    return end - len(_SCHEME_CHARS.match(reverse[0], len(text) - end).group())  # type: ignore[union-attr]


def url_starts(text: str) -> list[int] | None:
    """Where each ``scheme://`` in ``text`` starts, in linear time (what ``_SCHEME.finditer`` finds);
    None when ``text`` holds more than :data:`MAX_URLS` ``://``: such a text is masked whole."""
    urls = text.count("://")
    if urls > MAX_URLS:
        return None
    starts: list[int] = []
    if not urls:
        return starts
    reverse: list[str] = []
    found = text.find("://")
    while found >= 0:
        letter = _LETTER.search(text, _run_start(text, found, reverse), found)
        if letter:
            starts.append(letter.start())
        found = text.find("://", found + 3)
    return starts


def _mask_bare(text: str, *, words: bool) -> str:
    """The scheme-less ``user:password@host`` form masked: in every word, or in the whole ``text``."""
    if "@" not in text:
        return text
    return (_BARE_WORD if words else _BARE_VALUE).sub(rf"\1:{MASK}@", text)


def mask_text(text: str, *, stop_at_space: bool = True) -> str:
    """Every URL inside ``text`` masked (``--broker=amqp://u:p@h//`` → ``--broker=amqp://u:***@h//``).

    Each URL is read as running to the end of the text (or blank-free word), the way a parser
    given that rest would read it; an ``@`` further on makes it ambiguous and masks everything
    up to it.  A word (a value: the whole text) without a scheme is read as ``user:password@host``.
    A text with more than :data:`MAX_URLS` URLs is masked whole.  Masking too much is the safe side.
    """
    starts = url_starts(text)
    if starts is None:
        return MASK
    out, done = [], 0
    for start in starts:
        if start < done:
            continue
        end = len(text)
        if stop_at_space:
            blank = _BLANK.search(text, start)
            end = blank.start() if blank else end
        out += [_mask_bare(text[done:start], words=stop_at_space), mask_url(text[start:end])]
        done = end
        if not stop_at_space:
            break
    return "".join(out) + _mask_bare(text[done:], words=stop_at_space)


def mask_argv(argv: Sequence[str]) -> list[str]:
    """A command line with the credentials of every URL in it masked (a URL may hold blanks)."""
    return [mask_text(arg, stop_at_space=False) for arg in argv]


def _urls(value: str) -> list[UrlParts] | None:
    """Every way the URLs in ``value`` may be read: the first to the end of the value (as a parser
    given the value reads it), each to the next one (several URLs in one command line), and the
    scheme-less form before the first; None for a value with more than :data:`MAX_URLS` URLs."""
    starts = url_starts(value)
    if starts is None:
        return None
    readings = [split_bare(value[: starts[0]] if starts else value)]
    for index, start in enumerate(starts):
        stops = {starts[index + 1] if index + 1 < len(starts) else len(value)}
        if index == 0:
            stops.add(len(value))
        readings += [split_url(value[start:stop]) for stop in stops]
    return [parts for parts in readings if parts is not None]


def is_secret(key: str, value: str) -> bool:
    """The one rule: a password by its key's name, or a value holding a URL with a password."""
    if is_secret_key(key):
        return True
    readings = _urls(value)
    return readings is None or any(p.ambiguous or bool(p.password) for p in readings)


def display(key: str, value: str, *, secret: bool = False) -> str:
    """``value`` as it may be printed: a password ``***``, URL passwords masked.

    ``secret`` marks a value that is secret by its origin (a ``_FILE``): shown as ``***`` unless
    it is a URL, which shows with its password masked.
    """
    if is_secret_key(key) or (secret and not url_starts(value) and split_bare(value) is None):
        return MASK if value else ""
    return mask_text(value, stop_at_space=False)


def _pieces(candidate: str) -> list[str]:
    """The pieces between the ``/``, ``?``, ``#`` and ``@`` of an unreadable userinfo (a parser may cut
    it anywhere); none when there would be more than :data:`MAX_PIECES` (the whole is registered)."""
    if sum(candidate.count(c) for c in "/?#@") >= MAX_PIECES:
        return []
    return [p for p in re.split(r"[/?#@]", candidate) if p]


def secrets_in(value: str, *, whole: bool) -> list[str]:
    """The strings to register for ``value``: all of it when ``whole``, and every URL password in it.

    A URL that no parser reads as meant (:attr:`UrlParts.ambiguous`) gives its candidate password
    and the pieces between its ``/``, ``?``, ``#`` and ``@`` too, since a parser may cut it anywhere.
    A value with more than :data:`MAX_URLS` URLs is registered whole.
    """
    readings = _urls(value)
    found = [value] if (whole or readings is None) and value else []
    for parts in readings or ():
        if not parts.userinfo:
            continue
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        if parts.ambiguous:
            candidate = parts.password if parts.password is not None else parts.userinfo
            found += [candidate, *_pieces(candidate)]
    return found


#: What RFC 3986 never percent-encodes (``urllib.parse.quote``'s ``_ALWAYS_SAFE``).
_ALWAYS_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_SAFE_BYTES = "".join(sorted(_ALWAYS_SAFE)).encode()


def quote(text: str) -> str:
    """``urllib.parse.quote(text, safe="")``, without a Python step per character.

    One ``str.replace`` per distinct byte to encode (``%`` first), over the UTF-8 bytes read as
    Latin-1: linear in the length, and fast however many bytes need encoding.
    """
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: urllib's own error handling decides
        return urllib.parse.quote(text, safe="", errors="surrogateescape")
    unsafe = set(data.translate(None, _SAFE_BYTES))
    out = data.decode("latin-1")
    for byte in sorted(unsafe, key=lambda b: b != 0x25):  # '%' first: the others add '%'
        out = out.replace(chr(byte), f"%{byte:02X}")
    return out


_LONE_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def unquote(text: str) -> str:
    """``urllib.parse.unquote(text)``, without a Python step per escape.

    Every ``%XX`` becomes a ``\\xXX`` escape decoded in C: linear, without a step per escape.
    """
    if "%" not in text:
        return text
    try:
        data = text.encode("utf-8").replace(b"\\", b"\\\\")
    except UnicodeEncodeError:  # a lone surrogate: urllib's own error handling decides
        return urllib.parse.unquote(text)
    data = _LONE_PERCENT.sub(rb"%25", data)  # a '%' without two hex digits stays a '%'
    return codecs.escape_decode(data.replace(b"%", b"\\x"))[0].decode("utf-8", "replace")


_PRINTABLE = bytes(range(0x20, 0x7F))


def _escaped(text: str) -> set[str]:
    """``text`` JSON-escaped (ASCII and not) and repr-escaped: itself when it is printable ASCII
    without quotes and backslashes (checked without a step per character)."""
    if text.isascii() and not any(c in text for c in "\"'\\") and not text.encode().translate(None, _PRINTABLE):
        return {text}
    return {text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1], repr(text)[1:-1]}


def forms(secret: str) -> set[str]:
    """Every form ``secret`` can take in pulpinit's output.

    Raw, percent-decoded and percent-encoded (as in a URL: ``/`` kept or not, blank as ``+``),
    ``%%``-escaped (as written to server.conf), and each of those JSON-escaped (ASCII and not) and
    repr-escaped (the percent-encoded forms are plain ASCII: escaping leaves them alone).  Linear
    in the secret's length.  A secret longer than :data:`MAX_ENCODED` has no percent-encoded forms:
    encoding costs a copy per byte to encode, and nothing pulpinit prints percent-encodes so long a
    value (the one URL it builds, the derived broker URL, is masked by its structure).
    """
    raw = {secret, unquote(secret)}
    encoded: set[str] = set()
    for text in raw if len(secret) <= MAX_ENCODED else ():
        whole = quote(text)
        encoded.add(whole)
        if "/" in text:
            encoded.add(whole.replace("%2F", "/"))
        if " " in text:
            encoded.add(whole.replace("%20", "+"))
    out: set[str] = set()
    for text in raw:
        out |= _escaped(text)
        if "%" in text:
            out |= _escaped(text.replace("%", "%%"))
    out |= encoded | {text.replace("%", "%%") for text in encoded if "%" in text}
    return {s for s in out if len(s) >= MIN_LENGTH}


class Redactor:
    """Replaces every registered secret, in all its :func:`forms`, with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._raw: set[str] = set()
        self._secrets: set[str] = set()
        self._ordered: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Register raw secrets (every form of each is masked from now on)."""
        new: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_LENGTH and secret not in self._raw:
                self._raw.add(secret)
                new |= forms(secret)
        if new - self._secrets:
            self._secrets |= new
            self._ordered = sorted(self._secrets, key=len, reverse=True)

    def add_value(self, value: str, *, whole: bool) -> None:
        """Register what :func:`secrets_in` finds in ``value``."""
        self.add(*secrets_in(value, whole=whole))

    @property
    def raw(self) -> frozenset[str]:
        """The secrets as registered (not their other forms)."""
        return frozenset(self._raw)

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def deep(self, value: object) -> object:
        """Redact strings inside lists, tuples and dicts too (log fields such as an argv); keys stay."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, (list, tuple)):
            return type(value)(self.deep(v) for v in value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        return value

    def reset(self) -> None:
        """Forget every secret (a new run in the same process: tests)."""
        self._raw.clear()
        self._secrets.clear()
        self._ordered = []

    def __bool__(self) -> bool:
        return bool(self._secrets)


#: The process-wide redactor: settings register every secret before they parse it.
REDACTOR = Redactor()
