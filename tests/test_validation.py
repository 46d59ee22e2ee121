"""Every bad input is rejected before anything is touched: exit 78, one line naming the variable."""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulpinit import parse
from pulpinit.cli import main
from pulpinit.errors import EnvValueError, ExitCode
from pulpinit.settings.resolve import from_environ
from pulpinit.settings.toolkit import toolkit_from_environ
from pulpinit.testing import SAMPLE_CONF

SECRET = "Sup3r-Secret-Value"


def rejects(env: dict[str, str], conf: dict[str, str] | None = None) -> EnvValueError:
    with pytest.raises(EnvValueError) as err:
        from_environ(env, conf or {}, hostname="h")
    assert err.value.exit_code == ExitCode.CONFIG
    assert "\n" not in str(err.value)
    return err.value


@pytest.mark.parametrize(
    ("env", "variable", "words"),
    [
        ({"DB_SERVICE_HOST": "db", "DB_SERVICE_PORT": "mongo"}, "DB_SERVICE_PORT", "not a number"),
        ({"DB_SERVICE_HOST": "db", "DB_SERVICE_PORT": "70000"}, "DB_SERVICE_PORT", "out of range"),
        ({"DB_SERVICE_HOST": "db", "DB_SERVICE_PORT": "0"}, "DB_SERVICE_PORT", "out of range"),
        ({"DB_SERVICE_HOST": "db", "DB_SERVICE_PORT": "-1"}, "DB_SERVICE_PORT", "out of range"),
        ({"DB_SERVICE_HOST": "db", "DB_SERVICE_PORT": "２７０１７"}, "DB_SERVICE_PORT", "not a number"),
        ({"DB_SERVICE_HOST": ""}, "DB_SERVICE_HOST", "empty"),
        ({"MSG_SERVICE_HOST": "bro ker"}, "MSG_SERVICE_HOST", "whitespace"),
        ({"SERVICE_HOST": "host\nname"}, "SERVICE_HOST", "control character or newline"),
        ({"PULP_DB_SEEDS": "a:27017, b:27017"}, "PULP_DB_SEEDS", "whitespace"),
        ({"PULP_DB_SEEDS": "a:27017,"}, "PULP_DB_SEEDS", "empty entry"),
        ({"PULP_DB_SEEDS": "::1:27017"}, "PULP_DB_SEEDS", "brackets"),
        ({"PULP_DB_SEEDS": "a:1,b:2"}, "PULP_DB_SEEDS", "replica set"),
        ({"PULP_DB_SEEDS": " a:1"}, "PULP_DB_SEEDS", "whitespace"),
        ({"PULP_BROKER_URL": "http://broker/"}, "PULP_BROKER_URL", "unknown URL scheme"),
        ({"PULP_BROKER_URL": "broker:5672"}, "PULP_BROKER_URL", "unknown URL scheme"),
        ({"PULP_BROKER_URL": "qpid://broker:56x72/"}, "PULP_BROKER_URL", "port '56x72' is not a number"),
        ({"PULP_BROKER_URL": "qpid:///"}, "PULP_BROKER_URL", "no host"),
        ({"PULP_MESSAGING_URL": "qpid://broker:5672"}, "PULP_MESSAGING_URL", "unknown URL scheme"),
        ({"PULP_MESSAGING_URL": "tcp://broker:"}, "PULP_MESSAGING_URL", "empty port"),
        ({"PULP_DB_NAME": "pulp/db"}, "PULP_DB_NAME", "database name"),
        ({"PULP_SERVER_NAME": "pulp example.com"}, "PULP_SERVER_NAME", "whitespace"),
        ({"PULP_SERVER_NAME": "-bad-.example"}, "PULP_SERVER_NAME", "host name"),
        ({"DB_PORT": "27017"}, "DB_PORT", "tcp://host:port"),
        ({"PULP_CONF__TASKS": "x"}, "PULP_CONF__TASKS", "PULP_CONF__<SECTION>__<KEY>"),
        ({"PULP_CONF__TASKS__A__B": "x"}, "PULP_CONF__TASKS__A__B", "PULP_CONF__<SECTION>__<KEY>"),
        ({"PULP_CONF__TASKS__LOGIN_METHOD_FILE": "/x"}, "PULP_CONF__TASKS__LOGIN_METHOD_FILE", "secrets"),
        ({"PULP_DB_SEEDS_FILE": "/x"}, "PULP_DB_SEEDS_FILE", "only secrets"),
        ({"PULPINIT_WAIT_TIMEOUT": "soon"}, "PULPINIT_WAIT_TIMEOUT", "not a number"),
        ({"PULPINIT_WAIT_TIMEOUT": "-5"}, "PULPINIT_WAIT_TIMEOUT", "not a number"),
        ({"PULPINIT_UMASK": "999"}, "PULPINIT_UMASK", "octal"),
        ({"PULPINIT_UMASK": " 022"}, "PULPINIT_UMASK", "octal"),
        ({"PULPINIT_UMASK": "0_22"}, "PULPINIT_UMASK", "octal"),
        ({"PULPINIT_UMASK": "٠٢٢"}, "PULPINIT_UMASK", "octal"),
        ({"PULPINIT_UMASK": "-022"}, "PULPINIT_UMASK", "octal"),
        ({"PULPINIT_WAIT_TIMEOUT": "٣٠"}, "PULPINIT_WAIT_TIMEOUT", "not a number"),
        ({"PULPINIT_WAIT_TIMEOUT": "3_0"}, "PULPINIT_WAIT_TIMEOUT", "not a number"),
        ({"PULPINIT_WAIT_TIMEOUT": "1e3"}, "PULPINIT_WAIT_TIMEOUT", "not a number"),
        ({"PULPINIT_WAIT_TIMEOUT": "30 "}, "PULPINIT_WAIT_TIMEOUT", "whitespace"),
        ({"PULPINIT_PROBE_TIMEOUT": "０.５"}, "PULPINIT_PROBE_TIMEOUT", "not a number"),
        ({"PULPINIT_STOP_TIMEOUT": "1_0"}, "PULPINIT_STOP_TIMEOUT", "not a number"),
        ({"PULPINIT_STOP_TIMEOUT": " 10"}, "PULPINIT_STOP_TIMEOUT", "not a number"),
        ({"PULPINIT_STOP_TIMEOUT": "١٠"}, "PULPINIT_STOP_TIMEOUT", "not a number"),
        ({"PULPINIT_LOG_LEVEL": "loud"}, "PULPINIT_LOG_LEVEL", "not one of"),
        ({"PULPINIT_INIT": "maybe"}, "PULPINIT_INIT", "not a boolean"),
        ({"PULP_WORKER_NUMBER": "two"}, "PULP_WORKER_NUMBER", "non-negative integer"),
        ({"PULP_ADMIN_PASSWORD": ""}, "PULP_ADMIN_PASSWORD", "empty password"),
        ({"PULP_CONF__SERVER__DEFAULT_PASSWORD": ""}, "PULP_CONF__SERVER__DEFAULT_PASSWORD", "empty password"),
        ({"PULP_SERVER_NAME": ""}, "PULP_SERVER_NAME", "is empty"),
    ],
)
def test_bad_input_names_the_variable(env, variable, words):
    error = rejects(env)
    assert error.variable == variable
    assert str(error).startswith(f"{variable}: ")
    assert words in str(error)


def test_empty_admin_password_or_server_name_in_server_conf():
    assert rejects({}, {"server.default_password": ""}).variable == "server.conf [server] default_password"
    assert rejects({}, {"server.server_name": ""}).variable == "server.conf [server] server_name"


@pytest.mark.parametrize(
    "command",
    [
        ["settings"],
        ["beat"],
        ["resource-manager"],
        ["worker", "1"],
        ["api"],
        ["run", "--", "/bin/true"],
        ["migrate"],
        ["configure"],
    ],
)
@pytest.mark.parametrize("variable", ["PULP_ADMIN_PASSWORD_FILE", "PULP_SERVER_NAME"])
def test_an_empty_admin_password_or_server_name_stops_every_role_with_78(
    command: list[str], variable: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    conf = tmp_path / "server.conf"
    shutil.copy(SAMPLE_CONF, conf)
    (tmp_path / "empty").write_text("")
    value = str(tmp_path / "empty") if variable.endswith("_FILE") else ""
    env = {"PULPINIT_CONFIG": str(conf), "PULPINIT_LOG_FORMAT": "json", variable: value}
    assert main(command, env) == ExitCode.CONFIG
    error = json.loads(capsys.readouterr().err.splitlines()[-1])["error"]
    assert error.startswith(f"{variable}: is empty: ")
    assert conf.read_bytes() == SAMPLE_CONF.read_bytes()


def test_bad_server_conf_boolean():
    assert rejects({}, {"database.ssl": "sometimes"}).variable == "server.conf [database] ssl"


def test_both_variable_and_file_is_an_error(tmp_path: Path):
    (tmp_path / "pw").write_text(SECRET)
    error = rejects({"PULP_DB_PASSWORD": SECRET, "PULP_DB_PASSWORD_FILE": str(tmp_path / "pw")})
    assert error.variable == "PULP_DB_PASSWORD_FILE"
    assert SECRET not in str(error)


@pytest.mark.parametrize("setup", ["missing", "directory", "below-a-file", "empty-path", "binary"])
def test_unreadable_file_is_an_error(tmp_path: Path, setup: str):
    path = tmp_path / "secret"
    if setup == "directory":
        path.mkdir()
    elif setup == "below-a-file":
        path.write_text(SECRET)
        path = path / "child"
    elif setup == "binary":
        path.write_bytes(b"\xff\xfe" + SECRET.encode())
    value = "" if setup == "empty-path" else str(path)
    error = rejects({"PULP_BROKER_PASSWORD_FILE": value})
    assert error.variable == "PULP_BROKER_PASSWORD_FILE"
    assert SECRET not in str(error)


@pytest.mark.parametrize(
    "env",
    [
        {"PULP_BROKER_URL": f"qpid://user:{SECRET}@bro ker:5672/"},
        {"PULP_BROKER_URL": f"http://user:{SECRET}@broker/"},
        {"PULP_BROKER_URL": f"qpid://user:{SECRET}@broker:99999/"},
        {"PULP_DB_PASSWORD": f" {SECRET}"},
        {"PULP_DB_PASSWORD": f"{SECRET}\x07"},
        {"MSG_SERVICE_HOST": "q", "MSG_SERVICE_PASSWORD": f"{SECRET}\n"},
        {"PULP_CONF__SERVER__DEFAULT_PASSWORD": f"{SECRET} "},
    ],
)
def test_errors_never_show_secrets(env):
    assert SECRET not in str(rejects(env))


# -- property-based: the validators accept exactly what they should ------------------------

LABEL = r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
hostnames = st.from_regex(rf"\A{LABEL}(\.{LABEL}){{0,3}}\Z")
ports = st.integers(min_value=1, max_value=65535)


@given(hostnames, ports)
def test_hostport_round_trips(host: str, port: int):
    assert parse.hostport(f"{host}:{port}", "V", 1) == (host, port)


@given(st.lists(st.tuples(hostnames, ports), min_size=1, max_size=4))
def test_seeds_round_trip(pairs):
    text = ",".join(parse.format_hostport(host, number) for host, number in pairs)
    assert parse.seeds(text, "V") == tuple(pairs)


@given(st.integers())
def test_port_accepts_exactly_1_to_65535(number: int):
    if 1 <= number <= 65535:
        assert parse.port(str(number), "P") == number
    else:
        with pytest.raises(EnvValueError, match=r"^P: "):
            parse.port(str(number), "P")


@given(st.text())
def test_text_rejects_control_and_outer_whitespace(value: str):
    bad = value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value)
    if bad:
        with pytest.raises(EnvValueError):
            parse.text(value, "V", secret=True)
    else:
        assert parse.text(value, "V") == value


@given(st.text(alphabet=string.printable, min_size=1))
def test_host_never_accepts_whitespace_or_empty_labels(value: str):
    try:
        host = parse.host(value, "H")
    except EnvValueError as exc:
        assert exc.variable == "H"
        return
    assert not any(c.isspace() for c in host)
    assert ".." not in host and host


@given(
    st.sampled_from(["qpid", "amqp", "amqps"]),
    hostnames,
    ports,
    st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=12),
)
def test_broker_urls_accepted_and_password_masked(scheme, host, port, password):
    url = f"{scheme}://user:{password}@{host}:{port}/"
    s = from_environ({"PULP_BROKER_URL": url}, {}, hostname="h")
    assert s.values["tasks.broker_url"].value == url
    assert s.values["tasks.broker_url"].display == f"{scheme}://user:***@{host}:{port}/"


# -- every error names the actual problem ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "variable", "words"),
    [
        ({"PULP_DB_SEEDS": "mongodb://h:27017"}, "PULP_DB_SEEDS", "seeds are host:port"),
        ({"PULP_DB_SEEDS": "mongodb://u:pw-x1@h:27017"}, "PULP_DB_SEEDS", "'mongodb://u:***@h:27017': seeds are"),
        ({"MSG_SERVICE_HOST": "q", "MSG_SERVICE_PORT": "-1"}, "MSG_SERVICE_PORT", "out of range 1-65535"),
        ({"DB_SERVICE_HOST": "db", "DB_SERVICE_PORT": "9" * 5000}, "DB_SERVICE_PORT", "out of range 1-65535"),
        ({"DB_SERVICE_HOST": "db", "DB_SERVICE_PORT": "027017"}, "DB_SERVICE_PORT", "out of range 1-65535"),
        ({"PULP_DB_SEEDS": "h:" + "1" * 5000}, "PULP_DB_SEEDS", "out of range 1-65535"),
        ({"PULP_BROKER_URL": "qpid://h:" + "1" * 5000 + "/"}, "PULP_BROKER_URL", "out of range 1-65535"),
        ({"PULP_BROKER_URL": "qpid://u:pw/x@h/"}, "PULP_BROKER_URL", "percent-encode"),
        ({"PULP_BROKER_URL": "qpid://u:pw#x@h/"}, "PULP_BROKER_URL", "percent-encode"),
        ({"PULP_BROKER_URL": "qpid://u:pw?x@h/"}, "PULP_BROKER_URL", "percent-encode"),
        ({"PULP_BROKER_URL": "qpid://u:pw]x@h/"}, "PULP_BROKER_URL", "percent-encode"),
        ({"PULP_BROKER_URL": "qpid://[::1/"}, "PULP_BROKER_URL", "IPv6"),
    ],
)
def test_errors_name_the_actual_problem(env, variable, words):
    error = rejects(env)
    assert error.variable == variable
    assert words in str(error)
    assert len(str(error)) < 300  # a 5000-digit port is quoted cut short, never a traceback


@pytest.mark.parametrize(
    ("url", "user", "password"),
    [
        ("qpid://u:p@ss@h/", "u", "p@ss"),  # kombu: userinfo up to the last '@'
        ("qpid://u:a:b@h:5672/", "u", "a:b"),
        ("amqp://u:p%2Fss@h//", "u", "p%2Fss"),
        ("qpid://SEK@usr:RET99@h/", "SEK@usr", "RET99"),
    ],
)
def test_urls_kombu_reads_are_accepted_and_split_like_kombu(url, user, password):
    from pulpinit.redact import split_url

    s = from_environ({"PULP_BROKER_URL": url}, {}, hostname="h")
    parts = split_url(s.values["tasks.broker_url"].value)
    assert (parts.user, parts.password) == (user, password)
    assert s.values["tasks.broker_url"].display == url.replace(f":{password}@", ":***@")


def test_a_5000_digit_worker_number_is_usage_not_a_traceback():
    from pulpinit.errors import UsageError
    from pulpinit.roles import worker_number

    with pytest.raises(UsageError, match="at most 9 digits"):
        worker_number("9" * 5000, None, "h")


def test_a_5000_digit_worker_number_knob_is_78_not_a_traceback():
    with pytest.raises(EnvValueError, match="PULP_WORKER_NUMBER: 5000 digits: out of range"):
        toolkit_from_environ({"PULP_WORKER_NUMBER": "9" * 5000})
