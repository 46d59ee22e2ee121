"""Shared pytest fixtures. Each section belongs to one area; keep sections self-contained."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from rabbitmq import RabbitMQ, unavailable_reason

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
