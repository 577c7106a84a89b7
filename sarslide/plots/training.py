"""Figures of chapters 3–4: learning curves, stage-1 chip scores and embeddings, and
stage-2 probability maps.  Each function only draws what it is given (histories from
:func:`sarslide.train.fit`, scores from :mod:`sarslide.predict`) and returns the
Figure/Axes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = [
    "plot_learning_curves",
    "plot_run_curves",
    "plot_chip_probabilities",
    "plot_embedding_pca",
    "plot_probability_maps",
]

_METRIC_LABELS = {"val_aprc": "validation APRC", "val_accuracy": "validation accuracy"}


def plot_learning_curves(
    histories: pd.DataFrame | Mapping[str, pd.DataFrame],
    *,
    metric: str | None = None,
    best_epochs: Mapping[str, int] | None = None,
    reference: float | None = None,
    reference_label: str = "reference",
    title: str | None = None,
):
    """Loss (training solid, validation dashed) and the validation metric against epoch.

    Parameters
    ----------
    histories:
        One ``TrainResult.history`` or a mapping ``{label: history}`` (one colour each).
    metric:
        Column for the right panel; default ``val_aprc`` or ``val_accuracy``, whichever
        exists.
    best_epochs:
        ``{label: epoch}`` to mark each run's best checkpoint.
    reference:
        A horizontal line on the metric panel (e.g. the pixel base rate, or 0.5
        accuracy).
    """
    if isinstance(histories, pd.DataFrame):
        histories = {"": histories}
    first = next(iter(histories.values()))
    metric = metric or next(
        c for c in ("val_aprc", "val_accuracy") if c in first.columns
    )
    fig, (ax_loss, ax_metric) = plt.subplots(
        1, 2, figsize=(10, 3.6), constrained_layout=True
    )
    for k, (label, h) in enumerate(histories.items()):
        color = f"C{k}"
        prefix = f"{label}: " if label else ""
        ax_loss.plot(
            h["epoch"],
            h["train_loss"],
            color=color,
            marker=".",
            label=f"{prefix}training",
        )
        ax_loss.plot(
            h["epoch"],
            h["val_loss"],
            color=color,
            ls="--",
            marker=".",
            label=f"{prefix}validation",
        )
        ax_metric.plot(
            h["epoch"], h[metric], color=color, marker="o", ms=4, label=label or None
        )
        if best_epochs and label in best_epochs:
            best = h.loc[h["epoch"] == best_epochs[label], metric]
            ax_metric.plot(
                [best_epochs[label]],
                best.to_numpy(),
                marker="*",
                ms=14,
                color=color,
                ls="none",
            )
    if reference is not None:
        ax_metric.axhline(reference, color="0.4", lw=1, ls=":", label=reference_label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_metric.set(
        xlabel="epoch",
        ylabel=_METRIC_LABELS.get(metric, metric),
        title=_METRIC_LABELS.get(metric, metric),
    )
    ax_loss.legend(fontsize=8)
    if len(histories) > 1 or reference is not None:
        ax_metric.legend(fontsize=8)
    if best_epochs:
        ax_metric.plot(
            [], [], marker="*", ms=10, color="k", ls="none", label="best checkpoint"
        )
        ax_metric.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


#: How :func:`plot_run_curves` draws each training-health class (colour, line style).
_STATUS_STYLE = {
    "trained": ("C0", "-"),
    "empty_draw": ("0.55", ":"),
    "stalled": ("C1", "-."),
    "overfit": ("C4", "-."),
    "capped": ("C2", "--"),
    "collapsed": ("C3", "--"),
}


def plot_run_curves(
    curves: pd.DataFrame,
    *,
    metric: str = "val_aprc",
    chance: float | None = None,
    size_labels: Mapping[int, str] | None = None,
    panel_size: tuple[float, float] = (2.4, 1.8),
):
    """Small multiples of every run's validation curve: one panel per arm × training
    size, one line per seed, coloured by its training-health class, the best epoch
    marked with a dot.

    Parameters
    ----------
    curves:
        Long table, one row per run × epoch, with ``arm``, ``train_size``, ``seed``,
        ``status``, ``best_epoch``, ``epoch`` and ``metric`` (as
        :func:`sarslide.ablation.grid_histories` returns it).
    chance:
        The metric of an uninformed prediction (dotted line), e.g. the validation
        pixel share for APRC.
    size_labels:
        ``{stored size: column title}``; default the stored sizes.
    """
    from matplotlib.lines import Line2D

    present = set(curves["arm"])
    known = [a for a in ("none", "hokkaido", "kaikoura") if a in present]
    arms = known + sorted(present - set(known))
    sizes = sorted(curves["train_size"].unique(), key=lambda s: np.inf if s < 0 else s)
    fig, axes = plt.subplots(
        len(arms),
        len(sizes),
        sharex=True,
        sharey=True,
        squeeze=False,
        figsize=(panel_size[0] * len(sizes), panel_size[1] * len(arms)),
        constrained_layout=True,
    )
    for i, arm in enumerate(arms):
        for j, size in enumerate(sizes):
            ax = axes[i, j]
            cell = curves[(curves["arm"] == arm) & (curves["train_size"] == size)]
            for _, run in cell.groupby("seed"):
                status = run["status"].iloc[0]
                color, ls = _STATUS_STYLE.get(status, ("k", "-"))
                ax.plot(run["epoch"], run[metric], color=color, ls=ls, lw=1.1)
                best = run[run["epoch"] == run["best_epoch"].iloc[0]]
                ax.plot(best["epoch"], best[metric], "o", color=color, ms=3.5)
            if chance is not None:
                ax.axhline(chance, color="k", ls=":", lw=0.8)
            if i == 0:
                title = (size_labels or {}).get(size, str(size))
                ax.set_title(f"{title} chips", fontsize=10)
            if j == 0:
                ax.set_ylabel(
                    f"{arm}\n{_METRIC_LABELS.get(metric, metric)}", fontsize=9
                )
            if i == len(arms) - 1:
                ax.set_xlabel("epoch", fontsize=9)
    present = [s for s in _STATUS_STYLE if s in set(curves["status"])]
    handles = [
        Line2D([], [], color=_STATUS_STYLE[s][0], ls=_STATUS_STYLE[s][1], label=s)
        for s in present
    ]
    if chance is not None:
        handles.append(Line2D([], [], color="k", ls=":", lw=0.8, label="chance"))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=len(handles),
        fontsize=9,
        frameon=False,
    )
    return fig


def plot_chip_probabilities(
    probabilities: np.ndarray,
    has_landslide: np.ndarray,
    *,
    threshold: float = 0.5,
    ax=None,
    title: str | None = None,
):
    """Stage-1 chip probabilities, one dot per chip, split by the true class.

    ``probabilities`` ``(N,)`` from :func:`sarslide.predict.predict_chip_proba`;
    ``has_landslide`` ``(N,)`` bool.  The dashed line is the decision threshold.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.4), constrained_layout=True)
    probabilities = np.asarray(probabilities)
    has_landslide = np.asarray(has_landslide, dtype=bool)
    jitter = np.random.default_rng(0).uniform(
        -0.12, 0.12, len(probabilities)
    )  # display only
    for k, (mask, name, color) in enumerate(
        (
            (~has_landslide, "landslide-free", "0.45"),
            (has_landslide, "with landslides", "tab:red"),
        )
    ):
        ax.plot(
            k + jitter[mask], probabilities[mask], "o", color=color, alpha=0.7, ms=5
        )
        ax.plot(
            [k - 0.25, k + 0.25],
            [np.median(probabilities[mask])] * 2 if mask.any() else [np.nan] * 2,
            color="k",
            lw=2,
        )
    ax.axhline(threshold, color="0.3", ls="--", lw=1)
    ax.set_xticks([0, 1], ["landslide-free", "with landslides"])
    ax.set(ylabel="P(chip has a landslide)", xlim=(-0.6, 1.6), ylim=(-0.02, 1.02))
    if title:
        ax.set_title(title)
    return ax


def plot_embedding_pca(
    scores: np.ndarray,
    has_landslide: np.ndarray,
    *,
    explained: Sequence[float] | None = None,
    ax=None,
    title: str | None = None,
):
    """First two principal components of pooled stage-1 embeddings, coloured by chip
    class.

    ``scores`` ``(N, 2)`` and ``explained`` from :func:`sarslide.predict.embedding_pca`.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.0), constrained_layout=True)
    scores = np.asarray(scores)
    has_landslide = np.asarray(has_landslide, dtype=bool)
    ax.scatter(
        *scores[~has_landslide, :2].T,
        s=22,
        color="0.55",
        alpha=0.8,
        label="landslide-free",
    )
    ax.scatter(
        *scores[has_landslide, :2].T,
        s=22,
        color="tab:red",
        alpha=0.8,
        marker="^",
        label="with landslides",
    )
    labels = ["PC 1", "PC 2"]
    if explained is not None:
        labels = [
            f"PC {i + 1} ({100 * e:.0f}% of variance)"
            for i, e in enumerate(explained[:2])
        ]
    ax.set(xlabel=labels[0], ylabel=labels[1])
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_probability_maps(
    before_db: np.ndarray,
    after_db: np.ndarray,
    truth: np.ndarray,
    probabilities: Mapping[str, np.ndarray],
    *,
    chip_titles: Sequence[str],
    band: str = "VH",
    db_range: tuple[float, float] = (-30, -5),
):
    """Per chip (rows): the pass before and after (dB), the truth, and each model's
    landslide probability map with the true landslides outlined.

    ``before_db``, ``after_db`` ``(n, H, W)``; ``truth`` ``(n, H, W)`` (> 0 =
    landslide); ``probabilities`` ``{model label: (n, H, W)}`` from
    :func:`sarslide.predict.predict_proba`.
    """
    n = len(chip_titles)
    cols = 3 + len(probabilities)
    fig, axes = plt.subplots(
        n, cols, figsize=(2.5 * cols, 2.6 * n), squeeze=False, constrained_layout=True
    )
    image = None
    for i in range(n):
        axes[i, 0].imshow(before_db[i], cmap="gray", vmin=db_range[0], vmax=db_range[1])
        axes[i, 1].imshow(after_db[i], cmap="gray", vmin=db_range[0], vmax=db_range[1])
        axes[i, 2].imshow(truth[i] > 0, cmap="Reds", vmin=0, vmax=1)
        axes[i, 0].set_ylabel(chip_titles[i])
        for j, (name, prob) in enumerate(probabilities.items(), start=3):
            image = axes[i, j].imshow(prob[i], cmap="magma", vmin=0, vmax=1)
            if (truth[i] > 0).any():
                axes[i, j].contour(
                    truth[i] > 0, levels=[0.5], colors="cyan", linewidths=0.8
                )
            if i == 0:
                axes[i, j].set_title(name, fontsize=9)
    for j, name in enumerate((f"before ({band} dB)", f"after ({band} dB)", "truth")):
        axes[0, j].set_title(name, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:
        fig.colorbar(
            image,
            ax=axes[:, 3:].ravel().tolist(),
            shrink=0.8,
            label="landslide probability",
        )
    return fig
