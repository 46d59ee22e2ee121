"""The README and docs/ say what the code does: generated tables current, links that resolve, limits kept.

The tables of every variable, knob and failure class are generated from the code's own tables
(:mod:`helpers.doctables`); the examples are run by the tests that own them (the try-it recipe,
the image test, the operator guide's commands).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
from helpers import doctables, readme

from pulpinit.errors import ExitCode
from pulpinit.knobs import KNOBS, REMOVED

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
#: The task pages (the rest are generated: the differential tier's table, the benchmarks' figures).
TASK_PAGES = (
    "configuration.md",
    "waiting.md",
    "migrations.md",
    "roles.md",
    "deployment.md",
    "operations.md",
    "testing.md",
    "development.md",
)
#: A screen of text.
SCREEN = 40
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_readme_reads_in_five_minutes_with_the_two_commands_first():
    assert len(README.splitlines()) <= 250
    first_block = README.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
    assert '```dockerfile\nENTRYPOINT ["pulpinit", "beat"]\n```' in README


def test_the_readme_has_a_table_of_contents_into_every_page():
    contents = README.split("## Documentation\n", 1)[1].split("\n## ", 1)[0]
    for page in PAGES:
        assert f"(docs/{page.name})" in contents, page.name


def test_every_exit_code_is_in_the_readme():
    table = README.split("## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    for code in ExitCode:
        assert f"| {code.value} |" in table or f"{code.value} /" in table or f"/ {code.value}" in table, code


@pytest.mark.parametrize("name", TASK_PAGES)
def test_every_task_page_is_whole_and_at_least_a_screen_long(name: str):
    text = (DOCS / name).read_text()
    assert text.startswith("# ") and len(text.splitlines()) >= SCREEN
    assert "TODO" not in text


@pytest.mark.parametrize("page", [*PAGES, ROOT / "README.md"], ids=lambda p: p.name)
def test_no_heading_carries_history(page: Path):
    headings = [line for line in page.read_text().splitlines() if line.startswith("#")]
    assert not [h for h in headings if re.search(r"\bissues? \d", h)], page.name


@pytest.mark.parametrize("page", doctables.BLOCKS)
def test_the_generated_tables_are_current(page: str):
    text = (DOCS / page).read_text()
    for name in doctables.BLOCKS[page]:
        assert doctables.read_block(text, name) is not None, f"docs/{page} has no {name} block"
    assert doctables.render(text, doctables.BLOCKS[page]) == text, f"docs/{page} is out of date: run `make docs`"


def test_every_knob_says_why_it_would_be_set_and_is_on_the_configuration_page():
    page = (DOCS / "configuration.md").read_text()
    for knob in KNOBS:
        assert knob.meaning and knob.why and knob.why != knob.meaning, knob.name
        assert f"| `{knob.name}` |" in page, knob.name
    for name in REMOVED:
        assert name not in {knob.name for knob in KNOBS}
        assert f"| `{name}` |" in page.split("### Removed knobs", 1)[1], name


def test_every_broker_scheme_is_in_the_broker_table():
    from pulpinit.wait.broker_probe import SCHEMES

    text = (DOCS / "waiting.md").read_text()
    table = text.split("## The Celery broker (`[tasks] broker_url`)", 1)[1].split("- **TLS.**")[0]
    for scheme in SCHEMES:
        assert f"`{scheme}://`" in table, scheme


def test_the_readme_check_deps_example_is_what_check_deps_prints():
    """Rendered by check-deps' own table from the example's results: the columns, widths and hint."""
    from pulpinit.render import check_deps_table
    from pulpinit.targets import Failure, ProbeResult
    from pulpinit.wait.report import Report

    example = README.split("## `check-deps`\n", 1)[1].split("```\n", 2)[1]
    command, printed = example.split("\n", 1)
    assert command.endswith("pulpinit check-deps")
    report = Report(
        (
            ProbeResult("mongodb", "mongodb://db:27017/pulp_database", True, 4.0, "6.0.0"),
            ProbeResult("broker", "qpid://pulp:***@msg:5672/", False, 2.0, failure=Failure.AUTH, error="…"),
        ),
        {"mongodb": "k8s:db", "broker": "k8s:msg"},
    )
    assert printed.rstrip("\n") == check_deps_table(report)


def test_the_plugin_is_installed_as_it_really_can_be():
    """From a wheel (the name the build gives it: tests/test_packaging.py installs it that way), a
    checkout, or a git URL; never `pip install 'pulpinit[testing]'` from an index that lacks it."""
    from packaging.requirements import Requirement

    from pulpinit import __version__

    wheel, checkout, git = readme.install_lines()
    assert wheel == f"pip install './dist/pulpinit-{__version__}-py3-none-any.whl[testing]'"
    assert checkout.endswith("pulpinit[testing]'") and "'/" in checkout
    requirement = Requirement(git.removeprefix("pip install ").strip("'"))
    assert requirement.name == "pulpinit" and requirement.extras == {"testing"}
    assert requirement.url and requirement.url.startswith("git+https://")
    assert "pip install 'pulpinit[testing]'" not in README + "".join(p.read_text() for p in PAGES)


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = heading.lstrip("#").strip().lower().replace("`", "")
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif line.startswith("#") and not in_code:
            base = slug(line)
            name, n = base, 0
            while name in found:
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_every_link_between_the_pages_resolves(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # an outside address
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        missing_anchor = bool(anchor) and file.suffix == ".md" and file.exists() and anchor not in anchors(file)
        if not file.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def _subcommands() -> set[str]:
    import argparse

    from pulpinit.cli import build_parser

    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


@pytest.mark.parametrize("page", ["README.md", "docs/roles.md"])
def test_the_command_synopsis_names_every_command_and_no_other(page: str):
    text = (ROOT / page).read_text()
    synopsis = text.split("```\npulpinit [--log-format json|console]", 1)[1].split("```", 1)[0]
    named = set(re.findall(r"(?:^  |\| )([a-z][a-z-]+)", synopsis, flags=re.MULTILINE))
    assert named == _subcommands()


@pytest.mark.parametrize("role", ["beat", "resource-manager", "worker"])
def test_the_roles_table_shows_the_argv_the_roles_exec(role: str):
    from pulpinit.roles import celery_argv

    argv = celery_argv(role, celery="celery", node_name="NAME", number=0)
    shown = " ".join(argv).replace("reserved_resource_worker-0@", "reserved_resource_worker-N@")
    row = f"| `{role}{' N' if role == 'worker' else ''}` | `{shown}` |"
    assert row in (DOCS / "roles.md").read_text()


def test_the_usage_hint_example_is_what_pulpinit_prints(capsys: pytest.CaptureFixture[str]):
    from pulpinit.cli import main

    text = (DOCS / "roles.md").read_text()
    example = text.split("```\n$ pulpinit run /bin/echo hi\n", 1)[1].split("```", 1)[0]
    assert main(["run", "/bin/echo", "hi"], {}) == ExitCode.USAGE
    assert capsys.readouterr().err == example


def test_the_wait_s_pace_is_the_one_the_code_uses():
    from pulpinit.wait.waiter import PACING

    text = (DOCS / "waiting.md").read_text().split("## `check-deps`", 1)[0]
    for words in (
        f"again after {PACING.initial:g} s",
        f"capped at {PACING.max_interval:g} s",
        f"a `dep.still_down` line comes every {PACING.log_interval:g} s",
        f"every {PACING.armed_interval:g} s. The moment",
        f"`PULPINIT_PROBE_TIMEOUT`\n({PACING.probe_timeout:g} s)",
    ):
        assert words in text, words
