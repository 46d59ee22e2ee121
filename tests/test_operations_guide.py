"""docs/operations.md: every command in it is run here, or checked against what it names.

The guide's ``sh`` blocks are split into commands (pipes and redirections apart) and each one is
accounted for by its program:

* ``pulpinit`` -- parsed by the CLI; ``pki init`` runs for real; ``check-deps``, ``settings`` and
  the roles' ``--dry-run`` run against the fake MongoDB and broker with the environment of the
  workload the guide runs them in (from the manifests);
* ``openssl`` runs; ``kubectl`` runs where it needs no cluster (``kustomize`` for ``apply -k``,
  ``create secret … --dry-run=client -o yaml``) and otherwise every object, label selector,
  namespace and file it names must exist in the manifests (a command that ``exec``s into a pod
  is checked against that pod's containers and mounts, and its ``pulpinit`` is run);
* ``docker compose`` services, volumes and paths must exist in the Compose file, ``docker run``
  images among the images we build, ``curl`` URLs must be the names the guide makes httpd's
  certificate for and the paths the readiness probes use;
* anything else fails the test: a command nobody accounts for is a command nobody tried.

The TLS section's environment (``yaml`` blocks) is used as written, with the certificate paths
pointed at certificates made here: ``pulpinit check-deps`` must reach the fake MongoDB with
mutual TLS, and a real RabbitMQ's TLS listener.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers.pki import make_pki
from helpers.workdirs import reachable

from pulpinit.cli import parse
from pulpinit.pki.check import KEY_FILES, KEYS_DIR
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.keys import keys_env, reader_group

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with kubernetes-validate)")

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "operations.md").read_text()
K8S = ROOT / "deploy" / "kubernetes"
COMPOSE_FILE = "deploy/compose/docker-compose.yml"
COMPOSE = yaml.safe_load((ROOT / COMPOSE_FILE).read_text())
#: What the guide's curl may ask httpd for: the readiness paths of the manifests, and Pulp's users.
HTTPD_PATHS = {"/pulp/api/v2/status/", "/pulp/api/v2/users/", "/v2/"}
#: Programs that need a running Pulp or a real cluster and are accepted only in these exact forms.
NEEDS_PULP = {("pulp-admin", "--config", "./admin.conf", "login", "-u", "admin")}


# ------------------------------------------------------------------------------------------------
# The guide, as commands
# ------------------------------------------------------------------------------------------------


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, flags=re.DOTALL)


@dataclass
class Command:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # VAR=value before the program
    piped_in: bool = False

    def __str__(self) -> str:
        return shlex.join(self.argv)


def commands() -> list[Command]:
    found = []
    for block in blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            for index, part in enumerate(line.split(" | ")):
                words = shlex.split(part)
                if ">" in words:
                    words = words[: words.index(">")]
                env = {}
                while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                    name, _, value = words.pop(0).partition("=")
                    env[name] = value
                found.append(Command(words, env, piped_in=index > 0))
    return found


COMMANDS = commands()


def test_the_guide_has_commands_and_no_todo_left():
    assert len(COMMANDS) > 30
    assert "TODO" not in GUIDE


# ------------------------------------------------------------------------------------------------
# The manifests, as kubectl sees them
# ------------------------------------------------------------------------------------------------


def rendered() -> list[dict[str, Any]]:
    """``kubectl kustomize`` of the manifests (offline), else the files as they are."""
    if shutil.which("kubectl"):
        done = subprocess.run(
            ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
        )
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


OBJECTS = rendered()
KINDS = {
    "deployment": "Deployment",
    "statefulset": "StatefulSet",
    "service": "Service",
    "secret": "Secret",
    "job": "Job",
}
NAMESPACE = next(doc["metadata"]["name"] for doc in OBJECTS if doc["kind"] == "Namespace")


def find(kind: str, name: str) -> dict[str, Any] | None:
    return next((d for d in OBJECTS if d["kind"] == kind and d["metadata"]["name"] == name), None)


def workloads() -> Iterator[dict[str, Any]]:
    return (d for d in OBJECTS if d["kind"] in ("Deployment", "StatefulSet", "Job"))


def selected(selector: str) -> list[dict[str, Any]]:
    wanted = dict(pair.split("=", 1) for pair in selector.split(","))
    return [w for w in workloads() if wanted.items() <= w["spec"]["template"]["metadata"]["labels"].items()]


def secrets_mounted() -> set[str]:
    return {
        v["secret"]["secretName"]
        for w in workloads()
        for v in w["spec"]["template"]["spec"].get("volumes", [])
        if "secret" in v
    }


def test_every_object_gets_the_namespace():
    assert all(doc["metadata"].get("namespace") == NAMESPACE for doc in OBJECTS if doc["kind"] != "Namespace")


# ------------------------------------------------------------------------------------------------
# The fakes and the environment of a workload
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[FakeMongo, FakeAmqpBroker]]:
    """MongoDB with Pulp's user and the password of the manifests' Secret; a broker that takes any."""
    secret = next(d for d in OBJECTS if d["kind"] == "Secret")["stringData"]
    with FakeMongo(users={("pulp_database", "pulp"): secret["db-password"]}) as mongo, FakeAmqpBroker() as broker:
        yield mongo, broker


@pytest.fixture(scope="module")
def keys() -> Iterator[Path]:
    """The keys directory the guide makes (``pki init``), in a directory every user may enter."""
    with reachable("guide-keys", sample=False) as root:
        yield root


def workload_env(workload: dict[str, Any], root: Path, fakes: tuple[FakeMongo, FakeAmqpBroker]) -> dict[str, str]:
    """The container's environment from the manifests, with files and services pointed at local ones."""
    mongo, broker = fakes
    [container] = workload["spec"]["template"]["spec"]["containers"]
    configmaps = {d["metadata"]["name"]: d for d in OBJECTS if d["kind"] == "ConfigMap"}
    pod: dict[str, str] = {}
    for source in container.get("envFrom", []):
        pod.update(configmaps[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        pod[item["name"]] = item.get("value", "pulp-pod-0")
    secret = next(d for d in OBJECTS if d["kind"] == "Secret")["stringData"]
    for name, value in list(pod.items()):
        if name.endswith("_FILE"):
            local = root / Path(value).name
            local.write_text(secret[Path(value).name] + "\n")
            pod[name] = str(local)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULP", "CRANE", "DB_", "MSG_"))}
    env.update(pod)
    host, port = mongo.hostport.rsplit(":", 1)
    env.update(
        {
            "DB_SERVICE_HOST": host,
            "DB_SERVICE_PORT": port,
            "MSG_SERVICE_HOST": "127.0.0.1",
            "MSG_SERVICE_PORT": str(broker.port),
            "PULP_CONF__MESSAGING__TRANSPORT": "qpid",  # the fake broker speaks Qpid's AMQP 0-10
            "PULP_BROKER_USER": "guest",
            "PULPINIT_CONFIG": str(root / "server.conf"),
            "PULPINIT_LOG_FORMAT": "json",
        }
    )
    return env


def run_pulpinit(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pulpinit", *argv[1:]],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# ------------------------------------------------------------------------------------------------
# Each program
# ------------------------------------------------------------------------------------------------


def test_every_command_is_accounted_for():
    programs = {c.argv[0] for c in COMMANDS}
    assert programs <= {"pulpinit", "kubectl", "docker", "openssl", "curl", "pulp-admin"}, programs


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.argv[0] == "openssl"], ids=str)
def test_openssl(command: Command):
    done = subprocess.run(command.argv, capture_output=True, text=True, timeout=30, check=True)
    assert re.fullmatch(r"[0-9a-f]{48}\n", done.stdout)


def test_pki_init_as_the_guide_runs_it(keys: Path):
    inits = [c for c in COMMANDS if c.argv[:3] == ["pulpinit", "pki", "init"]]
    assert inits
    for command in inits:
        done = run_pulpinit(command.argv, {**os.environ, **command.env}, keys)
        assert done.returncode == 0, done.stderr
        directory = keys / command.argv[3]
        assert sorted(p.name for p in directory.iterdir()) == sorted(KEY_FILES)
        assert "kubectl create secret generic pulp-keys --from-file=" in done.stdout
    again = run_pulpinit(inits[0].argv, dict(os.environ), keys)
    assert again.returncode == 0 and "Nothing generated." in again.stdout


def kubectl_commands() -> list[Command]:
    return [c for c in COMMANDS if c.argv[0] == "kubectl"]


def namespace_and_rest(argv: list[str]) -> tuple[str | None, list[str]]:
    rest = list(argv[1:])
    namespace = None
    if rest[:1] == ["-n"]:
        namespace, rest = rest[1], rest[2:]
    return namespace, rest


@pytest.mark.parametrize("command", kubectl_commands(), ids=str)
def test_kubectl(command: Command, keys: Path, tmp_path: Path, services: tuple[FakeMongo, FakeAmqpBroker]):
    namespace, rest = namespace_and_rest(command.argv)
    verb = rest[0]
    if namespace is not None:
        assert namespace == NAMESPACE
    if verb == "apply":
        if rest[1] == "-k":
            assert (ROOT / rest[2]).is_dir() and OBJECTS  # rendered by `kubectl kustomize` above
        else:
            assert rest[1] == "-f" and ((rest[2] == "-" and command.piped_in) or (ROOT / rest[2]).is_file())
        return
    if verb == "create":
        check_create_secret(command, namespace, rest, keys, tmp_path)
        return
    if verb == "exec":
        check_exec(rest, keys, services)
        return
    check_references(verb, rest)


def check_references(verb: str, rest: list[str]) -> None:
    """``get``, ``rollout restart``, ``scale``, ``logs``, ``describe``: what they name must exist."""
    assert verb in ("rollout", "scale", "logs", "describe", "get"), f"kubectl {verb}: not accounted for"
    if "-l" in rest:
        assert selected(rest[rest.index("-l") + 1]), rest
        return
    objects = [w for w in rest[1:] if not w.startswith("-")]
    options = [w for w in rest[1:] if w.startswith("-")]
    if verb == "rollout":
        assert objects[0] == "restart"
        objects = objects[1:]
    if verb == "get" and objects and "/" not in objects[0]:
        objects = [f"{objects[0]}/{name}" for name in objects[1:]]
    for reference in objects:
        kind, _, name = reference.partition("/")
        if kind == "secret" and name == "pulp-keys":
            assert name in secrets_mounted()
            continue
        assert kind in ("pods",) or find(KINDS[kind], name), reference
    for option in options:
        assert option in ("--watch", "--previous", "-o") or option.startswith("--replicas="), option


def check_create_secret(command: Command, namespace: str | None, rest: list[str], keys: Path, tmp_path: Path) -> None:
    assert rest[:3] == ["create", "secret", "generic"]
    name = rest[3]
    argv = ["kubectl", *(["-n", namespace] if namespace else []), *rest]
    for index, word in enumerate(argv):
        if word.startswith("--from-file="):
            source = word.split("=")[-1]
            if source == "./pulp-keys":
                argv[index] = f"--from-file={keys / 'pulp-keys'}"
            else:  # a certificate the operator brings: any file will do for the Secret's shape
                local = tmp_path / Path(source).name
                local.write_text("-----BEGIN CERTIFICATE-----\n")
                argv[index] = word.replace(source, str(local))
    if "--dry-run=client" not in argv:
        argv += ["--dry-run=client", "-o", "yaml"]
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    if not (keys / "pulp-keys").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pulpinit", "pki", "init", str(keys / "pulp-keys")], check=True, capture_output=True
        )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    secret = yaml.safe_load(done.stdout)
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == name
    if name == "pulp-keys":
        assert sorted(secret["data"]) == sorted(KEY_FILES) and name in secrets_mounted()
    else:  # the TLS Secrets: mounted by the guide's own volume block
        assert f"secretName: {name}" in GUIDE, name


def check_exec(rest: list[str], keys: Path, services: tuple[FakeMongo, FakeAmqpBroker]) -> None:
    kind, _, name = rest[1].partition("/")
    workload = find(KINDS[kind], name)
    assert workload is not None, rest[1]
    inner = rest[rest.index("--") + 1 :]
    [container] = workload["spec"]["template"]["spec"]["containers"]
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    if inner[0] == "pulpinit":
        with reachable("guide-exec") as root:
            done = run_pulpinit(inner, prepare(workload, root, keys, services), root)
        checks = done.stdout.partition("## checks")[2][:1500]  # a dry run's problems are listed there
        assert done.returncode == 0, (
            f"{shlex.join(inner)} in {rest[1]}: {checks or done.stdout[-1500:]}{done.stderr[-1500:]}"
        )
        return
    text = " ".join(inner)
    for path in re.findall(r"/run/secrets/pulp/([\w-]+)", text):  # the Secret file the script reads
        volume = next(
            v
            for v in workload["spec"]["template"]["spec"]["volumes"]
            if v["name"] == mounts["/run/secrets/pulp"]["name"]
        )
        assert path in {item["path"] for item in volume["secret"]["items"]}
    if inner[0] == "tar":
        assert inner[2] in mounts, f"{rest[1]} does not mount {inner[2]}"
    elif inner[0] == "rabbitmqctl":
        assert container["image"].startswith("rabbitmq:")
    else:
        assert inner[:2] == ["sh", "-c"] and container["image"].startswith("mongo:"), inner


def mounted(keys: Path, mount: Path) -> Path:
    """The keys as the pod sees the Secret: ``defaultMode: 0440``, the group ``fsGroup`` (here the group of
    the user pulpinit checks them for, when root)."""
    mount.mkdir()
    group = reader_group()
    for key in keys.iterdir():
        shutil.copyfile(key, mount / key.name)
        if group is not None:
            os.chown(mount / key.name, -1, group)
        (mount / key.name).chmod(0o440)
    return mount


def prepare(
    workload: dict[str, Any], root: Path, keys: Path, services: tuple[FakeMongo, FakeAmqpBroker]
) -> dict[str, str]:
    """A local stand-in of the pod: server.conf, the keys where its role reads them, the fakes."""
    shutil.copy(ROOT / "pulpinit" / "testing" / "sample-server.conf", root / "server.conf")
    env = workload_env(workload, root, services)
    if not (keys / "pulp-keys").is_dir():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pulpinit",
                "pki",
                "init",
                str(keys / "pulp-keys"),
                "--server-name",
                "pulp.example.com",
            ],
            check=True,
            capture_output=True,
        )
    env.update(keys_env(mounted(keys / "pulp-keys", root / "pulp-keys")))
    env.update(
        {
            "PULPINIT_MIGRATION_FINGERPRINT": "guide",
            "PULPINIT_USER": "nobody" if os.geteuid() == 0 else str(os.getuid()),
            "PULPINIT_HTTPD": "/bin/true",
            "PULPINIT_CELERY": "/bin/true",
            "PULPINIT_STATIC_DIR": str(root / "static"),
            "CRANE_CONFIG_PATH": str(root / "crane.conf"),
        }
    )
    return env


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.argv[0] == "docker"], ids=str)
def test_docker(command: Command):
    argv = command.argv
    if argv[1] == "run":
        image = next(w for w in argv[2:] if re.fullmatch(r"pulp-[a-z-]+:[0-9.]+", w))
        assert image == "pulp-base:2.21"
        parse(argv[argv.index(image) + 1 :])  # what follows the image is pulpinit's command line
        return
    assert argv[1:4] == ["compose", "-f", COMPOSE_FILE] and (ROOT / COMPOSE_FILE).is_file()
    verb, rest = argv[4], argv[5:]
    services = COMPOSE["services"]
    assert set(command.env) <= {"PULP_SERVER_NAME"}
    assert "PULP_SERVER_NAME" in (ROOT / COMPOSE_FILE).read_text()
    if verb in ("up",):
        assert rest == ["-d"]
    elif verb in ("logs", "stop", "start"):
        assert rest and set(rest) <= services.keys(), rest
    elif verb == "exec":
        service = services[rest[0]]
        if rest[1] == "tar":
            assert any(v.startswith(f"pulp-storage:{rest[3]}") for v in service["volumes"])
        else:
            assert rest[1:3] == ["sh", "-c"] and "/run/secrets/mongo_root_password" in rest[3]
            assert "mongo_root_password" in service["secrets"]
    elif verb == "run":
        target = [w for w in rest if not w.startswith("-") and w != "cat"]
        service, path = target[0], target[1]
        assert any(v.startswith(f"pulp-keys:{KEYS_DIR}") for v in services[service]["volumes"])
        assert path.startswith(KEYS_DIR + "/") and Path(path).name in KEY_FILES
    else:
        raise AssertionError(f"docker compose {verb}: not accounted for")


def server_names() -> set[str]:
    names: set[str] = set()
    for command in COMMANDS:
        if command.argv[:3] == ["pulpinit", "pki", "init"]:
            args = parse(command.argv[1:])
            names.update(args.server_names or [])
    return names


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.argv[0] in ("curl", "pulp-admin")], ids=str)
def test_clients(command: Command):
    if command.argv[0] == "pulp-admin":
        assert tuple(command.argv) in NEEDS_PULP
        return
    url = command.argv[-1]
    match = re.fullmatch(r"https://([^/]+)(/.*)", url)
    assert match and match.group(1) in server_names() and match.group(2) in HTTPD_PATHS, url
    cacert = command.argv[command.argv.index("--cacert") + 1]
    assert cacert == "./pulp-keys/ca.crt"


# ------------------------------------------------------------------------------------------------
# The TLS section, as written
# ------------------------------------------------------------------------------------------------


def env_blocks() -> list[dict[str, str]]:
    found = []
    for block in blocks("yaml"):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and all(re.fullmatch(r"[A-Z_]+", k) for k in data):
            found.append({k: str(v) for k, v in data.items()})
    return found


def tls_block(prefix: str) -> dict[str, str]:
    [block] = [b for b in env_blocks() if any(k.startswith(prefix) for k in b)]
    return block


def test_the_volume_block_mounts_the_secret_the_guide_creates():
    [volumes] = [yaml.safe_load(b) for b in blocks("yaml") if "volumes:" in b]
    [volume] = volumes["volumes"]
    [mount] = volumes["containers"][0]["volumeMounts"]
    assert volume["name"] == mount["name"] and mount["readOnly"] is True
    created = [c.argv[c.argv.index("generic") + 1] for c in COMMANDS if "generic" in c.argv]
    assert volume["secret"]["secretName"] in created
    paths = [v for k, v in tls_block("PULP_CONF__DATABASE__").items() if v.startswith("/")]
    assert paths and all(p.startswith(mount["mountPath"] + "/") for p in paths)


def local_paths(block: dict[str, str], directory: str, files: dict[str, Path]) -> dict[str, str]:
    """The block with ``directory/<name>`` pointed at the local file for ``<name>``."""
    return {k: str(files[v.rsplit("/", 1)[1]]) if v.startswith(directory + "/") else v for k, v in block.items()}


def check_deps(env: dict[str, str], root: Path) -> dict[str, Any]:
    shutil.copy(ROOT / "pulpinit" / "testing" / "sample-server.conf", root / "server.conf")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PULP", "DB_", "MSG_"))}
    done = subprocess.run(
        [sys.executable, "-m", "pulpinit", "check-deps", "--json", "--timeout", "5"],
        env={**base, "PULPINIT_CONFIG": str(root / "server.conf"), **env},
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return {c["name"]: c for c in report["checks"]}


def test_tls_to_mongodb_as_the_guide_configures_it(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    files = {"ca.crt": pki.ca, "client.crt": pki.client_cert, "client.key": pki.client_key}
    block = local_paths(tls_block("PULP_CONF__DATABASE__"), "/etc/pki/pulp-db-tls", files)
    assert block.pop("PULP_DB_SEEDS") == "db.pulp.svc:27017"
    # the certificate names the host by DNS name, as the guide says it must (localhost stands in for db.pulp.svc)
    with FakeMongo(tls_certfile=str(pki.dns), tls_client_ca=str(pki.ca)) as mongo, FakeAmqpBroker() as broker:
        env = {**block, "PULP_DB_SEEDS": f"localhost:{mongo.port}", "PULP_BROKER_URL": broker.url()}
        assert check_deps(env, tmp_path)["mongodb"]["ok"] is True
        without_client = {k: v for k, v in env.items() if "SSL_CERTFILE" not in k and "SSL_KEYFILE" not in k}
        refused = check_deps(without_client, tmp_path)["mongodb"]
        assert refused["ok"] is False


@pytest.mark.slow
@pytest.mark.rabbitmq
def test_tls_to_the_broker_as_the_guide_configures_it(rabbitmq: Any, tmp_path: Path):
    pki = rabbitmq.pki
    files = {"ca.crt": pki.ca, "client.crt": pki.client_cert, "client.key": pki.client_key}
    block = local_paths(tls_block("PULP_CONF__TASKS__"), "/etc/pki/pulp-broker-tls", files)
    assert (block.pop("MSG_SERVICE_HOST"), block.pop("MSG_SERVICE_PORT")) == ("msg.pulp.svc", "5671")
    with FakeMongo() as mongo:
        env = {
            **block,
            "MSG_SERVICE_HOST": "127.0.0.1",  # the listener's certificate names the IP address
            "MSG_SERVICE_PORT": str(rabbitmq.tls_port),
            "PULP_BROKER_USER": "guest",
            "PULP_BROKER_PASSWORD": "guest",
            "PULP_CONF__MESSAGING__TRANSPORT": "rabbitmq",
            "PULP_DB_SEEDS": mongo.hostport,
        }
        broker = check_deps(env, tmp_path)["broker"]
    assert broker["ok"] is True, broker
    # guest's password is guest: the user name is masked too, as every form of a secret is
    assert broker["endpoint"].startswith(f"amqp://***:***@127.0.0.1:{rabbitmq.tls_port}")
