"""The container tier (``make test-containers``): pulpinit's images under a real container runtime.

The main suite never collects this directory (``norecursedirs`` in setup.cfg); ``make
test-containers`` runs it on its own.  Rootful podman with runc, on this machine's network
rules: the containers of a test share the host's network and every listener is on 127.0.0.1 (the
fake services of :mod:`pulpinit.testing.plugin` included); the Compose run has a network namespace
of its own.  The images come from :mod:`helpers.testimages` (built once, cached by content).

The tier skips, with the reason, only where podman cannot run a container; under CI (``CI`` set)
that is a failure, and so is any skipped test.  The figures the tests measure (the stop table,
the Compose timeline, the build times) are printed in the terminal summary.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import podman, testimages

from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo

if TYPE_CHECKING:  # imported by pytest as a plugin: importing it first would stop its rewriting
    from pulpinit.testing.plugin import FakeServices

_FIGURES: list[str] = []
_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") and _SKIPPED and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES:
        terminalreporter.section("container tier: figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
    if os.environ.get("CI") and _SKIPPED:
        terminalreporter.write_line(f"CI: {len(_SKIPPED)} test(s) of the container tier skipped: a failure under CI")


@pytest.fixture(scope="session")
def figures() -> list[str]:
    """Lines for the terminal summary (the measured figures)."""
    return _FIGURES


@pytest.fixture(scope="session", autouse=True)
def runtime() -> None:
    """podman can run a container here, else every test skips with the reason (fails under CI)."""
    reason = podman.unavailable_reason()
    if reason and os.environ.get("CI"):
        pytest.fail(f"the container tier cannot run under CI: {reason}")
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def images(runtime: None, figures: list[str]) -> dict[str, str]:
    """Every image of the tier (:func:`helpers.testimages.ensure`): ``{name: image}``."""
    log: list[str] = []
    started = time.monotonic()
    built = testimages.ensure(log)
    figures.append(f"images: {time.monotonic() - started:.1f} s ({'; '.join(log) if log else 'all cached'})")
    return built


@pytest.fixture(scope="session")
def keys(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployment's keys, made once by ``pulpinit pki init`` in the base image (as the Compose
    file's pki service makes them), to mount read-only at /etc/pki/pulp-keys."""
    directory = tmp_path_factory.mktemp("pulp-keys")
    directory.chmod(0o755)  # as a volume's root: apache may search it (the private keys are 0640 root:apache)
    podman.podman(
        "run", "--rm", "--network", "none", "-e", "PULP_SERVER_NAME=localhost", "-v", f"{directory}:/etc/pki/pulp-keys",
        images["base"], "pki", "init", "/etc/pki/pulp-keys", "--group", "48",
    )  # fmt: skip
    return directory


@pytest.fixture
def containers() -> Iterator[list[podman.Container]]:
    """Containers a test starts: append them, they are removed (forcibly) when it ends."""
    started: list[podman.Container] = []
    yield started
    podman.remove_all(started)


@dataclass
class RoleEnv:
    """A role's environment against a fake MongoDB and a fake broker on the host's loopback."""

    mongo: FakeMongo
    broker: FakeAmqpBroker

    def __call__(self, **extra: str) -> dict[str, str]:
        """The variables, with a database of its own (the lock and the migration state are per database)."""
        return {
            "PULPINIT_LOG_FORMAT": "json",
            "PULP_DB_SEEDS": self.mongo.hostport,
            "PULP_DB_NAME": f"pulp_{uuid.uuid4().hex[:12]}",
            "PULP_BROKER_URL": self.broker.url(),
            **extra,
        }


@pytest.fixture
def role_env(fakes: FakeServices) -> RoleEnv:
    """``role_env(**extra)``: see :class:`RoleEnv`; the fakes are this test's own."""
    return RoleEnv(fakes.mongo(), fakes.broker())
