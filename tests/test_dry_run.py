"""``--dry-run`` makes every local check the real run makes, and ends as the run would.

One matrix of local faults — the user, the commands, the backup command, the fingerprint (an
rpm that cannot run), the keys, server.conf that the user cannot reach, a bad variable — and for
each the real run (a whole process against the fake MongoDB and broker, up) and its dry run:
both must end with the same exit code, and the dry run's first problem must be the real run's
error line, word for word.  The dry run contacts nothing (the fake MongoDB counts its commands).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.workdirs import with_standins

from pulpinit.testing import SAMPLE_CONF
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.keys import keys_env
from pulpinit.testing.plugin import FakeServices

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="PULPINIT_USER is used only when root")


@pytest.fixture(scope="module")
def services(module_fakes: FakeServices) -> tuple[FakeMongo, FakeAmqpBroker]:
    return module_fakes.mongo(), module_fakes.broker()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory the user pulpinit drops to can reach, with the stand-ins and an rpm that cannot run."""
    with with_standins("dryrun") as path:
        (path / "bin" / "rpm").write_bytes(b"\x7fELF not really\n")  # executable bits, no executable format
        (path / "bin" / "rpm").chmod(0o755)
        (path / "runs").mkdir()  # the stand-ins, run as the user, record their runs here
        (path / "runs").chmod(0o777)
        yield path


def environment(workdir: Path, services: tuple[FakeMongo, FakeAmqpBroker], keys: Path) -> dict[str, str]:
    mongo, broker = services
    return {
        "PATH": f"{workdir / 'bin'}:/usr/bin:/bin",
        "PULPINIT_CONFIG": str(workdir / "server.conf"),
        "PULPINIT_LOG_FORMAT": "json",
        "PULP_DB_SEEDS": mongo.hostport,
        "PULP_BROKER_URL": broker.url(),
        "PULPINIT_CELERY": str(workdir / "celery"),
        "PULPINIT_MANAGE_DB": str(workdir / "pulp-manage-db"),
        "PULPINIT_USER": "nobody",
        "PULPINIT_MIGRATION_FINGERPRINT": f"2.21.5-{workdir.name}",  # a migration of its own
        "PULPINIT_QUIET_SECONDS": "0",
        "PULPINIT_WAIT_TIMEOUT": "20",
        "STANDIN_RUNS": str(workdir / "runs" / "runs.log"),
        "STANDIN_EXIT_AT_ONCE": "0",  # celery: exit 0 once exec'd
        **keys_env(keys),
    }


def unreachable(workdir: Path) -> dict[str, str]:
    """server.conf in a directory only root may enter: the user who runs Pulp could not read it."""
    private = workdir / "private"
    private.mkdir(mode=0o700)
    shutil.copy(SAMPLE_CONF, private / "server.conf")
    return {"PULPINIT_CONFIG": str(private / "server.conf")}


#: (role argv, the fault: variables set over the environment, or a function of the work directory)
FAULTS = {
    "none": (["beat"], {}),
    "none, worker": (["worker", "1"], {"PULPINIT_MIGRATION_WAIT": "false"}),
    "unknown user": pytest.param(["beat"], {"PULPINIT_USER": "no-such-user"}, marks=ROOT_ONLY),
    "celery not found": (["beat"], {"PULPINIT_CELERY": "/nonexistent/celery"}),
    "celery not executable": (["worker", "2"], {"PULPINIT_CELERY": "WORKDIR/not-executable"}),
    "pulp-manage-db not found": (["beat"], {"PULPINIT_MANAGE_DB": "/nonexistent/pulp-manage-db"}),
    "backup not found": (["migrate"], {"PULPINIT_PRE_MIGRATE": "/nonexistent/backup --all"}),
    "rpm cannot run": (["beat"], {"PULPINIT_MIGRATION_FINGERPRINT": ""}),
    "worker keys missing": (["worker", "3"], {"PULP_CONF__AUTHENTICATION__RSA_KEY": "/nonexistent/rsa.key"}),
    "server.conf unreachable by the user": pytest.param(["beat"], unreachable, marks=ROOT_ONLY),
    "run: command not found": (["run", "--", "/nonexistent/tool"], {}),
    "bad variable": (["beat"], {"PULP_DB_SEEDS": "::1:27017"}),
    "server.conf missing": (["beat"], {"PULPINIT_CONFIG": "/nonexistent/server.conf"}),
}


def pulpinit(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pulpinit", *argv], env=env, capture_output=True, text=True, timeout=90, check=False
    )


def first_problem(done: subprocess.CompletedProcess[str]) -> str | None:
    """The dry run's first problem: the first ``problem`` (or ``unknown``) row of its checks that a run
    stops at, or its error line when it stopped before the plan (a bad variable)."""
    if "## checks" not in done.stdout:
        return error_line(done)
    rows = done.stdout.split("## checks\n", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    cells = [row.split(None, 2) for row in rows if row and not row.startswith(("all passed", "a run would"))]
    stopping = [detail for status, _, detail in cells if status in ("problem", "unknown")]
    return stopping[0] if stopping and done.returncode else None


def error_line(done: subprocess.CompletedProcess[str]) -> str | None:
    errors = [json.loads(line) for line in done.stderr.splitlines() if '"pulpinit.error"' in line]
    return errors[-1]["error"] if errors else None


@pytest.mark.parametrize(("argv", "fault"), list(FAULTS.values()), ids=list(FAULTS))
def test_a_dry_run_ends_as_the_run_would(argv, fault, workdir, services, pulp_keys):
    env = environment(workdir, services, pulp_keys)
    extra = fault(workdir) if callable(fault) else fault
    env.update({k: v.replace("WORKDIR", str(workdir)) for k, v in extra.items()})
    config = Path(env["PULPINIT_CONFIG"])
    before = config.read_bytes() if config.exists() else None
    mongo = services[0]
    commands = sum(mongo.commands.values())

    dry = pulpinit([argv[0], "--dry-run", *argv[1:]] if argv[0] == "run" else [*argv, "--dry-run"], env)
    assert sum(mongo.commands.values()) == commands  # contacted nothing
    assert (config.read_bytes() if config.exists() else None) == before  # changed nothing

    real = pulpinit(argv, env)
    assert dry.returncode == real.returncode, (dry.stdout[-3000:], dry.stderr[-1000:], real.stderr[-2000:])
    assert first_problem(dry) == error_line(real)
    if real.returncode == 0 and argv[0] != "migrate":
        assert "handoff.exec" in real.stderr  # the run went all the way
