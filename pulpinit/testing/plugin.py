"""pytest fixtures of the fake services: a fake MongoDB, a fake broker, a sample server.conf, a free port.

Load it with ``pytest_plugins = ["pulpinit.testing.plugin"]`` (the project's ``tests/conftest.py``
does).  Every fake listens on 127.0.0.1 on a port of its own (bound to port 0) and is stopped
when its fixture's scope ends:

* ``fake_mongo`` / ``fake_broker``: a plain fake for one test;
* ``fake_services``: a plain ``(fake_mongo, fake_broker)`` pair shared by a test module;
* ``fakes`` (one test) and ``module_fakes`` (one module): a :class:`FakeServices` that starts
  fakes with options (users, TLS, a replica set, …) on demand;
* ``sample_conf``: a copy of the sample server.conf in the test's ``tmp_path``;
* ``free_port``: a loopback port nobody listens on (a connection to it is refused);
* ``pulp_keys``: the deployment's keys (``pki init``'s six files) in a directory every user may
  enter, private keys readable by ``nobody``'s group when run as root, made once per session;
  :func:`pulpinit.testing.keys.keys_env` gives the variables that point the roles at them.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pulpinit.testing import SAMPLE_CONF
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.keys import make_keys, reader_group
from pulpinit.testing.serving import free_port as _free_port

__all__ = [
    "FakeServices",
    "fake_broker",
    "fake_mongo",
    "fake_services",
    "fakes",
    "free_port",
    "module_fakes",
    "pulp_keys",
    "sample_conf",
]


class FakeServices:
    """Starts fakes on demand and stops every one of them on :meth:`close`."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def mongo(self, **options: Any) -> FakeMongo:
        """A started :class:`~pulpinit.testing.fakemongo.FakeMongo` (``options``: its keyword arguments)."""
        return self._stack.enter_context(FakeMongo(**options))

    def broker(self, **options: Any) -> FakeAmqpBroker:
        """A started :class:`~pulpinit.testing.fakeamqp.FakeAmqpBroker` (``options``: its keyword arguments)."""
        return self._stack.enter_context(FakeAmqpBroker(**options))

    def close(self) -> None:
        self._stack.close()

    @classmethod
    def running(cls) -> Iterator[FakeServices]:
        """A fixture's body: the services, then every fake they started stopped."""
        services = cls()
        try:
            yield services
        finally:
            services.close()


@pytest.fixture
def fakes() -> Iterator[FakeServices]:
    """Fakes started by the test, stopped after it."""
    yield from FakeServices.running()


@pytest.fixture(scope="module")
def module_fakes() -> Iterator[FakeServices]:
    """Fakes started for a test module, stopped after its last test."""
    yield from FakeServices.running()


@pytest.fixture
def fake_mongo(fakes: FakeServices) -> FakeMongo:
    """A fake MongoDB of its own for the test (no users: no authentication)."""
    return fakes.mongo()


@pytest.fixture
def fake_broker(fakes: FakeServices) -> FakeAmqpBroker:
    """A fake Qpid-like broker (AMQP 0-10 and 1.0) of its own for the test, with no users (auth=no)."""
    return fakes.broker()


@pytest.fixture(scope="module")
def fake_services(module_fakes: FakeServices) -> tuple[FakeMongo, FakeAmqpBroker]:
    """A plain fake MongoDB and broker shared by the module's tests."""
    return module_fakes.mongo(), module_fakes.broker()


@pytest.fixture
def sample_conf(tmp_path: Path) -> Path:
    """A copy of the sample server.conf (every key commented out) in the test's ``tmp_path``."""
    path = tmp_path / "server.conf"
    shutil.copy(SAMPLE_CONF, path)
    return path


@pytest.fixture
def free_port() -> int:
    """A loopback port nobody listens on."""
    return _free_port()


@pytest.fixture(scope="session")
def pulp_keys() -> Iterator[Path]:
    """The deployment's keys for the roles that check them (api, crane, worker), made once."""
    root = Path(tempfile.mkdtemp(prefix="pulpinit-keys-"))
    root.chmod(0o755)
    try:
        yield make_keys(root / "keys", group=reader_group())
    finally:
        shutil.rmtree(root, ignore_errors=True)
