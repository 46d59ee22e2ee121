"""A non-editable install carries the lens and finds it without any load path set."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installs_the_lens_and_finds_it(tmp_path: Path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if build.returncode != 0 and "No module named" in build.stderr:
        pytest.skip(f"cannot build a wheel here: {build.stderr.strip().splitlines()[-1]}")
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("pulpinit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "pulpinit/lenses/pulp.aug" in names
    assert "pulpinit/testing/sample-server.conf" in names
    assert any(name.endswith("entry_points.txt") for name in names)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    code = (
        "import pulpinit, pulpinit.config.lens as l; print(pulpinit.__file__); print(l.lens_dir());"
        "from pulpinit.config.serverconf import ServerConf; import sys; "
        "print(ServerConf.load(sys.argv[1]).values())"
    )
    sample = target / "pulpinit" / "testing" / "sample-server.conf"
    done = subprocess.run(
        [sys.executable, "-c", code, str(sample)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    module, lens_dir, _ = done.stdout.splitlines()
    assert module.startswith(str(target))  # the installed copy, not the source tree
    assert Path(lens_dir) == target / "pulpinit" / "lenses"
