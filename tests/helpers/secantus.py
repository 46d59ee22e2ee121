"""SecantusDB, an independently written MongoDB-wire server, as a second MongoDB peer of the tests.

SecantusDB (PyPI ``secantusdb``, pinned in the Makefile) runs on WiredTiger with
real SCRAM-SHA-256, role-based authorization and ``configureFailPoint``.  It needs
a newer pymongo than pulpinit supports, so ``make test`` installs it into its own
venv, ``.venv-peers/``; the tests talk to it over TCP with pulpinit's pymongo.

:class:`SecantusDB` runs one server on a free loopback port: in memory
(``--storage-path :memory:``) or on a directory that survives :meth:`restart`
(how users are provisioned: create them without ``--auth``, restart with it).
It reports version 8.2.x and a single-node replica set named ``secantus``;
pulpinit connects to one seed without a replica-set name directly, as Pulp does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pymongo

from pulpinit.migrate.migrator import APPNAME  # the migrate stage's appname: fail points aim at it only
from pulpinit.testing.serving import free_port

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / ".venv-peers" / "bin" / "secantusd-py"


def unavailable_reason() -> str | None:
    """Why SecantusDB cannot run here, or None (``make test`` always installs it)."""
    if not SERVER.exists():
        return f"SecantusDB is not installed ({SERVER} missing): run `make .venv-peers/.installed-stamp`"
    return None


class PortTaken(RuntimeError):
    """The chosen port was taken by another server before this one bound it."""


def listening_ports(pid: int | None) -> set[int]:
    """The loopback TCP ports ``pid`` listens on (every process's when ``pid`` is None)."""
    inodes: set[str] | None = None
    if pid is not None:
        inodes = set()
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and (inodes is None or fields[9] in inodes):  # LISTEN
            found.add(int(fields[1].split(":")[1], 16))
    return found


class SecantusDB:
    """One ``secantusd-py``; ``start()`` returns once it answers ``ping``."""

    def __init__(
        self,
        storage: str | os.PathLike[str] = ":memory:",
        *,
        auth: bool = False,
        test_commands: bool = False,
        log: Path | None = None,
        args: tuple[str, ...] = (),
        client_options: dict[str, Any] | None = None,
    ) -> None:
        """``args`` are more ``secantusd-py`` options (``--tls-cert-file`` …); ``client_options``
        what a client needs to reach it then (``tls``, ``tlsCAFile`` …), for :meth:`client`."""
        self.storage = str(storage)
        self.args = args
        self.client_options = client_options or {}
        self.auth = auth
        self.test_commands = test_commands
        self.port = free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def uri(self) -> str:
        return f"mongodb://{self.hostport}/?directConnection=true"

    def client(self, **options: Any) -> pymongo.MongoClient[dict[str, Any]]:
        return pymongo.MongoClient(
            self.uri, serverSelectionTimeoutMS=5000, appname="pulpinit-tests", **{**self.client_options, **options}
        )

    def start(self, timeout: float = 30, attempts: int = 3) -> SecantusDB:
        """Start the server on its port; when that port was taken between choosing and binding it
        (another server of the suite got it from the kernel meanwhile), choose another and start again."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start(timeout)
            except PortTaken:
                if attempt == attempts:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> SecantusDB:
        argv = [
            str(SERVER),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--storage-path",
            self.storage,
            "--log-level",
            "WARNING",
        ]
        argv += ["--auth"] * self.auth + ["--enable-test-commands"] * self.test_commands + list(self.args)
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - closed by the child's end
        self.proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                if self.port not in listening_ports(None):  # it could not bind: who holds the port has gone
                    raise RuntimeError(f"secantusd-py exited with {self.proc.returncode}; see {self.log}")
                raise PortTaken(self.port)
            try:
                probe: pymongo.MongoClient[dict[str, Any]]
                with pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=200, **self.client_options) as probe:
                    probe.admin.command("ping")
                if self.port not in listening_ports(self.proc.pid):  # another server answered on the port
                    self.stop()
                    raise PortTaken(self.port)
                return self
            except pymongo.errors.PyMongoError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (it checkpoints WiredTiger), SIGKILL if it takes longer than ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, *, auth: bool | None = None) -> None:
        """Stop and start again on the same storage and port (only useful on a directory)."""
        self.stop()
        if auth is not None:
            self.auth = auth
        self.start()

    def create_user(self, database: str, user: str, password: str, *roles: str) -> None:
        with self.client() as admin:
            admin[database].command(
                "createUser", user, pwd=password, roles=[{"role": role, "db": database} for role in roles]
            )

    def fail_command(self, command: str, *, times: int = 1, **data: Any) -> None:
        """Arm ``failCommand`` for pulpinit's next ``times`` ``command``s (``errorCode=…`` or
        ``closeConnection=True``); needs ``test_commands``."""
        with self.client() as admin:
            admin.admin.command(
                "configureFailPoint",
                "failCommand",
                mode={"times": times},
                data={"failCommands": [command], "appName": APPNAME, **data},
            )

    def clear_fail_point(self) -> None:
        with self.client() as admin:
            admin.admin.command("configureFailPoint", "failCommand", mode="off")

    def __enter__(self) -> SecantusDB:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
