"""The Pulp lens: its augparse unit tests, lossless round trips, and what it refuses."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.inifiles import ini_file, stock
from hypothesis import HealthCheck, given, settings

from pulpinit.config.lens import ORIGINAL, LensTree, lens_dir
from pulpinit.errors import ConfigFileError, ExitCode

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
STOCK = ["pulp-2.4-server.conf", "pulp-2.21-server.conf"]


def round_trip(text: str) -> str:
    tree = LensTree(text, "<test>")
    try:
        return tree.render(ORIGINAL)
    finally:
        tree.close()


# -- augparse --------------------------------------------------------------------------------


def augparse() -> str:
    found = shutil.which("augparse")
    if found is None:
        pytest.skip("augparse is not installed (Debian package augeas-tools)")
    return found


def test_augparse_unit_tests_pass() -> None:
    result = subprocess.run(
        [augparse(), "--nostdinc", "-I", str(lens_dir()), str(ROOT / "lenses/tests/test_pulp.aug")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_augparse_would_report_a_failing_expectation(tmp_path: Path) -> None:
    """The harness above is not vacuous: a wrong expectation makes augparse fail."""
    (tmp_path / "test_wrong.aug").write_text(
        'module Test_Wrong =\n  test Pulp.lns get "[s]\\nk: v\\n" = { "s" { "k" = "other" } }\n'
    )
    result = subprocess.run(
        [augparse(), "--nostdinc", "-I", str(lens_dir()), str(tmp_path / "test_wrong.aug")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "other" in result.stdout + result.stderr


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", STOCK)
def test_stock_file_round_trips_byte_for_byte(name: str) -> None:
    text = stock(name).read_bytes().decode("utf-8")
    assert round_trip(text) == text


@pytest.mark.parametrize("name", ["live-keys.conf", "prose-only.conf"])
def test_sample_file_round_trips_byte_for_byte(name: str) -> None:
    text = (DATA / name).read_text(encoding="utf-8")
    assert round_trip(text) == text


def test_lens_dir_holds_the_lens() -> None:
    assert (lens_dir() / "pulp.aug").is_file()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ini_file())
@pytest.mark.slow  # real processes: seconds
def test_generated_files_round_trip_and_read_like_configparser(generated: tuple[str, dict[str, str]]) -> None:
    text, expected = generated
    assert round_trip(text) == text
    parser = configparser.ConfigParser()
    parser.read_string(text)
    read = {f"{s}.{k}": v for s in parser.sections() for k, v in parser[s].items()}
    assert read == expected


# -- what the lens refuses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("[s]\n  continued\n", 2),  # a continuation with no entry to continue: SafeConfigParser fails too
        ("[s]\n# c\n\n  # indented comment\n", 4),
        ("  x\n[s]\n", 1),
        ("a: 1\n", 1),  # an entry before any section
        ("[s]\nno separator\n", 2),
        ("[s\n", 1),  # no "]": no header, and no separator either
        ("[]\n", 1),
    ],
)
def test_unparseable_text_is_a_config_error_with_line_and_char(text: str, line: int) -> None:
    with pytest.raises(ConfigFileError) as caught:
        LensTree(text, "/etc/pulp/server.conf")
    error = caught.value
    assert error.exit_code == ExitCode.CONFIG == 78
    assert f"line {line}, char 0" in str(error)
    assert str(error).startswith("/etc/pulp/server.conf: ")


def test_parse_error_does_not_quote_the_line() -> None:
    with pytest.raises(ConfigFileError) as caught:
        LensTree("[database]\n  password: hunter2-secret\n", "server.conf")
    assert "hunter2" not in str(caught.value)
    assert "continues the value of the entry above it" in str(caught.value)
