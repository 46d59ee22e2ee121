"""The container tier's images: the project's own Dockerfiles on a Debian base, cached by content.

No registry with images is reachable here and Pulp's EL7 RPMs cannot be had, so the images are
built from a Debian root filesystem, with stand-ins for Pulp's programs, in this chain:

==================  =====================================================  =======================
image               Dockerfile                                             on
==================  =====================================================  =======================
``debian``          none: ``mmdebstrap --variant=minbase bookworm`` with   --
                    ``tests/containers/packages.txt``, ``podman import``
``pulp``            ``tests/containers/pulp/Dockerfile`` (what             ``debian``
                    ``Dockerfile.el7`` gives: stand-ins, apache2, wheels)
``base``            ``Dockerfile.base``, as written                        ``pulp``
``beat`` ...        ``images/ROLE/Dockerfile``, as written                 ``base``
``crane``           ``images/crane/Dockerfile`` with its EL7-only step     ``base``
                    replaced (:func:`crane_dockerfile`)
``secantusdb``      ``tests/containers/secantusdb/Dockerfile``             ``debian``
``rabbitmq``        ``tests/containers/rabbitmq/Dockerfile``               ``debian``
==================  =====================================================  =======================

Every build runs with ``--network none``: the wheels of pulpinit and its dependencies are made on
the host (pulpinit's from this tree, the others repacked from the venv the main suite tests,
:mod:`helpers.wheelhouse`), SecantusDB's by pip, and copied in.

**Cached by content.**  Each image is tagged ``localhost/pulpinit-test/NAME:KEY``, KEY being the
SHA-256 of everything it is made of: its parent's key, its Dockerfile, every file of its build
context (wheels included) and its build arguments; the root filesystem's key is its package list.
An image whose tag exists is not built again, so a fresh clone on the same machine rebuilds
nothing; other tags of the same name are removed when a new one is built.  The wheels are kept
in ``${XDG_CACHE_HOME:-~/.cache}/pulpinit/containers`` under a key of the sources they are built
from.  Nothing is written into the work tree.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from helpers.images import instructions
from helpers.podman import PREFIX, environ, podman
from helpers.wheelhouse import closure, wheelhouse
from pulpinit.testing import SAMPLE_CONF, standins

ROOT = Path(__file__).resolve().parents[2]
TIER = ROOT / "tests" / "containers"
PACKAGES = TIER / "packages.txt"
SUITE = "bookworm"
#: The roles whose images are built from images/ROLE/Dockerfile as written.
ROLE_IMAGES = ("beat", "resource-manager", "worker", "api")
#: pulpinit's sources: what its wheel is built from.
SOURCES = ("pulpinit", "lenses", "setup.cfg", "pyproject.toml", "README.md")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pulpinit" / "containers"


#: A build context: relative path → (content, mode).
Context = dict[str, tuple[bytes, int]]


@dataclass
class Recipe:
    """One image: its Dockerfile's text, its build context, its parent (BASE_IMAGE) and build arguments."""

    name: str
    dockerfile: str
    context: Context = field(default_factory=dict)
    parent: str | None = None
    args: Mapping[str, str] = field(default_factory=dict)


def _digest(*parts: bytes | str) -> str:
    sha = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        sha.update(len(data).to_bytes(8, "big"))
        sha.update(data)
    return sha.hexdigest()[:20]


def _files(directory: Path, prefix: str = "") -> Context:
    """Every file below ``directory`` (``__pycache__`` left out), keyed ``prefix/relative path``.

    Modes are what git keeps (executable or not: 0755 or 0644), so that a clone made under another
    umask has the same key."""
    found: Context = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            mode = 0o755 if path.stat().st_mode & 0o100 else 0o644
            found[f"{prefix}{path.relative_to(directory).as_posix()}"] = (path.read_bytes(), mode)
    return found


def packages() -> list[str]:
    """The root filesystem's Debian packages (``packages.txt`` without its comments)."""
    return [line.strip() for line in PACKAGES.read_text().splitlines() if line.strip() and not line.startswith("#")]


def crane_dockerfile(text: str) -> str:
    """``images/crane/Dockerfile`` for the Debian base: its EL7-only step replaced, the rest as written.

    That step is the one ``RUN``: ``yum install python-crane`` and its edits of EL7's httpd
    configuration.  In its place the crane role's httpd becomes the httpd stand-in (it stands for
    httpd serving crane); the ``COPY`` of crane's httpd configuration, the ``ENV``, ``STOPSIGNAL``,
    ``EXPOSE`` and ``CMD`` stay.
    """
    runs = [args for word, args in instructions(text) if word == "RUN"]
    if len(runs) != 1 or "yum install" not in runs[0]:
        raise AssertionError("images/crane/Dockerfile: expected one RUN, the yum install of python-crane")
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("RUN "))
    end = start
    while lines[end].rstrip("\n").endswith("\\"):
        end += 1
    replacement = (
        "# (container tier) In place of the EL7-only step above: crane's stand-in, the httpd stand-in of\n"
        "# pulpinit.testing.standins, exec'd by the crane role through PULPINIT_HTTPD.\n"
        "ENV PULPINIT_HTTPD=/usr/lib/pulp-standins/httpd\n"
    )
    return "".join([*lines[:start], replacement, *lines[end + 1 :]])


def _standins() -> Context:
    """The stand-ins of :mod:`pulpinit.testing.standins`, as they write them (shebang /usr/bin/python3)."""
    with tempfile.TemporaryDirectory(prefix="pulpinit-standins-") as directory:
        for write in (standins.write_celery, standins.write_manage_db, standins.write_httpd):
            write(directory)
        return _files(Path(directory), "standins/")


def _source_key() -> str:
    """What pulpinit's wheels are made of: its sources and the installed versions of its dependencies."""
    parts: list[bytes | str] = []
    for name in SOURCES:
        path = ROOT / name
        entries = _files(path, f"{name}/") if path.is_dir() else {name: (path.read_bytes(), 0)}
        for rel, (data, _) in sorted(entries.items()):
            parts += [rel, data]
    dists = closure(["pulpinit"], skip=["pulpinit"])
    parts += sorted(f"{name}=={dist.version}" for name, dist in dists.items())
    return _digest(*parts)


def pulpinit_wheels(cache: Path) -> Path:
    """A directory with pulpinit's wheel (built from a copy of this tree) and its dependencies' wheels."""
    target = cache / "wheels" / _source_key()
    if target.is_dir():
        return target
    staging = Path(tempfile.mkdtemp(prefix="wheels-", dir=cache))
    try:
        with tempfile.TemporaryDirectory(prefix="pulpinit-src-") as src:
            for name in SOURCES:
                path = ROOT / name
                if path.is_dir():
                    shutil.copytree(path, Path(src) / name, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(path, Path(src) / name)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "-q",
                    "--no-deps",
                    "--no-build-isolation",
                    "-w",
                    str(staging),
                    src,
                ],
                check=True,
                capture_output=True,
                timeout=300,
                env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
            )
        wheelhouse(["pulpinit"], staging, skip=["pulpinit"])
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def secantusdb_requirement() -> str:
    """``secantusdb==VERSION``: the version the main suite's peer venv (.venv-peers) has."""
    python = ROOT / ".venv-peers" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", "from importlib.metadata import version; print(version('secantusdb'))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return f"secantusdb=={done.stdout.strip()}"


def secantusdb_wheels(cache: Path, requirement: str) -> Path:
    """SecantusDB's wheels and its dependencies', made by the peer venv's pip (cached per version)."""
    target = cache / "secantusdb-wheels" / requirement
    if target.is_dir():
        return target
    staging = Path(tempfile.mkdtemp(prefix="secantusdb-", dir=cache))
    try:
        pip = ROOT / ".venv-peers" / "bin" / "pip"
        subprocess.run(
            [str(pip), "wheel", "-q", "--wheel-dir", str(staging), requirement],
            check=True,
            capture_output=True,
            timeout=600,
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def recipes(cache: Path) -> list[Recipe]:
    """Every image but the root filesystem, parents first."""
    pulp_context: Context = {
        **_files(TIER / "pulp"),
        **_standins(),
        **_files(pulpinit_wheels(cache), "wheels/"),
        "server.conf": (SAMPLE_CONF.read_bytes(), 0o644),
    }
    requirement = secantusdb_requirement()
    found = [
        Recipe("pulp", (TIER / "pulp" / "Dockerfile").read_text(), pulp_context, "debian"),
        Recipe("base", (ROOT / "Dockerfile.base").read_text(), {}, "pulp", {"PYTHON": "/usr/bin/python3"}),
    ]
    for role in ROLE_IMAGES:
        found.append(
            Recipe(role, (ROOT / "images" / role / "Dockerfile").read_text(), _files(ROOT / "images" / role), "base")
        )
    crane = _files(ROOT / "images" / "crane")
    found.append(
        Recipe("crane", crane_dockerfile((ROOT / "images" / "crane" / "Dockerfile").read_text()), crane, "base")
    )
    secantus_context = {**_files(TIER / "secantusdb"), **_files(secantusdb_wheels(cache, requirement), "wheels/")}
    found.append(
        Recipe(
            "secantusdb",
            (TIER / "secantusdb" / "Dockerfile").read_text(),
            secantus_context,
            "debian",
            {"SECANTUSDB": requirement},
        )
    )
    found.append(
        Recipe("rabbitmq", (TIER / "rabbitmq" / "Dockerfile").read_text(), _files(TIER / "rabbitmq"), "debian")
    )
    return found


def _key(recipe: Recipe, parent_key: str) -> str:
    parts: list[bytes | str] = [recipe.name, parent_key, recipe.dockerfile]
    for rel, (data, mode) in sorted(recipe.context.items()):
        parts += [rel, oct(mode), data]
    parts += [f"{k}={v}" for k, v in sorted(recipe.args.items())]
    return _digest(*parts)


def tag(name: str, key: str) -> str:
    return f"{PREFIX}/{name}:{key}"


def _exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


def _prune(name: str, keep: str) -> None:
    """Remove the other tags of ``name`` (older builds), unless a container still uses them."""
    listed = podman(
        "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference={PREFIX}/{name}", check=False
    )
    for image in listed.stdout.split():
        if image != keep:
            podman("rmi", image, check=False)


def _rootfs(log: list[str]) -> tuple[str, str]:
    listed = packages()
    key = _digest(SUITE, "minbase", *listed)
    image = tag("debian", key)
    if not _exists(image):
        started = time.monotonic()
        debootstrap = subprocess.Popen(
            ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(listed)}", SUITE, "-"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert debootstrap.stdout is not None
        imported = subprocess.run(
            ["podman", "import", "-", image],
            stdin=debootstrap.stdout,
            env=environ(),
            capture_output=True,
            timeout=900,
            check=False,
        )
        debootstrap.stdout.close()
        _, err = debootstrap.communicate(timeout=900)
        if debootstrap.returncode != 0 or imported.returncode != 0:
            raise AssertionError(
                f"root filesystem: mmdebstrap {err.decode()[-2000:]}; podman import {imported.stderr.decode()[-1000:]}"
            )
        _prune("debian", image)
        log.append(f"debian: mmdebstrap + import {time.monotonic() - started:.1f} s")
    return image, key


def _build(recipe: Recipe, image: str, parent: str, cache: Path, log: list[str]) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"context-{recipe.name}-", dir=cache) as directory:
        context = Path(directory)
        for rel, (data, mode) in recipe.context.items():
            path = context / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(mode)
        (context / "Dockerfile.build").write_text(recipe.dockerfile)
        args = ["build", "--network", "none", "--pull=never", "--format", "docker", "--layers=false"]
        args += ["-f", str(context / "Dockerfile.build"), "-t", image, "--build-arg", f"BASE_IMAGE={parent}"]
        for name, value in recipe.args.items():
            args += ["--build-arg", f"{name}={value}"]
        podman(*args, str(context), timeout=900)
    _prune(recipe.name, image)
    log.append(f"{recipe.name}: built in {time.monotonic() - started:.1f} s")


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One builder at a time on this machine (another checkout's run waits, then finds the images)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure(log: list[str] | None = None) -> dict[str, str]:
    """Every image of the tier, built when its tag is missing: ``{name: image}``."""
    log = log if log is not None else []
    cache = cache_dir()
    with _locked(cache):
        rootfs, rootfs_key = _rootfs(log)
        images = {"debian": rootfs}
        keys = {"debian": rootfs_key}
        for recipe in recipes(cache):
            assert recipe.parent is not None
            keys[recipe.name] = _key(recipe, keys[recipe.parent])
            images[recipe.name] = tag(recipe.name, keys[recipe.name])
            if not _exists(images[recipe.name]):
                _build(recipe, images[recipe.name], images[recipe.parent], cache, log)
    return images


def compose_variables(images: Mapping[str, str]) -> dict[str, str]:
    """``PULPINIT_TEST_IMAGE_<NAME>`` for every image: the names the Compose override file reads."""
    return {f"PULPINIT_TEST_IMAGE_{re.sub(r'[^A-Z0-9]', '_', name.upper())}": image for name, image in images.items()}
