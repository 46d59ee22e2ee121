"""The suite's shared fixtures; plain helper functions and classes live in ``tests/helpers``.

* The fake services (``fake_mongo``, ``fake_broker``, ``fake_services``, ``fakes``,
  ``module_fakes``), ``sample_conf`` and ``free_port`` come from :mod:`pulpinit.testing.plugin`.
* Here: the real peers the integration tests run against — RabbitMQ and SecantusDB — and a
  test PKI.  A fixture that two test modules need belongs here or in the plugin, never in a
  test module (and no test module imports another).
* A test that needs root (PID namespaces, other users, chown, the privilege drop) is marked
  ``root``: run as another user, it is skipped, and the run ends with one line saying how many.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers.mongo_peers import MongoPeer
from helpers.pki import Pki, make_pki
from helpers.rabbitmq import RabbitMQ
from helpers.rabbitmq import unavailable_reason as rabbitmq_unavailable
from helpers.secantus import SecantusDB
from helpers.secantus import unavailable_reason as secantus_unavailable

if TYPE_CHECKING:  # imported by pytest as a plugin (below): importing it first would stop its rewriting
    from pulpinit.testing.plugin import FakeServices

pytest_plugins = ["pulpinit.testing.plugin"]

#: The reason of every test skipped for want of root (counted at the end of the run).
NEEDS_ROOT = "needs root (marked root): run the suite as root to include it"


#: The fixtures of the real peers: a test that uses one is marked ``peers`` (``make test-fast`` leaves it out).
PEER_FIXTURES = frozenset({"secantus", "secantus_auth", "rabbitmq"})


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_secantus = callspec is not None and callspec.params.get("peer") == "secantus"
        if on_secantus or PEER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.peers)
        if os.geteuid() != 0 and item.get_closest_marker("root"):
            item.add_marker(pytest.mark.skip(reason=NEEDS_ROOT))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line: how many tests needed root and were skipped (read from the reports: with
    pytest-xdist the workers collect, and this process only sees what they report)."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and NEEDS_ROOT in str(report.longrepr[-1])
    ]
    if skipped:
        terminalreporter.write_line(f"{len(skipped)} tests need root and were skipped (this run is not root)")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, server certificates for a name and for 127.0.0.1, and a client certificate, per module."""
    return make_pki(tmp_path_factory.mktemp("pki"))


# -- RabbitMQ (broker probe integration tests: tests/test_rabbitmq.py) -------------------------------
# One real broker per session (start ~6-7 s), only when a test marked ``rabbitmq`` asks for it,
# with a plain and a TLS listener; skipped with the reason when rabbitmq-server is missing or we
# are not root.


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQ]:
    reason = rabbitmq_unavailable()
    if reason:
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="pulpinit-rabbitmq-") as workdir:
        broker = RabbitMQ(Path(workdir), make_pki(Path(workdir) / "pki"))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


# -- SecantusDB (an independent MongoDB-wire server: tests/test_migration.py, tests/test_rollout.py) --
# Installed by `make test` into .venv-peers; without it these tests skip with the reason, except
# under CI (CI=true), where a missing peer is a failure.


def _secantus_or_skip() -> None:
    reason = secantus_unavailable()
    if reason and os.environ.get("CI"):
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def secantus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecantusDB]:
    """One in-memory server for the session, with test commands (fail points) on.

    Tests share it: each uses a database of its own (see helpers.mongo_peers.MongoPeer)."""
    _secantus_or_skip()
    log = tmp_path_factory.mktemp("secantus") / "server.log"
    with SecantusDB(test_commands=True, log=log) as server:
        yield server


@pytest.fixture(scope="session")
def secantus_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecantusDB]:
    """An on-disk server with users, restarted with --auth: ``pulp`` may read and write
    ``pulp_database``, ``reader`` may only read it (both with password ``secret``)."""
    _secantus_or_skip()
    root = tmp_path_factory.mktemp("secantus-auth")
    server = SecantusDB(root / "data", log=root / "server.log").start()
    try:
        server.create_user("pulp_database", "pulp", "secret", "readWrite")
        server.create_user("pulp_database", "reader", "secret", "read")
        server.restart(auth=True)
        yield server
    finally:
        server.stop()


@pytest.fixture
def peer(request: pytest.FixtureRequest, fakes: FakeServices) -> MongoPeer:
    """The MongoDB peer of a run-once test: the fake (one per test) by default; ``indirect``
    parametrization (``["fake", "secantus"]``) picks the session's SecantusDB too."""
    if getattr(request, "param", "fake") == "secantus":
        server = request.getfixturevalue("secantus")
        return MongoPeer.on_server("secantus", server.hostport)
    return MongoPeer.of_fake(fakes.mongo())
