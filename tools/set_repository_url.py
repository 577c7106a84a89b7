#!/usr/bin/env python
"""Write the repository URL from ``_config.yml`` into the notebooks and README badges.

The one setting is ``repository.url`` (and ``repository.branch``) in ``_config.yml``;
Jupyter Book's repository and Colab buttons read it directly. This script rewrites its
two copies: each notebook's install cell (the first code cell,
``%pip install "sarslide @ git+<url>"``) and the README's "Open in Colab" badge links.
``tests/test_book_config.py`` checks that they agree.

Usage::

    python tools/set_repository_url.py          # rewrite notebooks/*.ipynb, README.md
    python tools/set_repository_url.py --check  # report only; exit 1 if any differs

A notebook is rewritten only when its install cell changes (read, modify, write at
once; cell ids and outputs kept).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
GITHUB = re.compile(r"^https://github\.com/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+?)/?$")
# The package spec inside the install cell: sarslide @ git+<anything up to the quote>
INSTALL = re.compile(r"sarslide @ git\+(?P<url>[^\"'\s]+)")
BADGE = re.compile(
    r"https://colab\.research\.google\.com/github/(?P<slug>[\w.-]+/[\w.-]+)/blob/"
    r"(?P<branch>[\w./-]+?)/(?P<path>notebooks/[\w.-]+\.ipynb)"
)


def repository(root: Path = ROOT) -> tuple[str, str]:
    """``(url, branch)`` from ``_config.yml``; the URL must be a GitHub repository.

    Raises ``ValueError`` naming the bad value.
    """
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    repo = config.get("repository") or {}
    url, branch = repo.get("url", ""), repo.get("branch", "main")
    if not GITHUB.match(url or ""):
        raise ValueError(
            f"_config.yml repository.url must look like https://github.com/OWNER/NAME, "
            f"got {url!r}"
        )
    return url.rstrip("/"), branch


def colab_url(url: str, branch: str, notebook: str) -> str:
    """The Colab link of ``notebook`` (a repository path: ``notebooks/02_x.ipynb``)."""
    m = GITHUB.match(url)
    return (
        f"https://colab.research.google.com/github/{m['owner']}/{m['repo']}"
        f"/blob/{branch}/{notebook}"
    )


def install_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook's first code cell, which must install sarslide from git."""
    cell = next((c for c in nb.cells if c.cell_type == "code"), None)
    if cell is None or not INSTALL.search(cell.source):
        raise ValueError(
            "the first code cell does not install sarslide "
            '(expected %pip install "sarslide @ git+<url>")'
        )
    return cell


def installed_url(nb: nbformat.NotebookNode) -> str:
    """The git URL the install cell installs from (without ``git+``)."""
    return INSTALL.search(install_cell(nb).source)["url"]


def rewrite_notebook(path: Path, url: str, check: bool = False) -> bool:
    """Point the install cell of one notebook at ``url``; whether it changed."""
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    cell = install_cell(nb)
    new = INSTALL.sub(f"sarslide @ git+{url}", cell.source)
    if new == cell.source:
        return False
    if not check:
        cell.source = new
        nbformat.write(nb, path)
    return True


def rewrite_readme(path: Path, url: str, branch: str, check: bool = False) -> bool:
    """Point the README's Colab badges at ``url``/``branch``; whether it changed."""
    text = path.read_text(encoding="utf-8")
    new = BADGE.sub(lambda m: colab_url(url, branch, m["path"]), text)
    if new == text:
        return False
    if not check:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="report only, change nothing"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    try:
        url, branch = repository(args.root)
        changed = [
            p.name
            for p in sorted((args.root / "notebooks").glob("*.ipynb"))
            if rewrite_notebook(p, url, args.check)
        ]
    except ValueError as err:
        print(f"set_repository_url: {err}", file=sys.stderr)
        return 2
    if rewrite_readme(args.root / "README.md", url, branch, args.check):
        changed.append("README.md")
    verb = "differ from" if args.check else "now use"
    names = ", ".join(changed) or "-"
    print(f"{len(changed)} file(s) {verb} {url} (branch {branch}): {names}")
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
