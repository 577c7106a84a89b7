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

It also checks, statically (no browser), that every page reads on a 1280 px laptop
screen, with the layout the book's stylesheet sets (``_static/sarslide.css``,
read from the build or the checkout; :class:`Layout`):

* **no code block overflows**: the longest line of every code cell (and of every code
  block in the prose) fits the content column at ``WINDOW_PX`` in the stylesheet's code
  font (``CHAR_EM`` em per character);
* **every figure is legible**: a raster figure is shown at its natural width or the
  column's, whichever is smaller, so its ``FIGURE_FONT_PT`` pt text (matplotlib's
  default size, at the PNG's recorded dpi) renders at ``shown / natural × pt × dpi /
  72`` CSS px, which must be at least ``MIN_TEXT_PX``.

``make site-check`` measures the same two things in headless Chromium
(``tools/screenshot_site.py``).

Exit status: 0 when the site passes, 1 with one line per problem otherwise, 2 when the
build folder is missing.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import math
import re
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
# A laptop screen: the window width the pages must read at, the advance width
# of a monospace character in em (DejaVu Sans Mono, the theme's fallback: 0.602), the
# nominal size of a figure's text (matplotlib's default font.size, tick and axis labels)
# and the smallest CSS px size at which that text counts as legible (the issue's
# illegible figures rendered it at 4-6 px).
WINDOW_PX = 1280
CHAR_EM = 0.61
FIGURE_FONT_PT = 10.0
MIN_TEXT_PX = 8.0
DEFAULT_DPI = 100.0  # matplotlib's figure.dpi, for PNGs that record none
STYLESHEET = "sarslide.css"
REPO_STYLESHEET = Path(__file__).resolve().parents[1] / "_static" / STYLESHEET
HIDDEN_TAGS = {"remove-output", "remove-cell"}  # Jupyter Book hides these outputs
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the built site."""

    page: str
    message: str

    def __str__(self) -> str:
        return f"{self.page}: {self.message}"


@dataclass(frozen=True)
class Layout:
    """The book's page layout at one window width, from the stylesheet's custom
    properties.

    All in CSS px: the window, the chapter sidebar (left), the page-sections sidebar
    (right; counted as always shown, the narrower case), the article's gutters and the
    code font size and padding.
    """

    window: float
    primary_sidebar: float
    secondary_sidebar: float
    gutters: float
    code_font: float
    code_padding: float

    @property
    def column(self) -> float:
        """Width of the content column: what a figure or a code block may take."""
        return (
            self.window - self.primary_sidebar - self.secondary_sidebar - self.gutters
        )

    @property
    def code_columns(self) -> int:
        """Characters of code that fit one line of the column without scrolling."""
        return math.floor(
            (self.column - self.code_padding) / (CHAR_EM * self.code_font)
        )


_LAYOUT_PROPERTIES = {
    "primary_sidebar": "--sarslide-primary-sidebar",
    "secondary_sidebar": "--sarslide-secondary-sidebar",
    "gutters": "--sarslide-content-gutters",
    "code_font": "--sarslide-code-font-size",
    "code_padding": "--sarslide-code-padding",
}


def read_layout(css: str, window: float = WINDOW_PX) -> Layout:
    """The :class:`Layout` a stylesheet sets (``--sarslide-*: <n>px`` properties).

    Raises ``ValueError`` naming a missing property (the stylesheet and this check must
    agree on the layout's numbers).
    """
    values = {}
    for field, prop in _LAYOUT_PROPERTIES.items():
        found = re.search(re.escape(prop) + r"\s*:\s*([\d.]+)px", css)
        if found is None:
            raise ValueError(
                f"the stylesheet sets no {prop}: <n>px; the laptop check needs it"
            )
        values[field] = float(found.group(1))
    return Layout(window=float(window), **values)


def find_stylesheet(build: Path) -> Path:
    """The built site's copy of the book's stylesheet, else the checkout's."""
    built = build / "html" / "_static" / STYLESHEET
    return built if built.is_file() else REPO_STYLESHEET


def code_blocks(html: str) -> list[str]:
    """The text of every code block a reader sees: code cells and prose code blocks
    (``div.highlight pre`` not inside a cell's output), in page order."""
    soup = BeautifulSoup(html, "html.parser")
    return [
        pre.get_text()
        for pre in soup.select("div.cell_input pre, div.highlight pre")
        if not pre.find_parent("div", class_="cell_output")
    ]


def overflow_problems(page: str, html: str, layout: Layout) -> list[Problem]:
    """A problem per code block whose longest line is wider than the column."""
    problems = []
    for k, text in enumerate(dict.fromkeys(code_blocks(html)), start=1):
        lines = text.expandtabs(4).splitlines() or [""]
        longest = max(lines, key=len)
        if len(longest) > layout.code_columns:
            problems.append(
                Problem(
                    page,
                    (
                        f"code block {k} overflows at {layout.window:.0f} px: a line "
                        f"of {len(longest)} characters, the column fits "
                        f"{layout.code_columns} ({longest.strip()[:50]!r}…)"
                    ),
                )
            )
    return problems


def figure_text_px(data: bytes, layout: Layout) -> tuple[float, int, float] | None:
    """(rendered text size in CSS px, natural width px, dpi) of a raster figure, or None
    for SVG and unreadable images (vector text scales with the figure: not checked)."""
    head = data[:512].lstrip()
    if head.startswith((b"<?xml", b"<svg")):
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            width = img.size[0]
            dpi = (
                round(float((img.info.get("dpi") or (DEFAULT_DPI,))[0]), 1)
                or DEFAULT_DPI
            )
    except (UnidentifiedImageError, OSError):
        return None
    shown = min(width, layout.column)
    return FIGURE_FONT_PT * dpi / 72.0 * shown / width, width, dpi


def legibility_problem(data: bytes, layout: Layout) -> str | None:
    """Why a figure's text is too small at the layout's window, or None."""
    measured = figure_text_px(data, layout)
    if measured is None:
        return None
    text_px, width, dpi = measured
    if text_px >= MIN_TEXT_PX:
        return None
    widest = layout.column * FIGURE_FONT_PT * dpi / 72.0 / MIN_TEXT_PX / dpi
    return (
        f"illegible at {layout.window:.0f} px: {width} px wide at {dpi:.0f} dpi, shown "
        f"{layout.column:.0f} px wide, so {FIGURE_FONT_PT:.0f} pt text renders at "
        f"{text_px:.1f} px (< {MIN_TEXT_PX:.0f}); draw it at most {widest:.1f} in wide "
        "or in more rows"
    )


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
    page: Path, minimum: int, executed: Path | None = None, layout: Layout | None = None
) -> tuple[int, list[Problem]]:
    """The number of good figures on one chapter page and its problems.

    With a ``layout``, code blocks must fit its column and figures be legible in it.
    """
    name = page.name
    html = page.read_text(encoding="utf-8")
    sources = figure_sources(html)
    problems: list[Problem] = (
        [] if layout is None else overflow_problems(name, html, layout)
    )
    good = 0
    for k, src in enumerate(sources, start=1):
        label = src if not src.startswith("data:") else f"{src[:30]}…"
        try:
            data = read_source(src, page)
            why = image_problem(data)
            if why is None and layout is not None:
                why = legibility_problem(data, layout)
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

    The layout at :data:`WINDOW_PX` comes from the built stylesheet
    (:func:`find_stylesheet`, :func:`read_layout`).

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
    layout = read_layout(find_stylesheet(build).read_text(encoding="utf-8"))
    figures: dict[str, int] = {}
    problems: list[Problem] = []
    pages = sorted(pages_dir.glob("*.html"))
    for page in pages:
        executed = build / "jupyter_execute" / "notebooks" / f"{page.stem}.ipynb"
        good, found = check_page(
            page, minimum.get(page.stem, DEFAULT_MIN_FIGURES), executed, layout
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
