#!/usr/bin/env python
"""Fail when a notebook code line is longer than the book's column (88 characters).

Usage::

    python tools/check_line_length.py [--max 88] [notebooks/ or *.ipynb ...]

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
    """One code line that is too long; ``cell`` and ``line`` count from 1."""

    path: Path
    cell: int
    line: int
    length: int
    text: str


def notebook_paths(paths: Iterable[str | Path]) -> list[Path]:
    """The ``.ipynb`` files named by ``paths`` (folders searched, checkpoints skipped).

    Raises ``FileNotFoundError`` for a path that does not exist.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(
                q
                for q in sorted(p.rglob("*.ipynb"))
                if ".ipynb_checkpoints" not in q.parts
            )
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such notebook or folder: {p}")
    return out


def long_lines(path: str | Path, max_length: int = MAX_LENGTH) -> Iterator[LongLine]:
    """Code lines of one notebook longer than ``max_length`` code points."""
    nb = nbformat.read(path, as_version=4)
    code_cells = (c for c in nb.cells if c.cell_type == "code")
    for k, cell in enumerate(code_cells, start=1):
        for n, text in enumerate(cell.source.splitlines(), start=1):
            if len(text) > max_length:
                yield LongLine(Path(path), k, n, len(text), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "paths", nargs="*", default=["notebooks"], help="notebooks or folders"
    )
    parser.add_argument(
        "--max", type=int, default=MAX_LENGTH, help="longest allowed line"
    )
    args = parser.parse_args(argv)
    if args.max < 1:
        parser.error(f"--max must be a positive number of characters, got {args.max}")
    try:
        paths = notebook_paths(args.paths)
    except FileNotFoundError as err:
        parser.error(str(err))
    found = [hit for p in paths for hit in long_lines(p, args.max)]
    for hit in found:
        print(
            f"{hit.path}:code cell {hit.cell}:line {hit.line}: "
            f"{hit.length} > {args.max}: {hit.text.strip()[:60]}…"
        )
    print(
        f"{len(found)} code line(s) longer than {args.max} characters "
        f"in {len(paths)} notebook(s)"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
