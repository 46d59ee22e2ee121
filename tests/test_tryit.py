"""The README's "Try it by hand": its recipe, taken from README.md, runs in a terminal as written.

The commands of the section's ``console`` block run one after the other in ONE bash, in a
pseudo-terminal (as a newcomer types them: the log is in the console format there), and each
command's output must match what the README shows under it: digits, runs of blanks and the work
directory's random name may differ, ``…`` stands for left-out text (a line of its own: any
number of lines).
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import readme

from pulpinit.testing import tryit

ROOT = Path(__file__).resolve().parent.parent
ELLIPSIS = "…"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_WORKDIR = re.compile(r"\S*/pulpinit-tryit-\w+")
_MARK = re.compile(r"^@@(step|rc|env) ?(.*)@@$")


def recipe() -> list[tuple[str, list[str]]]:
    """The ``$ command`` lines of the section's console block, each with the lines shown under it."""
    block = readme.block("## Try it by hand", "console")
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def normalize(text: str) -> str:
    text = _ANSI.sub("", text).replace("\r", "")
    text = _WORKDIR.sub("WORKDIR", text)
    text = re.sub(r"\d+", "0", text)
    return "\n".join(re.sub(r"[ \t]+", " ", line).rstrip() for line in text.splitlines())


def shape(documented: list[str]) -> re.Pattern[str]:
    """A pattern for the output as documented: ``…`` is any text, a ``…`` line any lines."""
    parts = []
    for line in normalize("\n".join(documented)).splitlines():
        if line == ELLIPSIS:
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*".join(re.escape(piece) for piece in line.split(ELLIPSIS)) + r"\n")
    return re.compile("".join(parts))


def run_in_terminal(script: str, env: dict[str, str], timeout: float) -> str:
    """``bash -c script`` with a pseudo-terminal as stdin, stdout and stderr; returns what it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(max(deadline - time.monotonic(), 1)) == 0
    finally:
        os.close(leader)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return b"".join(chunks).decode(errors="replace")


def _is_tryit(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return b"pulpinit.testing.tryit" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].strip()
    except (OSError, IndexError):
        return "gone"


def _log(workdir: Path) -> str:
    try:
        return (workdir / "fakes.log").read_text()[-2000:]
    except OSError:
        return ""


@pytest.mark.slow
def test_the_readme_recipe_runs_as_written():
    if not (ROOT / ".venv" / "bin" / "activate").exists():
        pytest.skip("the recipe activates .venv: run `make venv` (make test does)")
    steps = recipe()
    commands = [command for command, _ in steps]
    assert commands[:2] == [". .venv/bin/activate", 'eval "$(python -m pulpinit.testing.tryit --env)"']
    assert [c.split()[:2] for c in commands[2:6]] == [
        ["pulpinit", "check-deps"],
        ["pulpinit", "migrate"],
        ["pulpinit", "worker"],
        ["pulpinit", "run"],
    ]
    lines = []
    for index, command in enumerate(commands):
        lines += [
            f"printf '@@step {index}@@\\n'",
            command,
            "printf '@@rc %s@@\\n' \"$?\"",
            'printf \'@@env %s %s@@\\n\' "${PULPINIT_TRYIT_PID:-}" "${PULPINIT_CONFIG:-}"',
        ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULP", "DB_", "MSG_", "SERVICE_", "VIRTUAL_ENV"))}
    started = time.monotonic()
    pid = 0
    try:
        output = run_in_terminal("\n".join(lines), env, timeout=100)
        elapsed = time.monotonic() - started
        outputs: dict[int, list[str]] = {}
        codes: dict[int, str] = {}
        config = ""
        step = -1
        for line in output.replace("\r", "").splitlines():
            mark = _MARK.match(line)
            if mark and mark[1] == "step":
                step = int(mark[2])
                outputs[step] = []
            elif mark and mark[1] == "rc":
                codes[step] = mark[2]
            elif mark:
                found, _, config = mark[2].partition(" ")
                pid = int(found) if found else pid
            elif step >= 0:
                outputs[step].append(line)
        assert sorted(codes) == list(range(len(steps))), output[-3000:]
        for index, (command, documented) in enumerate(steps):
            actual = "".join(line + "\n" for line in normalize("\n".join(outputs[index])).splitlines())
            assert codes[index] == "0", f"$ {command} exited {codes[index]}:\n{actual}"
            assert shape(documented).fullmatch(actual), (
                f"$ {command}: the output is not what README.md shows under it:\n{actual}"
            )
        assert pid and config
        # the last line stopped the fakes; their work directory goes with them
        deadline = time.monotonic() + 10
        while (_is_tryit(pid) or Path(config).parent.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        workdir = Path(config).parent
        assert not _is_tryit(pid) and not workdir.exists(), (_state(pid), sorted(workdir.glob("*")), _log(workdir))
        assert elapsed < 60, f"the recipe took {elapsed:.1f} s"
    finally:
        if pid and _is_tryit(pid):
            os.kill(pid, signal.SIGKILL)


def test_the_shape_matcher_accepts_the_documented_and_rejects_other_output():
    documented = ["a 127.0.0.1:37051 x", ELLIPSIS, "end in /tmp/pulpinit-tryit-ab12cd/bin …"]
    pattern = shape(documented)
    assert pattern.fullmatch(normalize("a  127.0.0.1:1024 x\nmore\nlines\nend in /tmp/pulpinit-tryit-zz9/bin y") + "\n")
    assert pattern.fullmatch(normalize("a 127.0.0.1:1 x\nend in /tmp/pulpinit-tryit-q/bin z") + "\n")
    assert not pattern.fullmatch(normalize("a 127.0.0.1:1 y\nend in /tmp/pulpinit-tryit-q/bin z") + "\n")
    assert not pattern.fullmatch(normalize("before\na 127.0.0.1:1 x\nend in /tmp/pulpinit-tryit-q/bin z") + "\n")


def test_the_shell_lines_survive_any_characters_in_a_value(tmp_path: Path):
    """``eval`` of the printed lines sets exactly the values (quoting), and ignores the comments."""
    values = {"PULPINIT_CONFIG": str(tmp_path / 'it\'s a "dir" $HOME `x`/server.conf'), "PULP_DB_SEEDS": "h:1"}
    lines = ["# a comment; not a command", *tryit.exports(values), 'printf "%s\\n" "$PULPINIT_CONFIG" "$PULP_DB_SEEDS"']
    done = subprocess.run(
        ["bash", "-c", 'eval "$(cat)"'], input="\n".join(lines), capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.splitlines() == [values["PULPINIT_CONFIG"], "h:1"]


@pytest.mark.slow
def test_the_foreground_mode_serves_until_ctrl_c_and_cleans_up():
    proc = subprocess.Popen(
        [sys.executable, "-m", "pulpinit.testing.tryit"], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        exports = {}
        for line in proc.stdout:
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").rstrip("\n").partition("=")
                exports[name] = shlex.split(value)[0]
            if line.startswith("export PULPINIT_CELERY="):
                break
        assert set(exports) >= {
            "PULPINIT_CONFIG",
            "PULPINIT_USER",
            "PULPINIT_MIGRATION_FINGERPRINT",
            "PULPINIT_MANAGE_DB",
            "PULPINIT_CELERY",
            "PULP_DB_SEEDS",
            "PULP_BROKER_URL",
        }
        workdir = Path(exports["PULPINIT_CONFIG"]).parent
        assert Path(exports["PULPINIT_CONFIG"]).read_text().startswith("# Sample Pulp 2 server configuration")
        assert os.access(exports["PULPINIT_CELERY"], os.X_OK) and os.access(exports["PULPINIT_MANAGE_DB"], os.X_OK)
        done = subprocess.run(
            [sys.executable, "-m", "pulpinit", "check-deps", "--json"],
            env={**os.environ, **exports},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(30) == 0
        assert not workdir.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
