"""The paper's evaluation figures (chapters 5–6): APRC and miscounts against training size."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["ARM_STYLE", "size_label", "plot_aprc_by_size", "plot_miscounts_by_size", "plot_prediction_examples"]

ARM_STYLE = {
    "none": {"color": "0.35", "marker": "o", "label": "no pretraining"},
    "hokkaido": {"color": "tab:blue", "marker": "s", "label": "stage 1 on Hokkaido"},
    "kaikoura": {"color": "tab:orange", "marker": "^", "label": "stage 1 on Kaikōura"},
}


def size_label(size: int, n_all: int | None = None) -> str:
    """Tick label of a training size (−1 means all chips)."""
    if size == -1:
        return "all" if n_all is None else f"all ({n_all})"
    return str(size)


def _positions(sizes: Sequence[int]) -> dict[int, int]:
    ordered = sorted(sizes, key=lambda s: np.inf if s == -1 else s)
    return {s: i for i, s in enumerate(ordered)}


def _series(ax, summary: pd.DataFrame, metric: str, pos: dict[int, int], offset: float = 0.08):
    arms = [a for a in ARM_STYLE if a in set(summary["arm"])]
    for k, arm in enumerate(arms):
        part = summary[(summary["arm"] == arm) & (summary["metric"] == metric)]
        part = part.assign(x=part["train_size"].map(pos)).sort_values("x")
        style = ARM_STYLE[arm]
        ax.errorbar(part["x"] + (k - (len(arms) - 1) / 2) * offset, part["mean"], yerr=part["sem"].fillna(0),
                    color=style["color"], marker=style["marker"], label=style["label"], capsize=3, lw=1.5)


def plot_aprc_by_size(summary: pd.DataFrame, *, random_aprc: float | None = None,
                      log_ratio_aprc: float | None = None, n_all: int | None = None,
                      paper: dict | None = None, ax=None):
    """Figure 2: APRC against training-set size per arm (mean ± SEM over seeds).

    ``summary`` is :func:`sarslide.ablation.summarize`'s output; horizontal lines mark the
    random guess and the log-ratio baseline; ``paper`` (``PAPER_APRC``) adds hollow markers.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
    sizes = sorted(set(summary.loc[summary["arm"].isin(ARM_STYLE), "train_size"]))
    pos = _positions(sizes)
    _series(ax, summary, "aprc", pos)
    if paper:
        for arm, by_size in paper.items():
            xs = [pos[s] for s in by_size if s in pos]
            ys = [v for s, v in by_size.items() if s in pos]
            ax.plot(xs, ys, ls=":", marker=ARM_STYLE[arm]["marker"], mfc="none", color=ARM_STYLE[arm]["color"], alpha=0.7)
        ax.plot([], [], ls=":", marker="o", mfc="none", color="k", label="paper (real data)")
    if random_aprc is not None:
        ax.axhline(random_aprc, color="k", ls="--", lw=1, label=f"random guess ({random_aprc:.3f})")
    if log_ratio_aprc is not None:
        ax.axhline(log_ratio_aprc, color="tab:green", ls="-.", lw=1, label=f"log-ratio change ({log_ratio_aprc:.3f})")
    ax.set_xticks(list(pos.values()), [size_label(s, n_all) for s in pos])
    ax.set_xlabel("stage-2 training chips")
    ax.set_ylabel("APRC on test chips")
    ax.legend(fontsize=8)
    return ax


def plot_miscounts_by_size(summary: pd.DataFrame, *, n_all: int | None = None):
    """Figure 3: median ΔL1 (all chips), Δcount (landslide-free), Δcount (landslide chips)."""
    panels = [
        ("median_delta_l1", "median ΔL1, all chips"),
        ("median_delta_count_free", "median Δcount, landslide-free chips"),
        ("median_delta_count_landslide", "median Δcount, landslide chips"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    sizes = sorted(set(summary.loc[summary["arm"].isin(ARM_STYLE), "train_size"]))
    pos = _positions(sizes)
    for ax, (metric, title) in zip(axes, panels):
        _series(ax, summary, metric, pos)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_title(title)
        ax.set_xticks(list(pos.values()), [size_label(s, n_all) for s in pos])
        ax.set_xlabel("stage-2 training chips")
        ax.set_ylabel("pixels")
    axes[0].legend(fontsize=8)
    return fig


def plot_prediction_examples(images_db: np.ndarray, labels: np.ndarray, predictions: dict[str, np.ndarray],
                             chip_titles: Sequence[str], threshold: float = 0.5):
    """Figure A1 style: per chip, post-event VH, each arm's thresholded map, and the truth.

    ``images_db`` (N, H, W) post-event VH in dB; ``predictions`` maps an arm label to
    (N, H, W) probabilities.
    """
    n = len(chip_titles)
    cols = 2 + len(predictions)
    fig, axes = plt.subplots(n, cols, figsize=(2.6 * cols, 2.7 * n), squeeze=False, constrained_layout=True)
    for i in range(n):
        axes[i, 0].imshow(images_db[i], cmap="gray", vmin=-30, vmax=-5)
        axes[i, 0].set_ylabel(chip_titles[i])
        for j, (name, prob) in enumerate(predictions.items(), start=1):
            axes[i, j].imshow(prob[i] >= threshold, cmap="Reds", vmin=0, vmax=1)
            axes[i, j].set_title(f"{name}\n{int((prob[i] >= threshold).sum())} px", fontsize=9)
        axes[i, -1].imshow(labels[i] > 0, cmap="Reds", vmin=0, vmax=1)
        axes[i, -1].set_title(f"truth\n{int((labels[i] > 0).sum())} px", fontsize=9)
        axes[i, 0].set_title("after (VH dB)", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
