"""server.conf: read it, plan an edit, show it as a diff, write it atomically.

The edit goes through the project's Augeas lens (:mod:`pulpinit.lens`), so
every byte pulpinit does not mean to change stays as it was.  Where a value
lands, for each :class:`Assignment`:

1. a live ``key: value`` line (the last one, which is what Pulp reads) is
   updated in place, keeping its separator and spacing (``updated``);
2. else, a commented default (``# seeds: localhost:27017``) in the section's
   body gets the live line right after it (``inserted-after-comment``);
3. else, the line goes after the section's body (``appended``);
4. a missing section is created at the end of the file, after a blank line
   (``new-section``).

A section's *body* is the run of lines under its header up to the first blank
line, extended by every live key after it together with the comment lines
directly under that key.  What follows the body (blank lines, the prose that
introduces the next section, commented-out sections) is never written into.

Values are written so that Pulp (Python 2 ``SafeConfigParser``) and Python 3's
``configparser`` read back exactly what was asked: ``%`` is doubled, ``#`` and
``;`` stay literal (the lens has no inline comments).  Values either reader
would see differently are refused with :class:`~pulpinit.errors.EnvValueError`
naming the variable, never the value: see :func:`value_problem`.

Nothing is logged here: :attr:`ConfigPlan.changes` says what changed, with
:attr:`KeyChange.shown_old` / :attr:`KeyChange.shown_new` already masked,
and :meth:`ConfigPlan.log_changes` emits one ``config.changed`` event per key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pulpinit.atomicfile import replace_file
from pulpinit.errors import ConfigFileError, EnvValueError
from pulpinit.inivalue import escape, pulp_reads, reads_exactly, value_problem
from pulpinit.lens import ORIGINAL, LensTree, Node
from pulpinit.redact import MASK, mask_url

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_KEY_NAME = re.compile(r"[a-z0-9_][a-z0-9_.-]*\Z")
#: Keys whose values are masked in diffs even when no assignment marks them secret.
_SECRET_KEY = re.compile(r"password|secret", re.IGNORECASE)
_COMMENTED_KEY = re.compile(r"([A-Za-z0-9_.-]+)[ \t]*[:=]")
_TAG_BASE = 0xF0000  # Unicode private use plane 15: tags that tell masked values apart in a diff
_TAGS = re.compile(re.escape(MASK) + "[\U000f0000-\U000f0fff]")


@dataclass(frozen=True)
class Assignment:
    """One value to write: ``[section] key = value``, taken from environment ``variable``."""

    section: str
    key: str
    value: str
    variable: str
    secret: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.section):
            raise ValueError(f"{self.variable}: bad section name {self.section!r}")
        if not _KEY_NAME.match(self.key):
            raise ValueError(f"{self.variable}: bad key name {self.key!r}")

    def __repr__(self) -> str:
        shown = MASK if self.secret else self.value
        return f"Assignment({self.section}.{self.key}={shown!r} from {self.variable})"


@dataclass(frozen=True)
class KeyChange:
    """A key whose value the plan changes; ``how`` is where its line went (see the module doc)."""

    section: str
    key: str
    old: str | None = field(repr=False)  # as Pulp read it; None: no live line
    new: str = field(repr=False)
    secret: bool
    how: str  # "updated" | "inserted-after-comment" | "appended" | "new-section"
    variable: str = ""

    @property
    def shown_old(self) -> str | None:
        return None if self.old is None else _shown(self.old, self.secret)

    @property
    def shown_new(self) -> str:
        return _shown(self.new, self.secret)


def _shown(value: str, secret: bool) -> str:
    return MASK if secret and value else mask_url(value)


class _Section:
    """A section node, its children, and where its body ends (see the module doc)."""

    __slots__ = ("body_end", "children", "node")

    def __init__(self, node: Node, children: list[Node]) -> None:
        self.node = node
        self.children = children
        self.body_end = _body_end(children)  # the body's last child; -1: the header alone

    def live(self, key: str) -> Node | None:
        found = [c for c in self.children if c.label.lower() == key and not c.label.startswith("#")]
        return found[-1] if found else None

    def commented_default(self, key: str) -> Node | None:
        for child in self.children[: self.body_end + 1]:
            if child.label == "#comment" and child.value:
                match = _COMMENTED_KEY.match(child.value)
                if match and match.group(1).lower() == key:
                    return child
        return None


class ServerConf:
    """One parsed server.conf (or the empty file it will become)."""

    def __init__(self, path: Path, data: bytes | None, tree: LensTree, text: str) -> None:
        self.path = path
        self._data = data  # None: the file does not exist yet
        self._tree = tree
        self._text = text  # what was parsed (a missing final newline added)
        self._read: list[_Section] | None = None
        self._plans = 0

    def close(self) -> None:
        """Free the Augeas handle (plans made from this file can no longer render a diff)."""
        self._tree.close()

    @property
    def _sections(self) -> list[_Section]:
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

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, create: bool = False) -> ServerConf:
        """Read and parse ``path``; with ``create``, a missing file reads as empty."""
        file = Path(path)
        data: bytes | None
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            if not create:
                raise ConfigFileError(str(file), "no such file (server.conf must exist)") from None
            data = None
        except IsADirectoryError:
            raise ConfigFileError(str(file), "is a directory, not server.conf") from None
        except OSError as exc:
            raise ConfigFileError(str(file), f"cannot read it: {exc.strerror}") from None
        text = _decode(str(file), data or b"")
        if text and not text.endswith("\n"):
            text += "\n"
        return cls(file, data, LensTree(text, str(file)), text)

    def _read_sections(self, root: str, name: str | None = None) -> list[_Section]:
        """The sections under ``root`` (only those called ``name`` if given), children read."""
        sections = []
        for node in self._tree.children(root):
            if node.label.startswith("#") or name not in (None, node.label):
                continue
            children = self._tree.children(node.path)
            sections.append(_Section(node, children))
        return sections

    def get(self, section: str, key: str) -> str | None:
        """The live value as Pulp reads it (``%%`` → ``%``), or ``None`` without a live line."""
        found = None
        for sec in self._sections:
            if sec.node.label == section:
                node = sec.live(key.lower())
                found = node if node is not None else found
        return None if found is None else pulp_reads(found.value)

    def values(self) -> dict[str, str]:
        """``{"section.key": value}`` for every live key (a later duplicate wins, as in Pulp)."""
        result: dict[str, str] = {}
        for sec in self._sections:
            for child in sec.children:
                if not child.label.startswith("#"):
                    result[f"{sec.node.label}.{child.label.lower()}"] = pulp_reads(child.value)
        return result

    def plan(self, assignments: Sequence[Assignment]) -> ConfigPlan:
        """Validate ``assignments`` and compute the new text; nothing is written."""
        seen: dict[tuple[str, str], str] = {}
        for item in assignments:
            problem = value_problem(item.value)
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
        for item in assignments:
            change = self._apply(work, item, created)
            if change is not None:
                changes.append(change)
        new_text = self._tree.render(work) if changes else self._text
        return ConfigPlan(self, work, tuple(changes), new_text, tuple(assignments))

    def _apply(self, work: str, item: Assignment, created: set[str]) -> KeyChange | None:
        sections = self._read_sections(work, item.section)
        raw = escape(item.value) or None
        live = [n for n in (s.live(item.key) for s in sections) if n is not None]
        if live:
            if reads_exactly(live[-1].value, item.value):
                return None
            self._tree.set(live[-1].path, raw)
            how, old = "updated", pulp_reads(live[-1].value)
        elif sections:
            how, old = "appended", None
            comment = next((c for c in (s.commented_default(item.key) for s in sections) if c), None)
            if comment is not None:
                how = "inserted-after-comment"
                path = self._tree.insert(comment.path, item.key, after=True)
            else:
                last = sections[-1]
                if last.body_end >= 0:
                    path = self._tree.insert(last.children[last.body_end].path, item.key, after=True)
                elif last.children:
                    path = self._tree.insert(last.children[0].path, item.key, after=False)
                else:
                    path = self._tree.append(last.node.path, item.key)
            if item.section in created:
                how = "new-section"
            self._tree.set(path, raw)
        else:
            self._separate_new_section(work)
            section = self._tree.append(work, item.section)
            self._tree.set(self._tree.append(section, item.key), raw)
            created.add(item.section)
            how, old = "new-section", None
        return KeyChange(item.section, item.key, old, item.value, item.secret, how, item.variable)

    def _separate_new_section(self, work: str) -> None:
        """Put a blank line between the file's last line and a section appended to it."""
        top = self._tree.children(work)
        if not top:
            return
        last = top[-1]
        if last.label == "#empty":
            return
        if last.label.startswith("#"):
            self._tree.append(work, "#empty")
            return
        kids = self._tree.children(last.path)
        if not kids or kids[-1].label != "#empty":
            self._tree.append(last.path, "#empty")

    def _masked_text(self, tree: str, secrets: set[tuple[str, str]], tags: dict[str, str]) -> str:
        """Render ``tree`` with secret values and URL passwords shown as ``***``.

        Each distinct secret gets its own invisible tag after the mask (shared through ``tags``
        between the old and the new text), so a changed secret still shows up in a diff.
        """
        masked = "/pulpinit/masked"
        self._tree.copy(tree, masked)
        for sec in self._read_sections(masked):
            for child in sec.children:
                if child.label.startswith("#") or not child.value:
                    continue
                secret = (sec.node.label, child.label.lower()) in secrets or _SECRET_KEY.search(child.label)
                shown = MASK if secret else mask_url(child.value)
                if shown != child.value:
                    tag = tags.setdefault(child.value, chr(_TAG_BASE + len(tags) % 4096))
                    self._tree.set(child.path, shown.replace(MASK, MASK + tag, 1))
        return self._tree.render(masked)


def _body_end(children: list[Node]) -> int:
    end, in_run = -1, True
    for index, child in enumerate(children):
        if child.label == "#empty":
            in_run = False
        elif not child.label.startswith("#"):
            end, in_run = index, True
        elif in_run:
            end = index
    return end


def _decode(path: str, data: bytes) -> str:
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
    ) -> None:
        self.conf = conf
        self._tree = tree
        self.changes = changes
        self.new_text = new_text
        self._items = items
        self._written = False

    @property
    def changed(self) -> bool:
        """Whether :meth:`write` would write (a missing file counts as a change)."""
        return not self._written and (not self.conf.exists or bool(self.changes))

    def diff(self) -> str:
        """A unified diff from the file to the planned text, secrets shown as ``***``."""
        if not self.changes:
            return ""
        secrets = {(i.section, i.key) for i in self._items if i.secret}
        tags: dict[str, str] = {}
        old = self.conf._masked_text(ORIGINAL, secrets, tags) if self.conf.exists else ""
        new = self.conf._masked_text(self._tree, secrets, tags)
        import difflib

        name = str(self.conf.path)
        lines = difflib.unified_diff(old.splitlines(True), new.splitlines(True), name, name + " (planned)")
        return _TAGS.sub(MASK, "".join(lines))

    def write(self) -> bool:
        """Atomically replace the file with the planned text; ``False``: nothing to do, nothing touched."""
        if not self.changed:
            return False
        expected = self.conf.data if self.conf.exists else None
        replace_file(self.conf.path, self.new_text.encode("utf-8"), expected)
        self._written = True
        return True

    def log_changes(self) -> None:
        """Log one ``config.changed`` event per changed key, secret values masked."""
        from pulpinit.log import get_logger

        log = get_logger()
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
