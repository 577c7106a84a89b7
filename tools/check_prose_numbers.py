#!/usr/bin/env python
"""Find numbers in the notebooks' prose that a run should print instead.

Usage (``tests/test_prose_numbers.py`` runs it on every notebook)::

    python tools/check_prose_numbers.py [notebooks]

The rule: a number in prose is computed by the run beside it or cited with
its source. Markdown cannot compute, so a markdown cell may hold a count or a reading
only when it is one of the paper's protocol constants or when its sentence names its
source. Concretely, in every markdown cell (code spans, math, link targets and URLs
removed), a number is flagged when

* it counts something a run produces — it is followed, within a few words, by one of
  :data:`COUNT_NOUNS` (``53 runs``, ``104 test chips``, ``0 of 5 draws``), or it is the
  ``k`` of a ``k of n`` tally — or it is an approximate reading (``≈ 695``), and
* it is not in :data:`PAPER_CONSTANTS` (the paper's sizes, seeds, grid and Table A1
  counts), and
* its sentence names no source (:data:`SOURCE_MARKERS`: the paper, a table, figure or
  section of it, a published dataset or run).

Exit status 0 when nothing is flagged, 1 with one line per number otherwise.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

#: The paper's protocol constants a page may state without computing them: training
#: sizes 2/5/10/20/110, 3 seeds (5 at size 2), the 51-run grid, Table A1's 552 Hokkaido
#: chips (331/110/55/56) and Kaikōura's 1,630/272/272, 128 px chips, 64 embedding
#: channels, the 0.5 threshold, top-5 checkpoints and the 50-epoch patience.
PAPER_CONSTANTS: frozenset[str] = frozenset(
    "2 3 5 10 20 110 51 552 331 55 56 1630 272 2174 128 64 0.5 50".split()
)
#: Nouns that make a number a count of something a run produces.
COUNT_NOUNS = (
    r"runs?|chips?|seeds?|draws?|models?|checkpoints?|pixels?|px|cells?|resamples?|"
    r"comparisons?|tiles?|footprints?"
)
#: Words that name a number's source in its sentence (case-insensitive).
SOURCE_MARKERS = re.compile(
    r"paper|table a1|figure|§|arxiv|zenodo|published|authors|böhm|eq\.|text says",
    re.IGNORECASE,
)
_NUMBER = r"(?<![\w.,−-])(\d[\d,]*(?:\.\d+)?)"
_COUNT = re.compile(_NUMBER + r"(?:\s+[\w/–-]+){0,3}?\s+(?:" + COUNT_NOUNS + r")\b")
_TALLY = re.compile(_NUMBER + r"\s+of\s+(?:the\s+)?\d")
_APPROX = re.compile(r"≈\s*[−-]?(\d[\d,]*(?:\.\d+)?)")
_STRIP = [
    re.compile(r"```.*?```", re.DOTALL),  # code blocks
    re.compile(r"`[^`]*`"),  # code spans
    re.compile(r"\$[^$]*\$"),  # math
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"https?://\S+"),
    re.compile(r"<[^>]+>"),  # HTML tags
    re.compile(r"^\s*(?:\d+\.|[-*])\s", re.MULTILINE),  # list markers
    # references to the book's chapters and the paper's figures, tables and sections
    re.compile(
        r"\b(?:chapters?|figures?|tables?|§)\s*[\dA]+(?:\s*(?:and|,|–|-|or)\s*[\dA]+)*",
        re.IGNORECASE,
    ),
]


@dataclass(frozen=True)
class Flag:
    """One number in prose that should be printed by the run (or cited)."""

    notebook: str
    cell: int
    number: str
    sentence: str

    def __str__(self) -> str:
        return f"{self.notebook} cell {self.cell}: {self.number!r} in “{self.sentence}”"


def _sentences(text: str) -> list[str]:
    for pattern in _STRIP:
        text = pattern.sub(" ", text)
    text = re.sub(r"\s+", " ", text)
    return [
        s.strip() for s in re.split(r"(?<=[.!?;:])\s+(?=[A-Z(*])", text) if s.strip()
    ]


def flag_text(text: str) -> list[tuple[str, str]]:
    """(number, sentence) for every flagged number of one markdown text."""
    found = []
    for sentence in _sentences(text):
        if SOURCE_MARKERS.search(sentence):
            continue
        numbers = [
            m.group(1) for p in (_COUNT, _TALLY, _APPROX) for m in p.finditer(sentence)
        ]
        for number in dict.fromkeys(numbers):
            if number.replace(",", "") not in PAPER_CONSTANTS:
                found.append((number, sentence))
    return found


def check_notebook(path: Path) -> list[Flag]:
    """Every flagged number in the markdown cells of one notebook (or a Markdown page,
    as one cell)."""
    if path.suffix == ".md":
        return [
            Flag(path.name, 0, n, s)
            for n, s in flag_text(path.read_text(encoding="utf-8"))
        ]
    nb = nbformat.read(path, as_version=4)
    return [
        Flag(path.name, k, number, sentence)
        for k, cell in enumerate(nb.cells)
        if cell.cell_type == "markdown"
        for number, sentence in flag_text(cell.source)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", default=["notebooks"])
    args = parser.parse_args(argv)
    flags = []
    for name in args.paths:
        path = Path(name)
        for nb in sorted(path.glob("*.ipynb")) if path.is_dir() else [path]:
            flags.extend(check_notebook(nb))
    for flag in flags:
        print(flag)
    print(f"{len(flags)} number(s) in prose to print from the run or cite")
    return 1 if flags else 0


if __name__ == "__main__":
    sys.exit(main())
