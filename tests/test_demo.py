"""`make demo` runs the whole beat pipeline twice on the embedded fakes and says so."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_every_stage_and_migrates_once():
    done = subprocess.run(
        [sys.executable, "-m", "pulpinit.testing.demo"], capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "demo ok: one migration across two starts" in output
    for event in (
        "dep.down",
        "dep.up",
        "config.changed",
        "migration.done",
        "migration.skipped",
        "handoff.exec",
        "warm shutdown",
    ):
        assert event in output, event
    assert output.count("migration.start") == 1
