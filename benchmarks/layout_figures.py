"""Figures of the package's shape: modules per package, function-local imports, lines of code.

`python benchmarks/layout_figures.py` prints them, to compare the layout before and after a move.
A function-local import is an `import`/`from … import` statement inside a function body; it is
"internal" when it names a pulpinit module (lazy imports of pymongo, proton, augeas and
cryptography are the point of the start-up discipline and are counted apart).
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pulpinit"


def _imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        if node.level:
            return ["pulpinit"]
        return [node.module or ""]
    return [alias.name for alias in node.names]


def local_imports(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """(line, imported modules) of every import statement inside a function."""
    found: list[tuple[int, list[str]]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child.lineno, _imported_names(child)))
            visit(child, inside)

    visit(tree, False)
    return found


def code_lines(text: str) -> int:
    """Lines that are neither blank nor only a comment."""
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


def main() -> int:
    per_package: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    internal = external = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT)
        package = ".".join(rel.parent.parts)
        per_package[package] += 1
        text = path.read_text(encoding="utf-8")
        lines[package] += code_lines(text)
        for _, names in local_imports(ast.parse(text)):
            if any(name == "pulpinit" or name.startswith("pulpinit.") for name in names):
                internal += 1
            else:
                external += 1
    for tree in ("tests", "benchmarks"):
        for path in sorted((ROOT / tree).rglob("*.py")):
            lines[tree] += code_lines(path.read_text(encoding="utf-8"))
    print("modules per package (code lines):")
    for package in sorted(per_package):
        print(f"  {package:24} {per_package[package]:3} modules  {lines[package]:6} lines")
    print(f"  {'(total)':24} {sum(per_package.values()):3} modules  {sum(lines[p] for p in per_package):6} lines")
    for tree in ("tests", "benchmarks"):
        print(f"  {tree:24}              {lines[tree]:6} lines")
    print(f"function-local imports in pulpinit: {internal} of pulpinit modules, {external} of others")
    return 0


if __name__ == "__main__":
    sys.exit(main())
