#!/usr/bin/env python
"""Check that the built book shows its figures: every chapter page, every image real.

Usage (``make test`` runs it after ``jupyter-book build``)::

    python tools/check_site.py [_build]

For every chapter page ``<build>/html/notebooks/*.html`` this checks that

* the page has at least ``MIN_FIGURES[chapter]`` figures (images inside cell outputs)
  and, when the executed notebook is there (``<build>/jupyter_execute/notebooks``), as
  many as that notebook has image outputs — a figure drawn but not rendered fails;
* every figure is readable: the file behind ``src`` exists (or the ``data:`` URI
  decodes), is at least ``MIN_BYTES`` large and ``MIN_SIDE`` pixels on each side, and is
  not blank (the standard deviation of its pixel values is at least ``MIN_STD``).

A "figure" is an ``<img>`` inside a ``div.cell_output``, where myst-nb (Jupyter Book
1.x) puts a cell's image output; badges and logos elsewhere on the page do not count.

Exit status: 0 when the site passes, 1 with one line per problem otherwise, 2 when the
build folder is missing.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import numpy as np
from bs4 import BeautifulSoup
from PIL import Image, UnidentifiedImageError

# Figures a chapter must show on the demo profile (the book's pages), as counted on a
# build of c1d8871 (2026-12-01): chapter 1 the pass pair and the synthetic labels;
# chapter 2 five (cube, layout, examples, histograms...); chapter 3 three; chapters 4
# and 5 at least one; chapter 6 Figures 2, 3 and A1; chapter 7 four (reliability,
# miscounts, the map overview with probability map, binary map and both heatmaps, and
# the density comparison). Chapters not listed need at least one. Raise a count when a
# chapter gains a figure; the check also wants every image the executed notebook drew.
MIN_FIGURES: dict[str, int] = {
    "01_data_acquisition": 2,
    "02_chipping": 5,
    "03_stage1_pretraining": 3,
    "04_stage2_segmentation": 1,
    "05_ablations": 1,
    "06_miscount_analysis": 3,
    "07_rapid_response_mapping": 4,
}
DEFAULT_MIN_FIGURES = 1
MIN_BYTES = (
    1024  # a PNG of a drawn figure is tens of kB; a blank one compresses to ~1 kB
)
MIN_SIDE = 32  # pixels
MIN_STD = 2.0  # standard deviation of 8-bit pixel values; a single colour gives 0
HIDDEN_TAGS = {"remove-output", "remove-cell"}  # Jupyter Book hides these outputs
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the built site."""

    page: str
    message: str

    def __str__(self) -> str:
        return f"{self.page}: {self.message}"


def figure_sources(html: str) -> list[str]:
    """``src`` of every ``<img>`` in a cell output of one HTML page, in page order."""
    soup = BeautifulSoup(html, "html.parser")
    return [
        img.get("src", "")
        for out in soup.select("div.cell_output")
        for img in out.find_all("img")
    ]


def read_source(src: str, page: Path) -> bytes:
    """The bytes behind ``<img src>``: a ``data:`` URI or a file relative to ``page``.

    Raises ``FileNotFoundError`` (missing file) or ``ValueError`` (undecodable URI,
    remote URL: the site must be self-contained).
    """
    if src.startswith("data:"):
        header, _, payload = src.partition(",")
        if ";base64" not in header:
            return unquote(payload).encode()
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error as err:
            raise ValueError(f"data URI is not valid base64 ({err})") from None
    url = urlparse(src)
    if url.scheme in ("http", "https"):
        raise ValueError(f"figure is a remote URL ({src}); the built site must hold it")
    path = (page.parent / unquote(url.path)).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"figure file missing: {src} (looked for {path})")
    return path.read_bytes()


def image_problem(data: bytes) -> str | None:
    """Why ``data`` is not a real figure, or ``None`` when it is.

    Raster images must be at least ``MIN_BYTES`` and ``MIN_SIDE``×``MIN_SIDE`` px with
    a pixel standard deviation of at least ``MIN_STD`` in some channel (0–255 scale,
    alpha composited on white). SVG must be at least ``MIN_BYTES`` and hold drawn paths.
    """
    if len(data) < MIN_BYTES:
        return f"only {len(data)} bytes (< {MIN_BYTES})"
    head = data[:512].lstrip()
    if head.startswith((b"<?xml", b"<svg")):
        ok = b"<path" in data or b"<image" in data or b"<use" in data
        return None if ok else "SVG without any drawn element"
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            rgba = img.convert("RGBA")
    except (UnidentifiedImageError, OSError) as err:
        return f"not a readable image ({err})"
    width, height = rgba.size
    if min(width, height) < MIN_SIDE:
        return f"{width}×{height} px (< {MIN_SIDE} px a side)"
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    pixels = np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=float)
    std = float(
        pixels.reshape(-1, 3).std(axis=0).max()
    )  # per channel: a colour is blank too
    if std < MIN_STD:
        return f"blank image: pixel standard deviation {std:.2f} (< {MIN_STD})"
    return None


def notebook_image_outputs(path: Path) -> int:
    """Number of image outputs (one per figure) an executed notebook puts on its page.

    Outputs of cells tagged ``remove-output`` or ``remove-cell`` are not shown, so not
    counted.
    """
    nb = nbformat.read(path, as_version=4)
    count = 0
    for cell in nb.cells:
        if HIDDEN_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if any(mime in data for mime in IMAGE_MIMES):
                count += 1
    return count


def check_page(
    page: Path, minimum: int, executed: Path | None = None
) -> tuple[int, list[Problem]]:
    """The number of good figures on one chapter page and its problems."""
    name = page.name
    sources = figure_sources(page.read_text(encoding="utf-8"))
    problems: list[Problem] = []
    good = 0
    for k, src in enumerate(sources, start=1):
        label = src if not src.startswith("data:") else f"{src[:30]}…"
        try:
            why = image_problem(read_source(src, page))
        except (FileNotFoundError, ValueError) as err:
            why = str(err)
        if why is None:
            good += 1
        else:
            problems.append(Problem(name, f"figure {k} ({label}): {why}"))
    if len(sources) < minimum:
        problems.append(
            Problem(
                name,
                f"{len(sources)} figure(s) on the page, expected at least {minimum}",
            )
        )
    if executed is not None and executed.exists():
        drawn = notebook_image_outputs(executed)
        if drawn != len(sources):
            problems.append(
                Problem(
                    name,
                    f"the executed notebook has {drawn} image output(s), "
                    f"the page shows {len(sources)}",
                )
            )
    return good, problems


def check_site(
    build_dir: str | Path, min_figures: dict[str, int] | None = None
) -> tuple[dict[str, int], list[Problem]]:
    """Check every chapter page of a built book.

    Parameters
    ----------
    build_dir
        Jupyter Book's output folder (``_build``): pages in ``html/notebooks/*.html``,
        executed notebooks (when kept) in ``jupyter_execute/notebooks/*.ipynb``.
    min_figures
        Least number of figures per chapter (page stem → count); default
        ``MIN_FIGURES``, ``DEFAULT_MIN_FIGURES`` for chapters not listed.

    Returns
    -------
    (figures, problems)
        Good figures per page name, and every problem found (empty: the site passes).
        A chapter listed in ``min_figures`` without a page is a problem too.
    """
    build = Path(build_dir)
    pages_dir = build / "html" / "notebooks"
    if not pages_dir.is_dir():
        raise FileNotFoundError(
            f"no chapter pages in {pages_dir}: build the book first (make book)"
        )
    minimum = MIN_FIGURES if min_figures is None else min_figures
    figures: dict[str, int] = {}
    problems: list[Problem] = []
    pages = sorted(pages_dir.glob("*.html"))
    for page in pages:
        executed = build / "jupyter_execute" / "notebooks" / f"{page.stem}.ipynb"
        good, found = check_page(
            page, minimum.get(page.stem, DEFAULT_MIN_FIGURES), executed
        )
        figures[page.name] = good
        problems.extend(found)
    for stem in sorted(set(minimum) - {p.stem for p in pages}):
        problems.append(
            Problem(f"{stem}.html", "chapter page missing from the built site")
        )
    return figures, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "build_dir", nargs="?", default="_build", help="Jupyter Book output"
    )
    args = parser.parse_args(argv)
    try:
        figures, problems = check_site(args.build_dir)
    except FileNotFoundError as err:
        print(f"check_site: {err}", file=sys.stderr)
        return 2
    for name, n in figures.items():
        print(f"{name:40s} {n} figure(s)")
    for problem in problems:
        print(f"FAIL {problem}")
    print(
        f"{len(figures)} chapter page(s), {sum(figures.values())} figures, "
        f"{len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
