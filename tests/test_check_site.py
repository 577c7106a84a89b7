"""The built-site checker (tools/check_site.py) on tiny fake Jupyter Book builds.

The fake pages copy the markup myst-nb 1.x writes for a cell's image output
(``<div class="cell_output docutils container"><img src="../_images/<hash>.png">``),
checked against a real ``jupyter-book build`` of a one-cell notebook.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import load_tool  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


check_site = load_tool("check_site")


def figure_png() -> bytes:
    """A real matplotlib figure as PNG bytes."""
    fig, ax = plt.subplots(figsize=(3, 2), dpi=80)
    ax.plot(np.arange(10), np.arange(10) ** 2)
    ax.set_title("a figure")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def blank_png(color=(255, 255, 255), size=(400, 300)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def page_html(*srcs: str, badge: bool = True) -> str:
    outputs = "\n".join(
        '<div class="cell docutils container"><div class="cell_output docutils '
        f'container"><img alt="{s[:20]}" src="{s}" /></div></div>'
        for s in srcs
    )
    header = (
        '<a href="https://colab.research.google.com/x"><img '
        'src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In '
        'Colab"/></a>'
        if badge
        else ""
    )
    return f"<html><body><article>{header}<p>text</p>{outputs}</article></body></html>"


def fake_build(tmp_path: Path, pages: dict[str, list[bytes | str]]) -> Path:
    """``_build/html/notebooks/<stem>.html`` with figures in ``_build/html/_images``.

    A ``bytes`` entry becomes an image file; a ``str`` entry is used as ``src``
    verbatim.
    """
    build = tmp_path / "_build"
    images = build / "html" / "_images"
    images.mkdir(parents=True)
    (build / "html" / "notebooks").mkdir()
    for stem, figs in pages.items():
        srcs = []
        for k, fig in enumerate(figs):
            if isinstance(fig, bytes):
                (images / f"{stem}_{k}.png").write_bytes(fig)
                srcs.append(f"../_images/{stem}_{k}.png")
            else:
                srcs.append(fig)
        (build / "html" / "notebooks" / f"{stem}.html").write_text(page_html(*srcs))
    return build


def test_pages_with_figures_pass(tmp_path):
    png = figure_png()
    data_uri = "data:image/png;base64," + base64.b64encode(png).decode()
    build = fake_build(tmp_path, {"01_a": [png], "02_b": [png, data_uri, png]})
    figures, problems = check_site.check_site(build, {"01_a": 1, "02_b": 3})
    assert problems == []
    assert figures == {"01_a.html": 1, "02_b.html": 3}
    assert (
        check_site.main([str(build)]) == 1
    )  # default minima: the real chapters are missing


def test_page_without_figures_fails(tmp_path):
    build = fake_build(tmp_path, {"01_a": [figure_png()], "06_c": []})
    figures, problems = check_site.check_site(build, {"01_a": 1, "06_c": 3})
    assert (
        figures["06_c.html"] == 0
    )  # the Colab badge outside the cell outputs is no figure
    assert [p.page for p in problems] == ["06_c.html"]
    assert "0 figure(s) on the page, expected at least 3" in problems[0].message
    # chapters not listed still need one figure
    _, problems = check_site.check_site(build, {})
    assert [p.page for p in problems] == ["06_c.html"]


def test_too_few_figures_fails(tmp_path):
    build = fake_build(tmp_path, {"07_d": [figure_png()] * 3})
    _, problems = check_site.check_site(build, {"07_d": 4})
    assert len(problems) == 1 and "expected at least 4" in problems[0].message


@pytest.mark.parametrize(
    "bad, reason",
    [
        (blank_png(), "blank image"),
        (blank_png((40, 90, 200), (2000, 1500)), "blank image"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "not a readable image"),
        (blank_png(size=(10, 10)), "bytes"),
    ],
    ids=["white", "single-colour", "corrupt", "tiny"],
)
def test_bad_figure_fails(tmp_path, bad, reason):
    build = fake_build(tmp_path, {"01_a": [figure_png(), bad]})
    figures, problems = check_site.check_site(build, {"01_a": 2})
    assert figures == {"01_a.html": 1}
    assert len(problems) == 1 and "figure 2" in problems[0].message
    assert reason in problems[0].message


def test_blank_png_is_really_blank_and_figure_is_not():
    assert check_site.image_problem(figure_png()) is None
    big_blank = blank_png(size=(3000, 2000))
    assert len(big_blank) > 10 * check_site.MIN_BYTES  # its size alone does not pass it
    assert "blank image" in check_site.image_problem(big_blank)
    # a transparent image over the white page is blank too
    buf = io.BytesIO()
    Image.new("RGBA", (500, 400), (0, 0, 0, 0)).save(buf, format="PNG")
    assert check_site.image_problem(buf.getvalue() + b"\0" * 2048) is not None


def test_missing_file_remote_and_bad_data_uri_fail(tmp_path):
    build = fake_build(
        tmp_path,
        {
            "01_a": [
                "../_images/nowhere.png",
                "https://example.org/x.png",
                "data:image/png;base64,@@",
            ]
        },
    )
    _, problems = check_site.check_site(build, {"01_a": 3})
    messages = " | ".join(p.message for p in problems)
    assert "figure file missing" in messages
    assert "remote URL" in messages
    assert "not valid base64" in messages
    assert len(problems) == 3


def test_drawn_but_not_rendered_fails(tmp_path):
    """The page must show as many figures as its executed notebook has image outputs."""
    png = figure_png()
    build = fake_build(tmp_path, {"02_b": [png]})
    nb = nbformat.v4.new_notebook()
    cells = []
    for _ in range(2):
        cell = nbformat.v4.new_code_cell("plot()")
        cell.outputs = [
            nbformat.v4.new_output(
                "display_data",
                data={
                    "image/png": base64.b64encode(png).decode(),
                    "text/plain": "<Figure>",
                },
            )
        ]
        cells.append(cell)
    hidden = nbformat.v4.new_code_cell("plot()", metadata={"tags": ["remove-output"]})
    hidden.outputs = list(cells[0].outputs)  # not on the page, so not counted
    nb.cells = [nbformat.v4.new_code_cell("print(1)"), *cells, hidden]
    executed = build / "jupyter_execute" / "notebooks"
    executed.mkdir(parents=True)
    nbformat.write(nb, executed / "02_b.ipynb")
    assert check_site.notebook_image_outputs(executed / "02_b.ipynb") == 2
    _, problems = check_site.check_site(build, {"02_b": 1})
    assert len(problems) == 1
    assert "2 image output(s), the page shows 1" in problems[0].message


def test_missing_chapter_page_and_missing_build(tmp_path):
    build = fake_build(tmp_path, {"01_a": [figure_png()]})
    _, problems = check_site.check_site(build, {"01_a": 1, "05_e": 1})
    assert [str(p) for p in problems] == [
        "05_e.html: chapter page missing from the built site"
    ]
    with pytest.raises(FileNotFoundError, match="make book"):
        check_site.check_site(tmp_path / "nothing")
    assert check_site.main([str(tmp_path / "nothing")]) == 2


def test_minima_cover_every_chapter_of_the_toc():
    """Every chapter in _toc.yml has a minimum; chapters 6 and 7 the issue's counts."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    chapters = {Path(f).name for f in files if f.startswith("notebooks/")}
    assert chapters == set(check_site.MIN_FIGURES)
    assert check_site.MIN_FIGURES["06_miscount_analysis"] >= 3  # Figures 2, 3, A1
    assert check_site.MIN_FIGURES["07_rapid_response_mapping"] >= 4  # maps and heatmaps


# --- The laptop checks: code width and figure text at 1280 px, statically ---


def _wide_figure(width_in: float, dpi: int = 100) -> bytes:
    fig, ax = plt.subplots(figsize=(width_in, 3), dpi=dpi)
    ax.plot(np.arange(10), np.arange(10) ** 2)
    ax.set_title("a figure")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def test_layout_is_read_from_the_books_stylesheet():
    layout = check_site.read_layout(check_site.REPO_STYLESHEET.read_text())
    # 1280 px window − 240 chapter sidebar − 200 sections sidebar − 84 gutters
    assert layout.column == 1280 - 240 - 200 - 84
    # (756 − 34 px padding) / (0.61 em × 13 px) = 91.03 characters: the notebooks' 88
    # fit
    assert layout.code_columns == 91 and layout.code_columns >= 88
    with pytest.raises(ValueError, match="--sarslide-secondary-sidebar"):
        check_site.read_layout(":root { --sarslide-primary-sidebar: 240px; }")


def _code_page(*lines: str) -> str:
    code = "\n".join(lines)
    return (
        '<html><body><article><div class="cell docutils container"><div '
        'class="cell_input docutils container"><div class="highlight-ipython3 '
        'notranslate"><div '
        f'class="highlight"><pre><span></span>{code}\n</pre></div></div></div></div>'
        "</article></body></html>"
    )


def test_code_cell_wider_than_the_column_fails():
    layout = check_site.Layout(1280, 240, 200, 84, 13, 34)
    fits = _code_page("x = 1", "y = '" + "a" * 83 + "'")  # 89 characters
    assert check_site.overflow_problems("p.html", fits, layout) == []
    wide = _code_page("x = 1", "y = '" + "a" * 95 + "'")  # 101 characters
    (problem,) = check_site.overflow_problems("p.html", wide, layout)
    assert "a line of 101 characters, the column fits 91" in problem.message


def test_figure_text_size_is_computed_from_its_pixels_and_dpi():
    layout = check_site.Layout(1280, 240, 200, 84, 13, 34)  # a 756 px column
    narrow = _wide_figure(6)  # 600 px at 100 dpi: shown at full size, 10 pt = 13.9 px
    text_px, width, dpi = check_site.figure_text_px(narrow, layout)
    assert (width, dpi) == (600, 100) and text_px == pytest.approx(10 * 100 / 72)
    assert check_site.legibility_problem(narrow, layout) is None
    wide = _wide_figure(20)  # 2000 px shown at 756: 13.9 × 0.378 = 5.25 px
    text_px, width, _ = check_site.figure_text_px(wide, layout)
    assert width == 2000 and text_px == pytest.approx(10 * 100 / 72 * 756 / 2000)
    assert "renders at 5.2 px (< 8)" in check_site.legibility_problem(wide, layout)


def test_illegible_figure_and_overflowing_code_fail_the_site(tmp_path):
    build = fake_build(tmp_path, {"01_x": [figure_png()], "02_y": [_wide_figure(20)]})
    (build / "html" / "notebooks" / "03_z.html").write_text(
        _code_page("z = '" + "b" * 120 + "'")
    )
    _, problems = check_site.check_site(build, min_figures={"01_x": 1, "02_y": 1})
    text = "\n".join(map(str, problems))
    assert "02_y.html: figure 1" in text and "illegible at 1280 px" in text
    assert "03_z.html: code block 1 overflows" in text
    assert "01_x.html" not in text


def test_chromium_measurement_flags_scrolling_code_and_small_figure_text(tmp_path):
    shots = load_tool("screenshot_site")
    page = tmp_path / "p.html"
    (tmp_path / "wide.png").write_bytes(_wide_figure(20))  # 2000 px at 100 dpi
    (tmp_path / "small.png").write_bytes(_wide_figure(6))  # 600 px
    numbers = {
        "code": [[700, 757, "fits"], [815, 757, "x = 'aaaa"]],
        # shown at 757 px: 13.9 × 757 / 2000 = 5.3 px; the small one at full size
        "figures": [["wide.png", 2000, 757.0], ["small.png", 600, 600.0]],
    }
    problems = shots.measured_problems(page, numbers, 1280)
    assert len(problems) == 2
    assert problems[0].startswith(
        "code block 2 scrolls sideways at 1280 px (815 > 757 px"
    )
    assert problems[1].startswith(
        "figure 1 shown at 757 of 2000 px: its text renders at 5.3 px"
    )
