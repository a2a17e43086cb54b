"""The import graph of ``clinic_app``'s modules, and the cycles in it.

Every import counts, at the top of a module or inside a function: a cycle hidden in a function
is still a circle a reader has to untangle. Migrations and management commands are left out
(nothing imports them). Usage::

    python scripts/import_graph.py        # one line per module, what it imports; 1 on a cycle
    python scripts/import_graph.py --dot  # Graphviz, e.g. | dot -Tsvg > graph.svg
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "clinic_app"
SKIPPED = {"migrations", "management"}

Graph = dict[str, set[str]]


def modules(root: Path = ROOT / PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (packages by __init__)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if SKIPPED & set(parts):
            continue
        name = ".".join(parts).removesuffix(".__init__")
        found[name] = path
    return found


def _imported(node: ast.AST, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        # `from pkg import module` imports the module; `from module import name` the module.
        names = [f"{node.module}.{a.name}" for a in node.names]
        return [
            n if n in known else node.module for n in names if n in known or node.module in known
        ]
    return []


def graph(known: dict[str, Path] | None = None) -> Graph:
    """Module -> the package's modules it imports (itself and its own package left out)."""
    known = known or modules()
    edges: Graph = {name: set() for name in known}
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for target in _imported(node, known):
                if target != name and not name.startswith(target + "."):
                    edges[name].add(target)
    return edges


def cycles(edges: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _short(name: str) -> str:
    return name.removeprefix(PACKAGE + ".")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dot", action="store_true", help="print Graphviz instead of a list")
    args = parser.parse_args(argv)
    sys.setrecursionlimit(10_000)
    edges = graph()
    if args.dot:
        print(f"digraph {PACKAGE} {{\n  rankdir=LR;")
        for name in sorted(edges):
            for target in sorted(edges[name]):
                print(f'  "{_short(name)}" -> "{_short(target)}";')
        print("}")
    else:
        for name in sorted(edges):
            print(f"{_short(name)}: {', '.join(sorted(_short(t) for t in edges[name]))}")
    found = cycles(edges)
    for component in found:
        print("cycle: " + " <-> ".join(_short(m) for m in component), file=sys.stderr)
    print(
        f"{len(edges)} modules, {sum(map(len, edges.values()))} imports, {len(found)} cycles",
        file=sys.stderr,
    )
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
