"""The paper's evaluation figures (chapters 5–6): APRC and miscounts against training
size.

Figures 2 and 3 are drawn with seaborn from tidy tables (one row per observation,
columns ``arm``, ``train_size``, ``metric``, ``value``): seaborn computes the means and
the error bars (``errorbar="se"``: the standard error of the mean, the paper's error
bars), one hue per pretraining arm. Maps and chip panels stay plain matplotlib.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..metrics import SIZE_ALL, SIZE_BASELINE, size_sort_key

__all__ = [
    "ARM_STYLE",
    "MISCOUNT_PANELS",
    "size_label",
    "per_run",
    "plot_aprc_by_size",
    "plot_miscounts_by_size",
    "plot_ensemble_intervals",
    "plot_prediction_examples",
]

ARM_STYLE = {
    "none": {"color": "0.35", "marker": "o", "label": "no pretraining"},
    "hokkaido": {"color": "tab:blue", "marker": "s", "label": "stage 1 on Hokkaido"},
    "kaikoura": {"color": "tab:orange", "marker": "^", "label": "stage 1 on Kaikōura"},
}
#: Figure 3's panels: (metric, title).
MISCOUNT_PANELS: tuple[tuple[str, str], ...] = (
    ("median_delta_l1", "median ΔL1, all chips"),
    ("median_delta_count_free", "median Δcount, landslide-free chips"),
    ("median_delta_count_landslide", "median Δcount, landslide chips"),
)
_DODGE = 0.25


def size_label(size: int, n_all: int | None = None) -> str:
    """Tick label of a stored training size (:data:`sarslide.metrics.SIZE_ALL`: all
    chips)."""
    if size == SIZE_ALL:
        return "all" if n_all is None else f"all ({n_all})"
    if size == SIZE_BASELINE:
        return "no training"  # the non-learned references (log-ratio, random guess)
    return str(size)


def _ordered_sizes(sizes) -> list[int]:
    return sorted({int(s) for s in sizes}, key=size_sort_key)


def _tidy(table: pd.DataFrame, what: str) -> pd.DataFrame:
    """``table`` as tidy rows (arm, train_size, metric, value); a wide table with one
    column per metric (:func:`sarslide.ablation.ensemble_scores`) is melted first."""
    if {"mean", "sem"} <= set(table.columns) and "value" not in table.columns:
        raise ValueError(
            f"{what} looks like sarslide.ablation.summarize()'s output (means and "
            "SEMs); pass the "
            "tidy results table instead (ablation.train_grid(...) or results.parquet: "
            "one row per "
            "run × checkpoint × metric) — seaborn computes the means and error bars "
            "from it"
        )
    if "metric" not in table.columns:
        metrics = [m for m, _ in MISCOUNT_PANELS] + ["aprc"]
        present = [m for m in metrics if m in table.columns]
        if not present or not {"arm", "train_size"} <= set(table.columns):
            raise ValueError(
                f"{what} needs columns arm, train_size, metric, value (or one column "
                "per metric); "
                f"got {list(table.columns)}"
            )
        table = table.melt(
            id_vars=[c for c in table.columns if c not in present],
            value_vars=present,
            var_name="metric",
            value_name="value",
        )
    missing = {"arm", "train_size", "metric", "value"} - set(table.columns)
    if missing:
        raise ValueError(
            f"{what} lacks columns {sorted(missing)}; got {list(table.columns)}"
        )
    return table[table["arm"].isin(ARM_STYLE)]


def per_run(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per run: the mean of ``metric`` over the run's checkpoints.

    The paper's error bars are over seeds (runs), not checkpoints: checkpoints of one
    run are not independent, so they are averaged first. Tables without ``run_id`` (one
    row per model already) are returned filtered to the metric and the learned arms.
    """
    rows = _tidy(results, "the results table")
    rows = rows[rows["metric"] == metric]
    if "run_id" in rows.columns:
        rows = rows.groupby(["arm", "train_size", "run_id"], as_index=False)[
            "value"
        ].mean()
    return rows[["arm", "train_size", "value"]].reset_index(drop=True)


def _pointplot(
    ax,
    rows: pd.DataFrame,
    sizes: list[int],
    n_all: int | None,
    *,
    errorbar,
    lines: bool,
    legend: bool,
    arms: Sequence[str] | None = None,
    alpha: float = 1.0,
) -> None:
    """Per-arm means at categorical size positions (``sizes`` order), seaborn error
    bars.

    ``arms`` fixes the hue order (and so each arm's dodge offset) across calls on one
    Axes.
    """
    arms = (
        [a for a in ARM_STYLE if a in set(rows["arm"])] if arms is None else list(arms)
    )
    labels = [ARM_STYLE[a]["label"] for a in arms]
    data = rows.assign(
        size=rows["train_size"].map(lambda s: size_label(int(s), n_all)),
        arm_label=rows["arm"].map(lambda a: ARM_STYLE[a]["label"]),
    )
    sns.pointplot(
        data=data,
        x="size",
        y="value",
        hue="arm_label",
        order=[size_label(s, n_all) for s in sizes],
        hue_order=labels,
        palette={ARM_STYLE[a]["label"]: ARM_STYLE[a]["color"] for a in arms},
        markers=[ARM_STYLE[a]["marker"] for a in arms] if lines else "",
        linestyles="-" if lines else "none",
        errorbar=errorbar,
        capsize=0.08 if errorbar else 0,
        dodge=_DODGE if len(arms) > 1 else False,
        err_kws={"linewidth": 1.3, "alpha": alpha},
        legend=legend,
        ax=ax,
    )


def plot_aprc_by_size(
    results: pd.DataFrame,
    *,
    random_aprc: float | None = None,
    log_ratio_aprc: float | None = None,
    n_all: int | None = None,
    paper: dict | None = None,
    errorbar="se",
    ax=None,
):
    """Figure 2: APRC against training-set size per arm, mean ± SEM over seeds
    (seaborn).

    Parameters
    ----------
    results:
        The tidy results table of :func:`sarslide.ablation.train_grid` (one row per
        run × checkpoint × metric); each run is first reduced to its checkpoints' mean
        (:func:`per_run`), then seaborn draws the mean over runs with ``errorbar``
        (default ``"se"``; any seaborn errorbar spec, e.g. ``("ci", 95)``).
    random_aprc, log_ratio_aprc:
        Horizontal lines for the random guess and the log-ratio baseline.
    paper:
        :data:`sarslide.ablation.PAPER_APRC` adds the paper's values as hollow markers.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
    rows = per_run(results, "aprc")
    if rows.empty:
        raise ValueError(
            "the results table holds no APRC rows of the arms none/hokkaido/kaikoura"
        )
    sizes = _ordered_sizes(rows["train_size"])
    _pointplot(ax, rows, sizes, n_all, errorbar=errorbar, lines=True, legend=True)
    pos = {s: i for i, s in enumerate(sizes)}
    if paper:
        for arm, by_size in paper.items():
            xs = [pos[s] for s in by_size if s in pos]
            ys = [v for s, v in by_size.items() if s in pos]
            ax.plot(
                xs,
                ys,
                ls=":",
                marker=ARM_STYLE[arm]["marker"],
                mfc="none",
                color=ARM_STYLE[arm]["color"],
                alpha=0.7,
            )
        ax.plot(
            [], [], ls=":", marker="o", mfc="none", color="k", label="paper (real data)"
        )
    if random_aprc is not None:
        ax.axhline(
            random_aprc,
            color="k",
            ls="--",
            lw=1,
            label=f"random guess ({random_aprc:.3f})",
        )
    if log_ratio_aprc is not None:
        ax.axhline(
            log_ratio_aprc,
            color="tab:green",
            ls="-.",
            lw=1,
            label=f"log-ratio change ({log_ratio_aprc:.3f})",
        )
    ax.set_xlabel("stage-2 training chips")
    ax.set_ylabel("APRC on test chips")
    ax.legend(fontsize=8)
    return ax


def plot_miscounts_by_size(
    ensemble: pd.DataFrame,
    per_model: pd.DataFrame | None = None,
    *,
    n_all: int | None = None,
    errorbar="se",
):
    """Figure 3: median ΔL1 (all chips), Δcount (landslide-free), Δcount (landslide
    chips).

    Parameters
    ----------
    ensemble:
        The points: one value per arm × training size × metric, tidy (columns ``arm``,
        ``train_size``, ``metric``, ``value``) or wide with one column per metric (as
        :func:`sarslide.ablation.ensemble_scores` returns), e.g. the miscount medians of
        the probability averaged over seeds × checkpoints. Several rows of one cell are
        averaged.
    per_model:
        Optional, same columns with one row per model (e.g. the results table: one row
        per run × checkpoint): seaborn draws their spread as error bars (``errorbar``,
        default ``"se"``) around the per-model mean, behind the ensemble points.

    Returns
    -------
    matplotlib.figure.Figure
        Three panels; one line of points per arm in each.
    """
    points = _tidy(ensemble, "the ensemble table")
    spread = None if per_model is None else _tidy(per_model, "the per-model table")
    sizes = _ordered_sizes(points["train_size"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    for k, (ax, (metric, title)) in enumerate(zip(axes, MISCOUNT_PANELS)):
        rows = points[points["metric"] == metric]
        arms = [a for a in ARM_STYLE if a in set(rows["arm"])]
        if spread is not None:
            models = spread[
                (spread["metric"] == metric)
                & spread["train_size"].isin(sizes)
                & spread["arm"].isin(arms)
            ]
            _pointplot(
                ax,
                models,
                sizes,
                n_all,
                errorbar=errorbar,
                lines=False,
                legend=False,
                arms=arms,
                alpha=0.6,
            )
        _pointplot(
            ax, rows, sizes, n_all, errorbar=None, lines=True, legend=k == 0, arms=arms
        )
        ax.axhline(0, color="k", lw=0.8)
        ax.set_title(title)
        ax.set_xlabel("stage-2 training chips")
        ax.set_ylabel("pixels")
    axes[0].legend(fontsize=8)
    return fig


def plot_ensemble_intervals(
    intervals: pd.DataFrame,
    panels: Sequence[tuple[str, str]],
    *,
    n_all: int | None = None,
    random_aprc: float | None = None,
    log_ratio_aprc: float | None = None,
    paper: dict | None = None,
    panel_size: tuple[float, float] = (4.0, 3.3),
):
    """Chapter 6's Figures 2 and 3: one statistic per cell, its interval around it.

    Parameters
    ----------
    intervals:
        :meth:`sarslide.findings.GridBootstrap.intervals` (columns ``arm``,
        ``train_size``, ``metric``, ``value``, ``ci_low``, ``ci_high``): the points are
        each cell's ensemble value, the error bars the bootstrap interval *of that same
        value*, drawn at the same position (so a bar describes the point it surrounds).
    panels:
        ``(metric, title)`` per panel, e.g. ``[("aprc", "APRC")]`` (Figure 2) or
        :data:`MISCOUNT_PANELS` (Figure 3).
    random_aprc, log_ratio_aprc, paper:
        References for an ``"aprc"`` panel: horizontal lines, and the paper's values
        (:data:`sarslide.ablation.PAPER_APRC`) as hollow markers.
    panel_size:
        Inches per panel; the default keeps the figure's text legible in the book's
        column (a three-panel figure is 12 in wide).

    Returns
    -------
    matplotlib.figure.Figure
    """
    missing = {"arm", "train_size", "metric", "value", "ci_low", "ci_high"} - set(
        intervals.columns
    )
    if missing:
        raise ValueError(
            f"intervals lacks columns {sorted(missing)}: pass GridBootstrap.intervals()"
        )
    rows = intervals[intervals["arm"].isin(ARM_STYLE)]
    sizes = _ordered_sizes(rows["train_size"])
    pos = {s: i for i, s in enumerate(sizes)}
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(panel_size[0] * len(panels), panel_size[1]),
        squeeze=False,
        constrained_layout=True,
    )
    arms = [a for a in ARM_STYLE if a in set(rows["arm"])]
    for ax, (metric, title) in zip(axes[0], panels):
        for k, arm in enumerate(arms):
            part = rows[(rows["metric"] == metric) & (rows["arm"] == arm)]
            part = part.assign(x=part["train_size"].map(pos)).sort_values("x")
            x = part["x"].to_numpy() + (k - (len(arms) - 1) / 2) * _DODGE
            style = ARM_STYLE[arm]
            ax.vlines(
                x,
                part["ci_low"],
                part["ci_high"],
                color=style["color"],
                lw=1.3,
                alpha=0.7,
            )
            ax.plot(
                x,
                part["value"],
                marker=style["marker"],
                color=style["color"],
                label=style["label"],
            )
        if metric == "aprc":
            if paper:
                for arm, by_size in paper.items():
                    xs = [pos[s] for s in by_size if s in pos]
                    ys = [v for s, v in by_size.items() if s in pos]
                    ax.plot(
                        xs,
                        ys,
                        ls=":",
                        marker=ARM_STYLE[arm]["marker"],
                        mfc="none",
                        color=ARM_STYLE[arm]["color"],
                        alpha=0.7,
                    )
                ax.plot(
                    [],
                    [],
                    ls=":",
                    marker="o",
                    mfc="none",
                    color="k",
                    label="paper (real data)",
                )
            if random_aprc is not None:
                ax.axhline(
                    random_aprc,
                    color="k",
                    ls="--",
                    lw=1,
                    label=f"random guess ({random_aprc:.3f})",
                )
            if log_ratio_aprc is not None:
                ax.axhline(
                    log_ratio_aprc,
                    color="tab:green",
                    ls="-.",
                    lw=1,
                    label=f"log-ratio change ({log_ratio_aprc:.3f})",
                )
        else:
            ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(sizes)), [size_label(s, n_all) for s in sizes])
        ax.set_title(title)
        ax.set_xlabel("stage-2 training chips")
        ax.set_ylabel("APRC on test chips" if metric == "aprc" else "pixels")
    axes[0, 0].legend(fontsize=8)
    return fig


def plot_prediction_examples(
    images_db: np.ndarray,
    labels: np.ndarray,
    predictions: dict[str, np.ndarray],
    chip_titles: Sequence[str],
    threshold: float = 0.5,
):
    """Figure A1 style: per chip, post-event VH, each arm's thresholded map, and the
    truth.

    ``images_db`` (N, H, W) post-event VH in dB; ``predictions`` maps an arm label to
    (N, H, W) probabilities.
    """
    n = len(chip_titles)
    cols = 2 + len(predictions)
    fig, axes = plt.subplots(
        n, cols, figsize=(2.6 * cols, 2.7 * n), squeeze=False, constrained_layout=True
    )
    for i in range(n):
        axes[i, 0].imshow(images_db[i], cmap="gray", vmin=-30, vmax=-5)
        axes[i, 0].set_ylabel(chip_titles[i])
        for j, (name, prob) in enumerate(predictions.items(), start=1):
            axes[i, j].imshow(prob[i] >= threshold, cmap="Reds", vmin=0, vmax=1)
            axes[i, j].set_title(
                f"{name}\n{int((prob[i] >= threshold).sum())} px", fontsize=9
            )
        axes[i, -1].imshow(labels[i] > 0, cmap="Reds", vmin=0, vmax=1)
        axes[i, -1].set_title(f"truth\n{int((labels[i] > 0).sum())} px", fontsize=9)
        axes[i, 0].set_title("after (VH dB)", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
