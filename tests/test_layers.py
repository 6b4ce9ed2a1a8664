"""ARCHITECTURE.md's layers hold: no module of rssd imports one of a layer above its own,
and no two modules import each other, however indirectly. Imports are read with ``ast``,
lazy ones inside functions too (they run sooner or later)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1] / "rssd"
#: Higher imports lower, never the other way; equal ranks may import each other's modules
#: except where named apart (fetch and webhooks are siblings).
RANK = {"__main__": 6, "cli": 5, "commands": 5, "daemon": 4, "webhooks": 3, "fetch": 3, "repo": 2}
SIBLINGS = {"fetch", "webhooks"}


def _module(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rssd"):
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.startswith("rssd"))
        found[_module(path)] = names
    return {m: {n for n in names if n in found and n != m} for m, names in found.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_layer_imports_one_above_it() -> None:
    upward = []
    for module, names in _imports().items():
        mine = _layer(module)
        for name in names:
            theirs = _layer(name)
            if RANK.get(theirs, 0) > RANK.get(mine, 0) or (
                {mine, theirs} <= SIBLINGS and mine != theirs
            ):
                upward.append(f"{module} -> {name}")
    assert upward == []


def test_no_two_modules_import_each_other() -> None:
    graph = _imports()
    cycles: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == []
