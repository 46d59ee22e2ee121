"""What the container tier (``make test-containers``) changes about the project's files, checked without
podman: the Compose override swaps images and networking only, the crane image keeps its
Dockerfile but for the EL7-only step, and the Debian base gives Dockerfile.base what Dockerfile.el7
gives it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.images import instructions
from helpers.testimages import crane_dockerfile, packages

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with kubernetes-validate)")

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
OVERRIDE = ROOT / "tests" / "containers" / "compose.override.yml"
NETWORKING = {"network_mode", "extra_hosts", "ports"}
#: What the override may replace for db and msg: what depends on the official images' contracts.
OFFICIAL_IMAGE_CONTRACT = {"command", "entrypoint", "healthcheck", "environment"}


class _Tagged:
    """A value tagged ``!reset`` or ``!override`` in a Compose file."""

    def __init__(self, tag: str, value: Any) -> None:
        self.tag, self.value = tag, value


def _tagged(loader: Any, node: Any) -> _Tagged:
    if isinstance(node, yaml.SequenceNode):
        return _Tagged(node.tag, loader.construct_sequence(node, deep=True))
    if isinstance(node, yaml.MappingNode):
        return _Tagged(node.tag, loader.construct_mapping(node, deep=True))
    return _Tagged(node.tag, loader.construct_scalar(node))


def load(path: Path) -> dict[str, Any]:
    """A Compose file, with podman-compose's ``!reset`` and ``!override`` tags kept as :class:`_Tagged`."""
    loader: Any = type("ComposeLoader", (yaml.SafeLoader,), {})
    for tag in ("!reset", "!override"):
        loader.add_constructor(tag, _tagged)
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=loader)
    return loaded


def test_the_override_changes_images_and_networking_only():
    base, override = load(COMPOSE)["services"], load(OVERRIDE)["services"]
    assert set(override) == set(base), "every service runs the tier's image"
    for name, service in override.items():
        changed = set(service) - {"image"}
        if name in ("db", "msg"):
            assert changed <= NETWORKING | OFFICIAL_IMAGE_CONTRACT, name
        else:
            assert changed <= NETWORKING, f"{name}: pulpinit's services keep everything but image and networking"
        assert service["image"].startswith("${PULPINIT_TEST_IMAGE_"), name
        ports = service.get("ports")
        assert ports is None or (isinstance(ports, _Tagged) and ports.tag == "!reset"), name


def test_every_networked_service_shares_one_loopback_only_namespace():
    base, override = load(COMPOSE)["services"], load(OVERRIDE)["services"]
    assert load(OVERRIDE)["x-podman"] == {"in_pod": False}  # no pod: the services join the namespace directly
    for name, service in override.items():
        if base[name].get("network_mode") == "none":
            assert "network_mode" not in service, name  # pki keeps its own: no network at all
            continue
        assert service["network_mode"] == "ns:${PULPINIT_TEST_NETNS}", name
        hosts = dict(entry.split(":", 1) for entry in service["extra_hosts"])
        assert hosts == {"db": "127.0.0.1", "msg": "127.0.0.1"}, name
        assert not base[name].get("networks"), name  # no bridge network anywhere


def test_the_crane_test_build_replaces_only_the_el7_step():
    original = (ROOT / "images" / "crane" / "Dockerfile").read_text()
    derived = instructions(crane_dockerfile(original))
    kept = [i for i in instructions(original) if not (i[0] == "RUN" and "yum install" in i[1])]
    assert [i for i in derived if i != ("ENV", "PULPINIT_HTTPD=/usr/lib/pulp-standins/httpd")] == kept
    assert len(derived) == len(kept) + 1
    with pytest.raises(AssertionError, match="one RUN"):
        crane_dockerfile('FROM x:1\nCMD ["crane"]\n')


def test_the_debian_base_has_what_dockerfile_base_needs():
    """A Python with venv and the libraries pulpinit's wheels load; the pulp layer gives the wheels."""
    listed = packages()
    assert {"python3", "python3-venv", "libaugeas0", "libsasl2-modules", "openssl", "apache2"} <= set(listed)
    pulp = instructions((ROOT / "tests" / "containers" / "pulp" / "Dockerfile").read_text())
    assert ("COPY", "wheels/ /opt/pulpinit-wheels/") in pulp
    assert any(word == "ENV" and "PULPINIT_HTTPD=/usr/sbin/apache2" in args for word, args in pulp)
