"""pytest fixtures of the fake services, and of pulpinit run against them.

Installed with ``pip install 'pulpinit[testing]'``, pytest loads this plugin by itself (the
``pytest11`` entry point ``pulpinit.testing.plugin``); the project's ``tests/conftest.py`` also
names it in ``pytest_plugins``, which is then no second registration (same name).  Without the
``testing`` extra the plugin stays inert: importing it imports nothing but pytest, and a test that
asks for a fake MongoDB is skipped, saying what to install.  Every fake listens on 127.0.0.1 on a
port of its own (bound to port 0) and is stopped when its fixture's scope ends:

* ``fake_mongo`` / ``fake_broker``: a plain fake for one test;
* ``fake_services``: a plain ``(fake_mongo, fake_broker)`` pair shared by a test module;
* ``fakes`` (one test) and ``module_fakes`` (one module): a :class:`FakeServices` that starts
  fakes with options on demand — MongoDB with ``users``, ``replica_set``, ``wire_version``,
  ``clock_offset_s``, TLS, …, and command failures injected (``fail_command``, mongod's
  ``failCommand``); the broker with ``users`` and with or without its Qpid-style AMQP 0-10 answer
  (``amqp010``); TCP faults in front of either (:meth:`FakeServices.fault`);
* ``pulpinit_sandbox``: a :class:`~pulpinit.testing.sandbox.Sandbox` on a fake MongoDB and
  broker of its own: a work directory with a copy of the sample server.conf and stand-ins for
  pulp-manage-db and celery, whose ``run("worker", "2", env={...})`` runs pulpinit (and
  ``run_script([...])`` an image's entrypoint) and returns the exit code, the output, the parsed
  log events and the celery argv;
* ``sample_conf``: a copy of the sample server.conf in the test's ``tmp_path``;
* ``free_port``: a loopback port nobody listens on (a connection to it is refused);
* ``pulp_keys``: the deployment's keys (``pki init``'s six files) in a directory every user may
  enter, private keys readable by ``nobody``'s group when run as root, made once per session;
  :func:`pulpinit.testing.keys.keys_env` gives the variables that point the roles at them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pulpinit.testing import SAMPLE_CONF
from pulpinit.testing.serving import free_port as _free_port

if TYPE_CHECKING:  # imported when a fixture needs them: the fake MongoDB needs the testing extra
    from pulpinit.testing.fakeamqp import FakeAmqpBroker
    from pulpinit.testing.fakemongo import FakeMongo
    from pulpinit.testing.sandbox import Sandbox

__all__ = [
    "FakeServices",
    "fake_broker",
    "fake_mongo",
    "fake_services",
    "fakes",
    "free_port",
    "module_fakes",
    "pulp_keys",
    "pulpinit_sandbox",
    "sample_conf",
]

#: The modules of the ``testing`` extra that the fakes import (setup.cfg lists the extra).
TESTING_EXTRA = ("mongomock",)
_Fault = TypeVar("_Fault", bound=contextlib.AbstractContextManager[Any])


def require_testing_extra() -> None:
    """Skip the calling test, saying what to install, when the ``testing`` extra is missing."""
    missing = [name for name in TESTING_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(
            f"pulpinit's fake MongoDB needs the testing extra: pip install 'pulpinit[testing]' "
            f"({', '.join(missing)} is not installed)"
        )


class FakeServices:
    """Starts fakes on demand and stops every one of them on :meth:`close`."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def mongo(self, **options: Any) -> FakeMongo:
        """A started :class:`~pulpinit.testing.fakemongo.FakeMongo` (``options``: its keyword arguments:
        ``users={("pulp_database", "pulp"): "pw"}``, ``replica_set``, ``wire_version``, ``clock_offset_s``, …).
        """
        require_testing_extra()
        from pulpinit.testing.fakemongo import FakeMongo

        return self._stack.enter_context(FakeMongo(**options))

    def broker(self, **options: Any) -> FakeAmqpBroker:
        """A started :class:`~pulpinit.testing.fakeamqp.FakeAmqpBroker` (``options``: its keyword arguments:
        ``users={"pulp": "pw"}``, ``amqp010=False`` for a broker without the Qpid-style 0-10 answer, TLS, …)."""
        from pulpinit.testing.fakeamqp import FakeAmqpBroker

        return self._stack.enter_context(FakeAmqpBroker(**options))

    def fault(self, kind: Callable[..., _Fault], *args: Any, **options: Any) -> _Fault:
        """A started fault server of :mod:`pulpinit.testing.faults`, e.g.
        ``fault(Proxy, ("127.0.0.1", mongo.port), up=False)``: a MongoDB that comes up late (``go_up()``)."""
        fault = kind(*args, **options)
        self._stack.enter_context(fault)  # started (__enter__ returns the server itself)
        return fault

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
    from pulpinit.testing.keys import make_keys, reader_group

    root = Path(tempfile.mkdtemp(prefix="pulpinit-keys-"))
    root.chmod(0o755)
    try:
        yield make_keys(root / "keys", group=reader_group())
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pulpinit_sandbox(fakes: FakeServices) -> Iterator[Sandbox]:
    """pulpinit against a fake MongoDB and a fake broker of its own (no users), in a fresh work directory.

    The directory is below the system's temporary directory, which the user pulpinit drops to
    (``nobody`` when the tests run as root) can enter; it is removed after the test.
    """
    from pulpinit.testing.sandbox import Sandbox

    mongo, broker = fakes.mongo(), fakes.broker()
    root = Path(tempfile.mkdtemp(prefix="pulpinit-sandbox-"))
    try:
        yield Sandbox(root, mongo, broker)
    finally:
        shutil.rmtree(root, ignore_errors=True)
