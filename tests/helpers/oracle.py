"""The differential tier's machinery: a case, pulpinit's verdict on it, Pulp's client's, the table.

A :class:`Case` is a server.conf (``section.key`` → value) and, optionally, the environment
pulpinit resolves its settings from (Kubernetes service variables, ``PULP_BROKER_*``).  For each
case:

* **pulpinit's verdict** (:func:`verdict`): the settings stage on that environment and file
  (a :class:`~pulpinit.errors.ConfigError` is a verdict too: exit 78, down), then the probe of
  the dependency the case names, once, as ``check-deps --timeout`` does;
* **the client's outcome** (:func:`run_clients`): Pulp 2.21's own client (``pulp_clients27.py``
  under Python 2.7 with :mod:`helpers.py27stack`) on the server.conf pulpinit would have
  written, batches of cases in a few concurrent processes;
* **the comparison** (:class:`Row`): up/down must agree; when both fail, the client's error is
  sorted into pulpinit's failure classes (:func:`client_class`) and a differing class must be
  explained by the case (``why``).

:func:`table` renders the rows for ``docs/oracle.md`` (``make oracle`` rewrites it there).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from helpers.py27stack import Stack
from pulpinit.config.inivalue import escape
from pulpinit.errors import ConfigError
from pulpinit.settings.resolve import from_environ
from pulpinit.targets import broker_target, messaging_target, mongo_target
from pulpinit.wait.broker_probe import probe_broker
from pulpinit.wait.messaging_probe import probe_messaging
from pulpinit.wait.mongo_probe import probe_mongodb

DRIVER = Path(__file__).with_name("pulp_clients27.py")
CONFIG = "config_error"  # pulpinit's class for a refused configuration (exit 78)
#: Which dependency a client connects to (pulpinit's probe of it).
DEPENDENCY = {"celery": "broker", "mongodb": "mongodb", "gofer": "messaging"}


@dataclass(frozen=True)
class Case:
    """One server.conf (and environment) and the client to judge it with."""

    id: str
    group: str  # rabbitmq | fake010 | secantus | url (login methods and URL forms)
    client: str  # a key of pulp_clients27.CLIENTS
    conf: Mapping[str, str]
    env: Mapping[str, str] = field(default_factory=dict)
    #: why pulpinit's class is the better diagnosis, where the classes are expected to differ
    why: str = ""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    failure: str | None = None
    error: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    outcome: str  # connected | failed | hung
    error: str = ""
    seconds: float = 0.0
    where: str = ""  # the client's innermost frame (a reset in its TLS handshake is a TLS failure)


@dataclass(frozen=True)
class Row:
    case: Case
    verdict: Verdict
    outcome: Outcome

    @property
    def client_ok(self) -> bool:
        return self.outcome.outcome == "connected"

    @property
    def client_class(self) -> str | None:
        return None if self.client_ok else client_class(self.outcome)

    @property
    def agree(self) -> str:
        """``yes``; ``class`` (both down, other classes); ``NO`` (up against down)."""
        if self.verdict.ok != self.client_ok:
            return "NO"
        if self.verdict.ok or self.verdict.failure == self.client_class:
            return "yes"
        return "class"


def server_conf(values: Mapping[str, str]) -> str:
    """A server.conf from which Pulp reads ``values`` (``section.key`` → value; ``%`` doubled)."""
    sections: dict[str, list[str]] = {}
    for key, value in values.items():
        section, _, option = key.partition(".")
        sections.setdefault(section, []).append(f"{option}: {escape(value)}")
    return "".join(f"[{s}]\n" + "\n".join(lines) + "\n\n" for s, lines in sections.items())


def verdict(case: Case, workdir: Path, timeout: float) -> tuple[Verdict, Path]:
    """pulpinit's verdict, and the server.conf it would leave for Pulp (written into ``workdir``)."""
    written = dict(case.conf)
    path = workdir / f"{case.id}.conf"
    try:
        settings = from_environ(case.env, case.conf)
    except ConfigError as exc:
        path.write_text(server_conf(written))
        return Verdict(False, CONFIG, str(exc)), path
    for key, value in settings.to_write():
        written[key] = value.value
    path.write_text(server_conf(written))
    if DEPENDENCY[case.client] == "broker":
        result = probe_broker(broker_target(settings), timeout)
    elif DEPENDENCY[case.client] == "messaging":
        result = probe_messaging(messaging_target(settings), timeout)
    else:
        result = probe_mongodb(mongo_target(settings), timeout)
    failure = result.failure.value if result.failure else None
    return Verdict(result.ok, failure, result.error or "", settings.warnings + result.warnings), path


def run_clients(stack: Stack, jobs: Sequence[dict[str, object]], processes: int = 4) -> dict[str, Outcome]:
    """Run the driver on ``jobs`` (``{"id", "client", "conf", "timeout"}``) in ``processes`` batches."""
    batches = [list(jobs[i::processes]) for i in range(processes)]
    outcomes: dict[str, Outcome] = {}
    lock = threading.Lock()
    launcher = f"import runpy; runpy.run_path({str(DRIVER)!r}, run_name='__main__')"

    def run(batch: list[dict[str, object]]) -> None:
        if not batch:
            return
        budget = sum(float(str(job["timeout"])) + 3 for job in batch) + 30
        done = subprocess.run(
            [stack.python, "-c", launcher],
            input=json.dumps(batch),
            capture_output=True,
            text=True,
            env=stack.env(),
            cwd=str(stack.site),  # not the driver's directory: tests/helpers holds a dns.py
            timeout=budget,
            check=False,
        )
        for line in done.stdout.splitlines():
            data = json.loads(line)
            with lock:
                outcomes[data["id"]] = Outcome(
                    data["outcome"], data.get("error", ""), data.get("seconds", 0.0), data.get("where", "")
                )
        missing = {str(job["id"]) for job in batch} - set(outcomes)
        if missing:
            raise RuntimeError(f"the Python 2.7 driver gave no answer for {sorted(missing)}: {done.stderr[-3000:]}")

    with ThreadPoolExecutor(processes) as pool:
        list(pool.map(run, batches))
    return outcomes


def judge(
    stack: Stack,
    cases: Sequence[Case],
    workdir: Path,
    *,
    timeout: float = 5.0,
    processes: int = 4,
    alternates: Mapping[str, tuple[Stack, str]] | None = None,
) -> tuple[list[Row], dict[str, dict[str, Outcome]]]:
    """Every case's verdict and outcome; and, for information, the outcomes of ``alternates``.

    ``alternates`` maps a name (e.g. ``amqp==2.1.4``) to another stack and the client whose cases
    it runs (``celery`` or ``mongodb``); they run beside the judged stack, on the same server.conf.
    """
    ids = [case.id for case in cases]
    if len(set(ids)) != len(ids):
        raise ValueError("case ids must be unique")
    with ThreadPoolExecutor(8) as pool:
        verdicts = dict(zip(ids, pool.map(lambda c: verdict(c, workdir, timeout), cases), strict=True))

    def jobs(client: str | None = None) -> list[dict[str, object]]:
        return [
            {"id": c.id, "client": c.client, "conf": str(verdicts[c.id][1]), "timeout": timeout}
            for c in cases
            if client in (None, c.client)
        ]

    others = alternates or {}
    with ThreadPoolExecutor(1 + len(others)) as pool:
        judged = pool.submit(run_clients, stack, jobs(), processes)
        more = {name: pool.submit(run_clients, alt, jobs(client), 2) for name, (alt, client) in others.items()}
        outcomes = judged.result()
        informational = {name: future.result() for name, future in more.items()}
    return [Row(c, verdicts[c.id][0], outcomes[c.id]) for c in cases], informational


# -- the client's error, in pulpinit's failure classes -------------------------------------------

#: (pattern over "<exception class>: <text>", pulpinit's class), first match wins.
CLIENT_CLASSES: tuple[tuple[str, str], ...] = (
    (r"^hung", "handshake_timeout"),
    # the only files Pulp's clients open are their TLS files (CA, certificate, key)
    (r"No such file or directory: '", "tls_failure"),
    (r"Connection refused|Errno 111", "connection_refused"),
    (r"^VersionError|server: 9-1|server: 0-10", "protocol_mismatch"),
    (
        r"Authentication to MongoDB|requires authentication|AuthenticationFailure: Authentication failed",
        "authentication_failed",
    ),
    (r"PLP0041|replica set named ''|missing a database username", "config_error"),
    (r"(reset|Socket closed|EOF).*\[in TLS\]", "tls_failure"),
    (r"Name or service not known|nodename nor servname|gaierror", "dns_failure"),
    (r"WRONG_VERSION_NUMBER|wrong version number|UNKNOWN_PROTOCOL|unknown protocol|http request", "tls_mismatch"),
    (r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|doesn't match|does not match|hostname", "tls_failure"),
    (r"SSL|TLS|certificate|alert", "tls_failure"),
    # python-qpid (driver.py, do_connection_start) says "Anonymous connections disabled" exactly when
    # SASL negotiation failed, the broker does not offer ANONYMOUS and the URL names no user.
    (r"auth mechanism|no mechanism|mechanism .* not|sasl negotiation|Anonymous connections disabled", "sasl_mismatch"),
    (r"NotAllowed.*vhost .* not found|vhost '.*' not found|not found.*vhost", "vhost_not_found"),
    (
        r"AccessRefused|ACCESS_REFUSED|access to vhost|AuthenticationFailure|Authentication failed"
        r"|authentication failed|auth failed|code 18|UserNotFound",
        "authentication_failed",
    ),
    (r"not authorized|Unauthorized|code 13", "not_authorized"),
    (r"replica set|replicaSet|ReplicaSet", "replica_set_mismatch"),
    (
        r"Connection reset|Errno 104|Broken pipe|Socket closed|connection closed|Server unexpectedly closed"
        r"|ConnectionClosed|ConnectionForced|EOF",
        "connection_reset",
    ),
    (r"timed out|Timeout|timeout", "timeout"),
    (
        r"Username configured but no password|unexpected keyword argument|string indices|ValueError|PLP00"
        r"|Messaging adapter: .*, not-found",
        CONFIG,
    ),
)


def client_class(outcome: Outcome) -> str:
    """pulpinit's class for the client's error (``error`` when none fits)."""
    text = f"{outcome.outcome}: {outcome.error}" if outcome.outcome == "hung" else outcome.error
    if re.search(r"ssl\.py|do_handshake|wrap_socket", outcome.where):
        text += " [in TLS]"  # the server hung up during the client's TLS handshake
    for pattern, failure in CLIENT_CLASSES:
        if re.search(pattern, text):
            return failure
    return "error"


# -- the table -----------------------------------------------------------------------------------

_PORT = re.compile(r"(?<=[\w\]]):\d{4,5}\b|(?<=', )\d{4,5}(?=\))")  # host:port, ('host', port)
_OBJECT_ID = re.compile(r"\b(id: )[0-9a-f]{24}\b")  # pymongo's TopologyDescription ids


def stable(text: str) -> str:
    """``text`` without what changes between runs (ports, pymongo's object ids), for the docs."""
    return _OBJECT_ID.sub(r"\1ID", _PORT.sub(lambda m: ":PORT" if m[0][0] == ":" else "PORT", text)).replace("|", "\\|")


def table(rows: Sequence[Row]) -> str:
    """The Markdown table of ``docs/oracle.md``."""
    lines = [
        "| case | pulpinit | Pulp's client (raw error) | agree |",
        "|---|---|---|---|",
    ]
    for row in rows:
        v = row.verdict
        mine = "up" if v.ok else f"down: {v.failure}"
        mine += "".join(f" (warning: {warning})" for warning in v.warnings)
        why = f" — {row.case.why}" if row.agree == "class" and row.case.why else ""
        lines.append(f"| `{row.case.id}` | {stable(mine)} | {stable(answer(row.outcome))} | {row.agree}{why} |")
    return "\n".join(lines) + "\n"


def summary(rows: Sequence[Row]) -> dict[str, int]:
    counts = {"cases": len(rows), "agree": 0, "class": 0, "NO": 0}
    for row in rows:
        counts["agree" if row.agree == "yes" else row.agree] += 1
    return counts


BEGIN, END = "<!-- oracle:begin -->", "<!-- oracle:end -->"


def markers(block: str = "") -> tuple[str, str]:
    """The comments around a generated block of ``docs/oracle.md`` ("" is the judged table)."""
    return (BEGIN, END) if not block else (f"<!-- oracle:{block}:begin -->", f"<!-- oracle:{block}:end -->")


def rewrite_docs(path: Path, rows: Sequence[Row], header: str) -> None:
    """Replace the table between the markers of ``path`` (``make oracle``)."""
    rewrite_block(path, "", f"{header}\n{table(rows)}")


def rewrite_block(path: Path, block: str, body: str) -> None:
    """Replace the generated ``block`` of ``path`` with ``body`` (appended when the file has none)."""
    begin, end = markers(block)
    text = path.read_text() if path.exists() else ""
    if begin not in text:
        text = f"{text.rstrip()}\n\n{begin}\n{end}\n"
    before, _, rest = text.partition(begin)
    _, _, after = rest.partition(end)
    path.write_text(f"{before}{begin}\n{body}{end}{after}")


def read_block(path: Path, block: str) -> str:
    begin, end = markers(block)
    return path.read_text().partition(begin)[2].partition(end)[0]


def docs_rows(path: Path) -> dict[str, tuple[str, str]]:
    """The judged table in ``path``: case id → (pulpinit's verdict, agree) as written there."""
    found: dict[str, tuple[str, str]] = {}
    for line in read_block(path, "").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 4 and cells[0].startswith("`"):
            found[cells[0].strip("`")] = (cells[1], cells[3].split(" ", 1)[0])
    return found


# -- other versions, for information ------------------------------------------------------------


def answer(outcome: Outcome) -> str:
    """An outcome as the tables show it: ``connected``, or ``failed (class): raw error``."""
    if outcome.outcome == "connected":
        return "connected"
    return f"{outcome.outcome} ({client_class(outcome)}): {outcome.error}"


def differences(rows: Sequence[Row], outcomes: Mapping[str, Outcome]) -> list[tuple[Row, Outcome]]:
    """The rows whose client answers otherwise (up/down or class) with another stack's ``outcomes``."""
    found = []
    for row in rows:
        other = outcomes.get(row.case.id)
        if other is None:
            continue
        mine = (row.client_ok, row.client_class)
        theirs = (other.outcome == "connected", None if other.outcome == "connected" else client_class(other))
        if mine != theirs:
            found.append((row, other))
    return found


def alternate_table(name: str, judged: str, rows: Sequence[Row], outcomes: Mapping[str, Outcome]) -> str:
    """The informational block for stack ``name`` (``judged``: the pin it replaces)."""
    differing = differences(rows, outcomes)
    ran = len(outcomes)
    if not differing:
        return f"With {name} instead of {judged}, none of the {ran} cases it ran answers otherwise.\n"
    lines = [
        f"With {name} instead of {judged}, {len(differing)} of the {ran} cases it ran "
        f"{'answers' if len(differing) == 1 else 'answer'} otherwise:",
        "",
        f"| case | with {judged} (judged) | with {name} |",
        "|---|---|---|",
    ]
    lines += [
        f"| `{row.case.id}` | {stable(answer(row.outcome))} | {stable(answer(other))} |" for row, other in differing
    ]
    return "\n".join(lines) + "\n"


def docs_alternate_ids(path: Path, block: str) -> set[str]:
    """The case ids listed in the informational ``block`` of ``path``."""
    return set(re.findall(r"^\| `([^`]+)` \|", read_block(path, block), re.M))


def environ_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
