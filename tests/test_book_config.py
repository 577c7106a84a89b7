"""The book's chrome and build settings agree with each other.

* One repository URL (``_config.yml`` ``repository.url``) is used by the README's Colab
  badges and every notebook's install cell (rewrite them:
  ``tools/set_repository_url.py``).
* The landing page describes the book as it is; the table of contents lists every
  chapter.
* No matplotlib backend override reaches the notebook kernels (figures must reach the
  pages); the tests stay off-screen on their own.
* Tests read only files inside the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import load_tool

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


urltool = load_tool("set_repository_url")


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def test_repository_url_is_one_github_setting():
    url, branch = urltool.repository(ROOT)
    assert url == config()["repository"]["url"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url)
    assert branch == config()["repository"]["branch"]
    # Jupyter Book builds its repository and Colab buttons from that setting alone.
    assert config()["html"]["use_repository_button"] is True
    assert "colab_url" in config()["launch_buttons"]


def test_notebook_install_cells_use_the_setting():
    url, _ = urltool.repository(ROOT)
    assert len(NOTEBOOKS) >= 7
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert "%pip install" in first.source, path.name
        assert urltool.installed_url(nb) == url, (
            f"{path.name} installs from {urltool.installed_url(nb)}, _config.yml says "
            f"{url}: run python tools/set_repository_url.py"
        )
        # the install is skipped where sarslide is already importable (a no-op off
        # Colab)
        assert 'find_spec("sarslide") is None' in first.source, path.name


def test_readme_badges_use_the_setting_and_cover_every_chapter():
    url, branch = urltool.repository(ROOT)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = [m.group(0) for m in urltool.BADGE.finditer(readme)]
    expected = [
        urltool.colab_url(url, branch, f"notebooks/{p.name}") for p in NOTEBOOKS
    ]
    assert sorted(set(links)) == sorted(expected), (
        "README Colab badges differ from _config.yml: run python "
        "tools/set_repository_url.py"
    )
    # Every other Colab link in the README is one of those badges.
    assert len(re.findall(r"colab\.research\.google\.com/github/", readme)) == len(
        links
    )


def test_check_mode_reports_a_differing_url(tmp_path):
    """The rewriting tool finds and fixes a notebook and README that point elsewhere."""
    import shutil

    for name in ("_config.yml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(
        ROOT / "notebooks",
        tmp_path / "notebooks",
        ignore=shutil.ignore_patterns(".ipynb_checkpoints"),
    )
    cfg = (tmp_path / "_config.yml").read_text()
    url, _ = urltool.repository(ROOT)
    (tmp_path / "_config.yml").write_text(
        cfg.replace(url, "https://github.com/someone/fork")
    )
    assert urltool.main(["--root", str(tmp_path), "--check"]) == 1
    assert urltool.main(["--root", str(tmp_path)]) == 0
    assert urltool.main(["--root", str(tmp_path), "--check"]) == 0
    nb = nbformat.read(tmp_path / "notebooks" / NOTEBOOKS[0].name, as_version=4)
    assert urltool.installed_url(nb) == "https://github.com/someone/fork"
    original = nbformat.read(NOTEBOOKS[0], as_version=4)
    assert [c.get("id") for c in nb.cells] == [c.get("id") for c in original.cells]
    assert (
        "colab.research.google.com/github/someone/fork/blob/"
        in (tmp_path / "README.md").read_text()
    )


def test_bad_repository_url_is_named(tmp_path):
    (tmp_path / "_config.yml").write_text(
        "repository:\n  url: git@github.com:a/b.git\n"
    )
    with pytest.raises(ValueError, match="git@github.com:a/b.git"):
        urltool.repository(tmp_path)


def test_landing_page_and_toc_describe_the_book_as_it_is():
    intro = (ROOT / "intro.md").read_text(encoding="utf-8")
    assert "Only chapters whose code exists" not in intro
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = {c["file"] for part in toc["parts"] for c in part["chapters"]}
    # every notebook is a chapter (other pages, e.g. markdown notes, may be listed too)
    assert {f for f in listed if f.startswith("notebooks/")} == {
        f"notebooks/{p.stem}" for p in NOTEBOOKS
    }
    # the landing page links every chapter by its number, says where to start (Colab or
    # local) and links the Colab page; the sidebar numbers the chapters
    for k, nb in enumerate(sorted(NOTEBOOKS), start=1):
        assert f"[{k} · " in intro and f"](notebooks/{nb.name})" in intro, nb.name
    assert (
        "## Where to start" in intro and "](colab.md)" in intro and "make demo" in intro
    )
    assert toc["defaults"]["numbered"] is True
    unnumbered = [part for part in toc["parts"] if part.get("numbered") is False]
    assert all(
        not c["file"].startswith("notebooks/")
        for part in unnumbered
        for c in part["chapters"]
    )


def test_no_matplotlib_backend_reaches_the_notebook_kernels():
    """``MPLBACKEND=Agg`` in the Makefile would hide every figure from the book."""
    makefile = (ROOT / "Makefile").read_text()
    assert not re.search(r"^\s*(export\s+)?MPLBACKEND\s*[?:]?=", makefile, re.M)
    assert re.search(r"^unexport MPLBACKEND\b", makefile, re.M)
    assert "MPLBACKEND" not in (ROOT / ".ci" / "run").read_text()
    assert "MPLBACKEND" not in (ROOT / "_config.yml").read_text()
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                assert not re.search(
                    r"matplotlib\.use\(|MPLBACKEND|%matplotlib (?!inline)", cell.source
                ), path.name


def test_tests_stay_off_screen():
    """The package tests draw with Agg, set inside the pytest run
    (tests/conftest.py)."""
    import matplotlib

    assert matplotlib.get_backend().lower() == "agg"


def test_ci_runs_exactly_make_test():
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    commands = [line for line in lines if not line.startswith(("set ", "cd "))]
    assert commands == ["make test"]


def test_tests_read_only_files_inside_the_repository():
    """No test reaches for ``../shared`` (a user's clone has none): fixtures live in
    tests/data."""
    outside = re.compile(r"parents\[\d\]\s*/\s*[\"']shared[\"']|/work/" + "shared")
    for path in sorted((ROOT / "tests").rglob("*.py")):
        assert not outside.search(path.read_text(encoding="utf-8")), path.name
    readme = ROOT / "tests" / "data" / "README.md"
    assert "Apache-2.0" in readme.read_text() and "MIT" in readme.read_text()
    for folder in ("opera_rtc_s1", "kaikoura_2016_points"):
        assert (ROOT / "tests" / "data" / folder / "LICENSE").is_file()
    assert len(list((ROOT / "tests" / "data" / "opera_rtc_s1").glob("*.tif"))) == 6


def test_line_length_check_counts_every_code_line(tmp_path):
    """88 characters pass, 89 fail — also a comment ending in a URL, which ruff's E501
    skips."""
    lines = load_tool("check_line_length")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "x" * 200
        ),  # prose is wrapped by the page, not checked
        nbformat.v4.new_code_cell("a = 1  # " + "y" * 79),  # 88
        nbformat.v4.new_code_cell(
            "b = 2\n# see " + "z" * 61 + " https://example.org/p"
        ),
    ]
    assert len(nb.cells[1].source) == 88
    nbformat.write(nb, tmp_path / "nb.ipynb")
    found = list(lines.long_lines(tmp_path / "nb.ipynb"))
    assert [(h.cell, h.line, h.length) for h in found] == [(2, 2, 89)]
    assert lines.main([str(tmp_path)]) == 1
    assert lines.main(["--max", "100", str(tmp_path)]) == 0
    with pytest.raises(SystemExit):
        lines.main([str(tmp_path / "missing")])


def test_line_length_check_reads_python_files_whole(tmp_path):
    """In a ``.py`` file docstrings and comments count too; folders are searched and
    virtual environments skipped."""
    lines = load_tool("check_line_length")
    package = tmp_path / "pkg"
    package.mkdir()
    docstring = '"""' + "d" * 83 + '"""'  # 89 characters
    (package / "mod.py").write_text("x = 1  # " + "c" * 79 + "\n" + docstring + "\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "long.py").write_text("y" * 200 + "\n")
    found = list(lines.long_lines(package / "mod.py"))
    assert [(h.cell, h.line, h.length) for h in found] == [(0, 2, 89)]
    assert lines.main([str(tmp_path)]) == 1
    assert lines.main(["--max", "89", str(tmp_path)]) == 0
