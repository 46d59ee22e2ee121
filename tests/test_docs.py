"""The README documents every variable, default and exit code the code knows."""

from __future__ import annotations

from pathlib import Path

from pulpinit.errors import ExitCode
from pulpinit.settings.knobs import KNOBS
from pulpinit.settings.resolve import EXPLICIT

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_knob_has_a_row_with_its_default():
    for knob in KNOBS:
        default = f"`{knob.default}`" if knob.default else "—"
        assert f"| `{knob.name}` | {default} | {knob.meaning} |" in README, knob.name


def test_every_explicit_variable_is_documented():
    for var in EXPLICIT:
        assert f"| `{var.name}` | `{var.key}` |" in README, var.name


def test_every_crane_variable_is_documented():
    from pulpinit.settings.crane import EXPLICIT as CRANE

    for var in CRANE:
        assert f"| `{var.name}` | `{var.key}` | {var.meaning} |" in README, var.name


def test_every_exit_code_is_documented():
    for code in ExitCode:
        assert f"| {code.value} |" in README or f"{code.value} /" in README or f"/ {code.value}" in README, code


def test_the_two_commands_come_first():
    first_block = README.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block


def test_every_failure_class_is_in_the_troubleshooting_table_with_its_hint():
    from pulpinit.wait.targets import Failure

    for failure in Failure:
        assert f"| `{failure.value}` | {failure.hint} |" in README, failure


def test_every_broker_scheme_is_in_the_broker_table():
    from pulpinit.wait.broker_probe import SCHEMES

    for scheme in SCHEMES:
        assert f"`{scheme}://`" in README.split("### Brokers: scheme, protocol, TLS")[1].split("**TLS.**")[0], scheme
