"""server.conf: read it, plan an edit, show it as a diff, write it atomically.

The edit goes through the project's Augeas lens (:mod:`pulpinit.config.lens`), so
every byte pulpinit does not mean to change stays as it was.  Where a value
lands, for each :class:`~pulpinit.config.edits.Assignment`:

1. a live ``key: value`` line (the last one, which is what Pulp reads) is
   updated in place, keeping its separator and spacing (``updated``);
2. else, a commented default (``# seeds: localhost:27017``) in the section's
   body gets the live line right after it (``inserted-after-comment``);
3. else, the line goes after the section's body (``appended``);
4. a missing section is created at the end of the file, after a blank line
   (``new-section``).

A section's *body* is the run of lines under its header up to the first blank
line, extended by every live key after it together with the comment lines
directly under that key (:mod:`pulpinit.config.sections`).  What follows the body (blank lines,
the prose that introduces the next section, commented-out sections) is never written into.

A line never lands between an entry and its continuation lines, and an
updated entry loses its continuation lines (they were part of the old value).
Sections mean what they mean to Python 2.7: ``[ database ]`` is a section
named `` database `` that Pulp ignores, so a key for ``database`` goes into a
proper ``[database]`` (created if need be) and a warning says so.  Lines added
end like the file's first line (CRLF files get CRLF).

Values are written so that Pulp (Python 2 ``SafeConfigParser``) and Python 3's
``configparser`` read back exactly what was asked: ``%`` is doubled, ``#`` and
``;`` stay literal (the lens has no inline comments).  Values either reader
would see differently are refused with :class:`~pulpinit.errors.EnvValueError`
naming the variable, never the value: see :func:`value_problem`.

:attr:`ConfigPlan.changes` says what changed, with :attr:`KeyChange.shown_old` /
:attr:`KeyChange.shown_new` already masked, and :meth:`ConfigPlan.log_changes`
emits one ``config.changed`` event per key; the only lines logged here are
warnings (``config.section_ignored``, ``config.in_place``).

server.conf is read only when it is a regular file of at most 1 MiB; written, it
is private when it holds a secret (see :mod:`pulpinit.config.atomicfile`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pulpinit import redact
from pulpinit.config.atomicfile import check_replace, check_unchanged_readable, remove_stale_temps, replace_file
from pulpinit.config.edits import Assignment, KeyChange, Placement
from pulpinit.config.inivalue import SAFE, Dialect, Uninterpolable
from pulpinit.config.lens import EMPTY, ORIGINAL, SPECIAL, LensTree, newline_of
from pulpinit.config.sections import Section, option_name
from pulpinit.errors import ConfigFileError, EnvValueError, UserError
from pulpinit.privileges import Identity, identity_for
from pulpinit.redact import MASK, REDACTOR
from pulpinit.regularfile import FileProblem, read_regular

if TYPE_CHECKING:
    from pulpinit.log import Logger

_TAG_BASE = 0xF0000  # Unicode private use plane 15: tags that tell masked values apart in a diff
_TAGS = re.compile(re.escape(MASK) + "[\U000f0000-\U000f0fff]")
_Conf = TypeVar("_Conf", bound="ServerConf")


class ServerConf:
    """One parsed server.conf (or the empty file it will become).

    ``dialect`` is how the program reads the file's values (Pulp: ``SafeConfigParser``); a
    subclass for another INI file read by Python 2.7 sets its own (crane.conf).
    """

    dialect: Dialect = SAFE

    def __init__(self, path: Path, data: bytes | None, tree: LensTree, text: str) -> None:
        self.path = path
        self._data = data  # None: the file does not exist yet
        self._tree = tree
        self._text = text  # what was parsed (a missing final newline added)
        self._read: list[Section] | None = None
        self._plans = 0

    def close(self) -> None:
        """Free the Augeas handle (plans made from this file can no longer render a diff)."""
        self._tree.close()

    @property
    def _sections(self) -> list[Section]:
        if self._read is None:
            self._read = self._read_sections(ORIGINAL)
        return self._read

    @property
    def exists(self) -> bool:
        """Whether the file existed when it was loaded (``create=True`` may load a missing one)."""
        return self._data is not None

    @property
    def data(self) -> bytes:
        """The bytes that were read (empty for a missing file)."""
        return self._data or b""

    @property
    def crlf(self) -> bool:
        """Whether the file's lines end in CRLF (judged by its first line)."""
        return self._tree.newline == "\r\n"

    @classmethod
    def load(cls: type[_Conf], path: str | os.PathLike[str], *, create: bool = False) -> _Conf:
        """Read and parse ``path``; with ``create``, a missing file reads as empty.

        Only a regular file (after symlinks) of at most 1 MiB is read: a FIFO, a device or a
        directory is a :class:`~pulpinit.errors.ConfigFileError`, never a hang.
        """
        file = Path(path)
        data: bytes | None
        try:
            data = read_regular(str(file))
        except FileProblem as exc:
            if not exc.missing:
                raise ConfigFileError(str(file), exc.problem) from None
            if not create:
                raise ConfigFileError(str(file), "no such file (server.conf must exist)") from None
            data = None
        text = _decode(str(file), data or b"")
        if text and not text.endswith("\n"):
            text += newline_of(text) if "\n" in text else "\n"
        return cls(file, data, LensTree(text, str(file)), text)

    def _read_sections(self, root: str, name: str | None = None) -> list[Section]:
        """The sections under ``root`` (only those called ``name`` if given), children read."""
        sections = []
        for node in self._tree.children(root):
            if node.label in SPECIAL or name not in (None, node.label):
                continue
            children = self._tree.children(node.path)
            sections.append(Section(node, children))
        return sections

    def get(self, section: str, key: str) -> str | None:
        """The value as Pulp reads it (``%%`` → ``%``), or ``None`` without a live line."""
        return self.items().get((section, option_name(key)))

    def _raw(self, root: str) -> dict[str, dict[str, str]]:
        """``{section: {key: raw value}}`` before interpolation (a later entry wins, as in Python 2.7)."""
        raw: dict[str, dict[str, str]] = {}
        for sec in self._sections if root == ORIGINAL else self._read_sections(root):
            options = raw.setdefault(sec.node.label, {})
            for _, node, continued in sec.entries():
                options[option_name(node.label)] = self.dialect.raw_value(node.value, continued)
        return raw

    def _interpolated(self, root: str) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
        """Every entry as the program's parser reads it, and why it cannot read some (``section.key``)."""
        raw = self._raw(root)
        defaults = raw.get("DEFAULT", {})
        result: dict[tuple[str, str], str] = {}
        problems: dict[str, str] = {}
        for section, options in raw.items():
            known = {**defaults, "__name__": section, **options}  # what get() interpolates from
            for key, value in options.items():
                try:
                    result[(section, key)] = self.dialect.interpolate(value, known)
                except Uninterpolable as exc:
                    result[(section, key)] = value
                    problems[f"{section}.{key}"] = str(exc)
        return result, problems

    def items(self, root: str = ORIGINAL) -> dict[tuple[str, str], str]:
        """``{(section, key): value}`` for every entry as Python 2.7 reads it (a later one wins), ``%``
        interpolated as the dialect does; a value it cannot interpolate stays raw (:meth:`unreadable`)."""
        return self._interpolated(root)[0]

    def unreadable(self) -> dict[str, str]:
        """``{"section.key": why}`` for every value the program's parser raises on when it reads it
        (a lone ``%`` in server.conf, a ``%(name)s`` of a name the section does not set)."""
        return self._interpolated(ORIGINAL)[1]

    def values(self) -> dict[str, str]:
        """``{"section.key": value}`` for every entry (a later duplicate wins, as in Pulp)."""
        return {f"{section}.{key}": value for (section, key), value in self.items().items()}

    def plan(self, assignments: Sequence[Assignment]) -> ConfigPlan:
        """Validate ``assignments`` and compute the new text; nothing is written."""
        seen: dict[tuple[str, str], str] = {}
        for item in assignments:
            problem = self.dialect.problem(item.value, crlf=self.crlf)
            if problem:
                raise EnvValueError(item.variable, problem)
            where = (item.section, item.key)
            if where in seen:
                raise ValueError(f"{seen[where]} and {item.variable} both set {item.section}.{item.key}")
            seen[where] = item.variable
        self._plans += 1
        work = f"/pulpinit/plan{self._plans}"  # each plan keeps its own tree for its diff
        self._tree.copy(ORIGINAL, work)
        changes = []
        created: set[str] = set()
        warnings: dict[str, str] = {}
        for item in assignments:
            change = self._apply(work, item, created, warnings)
            if change is not None:
                changes.append(change)
        new_text = self._tree.render(work) if changes else self._text
        return ConfigPlan(self, work, tuple(changes), new_text, tuple(assignments), warnings=tuple(warnings.values()))

    def _apply(self, work: str, item: Assignment, created: set[str], warnings: dict[str, str]) -> KeyChange | None:
        sections = self._read_sections(work, item.section)
        raw = self.dialect.escape(item.value) or None
        how: Placement
        old: str | None
        live = [(s, found) for s, found in ((s, s.live(item.key)) for s in sections) if found is not None]
        if live:
            section, (index, node, continued) = live[-1]
            if self.dialect.reads_exactly(node.value, item.value, continued):
                return None
            for extra in reversed(section.continuations(index)):
                self._tree.remove(extra.path)  # part of the old value
            self._tree.set(node.path, raw)
            how, old = "updated", self.dialect.reads(node.value, continued)
        elif sections:
            how, old = "appended", None
            found = next(((s, i) for s in sections if (i := s.commented_default(item.key)) is not None), None)
            if found is not None:
                section, index = found
                after = section.safe_after(index)
                how = "inserted-after-comment" if after == index else "appended"
                path = self._tree.insert(section.children[after].path, item.key, after=True)
            else:
                last = sections[-1]
                if last.body_end >= 0:
                    after = last.safe_after(last.body_end)
                    path = self._tree.insert(last.children[after].path, item.key, after=True)
                elif last.children:
                    path = self._tree.insert(last.children[0].path, item.key, after=False)
                else:
                    path = self._tree.append(last.node.path, item.key)
            if item.section in created:
                how = "new-section"
            self._tree.set(path, raw)
        else:
            self._warn_lookalikes(work, item.section, warnings)
            self._separate_new_section(work)
            section_path = self._tree.append(work, item.section)
            self._tree.set(self._tree.append(section_path, item.key), raw)
            created.add(item.section)
            how, old = "new-section", None
        return KeyChange(item.section, item.key, old, item.value, item.secret, how, item.variable)

    def _warn_lookalikes(self, work: str, section: str, warnings: dict[str, str]) -> None:
        """Warn about sections that look like ``section`` but are other sections for Pulp."""
        for node in self._tree.children(work):
            if node.label not in SPECIAL and node.label != section and node.label.strip().lower() == section:
                warnings[node.label] = (
                    f"[{node.label}] is the section {node.label!r} for Pulp (Python 2.7), not [{section}], "
                    f"and Pulp ignores it: added a [{section}] section for {section}'s keys"
                )

    def _separate_new_section(self, work: str) -> None:
        """Put a blank line between the file's last line and a section appended to it."""
        top = self._tree.children(work)
        if not top:
            return
        last = top[-1]
        if last.label == EMPTY:
            return
        if last.label in SPECIAL:
            self._tree.append(work, EMPTY)
            return
        kids = self._tree.children(last.path)
        if not kids or kids[-1].label != EMPTY:
            self._tree.append(last.path, EMPTY)

    def _masked_text(self, tree: str, secrets: set[tuple[str, str]], tags: dict[str, str]) -> str:
        """Render ``tree`` with secret values and URL passwords shown as ``***``.

        Each distinct secret gets its own invisible tag after the mask (shared through ``tags``
        between the old and the new text), so a changed secret still shows up in a diff.
        """
        masked = "/pulpinit/masked"
        self._tree.copy(tree, masked)
        for sec in self._read_sections(masked):
            for index, child, continued in sec.entries():
                key = f"{sec.node.label}.{option_name(child.label)}"
                whole = "\n".join([child.value or "", *continued])
                shown = redact.display(key, whole, secret=(sec.node.label, option_name(child.label)) in secrets)
                if shown == whole:
                    continue
                tag = tags.setdefault(whole, chr(_TAG_BASE + len(tags) % 4096))
                continuations = sec.continuations(index)
                lines = [MASK] * (1 + len(continuations)) if shown == MASK else shown.split("\n")
                self._tree.set(child.path, lines[0].replace(MASK, MASK + tag) or None)
                for extra, line in zip(continuations, lines[1:], strict=False):
                    self._tree.set(extra.path, line.replace(MASK, MASK + tag) or MASK + tag)
        return self._tree.render(masked)

    def holds_secret(self, tree: str, secrets: set[tuple[str, str]]) -> bool:
        """Whether the text of ``tree`` holds a password or a URL with one (it must then be private)."""
        return any(
            value and (where in secrets or redact.is_secret(".".join(where), value))
            for where, value in self.items(tree).items()
        )


def _decode(path: str, data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        raise ConfigFileError(
            path,
            "starts with a UTF-8 byte order mark, which Pulp (Python 2) reads as part "
            "of the first line and fails on; remove it",
        )
    if b"\0" in data:
        offset = data.index(b"\0")
        raise ConfigFileError(path, f"contains a NUL byte at offset {offset}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(path, f"is not UTF-8 text (byte offset {exc.start})") from None


class ConfigPlan:
    """The outcome of :meth:`ServerConf.plan`: the changes, the new text, and how to write it."""

    def __init__(
        self,
        conf: ServerConf,
        tree: str,
        changes: tuple[KeyChange, ...],
        new_text: str,
        items: tuple[Assignment, ...],
        *,
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.conf = conf
        self._tree = tree
        self.changes = changes
        self.new_text = new_text
        self._items = items
        self.warnings = warnings  # one line each: logged by log_changes
        self._written = False

    @property
    def changed(self) -> bool:
        """Whether :meth:`write` would write (a missing file counts as a change)."""
        return not self._written and (not self.conf.exists or bool(self.changes))

    @property
    def _secrets(self) -> set[tuple[str, str]]:
        return {(i.section, i.key) for i in self._items if i.secret}

    @property
    def private(self) -> bool:
        """Whether the planned text holds a password or a URL with one."""
        return self.conf.holds_secret(self._tree, self._secrets)

    def diff(self) -> str:
        """A unified diff from the file to the planned text, secrets shown as ``***``."""
        if not self.changes:
            return ""
        tags: dict[str, str] = {}
        old = self.conf._masked_text(ORIGINAL, self._secrets, tags) if self.conf.exists else ""
        new = self.conf._masked_text(self._tree, self._secrets, tags)
        import difflib

        name = str(self.conf.path)
        lines = difflib.unified_diff(old.splitlines(True), new.splitlines(True), name, name + " (planned)")
        return REDACTOR(_TAGS.sub(MASK, "".join(lines)))

    def write(self, user: str | None = None) -> bool:
        """Replace the file with the planned text; ``False``: nothing to do, nothing touched.

        ``user`` (``PULPINIT_USER``) is who runs Pulp: when pulpinit is root and the user exists,
        a file holding a secret gets that user's group, and a file that user cannot read is an
        error (exit 78).
        Atomic (a rename) where possible, else rewritten in place with a ``config.in_place``
        warning (see :mod:`pulpinit.config.atomicfile`).
        """
        remove_stale_temps(self.conf.path)
        reader = _reader(user)
        if not self.changed:
            if reader is not None:
                check_unchanged_readable(self.conf.path, reader)  # Pulp would crash on it all the same
            return False
        expected = self.conf.data if self.conf.exists else None
        private = self.private
        in_place = replace_file(self.conf.path, self.new_text.encode("utf-8"), expected, private=private, reader=reader)
        self._written = True
        if in_place:
            _logger().warning("config.in_place", path=str(self.conf.path), reason=in_place)
        return True

    def check(self, user: str | None = None) -> None:
        """The checks :meth:`write` makes, without writing (``--dry-run``): raises what a write would."""
        reader = _reader(user)
        if not self.changed:
            if reader is not None:
                check_unchanged_readable(self.conf.path, reader)
            return
        check_replace(self.conf.path, private=self.private, reader=reader)

    def log_changes(self) -> None:
        """Log the plan's warnings, then one ``config.changed`` event per changed key, secret values masked."""
        log = _logger()
        for warning in self.warnings:
            log.warning("config.section_ignored", path=str(self.conf.path), warning=warning)
        for change in self.changes:
            log.info(
                "config.changed",
                path=str(self.conf.path),
                key=f"{change.section}.{change.key}",
                old=change.shown_old,
                new=change.shown_new,
                how=change.how,
                variable=change.variable,
            )


def _logger() -> Logger:
    """The logger, imported when a line is logged: importing this module stays free of structlog (~30 ms)."""
    from pulpinit.log import get_logger

    return get_logger()


def _reader(user: str | None) -> Identity | None:
    """Who runs Pulp, when pulpinit is root and ``user`` resolves (an unknown user fails at the hand-off)."""
    if user is None:
        return None
    try:
        return identity_for(user)
    except UserError:
        return None
