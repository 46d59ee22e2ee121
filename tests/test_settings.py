"""Settings resolution: every precedence layer, the derivations, secrets from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulpinit.errors import EnvValueError
from pulpinit.settings.childenv import secret_variables
from pulpinit.settings.resolve import from_environ
from pulpinit.targets import mongo_target


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
    assert s.values["tasks.broker_url"].value == "qpid://10.1.1.1:5672/"


def test_kubernetes_service_beats_service_host():
    env = {
        "SERVICE_HOST": "10.1.1.1",
        "DB_SERVICE_HOST": "10.2.2.2",
        "DB_SERVICE_PORT": "27018",
        "MSG_SERVICE_HOST": "10.3.3.3",
        "MSG_SERVICE_PORT": "5673",
    }
    s = resolve(env)
    assert s.values["database.seeds"].value == "10.2.2.2:27018"
    assert s.values["database.seeds"].source == "k8s:db"
    assert s.values["messaging.url"].value == "tcp://10.3.3.3:5673"
    assert s.values["tasks.broker_url"].value == "qpid://10.3.3.3:5673/"
    assert s.values["tasks.broker_url"].source == "k8s:msg"


def test_explicit_beats_kubernetes():
    env = {
        "DB_SERVICE_HOST": "10.2.2.2",
        "PULP_DB_SEEDS": "mongo-0.mongo:27017",
        "MSG_SERVICE_HOST": "10.3.3.3",
        "PULP_BROKER_URL": "qpid://u:pw@broker:5672/",
    }
    s = resolve(env)
    assert s.values["database.seeds"].source == "env:PULP_DB_SEEDS"
    assert s.values["database.seeds"].value == "mongo-0.mongo:27017"
    assert s.values["tasks.broker_url"].value == "qpid://u:pw@broker:5672/"
    assert s.values["messaging.url"].source == "k8s:msg"  # each key resolves on its own


def test_configurable_service_names_and_2015_names():
    s = resolve({"PULPINIT_DB_SERVICE": "mongo-svc", "MONGO_SVC_SERVICE_HOST": "10.9.9.9"})
    assert s.values["database.seeds"].value == "10.9.9.9:27017"
    assert s.values["database.seeds"].source == "k8s:mongo-svc"
    s = resolve(
        {"PULP_DB_SERVICE_HOST": "10.4.4.4", "PULP_MSG_SERVICE_HOST": "10.5.5.5", "PULP_MSG_SERVICE_PORT": "5999"}
    )
    assert s.values["database.seeds"].source == "k8s:pulp-db"
    assert s.values["messaging.url"].value == "tcp://10.5.5.5:5999"


@pytest.mark.parametrize(
    "env",
    [
        {"DB_PORT": "tcp://10.7.7.7:27019"},
        {"DB_PORT_27019_TCP_ADDR": "10.7.7.7", "DB_PORT_27019_TCP_PORT": "27019"},
    ],
)
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
    with_user = {"PULP_DB_USERNAME": "pulp", "PULP_DB_PASSWORD_FILE": str(secret)}
    assert resolve(with_user).values["database.password"].value == "hunter22"


def test_server_name_from_env_is_written():
    s = resolve({"PULP_SERVER_NAME": "pulp.example.com"})
    assert dict(s.to_write())["server.server_name"].value == "pulp.example.com"


def test_several_seeds_with_replica_set():
    s = resolve({"PULP_DB_SEEDS": "a:1,b:2,[::1]:3", "PULP_DB_REPLICA_SET": "rs0"})
    assert mongo_target(s).seeds == (("a", 1), ("b", 2), ("::1", 3))
    assert mongo_target(s).replica_set == "rs0"


def test_replica_set_from_server_conf_counts():
    s = resolve({"PULP_DB_SEEDS": "a:1,b:2"}, {"database.replica_set": "rs0"})
    assert mongo_target(s).replica_set == "rs0"


def test_mongo_target_from_settings():
    s = resolve(
        {"PULP_DB_USERNAME": "pulp", "PULP_DB_PASSWORD": "pw"},
        {"database.ssl": "True", "database.verify_ssl": "no"},
    )
    t = mongo_target(s)
    assert (t.username, t.password, t.database, t.ssl, t.verify_ssl) == ("pulp", "pw", "pulp_database", True, False)
    assert "pw" not in t.endpoint and "***" in t.endpoint


def test_from_environ_is_pure():
    env = {"PULP_DB_SEEDS": "a:1"}
    assert resolve(dict(env)) == resolve(dict(env))


def test_invalid_server_conf_value_names_the_file_key():
    with pytest.raises(EnvValueError) as err:
        resolve({}, {"database.seeds": "db:notaport"})
    assert err.value.variable == "server.conf [database] seeds"


# -- say what you did ----------------------------------------------------------------------------------


def test_generic_keys_split_on_double_underscores_only():
    s = resolve({"PULP_CONF__A.B__C": "1", "PULP_CONF__TASKS__LOGIN_METHOD": "PLAIN"})
    assert s.values["a.b.c"].option == ("a.b", "c")  # [a.b] c, not [a] b.c
    assert s.values["tasks.login_method"].option == ("tasks", "login_method")


def test_generic_key_with_dots_is_written_to_its_own_section(tmp_path: Path):
    from pulpinit.cli import main

    conf = tmp_path / "server.conf"
    conf.write_text("[a]\nx: 1\n")
    assert main(["configure"], {"PULPINIT_CONFIG": str(conf), "PULPINIT_USER": "root", "PULP_CONF__A.B__C": "1"}) == 0
    assert conf.read_text() == "[a]\nx: 1\n\n[a.b]\nc: 1\n"


@pytest.mark.parametrize(
    ("env", "generic"),
    [
        ({"PULP_DB_SEEDS": "a:1", "PULP_CONF__DATABASE__SEEDS": "b:2"}, "PULP_CONF__DATABASE__SEEDS"),
        ({"PULP_BROKER_URL": "qpid://h/", "PULP_CONF__TASKS__BROKER_URL": "qpid://g/"}, "PULP_CONF__TASKS__BROKER_URL"),
    ],
)
def test_an_explicit_variable_and_a_generic_one_for_the_same_key_is_ambiguous(env, generic):
    with pytest.raises(EnvValueError) as err:
        resolve(env)
    assert err.value.variable == generic
    explicit = next(name for name in env if name != generic)
    assert f"which {explicit} sets too: ambiguous" in str(err.value)


@pytest.mark.parametrize("variable", ["PULP_BROKER_USER", "MSG_SERVICE_USER"])
def test_an_empty_broker_user_is_an_error_not_guest(variable):
    with pytest.raises(EnvValueError) as err:
        resolve({"MSG_SERVICE_HOST": "q", variable: ""})
    assert err.value.variable == variable and "is empty" in str(err.value)


def test_an_empty_database_user_still_means_no_authentication():
    s = resolve({"PULP_DB_USERNAME": ""})
    assert mongo_target(s).username is None


def test_a_configured_service_without_variables_is_a_warning():
    s = resolve({"PULPINIT_DB_SERVICE": "pulp-mong", "PULPINIT_MSG_SERVICE": "msg", "MSG_SERVICE_HOST": "q"})
    [warning] = s.warnings
    assert warning.startswith("PULPINIT_DB_SERVICE=pulp-mong: ")
    for name in ("PULP_MONG_SERVICE_HOST", "PULP_MONG_PORT", "PULP_MONG_PORT_<port>_TCP_ADDR"):
        assert name in warning
    assert resolve({}).warnings == ()  # the defaults are no configuration
    assert resolve({"PULPINIT_DB_SERVICE": "mongo", "MONGO_SERVICE_HOST": "10.1.1.1"}).warnings == ()


def test_the_warning_is_logged_once(tmp_path: Path, capsys):
    from pulpinit.cli import main

    conf = tmp_path / "server.conf"
    conf.write_text("[database]\n")
    assert (
        main(
            ["settings"],
            {"PULPINIT_CONFIG": str(conf), "PULPINIT_LOG_FORMAT": "json", "PULPINIT_DB_SERVICE": "pulp-mong"},
        )
        == 0
    )
    import json

    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [x["warning"][:31] for x in lines if x["event"] == "settings.warning"] == ["PULPINIT_DB_SERVICE=pulp-mong: "]


#: The wait's pace, knobs no more.
PACE_KNOBS = [f"PULPINIT_WAIT_{name}" for name in ("INITIAL", "MAX_INTERVAL", "ARMED_INTERVAL", "LOG_INTERVAL")]


@pytest.mark.parametrize("name", PACE_KNOBS)
def test_a_removed_pace_knob_is_ignored_with_a_warning_naming_it(name: str):
    s = resolve({name: "30"})
    [warning] = s.warnings
    assert warning.startswith(f"{name} is no longer read (") and warning.endswith("): remove it")
    assert name not in s.as_json()["pulpinit"]  # no knob: nothing reads it


def test_a_removed_lock_collection_is_refused_unless_it_is_the_one_collection(tmp_path: Path, capsys):
    """Ignoring another collection would let this pulpinit and an older one lock apart: 78, naming it."""
    from pulpinit.cli import main

    assert [w[:24] for w in resolve({"PULPINIT_LOCK_COLLECTION": "pulpinit_locks"}).warnings] == [
        "PULPINIT_LOCK_COLLECTION"
    ]
    with pytest.raises(EnvValueError) as raised:
        resolve({"PULPINIT_LOCK_COLLECTION": "my_locks"})
    assert raised.value.variable == "PULPINIT_LOCK_COLLECTION" and "'pulpinit_locks'" in str(raised.value)
    conf = tmp_path / "server.conf"
    conf.write_text("[database]\n")
    env = {"PULPINIT_CONFIG": str(conf), "PULPINIT_LOG_FORMAT": "json", "PULPINIT_LOCK_COLLECTION": "my_locks"}
    assert main(["migrate"], env) == 78
    import json

    [line] = capsys.readouterr().err.splitlines()[-1:]
    assert json.loads(line)["error"].startswith("PULPINIT_LOCK_COLLECTION: no longer read: ")
    assert conf.read_text() == "[database]\n"


def test_file_borne_values_say_so(tmp_path: Path):
    (tmp_path / "pw").write_text("s3cret\n")
    s = resolve({"PULP_DB_USERNAME": "pulp", "PULP_DB_PASSWORD_FILE": str(tmp_path / "pw")})
    value = s.values["database.password"]
    assert (value.source, value.variable, value.display) == (
        "file:PULP_DB_PASSWORD_FILE",
        "PULP_DB_PASSWORD_FILE",
        "***",
    )
    assert [k for k, _ in s.to_write()] == ["database.password", "database.username"]


def test_one_rule_for_secrets():
    environ = {
        "PULP_CONF__SERVER__KEY_URL": "/pulp/gpg",
        "PULP_CONF__SERVER__DEFAULT_PASSWORD": "admin2",
        "PULP_BROKER_URL": "amqp://guest@h//",
        "PULP_MESSAGING_URL": "tcp://u:pw-1@h:5672",
    }
    s = resolve(environ)
    shown = {k: (v.secret, v.display) for k, v in s.values.items()}
    assert shown["server.key_url"] == (False, "/pulp/gpg")
    assert shown["server.default_password"] == (True, "***")
    assert shown["tasks.broker_url"] == (False, "amqp://guest@h//")  # a user name is no secret
    assert shown["messaging.url"] == (True, "tcp://u:***@h:5672")
    assert secret_variables(environ) == frozenset({"PULP_CONF__SERVER__DEFAULT_PASSWORD", "PULP_MESSAGING_URL"})


@pytest.mark.parametrize(
    ("env", "conf", "variable"),
    [
        ({"PULP_BROKER_URL": "qpid://[::1]:5672/"}, {}, "PULP_BROKER_URL"),
        ({"PULP_BROKER_URL": "qpid://pulp@h:5672/"}, {}, "PULP_BROKER_URL"),
        ({"PULP_BROKER_URL": "amqp://h//?frobnicate=1"}, {}, "PULP_BROKER_URL"),
        ({}, {"database.write_concern": "1"}, "server.conf [database] write_concern"),
        ({"PULP_DB_PASSWORD": "pw"}, {}, "PULP_DB_PASSWORD"),
        ({}, {"database.password": "pw"}, "server.conf [database] password"),
    ],
)
def test_what_pulps_clients_refuse_is_a_configuration_error(env, conf, variable):
    with pytest.raises(EnvValueError) as caught:
        resolve(env, conf)
    assert str(caught.value).startswith(variable)


def test_a_qpid_user_without_password_is_fine_with_a_login_method():
    s = resolve({"PULP_BROKER_URL": "qpid://pulp@h:5672/"}, {"tasks.login_method": "ANONYMOUS"})
    assert s.get("tasks.broker_url") == "qpid://pulp@h:5672/"


def test_a_mongodb_user_without_password_does_not_log_in_as_in_pulp():
    """mongoengine logs in only with a user and a password: pulpinit connects as Pulp does, and says so."""
    s = resolve({"PULP_DB_USERNAME": "pulp"})
    target = mongo_target(s)
    assert (target.username, target.password) == (None, None)
    assert any("'pulp' is not used" in w and "database.password" in w for w in s.warnings)
    assert not resolve({"PULP_DB_USERNAME": "pulp", "PULP_DB_PASSWORD": "pw"}).warnings


@pytest.mark.parametrize(
    ("env", "conf", "named"),
    [
        ({"PULP_DB_REPLICA_SET": ""}, {}, "PULP_DB_REPLICA_SET"),
        ({}, {"database.replica_set": ""}, "server.conf [database] replica_set"),
    ],
)
def test_an_empty_replica_set_line_means_none_as_for_pulps_pymongo_with_a_warning(env, conf, named):
    s = resolve(env, conf)
    assert mongo_target(s).replica_set is None
    assert [w for w in s.warnings if w.startswith(f"{named} is empty")]
    assert not resolve({}, {"database.replica_set": "rs0"}).warnings
