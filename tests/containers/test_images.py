"""The built images are what their Dockerfiles say: the role images as written on the tier's base,
the pulpinit part's contract on a base that is not EL7."""

from __future__ import annotations

import json

import pytest
from helpers.podman import podman

from pulpinit.pki.check import KEY_FILES, KEYS_DIR

#: role → (the CMD its image runs, its STOPSIGNAL).
ROLE_IMAGES = {
    "beat": (["beat"], "SIGTERM"),
    "resource-manager": (["resource-manager"], "SIGTERM"),
    "worker": (["worker"], "SIGTERM"),
    "api": (["api"], "SIGWINCH"),
    "crane": (["crane"], "SIGWINCH"),
}


def config(image: str) -> dict:
    [inspected] = json.loads(podman("image", "inspect", image).stdout)
    return dict(inspected["Config"])


@pytest.mark.parametrize("role", ROLE_IMAGES)
def test_each_role_image_runs_pulpinit_with_its_role_and_stop_signal(role, images):
    cmd, stop_signal = ROLE_IMAGES[role]
    found = config(images[role])
    assert found["Entrypoint"] == ["pulpinit"] and found["Cmd"] == cmd
    assert found["StopSignal"] == stop_signal and found["User"] == "root"
    env = dict(entry.split("=", 1) for entry in found["Env"])
    assert env.get("PULPINIT_STOP_SIGNAL", "SIGTERM") == stop_signal  # pulpinit stops on the image's signal
    assert "PULPINIT_USER" not in env


def test_the_pulpinit_part_removed_the_baked_keys_and_links_every_key_path(images):
    """The Debian base carries a key like mod_ssl's scriptlet makes; the pulpinit part replaced it by a link."""
    paths = [spec.default_path for spec in KEY_FILES.values()]
    links = podman(
        "run", "--rm", "--network", "none", "--entrypoint", "readlink", images["base"], *paths
    ).stdout.split()
    assert links == [f"{KEYS_DIR}/{name}" for name in KEY_FILES]
    baked = podman(
        "run", "--rm", "--network", "none", "--entrypoint", "stat", images["pulp"], "-c", "%F",
        "/etc/pki/tls/private/localhost.key",
    )  # fmt: skip
    assert baked.stdout.strip() == "regular file"  # the base had a real one
    version = podman("run", "--rm", "--network", "none", images["base"], "--version").stdout
    assert version.startswith("pulpinit ")
