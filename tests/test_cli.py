"""The CLI contract: commands, exit codes, JSON shapes, and no secret in any output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pulpinit.cli import main
from pulpinit.testing.keys import keys_env

SECRET = "Tr0ub4dor-and-3"


@pytest.fixture
def conf(sample_conf: Path) -> Path:
    return sample_conf


#: What the checks of configure and of a role's dry run pass here: a user who may read the 0700 tmp_path, commands.
PASSING = {"PULPINIT_USER": "root", "PULPINIT_CELERY": "/bin/true", "PULPINIT_MANAGE_DB": "/bin/true"}


@pytest.fixture
def run(capsys, conf: Path):
    def invoke(*argv: str, **env: str):
        environ = {"PULPINIT_CONFIG": str(conf), "PULPINIT_LOG_FORMAT": "json", **PASSING, **env}
        code = main(list(argv), environ)
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def test_settings_json_shape_and_sources(run):
    code, out, _ = run(
        "settings", "--json", DB_SERVICE_HOST="10.0.0.5", PULP_SERVER_NAME="pulp.example.com", SERVICE_HOST="10.9.9.9"
    )
    assert code == 0
    data = json.loads(out)
    settings = data["settings"]
    assert settings["database.seeds"] == {"value": "10.0.0.5:27017", "source": "k8s:db"}
    assert settings["messaging.url"] == {"value": "tcp://10.9.9.9:5672", "source": "env:SERVICE_HOST"}
    assert settings["tasks.broker_url"] == {"value": "qpid://10.9.9.9:5672/", "source": "env:SERVICE_HOST"}
    assert settings["server.server_name"] == {"value": "pulp.example.com", "source": "env:PULP_SERVER_NAME"}
    assert settings["database.name"] == {"value": "pulp_database", "source": "default"}
    assert all(set(v) == {"value", "source"} for v in settings.values())
    assert data["pulpinit"]["PULPINIT_UMASK"] == {"value": "0022", "source": "default"}


def test_settings_reads_server_conf_values(run, conf: Path):
    conf.write_text(conf.read_text().replace("# seeds: localhost:27017", "seeds: db:27017"))
    _, out, _ = run("settings", "--json")
    assert json.loads(out)["settings"]["database.seeds"] == {"value": "db:27017", "source": "server.conf"}


def test_settings_table(run):
    code, out, _ = run("settings", PULP_DB_SEEDS="m:1")
    assert code == 0
    assert "database.seeds" in out and "env:PULP_DB_SEEDS" in out and "PULPINIT_WAIT_TIMEOUT" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["settings"],
        ["settings", "--json"],
        ["configure", "--dry-run"],
        ["configure"],
        ["beat", "--dry-run"],
        ["worker", "2", "--dry-run"],
        ["migrate", "--dry-run"],
    ],
)
@pytest.mark.slow  # real processes: seconds
def test_no_secret_in_any_output(run, tmp_path: Path, argv, pulp_keys: Path):
    secret_file = tmp_path / "broker-password"
    secret_file.write_text(SECRET + "\n")
    code, out, err = run(
        *argv,
        **keys_env(pulp_keys),  # the worker checks its message-signing pair
        PULP_DB_USERNAME="pulp",
        PULP_DB_PASSWORD=SECRET,
        MSG_SERVICE_HOST="q",
        PULP_BROKER_PASSWORD_FILE=str(secret_file),
        PULP_CONF__SERVER__DEFAULT_PASSWORD=SECRET,
        PULPINIT_MIGRATION_FINGERPRINT="2.21.5",
        PULPINIT_LOG_LEVEL="debug",
    )
    assert code == 0, err
    printed = out + err
    assert printed  # something was printed, and it holds no secret
    assert SECRET not in printed
    assert "***" in printed


def test_configure_writes_and_dry_run_does_not(run, conf: Path):
    before = conf.read_bytes()
    code, out, _ = run("configure", "--dry-run", PULP_DB_SEEDS="mongo:27017")
    assert code == 0 and "+seeds: mongo:27017" in out
    assert conf.read_bytes() == before
    code, _, err = run("configure", PULP_DB_SEEDS="mongo:27017")
    assert code == 0
    assert "seeds: mongo:27017\n" in conf.read_text()
    events = [json.loads(line)["event"] for line in err.splitlines()]
    assert "config.changed" in events and "stage.end" in events


@pytest.mark.parametrize(
    ("argv", "env", "code"),
    [
        (["nonsense"], {}, 64),
        ([], {}, 64),
        (["run"], {}, 64),
        (["settings", "--bogus"], {}, 64),
        (["check-deps", "--timeout", "0"], {}, 64),
        (["configure", "--", "x"], {}, 64),
        (["worker", "two", "--dry-run"], {}, 64),
        (["settings"], {"PULP_DB_SEEDS": "db:http"}, 78),
        (["settings"], {"PULPINIT_CONFIG": "/nonexistent/server.conf"}, 78),
        (["settings"], {"PULPINIT_LOG_FORMAT": "xml"}, 78),
        (["configure"], {"PULP_DB_PASSWORD": "bad\tpassword"}, 78),
    ],
)
def test_exit_codes(run, conf: Path, argv, env, code):
    before = conf.read_bytes()
    got, _, err = run(*argv, **env)
    assert got == code
    assert conf.read_bytes() == before  # nothing lost on any error
    if code == 78:
        lines = [json.loads(line) for line in err.splitlines()]
        errors = [line for line in lines if line["event"] == "pulpinit.error"]
        assert len(errors) == 1 and errors[0]["exit_code"] == 78
    if code == 64:
        assert "pulpinit" in err


def test_error_line_names_the_variable(run):
    code, _, err = run("settings", DB_SERVICE_HOST="db", DB_SERVICE_PORT="http")
    error = json.loads(err.strip().splitlines()[-1])
    assert code == 78
    assert error["error"] == "DB_SERVICE_PORT: port 'http' is not a number"


def test_role_dry_run_shows_plan_and_changes_nothing(run, conf: Path, pulp_keys: Path):
    before = conf.read_bytes()
    code, out, _ = run(
        "worker",
        "3",
        "--dry-run",
        "--",
        "--maxtasksperchild=2",
        **keys_env(pulp_keys),
        PULP_SERVER_NAME="pulp.example.com",
        PULPINIT_MIGRATION_FINGERPRINT="2.21.5",
        PULP_DB_SEEDS="mongo:27017",
    )
    assert code == 0
    assert conf.read_bytes() == before
    assert "reserved_resource_worker-3@pulp.example.com" in out and "--maxtasksperchild=2" in out
    assert "+seeds: mongo:27017" in out
    assert "wait: start once" in out and "2.21.5" in out


def test_python_dash_m_and_help():
    done = subprocess.run(
        [sys.executable, "-m", "pulpinit", "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0
    for command in ("beat", "resource-manager", "worker", "migrate", "run", "check-deps", "configure", "settings"):
        assert command in done.stdout


def test_console_script_exit_code(conf: Path):
    script = Path(sys.executable).parent / "pulpinit"
    env = {**os.environ, "PULPINIT_CONFIG": str(conf), "PULP_DB_SEEDS": "x:notaport"}
    done = subprocess.run([str(script), "settings"], capture_output=True, text=True, timeout=30, env=env, check=False)
    assert done.returncode == 78
    errors = [json.loads(line) for line in done.stderr.splitlines() if '"level": "error"' in line]
    assert len(errors) == 1 and errors[0]["error"].startswith("PULP_DB_SEEDS: ")


@pytest.mark.parametrize("argv", [["settings"], ["configure", "--dry-run"], ["--help"]])
def test_start_up_path_imports_no_heavy_module(conf: Path, argv):
    """pymongo (~100 ms), proton and tenacity are imported only by the stages that talk to services.

    A ``None`` entry in ``sys.modules`` is a module marked unimportable, not a loaded one
    (:func:`pulpinit.wait.mongo_client.spare_unusable_pyopenssl`).
    """
    code = (
        "import sys; from pulpinit.cli import main; rc = main(sys.argv[1:]); "
        "loaded = {m.split('.')[0] for m, module in sys.modules.items() if module is not None}; "
        "print(sorted(loaded & {'pymongo', 'bson', 'proton', 'tenacity'}))"
    )
    env = {**os.environ, "PULPINIT_CONFIG": str(conf)}
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("debug", [False, True])
def test_unexpected_error_is_one_line_and_1_never_a_traceback(conf: Path, debug: bool):
    """The last-resort guard, through a real fault nothing in pulpinit expects: stdout is a full device."""
    env = {**os.environ, "PULPINIT_CONFIG": str(conf), "PULPINIT_LOG_FORMAT": "json"}
    level = ["--log-level", "debug"] if debug else []
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "pulpinit", *level, "settings", "--json"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    events = [json.loads(line) for line in lines]  # every line is a JSON log line: no traceback text
    errors = [e for e in events if e["event"] == "pulpinit.error"]
    assert len(errors) == 1 and errors[0]["exit_code"] == 1
    assert errors[0]["error"] == "unexpected OSError: [Errno 28] No space left on device"
    if debug:
        assert errors[0]["traceback"].startswith("Traceback (most recent call last):")
        assert "No space left on device" in errors[0]["traceback"]
    else:
        assert "traceback" not in errors[0]
        assert "Traceback" not in done.stderr


def test_a_reader_that_went_away_is_1_with_one_line(conf: Path):
    """``pulpinit settings | head -0``: the pipe's reader is gone before pulpinit writes."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "PULPINIT_CONFIG": str(conf), "PULPINIT_LOG_FORMAT": "json"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pulpinit", "settings"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1
    errors = [json.loads(line) for line in done.stderr.splitlines() if '"pulpinit.error"' in line]
    assert [e["error"] for e in errors] == ["unexpected BrokenPipeError: [Errno 32] Broken pipe"]
    assert "Traceback" not in done.stderr


def test_output_that_cannot_be_flushed_is_not_a_silent_success(conf: Path):
    """A short output sits in the buffer until the end: its failed flush must still be an error."""
    env = {**os.environ, "PULPINIT_CONFIG": str(conf), "PULPINIT_LOG_FORMAT": "json", "PULP_DB_SEEDS": "m:1", **PASSING}
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "pulpinit", "configure", "--dry-run"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert "No space left on device" in done.stderr and "Traceback" not in done.stderr


def test_a_usage_error_masks_url_credentials_it_echoes(capsys):
    assert main(["configure", "--", "amqp://pulp:Sekr3t-pw@h//"]) == 64
    err = capsys.readouterr().err
    assert "unexpected arguments after --" in err and "amqp://pulp:***@h//" in err
    assert "Sekr3t-pw" not in err


@pytest.mark.parametrize("argv", [["--help"], ["worker", "--help"]])
def test_help_is_sized_to_the_terminal(capsys, monkeypatch, argv):
    """Help is wrapped to the terminal's width as argparse wraps it (COLUMNS, as shutil reads it)."""

    def shown(columns: int) -> list[str]:
        monkeypatch.setenv("COLUMNS", str(columns))
        assert main(argv) == 0
        return capsys.readouterr().out.splitlines()

    wide, narrow = shown(200), shown(50)
    assert len(narrow) > len(wide)
    assert max(map(len, wide)) > 50
    assert max(len(line) for line in narrow if not line.startswith(" ")) <= 50  # what argparse indents may go past


@pytest.mark.parametrize(
    ("command", "after"),
    [("run", "-- CMD [ARG ...]"), ("beat", "[-- CELERY-ARG ...]"), ("worker", "[N] [-- CELERY-ARG ...]")],
)
def test_help_shows_what_goes_after_the_dashes(capsys, command, after):
    assert main([command, "--help"]) == 0
    usage = capsys.readouterr().out.splitlines()[0]
    assert usage.startswith(f"usage: pulpinit {command} [-h] [--dry-run] [--init]") and usage.endswith(after)


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["run", "/bin/echo", "hi"], "the command goes after --: pulpinit run -- /bin/echo hi"),
        (
            ["--log-format", "json", "run", "--init", "/bin/sh", "-c", "echo 'a b'"],
            "the command goes after --: pulpinit --log-format json run --init -- /bin/sh -c 'echo '\"'\"'a b'\"'\"''",
        ),
        (
            ["worker", "3", "--maxtasksperchild=2"],
            "extra celery arguments go after --: pulpinit worker 3 -- --maxtasksperchild=2",
        ),
        (["beat", "--dry-rnu"], "did you mean --dry-run?"),
    ],
)
def test_arguments_that_belong_after_the_dashes_get_the_corrected_command_line(capsys, argv, hint):
    assert main(argv) == 64
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"pulpinit {argv[argv.index('run') if 'run' in argv else 0]}: unrecognized arguments: ")
    assert err[1:] == [f"hint: {hint}"]


def test_the_corrected_command_line_masks_url_credentials(capsys):
    assert main(["run", "/bin/probe", "amqp://pulp:Sekr3t-pw@h//"]) == 64
    err = capsys.readouterr().err
    assert "hint: the command goes after --: pulpinit run -- /bin/probe 'amqp://pulp:***@h//'" in err
    assert "Sekr3t-pw" not in err


def test_other_unrecognized_arguments_keep_the_plain_error(capsys):
    assert main(["settings", "extra"]) == 64
    assert capsys.readouterr().err.splitlines() == [
        "pulpinit settings: unrecognized arguments: extra",
        "Try 'pulpinit --help'.",
    ]
    assert main(["run", "-x", "--", "/bin/true"]) == 64  # no command starts with a dash: no corrected line
    assert "hint:" not in capsys.readouterr().err
