"""`make demo` runs the whole beat pipeline twice on the embedded fakes, then the API with its keys, and says so."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_every_stage_and_migrates_once():
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pulpinit.testing.demo"], capture_output=True, text=True, timeout=100, check=False
        )
    except subprocess.TimeoutExpired as exc:  # every step is bounded: this is a hang to read about
        parts = (exc.stdout, exc.stderr)  # bytes (even with text=True), or None
        partial = "".join(p.decode(errors="replace") if isinstance(p, bytes) else (p or "") for p in parts)
        pytest.fail(f"the demo did not end within {exc.timeout} s; its output so far:\n{partial[-5000:]}")
    output = done.stdout + done.stderr
    verdict = [line for line in output.splitlines() if line.startswith(("demo ok", "demo FAILED"))]
    assert done.returncode == 0, "\n".join([*verdict, "--- the end of its output:", output[-3000:]])
    assert "demo ok: one migration across two starts" in output
    for event in (
        "dep.down",
        "dep.up",
        "config.changed",
        "migration.done",
        "migration.skipped",
        "handoff.exec",
        "warm shutdown",
        "keys.checked",
        "admin.password_set",
        "keys.published",
        "privileges.keep",
        "httpd: SIGWINCH received",
    ):
        assert event in output, event
    assert output.count("migration.start") == 1
    assert "the API's keys checked, its admin password set, httpd exec'd as root" in output
    readable = next(line for line in output.splitlines() if "httpd can read: " in line)
    assert readable.count(": true") == 6 and ": false" not in readable
    if os.geteuid() == 0:
        assert "httpd uid=0 gid=0" in output  # handed over as root
