"""Code blocks of README.md, for the tests that run what it shows (so the README cannot drift)."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def block(heading: str, language: str) -> str:
    """The first ```language block after the line ``heading`` (e.g. ``## Try it by hand``)."""
    section = README.read_text().split(f"\n{heading}\n", 1)[1]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def image_test_example() -> str:
    """The image builder's test of "Testing your image"."""
    return block("### Testing your image", "python")
