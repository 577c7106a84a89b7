"""The package's own import graph, read from the sources: levels, cycles, upward
imports.

Every ``import`` of a ``sarslide`` module counts, including those inside functions (the
package imports torch-heavy modules lazily, but a lazy import is still a dependency).
A module's *level* is 0 when it imports no other package module, else one more than the
highest level it imports; a cycle is an error.

    .venv/bin/python tools/import_graph.py            # table: level, module, imports
    .venv/bin/python tools/import_graph.py --chain  # one line per level, for README

Subpackages count as one node (``sarslide.acquire``, ``sarslide.mapping``,
``sarslide.plots``): the README documents them as one job each. The modules of
``sarslide.engine`` are nodes of their own: they form the *engine room* (devices and
precision, stores, checkpoints, run folders, caches, progress, network), which the
chapters never import; every other node is in the *reading room*, the method.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "sarslide"
PACKAGE = "sarslide"
#: Subpackages shown as one node.
GROUPED = ("acquire", "mapping", "plots")
#: The subpackage that holds the machinery (the engine room).
ENGINE = f"{PACKAGE}.engine"
#: Headings of the two rooms in ``--chain``.
ROOM_TITLES = {
    "reading": "reading room: the method (what the chapters import)",
    "engine": "engine room: sarslide.engine (the machinery; no chapter imports it)",
}


def room_of(node: str) -> str:
    """``"engine"`` for ``sarslide.engine`` and its modules, else ``"reading"``."""
    return "engine" if node == ENGINE or node.startswith(ENGINE + ".") else "reading"


def chain_text(level: dict[str, int]) -> str:
    """The levels, one line each, under the heading of each room (README's block)."""
    out = []
    for room, title in ROOM_TITLES.items():
        out.append(title)
        members = {m: k for m, k in level.items() if room_of(m) == room}
        for k in sorted(set(members.values())):
            names = sorted(
                m.removeprefix(PACKAGE + ".") for m in members if members[m] == k
            )
            out.append(f"{k}: " + " · ".join(names))
    return "\n".join(out) + "\n"


def node_of(module: str) -> str:
    """``sarslide.acquire.paper`` -> ``sarslide.acquire``; other modules unchanged."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in GROUPED:
        return ".".join(parts[:2])
    return module


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Package modules that the file at ``path`` imports (module names, not nodes)."""
    current = module_name(path, root)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            found.update(a.name for a in n.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(n, ast.ImportFrom):
            target = _resolve(current, is_package, n)
            if target.split(".")[0] != PACKAGE:
                continue
            for a in n.names:  # "from . import chips" imports the module sarslide.chips
                sub = f"{target}.{a.name}"
                where = root.parent / sub.replace(".", "/")
                is_module = (
                    where.with_suffix(".py").exists()
                    or (where / "__init__.py").exists()
                )
                found.add(sub if is_module else target)
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Node -> the nodes it imports (self-imports and the bare package dropped)."""
    edges: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        node = node_of(module_name(path, root))
        if node == PACKAGE:
            continue
        deps = {node_of(m) for m in imports_of(path, root)} - {node, PACKAGE}
        edges.setdefault(node, set()).update(deps)
    return edges


def levels(edges: dict[str, set[str]]) -> dict[str, int]:
    """Level of each node; raises ValueError naming a cycle if there is one."""
    level: dict[str, int] = {}
    visiting: list[str] = []

    def visit(node: str) -> int:
        if node in level:
            return level[node]
        if node in visiting:
            cycle = visiting[visiting.index(node) :] + [node]
            raise ValueError("import cycle: " + " -> ".join(cycle))
        visiting.append(node)
        level[node] = 1 + max((visit(d) for d in edges.get(node, ())), default=-1)
        visiting.pop()
        return level[node]

    for node in sorted(edges):
        visit(node)
    return level


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chain", action="store_true", help="one line per level")
    args = parser.parse_args(argv)
    edges = graph()
    level = levels(edges)
    short = lambda m: m.removeprefix(PACKAGE + ".")  # noqa: E731
    if args.chain:
        print(chain_text(level), end="")
        return 0
    for m in sorted(level, key=lambda m: (level[m], m)):
        deps = ", ".join(
            short(d) for d in sorted(edges[m], key=lambda d: (level[d], d))
        )
        print(f"{level[m]:2d}  {short(m):15s} {deps or '—'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
