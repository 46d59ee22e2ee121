"""Start-to-exec of the httpd roles: ``api`` and ``crane`` beside ``run``.

Whole processes, median of ``--runs`` interleaved runs, with ``/bin/true`` as httpd (it exits at
once, so a run's time is pulpinit's own):

* ``pulpinit run -- /bin/true``: settings, configure, both probes, the migration-state check, exec;
* ``pulpinit api``: the same plus the key check of six files (two RSA certificates and four keys
  parsed), the admin password check against the fake MongoDB (one PBKDF of 5000 HMAC rounds) and
  the public key's link, then httpd handed over as root;
* ``pulpinit crane``: crane.conf's settings and write, the key check of httpd's pair, no probes.

    .venv/bin/python benchmarks/bench_httpd_roles.py --runs 15
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from pulpinit.api.admin import hash_password
from pulpinit.testing import SAMPLE_CONF
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.keys import keys_env, make_keys, reader_group

sys.path.insert(0, str(Path(__file__).parent))
from bench_startup import timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-httpd-"))
    work.chmod(0o755)
    shutil.copy(SAMPLE_CONF, work / "server.conf")
    keys = make_keys(work / "keys", group=reader_group())
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PULP", "CRANE"))}
    (work / "admin-password").write_text("bench-admin\n")
    pulpinit = [sys.executable, "-m", "pulpinit"]
    try:
        with FakeMongo() as mongo, FakeAmqpBroker() as broker:
            env = {
                **base,
                **keys_env(keys),
                "PULPINIT_CONFIG": str(work / "server.conf"),
                "PULP_DB_SEEDS": mongo.hostport,
                "PULP_BROKER_URL": broker.url(),
                "PULPINIT_USER": "nobody" if os.geteuid() == 0 else str(os.getuid()),
                "PULPINIT_LOG_FORMAT": "json",
                "PULPINIT_MIGRATION_FINGERPRINT": "bench",
                "PULPINIT_MANAGE_DB": "/bin/true",
                "PULPINIT_HTTPD": "/bin/true",
                "PULPINIT_STATIC_DIR": str(work / "static"),
                "PULP_ADMIN_PASSWORD_FILE": str(work / "admin-password"),
                "CRANE_CONFIG_PATH": str(work / "crane.conf"),
            }
            mongo.client["pulp_database"]["users"].insert_one({"login": "admin", "password": hash_password("admin")})
            subprocess.run([*pulpinit, "migrate"], env=env, check=True, capture_output=True)
            cases = {
                "`pulpinit run -- /bin/true`": [*pulpinit, "run", "--", "/bin/true"],
                "`pulpinit api` (httpd = /bin/true)": [*pulpinit, "api"],
                "`pulpinit crane` (httpd = /bin/true)": [*pulpinit, "crane"],
            }
            times: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.runs):
                for name, argv in cases.items():
                    times[name].append(timed(argv, env))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"| command | median | min | max |  (n = {args.runs}, interleaved)")
    print("|---|---|---|---|")
    for name, values in times.items():
        print(
            f"| {name} | {statistics.median(values) * 1000:.0f} ms | {min(values) * 1000:.0f} ms "
            f"| {max(values) * 1000:.0f} ms |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
