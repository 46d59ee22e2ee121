"""The migration watchdog and the one way to start a long-lived child (pulpinit.spawn), as real processes.

``python -m pulpinit.migrate.watchdog`` runs here exactly as pulpinit runs it: a status pipe it
reports on, a control pipe pulpinit writes to, a lease deadline on CLOCK_MONOTONIC.  The
commands are small shell and Python programs that report what they got.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.mongo_peers import gone, wait_for
from helpers.supervision import PYTHON, SYSTEM_PYTHON

from pulpinit.errors import exec_failure
from pulpinit.migrate.watchdog import Watch

ROOT = os.geteuid() == 0
#: Prints what a started program got: its parent-death signal, uid, whether it leads its group.
PROBE = (
    "import ctypes, os\n"
    "sig = ctypes.c_int(); ctypes.CDLL(None).prctl(2, ctypes.byref(sig))\n"
    "print(sig.value, os.getuid(), os.getpgrp() == os.getpid(), flush=True)\n"
)
#: Prints the ignored and blocked signals of the exec'ed program (not Python: it ignores SIGPIPE itself).
SIGNALS = ("grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status")


#: The bits of the signals a program can set (the C library reserves 32 and 33 for itself: an
#: ignored one there can be neither reset nor used, and is left out).
SETTABLE = sum(1 << (number - 1) for number in signal.valid_signals())


def masks(output: str) -> dict[str, int]:
    """SigIgn and SigBlk of a /proc status, as far as they concern the signals a program can set."""
    lines = [line for line in output.splitlines() if line.startswith("Sig")]
    return {line.split(":")[0]: int(line.split()[1], 16) & SETTABLE for line in lines}


class Watchdog:
    """One watchdog around ``command``: its status lines as they come, its control pipe."""

    def __init__(
        self,
        *command: str,
        deadline_in: float = 600.0,
        stop_timeout: float = 1.0,
        margin: float = 0.5,
        user: str | None = None,
        parent: int | None = None,
    ) -> None:
        status_r, status_w = os.pipe()
        control_r, self.control = os.pipe()
        self.deadline = time.monotonic() + deadline_in
        argv = [PYTHON, "-m", "pulpinit.migrate.watchdog", "--parent", str(parent or os.getpid())]
        argv += ["--status-fd", str(status_w), "--control-fd", str(control_r), "--deadline", repr(self.deadline)]
        argv += ["--stop-timeout", str(stop_timeout), "--margin", str(margin)]
        argv += ["--user", user] if user else []
        self.proc = subprocess.Popen(
            [*argv, "--", *command],
            pass_fds=(status_w, control_r),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        os.close(status_w)
        os.close(control_r)
        self.status = os.fdopen(status_r)
        self.seen: list[tuple[float, str]] = []

    def line(self) -> str:
        text = self.status.readline().strip()
        self.seen.append((time.monotonic(), text))
        return text

    def until(self, prefix: str) -> tuple[float, str]:
        while True:
            text = self.line()
            if text.startswith(prefix) or not text:
                return self.seen[-1]

    def send(self, text: str) -> None:
        os.write(self.control, (text + "\n").encode())

    def finish(self) -> tuple[int, list[str], str]:
        while self.line():
            pass
        out, _ = self.proc.communicate(timeout=30)
        os.close(self.control)
        self.status.close()
        return self.proc.returncode, [text for _, text in self.seen if text], out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def watchdogs() -> Iterator[list[Watchdog]]:
    started: list[Watchdog] = []
    yield started
    for dog in started:
        dog.kill()


def run(*command: str, **options: object) -> tuple[int, list[str], str]:
    dog = Watchdog(*command, **options)  # type: ignore[arg-type]
    try:
        return dog.finish()
    finally:
        dog.kill()


def test_exec_failures_are_the_hand_offs_codes(tmp_path: Path) -> None:
    """One mapping (pulpinit.errors.exec_failure): ENOTDIR is "not found" (127) here as at the hand-off."""
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    for command, errno_ in ((str(tmp_path / "missing"), 2), (str(plain), 13), ("/etc/passwd/x", 20)):
        code, lines, _ = run(command)
        expected = exec_failure(command, OSError(errno_, os.strerror(errno_)))
        assert code == expected.exit_code, lines
        assert lines == [f"error {expected.exit_code} {expected.problem}"]
    assert run("/etc/passwd/x")[0] == 127


def test_an_orphaned_start_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code, lines, _ = run("sh", "-c", f"touch {marker}", parent=1 if os.getppid() != 1 else 2)
    assert code == 70 and "is gone" in lines[0] and not marker.exists()


@pytest.mark.parametrize("user", [None, pytest.param("nobody", marks=pytest.mark.root)])  # the drop needs root
def test_the_command_gets_default_signals_an_empty_mask_and_dies_with_the_watchdog(user: str | None) -> None:
    """Started from a parent that ignores and blocks signals (the watchdog ignores its stop signals)."""
    python = SYSTEM_PYTHON if user else sys.executable
    code, lines, out = run(python, "-c", PROBE, user=user)
    assert code == 0, (lines, out)
    pdeathsig, uid, leader = out.split()
    assert int(pdeathsig) == signal.SIGKILL and leader == "True"
    assert int(uid) == (65534 if user else os.getuid())
    assert lines[0].startswith("started ") and lines[-1] == "exit 0"
    code, _, out = run(*SIGNALS, user=user)
    assert code == 0 and masks(out) == {"SigBlk": 0, "SigIgn": 0}, out


def test_the_supervisors_child_is_started_the_same_way() -> None:
    """pulpinit.spawn is the one way: the supervisor's child gets what the watchdog's gets."""
    ignore_then_supervise = (
        "import os, signal, sys\n"
        "for s in (signal.SIGHUP, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGUSR1): signal.signal(s, signal.SIG_IGN)\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'pulpinit.supervise', '--', *sys.argv[1:]])\n"
    )
    outputs = [
        subprocess.run(
            [PYTHON, "-c", ignore_then_supervise, *command],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
        for command in ((sys.executable, "-c", PROBE), SIGNALS)
    ]
    pdeathsig, _, leader = outputs[0].split()
    assert (int(pdeathsig), leader) == (signal.SIGKILL, "True")
    assert masks(outputs[1]) == {"SigBlk": 0, "SigIgn": 0}, outputs[1]


@pytest.mark.slow  # real processes: seconds
def test_without_renewals_the_command_is_stopped_then_killed_before_the_deadline(watchdogs) -> None:
    """The fence: SIGTERM at deadline − stop timeout − margin, SIGKILL of the group at deadline − margin."""
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    )
    dog = Watchdog(sys.executable, "-c", stubborn, deadline_in=4.0, stop_timeout=1.0, margin=1.0)
    watchdogs.append(dog)
    _, started = dog.until("started")
    pid = int(started.split()[1])
    fenced_at, fence = dog.until("fence")
    killed_at, kill = dog.until("kill")
    assert fence.startswith("fence ") and kill == "kill lease"
    wait_for(lambda: gone(pid), timeout=2, what="the command gone")
    code, lines, _ = dog.finish()
    assert code == 128 + signal.SIGKILL and lines[-1] == f"exit {128 + signal.SIGKILL}"
    assert fenced_at < killed_at < dog.deadline  # the margin (1 s) absorbs a loaded machine
    assert float(fence.split()[1]) == pytest.approx(2.0, abs=0.5)  # 2 s left when SIGTERM was sent


@pytest.mark.slow  # real processes: seconds
def test_renewals_keep_the_command_running(watchdogs) -> None:
    dog = Watchdog("sh", "-c", "sleep 2; exit 3", deadline_in=1.5, stop_timeout=0.5, margin=0.2)
    watchdogs.append(dog)
    dog.until("started")
    stop = time.monotonic() + 3
    while dog.proc.poll() is None and time.monotonic() < stop:
        dog.send(f"renew {time.monotonic() + 1.5!r}")
        time.sleep(0.2)
    code, lines, _ = dog.finish()
    assert code == 3 and not any(text.startswith(("fence", "kill")) for text in lines), lines


@pytest.mark.slow  # real processes: seconds
def test_a_forwarded_stop_then_sigkill_after_the_stop_timeout(watchdogs) -> None:
    printer = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda n, f: print('got', n, flush=True))\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    dog = Watchdog(sys.executable, "-c", printer, stop_timeout=1.0)
    watchdogs.append(dog)
    dog.until("started")
    assert dog.proc.stdout is not None and dog.proc.stdout.readline().strip() == "up"
    sent = time.monotonic()
    dog.send(f"stop {int(signal.SIGINT)}")
    killed_at, kill = dog.until("kill")
    code, _, out = dog.finish()
    assert kill == "kill stop-timeout" and f"got {int(signal.SIGINT)}" in out
    assert killed_at - sent >= 1.0 and code == 128 + signal.SIGKILL


def test_kill_and_a_gone_pulpinit_kill_the_whole_group_at_once(watchdogs) -> None:
    """``kill`` (the lease was taken over) and end-of-file (pulpinit gone) SIGKILL the group: no grandchild stays."""
    for how in ("kill", "eof"):
        dog = Watchdog("sh", "-c", "sleep 60 & echo $!; wait")
        watchdogs.append(dog)
        dog.until("started")
        assert dog.proc.stdout is not None
        grandchild = int(dog.proc.stdout.readline())
        if how == "kill":
            dog.send("kill")
        else:
            os.close(dog.control)
            dog.control = os.open(os.devnull, os.O_RDONLY)  # finish() closes it
        _, kill = dog.until("kill")
        assert kill == ("kill request" if how == "kill" else "kill parent-gone")
        wait_for(lambda: gone(grandchild), timeout=2, what="the grandchild gone")  # noqa: B023
        assert dog.finish()[0] == 128 + signal.SIGKILL


def test_a_sigkilled_pulpinit_takes_watchdog_and_command_along() -> None:
    """The watchdog's own parent-death signal: pulpinit SIGKILLed, nothing of the run survives."""
    parent = subprocess.Popen(
        [
            PYTHON,
            "-c",
            "import os, subprocess, sys\n"
            "r, w = os.pipe(); c, d = os.pipe()\n"
            "p = subprocess.Popen([sys.executable, '-m', 'pulpinit.migrate.watchdog', '--parent', str(os.getpid()),"
            " '--status-fd', str(w), '--control-fd', str(c), '--deadline', '1e12', '--stop-timeout', '1',"
            " '--margin', '0.5', '--', 'sleep', '60'], pass_fds=(w, c))\n"
            "os.close(w)\n"
            "print(p.pid, os.read(r, 100).decode().split()[1], flush=True)\n"
            "import time; time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        watchdog, command = map(int, parent.stdout.readline().split())
        parent.kill()
        parent.wait()
        wait_for(lambda: gone(watchdog) and gone(command), timeout=3, what="watchdog and command gone")
    finally:
        parent.kill()


@pytest.fixture
def watch() -> Iterator[tuple[Watch, list[float], list[str], subprocess.Popen[bytes]]]:
    """A :class:`Watch` over a real ``sleep`` (deadline 110, stop timeout 2, margin 1) on an injected clock."""
    now = [100.0]
    reports: list[str] = []
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        yield (
            Watch(
                sleeper.pid, deadline=110.0, stop_timeout=2.0, margin=1.0, report=reports.append, clock=lambda: now[0]
            ),
            now,
            reports,
            sleeper,
        )
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_watch_keeps_its_deadlines_on_an_injected_clock(watch) -> None:
    """The fence's arithmetic: renewals move the deadline until the fence, and not after it."""
    dog, now, reports, sleeper = watch
    assert dog.tick() == pytest.approx(7.0)  # SIGTERM due at 110 - 2 - 1
    dog.message("renew 120.0")
    assert dog.tick() == pytest.approx(17.0)
    dog.message("renew 90.0")  # an older deadline never shortens the lease
    now[0] = 117.0
    assert dog.tick() == pytest.approx(2.0) and reports == ["fence 3.000"]  # SIGKILL due at 119
    dog.message("renew 200.0")  # too late: once fenced, the deadline stands
    now[0] = 119.0
    assert dog.tick() == math.inf and reports[-1] == "kill lease"
    assert sleeper.wait(5) == -signal.SIGTERM  # the fence's SIGTERM (sleep's default: exit)


def test_a_watch_resumed_past_its_deadline_kills_without_a_graceful_stop(watch) -> None:
    """A frozen container resumed: no SIGTERM (the command could act on it beside the new holder), SIGKILL."""
    dog, now, reports, sleeper = watch
    now[0] = 130.0
    dog.tick()
    assert reports == ["fence -20.000", "kill lease"]
    assert sleeper.wait(5) == -signal.SIGKILL
