"""deploy/compose comes up under podman-compose with the tier's images, and goes down cleanly.

``podman-compose -f deploy/compose/docker-compose.yml -f tests/containers/compose.override.yml``:
pulpinit's services as written, on the tier's images, in one network namespace of this test's own
(loopback only: the service names map to 127.0.0.1), SecantusDB and Debian's rabbitmq-server as
``db`` and ``msg``.  The test checks that the migration runs once, that every role reaches its
stand-in (celery, crane's httpd) or apache2, that the API answers over TLS with the keys the pki
service made; then it stops one worker, then the whole deployment, and reads every container's
exit code and stop time.  The timeline and the stop times go to the terminal summary.

podman 4.3 cannot start a container whose ``--requires`` chain is two deep (beat requires migrate,
which requires db: "not found in input list"), so podman-compose runs podman through a wrapper
that drops ``--requires``; the order is podman-compose's own (it waits for each dependency's
condition before it starts a service).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import testimages
from helpers.podman import Container, environ, podman, wait_for

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
OVERRIDE = ROOT / "tests" / "containers" / "compose.override.yml"
ROLES = {"beat": "beat", "resource-manager": "worker", "worker-0": "worker", "worker-1": "worker"}
PULPINIT_SERVICES = ("pki", "migrate", *ROLES, "api", "crane")
#: Drops podman-compose's --requires (see the module docstring), passes everything else to podman.
WRAPPER = """#!/bin/sh
for arg; do
    shift
    case "$arg" in --requires=*) continue ;; esac
    set -- "$@" "$arg"
done
exec podman "$@"
"""
#: The client that checks the API from inside the deployment's network namespace.
TLS_CLIENT = """
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[1])
with context.wrap_socket(socket.create_connection(("127.0.0.1", 443), timeout=5), server_hostname="localhost") as tls:
    tls.sendall(b"GET /pulp/api/v2/status/ HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n")
    answer = b""
    while chunk := tls.recv(65536):
        answer += chunk
print(answer.decode().split("\\r\\n", 1)[0], tls.version())
"""


def podman_compose() -> Path:
    """podman-compose, as ``make test-containers`` installs it (PODMAN_COMPOSE names it; else the newest
    one in the tier's cache directory)."""
    named = os.environ.get("PODMAN_COMPOSE")
    found = [Path(named)] if named else sorted(testimages.cache_dir().glob("podman-compose-*/bin/podman-compose"))
    if not found or not found[-1].exists():
        pytest.fail(f"podman-compose is not installed ({named or testimages.cache_dir()}): run `make test-containers`")
    return found[-1]


class Deployment:
    """One Compose project in a network namespace of its own."""

    def __init__(self, images: dict[str, str], workdir: Path) -> None:
        self.project = f"pulpinit-test-{uuid.uuid4().hex[:8]}"
        self.netns = self.project
        wrapper = workdir / "podman"
        wrapper.write_text(WRAPPER)
        wrapper.chmod(0o755)
        self.command = [str(podman_compose()), "--podman-path", str(wrapper), "-p", self.project]
        self.command += ["-f", str(COMPOSE), "-f", str(OVERRIDE)]
        self.env = environ({**testimages.compose_variables(images), "PULPINIT_TEST_NETNS": f"/run/netns/{self.netns}"})

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.command, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"podman-compose {' '.join(args)}: {done.stderr[-3000:]}"
        return done

    def container(self, service: str) -> Container:
        return Container(f"{self.project}_{service}_1")

    def volume(self, name: str) -> Path:
        inspected = podman("volume", "inspect", f"{self.project}_{name}", "--format", "{{.Mountpoint}}")
        return Path(inspected.stdout.strip())

    def in_netns(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv], capture_output=True, text=True, timeout=30, check=False
        )

    def __enter__(self) -> Deployment:
        subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True, capture_output=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(
            [*self.command, "down", "--volumes", "-t", "5"], env=self.env, capture_output=True, timeout=300, check=False
        )
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True, check=False)


def moment(text: str) -> float:
    """A pulpinit timestamp (RFC 3339) or podman's (``2026-01-01 10:00:00.123456789 +0000 UTC``), in epoch seconds."""
    text = text.replace(" +0000 UTC", "Z").replace(" ", "T")
    whole, _, rest = text.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6] or "0"
    stamp = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp() + float(f"0.{fraction}")


def first_event(container: Container, name: str) -> dict[str, Any] | None:
    return next((e for e in container.events() if e.get("event") == name), None)


def timeline(deployment: Deployment, api_answered: float) -> list[tuple[float, str]]:
    """What happened when, from the containers' own records: starts, exits, pulpinit's events."""
    found = [(api_answered, "API answered over TLS (first try that succeeded)")]
    for service in ("pki", "db", "msg", *PULPINIT_SERVICES[1:]):
        state = deployment.container(service).state
        found.append((moment(state["StartedAt"]), f"{service} started"))
        if not state["Running"]:
            found.append((moment(state["FinishedAt"]), f"{service} exited {state['ExitCode']}"))
    for event in deployment.container("migrate").events():
        if event.get("event") in ("dep.up", "migration.start", "migration.done"):
            what = f"{event['event']} {event.get('dependency', '')}".strip()
            found.append((moment(event["timestamp"]), f"migrate: {what}"))
    for service in (*ROLES, "api"):
        handoff = first_event(deployment.container(service), "handoff.exec")
        assert handoff, service
        found.append((moment(handoff["timestamp"]), f"{service}: handoff.exec"))
    return sorted(found)


@pytest.fixture
def deployment(images, tmp_path) -> Iterator[Deployment]:
    if shutil.which("ip") is None:
        pytest.fail("ip (iproute2) is not installed: run `make test-containers`")
    with Deployment(images, tmp_path) as made:
        yield made


def test_the_compose_deployment_comes_up_migrates_once_and_stops_cleanly(deployment, figures):
    started = time.time()
    deployment.compose("up", "-d")
    up_s = time.time() - started
    for service, kind in ROLES.items():
        line = deployment.container(service).expect("celery argv: ", timeout=120)
        assert json.loads(line.split("celery argv: ", 1)[1])[1] == kind
    crane = deployment.container("crane")
    assert json.loads(crane.expect("httpd argv: ").split("httpd argv: ", 1)[1])[1:] == ["-DFOREGROUND"]

    # The API answers over TLS with the deployment's keys (made by the pki service into pulp-keys).
    ca = deployment.volume("pulp-keys") / "ca.crt"
    answered = wait_for(
        "the API answering over TLS",
        lambda: (done := deployment.in_netns(sys.executable, "-c", TLS_CLIENT, str(ca))).returncode == 0 and done,
        timeout=60,
        interval=0.2,
    )
    api_answered = time.time()
    assert answered.stdout.startswith("HTTP/1.1 200 OK"), answered.stdout + answered.stderr
    api = deployment.container("api")
    handoff = first_event(api, "handoff.exec")
    assert handoff and handoff["argv"][:2] == ["/usr/sbin/apache2", "-DFOREGROUND"]

    # The migration ran once: the migrate service's pulp-manage-db, and nobody else's.
    runs = (deployment.volume("pulp-storage") / "manage-db-runs.log").read_text().splitlines()
    assert [line.split()[1:3] for line in runs] == [["48", "start"], ["end", "0"]], runs
    migrate = deployment.container("migrate")
    assert migrate.exit_code == 0 and first_event(migrate, "migration.done")
    for service in (*ROLES, "api"):
        events = deployment.container(service).events()
        assert not [e for e in events if e.get("event") == "migration.start"], service
        assert [e for e in events if e.get("event") in ("migration.skipped", "migration.ready")], service

    figures.append(f"compose: `podman-compose up -d` returned after {up_s:.1f} s; timeline from its start:")
    figures += [f"compose   +{at - started:6.2f} s  {what}" for at, what in timeline(deployment, api_answered)]

    # One worker, then the whole deployment.
    worker = deployment.container("worker-1")
    stopping = time.time()
    deployment.compose("stop", "worker-1")
    worker_s = time.time() - stopping
    assert worker.exit_code == 0 and worker.has("SIGTERM received: warm shutdown")
    assert deployment.container("worker-0").running
    figures.append(
        f"compose stop worker-1: exit {worker.exit_code}, `podman-compose stop worker-1` took {worker_s:.2f} s"
    )
    stopping = time.time()
    deployment.compose("stop")
    all_s = time.time() - stopping
    figures.append(f"compose stop (everything): `podman-compose stop` took {all_s:.2f} s; per container:")
    for service in ("db", "msg", "beat", "resource-manager", "worker-0", "api", "crane"):
        state = deployment.container(service).state
        stop_s = moment(state["FinishedAt"]) - stopping
        figures.append(f"compose   {service:<17} exit {state['ExitCode']:>3}  stopped {stop_s:.2f} s after the stop")
        assert not state["Running"], service
        assert state["ExitCode"] == 0, (service, deployment.container(service).lines()[-10:])
        assert stop_s < 15, service
    assert api.has("caught SIGWINCH, shutting down gracefully")
