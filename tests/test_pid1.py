"""The supervisor as real PID 1 of a new PID namespace (``unshare --pid --fork --mount-proc``).

Needs root; skipped with the reason otherwise.  Signals go to the namespace's
PID 1 by its host PID (a PID 1 without handlers would drop them: the
supervisor must be waiting for them).  The child is ``helpers/print_signals.py``
which echoes every signal it receives, so forwarding is observed, not assumed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers.processes import pid_namespaces_reason
from helpers.supervision import BLOCKED_THEN_EXEC, ORPHANS, PRINT_SIGNALS, PYTHON, Supervised, run

REASON = pid_namespaces_reason()
pytestmark = [pytest.mark.root, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


def test_supervisor_is_pid1_and_child_is_pid2() -> None:
    done = run([PYTHON, "-c", "import os; print(os.getpid(), os.getppid())"], pid1=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "1"]
    start = [e for e in map(json.loads, done.stderr.splitlines()) if e["event"] == "supervise.start"]
    assert start[0]["mode"] == "pid1"


def test_hundred_orphans_reaped_no_zombie_left() -> None:
    done = run([PYTHON, ORPHANS, "100", "0.3", "--namespace"], pid1=True, timeout=90)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "reaped 100" in done.stdout
    assert "zombies 0" in done.stdout


def test_each_forwarded_signal_reaches_the_child() -> None:
    with Supervised([PYTHON, PRINT_SIGNALS], pid1=True, stdin=True) as sup:
        sup.expect("ready")
        for name in FORWARDED:
            number = signal.Signals[name]
            sup.kill(number)
            assert sup.expect(f"{int(number)} ") == f"{int(number)} {name}"
        sup.send("exit 7\n")
        assert sup.wait() == 7
    forwards = [e["signal"] for e in sup.events() if e["event"] == "supervise.forward"]
    assert forwards == list(FORWARDED)


@pytest.mark.parametrize("code", [0, 1, 2, 127, 255])
def test_exit_code_propagates(code: int) -> None:
    done = run(["sh", "-c", f"exit {code}"], pid1=True)
    assert done.returncode == code, done.stderr


@pytest.mark.parametrize("name", ["TERM", "INT", "HUP", "QUIT", "KILL"])
def test_death_by_signal_gives_128_plus_n(name: str) -> None:
    done = run(["sh", "-c", f"ulimit -c 0; kill -s {name} $$"], pid1=True)
    assert done.returncode == 128 + signal.Signals["SIG" + name], done.stderr


def test_docker_stop_terminates_a_default_child_with_143() -> None:
    with Supervised(["sh", "-c", "echo ready; exec sleep 300"], pid1=True) as sup:
        sup.expect("ready")
        sup.child("sleep")  # sh has exec'ed sleep (the signal would otherwise hit sh)
        sup.kill(signal.SIGTERM)
        assert sup.wait() == 143


def test_command_not_found_127_and_not_executable_126(tmp_path: Path) -> None:
    missing = run(["no-such-command-pulpinit"], pid1=True)
    assert missing.returncode == 127
    assert "command not found" in missing.stderr
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    not_exec = run([str(script)], pid1=True)
    assert not_exec.returncode == 126
    assert "permission denied" in not_exec.stderr


def test_stop_timeout_kills_a_child_that_ignores_term() -> None:
    with Supervised([PYTHON, PRINT_SIGNALS], options=["--stop-timeout", "0.5"], pid1=True) as sup:
        sup.expect("ready")
        started = time.monotonic()
        sup.kill(signal.SIGTERM)
        sup.expect("15 SIGTERM")
        assert sup.wait() == 128 + signal.SIGKILL
        assert time.monotonic() - started >= 0.5
    assert any(e["event"] == "supervise.kill" for e in sup.events())


def test_a_stop_signal_during_pulpinit_s_exec_of_the_supervisor_is_not_dropped() -> None:
    """As PID 1, a signal nobody handles is dropped by the kernel; pulpinit keeps it blocked (pending)
    across its exec of the supervisor, which takes it once it waits and forwards it."""
    started = time.monotonic()
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", PYTHON, "-c", BLOCKED_THEN_EXEC, "pending", "sleep", "30"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 143, done.stderr
    assert time.monotonic() - started < 10
    start = [e for e in map(json.loads, done.stderr.splitlines()) if e["event"] == "supervise.start"]
    assert start[0]["mode"] == "pid1"
