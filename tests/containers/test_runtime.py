"""The role images under the runtime's constraints: --init and orphans, an arbitrary UID, a
read-only root, the manifests' capabilities with no-new-privileges.

Every container runs the beat image's pipeline for real (against the fakes on the host's
loopback) until the hand-off to the celery stand-in, whose first lines say who it runs as.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from pathlib import Path

import pytest
from helpers.podman import Container, podman, security_context, security_options, wait_for
from helpers.processes import children

ROOT = Path(__file__).resolve().parents[2]
ORPHANS = ROOT / "tests" / "helpers" / "orphans.py"
#: An OpenShift-style UID (a project's range starts at 1000000000), with group 0 as OpenShift gives.
ARBITRARY_UID = 1000770000


def celery_identity(container: Container) -> dict[str, str]:
    """``uid``, ``gid``, ``pid``, ``umask`` from the celery stand-in's second line."""
    line = container.expect("celery uid=")
    return dict(word.split("=", 1) for word in line.split()[1:])


def status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a mapping."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def capability_names(mask: str) -> set[str]:
    """The capability names set in a /proc status mask (CapBnd, CapEff, ...)."""
    names = {
        0: "CHOWN", 1: "DAC_OVERRIDE", 2: "DAC_READ_SEARCH", 3: "FOWNER", 4: "FSETID", 5: "KILL", 6: "SETGID",
        7: "SETUID", 8: "SETPCAP", 9: "LINUX_IMMUTABLE", 10: "NET_BIND_SERVICE", 11: "NET_BROADCAST",
        12: "NET_ADMIN", 13: "NET_RAW", 14: "IPC_LOCK", 15: "IPC_OWNER", 16: "SYS_MODULE", 17: "SYS_RAWIO",
        18: "SYS_CHROOT", 19: "SYS_PTRACE", 20: "SYS_PACCT", 21: "SYS_ADMIN", 22: "SYS_BOOT", 23: "SYS_NICE",
        24: "SYS_RESOURCE", 25: "SYS_TIME", 26: "SYS_TTY_CONFIG", 27: "MKNOD", 28: "LEASE", 29: "AUDIT_WRITE",
        30: "AUDIT_CONTROL", 31: "SETFCAP",
    }  # fmt: skip
    value = int(mask, 16)
    return {name for bit, name in names.items() if value & (1 << bit)} | ({"(above 31)"} if value >> 32 else set())


def zombies_under(pid: int) -> list[int]:
    """The children of ``pid`` (a host PID) that are zombies."""
    found = []
    for child in children(pid):
        with contextlib.suppress(FileNotFoundError):
            if Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                found.append(child)
    return found


@pytest.mark.parametrize("init", [True, False], ids=["init", "exec"])
def test_orphans_are_reaped_under_init_only(init, images, role_env, containers):
    """A command whose children leave orphans behind (tests/helpers/orphans.py): under --init pulpinit
    (PID 1) reaps them; exec'd, the command itself is PID 1 and reaps nobody, so they stay zombies
    (the reason --init exists)."""
    env = role_env(PULPINIT_INIT="1" if init else "0", PULPINIT_MIGRATION_WAIT="false")
    container = Container.run(
        images["base"],
        "run", "--", "/usr/bin/python3", "/orphans.py", "3", "0.2",
        env=env,
        options=["-v", f"{ORPHANS}:/orphans.py:ro"],
    )  # fmt: skip
    containers.append(container)
    if init:
        assert container.wait(60) == 0 and container.has("reaped 3"), container.lines()[-10:]
    else:  # orphans.py, PID 1 now, would wait 30 s for reapers that never come: look from the host
        pid = container.pid
        assert (
            len(
                wait_for(
                    "three zombies under the container's PID 1",
                    lambda: len(zombies_under(pid)) >= 3 and zombies_under(pid),
                )
            )
            == 3
        )
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "python3"  # pulpinit exec'd it: no reaper left


def pulp_volume(tmp_path: Path) -> list[str]:
    """/var/lib/pulp on a host directory everyone may write (as a volume an OpenShift fsGroup or a
    Kubernetes emptyDir gives): pulp-manage-db's stand-in records its runs there."""
    directory = tmp_path / "var-lib-pulp"
    directory.mkdir()
    directory.chmod(0o1777)
    return ["-v", f"{directory}:/var/lib/pulp"]


def test_an_arbitrary_uid_with_the_deployment_guide_s_openshift_modes(images, role_env, containers, tmp_path):
    """The image made as docs/deployment.md's OpenShift bullet says (/etc/pulp 0770 and server.conf 0660, group
    0), run as a UID that is in no passwd file: pulpinit writes server.conf and runs Pulp as that UID."""
    guide = (ROOT / "docs" / "deployment.md").read_text()
    bullet = guide[guide.index("**OpenShift (an arbitrary non-root UID).**") :].split("\n- ", 1)[0]
    commands = re.findall(r"`(chgrp 0 [^`]+)`", bullet)
    assert len(commands) == 2, bullet
    derived = f"openshift-{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text(f"FROM {images['beat']}\nRUN {' && '.join(commands)}\n")
    podman("build", "--network", "none", "--pull=never", "--format", "docker", "-t", derived, str(tmp_path))
    try:
        env = role_env(PULP_SERVER_NAME="pulp.openshift.example.com")
        container = Container.run(
            derived,
            env=env,
            options=[f"--user={ARBITRARY_UID}:0", *pulp_volume(tmp_path)],
        )
        containers.append(container)
        identity = celery_identity(container)
        assert (identity["uid"], identity["gid"]) == (str(ARBITRARY_UID), "0")
        conf = container.exec("stat", "-c", "%u:%g %a", "/etc/pulp/server.conf")
        assert conf.stdout.split() == [f"{ARBITRARY_UID}:0", "660"], conf.stdout + conf.stderr
        assert "server_name: pulp.openshift.example.com" in container.exec("cat", "/etc/pulp/server.conf").stdout
        runs = container.exec("cat", "/var/lib/pulp/manage-db-runs.log").stdout.split("\n")
        assert runs[0].split()[1:3] == [str(ARBITRARY_UID), "start"]  # pulp-manage-db ran as that UID
    finally:
        podman("rm", "--force", "--time", "0", *[c.name for c in containers], check=False)
        podman("rmi", derived, check=False)


@pytest.mark.parametrize("etc_pulp", ["volume", "tmpfs"])
def test_a_read_only_root_with_etc_pulp_on_a_volume_or_a_tmpfs(etc_pulp, images, role_env, containers, tmp_path):
    env = role_env(PULP_SERVER_NAME="pulp.read-only.example.com")
    options = ["--read-only", *pulp_volume(tmp_path)]
    volume = f"pulpinit-test-etc-pulp-{uuid.uuid4().hex[:8]}"
    if etc_pulp == "volume":
        options += ["-v", f"{volume}:/etc/pulp"]  # a new named volume starts as a copy of the image's /etc/pulp
    else:
        options += ["--tmpfs", "/etc/pulp:rw,mode=0755"]  # empty: pulpinit creates server.conf
        env["PULPINIT_CREATE_CONFIG"] = "true"
    try:
        container = Container.run(images["beat"], env=env, options=options)
        containers.append(container)
        assert celery_identity(container)["uid"] == "48"
        assert "server_name: pulp.read-only.example.com" in container.exec("cat", "/etc/pulp/server.conf").stdout
        written = container.exec("touch", "/usr/local/bin/written")
        assert written.returncode != 0 and "Read-only file system" in written.stderr
    finally:
        podman("rm", "--force", "--time", "0", *[c.name for c in containers], check=False)
        podman("volume", "rm", "--force", volume, check=False)


def test_the_manifest_s_capabilities_with_no_new_privileges(images, role_env, containers):
    """beat.yaml's securityContext (capabilities dropped but six, no privilege escalation, root) is
    enough for the whole pipeline: server.conf written, pulp-manage-db run as apache, celery exec'd
    as apache with no capability left and no_new_privs set."""
    context = security_context("beat.yaml")
    env = role_env(PULP_SERVER_NAME="pulp.capabilities.example.com")
    container = Container.run(images["beat"], env=env, options=security_options(context))
    containers.append(container)
    identity = celery_identity(container)
    assert identity["uid"] == "48"
    assert "server_name: pulp.capabilities.example.com" in container.exec("cat", "/etc/pulp/server.conf").stdout
    runs = container.exec("cat", "/var/lib/pulp/manage-db-runs.log").stdout.split("\n")
    assert runs[0].split()[1:3] == ["48", "start"]
    celery = status(container.pid)  # exec'd: celery is the container's PID 1
    assert capability_names(celery["CapBnd"]) == set(context["capabilities"]["add"])
    assert capability_names(celery["CapEff"]) == set() and capability_names(celery["CapPrm"]) == set()
    assert celery["NoNewPrivs"] == "1"
    assert json.loads(container.expect("celery argv: ").split("celery argv: ", 1)[1])[1] == "beat"
