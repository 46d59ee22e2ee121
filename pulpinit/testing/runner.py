"""Run pulpinit, or an image's entrypoint script, as a real process, and read what it did.

:func:`run` starts a command with a given environment (``PATH`` first lists the directory of
this interpreter's ``pulpinit`` script, so an entrypoint script that calls ``pulpinit`` runs this
one), waits for it, and returns a :class:`Result`: the exit code, stdout, stderr, the JSON log
events parsed from stderr (pulpinit's, and the supervisor's with ``--init``), and the argv the
celery stand-in (:mod:`pulpinit.testing.standins`) printed.  A command that outlives
``timeout`` is killed with its whole process group and the test fails with what it wrote.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: How the celery stand-in prints its argv (one JSON list).
CELERY_ARGV = "celery argv: "


@dataclass(frozen=True)
class Result:
    """What a finished command did."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines of stderr, parsed, in order (other lines are left out)."""
        found = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and "event" in event:
                    found.append(event)
        return found

    @property
    def names(self) -> list[str]:
        """The event names, in order."""
        return [str(event["event"]) for event in self.events]

    def event(self, name: str) -> dict[str, Any]:
        """The first event called ``name``; AssertionError naming the events seen when there is none."""
        for event in self.events:
            if event["event"] == name:
                return event
        raise AssertionError(f"no {name!r} event; saw {self.names} (exit {self.exit_code})")

    @property
    def error(self) -> str | None:
        """The ``error`` of the ``pulpinit.error`` line, if pulpinit ended with one."""
        errors = [event for event in self.events if event["event"] == "pulpinit.error"]
        return str(errors[-1]["error"]) if errors else None

    @property
    def celery_argv(self) -> list[str]:
        """The argv the celery stand-in was exec'd with; AssertionError when it never ran."""
        for line in self.stdout.splitlines():
            if line.startswith(CELERY_ARGV):
                return [str(arg) for arg in json.loads(line.removeprefix(CELERY_ARGV))]
        raise AssertionError(f"the celery stand-in did not run (exit {self.exit_code}); error: {self.error}")


def pulpinit_argv(*args: str) -> list[str]:
    """``python -m pulpinit ARGS`` with this interpreter."""
    return [sys.executable, "-m", "pulpinit", *args]


def scripts_dir() -> str:
    """Where this interpreter's console scripts (``pulpinit``) are installed."""
    return sysconfig.get_path("scripts")


def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    timeout: float = 60,
    cwd: str | os.PathLike[str] | None = None,
    stdin: str | None = None,
) -> Result:
    """Run ``argv`` with ``env`` (``PATH`` led by :func:`scripts_dir`) until it exits."""
    environ = dict(env)
    environ["PATH"] = os.pathsep.join([scripts_dir(), environ.get("PATH", os.defpath)])
    proc = subprocess.Popen(
        list(argv),
        env=environ,
        cwd=cwd,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a timeout kills whatever it started
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"{' '.join(argv)} did not exit within {timeout:g} s; stdout: {out[-2000:]!r}; stderr: {err[-3000:]!r}"
        ) from None
    return Result(tuple(argv), proc.returncode, out, err)
