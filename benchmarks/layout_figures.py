"""Figures of the package's shape: modules per package, function-local imports, lines of code.

`python benchmarks/layout_figures.py [TREE]` prints them for the checkout TREE (default: this one), to
compare the layout before and after a move (an older tree: ``git archive REV | tar -x -C DIR``): the
rooms (the package's top-level modules and subpackages), the largest modules, and the import arrows
between rooms (each ``import`` statement naming a module of another room counts once).
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


#: The stages in the order they run, then the homes of the roles that have steps of their own.
STAGED = ("settings", "config", "wait", "migrate", "handoff", "crane", "api")


def room(module: str) -> str:
    """The room of a dotted module name: its first component under ``pulpinit`` (a subpackage or a module)."""
    rest = module.removeprefix("pulpinit").removeprefix(".")
    return rest.split(".")[0] if rest else "pulpinit"


def arrows(modules: dict[str, str]) -> Counter[tuple[str, str]]:
    """(from room, to room) → import statements, over every import (module level and in functions)."""
    found: Counter[tuple[str, str]] = Counter()
    for name, text in modules.items():
        for node in ast.walk(ast.parse(text)):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module]
            for target in targets:
                if target.split(".")[0] == "pulpinit" and room(target) != room(name):
                    found[(room(name), room(target))] += 1
    return found


def main() -> int:
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT
    package_dir = root / "pulpinit"
    per_package: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    modules: dict[str, str] = {}
    internal = external = 0
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(root)
        package = ".".join(rel.parent.parts)
        per_package[package] += 1
        text = path.read_text(encoding="utf-8")
        parts = rel.with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = text
        lines[package] += code_lines(text)
        for _, names in local_imports(ast.parse(text)):
            if any(name == "pulpinit" or name.startswith("pulpinit.") for name in names):
                internal += 1
            else:
                external += 1
    for tree in ("tests", "benchmarks"):
        for path in sorted((root / tree).rglob("*.py")):
            lines[tree] += code_lines(path.read_text(encoding="utf-8"))
    print("modules per package (code lines):")
    for package in sorted(per_package):
        print(f"  {package:24} {per_package[package]:3} modules  {lines[package]:6} lines")
    print(f"  {'(total)':24} {sum(per_package.values()):3} modules  {sum(lines[p] for p in per_package):6} lines")
    for tree in ("tests", "benchmarks"):
        print(f"  {tree:24}              {lines[tree]:6} lines")
    print(f"function-local imports in pulpinit: {internal} of pulpinit modules, {external} of others")
    sizes = sorted(((len(text.splitlines()), name) for name, text in modules.items()), reverse=True)
    rooms = {room(name) for name in modules}
    print(f"rooms: {len(rooms)}; modules over 500 lines: {sum(1 for size, _ in sizes if size > 500)}")
    print("largest modules: " + ", ".join(f"{name.removeprefix('pulpinit.')} {size}" for size, name in sizes[:6]))
    between = arrows(modules)
    print(f"import arrows between rooms: {len(between)} room pairs, {sum(between.values())} statements")
    staged = {pair: count for pair, count in between.items() if pair[0] in STAGED and pair[1] in STAGED}
    print(
        "  between the stages and the roles' homes: "
        + ", ".join(f"{a}→{b} {n}" for (a, b), n in sorted(staged.items()))
    )
    up = [f"{a}→{b}" for a, b in staged if STAGED.index(b) > STAGED.index(a)]
    print(f"  running back up the order: {', '.join(up) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
