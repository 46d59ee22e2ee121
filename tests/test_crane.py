"""crane.conf from the environment: precedence, validation, the lens edit, and crane's own reading of it.

crane reads crane.conf with Python 2.7's plain ``ConfigParser``; where a real ``python2.7`` is
installed the written file is read back exactly that way (``ConfigParser.ConfigParser().get``).
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest
from helpers.py27_configparser import find_python27
from helpers.workdirs import reachable

from pulpinit.crane import conf as craneconf
from pulpinit.crane import settings as cranesettings
from pulpinit.crane.settings import PULP_DATA_DIR, CraneSettings, data_dir_warning
from pulpinit.errors import EnvValueError, ExitCode
from pulpinit.privileges import resolve_user
from pulpinit.redact import REDACTOR
from pulpinit.settings.childenv import secret_variables

SECRET = "0badc0ffee15900d"


def resolve(
    tmp_path: Path, environ: dict[str, str], text: str | None = None
) -> tuple[CraneSettings, craneconf.CraneConf]:
    path = tmp_path / "crane.conf"
    if text is not None:
        path.write_text(text)
    conf = craneconf.load(str(path))
    return cranesettings.from_environ(environ, conf.values(), str(path)), conf


def write(tmp_path: Path, environ: dict[str, str], text: str | None = None) -> tuple[Path, CraneSettings]:
    settings, conf = resolve(tmp_path, environ, text)
    craneconf.plan(settings, conf).write()
    return tmp_path / "crane.conf", settings


# ------------------------------------------------------------------------------------------------
# Precedence and sources
# ------------------------------------------------------------------------------------------------


def test_a_fresh_file_gets_pulps_data_dir_and_the_explicit_variables(tmp_path: Path):
    path, settings = write(tmp_path, {"CRANE_ENDPOINT": "registry.example.com:5000"})
    assert path.read_text() == f"[general]\ndata_dir: {PULP_DATA_DIR}\nendpoint: registry.example.com:5000\n"
    assert settings.values["general.data_dir"].source == cranesettings.PULP_DEFAULT
    assert settings.values["general.endpoint"].source == "env:CRANE_ENDPOINT"
    assert settings.get("general.data_dir_polling_interval") == "60"  # crane's own default, not written
    assert "data_dir_polling_interval" not in path.read_text()


def test_the_files_value_wins_over_the_pulp_default_and_loses_to_the_environment(tmp_path: Path):
    settings, _ = resolve(tmp_path, {}, "[general]\ndata_dir: /srv/crane/\ndebug: true\n")
    assert settings.data_dir == "/srv/crane/" and settings.values["general.data_dir"].source == "crane.conf"
    assert settings.to_write() == ()  # nothing to change
    settings, _ = resolve(tmp_path, {"CRANE_DATA_DIR": "/mnt/app/"}, "[general]\ndata_dir: /srv/crane/\n")
    assert settings.data_dir == "/mnt/app/"


def test_generic_variables_reach_any_section(tmp_path: Path):
    path, settings = write(
        tmp_path,
        {"CRANE_CONF__SERVE_CONTENT__ENABLE": "true", "CRANE_CONF__CDN__URL_AUTH_TTL": "600"},
        "[general]\ndebug: false\n",
    )
    text = path.read_text()
    assert "[serve_content]\nenable: true\n" in text and "[cdn]\nurl_auth_ttl: 600\n" in text
    assert settings.values["cdn.url_auth_ttl"].source == "env:CRANE_CONF__CDN__URL_AUTH_TTL"


def test_a_commented_default_gets_its_live_line_below_it(tmp_path: Path):
    text = "[general]\n# where Pulp publishes\n# data_dir: /var/lib/crane/metadata/\ndebug: false\n"
    path, _ = write(tmp_path, {"CRANE_DATA_DIR": "/var/lib/pulp/published/docker/v2/app"}, text)
    assert path.read_text() == (
        "[general]\n# where Pulp publishes\n# data_dir: /var/lib/crane/metadata/\n"
        "data_dir: /var/lib/pulp/published/docker/v2/app\ndebug: false\n"
    )


def test_unchanged_settings_leave_the_file_alone(tmp_path: Path):
    path, _ = write(tmp_path, {"CRANE_ENDPOINT": "r.example.com"})
    before = os.stat(path)
    settings, conf = resolve(tmp_path, {"CRANE_ENDPOINT": "r.example.com"})
    plan = craneconf.plan(settings, conf)
    assert plan.changes == () and plan.write() is False
    assert os.stat(path).st_ino == before.st_ino


# ------------------------------------------------------------------------------------------------
# Bad input: 78 naming the variable or the file's key, nothing written
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"CRANE_DATA_DIR": "relative/dir"}, "CRANE_DATA_DIR"),
        ({"CRANE_DATA_DIR_POLLING_INTERVAL": "0"}, "CRANE_DATA_DIR_POLLING_INTERVAL"),
        ({"CRANE_DATA_DIR_POLLING_INTERVAL": "soon"}, "CRANE_DATA_DIR_POLLING_INTERVAL"),
        ({"CRANE_ENDPOINT": "host:99999"}, "CRANE_ENDPOINT"),
        ({"CRANE_CONF__GENERAL__DEBUG": "maybe"}, "CRANE_CONF__GENERAL__DEBUG"),
        ({"CRANE_CONF__CDN__URL_AUTH_ALGO": "sha512"}, "CRANE_CONF__CDN__URL_AUTH_ALGO"),
        ({"CRANE_CONF__CDN__URL_AUTH_SECRET": "not-hex"}, "CRANE_CONF__CDN__URL_AUTH_SECRET"),
        ({"CRANE_CONF__GENERAL": "x"}, "CRANE_CONF__GENERAL"),
        ({"CRANE_CONF__GENERAL__DATA_DIR_FILE": "/etc/hostname"}, "CRANE_CONF__GENERAL__DATA_DIR_FILE"),
        ({"CRANE_DATA_DIR": "/a", "CRANE_CONF__GENERAL__DATA_DIR": "/b"}, "CRANE_CONF__GENERAL__DATA_DIR"),
        ({"CRANE_ENDPOINT": " r.example.com"}, "CRANE_ENDPOINT"),
    ],
)
def test_bad_values_are_78_naming_the_variable(tmp_path: Path, environ: dict[str, str], named: str):
    with pytest.raises(EnvValueError) as caught:
        resolve(tmp_path, environ)
    assert caught.value.exit_code == ExitCode.CONFIG
    assert str(caught.value).startswith(named)


@pytest.mark.parametrize("url", ["https://h:443", "https://registry.example.com/", "http://[::1]:5000"])
def test_an_endpoint_given_as_a_url_is_refused_as_a_url_not_as_ipv6(tmp_path: Path, url: str):
    with pytest.raises(EnvValueError) as caught:
        resolve(tmp_path, {"CRANE_ENDPOINT": url})
    message = str(caught.value)
    assert message.startswith(f"CRANE_ENDPOINT: {url!r} is a URL; crane wants host[:port] (Docker adds the scheme)")
    assert "IPv6" not in message and "brackets" not in message


def test_a_bad_value_already_in_the_file_is_named_by_file_and_key(tmp_path: Path):
    with pytest.raises(EnvValueError) as caught:
        resolve(tmp_path, {}, "[general]\ndebug: maybe\n")
    assert f"{tmp_path / 'crane.conf'} [general] debug" in str(caught.value)


def test_a_value_crane_would_interpolate_is_refused_and_nothing_is_written(tmp_path: Path):
    original = "[general]\ndebug: false\n"
    settings, conf = resolve(tmp_path, {"CRANE_CONF__CDN__URL_REPLACE": "https://cdn/%(path)s"}, original)
    with pytest.raises(EnvValueError) as caught:
        craneconf.plan(settings, conf)
    assert str(caught.value).startswith("CRANE_CONF__CDN__URL_REPLACE") and "%(" in str(caught.value)
    assert (tmp_path / "crane.conf").read_text() == original


def test_a_key_crane_does_not_read_is_a_warning(tmp_path: Path):
    settings, _ = resolve(tmp_path, {"CRANE_CONF__GENERAL__DATADIR": "/x"})
    assert settings.warnings == ("CRANE_CONF__GENERAL__DATADIR: crane does not read [general] datadir (a typo?)",)


# ------------------------------------------------------------------------------------------------
# Secrets
# ------------------------------------------------------------------------------------------------


def test_the_url_signing_secret_from_a_file_is_masked_and_the_file_made_private(tmp_path: Path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    environ = {"CRANE_CONF__CDN__URL_AUTH_SECRET_FILE": str(secret_file)}
    settings, conf = resolve(tmp_path, environ)
    plan = craneconf.plan(settings, conf)
    assert SECRET not in plan.diff() and "url_auth_secret: ***" in plan.diff()
    assert settings.values["cdn.url_auth_secret"].display == "***"
    assert secret_variables(environ) == frozenset({"CRANE_CONF__CDN__URL_AUTH_SECRET_FILE"})
    assert SECRET not in REDACTOR(f"x {SECRET} y")
    plan.write()
    path = tmp_path / "crane.conf"
    assert f"url_auth_secret: {SECRET}\n" in path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o007 == 0  # nothing for others


# ------------------------------------------------------------------------------------------------
# crane's own reading (Python 2.7 ConfigParser)
# ------------------------------------------------------------------------------------------------

CRANE_READS = r"""
import ConfigParser, json, sys
parser = ConfigParser.ConfigParser()
parser.readfp(open(sys.argv[1]))
print(json.dumps(dict(("%s.%s" % (s, k), parser.get(s, k)) for s in parser.sections() for k in parser.options(s))))
"""


def test_crane_reads_back_exactly_what_was_asked(tmp_path: Path):
    python27 = find_python27()
    if python27 is None:
        pytest.skip("no python2.7 here to read crane.conf the way crane does")
    environ = {
        "CRANE_ENDPOINT": "registry.example.com:5000",
        "CRANE_CONF__CDN__URL_MATCH": "https://cdn.example.com/100%/",  # '%' is literal for ConfigParser
        "CRANE_CONF__CDN__URL_REPLACE": "https://mirror.example.com/a%%b#c;d",
        "CRANE_CONF__SOLR__URL": "https://solr.example.com/search?q=%s",
    }
    path, _ = write(tmp_path, environ, "[general]\n# data_dir: /var/lib/crane/metadata/\ndebug: false\n")
    done = subprocess.run([python27, "-c", CRANE_READS, str(path)], capture_output=True, text=True, check=True)
    read = json.loads(done.stdout)
    assert read == {
        "general.data_dir": PULP_DATA_DIR,
        "general.debug": "false",
        "general.endpoint": "registry.example.com:5000",
        "cdn.url_match": "https://cdn.example.com/100%/",
        "cdn.url_replace": "https://mirror.example.com/a%%b#c;d",
        "solr.url": "https://solr.example.com/search?q=%s",
    }


# ------------------------------------------------------------------------------------------------
# data_dir: a warning, never a failure
# ------------------------------------------------------------------------------------------------


def test_data_dir_missing_or_not_a_directory_is_a_warning(tmp_path: Path):
    me = resolve_user(str(os.getuid()))
    assert "does not exist yet" in (data_dir_warning(str(tmp_path / "app"), me) or "")
    (tmp_path / "file").write_text("")
    assert data_dir_warning(str(tmp_path / "file"), me) == "is not a directory"
    (tmp_path / "app").mkdir()
    assert data_dir_warning(str(tmp_path / "app"), me) is None


@pytest.mark.root
@pytest.mark.root  # judging another user's access
def test_data_dir_unreadable_by_the_wsgi_user_is_a_warning():
    with reachable("crane", sample=False) as root:
        check_unreadable_data_dir(root)


def check_unreadable_data_dir(tmp_path: Path) -> None:
    nobody = resolve_user("nobody")
    app = tmp_path / "published" / "app"
    app.mkdir(parents=True)
    (tmp_path / "published").chmod(0o700)
    problem = data_dir_warning(str(app), nobody)
    assert problem is not None and "no search permission on" in problem and "published" in problem
    (tmp_path / "published").chmod(0o755)
    app.chmod(0o711)  # enterable, not listable
    problem = data_dir_warning(str(app), nobody)
    assert problem is not None and "mode 0711" in problem
    app.chmod(0o755)
    os.chown(app, pwd.getpwnam("nobody").pw_uid, -1)
    assert data_dir_warning(str(app), nobody) is None
