"""Settings resolution: every precedence layer, the derivations, secrets from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulpinit.errors import EnvValueError
from pulpinit.settings import from_environ


def resolve(env: dict[str, str], conf: dict[str, str] | None = None):
    return from_environ(env, conf or {}, hostname="pod-7")


def test_defaults_when_nothing_is_set():
    s = resolve({})
    assert s.values["database.seeds"].value == "localhost:27017"
    assert s.values["database.seeds"].source == "default"
    assert s.values["tasks.broker_url"].value == "qpid://localhost/"
    assert s.values["messaging.url"].value == "tcp://localhost:5672"
    assert s.values["server.server_name"].value == "pod-7"
    assert s.to_write() == ()


def test_server_conf_value_beats_default():
    s = resolve({}, {"database.seeds": "db:27017"})
    assert (s.values["database.seeds"].value, s.values["database.seeds"].source) == ("db:27017", "server.conf")
    assert s.to_write() == ()  # an image that bakes seeds keeps them, nothing rewritten


def test_service_host_beats_server_conf():
    s = resolve({"SERVICE_HOST": "10.1.1.1"}, {"database.seeds": "db:27017"})
    assert s.values["database.seeds"].value == "10.1.1.1:27017"
    assert s.values["database.seeds"].source == "env:SERVICE_HOST"
    assert s.values["messaging.url"].value == "tcp://10.1.1.1:5672"
    assert s.values["tasks.broker_url"].value == "qpid://guest@10.1.1.1:5672/"


def test_kubernetes_service_beats_service_host():
    env = {"SERVICE_HOST": "10.1.1.1", "DB_SERVICE_HOST": "10.2.2.2", "DB_SERVICE_PORT": "27018",
           "MSG_SERVICE_HOST": "10.3.3.3", "MSG_SERVICE_PORT": "5673"}
    s = resolve(env)
    assert s.values["database.seeds"].value == "10.2.2.2:27018"
    assert s.values["database.seeds"].source == "k8s:db"
    assert s.values["messaging.url"].value == "tcp://10.3.3.3:5673"
    assert s.values["tasks.broker_url"].value == "qpid://guest@10.3.3.3:5673/"
    assert s.values["tasks.broker_url"].source == "k8s:msg"


def test_explicit_beats_kubernetes():
    env = {"DB_SERVICE_HOST": "10.2.2.2", "PULP_DB_SEEDS": "mongo-0.mongo:27017",
           "MSG_SERVICE_HOST": "10.3.3.3", "PULP_BROKER_URL": "qpid://u:pw@broker:5672/"}
    s = resolve(env)
    assert s.values["database.seeds"].source == "env:PULP_DB_SEEDS"
    assert s.values["database.seeds"].value == "mongo-0.mongo:27017"
    assert s.values["tasks.broker_url"].value == "qpid://u:pw@broker:5672/"
    assert s.values["messaging.url"].source == "k8s:msg"  # each key resolves on its own


def test_configurable_service_names_and_2015_names():
    s = resolve({"PULPINIT_DB_SERVICE": "mongo-svc", "MONGO_SVC_SERVICE_HOST": "10.9.9.9"})
    assert s.values["database.seeds"].value == "10.9.9.9:27017"
    assert s.values["database.seeds"].source == "k8s:mongo-svc"
    s = resolve({"PULP_DB_SERVICE_HOST": "10.4.4.4", "PULP_MSG_SERVICE_HOST": "10.5.5.5",
                 "PULP_MSG_SERVICE_PORT": "5999"})
    assert s.values["database.seeds"].source == "k8s:pulp-db"
    assert s.values["messaging.url"].value == "tcp://10.5.5.5:5999"


@pytest.mark.parametrize("env", [
    {"DB_PORT": "tcp://10.7.7.7:27019"},
    {"DB_PORT_27019_TCP_ADDR": "10.7.7.7", "DB_PORT_27019_TCP_PORT": "27019"},
])
def test_docker_link_forms(env):
    s = resolve(env)
    assert s.values["database.seeds"].value == "10.7.7.7:27019"
    assert s.values["database.seeds"].source == "k8s:db"


def test_broker_user_and_password_from_2014_variables(tmp_path: Path):
    secret = tmp_path / "pw"
    secret.write_text("p@ss/w%rd\n")
    s = resolve({"MSG_SERVICE_HOST": "q", "MSG_SERVICE_USER": "pulp", "MSG_SERVICE_PASSWORD_FILE": str(secret)})
    assert s.values["tasks.broker_url"].value == "qpid://pulp:p%40ss%2Fw%25rd@q:5672/"
    assert s.values["tasks.broker_url"].display == "qpid://pulp:***@q:5672/"
    assert "p@ss/w%rd" in s.secrets()


def test_rabbitmq_transport_derives_amqp_url():
    s = resolve({"MSG_SERVICE_HOST": "rabbit", "PULP_CONF__MESSAGING__TRANSPORT": "rabbitmq"})
    assert s.values["tasks.broker_url"].value == "amqp://guest@rabbit:5672//"


def test_generic_variables_lower_cased():
    s = resolve({"PULP_CONF__TASKS__LOGIN_METHOD": "PLAIN", "PULP_CONF__Server__Debugging_Mode": "true"})
    assert s.values["tasks.login_method"].value == "PLAIN"
    assert s.values["server.debugging_mode"].source == "env:PULP_CONF__Server__Debugging_Mode"
    assert [k for k, _ in s.to_write()] == ["server.debugging_mode", "tasks.login_method"]


def test_password_from_file_strips_one_newline(tmp_path: Path):
    secret = tmp_path / "db-password"
    secret.write_text("hunter22\n\n")
    # one trailing newline is removed; a second one is part of the value, and rejected
    with pytest.raises(EnvValueError) as err:
        resolve({"PULP_DB_PASSWORD_FILE": str(secret)})
    assert err.value.variable == "PULP_DB_PASSWORD_FILE"
    assert "hunter22" not in str(err.value)
    secret.write_text("hunter22\n")
    assert resolve({"PULP_DB_PASSWORD_FILE": str(secret)}).values["database.password"].value == "hunter22"


def test_server_name_from_env_is_written():
    s = resolve({"PULP_SERVER_NAME": "pulp.example.com"})
    assert dict(s.to_write())["server.server_name"].value == "pulp.example.com"


def test_several_seeds_with_replica_set():
    s = resolve({"PULP_DB_SEEDS": "a:1,b:2,[::1]:3", "PULP_DB_REPLICA_SET": "rs0"})
    assert s.mongo_target().seeds == (("a", 1), ("b", 2), ("::1", 3))
    assert s.mongo_target().replica_set == "rs0"


def test_replica_set_from_server_conf_counts():
    s = resolve({"PULP_DB_SEEDS": "a:1,b:2"}, {"database.replica_set": "rs0"})
    assert s.mongo_target().replica_set == "rs0"


def test_mongo_target_from_settings():
    s = resolve({"PULP_DB_USERNAME": "pulp", "PULP_DB_PASSWORD": "pw", "PULPINIT_DB_AUTH_SOURCE": "admin"},
                {"database.ssl": "True", "database.verify_ssl": "no"})
    t = s.mongo_target()
    assert (t.username, t.password, t.auth_source, t.ssl, t.verify_ssl) == ("pulp", "pw", "admin", True, False)
    assert "pw" not in t.endpoint and "***" in t.endpoint


def test_from_environ_is_pure():
    env = {"PULP_DB_SEEDS": "a:1"}
    assert resolve(dict(env)) == resolve(dict(env))


def test_invalid_server_conf_value_names_the_file_key():
    with pytest.raises(EnvValueError) as err:
        resolve({}, {"database.seeds": "db:notaport"})
    assert err.value.variable == "server.conf [database] seeds"
