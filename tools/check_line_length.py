#!/usr/bin/env python
"""Fail when a code line is longer than the book's column (88 characters).

Checks the code cells of notebooks (``.ipynb``) and every line of Python files (``.py``,
docstrings and comments included). Usage::

    python tools/check_line_length.py [--max 88] [notebooks/ sarslide/ *.ipynb *.py ...]

Why not only ``ruff check --select E501``: ruff exempts lines that end in a URL or are a
single long word, but a reader's column does not, and the book shows every code line.
``ruff format`` (``make format``) wraps most long calls; long strings and comments stay
long and have to be rewritten by hand (named intermediate values, shorter messages).

Exit status: 0 when every line fits, 1 otherwise (one ``path:cell N:line M: L > MAX``
line per offender), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import nbformat

MAX_LENGTH = 88


class LongLine(NamedTuple):
    """One code line that is too long; ``cell`` and ``line`` count from 1.

    ``cell`` is the code cell's number in a notebook and 0 for a Python file.
    """

    path: Path
    cell: int
    line: int
    length: int
    text: str


SUFFIXES = (".ipynb", ".py")


def source_paths(paths: Iterable[str | Path]) -> list[Path]:
    """The ``.ipynb`` and ``.py`` files named by ``paths`` (folders searched;
    notebook checkpoints and virtual environments skipped).

    Raises ``FileNotFoundError`` for a path that does not exist.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(
                q
                for q in sorted(p.rglob("*"))
                if q.suffix in SUFFIXES
                and q.is_file()
                and not {".ipynb_checkpoints", ".venv"} & set(q.parts)
            )
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such notebook, Python file or folder: {p}")
    return out


def long_lines(path: str | Path, max_length: int = MAX_LENGTH) -> Iterator[LongLine]:
    """Lines longer than ``max_length`` code points: a notebook's code lines, or every
    line of a Python file."""
    path = Path(path)
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        code_cells = (c for c in nb.cells if c.cell_type == "code")
        sources = [(k, c.source) for k, c in enumerate(code_cells, start=1)]
    else:
        sources = [(0, path.read_text(encoding="utf-8"))]
    for k, source in sources:
        for n, text in enumerate(source.splitlines(), start=1):
            if len(text) > max_length:
                yield LongLine(path, k, n, len(text), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "paths",
        nargs="*",
        default=["notebooks"],
        help="notebooks, Python files or folders",
    )
    parser.add_argument(
        "--max", type=int, default=MAX_LENGTH, help="longest allowed line"
    )
    args = parser.parse_args(argv)
    if args.max < 1:
        parser.error(f"--max must be a positive number of characters, got {args.max}")
    try:
        paths = source_paths(args.paths)
    except FileNotFoundError as err:
        parser.error(str(err))
    found = [hit for p in paths for hit in long_lines(p, args.max)]
    for hit in found:
        where = f"code cell {hit.cell}:line {hit.line}" if hit.cell else f"{hit.line}"
        print(
            f"{hit.path}:{where}: {hit.length} > {args.max}: {hit.text.strip()[:60]}…"
        )
    print(
        f"{len(found)} line(s) longer than {args.max} characters "
        f"in {len(paths)} file(s)"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
