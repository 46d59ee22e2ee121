"""The config step: the 2014 way (four ``augtool -s set`` calls) against one ``pulpinit configure``.

Both edit a fresh copy of Pulp 2.21's stock server.conf (``../shared/fixtures``) in a temporary
root and set the four keys the 2014 scripts set: ``[database] seeds``, ``[server] server_name``,
``[messaging] url`` and ``[tasks] broker_url``.

* 2014: ``augtool -r ROOT --transform "MySQL.lns incl /etc/pulp/server.conf" -s set PATH VALUE``
  four times, default flags (every lens on the system is loaded, as in 2014).  The 2014 lens was a
  clone of the stock MySQL lens, so the stock ``MySQL.lns`` stands in for it (it parses the 2.21
  file and gives the same ``target[. = 'database']/seeds`` paths).
* pulpinit: ``python -m pulpinit configure`` as a whole process, with ``PULPINIT_CONFIG`` and the
  four ``PULP_*`` variables; also its second run (nothing to change).
* In-process: ``ServerConf.load`` + ``plan`` + ``write`` — the first call in a fresh process
  (lazy ``import augeas`` and lens compilation included) and the warm median.

Whole-process figures are medians of ``--runs`` runs, interleaved.  Prints markdown table rows.

    .venv/bin/python benchmarks/bench_configure.py --runs 20
"""

from __future__ import annotations

import argparse
import configparser
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pulpinit.testing import SAMPLE_CONF

ROOT = Path(__file__).resolve().parent.parent
STOCK = ROOT.parent / "shared" / "fixtures" / "pulp-2.21-server.conf"
# A user's clone has no ../shared: the project's sample file is in the same (2.12+) dialect.
SOURCE = STOCK if STOCK.is_file() else SAMPLE_CONF
SOURCE_NAME = "Pulp 2.21 stock server.conf" if SOURCE == STOCK else "pulpinit's sample server.conf"
CONF = "etc/pulp/server.conf"
VALUES = {
    ("database", "seeds", "PULP_DB_SEEDS"): "db:27017",
    ("server", "server_name", "PULP_SERVER_NAME"): "pulp.example.com",
    ("messaging", "url", "PULP_MESSAGING_URL"): "tcp://msg:5672",
    ("tasks", "broker_url", "PULP_BROKER_URL"): "qpid://msg:5672/",  # anonymous: kombu refuses a user alone
}

FIRST_CALL = """
import sys, time
started = time.perf_counter()
from pulpinit.config.edits import Assignment
from pulpinit.config.serverconf import ServerConf
imported = time.perf_counter()
items = [Assignment(s, k, v, var) for s, k, var, v in (a.split("|") for a in sys.argv[2:])]
ServerConf.load(sys.argv[1]).plan(items).write()
print((imported - started) * 1000, (time.perf_counter() - imported) * 1000)
"""


def fresh_root(base: Path) -> Path:
    root = Path(tempfile.mkdtemp(dir=base))
    root.chmod(0o755)  # nobody, who runs Pulp here, reads server.conf through it
    (root / CONF).parent.mkdir(parents=True)
    shutil.copyfile(SOURCE, root / CONF)
    return root


def check(path: Path) -> None:
    parser = configparser.ConfigParser()
    parser.read(path, encoding="utf-8")
    for (section, key, _), value in VALUES.items():
        assert parser.get(section, key) == value, (path, section, key)


def run_augtool(augtool: str, root: Path) -> float:
    started = time.perf_counter()
    for (section, key, _), value in VALUES.items():
        node = f"/files/{CONF}/target[. = '{section}']/{key}"
        subprocess.run(
            [augtool, "-r", str(root), "--transform", f"MySQL.lns incl /{CONF}", "-s", "set", node, value],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    elapsed = time.perf_counter() - started
    check(root / CONF)
    return elapsed * 1000


def run_pulpinit(root: Path, python: str) -> float:
    # the user Pulp runs as must be able to read server.conf (pulpinit checks it): one every machine has
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PULPINIT_CONFIG": str(root / CONF),
        "PULPINIT_USER": "nobody",
    }
    env.update({variable: value for (_, _, variable), value in VALUES.items()})
    started = time.perf_counter()
    done = subprocess.run(
        [python, "-m", "pulpinit", "configure"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"pulpinit configure exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}")
    elapsed = time.perf_counter() - started
    check(root / CONF)
    return elapsed * 1000


def in_process(base: Path, runs: int) -> float:
    from pulpinit.config.edits import Assignment
    from pulpinit.config.serverconf import ServerConf

    items = [Assignment(section, key, value, variable) for (section, key, variable), value in VALUES.items()]
    times = []
    for _ in range(runs):
        path = fresh_root(base) / CONF
        started = time.perf_counter()
        ServerConf.load(path).plan(items).write()
        times.append((time.perf_counter() - started) * 1000)
        check(path)
    return statistics.median(times)


def first_call(base: Path, python: str, runs: int) -> tuple[float, float]:
    """Medians of (import pulpinit.config.serverconf, first load+plan+write) in fresh processes."""
    args = [f"{s}|{k}|{var}|{v}" for (s, k, var), v in VALUES.items()]
    imports, calls = [], []
    for _ in range(runs):
        path = fresh_root(base) / CONF
        out = subprocess.run([python, "-c", FIRST_CALL, str(path), *args], check=True, capture_output=True, text=True)
        imported, called = out.stdout.split()
        imports.append(float(imported))
        calls.append(float(called))
        check(path)
    return statistics.median(imports), statistics.median(calls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="whole-process runs of each approach (median)")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    args = parser.parse_args()
    augtool = shutil.which("augtool")
    if augtool is None:
        print("needs augtool (augeas-tools)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-configure-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        run_augtool(augtool, fresh_root(base))  # warm the page cache and .pyc files
        run_pulpinit(fresh_root(base), args.python)
        old, new, again = [], [], []
        for _ in range(args.runs):
            old.append(run_augtool(augtool, fresh_root(base)))
            root = fresh_root(base)
            new.append(run_pulpinit(root, args.python))
            before = (root / CONF).stat().st_mtime_ns
            again.append(run_pulpinit(root, args.python))
            assert (root / CONF).stat().st_mtime_ns == before, "second run wrote the file"
        imported, cold = first_call(base, args.python, args.runs)
        warm = in_process(base, max(args.runs, 20))
    m_old, m_new, m_again = (statistics.median(x) for x in (old, new, again))
    print(f"| approach ({SOURCE_NAME}, 4 keys, median of {args.runs}) | ms |")
    print("|---|---:|")
    print(f"| 2014: 4 × `augtool -s set` (default flags, stock MySQL.lns) | {m_old:.0f} |")
    print(f"| `pulpinit configure`, whole process | {m_new:.0f} |")
    print(f"| `pulpinit configure`, whole process, second run (no change) | {m_again:.0f} |")
    print(f"| `import pulpinit.config.serverconf` in a fresh process | {imported:.1f} |")
    print(f"| in-process load+plan+write, first call in a fresh process (augeas import included) | {cold:.1f} |")
    print(f"| in-process load+plan+write, warm | {warm:.1f} |")
    print(f"| **speed-up, whole process (2014 / pulpinit)** | **{m_old / m_new:.1f}×** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
