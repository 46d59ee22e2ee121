"""Start and stop a private RabbitMQ (with the AMQP 1.0 plugin) on loopback for the tests.

Facts this follows (see shared/reference/environment.md): as root, run the
binary under ``/usr/lib/rabbitmq/bin/`` (the ``/usr/sbin`` wrapper switches
user); keep mnesia, logs, the pid file and the enabled-plugins file in a
temporary directory; ``rabbitmqctl -n NODE wait PIDFILE`` blocks until the
broker is ready (6–7 s); epmd outlives the broker, so stop it too.

Every port is on 127.0.0.1: the AMQP listeners through ``listeners.tcp.1`` and
``listeners.ssl.1 = 127.0.0.1:PORT`` (``listeners.tcp.default`` would bind every
interface), epmd through ``ERL_EPMD_ADDRESS``, and the Erlang distribution ports
of the broker and of rabbitmqctl through ``-kernel inet_dist_use_interface
{127,0,0,1}`` in ``RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS`` / ``RABBITMQ_CTL_ERL_ARGS``;
:meth:`RabbitMQ.listening` reads back what the broker's processes listen on.

With a :class:`~helpers.pki.Pki` the broker also has a TLS listener (``tls_port``)
whose certificate names 127.0.0.1 as an IP subjectAltName only, and which requires
a client certificate from the same CA (``verify_peer``, ``fail_if_no_peer_cert``);
``tls_cert`` picks another of the PKI's server certificates (``dns``: localhost only) and
``client_cert`` what is asked of clients (``required``, ``optional``, ``none``).
``settings`` adds rabbitmq.conf lines (e.g. ``auth_mechanisms.1 = PLAIN``) and
``definitions`` (users, virtual hosts, permissions; see :func:`definitions`) are loaded at
boot, which costs nothing where each ``rabbitmqctl`` call costs an Erlang start.

To stay out of the way of any other Erlang node on the machine, each harness
uses its own node name, AMQP port, distribution port, epmd port and ``HOME``
(the Erlang cookie lives there), so stopping "our" epmd touches nothing else.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pulpinit.testing.serving import free_port  # RabbitMQ must be told its ports: a race, but a short one

if TYPE_CHECKING:
    from helpers.pki import Pki

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
USER, PASSWORD = "guest", "guest"  # RabbitMQ's default user, allowed on loopback only
LOOPBACK_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"


def unavailable_reason() -> str | None:
    """Why the RabbitMQ tests cannot run here, or None."""
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        return f"rabbitmq-server is not installed (no {RABBIT_BIN}/rabbitmq-server; apt-get install rabbitmq-server)"
    if os.geteuid() != 0:
        return "the RabbitMQ harness runs the broker as root (the /usr/sbin wrapper switches user)"
    if shutil.which("epmd") is None:
        return "epmd (erlang-base) is not installed"
    return None


class RabbitMQ:
    """One broker: ``start()`` blocks until it accepts connections, ``stop()`` ends it and epmd."""

    def __init__(
        self,
        workdir: Path,
        pki: Pki | None = None,
        *,
        name: str = "",
        tls_cert: str = "ip",
        client_cert: str = "required",
        settings: tuple[str, ...] = (),
        definitions: dict[str, object] | None = None,
    ) -> None:
        self.workdir = workdir
        self.pki = pki
        self.tls_cert = tls_cert
        self.client_cert = client_cert
        self.settings = settings
        self.definitions = definitions
        self.host = "127.0.0.1"
        self._choose_ports()
        self.node = f"pulpinit{os.getpid()}{name}@localhost"
        self.pidfile = workdir / "rabbit.pid"
        self.logfile = workdir / "server.out"
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _choose_ports(self) -> None:
        """Free loopback ports for every listener: RabbitMQ must be told them (see :meth:`start`)."""
        self.port = free_port()
        self.tls_port = free_port() if self.pki else None
        self.dist_port = free_port()
        self.epmd_port = free_port()

    @property
    def env(self) -> dict[str, str]:
        w = self.workdir
        return {
            **os.environ,
            "HOME": str(w),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": LOOPBACK_DIST,
            "RABBITMQ_CTL_ERL_ARGS": LOOPBACK_DIST,
            "ERL_EPMD_ADDRESS": self.host,
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
            "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_PID_FILE": str(self.pidfile),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq"),  # rabbitmq.conf, below
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(w / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),
            "ERL_CRASH_DUMP": str(w / "erl_crash.dump"),  # a failed start's dump stays in the workdir
        }

    def config(self) -> str:
        """rabbitmq.conf: loopback listeners, and the TLS listener when there is a PKI."""
        lines = ["loopback_users.guest = true", f"listeners.tcp.1 = {self.host}:{self.port}"]
        if self.pki is not None:
            lines += [
                f"listeners.ssl.1 = {self.host}:{self.tls_port}",
                f"ssl_options.cacertfile = {self.pki.ca}",
                f"ssl_options.certfile = {self.pki.directory / (self.tls_cert + '.crt')}",
                f"ssl_options.keyfile = {self.pki.directory / (self.tls_cert + '.key')}",
                f"ssl_options.verify = {'verify_none' if self.client_cert == 'none' else 'verify_peer'}",
                f"ssl_options.fail_if_no_peer_cert = {str(self.client_cert == 'required').lower()}",
            ]
        if self.definitions is not None:
            lines.append(f"load_definitions = {self.workdir / 'definitions.json'}")
        return "\n".join([*lines, *self.settings]) + "\n"

    def listening(self) -> set[str]:
        """``address:port`` of every TCP socket the broker's processes listen on, and every one on our epmd port."""
        inodes = set()
        for pid in self._process_tree():
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = os.readlink(fd)
                        if target.startswith("socket:["):
                            inodes.add(target[8:-1])
        found = set()
        for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                address, port = fields[1].split(":")
                if fields[3] == "0A" and (fields[9] in inodes or int(port, 16) == self.epmd_port):  # LISTEN
                    found.add(f"{_address(address, width)}:{int(port, 16)}")
        return found

    def _process_tree(self) -> set[int]:
        """The rabbitmq-server process and all its descendants (beam.smp, erl_child_setup, …)."""
        if self._proc is None:
            return set()
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        tree, grew = {self._proc.pid}, True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in tree} - tree
            tree |= more
            grew = bool(more)
        return tree

    def url(self, scheme: str = "amqp", user: str | None = USER, password: str | None = PASSWORD) -> str:
        cred = f"{user}:{password}@" if user is not None and password is not None else ""
        return f"{scheme}://{cred}{self.host}:{self.port}/"

    def ctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, timeout: float = 90, attempts: int = 3) -> RabbitMQ:
        """Start the broker on ports chosen now; when a start fails, choose new ports and start again.

        A port taken between choosing and binding it (another server of the suite got it from the
        kernel meanwhile: the broker fails, or starts without that listener) and an Erlang
        distribution that does not come up beside a busy epmd (``nodistribution``, seen under load
        with several brokers starting at once) both pass with a second start."""
        for attempt in range(1, attempts + 1):
            self._choose_ports()
            try:
                self._start(timeout)
            except RuntimeError:
                if attempt == attempts:
                    raise
                continue
            wanted = {f"{self.host}:{port}" for port in (self.port, self.tls_port, self.dist_port) if port}
            missing = wanted - self.listening()
            if not missing:
                return self
            self.stop()
            if attempt == attempts:
                raise RuntimeError(f"RabbitMQ started without listening on {sorted(missing)}")
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> RabbitMQ:
        for sub in ("mnesia", "log"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        (self.workdir / "enabled_plugins").write_text("[rabbitmq_amqp1_0].\n")
        (self.workdir / "rabbitmq.conf").write_text(self.config())
        if self.definitions is not None:
            (self.workdir / "definitions.json").write_text(json.dumps(self.definitions))
        (self.workdir / "advanced.config").write_text("[].\n")
        (self.workdir / "rabbitmq-env.conf").write_text("")
        started = time.monotonic()
        with self.logfile.open("wb") as out:
            self._proc = subprocess.Popen(
                [str(RABBIT_BIN / "rabbitmq-server")],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.workdir,
            )
        # the pid file first, watching the server itself: one that failed (a port taken) says why at once,
        # where ``rabbitmqctl wait`` would keep waiting for a pid file that never comes
        deadline = started + timeout
        while not self.pidfile.exists() and self._proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        problem = ""
        if not self.pidfile.exists():
            problem = f"no pid file after {time.monotonic() - started:.0f} s"
        elif self._proc.poll() is None:  # then the node's boot
            left = max(1, int(deadline - time.monotonic()))
            try:
                waited = self.ctl("wait", "--timeout", str(left), str(self.pidfile), timeout=left + 30)
                problem = "" if waited.returncode == 0 else f"{waited.stdout}{waited.stderr}"
            except subprocess.TimeoutExpired:
                problem = f"rabbitmqctl wait did not return within {left + 30} s"
        if problem or self._proc.poll() is not None:
            tail = self.logfile.read_text(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"RabbitMQ did not start: {problem or 'the server exited'}\n{tail}")
        self.startup_s = time.monotonic() - started
        return self

    @contextlib.contextmanager
    def amqp10_unloaded(self) -> Iterator[None]:
        """RabbitMQ as if the AMQP 1.0 plugin were not enabled, for the duration of the block.

        RabbitMQ checks ``code:is_loaded(rabbit_amqp1_0_reader)`` when an AMQP 1.0 header
        arrives and, when it is not, answers with its AMQP 0-9-1 header and closes.  Unloading
        that module costs ~0.4 s; disabling the plugin with rabbitmq-plugins would cost ~10 s.
        """
        mod = "rabbit_amqp1_0_reader"
        done = self.ctl("eval", f"code:purge({mod}), code:delete({mod}), code:purge({mod}), code:is_loaded({mod}).")
        if done.stdout.strip() != "false":
            raise RuntimeError(f"cannot unload {mod}: {done.stdout}{done.stderr}")
        try:
            yield
        finally:
            self.ctl("eval", f"code:load_file({mod}).")

    def tls_url(
        self, scheme: str = "amqps", user: str | None = USER, password: str | None = PASSWORD, host: str | None = None
    ) -> str:
        cred = f"{user}:{password}@" if user is not None and password is not None else ""
        return f"{scheme}://{cred}{host or self.host}:{self.tls_port}/"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            self.ctl("stop", timeout=60)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # epmd outlives the broker; this one listens on our private port only.
        subprocess.run(["epmd", "-kill"], env=self.env, capture_output=True, timeout=10, check=False)


def password_hash(password: str) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(
    users: dict[str, str], vhosts: tuple[str, ...], permissions: dict[tuple[str, str], tuple[str, str, str]]
) -> dict[str, object]:
    """A definitions document: ``users`` (name → password), ``vhosts``, and ``permissions``
    ((user, vhost) → (configure, write, read) patterns).  Loading it replaces the default user: list
    ``guest`` to keep it."""
    return {
        "users": [
            {
                "name": u,
                "password_hash": password_hash(p),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": "",
            }
            for u, p in users.items()
        ],
        "vhosts": [{"name": v} for v in vhosts],
        "permissions": [
            {"user": u, "vhost": v, "configure": c, "write": w, "read": r} for (u, v), (c, w, r) in permissions.items()
        ],
    }


def _address(hex_address: str, width: int) -> str:
    """/proc/net/tcp's little-endian hex address → text (``0100007F`` → ``127.0.0.1``)."""
    import ipaddress

    raw = bytes.fromhex(hex_address)
    if width == 8:
        return str(ipaddress.IPv4Address(raw[::-1]))
    return str(ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))))
