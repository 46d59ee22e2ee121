"""What a non-editable install carries: the lens, found without a load path; the pytest plugin with
the ``testing`` extra, inert without it (installed offline from wheels of this environment)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


#: What a build of this tree must not see: the environments, caches and earlier builds (setuptools
#: builds in the source tree: a stale ``build/`` would put modules that no longer exist into the wheel,
#: and two builds at once would race in it).
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "erl_crash.dump"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pulpinit's wheel, built from a copy of this tree's sources."""
    dist = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("source") / "pulpinit"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES, symlinks=True)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if build.returncode != 0 and "No module named" in build.stderr:
        pytest.skip(f"cannot build a wheel here: {build.stderr.strip().splitlines()[-1]}")
    assert build.returncode == 0, build.stderr
    return next(dist.glob("pulpinit-*.whl"))


@pytest.mark.slow
def test_wheel_carries_every_package_of_the_tree(wheel: Path):
    """setup.cfg names the packages one by one: a new one left out would be missing from every image."""
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = sorted(str(init.relative_to(ROOT)) for init in (ROOT / "pulpinit").rglob("__init__.py"))
    assert [package for package in packages if package not in names] == []


@pytest.mark.slow
def test_wheel_installs_the_lens_and_finds_it(tmp_path: Path, wheel: Path):
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


def _pip(venv: Path, *args: str, wheelhouse: Path) -> None:
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            *args,
        ],
        check=True,
        timeout=600,
        capture_output=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))},
    )


def _pytest(venv: Path, project: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULP", "PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-rs", str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_the_testing_extra_installs_the_plugin_and_the_docs_example_runs(tmp_path: Path, wheel: Path):
    """``pip install 'pulpinit[testing]'`` into a fresh venv: pytest finds the fixtures by the entry
    point alone; without the extra the example is skipped, saying what to install; with
    ``pytest_plugins`` in a conftest as well, nothing is registered twice."""
    from helpers.readme import image_test_example, install_lines
    from helpers.wheelhouse import wheelhouse

    assert install_lines()[0] == f"pip install './dist/{wheel.name}[testing]'"  # the docs name this wheel

    wheels = tmp_path / "wheels"
    wheelhouse(["pulpinit[testing]"], wheels, skip=["pulpinit"])
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    project = tmp_path / "image"
    project.mkdir()
    (project / "test_image.py").write_text(image_test_example())
    (project / "test_other.py").write_text("def test_other():\n    assert True\n")

    _pip(venv, str(wheel), "pytest", wheelhouse=wheels)  # no extra: no mongomock
    out = _pytest(venv, project)
    assert "1 passed, 1 skipped" in out and "pip install 'pulpinit[testing]'" in out

    _pip(venv, f"{wheel}[testing]", wheelhouse=wheels)
    assert "2 passed" in _pytest(venv, project)

    (project / "conftest.py").write_text('pytest_plugins = ["pulpinit.testing.plugin"]\n')
    assert "2 passed" in _pytest(venv, project)
