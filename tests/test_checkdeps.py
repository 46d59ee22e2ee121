"""check-deps and the wait stage as whole pulpinit processes, against the fakes and injected faults."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import pace
from helpers.processes import Spawned
from helpers.workdirs import reachable

from pulpinit.targets import Failure
from pulpinit.testing.fakeamqp import FakeAmqpBroker
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.testing.faults import AnswerServer, BlackHole, Proxy, ResetServer, SilentServer
from pulpinit.testing.plugin import FakeServices

SECRET = "s3cr3t-Broker-Pw"


@pytest.fixture(scope="module")
def mongo(module_fakes: FakeServices) -> FakeMongo:
    return module_fakes.mongo()


@pytest.fixture(scope="module")
def broker(module_fakes: FakeServices) -> FakeAmqpBroker:
    return module_fakes.broker(users={"pulp": SECRET})


@pytest.fixture
def env(mongo: FakeMongo, broker: FakeAmqpBroker) -> Iterator[dict[str, str]]:
    with reachable("checkdeps") as workdir:  # when root, pulpinit checks PULPINIT_USER can read server.conf
        yield _environment(workdir, mongo, broker)


def _environment(workdir: Path, mongo: FakeMongo, broker: FakeAmqpBroker) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PULP")}
    base.update(
        {
            "PULPINIT_CONFIG": str(workdir / "server.conf"),
            "PULPINIT_LOG_FORMAT": "json",
            "PULP_DB_SEEDS": mongo.hostport,
            "PULP_BROKER_URL": broker.url("pulp", SECRET),
            # [messaging]: gofer's qpid transport to the same fake (AMQP 0-10, as Qpid C++)
            "PULP_MESSAGING_URL": f"tcp://pulp:{SECRET}@{broker.host}:{broker.port}",
            # what `run` checks before it waits (validate first): a user that exists, a fingerprint
            "PULPINIT_USER": "nobody",
            "PULPINIT_MIGRATION_FINGERPRINT": "2.21.5-1",
        }
    )
    return base


def check(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "pulpinit", "check-deps", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert SECRET not in done.stdout + done.stderr
    return done.returncode, done.stdout, done.stderr


def mongo_version() -> str:
    from pulpinit.testing.fakemongo import version_for_wire

    return version_for_wire(17)


def by_name(stdout: str) -> dict[str, dict]:
    report = json.loads(stdout)
    assert set(report) == {"ok", "exit_code", "checks", "pulp_processes"}
    for item in report["checks"]:
        assert set(item) == {"name", "endpoint", "source", "ok", "latency_ms", "version", "error", "hint", "warnings"}
    return {item["name"]: item for item in report["checks"]}


def test_both_up_json_and_table(env, broker):
    code, out, _ = check(env, "--json")
    assert code == 0
    checks = by_name(out)
    assert checks["mongodb"]["ok"] and checks["broker"]["ok"]
    assert checks["mongodb"]["version"] == mongo_version()
    assert checks["broker"]["endpoint"] == env["PULP_BROKER_URL"].replace(SECRET, "***")
    assert checks["mongodb"]["error"] is None and checks["mongodb"]["hint"] is None
    assert checks["mongodb"]["latency_ms"] > 0
    code, out, _ = check(env)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["dependency", "endpoint", "source", "status"]
    assert [line.split()[0] for line in lines[2:5]] == ["mongodb", "broker", "messaging"]
    assert checks["messaging"]["ok"] and checks["messaging"]["source"] == "env:PULP_MESSAGING_URL"
    assert checks["messaging"]["endpoint"] == f"qpid+tcp://pulp:***@{broker.host}:{broker.port}"
    assert [line.split()[2] for line in lines[2:4]] == ["env:PULP_DB_SEEDS", "env:PULP_BROKER_URL"]
    assert all(" up " in line for line in lines[2:4])


def test_each_endpoint_names_where_its_address_came_from(env, mongo, broker):
    """The first question when an address is wrong: a Service variable, server.conf, a default?"""
    conf = Path(env["PULPINIT_CONFIG"])
    conf.write_text(conf.read_text().replace("# seeds: localhost:27017", f"seeds: {mongo.hostport}"))
    del env["PULP_DB_SEEDS"], env["PULP_BROKER_URL"]
    env.update(MSG_SERVICE_HOST="127.0.0.1", MSG_SERVICE_PORT=str(broker.port), MSG_SERVICE_PASSWORD=SECRET)
    env["MSG_SERVICE_USER"] = "pulp"
    code, out, _ = check(env, "--json")
    assert code == 0, out
    checks = by_name(out)
    assert (checks["mongodb"]["source"], checks["broker"]["source"]) == ("server.conf", "k8s:msg")
    # the sources are those `pulpinit settings` shows for the keys the addresses come from
    done = subprocess.run(
        [sys.executable, "-m", "pulpinit", "settings", "--json"], env=env, capture_output=True, text=True, check=True
    )
    settings = json.loads(done.stdout)["settings"]
    assert settings["database.seeds"]["source"] == "server.conf"
    assert settings["tasks.broker_url"]["source"] == "k8s:msg"


def test_an_address_nothing_set_is_named_default():
    """Pulp's built-in ``localhost`` addresses (not probed here: tests resolve no names)."""
    from pulpinit.render import check_deps_table
    from pulpinit.settings.resolve import from_environ
    from pulpinit.targets import ProbeResult, address_sources, broker_target, mongo_target
    from pulpinit.wait.report import Report

    settings = from_environ({"PULP_DB_SEEDS": "127.0.0.1:1"}, {})
    sources = address_sources(settings)
    assert sources == {"mongodb": "env:PULP_DB_SEEDS", "broker": "default", "messaging": "default"}
    report = Report(
        (
            ProbeResult("mongodb", mongo_target(settings).endpoint, True, 1.0),
            ProbeResult("broker", broker_target(settings).endpoint, True, 1.0),
        ),
        sources,
    )
    rows = check_deps_table(report).splitlines()[2:]
    assert [row.split()[:3] for row in rows] == [
        ["mongodb", "mongodb://127.0.0.1:1/pulp_database", "env:PULP_DB_SEEDS"],
        ["broker", "qpid://localhost/", "default"],
    ]
    assert [check["source"] for check in report.as_json()["checks"]] == ["env:PULP_DB_SEEDS", "default"]


@pytest.mark.slow  # real processes: seconds
def test_down_dependency_exit_69_with_class_and_hint(env):
    with ResetServer() as closed:
        port = closed.port
    env["PULP_DB_SEEDS"] = f"127.0.0.1:{port}"  # nothing listens there any more
    code, out, _ = check(env, "--json")
    assert code == 69
    checks = by_name(out)
    assert json.loads(out)["ok"] is False
    assert checks["broker"]["ok"] is True
    assert checks["mongodb"]["error"].startswith("connection_refused: ")
    assert "nothing listens" in checks["mongodb"]["hint"]
    code, out, _ = check(env)
    assert code == 69 and "DOWN" in out and "hint (mongodb):" in out


@pytest.mark.parametrize(
    ("fault", "failure"),
    [
        (SilentServer, "handshake_timeout"),
        (ResetServer, "connection_reset"),
        (BlackHole, "timeout"),
    ],
)
@pytest.mark.slow  # real processes: seconds
def test_faults_are_classified(env, fault, failure):
    with fault() as server:
        env["PULP_DB_SEEDS"] = f"127.0.0.1:{server.port}"
        code, out, _ = check(env, "--json", "--timeout", "0.5")
    assert code == 69
    assert by_name(out)["mongodb"]["error"].startswith(f"{failure}: ")


def test_wrong_broker_password_and_protocol_mismatch(env, broker):
    env["PULP_BROKER_URL"] = broker.url("pulp", "not-" + SECRET)
    code, out, _ = check(env, "--json")
    assert code == 69 and by_name(out)["broker"]["error"].startswith("authentication_failed: ")
    assert "not-" + SECRET not in out
    env["PULP_BROKER_URL"] = f"amqp://pulp:{SECRET}@127.0.0.1:{broker.port}//"  # 0-9-1 client, Qpid broker
    code, out, _ = check(env, "--json")
    assert code == 69 and by_name(out)["broker"]["error"].startswith("protocol_mismatch: ")


def test_qpid_url_against_rabbitmq_says_use_amqp(env):
    with AnswerServer(b"AMQP\x00\x00\x09\x01") as rabbit:  # RabbitMQ's answer to the 0-10 header
        env["PULP_BROKER_URL"] = f"qpid://pulp:{SECRET}@127.0.0.1:{rabbit.port}/"
        code, out, _ = check(env, "--json")
        table = check(env)[1]
    broker = by_name(out)["broker"]
    assert code == 69 and broker["error"] == (
        "protocol_mismatch: Celery's qpid:// transport speaks AMQP 0-10; this broker offers AMQP 0-9-1 "
        f"(RabbitMQ?): use amqp://USER:PASSWORD@127.0.0.1:{rabbit.port}/VHOST"
    )
    assert broker["hint"] == Failure.PROTOCOL.hint and f"hint (broker): {Failure.PROTOCOL.hint}" in table


@pytest.mark.root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is not installed")
def test_dns_failure_in_a_network_namespace_without_a_resolver(env):
    """No query leaves the machine: the namespace has no interface up, so the lookup fails at once."""
    env.update(PULP_DB_SEEDS="db.pulp.test:27017", PULP_BROKER_URL=f"qpid://pulp:{SECRET}@msg.pulp.test:5672/")
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-m", "pulpinit", "check-deps", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 69, done.stderr
    checks = by_name(done.stdout)
    assert checks["mongodb"]["error"].startswith("dns_failure: cannot resolve db.pulp.test")
    assert checks["broker"]["error"].startswith("dns_failure: cannot resolve msg.pulp.test")
    assert SECRET not in done.stdout + done.stderr


def test_unsupported_server_version(env):
    with FakeMongo(wire_version=5) as old:  # MongoDB 3.4: below what pymongo 4.x speaks
        env["PULP_DB_SEEDS"] = old.hostport
        code, out, _ = check(env, "--json")
    assert code == 69 and by_name(out)["mongodb"]["error"].startswith("unsupported_server_version: ")


@pytest.mark.slow  # real processes: seconds
def test_slow_answer_beyond_the_probe_timeout_is_a_timeout(env, mongo):
    with Proxy(("127.0.0.1", mongo.port), first_answer_delay=3.0) as slow:
        env["PULP_DB_SEEDS"] = f"127.0.0.1:{slow.port}"
        code, out, _ = check(env, "--json", "--timeout", "0.8")
    assert code == 69 and by_name(out)["mongodb"]["error"].startswith("handshake_timeout: ")


def test_wait_until_a_late_dependency_comes_up(env, mongo):
    with Proxy(("127.0.0.1", mongo.port), up=False) as late:
        env["PULP_DB_SEEDS"] = f"127.0.0.1:{late.port}"
        with Spawned([sys.executable, "-m", "pulpinit", "check-deps", "--wait", "--json"], env=env) as proc:
            assert proc.event("dep.down")["failure"] == "connection_refused"
            late.go_up()
            code, out, _ = proc.finish(timeout=30)
    assert code == 0
    assert by_name(out)["mongodb"]["ok"]
    up = [event for event in proc.events() if event["event"] == "dep.up"]
    assert {event["dependency"] for event in up} == {"mongodb", "broker"}


@pytest.mark.slow  # real processes: seconds
def test_flapping_dependency_is_reported_as_it_is(env, mongo):
    with Proxy(("127.0.0.1", mongo.port)) as flappy:
        env["PULP_DB_SEEDS"] = f"127.0.0.1:{flappy.port}"
        assert check(env)[0] == 0
        flappy.go_down()
        assert check(env)[0] == 69
        flappy.go_up()
        assert check(env)[0] == 0


@pytest.mark.slow  # real processes: seconds
def test_wait_deadline_exits_69_naming_what_is_down(env):
    with SilentServer() as silent:
        env.update(PULP_DB_SEEDS=f"127.0.0.1:{silent.port}", PULPINIT_WAIT_TIMEOUT="1.5")
        done = subprocess.run(
            [sys.executable, "-m", "pulpinit", "run", "--", "/bin/true"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 69
    error = json.loads(done.stderr.strip().splitlines()[-1])
    assert error["event"] == "pulpinit.error"
    assert error["error"].startswith("still down at the deadline: mongodb (handshake_timeout: ")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_while_waiting_exits_promptly(env, free_port, signum, code):
    env["PULP_DB_SEEDS"] = f"127.0.0.1:{free_port}"
    paced = pace.argv(initial=60, max_interval=60, armed_interval=0)
    with Spawned([*paced, "run", "--", "/bin/true"], env=env) as proc:
        proc.event("dep.down")  # now sleeping in a 60 s backoff interval
        sent = time.monotonic()
        proc.proc.send_signal(signum)
        returncode, _, err = proc.finish(timeout=60)
    assert returncode == code
    assert time.monotonic() - sent < 20  # not the 60 s interval (room for a loaded machine)
    assert f"{signal.Signals(signum).name} received during wait" in err


@pytest.mark.slow  # real processes: seconds
def test_timeout_is_the_budget_of_a_single_check(env, mongo):
    """Without --wait, --timeout gives the one attempt longer than the 1 s default (a slow server)."""
    with Proxy(("127.0.0.1", mongo.port), first_answer_delay=1.5) as slow:
        env["PULP_DB_SEEDS"] = f"127.0.0.1:{slow.port}"
        assert check(env, "--json")[0] == 69
        code, out, _ = check(env, "--json", "--timeout", "4")
    assert code == 0 and by_name(out)["mongodb"]["latency_ms"] >= 1500


def test_a_missing_tls_file_that_the_configuration_names_is_exit_78(env, tmp_path):
    conf = Path(env["PULPINIT_CONFIG"])
    conf.write_text(
        conf.read_text().replace("[tasks]", f"[tasks]\ncelery_require_ssl: true\ncertfile: {tmp_path}/client.crt", 1)
    )
    before = conf.read_bytes()
    code, _, err = check(env)
    assert code == 78
    line = json.loads(err.strip().splitlines()[-1])
    assert line["error"] == (
        f"server.conf [tasks] certfile: {tmp_path}/client.crt: No such file or directory "
        "(tasks.celery_require_ssl is on)"
    )
    assert conf.read_bytes() == before
    env.update(PULP_CONF__DATABASE__SSL="true", PULP_CONF__DATABASE__CA_PATH=f"{tmp_path}/ca.pem")
    conf.write_text(before.decode().replace("celery_require_ssl: true", "celery_require_ssl: false"))
    code, _, err = check(env)
    assert code == 78 and "PULP_CONF__DATABASE__CA_PATH: " in err and "database.ssl is on" in err


def test_a_missing_default_tls_file_is_named_by_the_probe(env, tmp_path):
    """Pulp's built-in /etc/pki/pulp/qpid/… paths are not a configuration error: the probe names them."""
    env["PULP_CONF__TASKS__CELERY_REQUIRE_SSL"] = "true"
    code, out, _ = check(env, "--json")
    assert code == 69
    assert by_name(out)["broker"]["error"] == (
        "tls_failure: cannot read tasks.cacert /etc/pki/pulp/qpid/ca.crt: No such file or directory"
    )


def test_a_fifo_named_as_a_tls_file_is_exit_78_not_a_hang(env, tmp_path):
    fifo = tmp_path / "ca.pem"
    os.mkfifo(fifo)
    env.update(PULP_CONF__DATABASE__SSL="true", PULP_CONF__DATABASE__CA_PATH=str(fifo))
    code, _, err = check(env)
    assert code == 78
    assert "PULP_CONF__DATABASE__CA_PATH" in err and "not a regular file" in err


@pytest.mark.parametrize("late", ["mongodb", "broker"])
def test_armed_wait_sees_a_refused_then_listening_dependency_before_its_next_probe(env, mongo, broker, late):
    """Knocks (bare TCP connects) find the port listening; the probe runs then, not 30 s later.

    The backoff is 30 s, so only a knock can explain an answer within the test's timeout; the knock
    sends no byte and closes cleanly, and leaves nothing open on the server.
    """
    server = mongo if late == "mongodb" else broker
    with Proxy(("127.0.0.1", server.port), up=False) as proxy:
        if late == "mongodb":
            env["PULP_DB_SEEDS"] = f"127.0.0.1:{proxy.port}"
        else:
            env["PULP_BROKER_URL"] = f"qpid://pulp:{SECRET}@127.0.0.1:{proxy.port}/"
        with Spawned([*pace.argv(initial=30, max_interval=30), "check-deps", "--wait", "--json"], env=env) as proc:
            down = proc.event("dep.down")
            assert (down["dependency"], down["failure"]) == (late, "connection_refused")
            assert proxy.accepted == 0  # refused by the kernel: the server never saw the waiter
            proxy.go_up()
            code, out, _ = proc.finish(timeout=20)  # well before the 30 s backoff
        assert code == 0 and by_name(out)[late]["ok"]
        assert proxy.wait_idle()  # nothing left half-open
        up = next(e for e in proc.events() if e["event"] == "dep.up" and e["dependency"] == late)
        assert up["attempts"] == 2 and up["knocks"] >= 1  # the refused probe, then the one the knock set off
        # the dependency saw one connection without a byte (the knock); every other one spoke its protocol
        assert proxy.quiet == 1 and proxy.accepted > proxy.quiet


@pytest.mark.slow  # real processes: seconds
def test_pulp_processes_live_and_stale_beside_the_checks(env, mongo):
    """check-deps lists who heartbeats in Pulp's ``workers``: what the migration waits for."""
    import datetime as dt

    import pymongo

    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    docs = [
        {"_id": "reserved_resource_worker-1@pulp-worker-1", "last_heartbeat": now - dt.timedelta(seconds=3)},
        {"_id": "scheduler@pulp-beat-old", "last_heartbeat": now - dt.timedelta(seconds=500)},
    ]
    with pymongo.MongoClient(f"mongodb://{mongo.hostport}") as client:
        workers = client.pulp_database.workers
        workers.insert_many(docs)
        try:
            code, out, _ = check(env, "--json")
            assert code == 0
            by_name(out)
            processes = json.loads(out)["pulp_processes"]
            assert processes["threshold_s"] == 92
            assert [p["name"] for p in processes["live"]] == ["reserved_resource_worker-1@pulp-worker-1"]
            assert 3 <= processes["live"][0]["age_s"] < 30
            assert [p["name"] for p in processes["stale"]] == ["scheduler@pulp-beat-old"]
            code, out, _ = check(env)
            rows = {line.split()[0]: line for line in out.splitlines() if "@" in line}
            assert rows["reserved_resource_worker-1@pulp-worker-1"].endswith("live")
            assert "stale (none for 92 s)" in rows["scheduler@pulp-beat-old"]
            # the threshold is PULPINIT_QUIET_SECONDS: what the migrating role waits for
            code, out, _ = check({**env, "PULPINIT_QUIET_SECONDS": "2"}, "--json")
            assert json.loads(out)["pulp_processes"]["live"] == []
        finally:
            workers.delete_many({})
    code, out, _ = check(env)
    assert "pulp processes: none heartbeating" in out


@pytest.mark.slow  # real processes: seconds
def test_pulp_processes_unknown_when_mongodb_is_down(env):
    with ResetServer() as closed:
        port = closed.port
    env["PULP_DB_SEEDS"] = f"127.0.0.1:{port}"
    started = time.monotonic()
    code, out, _ = check(env, "--json", "--timeout", "0.5")
    assert code == 69 and time.monotonic() - started < 5
    assert set(json.loads(out)["pulp_processes"]) == {"error"}
    code, out, _ = check(env, "--timeout", "0.5")
    assert "pulp processes: unknown (" in out


@pytest.mark.parametrize(("transport", "scheme"), [("qpid", "tcp"), ("proton", "amqp")])
def test_messaging_down_is_shown_but_counted_only_when_the_roles_wait_for_it(env, broker, transport, scheme):
    env["PULP_CONF__MESSAGING__TRANSPORT"] = transport
    env["PULP_MESSAGING_URL"] = f"{scheme}://pulp:wrong-{SECRET}@{broker.host}:{broker.port}"
    code, out, _ = check(env, "--json")
    checks = by_name(out)
    assert code == 0 and json.loads(out)["ok"] is True
    assert checks["messaging"]["ok"] is False and checks["messaging"]["error"].startswith("authentication_failed: ")
    assert checks["messaging"]["endpoint"] == f"{transport}+{scheme}://pulp:***@{broker.host}:{broker.port}"
    code, out, _ = check(env)
    assert code == 0 and "DOWN" in out and "not counted in the exit code" in out
    env["PULPINIT_WAIT_MESSAGING"] = "1"
    code, out, _ = check(env, "--json")
    assert code == 69 and json.loads(out)["ok"] is False
    env["PULP_MESSAGING_URL"] = f"{scheme}://pulp:{SECRET}@{broker.host}:{broker.port}"
    code, out, _ = check(env, "--json")
    assert code == 0 and by_name(out)["messaging"]["ok"], out


def test_check_deps_wait_does_not_wait_for_an_uncounted_messaging(env):
    env["PULP_MESSAGING_URL"] = f"tcp://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    code, out, _ = check(env, "--json", "--wait", "--timeout", "20")
    assert code == 0 and not by_name(out)["messaging"]["ok"]
    assert time.monotonic() - started < 10


def test_what_gofer_cannot_use_is_exit_78_only_when_the_roles_wait_for_it(env):
    env["PULP_CONF__MESSAGING__TRANSPORT"] = "amqplib"
    code, out, _ = check(env, "--json")
    assert code == 0 and "gofer 2.4 removed the amqplib adapter" in by_name(out)["messaging"]["error"]
    env["PULPINIT_WAIT_MESSAGING"] = "1"
    code, _, err = check(env, "--json")
    assert code == 78 and "PULP_CONF__MESSAGING__TRANSPORT" in err and "amqplib" in err


def _closed_port() -> int:
    with ResetServer() as closed:
        return closed.port


# -- one deadline, one document, one exit-code rule -------------------------------------------------


def timed(env: dict[str, str], *args: str) -> tuple[float, int, str, str]:
    started = time.monotonic()
    code, out, err = check(env, *args)
    return time.monotonic() - started, code, out, err


@pytest.mark.parametrize("wait", [False, True])
@pytest.mark.slow  # real processes: seconds
def test_the_whole_run_census_included_ends_within_the_timeout(env, wait):
    """The census of ``workers`` once came after the wait with a budget of its own: 2.3 × --timeout.

    MongoDB accepts and never answers: the probes and the census both run into the deadline.
    The margin covers the interpreter's start and the imports (about 0.5 s).
    """
    budget = 4.0
    with SilentServer() as silent:
        env["PULP_DB_SEEDS"] = f"127.0.0.1:{silent.port}"
        elapsed, code, out, _ = timed(env, "--json", "--timeout", str(budget), *(["--wait"] if wait else []))
    assert code == 69
    assert by_name(out)["mongodb"]["error"].startswith("handshake_timeout: ")
    assert set(json.loads(out)["pulp_processes"]) == {"error"}
    assert budget - 0.5 < elapsed < budget + 2.0, elapsed


@pytest.mark.slow  # real processes: seconds
def test_the_census_of_a_wait_reads_mongodb_while_the_broker_is_still_down(env, free_port):
    env["PULP_BROKER_URL"] = f"qpid://pulp:{SECRET}@127.0.0.1:{free_port}/"  # refused to the end
    elapsed, code, out, _ = timed(env, "--json", "--wait", "--timeout", "3")
    assert code == 69 and elapsed < 5.0
    assert by_name(out)["mongodb"]["ok"] and json.loads(out)["pulp_processes"]["live"] == []


@pytest.mark.parametrize("wait", [False, True])
def test_json_is_one_document_even_when_the_settings_fail(env, wait):
    env["PULP_BROKER_URL"] = "http://h/"
    code, out, err = check(env, "--json", *(["--wait"] if wait else []))
    assert code == 78
    document = json.loads(out)  # one document, nothing else on stdout
    assert document["ok"] is False and document["exit_code"] == 78 and document["checks"] == []
    assert document["error"].startswith("PULP_BROKER_URL: unknown URL scheme 'http'")
    assert json.loads(err.splitlines()[-1])["error"] == document["error"]  # and the usual line on stderr


def test_json_is_one_document_when_a_stop_signal_ends_the_wait(env, free_port):
    env["PULP_DB_SEEDS"] = f"127.0.0.1:{free_port}"
    with Spawned([sys.executable, "-m", "pulpinit", "check-deps", "--wait", "--json"], env=env) as proc:
        proc.event("dep.down")
        proc.proc.send_signal(signal.SIGTERM)
        code, out, _ = proc.finish(timeout=10)
    assert code == 143
    document = json.loads(out)
    assert (document["ok"], document["exit_code"]) == (False, 143)
    assert document["error"] == "SIGTERM received during check-deps"


@pytest.mark.parametrize("wait", [False, True])
def test_a_user_that_may_not_write_is_78_with_the_report_with_or_without_wait(env, mongo, wait):
    """One exit-code rule (docs/waiting.md): 0 up, 78 a refusal no wait cures, 69 down; the report either way."""
    mongo.add_user("pulp_database", "reader", "r3ader-pw", read_only=True)
    env.update(PULP_DB_USERNAME="reader", PULP_DB_PASSWORD="r3ader-pw")
    code, out, _ = check(env, "--json", *(["--wait"] if wait else []))
    assert code == 78
    report = json.loads(out)
    assert report["exit_code"] == 78 and report["ok"] is False
    assert by_name(out)["mongodb"]["error"].startswith("not_authorized: ")
    code, out, _ = check(env, *(["--wait"] if wait else []))
    assert code == 78 and "not_authorized" in out and "hint (mongodb):" in out
