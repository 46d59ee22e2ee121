"""A whole pulpinit process with its wait paced for a test, as an in-process test passes a ``WaitPolicy``.

The pace of the waits (the first pause, its cap, the knocks while refused, the progress lines) is
no knob: :data:`pulpinit.wait.waiter.PACING` holds it.  A test that runs the real program and needs
another pace — a 30 s backoff that only a knock can cut short, a progress line every second — runs
:func:`argv` instead of ``python -m pulpinit``: the same entry point, after ``PACING`` is replaced
in that process.  The environment cannot do it: no variable changes the pace.

    subprocess.run([*pace.argv(log_interval=1), "run", "--", "/bin/true"], env=env)
"""

from __future__ import annotations

import json
import sys

#: Replaces the pace, then runs ``python -m pulpinit`` (its early stop handler included) with the rest of argv.
_LAUNCHER = (
    "import dataclasses, json, runpy, sys\n"
    "from pulpinit.wait import waiter\n"
    "waiter.PACING = dataclasses.replace(waiter.PACING, **json.loads(sys.argv.pop(1)))\n"
    "sys.argv[0] = 'pulpinit'\n"
    "runpy.run_module('pulpinit', run_name='__main__', alter_sys=True)\n"
)
FIELDS = ("initial", "max_interval", "armed_interval", "log_interval")


def argv(**pace: float) -> list[str]:
    """The command line of ``pulpinit`` paced as given (``initial``, ``max_interval``, ``armed_interval``,
    ``log_interval``, in seconds); the arguments of pulpinit go after it."""
    unknown = set(pace) - set(FIELDS)
    if unknown:
        raise TypeError(f"no such pace: {sorted(unknown)}")
    return [sys.executable, "-c", _LAUNCHER, json.dumps(pace)]
