"""No literal run counts in the book's prose: a number is printed by the run or cited.

The rule and its allow-list live in ``tools/check_prose_numbers.py``; these tests check
it on hand-written sentences whose right answer is known, then on every page.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "check_prose_numbers", ROOT / "tools" / "check_prose_numbers.py"
)
prose = importlib.util.module_from_spec(_spec)
sys.modules["check_prose_numbers"] = prose
_spec.loader.exec_module(prose)


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("Chapter 6 reads 53 runs.", ["53"]),  # a run count, no source
        (
            "The demo splits into 35 few-shot, 17 validation and 104 test chips.",
            ["104"],
        ),
        ("Of the draws, 0 of 5 hold no landslide.", ["0"]),  # a tally
        (
            "Without pretraining the median is ≈ 695 pixels.",
            ["695"],
        ),  # a reading, no source
        ("The grid has 42 cells and 7 resamples.", ["42", "7"]),
        # cited with its source: allowed
        ("The paper's Figure 3 reads ≈ 695 pixels without pretraining.", []),
        ("Table A1 lists 331 / 110 / 55 / 56 chips.", []),
        # constants of the paper's protocol: allowed
        (
            "The grid has 51 runs: 5 seeds at 2 chips and 3 seeds at 5, 10, 20 and all "
            "chips.",
            [],
        ),
        # code, chapter and figure references, list markers: not prose numbers
        ("`len(runs)` is `53 runs`; see chapter 5 and Figures 2 and 3.", []),
        ("1. Figure 2: APRC against training size\n2. Ensembles", []),
    ],
)
def test_rule_on_hand_written_sentences(text, flagged):
    assert [number for number, _ in prose.flag_text(text)] == flagged


PAGES = sorted((ROOT / "notebooks").glob("*.ipynb")) + [
    ROOT / "intro.md",
    ROOT / "deviations.md",
]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_literal_run_counts_in_prose(page):
    flags = prose.check_notebook(page)
    assert not flags, "print these from the run or cite their source:\n" + "\n".join(
        map(str, flags)
    )
