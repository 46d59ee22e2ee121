"""The pytest plugin of the fakes, as an image builder uses it: docs/testing.md's example, the sandbox, inertness."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.readme import image_test_example

from pulpinit.testing.faults import Proxy
from pulpinit.testing.plugin import FakeServices
from pulpinit.testing.sandbox import Sandbox


def pytest_in(directory: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_the_docs_example_passes_and_can_fail(tmp_path: Path):
    example = image_test_example()
    assert 8 <= len([line for line in example.splitlines() if line.strip()]) <= 12  # "a ten-line example"
    (tmp_path / "test_image.py").write_text(example)
    # -p: the plugin also when the entry point is not installed here; when it is, -p is no second registration
    done = pytest_in(tmp_path, "-p", "pulpinit.testing.plugin", "test_image.py")
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-3000:]
    (tmp_path / "test_image.py").write_text(example.replace("worker-2@", "worker-3@"))
    done = pytest_in(tmp_path, "-p", "pulpinit.testing.plugin", "test_image.py")
    assert done.returncode == 1 and "1 failed" in done.stdout  # it checks what it says


def test_importing_the_plugin_imports_no_fake_and_no_heavy_module():
    code = (
        "import sys, pulpinit.testing.plugin; "
        "heavy = {'mongomock', 'pymongo', 'bson', 'proton', 'structlog'}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.slow  # real processes: seconds
def test_without_the_testing_extra_a_fake_mongo_test_is_skipped_saying_what_to_install(tmp_path: Path):
    (tmp_path / "conftest.py").write_text(
        "import sys\nsys.modules['mongomock'] = None  # as if the testing extra were not installed\n"
        "pytest_plugins = ['pulpinit.testing.plugin']\n"
    )
    (tmp_path / "test_it.py").write_text(
        "def test_needs_mongo(fake_mongo):\n    raise AssertionError('ran')\n\n"
        "def test_needs_broker_only(fake_broker):\n    assert fake_broker.port\n\n"
        "def test_unrelated():\n    assert True\n"
    )
    done = pytest_in(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "2 passed, 1 skipped" in done.stdout
    assert "pip install 'pulpinit[testing]' (mongomock is not installed)" in done.stdout


def test_an_entrypoint_script_runs_against_the_sandbox(pulpinit_sandbox: Sandbox, tmp_path: Path):
    script = Path(pulpinit_sandbox.workdir.root) / "entrypoint.sh"
    script.write_text(
        '#!/bin/sh\nexport PULP_SERVER_NAME="${HOSTNAME_OVERRIDE:-img}.example.org"\nexec pulpinit "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert pulpinit_sandbox.run("migrate").exit_code == 0
    result = pulpinit_sandbox.run_script([str(script), "beat"], env={"HOSTNAME_OVERRIDE": "beat-0"})
    assert result.exit_code == 0, result.stderr[-2000:]
    assert result.celery_argv[1] == "beat"
    assert result.event("migration.skipped")["fingerprint"] == pulpinit_sandbox.env["PULPINIT_MIGRATION_FINGERPRINT"]
    assert "server_name: beat-0.example.org" in pulpinit_sandbox.config.read_text()
    assert len(pulpinit_sandbox.migrations()) == 1  # the migrate above; beat skipped it


@pytest.mark.slow  # real processes: seconds
def test_a_bad_variable_is_the_documented_exit_and_error(pulpinit_sandbox: Sandbox):
    result = pulpinit_sandbox.run("worker", env={"PULPINIT_WAIT_TIMEOUT": "soon"})
    assert result.exit_code == 78
    assert result.error is not None and result.error.startswith("PULPINIT_WAIT_TIMEOUT")
    with pytest.raises(AssertionError, match="did not run"):
        _ = result.celery_argv


@pytest.mark.slow
def test_fakes_with_users_failures_and_faults(fakes: FakeServices):
    """Authentication, mongod's failCommand and a MongoDB that comes up late, through the plugin."""
    mongo = fakes.mongo(users={("pulp_database", "pulp"): "Db-Pa55-w0rd"}, wire_version=6)
    broker = fakes.broker(users={"pulp": "Broker-Pa55-w0rd"})
    late = fakes.fault(Proxy, ("127.0.0.1", mongo.port), up=False)
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"pulpinit-plugin-{os.getpid()}"
    sandbox = Sandbox(
        root,
        mongo,
        broker,
        db_user="pulp",
        db_password="Db-Pa55-w0rd",
        broker_user="pulp",
        broker_password="Broker-Pa55-w0rd",
    )
    sandbox.env["PULP_DB_SEEDS"] = f"127.0.0.1:{late.port}"
    try:
        late.up_after(1.0)
        mongo.fail_command("findAndModify", error_code=13)  # the lock: Unauthorized
        result = sandbox.run("migrate")
        assert result.exit_code == 78, result.stderr[-2000:]
        assert "dep.down" in result.names and "dep.up" in result.names  # waited for the late MongoDB
        assert result.error is not None and "readWrite" in result.error
        assert "Pa55-w0rd" not in result.stderr + result.stdout  # no password in the log
        assert sandbox.run("migrate").exit_code == 0  # the failure was injected once
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
