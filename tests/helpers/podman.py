"""podman, as the container tier drives it: the command, whether it can run here, and one container.

Every call goes through :func:`podman` with ``CONTAINERS_CONF`` naming
``tests/containers/containers.conf`` (runc, limits the sandbox can grant), so the machine's own
configuration is neither needed nor changed.  :func:`unavailable_reason` says why podman cannot run
a container here, or None: it imports a one-file image made of the host's ``/usr/bin/true`` and the
libraries it loads, and runs it.

:class:`Container` is one ``podman run -d``: its log (``k8s-file``, read straight from the file
podman writes, so waiting for a line costs no podman call), its pulpinit events, and the ways it
ends — ``podman stop`` / ``kill`` / ``pause`` — with the exit code and the time each took.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "tests" / "containers" / "containers.conf"
#: What the tier needs on the host besides podman itself.
TOOLS = ("podman", "runc", "mmdebstrap", "ip")
PREFIX = "localhost/pulpinit-test"


def environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every podman call (and of podman-compose, which calls podman)."""
    return {**os.environ, "CONTAINERS_CONF": str(CONF), **(extra or {})}


def podman(
    *args: str, timeout: float = 120, check: bool = True, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS`` (``stdin``: bytes to feed it); with ``check``, a failure raises with podman's stderr."""
    done = subprocess.run(
        ["podman", *args], env=environ(), input=stdin, capture_output=True, timeout=timeout, check=False
    )
    result = subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:6])}: exit {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result


def _probe_tar() -> bytes:
    """A root filesystem with /usr/bin/true and the shared libraries it loads (from ``ldd``)."""
    true = Path("/usr/bin/true")
    libraries = subprocess.run(["ldd", str(true)], capture_output=True, text=True, check=True).stdout
    paths = [true, *(Path(word) for line in libraries.splitlines() for word in line.split() if word.startswith("/"))]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in paths:
            info = tar.gettarinfo(str(path.resolve()), arcname=str(path).lstrip("/"))
            info.mtime = 0
            with path.open("rb") as data:
                tar.addfile(info, data)
    return buffer.getvalue()


def unavailable_reason() -> str | None:
    """Why the container tier cannot run here, or None (podman ran a container)."""
    if os.geteuid() != 0:
        return "the container tier runs rootful podman: run it as root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (`make test-containers` installs them as root on Debian)"
    info = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=60)
    if info.returncode != 0:
        return f"podman info fails: {info.stderr.strip()[-500:]}"
    tar = _probe_tar()
    image = f"{PREFIX}/probe:{hashlib.sha256(tar).hexdigest()[:16]}"
    if podman("image", "exists", image, check=False).returncode != 0:
        imported = podman("import", "-", image, stdin=tar, check=False)
        if imported.returncode != 0:
            return f"podman import fails: {imported.stderr.strip()[-500:]}"
    ran = podman("run", "--rm", "--network", "none", image, "/usr/bin/true", check=False, timeout=60)
    if ran.returncode != 0:
        return f"podman cannot run a container here: {ran.stderr.strip()[-500:]}"
    return None


def security_context(manifest: str) -> dict[str, Any]:
    """The securityContext of the pulpinit container in ``deploy/kubernetes/MANIFEST``."""
    import yaml  # type: ignore[import-untyped]  # (PyYAML comes with kubernetes-validate, without stubs)

    docs = [doc for doc in yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / manifest).read_text()) if doc]
    [workload] = [doc for doc in docs if doc["kind"] in ("Deployment", "StatefulSet", "Job")]
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return dict(container["securityContext"])


def security_options(context: Mapping[str, Any]) -> list[str]:
    """The podman options that give a container this securityContext (capabilities, escalation, user)."""
    capabilities = context["capabilities"]
    options = [f"--cap-drop={','.join(capabilities['drop'])}", f"--cap-add={','.join(capabilities['add'])}"]
    if context.get("allowPrivilegeEscalation") is False:
        options.append("--security-opt=no-new-privileges")
    if "runAsUser" in context:
        options.append(f"--user={context['runAsUser']}")
    return options


def wait_for(what: str, ready: Callable[[], Any], timeout: float = 30, interval: float = 0.02) -> Any:
    """Poll ``ready`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = ready()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout:g} s")
        time.sleep(interval)


class Container:
    """One container started with ``podman run -d`` (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._log: Path | None = None

    @classmethod
    def run(
        cls,
        image: str,
        *command: str,
        env: Mapping[str, str] | None = None,
        options: Sequence[str] = (),
        network: str = "host",
        name: str | None = None,
    ) -> Container:
        """``podman run -d`` on the host's network (every listener of the tests is on 127.0.0.1)."""
        name = name or f"pulpinit-test-{uuid.uuid4().hex[:10]}"
        args = ["run", "-d", "--pull=never", "--name", name, "--network", network, "--log-driver", "k8s-file"]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        podman(*args, *options, image, *command)
        return cls(name)

    def inspect(self) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(podman("container", "inspect", self.name).stdout)
        return found[0]

    @property
    def state(self) -> dict[str, Any]:
        return dict(self.inspect()["State"])

    @property
    def pid(self) -> int:
        """The host PID of the container's PID 1."""
        return int(self.state["Pid"])

    @property
    def running(self) -> bool:
        return bool(self.state["Running"])

    @property
    def exit_code(self) -> int:
        return int(self.state["ExitCode"])

    def lines(self) -> list[str]:
        """Everything it wrote so far, stdout and stderr, one entry per line."""
        if self._log is None:
            self._log = Path(self.inspect()["HostConfig"]["LogConfig"]["Path"])
        lines: list[str] = []
        partial = ""
        with contextlib.suppress(FileNotFoundError):
            for record in self._log.read_text(errors="replace").splitlines():
                parts = record.split(" ", 3)  # TIME STREAM F|P TEXT
                if len(parts) < 3:
                    continue
                text = parts[3] if len(parts) == 4 else ""
                if parts[2] == "P":
                    partial += text
                    continue
                lines.append(partial + text)
                partial = ""
        return lines

    def events(self) -> list[dict[str, Any]]:
        """pulpinit's JSON log lines (PULPINIT_LOG_FORMAT=json) so far."""
        found = []
        for line in self.lines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
        return found

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines())

    def event(self, name: str, timeout: float = 60) -> dict[str, Any]:
        """The first pulpinit event called ``name``; waits for it, and fails at once if the container exits."""

        def find() -> dict[str, Any] | None:
            found = next((e for e in self.events() if e.get("event") == name), None)
            if found is None and not self.running:
                raise AssertionError(f"{self.name} exited ({self.exit_code}) before {name}: {self.lines()[-15:]}")
            return found

        found: dict[str, Any] = wait_for(f"{self.name}: {name}", find, timeout, interval=0.05)
        return found

    def expect(self, text: str, timeout: float = 60) -> str:
        """The first line holding ``text``; waits for it, failing at once if the container exits."""

        def find() -> str | None:
            found = next((line for line in self.lines() if text in line), None)
            if found is None and not self.running:
                raise AssertionError(f"{self.name} exited ({self.exit_code}) before {text!r}: {self.lines()[-15:]}")
            return found

        found: str = wait_for(f"{self.name}: {text!r}", find, timeout, interval=0.05)
        return found

    def stop(self, timeout: int = 30) -> tuple[int, float]:
        """``podman stop -t TIMEOUT``: the container's exit code and the seconds the command took."""
        started = time.monotonic()
        podman("stop", "-t", str(timeout), self.name, timeout=timeout + 60)
        return self.exit_code, time.monotonic() - started

    def kill(self, signal: str) -> None:
        podman("kill", "--signal", signal, self.name)

    def wait(self, timeout: float = 60) -> int:
        """Wait for it to exit by itself; its exit code."""
        wait_for(f"{self.name} exited", lambda: not self.running, timeout, interval=0.05)
        return self.exit_code

    def exec(self, *command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        return podman("exec", *(["--user", user] if user else []), self.name, *command, check=False)

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def remove_all(containers: Iterable[Container]) -> None:
    for container in containers:
        container.remove()
