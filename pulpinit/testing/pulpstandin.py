"""The stand-in program for Pulp's ``celery`` processes, ``pulp-manage-db`` and ``httpd`` (one source).

:mod:`pulpinit.testing.standins` writes this file, with a shebang, as ``celery``,
``pulp-manage-db`` and ``httpd``; the name it is started under chooses the program.  It imports nothing of
pulpinit: it runs as the unprivileged user, with the system's Python, from a directory that
user can read; pymongo and bson come from ``LIBS`` (a copy the writer makes, because the
project's venv may sit below a private directory).  Like Pulp, both read the database from
server.conf (``PULPINIT_CONFIG``, else ``/etc/pulp/server.conf``): ``[database] seeds, name,
username, password, replica_set`` and ``[tasks] worker_timeout``.

**celery** prints its argv as JSON and its uid/gid/pid/umask, then waits; SIGTERM or SIGINT is a
warm shutdown: it prints ``warm shutdown`` and exits 0.  ``STANDIN_EXIT_AT_ONCE=N`` exits N
instead of waiting.  With ``STANDIN_HEARTBEAT=1`` it behaves like a Pulp process in the
``workers`` collection: its name is the ``-n`` argument (a worker or the resource manager) or
``scheduler@<host name>`` (``celery beat``); a worker first deletes an old document of its own
name; then it upserts ``{_id: name, last_heartbeat: <naive UTC now>}`` every
``worker_timeout / 5`` seconds; the warm shutdown takes ``STANDIN_SHUTDOWN_SECONDS`` (a task
finishing, default 0) and deletes the document.  ``STANDIN_CELERY_RUNS`` names a file where it
appends ``<pid> start <name> <STANDIN_VERSION> <t>`` and ``<pid> end <name> <t>``
(``t``: the machine's CLOCK_MONOTONIC).

**pulp-manage-db** appends ``<pid> <uid> start <t>`` / ``<pid> end <code> <t>`` to
``STANDIN_RUNS`` (default ``runs.log`` beside it), holds an exclusive ``flock`` on
``runs.lock`` beside that file while it runs and records ``<pid> overlap <t>`` when another run
holds it; refuses root (exit 64) unless ``STANDIN_ALLOW_ROOT=1``; SIGTERM ends it with 143.
Then, in Pulp's order:

1. with ``STANDIN_MIGRATION_WAIT=S`` (Pulp >= 2.12's ``MIGRATION_WAIT_TIME``, 92 s, shrunk):
   when any ``workers`` document's ``last_heartbeat`` is younger than S by the local clock, it
   prints the names, records ``<pid> waiting <t>``, waits out the remainder of S from the
   newest heartbeat, and exits 70 if any heartbeat is then newer than that newest one;
2. with ``STANDIN_SCHEMA=N``: a database whose ``migration_trackers`` version is above N is
   newer than this code: exit 65;
3. it "migrates" for ``STANDIN_SECONDS`` (default 0.2); ``STANDIN_EXIT=N`` (not 0) fails
   without changing anything; else, with ``STANDIN_SCHEMA``, it records version N.

**httpd** prints its argv as JSON, its uid/gid/groups, which of the files named in
``STANDIN_HTTPD_FILES`` (``os.pathsep``-separated) it can open for reading, and the names of the
``PULP*``/``CRANE*`` variables it got; then waits.  SIGWINCH (httpd's graceful stop), SIGTERM or
SIGINT makes it print the signal and exit 0; ``STANDIN_EXIT_AT_ONCE=N`` exits N instead of waiting.
"""

import configparser
import datetime
import fcntl
import json
import os
import signal
import sys
import time
from typing import Any

#: Where pymongo and bson are, for a user who cannot read the project's venv (set when written).
LIBS: list[str] = []
sys.path[:0] = LIBS

TRACKER_ID = "pulp.server.db.migrations"


def monotonic() -> str:
    return f"{time.monotonic():.6f}"


def append(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text + "\n")


def utcnow() -> datetime.datetime:
    """Naive UTC, as Pulp's mongoengine documents store it."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def server_conf() -> configparser.RawConfigParser:
    conf = configparser.RawConfigParser()
    conf.read(os.environ.get("PULPINIT_CONFIG") or "/etc/pulp/server.conf")
    return conf


def option(conf: configparser.RawConfigParser, section: str, key: str, default: str) -> str:
    return conf.get(section, key, fallback=default).strip() or default


def database() -> Any:
    """Pulp's database, as server.conf names it (a pymongo Database)."""
    import pymongo

    conf = server_conf()
    seeds = option(conf, "database", "seeds", "localhost:27017").split(",")
    options: dict[str, Any] = {"serverSelectionTimeoutMS": 3000, "appname": "pulp-standin"}
    replica_set = option(conf, "database", "replica_set", "")
    if replica_set:
        options["replicaset"] = replica_set
    elif len(seeds) == 1:
        options["directConnection"] = True
    user = option(conf, "database", "username", "")
    if user:
        options.update(username=user, password=option(conf, "database", "password", ""))
    name = option(conf, "database", "name", "pulp_database")
    options.setdefault("authSource", name)
    return pymongo.MongoClient(seeds, **options)[name]


# ------------------------------------------------------------------------------------------------
# celery
# ------------------------------------------------------------------------------------------------


def process_name(argv: list[str]) -> str:
    if "-n" in argv[:-1]:
        return argv[argv.index("-n") + 1]
    if len(argv) > 1 and argv[1] == "beat":
        return f"scheduler@{os.uname().nodename}"
    return f"celery@{os.uname().nodename}"


def celery(argv: list[str]) -> int:
    stops = {signal.SIGTERM, signal.SIGINT}
    for signum in stops:  # a handler: as PID 1 of a PID namespace it gets them only with one
        signal.signal(signum, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # taken with sigtimedwait; threads inherit the mask
    print("celery argv: " + json.dumps(argv), flush=True)
    print(f"celery uid={os.getuid()} gid={os.getgid()} pid={os.getpid()} umask={os.umask(0o22):04o}", flush=True)
    if os.environ.get("STANDIN_EXIT_AT_ONCE"):
        return int(os.environ["STANDIN_EXIT_AT_ONCE"])
    name = process_name(argv)
    runs = os.environ.get("STANDIN_CELERY_RUNS")
    workers = None
    interval = None
    if os.environ.get("STANDIN_HEARTBEAT") == "1":
        workers = database()["workers"]
        interval = float(option(server_conf(), "tasks", "worker_timeout", "30")) / 5
        if not name.startswith("scheduler@"):
            workers.delete_one({"_id": name})  # a worker cleans up after its previous incarnation
    if runs:
        append(runs, f"{os.getpid()} start {name} {os.environ.get('STANDIN_VERSION', '-')} {monotonic()}")
    received = None
    while received is None:
        if workers is not None:
            try:
                workers.update_one({"_id": name}, {"$set": {"last_heartbeat": utcnow()}}, upsert=True)
            except Exception as exc:  # a database outage: Pulp logs and tries again
                print(f"celery: heartbeat failed: {type(exc).__name__}: {exc}", flush=True)
        received = signal.sigtimedwait(stops, interval) if interval else signal.sigwaitinfo(stops)
    print(f"celery: {signal.Signals(received.si_signo).name} received: warm shutdown", flush=True)
    time.sleep(float(os.environ.get("STANDIN_SHUTDOWN_SECONDS", "0")))
    if workers is not None:
        workers.delete_one({"_id": name})
    if runs:
        append(runs, f"{os.getpid()} end {name} {monotonic()}")
    return 0


# ------------------------------------------------------------------------------------------------
# pulp-manage-db
# ------------------------------------------------------------------------------------------------


def refuse_while_heartbeats(db: Any, wait_s: float, record: Any) -> int:
    """Pulp >= 2.12: wait out MIGRATION_WAIT_TIME from the newest heartbeat; 70 if a newer one came."""
    workers = list(db["workers"].find())
    if not workers:
        return 0
    newest = max(w["last_heartbeat"] for w in workers)
    remaining = wait_s - (utcnow() - newest).total_seconds()
    if remaining <= 0:
        return 0
    print("The following processes might still be running:", flush=True)
    for worker in workers:
        print(f"\t{worker['_id']}", flush=True)
    record("waiting")
    print(f"Please wait {remaining:.1f} seconds while Pulp confirms this.", flush=True)
    time.sleep(remaining)
    still = [w["_id"] for w in db["workers"].find() if w["last_heartbeat"] > newest]
    if still:
        print(
            "The following processes are still running, please stop the running workers before retrying "
            "the pulp-manage-db command.",
            flush=True,
        )
        for name in still:
            print(f"\t{name}", flush=True)
        return 70
    return 0


def manage_db() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    runs = os.environ.get("STANDIN_RUNS") or os.path.join(here, "runs.log")

    def record(text: str) -> None:
        append(runs, f"{os.getpid()} {text} {monotonic()}")

    def stop(signum: int, frame: object) -> None:
        record("end 143")
        os._exit(143)

    if os.geteuid() == 0 and os.environ.get("STANDIN_ALLOW_ROOT") != "1":
        print("This script may not be run as root. Please run as apache.", flush=True)
        return 64
    signal.signal(signal.SIGTERM, stop)
    lock = open(os.path.splitext(runs)[0] + ".lock", "a")  # noqa: SIM115 - held until the process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        record("overlap")
    record(f"{os.getuid()} start")
    code = 0
    schema = os.environ.get("STANDIN_SCHEMA")
    wait_s = os.environ.get("STANDIN_MIGRATION_WAIT")
    db: Any = database() if schema or wait_s else None
    if wait_s:
        code = refuse_while_heartbeats(db, float(wait_s), record)
    if code == 0 and schema:
        tracker = db["migration_trackers"].find_one({"_id": TRACKER_ID}) or {}
        if tracker.get("version", 0) > int(schema):
            print(f"The database is at version {tracker['version']}, newer than this Pulp ({schema}).", flush=True)
            code = 65
    if code == 0:
        print("Loading content types.", flush=True)
        print(f"Applying pulp.server.db.migrations version {schema or 28}", flush=True)
        time.sleep(float(os.environ.get("STANDIN_SECONDS", "0.2")))
        code = int(os.environ.get("STANDIN_EXIT", "0"))
        if code == 0 and schema:
            db["migration_trackers"].update_one({"_id": TRACKER_ID}, {"$set": {"version": int(schema)}}, upsert=True)
        print("Database migrations complete." if code == 0 else "Database migrations failed.", flush=True)
    record(f"end {code}")
    return code


def httpd(argv: list[str]) -> int:
    def stop(signum: int, frame: Any) -> None:
        print(f"httpd: {signal.Signals(signum).name} received: stopping", flush=True)
        sys.exit(0)

    for name in ("SIGWINCH", "SIGTERM", "SIGINT"):
        signal.signal(getattr(signal, name), stop)
    print("httpd argv: " + json.dumps(argv), flush=True)
    print(f"httpd uid={os.getuid()} gid={os.getgid()} groups={sorted(os.getgroups())} pid={os.getpid()}", flush=True)
    readable = {}
    for path in filter(None, os.environ.get("STANDIN_HTTPD_FILES", "").split(os.pathsep)):
        try:
            with open(path, "rb"):
                readable[path] = True
        except OSError:
            readable[path] = False
    print("httpd can read: " + json.dumps(readable), flush=True)
    print("httpd environ: " + json.dumps(sorted(k for k in os.environ if k.startswith(("PULP", "CRANE")))), flush=True)
    if os.environ.get("STANDIN_EXIT_AT_ONCE"):
        return int(os.environ["STANDIN_EXIT_AT_ONCE"])
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    PROGRAMS = {"celery": celery, "httpd": httpd}
    program = PROGRAMS.get(os.path.basename(sys.argv[0]))
    sys.exit(program(sys.argv) if program else manage_db())
