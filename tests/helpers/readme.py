"""Code blocks of the README and docs/, for the tests that run what they show (so the text cannot drift)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def block(heading: str, language: str, page: Path = README) -> str:
    """The first ```language block after the line ``heading`` (e.g. ``## Try it by hand``) of ``page``."""
    section = page.read_text().split(f"\n{heading}\n", 1)[1]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def image_test_example() -> str:
    """The image builder's test of docs/testing.md."""
    return block("## An example", "python", DOCS / "testing.md")


def install_lines() -> list[str]:
    """The ``pip install`` lines of docs/testing.md, "Installing the plugin"."""
    text = block("## Installing the plugin", "sh", DOCS / "testing.md")
    return [line for line in text.splitlines() if line.startswith("pip install ")]
