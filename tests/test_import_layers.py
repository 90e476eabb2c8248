"""The packages of sonokit form no import cycle: every import counts, inside functions too (lazy imports hide
cycles from Python but not from a reader); only `if TYPE_CHECKING:` blocks, which never run, are left out."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import sonokit

SRC = Path(sonokit.__file__).parent


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imported_modules(tree: ast.AST, module: list[str]) -> list[str]:
    """Absolute sonokit module names imported anywhere in `tree` outside TYPE_CHECKING blocks."""
    found: list[str] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_block(node):
            stack.extend(getattr(node, "orelse", []))
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the importing module's package
                base = module[: len(module) - node.level]
                found.append(".".join(["sonokit", *base, *([node.module] if node.module else [])]))
            elif node.module:
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return [m for m in found if m == "sonokit" or m.startswith("sonokit.")]


def package_graph() -> dict[str, dict[str, set[str]]]:
    """package -> imported package -> the files that import it (top-level packages of sonokit only)."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        package = parts[0]
        for name in _imported_modules(ast.parse(path.read_text(encoding="utf-8")), parts):
            target = name.split(".")[1] if "." in name else "sonokit"
            if target != package:
                graph.setdefault(package, {}).setdefault(target, set()).add(str(path.relative_to(SRC)))
    return graph


def find_cycle(graph: dict[str, dict[str, set[str]]]) -> list[str]:
    """One package cycle as [a, b, ..., a], or [] when the graph is acyclic (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph()
    cycle = find_cycle(graph)
    where = [
        f"{a} -> {b} in {', '.join(sorted(graph[a][b]))}" for a, b in zip(cycle, cycle[1:], strict=False)
    ]
    assert not cycle, "import cycle: " + " | ".join(where)


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b": {"a/x.py"}}, "b": {"c": {"b/y.py"}}, "c": {"a": {"c/z.py"}}, "d": {"a": {"d/w.py"}}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    del graph["c"]["a"]
    assert find_cycle(graph) == []


def test_lazy_imports_count_and_type_checking_ones_do_not() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from sonokit.tasks import Task\n"
        "def f():\n    from sonokit.train.engine import fit\n"
        "from ..core import run\n"
    )
    assert sorted(_imported_modules(tree, ["evaluate", "runner"])) == ["sonokit.core", "sonokit.train.engine"]


def test_every_imported_sonokit_module_exists() -> None:
    """A lazy import of a module that moved fails only when its code path runs: find them all here."""
    root = SRC.parents[1]  # the checkout: benchmarks and examples import sonokit too
    files = [*SRC.rglob("*.py"), *(root / "benchmarks").glob("*.py"), *(root / "examples").rglob("*.py")]
    missing = set()
    for path in files:
        where = path.relative_to(root)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                not isinstance(node, ast.ImportFrom)
                or node.level
                or not (node.module or "").startswith("sonokit")
            ):
                continue
            if importlib.util.find_spec(node.module) is None:
                missing.add(f"{where}: {node.module}")
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:  # `from sonokit.x import y`: y is a name in x or a module below it
                if (
                    not hasattr(module, alias.name)
                    and importlib.util.find_spec(f"{node.module}.{alias.name}") is None
                ):
                    missing.add(f"{where}: {node.module}.{alias.name}")
    assert not missing, "imports of modules or names that do not exist: " + "; ".join(sorted(missing))
