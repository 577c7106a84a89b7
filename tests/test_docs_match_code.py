"""The documents describe the code that is there: the README's module table and chain
come from the real import graph, no source cites a file the repository lacks, and no
module reaches into another's private names.

References: the sources themselves, parsed with ``ast`` (``tools/import_graph.py``), and
hand-made miniature packages for the graph tool.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import REPO, load_tool

graph_tool = load_tool("import_graph")
PACKAGE = REPO / "sarslide"


def _readme_modules() -> dict[str, int]:
    """Module -> level, from the README's table (``| `sarslide.x` | level | job |``)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| module | level | job |") :]
    table = table[: table.index("\n\n")]
    rows = re.findall(r"^\| `(sarslide\.[a-z_.]+)` \| (\d+) \|", table, flags=re.M)
    return {module: int(level) for module, level in rows}


def test_readme_module_table_lists_exactly_the_package_modules_with_their_levels():
    level = graph_tool.levels(graph_tool.graph())
    listed = _readme_modules()
    assert set(listed) == set(level), (
        f"README lacks {sorted(set(level) - set(listed))}; "
        f"README lists missing modules {sorted(set(listed) - set(level))}"
    )
    assert listed == level


def test_readme_chain_is_the_import_graph():
    # The README prints the graph's levels by room (tools/import_graph.py --chain)
    # verbatim.
    level = graph_tool.levels(graph_tool.graph())
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert graph_tool.chain_text(level) in text, (
        "README's module chain is not the import graph; paste the output of "
        "`.venv/bin/python tools/import_graph.py --chain`"
    )


def _notebook_imports(path) -> set[str]:
    """Every ``sarslide`` module a notebook's code cells import (IPython's ``%`` and
    ``!`` lines read as ``pass``)."""
    import json

    found = set()
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        code = "\n".join(
            line[: len(line) - len(line.lstrip())] + "pass"
            if line.lstrip().startswith(("%", "!"))
            else line
            for line in "".join(cell["source"]).splitlines()
        )
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] == "sarslide"}


def test_the_chapters_import_only_the_reading_room():
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 7
    for path in notebooks:
        engine = sorted(
            m for m in _notebook_imports(path) if graph_tool.room_of(m) == "engine"
        )
        assert not engine, f"{path.name} imports the engine room: {engine}"


def test_no_source_cites_a_file_the_repository_lacks():
    for path in PACKAGE.rglob("*.py"):
        for name in re.findall(
            r"\b([A-Za-z_]+\.md)\b", path.read_text(encoding="utf-8")
        ):
            assert (REPO / name).exists(), (
                f"{path.relative_to(REPO)} cites {name}, which is not in the repository"
            )


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (
                node.level or (node.module or "").startswith("sarslide")
            ):
                offenders += [
                    f"{path.relative_to(REPO)}: {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and a.name != "__version__"
                ]
    assert not offenders, offenders


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "sarslide"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_graph_tool_levels_lazy_imports_and_subpackages(tmp_path):
    root = _package(
        tmp_path,
        {
            "a.py": "",
            "b.py": "from .a import x\n",
            # a lazy import is still a dependency
            "c.py": "def f():\n    from . import b\n",
            "acquire/__init__.py": "",
            "acquire/load.py": "from ..c import f\nfrom sarslide.a import y\n",
        },
    )
    edges = graph_tool.graph(root)
    assert edges == {
        "sarslide.a": set(),
        "sarslide.b": {"sarslide.a"},
        "sarslide.c": {"sarslide.b"},
        "sarslide.acquire": {"sarslide.c", "sarslide.a"},
    }
    assert graph_tool.levels(edges) == {
        "sarslide.a": 0,
        "sarslide.b": 1,
        "sarslide.c": 2,
        "sarslide.acquire": 3,
    }


def test_graph_tool_names_a_cycle(tmp_path):
    root = _package(
        tmp_path, {"a.py": "from .b import x\n", "b.py": "from .a import y\n"}
    )
    with pytest.raises(
        ValueError, match=r"import cycle: sarslide\.a -> sarslide\.b -> sarslide\.a"
    ):
        graph_tool.levels(graph_tool.graph(root))
