"""A rolling upgrade of a whole Pulp deployment, simulated with real processes.

No cluster here, so the harness plays Kubernetes as closely as one machine allows:

* **pods** are real ``pulpinit`` processes, each PID 1 of its own PID and UTS namespace
  (``unshare --pid --uts --fork --mount-proc``), the host name set to the pod name — the worker
  number comes from it, as in a StatefulSet — with the role's environment, against one MongoDB
  peer (the fake or SecantusDB) and the fake broker.  Each container start gets a fresh copy of
  the image's server.conf, as a container does.  Pulp's programs are the stand-ins of
  :mod:`pulpinit.testing.pulpstandin`: celery heartbeats into ``workers`` every second (the
  shrunken ``[tasks] worker_timeout`` of 5 s, set through ``PULP_CONF__TASKS__WORKER_TIMEOUT``)
  and deletes its document on the warm shutdown; pulp-manage-db applies Pulp >= 2.12's refusal
  rule with the shrunken ``MIGRATION_WAIT_TIME`` and keeps a schema version;
* a **kubelet** thread per pod restarts its container when it exits (``restartPolicy: Always``),
  after a CrashLoopBackOff-like delay that doubles; a stop is SIGTERM to the namespace's PID 1,
  SIGKILL after the grace period; a pod's readiness is what the manifests' probe runs,
  ``pulpinit check-deps --timeout 0.9``, inside the pod's namespaces (``nsenter``);
* **controllers** do what applying new manifests does, all at once: beat and the resource
  manager are Deployments with ``strategy: Recreate`` (the old pod is gone before the new one
  starts); the workers a StatefulSet's rolling update (ordinal descending, the next pod only
  once the updated one is Ready); the migration a new Job per version (``pulp-migrate-<tag>``,
  ``restartPolicy: Never``, retried with a doubling back-off up to ``backoffLimit``, failed at
  once on exit 64 or 78 as the manifest's ``podFailurePolicy`` says) — or no Job at all
  (``job=False``: beat migrates);
* a **drain** (:meth:`Cluster.evict`) evicts a pod from its node: SIGTERM to its PID 1, SIGKILL
  after the grace period, and its controller creates a replacement elsewhere.

The ``2014`` mode runs the same controllers with the 2014 images' entrypoint instead of
pulpinit: beat runs pulp-manage-db (exit code unchecked) and then celery beat, every other role
starts celery at once, and there is no Job and no readiness probe (Ready = running).

Every time is the machine's CLOCK_MONOTONIC (the stand-ins record theirs on it too).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.mongo_peers import MongoPeer, environ_without_pulp, wait_for
from helpers.pace import argv as paced
from helpers.processes import children
from helpers.workdirs import reachable
from pulpinit.testing import SAMPLE_CONF, standins
from pulpinit.testing.keys import keys_env, make_keys, reader_group

WORKERS = 3
ROLES = ("beat", "resource-manager", "worker")


@dataclass(frozen=True)
class Version:
    """One image version: its tag (= the migration fingerprint) and what its pulp-manage-db does."""

    tag: str
    schema: int  # the stand-in pulp-manage-db's schema version
    manage_db_exit: int = 0  # not 0: the migration fails before changing anything


@dataclass(frozen=True)
class Timing:
    """The shrunken times of the simulation, each with the real value it stands for."""

    worker_timeout: int = 5  # [tasks] worker_timeout (30): a heartbeat every worker_timeout / 5 = 1 s (6 s)
    quiet_s: float = 3.0  # PULPINIT_QUIET_SECONDS and the stand-in's MIGRATION_WAIT_TIME (92 s)
    migration_s: float = 0.3  # what the stand-in pulp-manage-db takes to migrate
    shutdown_s: float = 1.0  # a worker's warm shutdown: its running task finishing (up to minutes)
    grace_s: float = 10.0  # terminationGracePeriodSeconds (60 s, workers 300 s)
    probe_period_s: float = 0.3  # readiness probe period (15 s)
    crash_backoff_s: float = 1.0  # the kubelet's CrashLoopBackOff: 10 s doubling to 300 s
    job_backoff_s: float = 1.0  # a Job's pod failure back-off: 10 s doubling to 6 min
    backoff_limit: int = 6  # the Job's backoffLimit
    migration_timeout_s: float = 60.0  # PULPINIT_MIGRATION_TIMEOUT (600 s)

    @classmethod
    def scaled(cls, divisor: float) -> Timing:
        """Every time of a real deployment divided by ``divisor`` (the benchmark's uniform scale).

        Real values: worker_timeout 30 s, MIGRATION_WAIT_TIME 92 s, a migration of 30 s, a warm
        shutdown finishing a 30 s task, 300 s grace, a 15 s probe period, 10 s back-offs, 600 s
        migration timeout.
        """
        return cls(
            worker_timeout=max(1, round(30 / divisor)),
            quiet_s=92 / divisor,
            migration_s=30 / divisor,
            shutdown_s=30 / divisor,
            grace_s=300 / divisor,
            probe_period_s=15 / divisor,
            crash_backoff_s=10 / divisor,
            job_backoff_s=10 / divisor,
            migration_timeout_s=600 / divisor,
        )


@dataclass
class Container:
    """One start of a pod's container: when, how it ended, what it printed."""

    pod: str
    role: str
    version: str
    root: Path  # its files: server.conf
    started: float
    pid1: int | None = None  # the namespace's PID 1, seen from here
    ended: float | None = None
    code: int | None = None
    stopped: bool = False  # ended because a controller deleted (or killed) its pod
    lines: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """A failed start: it ended by itself with an error (what CrashLoopBackOff counts)."""
        return self.ended is not None and not self.stopped and self.code != 0

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def error(self) -> str:
        """The ``pulpinit.error`` line's message, or ""."""
        found = [e.get("error", "") for e in self.events() if e.get("event") == "pulpinit.error"]
        return str(found[-1]) if found else ""


def _suffix() -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=5))


class Pod:
    """One pod and its kubelet: starts the container, restarts it, stops it, probes it."""

    def __init__(self, cluster: Cluster, name: str, role: str, version: Version, *, restart: bool = True) -> None:
        self.cluster = cluster
        self.name = name
        self.role = role
        self.version = version
        self.restart = restart  # restartPolicy Always (Deployments, StatefulSets) or Never (Jobs)
        self.containers: list[Container] = []
        self._deleting = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._kubelet, name=f"kubelet-{name}", daemon=True)
        self._thread.start()

    # -- the kubelet ------------------------------------------------------------------------
    def _kubelet(self) -> None:
        delay = self.cluster.timing.crash_backoff_s
        while not self._deleting.is_set():
            container = self._start()
            self._wait(container)
            if self._deleting.is_set() or not self.restart:
                return
            # restartPolicy Always: again, after a back-off that doubles while it keeps failing
            if self._deleting.wait(delay if container.failed else 0.0):
                return
            delay = min(delay * 2, self.cluster.timing.crash_backoff_s * 32) if container.failed else delay

    def _start(self) -> Container:
        cluster = self.cluster
        root = cluster.root / "pods" / f"{self.name}.{next(cluster.serial)}"
        root.mkdir(parents=True)
        root.chmod(0o755)
        shutil.copy(SAMPLE_CONF, root / "server.conf")  # the image's server.conf, fresh for every start
        env = cluster.environment(self, root / "server.conf")
        argv = [
            "unshare",
            "--pid",
            "--uts",
            "--fork",
            "--mount-proc",
            "--",
            "/bin/sh",
            "-c",
            'hostname "$0" && exec "$@"',
            self.name,
            *cluster.command(self, root / "server.conf"),
        ]
        container = Container(self.name, self.role, self.version.tag, root, time.monotonic())
        with self._lock:
            self.containers.append(container)
            self._proc = subprocess.Popen(
                argv,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = self._proc
        threading.Thread(target=self._read, args=(proc, container), daemon=True).start()
        deadline = time.monotonic() + 10
        while container.pid1 is None and time.monotonic() < deadline and proc.poll() is None:
            found = children(proc.pid)
            if found:
                container.pid1 = found[0]
            else:
                time.sleep(0.005)
        return container

    @staticmethod
    def _read(proc: subprocess.Popen[str], container: Container) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            container.lines.append(line.rstrip("\n"))

    def _wait(self, container: Container) -> None:
        assert self._proc is not None
        code = self._proc.wait()
        container.ended = time.monotonic()
        container.code = code

    # -- what controllers do ------------------------------------------------------------------
    @property
    def current(self) -> Container | None:
        return self.containers[-1] if self.containers else None

    def running(self) -> bool:
        current = self.current
        return current is not None and current.ended is None and current.pid1 is not None

    def ready(self) -> bool:
        """Running, and its readiness probe passes (2014: no probe, running is ready)."""
        current = self.current
        if not self.running() or current is None or current.pid1 is None:
            return False
        if self.cluster.mode == "2014":
            return True
        probe = subprocess.run(
            ["nsenter", "--target", str(current.pid1), "--uts", "--pid", "--mount", "--", *self.cluster.python,
             "-m", "pulpinit", "check-deps", "--timeout", "0.9"],
            env=self.cluster.environment(self, current.root / "server.conf"),
            capture_output=True,
            timeout=10,
            check=False,
        )  # fmt: skip
        return probe.returncode == 0 and self.running()

    def _signal_pid1(self, signum: int) -> subprocess.Popen[str] | None:
        """Stop restarting; send ``signum`` to the running container's PID 1; its process, if it runs."""
        self._deleting.set()
        with self._lock:
            current, proc = self.current, self._proc
        if current is None or current.ended is not None or proc is None:
            return None
        current.stopped = True
        if current.pid1 is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(current.pid1, signum)  # SIGKILL: the kernel ends the whole namespace
        return proc

    def delete(self) -> None:
        """Delete the pod: SIGTERM to PID 1, SIGKILL after the grace period; returns once it is gone."""
        proc = self._signal_pid1(signal.SIGTERM)
        if proc is not None:
            try:
                proc.wait(self.cluster.timing.grace_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._thread.join(30)

    def kill(self) -> None:
        """SIGKILL the pod's processes (a lost node, or the end of the grace period); no restart."""
        proc = self._signal_pid1(signal.SIGKILL)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def wait_finished(self, timeout: float) -> None:
        self._thread.join(timeout)


class Job:
    """A Job ``pulp-migrate-<tag>``: pods of ``pulpinit migrate`` until one succeeds, or the limit."""

    def __init__(self, cluster: Cluster, version: Version) -> None:
        self.cluster = cluster
        self.version = version
        self.name = f"pulp-migrate-{version.tag}"
        self.pods: list[Pod] = []
        self.outcome: str | None = None  # "Complete" | "Failed"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._control, name=f"job-{self.name}", daemon=True)
        self._thread.start()

    def _control(self) -> None:
        timing = self.cluster.timing
        for attempt in range(timing.backoff_limit + 1):
            if self._stop.is_set():
                return
            pod = Pod(self.cluster, f"{self.name}-{_suffix()}", "migrate", self.version, restart=False)
            self.pods.append(pod)
            pod.wait_finished(600)
            code = pod.current.code if pod.current else None
            if code == 0:
                self.outcome = "Complete"
                return
            if code in (64, 78):  # podFailurePolicy: FailJob
                break
            if self._stop.wait(timing.job_backoff_s * 2**attempt):
                return
        self.outcome = "Failed"

    def stop(self) -> None:
        """Start no more pods (the pods it started are the cluster's to kill)."""
        self._stop.set()


class Cluster:
    """The deployment: beat, the resource manager, ``WORKERS`` workers and the migration Jobs."""

    def __init__(
        self,
        peer: MongoPeer,
        broker_url: str,
        *,
        mode: str = "pulpinit",
        timing: Timing | None = None,
        knobs: dict[str, str] | None = None,
        job: bool = True,
    ) -> None:
        assert mode in ("pulpinit", "2014")
        self.job = job and mode == "pulpinit"  # a migration Job per version (else beat migrates)
        self.peer = peer
        self.broker_url = broker_url
        self.mode = mode
        self.timing = timing or Timing()
        self.knobs = dict(knobs or {})
        self._stack = contextlib.ExitStack()
        self.root = self._stack.enter_context(reachable("rollout", sample=False))
        self.root.chmod(0o777)  # the stand-ins record their runs here as nobody
        self.bin = self.root / "bin"
        self.bin.mkdir()
        self.bin.chmod(0o755)
        libs = standins.libraries(self.bin)
        standins.write_celery(self.bin, libs)
        standins.write_manage_db(self.bin, libs)
        standins.write_pre_migrate(self.bin)
        self.keys = make_keys(self.root / "keys", group=reader_group())  # the Secret pulp-keys
        self.records = self.root / "records"
        self.records.mkdir()
        self.records.chmod(0o777)
        self.python = [sys.executable]
        self.serial = itertools.count()  # a directory of its own for every container
        self.pods: dict[str, Pod] = {}  # the current pod of each workload slot ("beat", "worker-2", ...)
        self.retired: list[Pod] = []
        self.jobs: dict[str, Job] = {}
        self._controllers: list[threading.Thread] = []

    # -- bookkeeping ------------------------------------------------------------------------------
    def containers(self) -> list[Container]:
        every = [c for pod in self.every_pod() for c in pod.containers]
        return sorted(every, key=lambda c: c.started)

    def every_pod(self) -> list[Pod]:
        jobs = [pod for job in self.jobs.values() for pod in job.pods]
        return [*self.retired, *self.pods.values(), *jobs]

    @property
    def celery_runs_file(self) -> Path:
        return self.records / "celery.log"

    def manage_db_runs_file(self, tag: str) -> Path:
        return self.records / f"manage-db-{tag}.log"

    @property
    def pre_migrate_runs_file(self) -> Path:
        return self.records / "pre-migrate.log"

    # -- what a pod runs ----------------------------------------------------------------------------
    def environment(self, pod: Pod, conf: Path) -> dict[str, str]:
        timing, version = self.timing, pod.version
        env = environ_without_pulp()
        env.update(
            {
                "HOSTNAME": pod.name,  # Kubernetes sets it to the pod name; beat and the Job take it from fieldRef
                "PULPINIT_CONFIG": str(conf),
                "PULPINIT_LOG_FORMAT": "json",
                **self.peer.env(),
                "PULP_BROKER_URL": self.broker_url,
                "PULP_CONF__TASKS__WORKER_TIMEOUT": str(timing.worker_timeout),
                "PULPINIT_USER": "nobody",
                "PULPINIT_CELERY": str(self.bin / "celery"),
                "PULPINIT_MANAGE_DB": str(self.bin / "pulp-manage-db"),
                "PULPINIT_MIGRATION_FINGERPRINT": version.tag,
                "PULPINIT_MIGRATION_TIMEOUT": f"{timing.migration_timeout_s:g}",
                "PULPINIT_QUIET_SECONDS": f"{timing.quiet_s:g}",
                "PULPINIT_WAIT_TIMEOUT": "30",
                "STANDIN_HEARTBEAT": "1",
                "STANDIN_VERSION": version.tag,
                "STANDIN_CELERY_RUNS": str(self.celery_runs_file),
                "STANDIN_SHUTDOWN_SECONDS": f"{timing.shutdown_s:g}",
                "STANDIN_RUNS": str(self.manage_db_runs_file(version.tag)),
                "STANDIN_MIGRATION_WAIT": f"{timing.quiet_s:g}",
                "STANDIN_SCHEMA": str(version.schema),
                "STANDIN_SECONDS": f"{timing.migration_s:g}",
                "STANDIN_EXIT": str(version.manage_db_exit),
                "STANDIN_PRE_MIGRATE_RUNS": str(self.pre_migrate_runs_file),
                **keys_env(self.keys),  # the workers check their message-signing pair
                **self.knobs,
            }
        )
        return env

    def command(self, pod: Pod, conf: Path) -> list[str]:
        if self.mode == "pulpinit":
            return [*paced(log_interval=1), pod.role]  # a progress line every second, for the test's eyes
        conf.write_text(  # what the 2014 configure script's augtool calls wrote
            f"[database]\nseeds: {self.peer.hostport}\nname: {self.peer.database}\n\n"
            f"[tasks]\nworker_timeout: {self.timing.worker_timeout}\n"
        )
        return ["/bin/sh", "-c", self._script_2014(pod)]

    def _script_2014(self, pod: Pod) -> str:
        """The 2014 images' run.sh: pulp-manage-db on every beat start (exit code unchecked), runuser."""
        as_user = "runuser -u nobody --"
        celery = f"{self.bin / 'celery'}"
        node = '"$(hostname)"'
        if pod.role == "beat":
            run = f"{as_user} {self.bin / 'pulp-manage-db'}; exec {as_user} {celery} beat"
        elif pod.role == "resource-manager":
            run = f"exec {as_user} {celery} worker -n resource_manager@{node} -Q resource_manager"
        else:
            number = pod.name.rsplit("-", 1)[1]
            run = f"exec {as_user} {celery} worker -n reserved_resource_worker-{number}@{node}"
        return run

    # -- workloads --------------------------------------------------------------------------------
    def slots(self) -> list[tuple[str, str]]:
        """(slot, role) of every long-running pod: beat, resource manager, workers 0..N-1."""
        return [("beat", "beat"), ("resource-manager", "resource-manager")] + [
            (f"worker-{n}", "worker") for n in range(WORKERS)
        ]

    def _new_pod(self, slot: str, role: str, version: Version) -> Pod:
        # a StatefulSet's pods keep their names (pulp-worker-N); a Deployment's get new ones
        name = f"pulp-{slot}" if role == "worker" else f"pulp-{slot}-{_suffix()}"
        pod = Pod(self, name, role, version)
        self.pods[slot] = pod
        return pod

    def _retire(self, slot: str, *, kill: bool = False) -> None:
        pod = self.pods.pop(slot, None)
        if pod is not None:
            self.retired.append(pod)
            pod.kill() if kill else pod.delete()

    def _recreate(self, slot: str, role: str, version: Version) -> None:
        """Deployment ``strategy: Recreate``: the old pod is gone before the new one is created."""
        self._retire(slot)
        self._new_pod(slot, role, version)

    def _rolling_update(self, version: Version, kill_ordinal: int | None, deadline: float) -> None:
        """StatefulSet RollingUpdate: ordinal descending, the next once the updated pod is Ready."""
        for ordinal in reversed(range(WORKERS)):
            slot = f"worker-{ordinal}"
            current = self.pods.get(slot)
            if current is not None and current.version == version:
                continue
            self._retire(slot, kill=ordinal == kill_ordinal)
            pod = self._new_pod(slot, "worker", version)
            while not pod.ready():
                if time.monotonic() > deadline:
                    return
                time.sleep(self.timing.probe_period_s)

    def apply(self, version: Version, *, kill_ordinal: int | None = None, timeout: float = 120) -> float:
        """``kubectl apply`` of the manifests with ``version``'s image tag; returns when it was applied.

        The controllers then run at once: a new Job (unless one of this version exists: a Job is
        never re-run), beat and the resource manager recreated, the workers rolled.  With
        ``kill_ordinal`` that old worker is SIGKILLed (a lost node) instead of being stopped.
        """
        applied = time.monotonic()
        deadline = applied + timeout
        if self.job and version.tag not in self.jobs:
            self.jobs[version.tag] = Job(self, version)
        threads = [
            threading.Thread(target=self._recreate, args=("beat", "beat", version), daemon=True),
            threading.Thread(
                target=self._recreate, args=("resource-manager", "resource-manager", version), daemon=True
            ),
            threading.Thread(target=self._rolling_update, args=(version, kill_ordinal, deadline), daemon=True),
        ]
        for thread in threads:
            thread.start()
        self._controllers = threads
        return applied

    def evict(self, slot: str) -> None:
        """A node drain: the pod in ``slot`` is deleted (SIGTERM, grace period) and its controller replaces it."""
        pod = self.pods[slot]
        self._recreate(slot, pod.role, pod.version)

    def settle(self, timeout: float = 120) -> None:
        """Wait until the controllers of the last :meth:`apply` are through (the rollout is done)."""
        deadline = time.monotonic() + timeout
        for thread in self._controllers:
            thread.join(max(0.0, deadline - time.monotonic()))

    def install(self, version: Version, timeout: float = 60) -> None:
        """The first deployment: the Job and every role at once (2014: beat first, then the rest)."""
        if self.mode == "2014":
            self._new_pod("beat", "beat", version)
            wait_until(lambda: bool(self.celery_running("beat", version)), timeout, "the 2014 beat")
            self._new_pod("resource-manager", "resource-manager", version)
            for n in range(WORKERS):
                self._new_pod(f"worker-{n}", "worker", version)
        else:
            if self.job:
                self.jobs[version.tag] = Job(self, version)
            for slot, role in self.slots():
                self._new_pod(slot, role, version)
        wait_until(lambda: self.all_on(version), timeout, f"every role running {version.tag}")

    # -- what ran ---------------------------------------------------------------------------------
    def expected_name(self, slot: str, pod: Pod) -> str:
        if slot == "beat":
            return f"scheduler@{pod.name}"
        if slot == "resource-manager":
            return f"resource_manager@{pod.name}"
        return f"reserved_resource_worker-{slot.rsplit('-', 1)[1]}@{pod.name}"

    def celery_running(self, slot: str, version: Version) -> list[standins.CeleryRun]:
        pod = self.pods.get(slot)
        if pod is None or not pod.running():
            return []
        name = self.expected_name(slot, pod)
        return [
            run
            for run in standins.celery_runs(self.celery_runs_file)
            if run.name == name and run.version == version.tag and run.ended is None
        ]

    def all_on(self, version: Version) -> bool:
        """Every role's current pod runs the celery of ``version``."""
        return all(self.celery_running(slot, version) for slot, _ in self.slots())

    def wait_all_on(self, version: Version, timeout: float) -> float:
        """Wait until :meth:`all_on`; returns the moment it first held (monotonic)."""
        wait_until(lambda: self.all_on(version), timeout, f"every role running {version.tag}", self.diagnosis)
        return time.monotonic()

    def failed_starts(self) -> list[Container]:
        return [c for c in self.containers() if c.failed]

    def diagnosis(self) -> str:
        lines = []
        for c in self.containers():
            lines.append(
                f"{c.pod} [{c.version}] started {c.started:.2f} ended {c.ended} code {c.code} stopped {c.stopped}"
            )
            lines += [f"    {line[:300]}" for line in c.lines[-6:]]
        return "\n".join(lines)

    def shutdown(self) -> None:
        for job in self.jobs.values():
            job.stop()
        for pod in self.every_pod():
            pod.kill()
        self._stack.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()


@dataclass(frozen=True)
class Outcome:
    """One measured upgrade from ``old`` to ``new``."""

    seconds: float | None  # from "applied" to every role running the new celery (None: not in time)
    failed_starts: int  # containers that exited non-zero by themselves (each a CrashLoopBackOff step)
    refused: int  # pulp-manage-db runs of the new version that ended 70 (workers still heartbeating)
    runs: int  # pulp-manage-db runs of the new version
    migrated: bool  # the database is at the new schema
    pending: int = 0  # containers that exited 75 (migrations not done: a manual step was needed)

    @classmethod
    def of(cls, cluster: Cluster, new: Version, seconds: float | None) -> Outcome:
        runs = standins.parsed_runs_file(cluster.manage_db_runs_file(new.tag))
        return cls(
            seconds,
            len(cluster.failed_starts()),
            sum(1 for run in runs if run.code == 70),
            len(runs),
            standins.schema_version(cluster.peer.uri, cluster.peer.database) == new.schema,
            sum(1 for c in cluster.containers() if c.code == 75),
        )


def measure_upgrade(
    cluster: Cluster, old: Version, new: Version, *, timeout: float = 180, kill_ordinal: int | None = None
) -> Outcome:
    """Install ``old``, apply ``new`` and measure until every role runs it (or ``timeout``)."""
    cluster.install(old)
    applied = cluster.apply(new, kill_ordinal=kill_ordinal)
    return _until_all_on(cluster, new, applied, timeout)


def _until_all_on(cluster: Cluster, new: Version, applied: float, timeout: float) -> Outcome:
    """The outcome once every role runs ``new`` (seconds from ``applied``) or at ``timeout``, controllers settled."""
    try:
        seconds: float | None = cluster.wait_all_on(new, timeout) - applied
    except AssertionError:
        seconds = None
    cluster.settle(30)
    return Outcome.of(cluster, new, seconds)


def measure_drain(cluster: Cluster, old: Version, new: Version, *, timeout: float = 180) -> Outcome:
    """Install ``old``, apply ``new``, and drain beat's node while its pulp-manage-db of ``new`` runs.

    Measured as :func:`measure_upgrade`: from "applied" until every role runs ``new``, with no
    manual step in between (the replacement beat resumes the interrupted migration on its own).
    """
    cluster.install(old)
    applied = cluster.apply(new)
    runs = cluster.manage_db_runs_file(new.tag)
    wait_until(
        lambda: any(run.ended is None for run in standins.parsed_runs_file(runs)),
        timeout,
        f"beat's pulp-manage-db of {new.tag} running",
        cluster.diagnosis,
    )
    cluster.evict("beat")
    return _until_all_on(cluster, new, applied, timeout)


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, explain: Callable[[], str] | None = None
) -> None:
    """:func:`helpers.mongo_peers.wait_for`, with ``explain()`` (what the pods did) when it fails."""
    try:
        wait_for(predicate, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{explain() if explain else ''}") from None


def overlaps(intervals: list[tuple[float, float]]) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Pairs of intervals that overlap."""
    ordered = sorted(intervals)
    return [(a, b) for a, b in itertools.pairwise(ordered) if b[0] < a[1]]
