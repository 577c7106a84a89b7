#!/usr/bin/env python
"""Open every chapter page of the built book in headless Chromium; one screenshot each.

Usage (``make site-check``)::

    python tools/screenshot_site.py [_build] [--height 8000] [--width 1280]

Writes ``<build>/screenshots/<chapter>.png`` (the top ``--height`` pixels of each page
as a reader sees it) and checks each screenshot is not blank. Then it **measures** each
page at ``--width`` (default 1280 px, a laptop) in the browser: a code block
whose ``scrollWidth`` exceeds its ``clientWidth`` scrolls sideways, and a figure shown
at ``w`` CSS px of its ``n`` natural px renders its ``FIGURE_FONT_PT`` text at ``w / n ×
pt × dpi / 72`` px (dpi from the image), which must reach ``MIN_TEXT_PX`` — the same two
rules ``tools/check_site.py`` checks statically in ``make test``. Needs Debian's
``chromium`` (``sudo apt-get install chromium``) or any Chromium/Chrome on ``PATH``
(``$CHROMIUM`` names one explicitly); it never installs anything itself.

Exit status: 0 on success, 1 when a page could not be rendered, 2 when Chromium or the
built site is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_site  # noqa: E402  (the static rules and thresholds, shared)

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Work as root in a container, with no network, GPU or desktop session.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
TIMEOUT_S = 120
# Injected into a throw-away copy of a page: measures code blocks and figures after
# layout and writes the numbers, as JSON, into the DOM that --dump-dom prints.
_MEASURE_JS = """<script>(function () {
  var out = {code: [], figures: []};
  var code = "div.cell_input pre, div.highlight pre";
  document.querySelectorAll(code).forEach(function (p) {
    if (p.closest("div.cell_output")) return;
    out.code.push([p.scrollWidth, p.clientWidth, p.textContent.slice(0, 60)]);
  });
  document.querySelectorAll("div.cell_output img").forEach(function (i) {
    var shown = i.getBoundingClientRect().width;
    out.figures.push([i.getAttribute("src"), i.naturalWidth, shown]);
  });
  var d = document.createElement("pre"); d.id = "sarslide-measure";
  d.textContent = JSON.stringify(out); document.body.appendChild(d);
})();</script>"""


def find_browser() -> str | None:
    """A Chromium-like browser: ``$CHROMIUM``, else the first of ``BROWSERS`` found."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return shutil.which(explicit)
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def screenshot(browser: str, page: Path, out: Path, width: int, height: int) -> None:
    """Render ``page`` (an HTML file) to ``out`` (PNG, ``width``×``height`` px).

    Uses a fresh, throw-away profile folder. Raises ``RuntimeError`` with Chromium's
    output when no screenshot was written.
    """
    with tempfile.TemporaryDirectory(prefix="sarslide-chromium-") as profile:
        tmp = out.with_name(f".{out.name}.tmp.png")
        cmd = [
            browser,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={tmp}",
            f"--window-size={width},{height}",
            page.resolve().as_uri(),
        ]
        run = subprocess.run(
            cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
        if not tmp.exists():
            raise RuntimeError(
                f"chromium wrote no screenshot of {page} (exit {run.returncode}):\n"
                f"{run.stderr[-2000:]}"
            )
        tmp.replace(out)  # atomic: a screenshot appears only when complete


def measure(browser: str, page: Path, width: int) -> dict:
    """Code-block widths and figure sizes of ``page`` as Chromium lays it out at
    ``width``.

    Returns ``{"code": [[scrollWidth, clientWidth, text], ...], "figures": [[src,
    naturalWidth, shownWidth], ...]}``. The page is copied next to itself with the
    measuring script (so its relative links resolve), rendered with ``--dump-dom`` and
    the copy removed.
    """
    import json
    import re

    copy = page.with_name(f".measure-{page.name}")
    copy.write_text(
        page.read_text(encoding="utf-8").replace("</body>", _MEASURE_JS + "</body>"),
        encoding="utf-8",
    )
    try:
        with tempfile.TemporaryDirectory(prefix="sarslide-chromium-") as profile:
            cmd = [
                browser,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},900",
                "--virtual-time-budget=10000",
                "--dump-dom",
                copy.resolve().as_uri(),
            ]
            run = subprocess.run(
                cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
            )
    finally:
        copy.unlink(missing_ok=True)
    found = re.search(r'id="sarslide-measure"[^>]*>([^<]*)</pre>', run.stdout)
    if found is None:
        raise RuntimeError(
            f"chromium returned no measurement of {page} (exit {run.returncode})"
        )
    import html as html_module

    return json.loads(html_module.unescape(found.group(1)))


def measured_problems(page: Path, numbers: dict, width: int) -> list[str]:
    """The overflowing code blocks and illegible figures in one page's measurement."""
    problems = []
    for k, (scroll, client, text) in enumerate(numbers["code"], start=1):
        if scroll > client + 1:
            problems.append(
                f"code block {k} scrolls sideways at {width} px ({scroll} > {client} "
                f"px: {text[:40]!r}…)"
            )
    for k, (src, natural, shown) in enumerate(numbers["figures"], start=1):
        try:
            data = check_site.read_source(src, page)
        except (FileNotFoundError, ValueError):
            continue  # check_site reports missing figures
        measured = check_site.figure_text_px(
            data, check_site.Layout(width, 0, 0, 0, 1, 0)
        )
        if measured is None or not natural:
            continue
        text_px = check_site.FIGURE_FONT_PT * measured[2] / 72.0 * shown / natural
        if text_px < check_site.MIN_TEXT_PX:
            problems.append(
                f"figure {k} shown at {shown:.0f} of {natural} px: its text renders at "
                f"{text_px:.1f} px (< {check_site.MIN_TEXT_PX:.0f})"
            )
    return problems


def is_blank(png: Path) -> bool:
    """Whether a screenshot is a single colour (the page did not render)."""
    with Image.open(png) as img:
        pixels = np.asarray(img.convert("RGB"), dtype=float)
    return float(pixels.reshape(-1, 3).std(axis=0).max()) < 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "build_dir", nargs="?", default="_build", help="Jupyter Book output"
    )
    parser.add_argument("--width", type=int, default=1280, help="window width, px")
    parser.add_argument("--height", type=int, default=8000, help="window height, px")
    args = parser.parse_args(argv)
    if args.width < 100 or args.height < 100:
        parser.error(
            f"--width/--height must be at least 100 px, got {args.width}×{args.height}"
        )
    pages = sorted((Path(args.build_dir) / "html" / "notebooks").glob("*.html"))
    if not pages:
        print(
            f"screenshot_site: no chapter pages in {args.build_dir}/html/notebooks: "
            "build the book first (make book)",
            file=sys.stderr,
        )
        return 2
    browser = find_browser()
    if browser is None:
        print(
            "screenshot_site: Chromium not found. Install it (Debian/Ubuntu: "
            "sudo apt-get install chromium) or set CHROMIUM=/path/to/chrome; "
            "nothing was installed.",
            file=sys.stderr,
        )
        return 2
    out_dir = Path(args.build_dir) / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for page in pages:
        out = out_dir / f"{page.stem}.png"
        try:
            screenshot(browser, page, out, args.width, args.height)
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            print(f"FAIL {page.name}: {err}")
            failed += 1
            continue
        if is_blank(out):
            print(f"FAIL {page.name}: the screenshot {out} is blank")
            failed += 1
        else:
            print(f"{page.name:40s} -> {out}")
    print(f"{len(pages) - failed}/{len(pages)} chapter pages rendered by {browser}")
    illegible = 0
    for page in pages:
        try:
            problems = measured_problems(
                page, measure(browser, page, args.width), args.width
            )
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as err:
            problems = [str(err)]
        for problem in problems:
            print(f"FAIL {page.name}: {problem}")
        illegible += len(problems)
    print(
        f"{illegible} overflowing code block(s) or illegible figure(s) at {args.width} "
        "px"
    )
    return 1 if failed or illegible else 0


if __name__ == "__main__":
    sys.exit(main())
