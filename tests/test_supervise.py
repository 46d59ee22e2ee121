"""The supervisor when it is not PID 1 (child subreaper), its options, and what stays resident.

These drive ``python -m pulpinit.supervise`` as a real subprocess; nothing here
calls :func:`pulpinit.supervise.supervise` inside the pytest process (it would
make pytest a subreaper and block its signals).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers.orphans import state
from helpers.processes import children
from helpers.supervision import (
    BLOCKED_THEN_EXEC,
    HELPERS,
    ORPHANS,
    PRINT_SIGNALS,
    PYTHON,
    SYSTEM_PYTHON,
    Supervised,
    rss_kb,
    run,
)

from pulpinit.errors import EnvValueError
from pulpinit.settings.toolkit import toolkit_from_environ

RESIDENT = str(HELPERS / "resident_modules.py")
HEAVY = (
    "pymongo",
    "bson",
    "gridfs",
    "proton",
    "cproton",
    "_proton",
    "augeas",
    "structlog",
    "cffi",
    "_cffi_backend",
    "tenacity",
    "dataclasses",
    "typing",
    "pulpinit.privileges",
    "pulpinit.handoff.exec",
)


def test_subreaper_mode_reaps_hundred_orphans() -> None:
    done = run([PYTHON, ORPHANS, "100", "0.3"], timeout=90)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "reaped 100" in done.stdout
    assert '"mode": "subreaper"' in done.stderr


def test_subreaper_mode_forwards_and_propagates() -> None:
    with Supervised([PYTHON, PRINT_SIGNALS, "--exit-on", "USR2", "--code", "9"]) as sup:
        sup.expect("ready")
        sup.kill(signal.SIGHUP)
        assert sup.expect("1 ") == "1 SIGHUP"
        sup.kill(signal.SIGUSR2)
        assert sup.expect("12 ") == "12 SIGUSR2"
        assert sup.wait() == 9
    exit_event = next(e for e in sup.events() if e["event"] == "supervise.exit")
    assert exit_event["exit_code"] == 9
    assert set(exit_event) >= {"event", "level", "timestamp", "pid"}
    assert exit_event["timestamp"].endswith("Z")


def test_signal_goes_to_the_child_not_its_group() -> None:
    """A group member (like a Celery pool process) must not get the forwarded TERM."""
    with Supervised([PYTHON, PRINT_SIGNALS, "--spawn-sleeper"], stdin=True) as sup:
        sleeper = int(sup.expect("sleeper").split()[1])
        sup.expect("ready")
        sup.kill(signal.SIGTERM)
        sup.expect("15 SIGTERM")
        time.sleep(0.2)
        assert state(sleeper) in ("S", "R")  # untouched
        sup.send("exit 0\n")
        assert sup.wait() == 0
    os.kill(sleeper, signal.SIGKILL)


def test_stop_timeout_kills_the_whole_group_after_term() -> None:
    env = {**os.environ, "PULPINIT_STOP_TIMEOUT": "0.3"}
    with Supervised([PYTHON, PRINT_SIGNALS, "--spawn-sleeper"], env=env) as sup:
        sleeper = int(sup.expect("sleeper").split()[1])
        sup.expect("ready")
        sup.kill(signal.SIGTERM)
        assert sup.wait() == 137
    deadline = time.monotonic() + 5
    while state(sleeper) not in (None, "Z", "X") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state(sleeper) in (None, "Z", "X")


def test_no_stop_timeout_by_default() -> None:
    with Supervised([PYTHON, PRINT_SIGNALS], stdin=True) as sup:
        sup.expect("ready")
        sup.kill(signal.SIGTERM)
        sup.expect("15 SIGTERM")
        time.sleep(0.5)
        assert sup.proc.poll() is None  # Celery's warm shutdown may take as long as it needs
        sup.send("exit 0\n")
        assert sup.wait() == 0


@pytest.mark.parametrize(
    ("options", "code", "text"),
    [
        (["--bogus"], 64, "unknown option"),
        (["--stop-timeout", "soon"], 64, "--stop-timeout"),
        (["--stop-timeout=-1"], 64, "--stop-timeout"),
        (["--umask", "999"], 64, "--umask"),
        (["--log-format", "yaml"], 64, "--log-format"),
    ],
)
def test_bad_options(options: list[str], code: int, text: str) -> None:
    done = run(["true"], options=options)
    assert done.returncode == code
    assert text in done.stderr


@pytest.mark.parametrize("value", ["off", "OFF", "0", "none", ""])
def test_never_means_never_to_the_settings_and_the_supervisor_alike(value: str) -> None:
    """One parser for PULPINIT_STOP_TIMEOUT (the knob table's): what one accepts the other does."""
    assert toolkit_from_environ({"PULPINIT_STOP_TIMEOUT": value}).stop_timeout is None
    done = run(["true"], env={**os.environ, "PULPINIT_STOP_TIMEOUT": value})
    assert done.returncode == 0, done.stderr
    assert '"stop_timeout": null' in done.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-1", " 5", "soon"])
def test_a_bad_stop_timeout_is_78_for_the_settings_and_the_supervisor_alike(value: str) -> None:
    with pytest.raises(EnvValueError, match="PULPINIT_STOP_TIMEOUT"):
        toolkit_from_environ({"PULPINIT_STOP_TIMEOUT": value})
    done = run(["true"], env={**os.environ, "PULPINIT_STOP_TIMEOUT": value})
    assert done.returncode == 78 and "PULPINIT_STOP_TIMEOUT" in done.stderr


def test_bad_stop_timeout_variable_is_a_config_error() -> None:
    done = run(["true"], env={**os.environ, "PULPINIT_STOP_TIMEOUT": "nan"})
    assert done.returncode == 78
    assert "PULPINIT_STOP_TIMEOUT" in done.stderr


def test_separator_is_optional_but_a_command_is_not() -> None:
    def supervise(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "pulpinit.supervise", *args], capture_output=True, text=True, check=False, timeout=30
        )

    assert supervise("sh", "-c", "exit 4").returncode == 4
    for args in ((), ("--",), ("--umask", "027")):
        done = supervise(*args)
        assert done.returncode == 64
        assert "no command" in done.stderr


def test_api_raises_exec_error_for_a_missing_command() -> None:
    code = (
        "from pulpinit.errors import ExecError\n"
        "from pulpinit.supervise import supervise\n"
        "try:\n    supervise(['/nonexistent/prog'])\n"
        "except ExecError as e:\n    print(e.exit_code, e)\n"
    )
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=False, timeout=30)
    assert done.stdout.strip() == "127 /nonexistent/prog: command not found"


def test_resident_supervisor_is_small_and_has_no_heavy_module(tmp_path: Path) -> None:
    """Three honest views of the resident process while (and after) it supervises:
    VmRSS, the shared objects in /proc/PID/maps, and its own ``sys.modules`` at the end."""
    with Supervised([SYSTEM_PYTHON, PRINT_SIGNALS], options=["--user", "nobody"], stdin=True) as sup:
        sup.expect("ready")
        rss = rss_kb(sup.supervisor_pid)
        maps = Path(f"/proc/{sup.supervisor_pid}/maps").read_text()
        sup.kill(signal.SIGUSR1)
        sup.expect("10 SIGUSR1")
        sup.send("exit 0\n")
        assert sup.wait() == 0
    mapped = {line.split()[-1] for line in maps.splitlines() if line.rstrip().endswith(".so")}
    assert not [path for path in mapped if any(word in path for word in HEAVY)], mapped
    assert rss <= 15 * 1024, f"supervisor RSS {rss} kB > 15 MB"

    listing = tmp_path / "modules"
    resident = subprocess.Popen(
        [PYTHON, RESIDENT, str(listing), "--user", "nobody", "--", "sleep", "30"], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 10
    while not children(resident.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    resident.send_signal(signal.SIGUSR1)
    _, err = resident.communicate(timeout=30)
    assert resident.returncode == 128 + signal.SIGUSR1, err
    assert '"signal": "SIGUSR1"' in err
    modules = set(listing.read_text().split())
    assert "pulpinit.supervise" in modules
    heavy = {name for name in modules if name in HEAVY or name.split(".")[0] in HEAVY}
    assert not heavy, heavy


def _gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while state(pid) not in (None, "Z", "X"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# the privilege drop (which clears PDEATHSIG unless set after it) needs root
@pytest.mark.parametrize("user", [None, pytest.param("nobody", marks=pytest.mark.root)])
def test_child_dies_with_a_sigkilled_supervisor_that_is_not_pid1(user: str | None) -> None:
    """No orphan: SIGKILL leaves the supervisor no chance to act, so the kernel must (PDEATHSIG)."""
    options = ["--user", user] if user else []
    with Supervised([SYSTEM_PYTHON if user else PYTHON, PRINT_SIGNALS], options=options, stdin=True) as sup:
        sup.expect("ready")  # stdin stays open: on its own the child would run forever
        child = children(sup.supervisor_pid)[0]
        try:
            sup.kill(signal.SIGKILL)
            assert sup.wait() == -signal.SIGKILL
            assert _gone(child), f"the child {child} outlived its supervisor ({state(child)})"
        finally:
            if not _gone(child, 0):
                os.kill(child, signal.SIGKILL)


def test_signals_blocked_across_the_exec_are_not_inherited_by_the_child() -> None:
    done = subprocess.run(
        [PYTHON, "-c", BLOCKED_THEN_EXEC, "-", "grep", "SigBlk", "/proc/self/status"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[1], 16) == 0, done.stdout  # nothing blocked in the role's process


def test_a_signal_pending_across_the_exec_reaches_the_child() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [PYTHON, "-c", BLOCKED_THEN_EXEC, "pending", "sleep", "30"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 143, done.stderr
    assert time.monotonic() - started < 10  # not the 30 s of the sleep: the SIGTERM was forwarded
    assert '"event": "supervise.forward", "level": "info"' in done.stderr and '"signal": "SIGTERM"' in done.stderr


@pytest.mark.parametrize("name", ["HUP", "QUIT", "TERM"])
def test_a_signal_inherited_as_ignored_is_the_childs_default_again(name: str) -> None:
    """Started under ``nohup`` (SIGHUP ignored) or the like, the child still acts on what is forwarded."""
    ignore_then_supervise = (
        "import os, signal, sys\n"
        "for s in (signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM): signal.signal(s, signal.SIG_IGN)\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'pulpinit.supervise', '--', *sys.argv[1:]])\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", ignore_then_supervise, "sh", "-c", f"ulimit -c 0; kill -s {name} $$; echo survived"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 128 + signal.Signals["SIG" + name], (done.stdout, done.stderr)
    assert "survived" not in done.stdout


def test_console_format_is_the_line_structlog_writes() -> None:
    """Without structlog in the resident process, the same line its console renderer writes."""
    import structlog

    from pulpinit.supervise import console_line

    fields: dict[str, object] = {
        "command": "/usr/bin/celery",
        "pid": 12,
        "user": None,
        "stop_timeout": 1.5,
        "reason": "not root: running as is",
        "sender": 0,
        "quoted": 'it\'s="x"',
        "flag": True,
    }
    renderer = structlog.dev.ConsoleRenderer(colors=False)
    for level in ("info", "warning", "error"):
        expected = renderer(
            None, level, {"timestamp": "2026-01-01T00:00:00.000000Z", "level": level, "event": "e.x", **fields}
        )
        assert console_line("2026-01-01T00:00:00.000000Z", "e.x", level, fields) == expected.rstrip()


def test_log_format_console_writes_console_lines() -> None:
    done = run(["sh", "-c", "exit 3"], options=["--log-format", "console"])
    assert done.returncode == 3
    lines = done.stderr.splitlines()
    shapes = [re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z \[info +\] (\S+) ", line) for line in lines]
    assert [shape[1] if shape else line for shape, line in zip(shapes, lines, strict=True)] == [
        "supervise.start",
        "supervise.exit",
    ]
    assert "exit_code=3" in lines[1]
    assert run(["true"]).stderr.startswith('{"event": "supervise.start"')  # JSON by default
