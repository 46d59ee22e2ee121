"""Shared pytest fixtures. Each section belongs to one area; keep sections self-contained."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from rabbitmq import RabbitMQ, unavailable_reason
from secantus import SecantusDB

# =====================================================================================================
# RabbitMQ (broker probe integration tests) — tests/rabbitmq.py, tests/test_rabbitmq.py
# One real broker per session (start ~6-7 s), only when a test marked ``rabbitmq`` asks for it,
# with a plain and a TLS listener (certificates from helpers/pki.py);
# skipped with the reason when rabbitmq-server is missing or we are not root.
# =====================================================================================================


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQ]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    from helpers.pki import make_pki

    with tempfile.TemporaryDirectory(prefix="pulpinit-rabbitmq-") as workdir:
        broker = RabbitMQ(Path(workdir), make_pki(Path(workdir) / "pki"))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


# ============================================ end RabbitMQ ===========================================


# =====================================================================================================
# SecantusDB (an independent MongoDB-wire server) — tests/secantus.py, tests/mongo_peers.py,
# tests/test_migration.py.  Installed by `make test` into .venv-peers; without it these tests skip
# with the reason, except under CI (CI=true), where a missing peer is a failure.
# =====================================================================================================


def _secantus_or_skip() -> None:
    from secantus import unavailable_reason

    reason = unavailable_reason()
    if reason and os.environ.get("CI"):
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def secantus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecantusDB]:
    """One in-memory server for the session, with test commands (fail points) on.

    Tests share it: each uses a database of its own (see mongo_peers.MongoPeer)."""
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


# ============================================ end SecantusDB =========================================
