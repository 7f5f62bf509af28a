"""Measure the package's structure: modules, import levels, cycles, lines.

Run: ``python benchmarks/structure.py`` (prints one table; no timing).

A module's *level* is 0 if it imports no other package module, else one more than the
highest level among the package modules it imports (module-level and function-level
imports both count: a function-level import is still a dependency). A cycle is a
strongly connected component with more than one module.  ``--top-level`` counts only the
imports at the top of each module; ``-v`` lists every module with its level and imports.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "symsgd"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str], top_level: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    nodes = tree.body if top_level else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        for c in candidates:
            if c in modules and c != here:
                found.add(c)
    return found


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    names = {module_name(f): f for f in files}
    top = "--top-level" in sys.argv
    graph = {m: imports_of(f, set(names), top) for m, f in names.items()}
    graph.pop("symsgd", None)
    for deps in graph.values():
        deps.discard("symsgd")
    cycles = [sorted(c) for c in strongly_connected(graph) if len(c) > 1]
    level: dict[str, int] = {}

    def lev(m: str, seen: frozenset[str] = frozenset()) -> int:
        if m in level:
            return level[m]
        deps = [d for d in graph[m] if d not in seen]
        value = 1 + max((lev(d, seen | {m}) for d in deps), default=-1)
        level[m] = value
        return value

    for m in graph:
        lev(m)
    lines = sum(len(f.read_text().splitlines()) for f in files)
    print(f"modules        {len(graph)}")
    print(f"import levels  {max(level.values()) + 1}")
    print(f"cycles         {len(cycles)} {cycles if cycles else ''}")
    print(f"lines          {lines}")
    if "-v" in sys.argv:
        for m in sorted(graph, key=lambda m: (level[m], m)):
            print(f"  {level[m]:2d} {m:28s} {' '.join(sorted(d.split('.')[-1] for d in graph[m]))}")


if __name__ == "__main__":
    main()
