"""``PULPINIT_WAIT_MESSAGING``: the roles that talk to the consumer agents (api, worker) wait for ``[messaging]``.

Whole pulpinit processes in the sandbox (fake MongoDB and broker, stand-ins for celery and
pulp-manage-db).  ``[messaging]`` points at a port nothing listens on, or at the fake broker.
"""

from __future__ import annotations

import pytest

from pulpinit.testing.faults import ResetServer
from pulpinit.testing.sandbox import Sandbox


def closed_port() -> int:
    with ResetServer() as closed:
        return closed.port


@pytest.fixture
def migrated(pulpinit_sandbox: Sandbox) -> Sandbox:
    assert pulpinit_sandbox.run("migrate").exit_code == 0
    return pulpinit_sandbox


def test_without_the_knob_no_role_probes_messaging(migrated: Sandbox) -> None:
    env = {"PULP_MESSAGING_URL": f"tcp://127.0.0.1:{closed_port()}"}
    result = migrated.run("worker", "1", env=env)
    assert result.exit_code == 0, result.error
    assert all(event.get("dependency") != "messaging" for event in result.events)


def test_worker_waits_for_messaging_beat_and_resource_manager_do_not(migrated: Sandbox) -> None:
    env = {
        "PULP_MESSAGING_URL": f"tcp://127.0.0.1:{closed_port()}",
        "PULPINIT_WAIT_MESSAGING": "1",
        "PULPINIT_WAIT_TIMEOUT": "1",
    }
    worker = migrated.run("worker", "1", env=env)
    assert worker.exit_code == 69, worker.error
    assert "messaging (connection_refused" in str(worker.error)
    assert worker.event("dep.down")["dependency"] == "messaging"
    for role in ("beat", "resource-manager"):
        result = migrated.run(role, env=env)
        assert result.exit_code == 0, (role, result.error)
        assert all(event.get("dependency") != "messaging" for event in result.events)


def test_worker_goes_on_once_messaging_answers(migrated: Sandbox) -> None:
    broker = migrated.broker
    env = {"PULP_MESSAGING_URL": f"tcp://{broker.host}:{broker.port}", "PULPINIT_WAIT_MESSAGING": "1"}
    result = migrated.run("worker", "1", env=env)
    assert result.exit_code == 0, result.error
    up = [event for event in result.events if event.get("event") == "dep.up"]
    assert {event["dependency"] for event in up} == {"mongodb", "broker", "messaging"}


def test_the_api_plan_names_the_messaging_wait(pulpinit_sandbox: Sandbox) -> None:
    env = {"PULPINIT_WAIT_MESSAGING": "1", "PULP_MESSAGING_URL": "ssl://msg.example.test:5671"}
    env["PULPINIT_HTTPD"] = "/bin/true"  # the dry run checks the api's httpd as the run would
    for role, waits in (("api", True), ("worker", True), ("beat", False), ("resource-manager", False)):
        plan = pulpinit_sandbox.run(role, "--dry-run", env=env)
        assert plan.exit_code == 0, plan.error
        assert ("messaging at qpid+ssl://msg.example.test:5671" in plan.stdout) is waits, (role, plan.stdout)


def test_with_the_knob_an_unreadable_messaging_tls_file_is_exit_78(tmp_path) -> None:
    from pulpinit.errors import EnvValueError
    from pulpinit.settings.resolve import from_environ

    env = {
        "PULP_MESSAGING_URL": "ssl://msg:5671",
        "PULP_CONF__MESSAGING__CLIENTCERT": str(tmp_path / "client.pem"),
    }
    assert from_environ(env, {}).get("messaging.clientcert") == str(tmp_path / "client.pem")  # nothing waits: fine
    with pytest.raises(EnvValueError) as raised:
        from_environ({**env, "PULPINIT_WAIT_MESSAGING": "1"}, {})
    assert "PULP_CONF__MESSAGING__CLIENTCERT" in str(raised.value) and "messaging.url uses TLS" in str(raised.value)
    with pytest.raises(EnvValueError, match=r"PULP_MESSAGING_URL.*no default port for tcp"):
        from_environ(
            {
                "PULP_MESSAGING_URL": "tcp://msg:5672",
                "PULP_CONF__MESSAGING__TRANSPORT": "proton",
                "PULPINIT_WAIT_MESSAGING": "true",
            },
            {},
        )
