"""``make demo``: the whole pipeline of ``pulpinit beat`` on embedded fake services.

Starts the fake MongoDB and the fake Qpid-like broker (AMQP 0-10 and 1.0) at once, each on a port
of its own (port 0), the broker behind a proxy that refuses connections for a second (to show the
backoff; its port is held from the start, so nothing can take it meanwhile), copies the sample
server.conf into a temporary root, and runs real pulpinit processes against them: ``settings``, ``configure
--dry-run``, ``check-deps``, then ``beat`` — configure, wait, migrate once
under the lock (a stand-in pulp-manage-db), privilege drop (to ``nobody``
when run as root), exec of a stand-in celery that prints its argv and exits on
SIGTERM — and ``beat`` again, which skips the migration.  Then the REST API: the deployment's
keys made once by ``pki init``, and ``api`` — the key check, the admin password (the stored
``admin`` replaced by ``PULP_ADMIN_PASSWORD``), ``rsa_pub.key`` published, and a stand-in httpd
exec'd as root that says which keys it can read, stopped gracefully with SIGWINCH.  Exit 0 when
every step behaved as it should.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pulpinit.testing import SAMPLE_CONF, standins
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.faults import Proxy
from pulpinit.testing.keys import keys_env

SAMPLE = SAMPLE_CONF
#: No step of the demo may take longer (each takes seconds): a step past it is killed and reported.
STEP_TIMEOUT = 60.0


def _banner(text: str) -> None:
    print(f"\n\033[1m=== {text}\033[0m" if sys.stdout.isatty() else f"\n=== {text}", flush=True)


def _pulpinit(env: dict[str, str], *argv: str) -> int:
    print("$ pulpinit " + " ".join(argv), flush=True)
    try:
        argv_ = [sys.executable, "-m", "pulpinit", *argv]
        return subprocess.run(argv_, env=env, check=False, timeout=STEP_TIMEOUT).returncode
    except subprocess.TimeoutExpired:
        print(f"  (no exit within {STEP_TIMEOUT:g} s: killed)", flush=True)
        return -1


def _start_role(
    env: dict[str, str], *argv: str, ready: str = "celery uid=", stop: signal.Signals = signal.SIGTERM
) -> int:
    """Run a role until its stand-in says ``ready``, then stop it the way Kubernetes does (SIGTERM)."""
    print("$ pulpinit " + " ".join(argv), flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "pulpinit", *argv], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None  # noqa: S101 - stdout=PIPE
    watchdog = threading.Timer(STEP_TIMEOUT, proc.kill)  # a role that never gets ready, or never stops
    watchdog.start()
    try:
        for line in proc.stdout:
            print("  | " + line.rstrip(), flush=True)
            if line.startswith(ready):
                why = (
                    "as `kubectl delete pod` would"
                    if stop is signal.SIGTERM
                    else "httpd's graceful stop, as preStop sends"
                )
                print(f"  (the demo sends {stop.name}: {why})", flush=True)
                proc.send_signal(stop)
        code = proc.wait()
    finally:
        watchdog.cancel()
    if code == -signal.SIGKILL:
        print(f"  (no clean stop within {STEP_TIMEOUT:g} s: killed)", flush=True)
    return code


def _api(env: dict[str, str], root: Path, mongo: FakeMongo) -> list[str]:
    """Keys made once, then the api role up to a stand-in httpd exec'd as root; the failures seen."""
    from pulpinit.api.admin import hash_password, verify_password

    failures = []
    keys, admin_password = root / "pulp-keys", "demo-admin-s3cret"
    group = ["--group", "nogroup"] if os.geteuid() == 0 else []
    _banner("6. The deployment's keys, made once (never in an image)")
    if _pulpinit(env, "pki", "init", str(keys), "--server-name", "pulp.demo.example", *group) != 0:
        failures.append("pki init")
    (root / "admin-password").write_text(admin_password + "\n")
    env = {
        **env,
        "PULPINIT_HTTPD": str(standins.write_httpd(root / "bin")),
        **keys_env(keys),
        "PULPINIT_STATIC_DIR": str(root / "static"),
        "PULP_ADMIN_PASSWORD_FILE": str(root / "admin-password"),
        "STANDIN_HTTPD_FILES": os.pathsep.join(str(path) for path in sorted(keys.iterdir())),
    }
    users = mongo.client["pulp_database"]["users"]
    users.insert_one({"login": "admin", "password": hash_password("admin")})  # what Pulp's default gave it
    _banner("7. The REST API: keys checked, admin password set, rsa_pub.key published, httpd exec'd as root")
    if _start_role(env, "api", ready="httpd can read:", stop=signal.SIGWINCH) != 0:
        failures.append("api")
    if not verify_password(users.find_one({"login": "admin"})["password"], admin_password):
        failures.append("the admin password was not set")
    if not (root / "static" / "rsa_pub.key").is_symlink():
        failures.append("rsa_pub.key was not published")
    return failures


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="pulpinit-demo-"))
    root.chmod(0o755)
    (root / "etc/pulp").mkdir(parents=True)
    shutil.copy(SAMPLE, root / "etc/pulp/server.conf")
    bindir = root / "bin"
    bindir.mkdir()
    bindir.chmod(0o777)  # the stand-in manage-db records its runs here as the unprivileged user
    manage_db, celery = standins.write_manage_db(bindir), standins.write_celery(bindir)
    mongo = FakeMongo().start()
    broker = FakeAmqpBroker().start()
    gate = Proxy(("127.0.0.1", broker.port), up=False).start()  # refuses connections until it goes up
    broker_port = gate.port
    late = threading.Timer(1.0, gate.go_up)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULP", "DB_", "MSG_"))}
    env.update(
        {
            "PULPINIT_CONFIG": str(root / "etc/pulp/server.conf"),
            "PULPINIT_LOG_FORMAT": "console",
            "PULPINIT_MANAGE_DB": str(manage_db),
            "PULPINIT_CELERY": str(celery),
            "PULPINIT_MIGRATION_FINGERPRINT": "pulp-2.21.5-demo",
            "PULPINIT_USER": "nobody",
            "PULPINIT_WAIT_TIMEOUT": "30",
            "PULPINIT_MIGRATION_TIMEOUT": "30",
            "DB_SERVICE_HOST": "127.0.0.1",
            "DB_SERVICE_PORT": str(mongo.port),
            "MSG_SERVICE_HOST": "127.0.0.1",
            "MSG_SERVICE_PORT": str(broker_port),
            "PULP_SERVER_NAME": "pulp.demo.example",
            "NO_COLOR": "1",
        }
    )
    failures: list[str] = []
    try:
        print(
            f"Fake MongoDB on 127.0.0.1:{mongo.port}; fake Qpid-like AMQP broker on 127.0.0.1:{broker_port} "
            "starts in 1 s.\nKubernetes-style service variables: DB_SERVICE_HOST/PORT, MSG_SERVICE_HOST/PORT."
        )
        _banner("1. Settings: every value and where it came from")
        if _pulpinit(env, "settings") != 0:
            failures.append("settings")
        _banner("2. The server.conf change, as a diff (nothing written yet)")
        if _pulpinit(env, "configure", "--dry-run") != 0:
            failures.append("configure --dry-run")
        _banner("3. First start of beat: configure, wait (the broker is late), migrate once, drop privileges, exec")
        late.start()
        started = time.monotonic()
        if _start_role(env, "beat") != 0:
            failures.append("first beat")
        print(f"  (first start to clean stop: {time.monotonic() - started:.1f} s)")
        runs = standins.parsed_runs(bindir)
        if len(runs) != 1:
            failures.append(f"expected one migration run, saw {len(runs)}")
        _banner("4. check-deps, the operator's 3 a.m. tool")
        if _pulpinit(env, "check-deps") != 0:
            failures.append("check-deps")
        _banner("5. Second start of beat: the migration is recorded as done and skipped")
        if _start_role(env, "beat") != 0:
            failures.append("second beat")
        runs = standins.parsed_runs(bindir)
        if len(runs) != 1:
            failures.append(f"the second start ran pulp-manage-db again ({len(runs)} runs)")
        failures += _api(env, root, mongo)
    finally:
        late.cancel()
        gate.stop()
        broker.stop()
        mongo.stop()
        shutil.rmtree(root, ignore_errors=True)
    _banner("Result")
    if failures:
        print("demo FAILED: " + "; ".join(failures))
        return 1
    print(
        "demo ok: one migration across two starts, celery exec'd and stopped cleanly; "
        "the API's keys checked, its admin password set, httpd exec'd as root"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
