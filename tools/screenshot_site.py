#!/usr/bin/env python
"""Open every chapter page of the built book in headless Chromium; one screenshot each.

Usage (``make site-check``)::

    python tools/screenshot_site.py [_build] [--height 8000] [--width 1280]

Writes ``<build>/screenshots/<chapter>.png`` (the top ``--height`` pixels of each page
as a reader sees it) and checks each screenshot is not blank. Needs Debian's
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
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
