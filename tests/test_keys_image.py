"""No image carries key material, and crane comes with the docker plugin.

No engine here: the Dockerfiles are read the way ``test_deploy`` reads them (instructions per
stage), and every path the roles read a key from (:data:`pulpinit.pki.check.KEY_FILES`) must be
deleted in the final stage, after the last package installation, with a check that fails the
build when a key is left.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

from helpers.images import check_parses, instructions, stages

from pulpinit.pki.check import KEY_FILES, KEYS_DIR, STATIC_DIR

ROOT = Path(__file__).resolve().parent.parent


def removed_paths(run: str) -> list[str]:
    """The arguments of every ``rm -f`` in one RUN."""
    paths: list[str] = []
    for command in re.split(r"&&|;", run):
        words = shlex.split(command)
        if words[:2] == ["rm", "-f"]:
            paths += words[2:]
    return paths


def test_base_image_deletes_every_key_after_the_last_install():
    """The base (Dockerfile.el7) installs every package; the pulpinit part on top of it deletes the keys."""
    el7 = (ROOT / "Dockerfile.el7").read_text()
    assert "yum install" in " ".join(args for word, args in stages(el7)[-1] if word == "RUN")
    assert not any(removed_paths(args) for word, args in stages(el7)[-1] if word == "RUN")
    [pulpinit_part] = stages((ROOT / "Dockerfile.base").read_text())
    runs = [args for word, args in pulpinit_part if word == "RUN"]
    assert not any("yum install" in run or "apt-get" in run for run in runs)
    after = runs
    deleted = [path for run in after for path in removed_paths(run)]
    for spec in KEY_FILES.values():
        assert any(fnmatch.fnmatch(spec.default_path, pattern) for pattern in deleted), spec.default_path
    assert f"{STATIC_DIR}/rsa_pub.key" in deleted  # pulp-gen-key-pair's link
    guard = next(run for run in after if removed_paths(run))
    assert re.search(r"test -z \"\$\(find [^)]*/etc/pki/pulp[^)]*/etc/pki/tls/private", guard), guard


def test_every_key_path_links_into_the_keys_directory_after_the_guard():
    """The roles mount their keys at KEYS_DIR; the image links every path Pulp and httpd read to it."""
    final = stages((ROOT / "Dockerfile.base").read_text())[-1]
    guard = next(args for word, args in final if word == "RUN" and removed_paths(args))
    after_guard = guard[guard.index("test -z") :]
    links = [words[2:] for words in map(shlex.split, re.split(r"&&|;", after_guard)) if words[:2] == ["ln", "-s"]]
    assert sorted(links) == sorted([f"{KEYS_DIR}/{name}", spec.default_path] for name, spec in KEY_FILES.items())
    assert f"mkdir -p {KEYS_DIR}" in after_guard


def test_base_image_installs_the_docker_plugin():
    final = stages((ROOT / "Dockerfile.el7").read_text())[-1]
    installs = " ".join(args for word, args in final if word == "RUN" and "yum install" in args)
    assert re.search(r'"pulp-docker-plugins-\$\{PULP_DOCKER_VERSION\}"', installs)
    assert any(word == "ARG" and args.startswith("PULP_DOCKER_VERSION=3.") for word, args in final)


def test_crane_image():
    parsed = instructions((ROOT / "images" / "crane" / "Dockerfile").read_text())
    assert parsed[:2] == [("ARG", "BASE_IMAGE=pulp-base:2.21"), ("FROM", "${BASE_IMAGE}")]
    [run] = [args for word, args in parsed if word == "RUN"]
    assert '"python-crane-${CRANE_VERSION}"' in run
    deleted = removed_paths(run)
    assert "/etc/httpd/conf.d/pulp*.conf" in deleted  # Pulp's WSGI apps do not run beside crane
    for name in ("server.key", "server.crt"):  # httpd's pair is still linked to where crane mounts it
        assert f'test "$(readlink {KEY_FILES[name].default_path})" = {KEYS_DIR}/{name}' in run
    # The role hands httpd over as root by itself; PULPINIT_USER stays apache, crane's WSGI user.
    assert not [args for word, args in parsed if word == "ENV" and args.startswith("PULPINIT_USER")]
    assert ("COPY", "httpd-crane.conf /etc/httpd/conf.d/crane.conf") in parsed
    httpd_conf = (ROOT / "images" / "crane" / "httpd-crane.conf").read_text()
    assert "WSGIScriptAlias / /usr/share/crane/crane.wsgi" in httpd_conf  # python-crane's WSGI file
    [cmd] = [json.loads(args) for word, args in parsed if word == "CMD"]
    check_parses(["pulpinit", *cmd], "images/crane")
