"""Figures of area-wide maps (chapter 7): probability, binary map, density heatmaps,
reliability diagram and miscounts by threshold.

Every function only draws what :mod:`sarslide.mapping` and :mod:`sarslide.metrics`
computed, and returns the matplotlib Axes or Figure.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.colors import ListedColormap

from .common import extent_km

__all__ = [
    "plot_probability_map",
    "plot_binary_map",
    "plot_density_heatmap",
    "plot_density_comparison",
    "plot_reliability_diagram",
    "plot_miscounts_by_threshold",
    "plot_mapping_overview",
]

_NODATA_GREY = "0.85"


def _axes(ax, figsize=(6, 5)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    return ax


def _label_axes(ax) -> None:
    ax.set_xlabel("easting (km)")
    ax.set_ylabel("northing (km)")
    ax.set_facecolor(_NODATA_GREY)


def plot_probability_map(
    prob: xr.DataArray, *, ax=None, title: str | None = None, cmap="magma"
):
    """Landslide probability (0–1) as a map; no data in grey."""
    ax = _axes(ax)
    im = ax.imshow(
        prob.values,
        extent=extent_km(prob),
        origin="upper",
        cmap=cmap,
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="landslide probability")
    ax.set_title(title or "landslide probability")
    _label_axes(ax)
    return ax


def plot_binary_map(
    binary: xr.DataArray,
    truth: xr.DataArray | np.ndarray | None = None,
    *,
    ax=None,
    title: str | None = None,
):
    """A binary landslide map; with ``truth`` (labels, > 0 = landslide) hits, false
    alarms and misses get their own colours. No data (255) in grey."""
    ax = _axes(ax)
    values = np.asarray(binary.values)
    valid = values != 255
    mapped = (values == 1) & valid
    extent = extent_km(binary)
    if truth is None:
        layer = np.where(valid, mapped.astype(float), np.nan)
        ax.imshow(
            layer,
            extent=extent,
            origin="upper",
            interpolation="nearest",
            cmap=ListedColormap(["white", "crimson"]),
            vmin=0,
            vmax=1,
        )
        handles = [
            plt.Rectangle((0, 0), 1, 1, color="crimson", label="mapped landslide")
        ]
    else:
        true = np.asarray(truth) > 0
        classes = np.full(values.shape, np.nan)
        classes[valid] = 0
        classes[valid & mapped & true] = 1
        classes[valid & mapped & ~true] = 2
        classes[valid & ~mapped & true] = 3
        colours = ["white", "tab:green", "tab:orange", "tab:blue"]
        ax.imshow(
            classes,
            extent=extent,
            origin="upper",
            interpolation="nearest",
            cmap=ListedColormap(colours),
            vmin=-0.5,
            vmax=3.5,
        )
        names = ["hit (mapped and labelled)", "false alarm", "missed"]
        handles = [
            plt.Rectangle((0, 0), 1, 1, color=c, label=n)
            for c, n in zip(colours[1:], names)
        ]
    ax.legend(handles=handles, loc="lower right", fontsize="small", framealpha=0.9)
    threshold = binary.attrs.get("threshold")
    ax.set_title(
        title
        or (
            "binary map"
            + (f" (threshold {threshold:.3g})" if threshold is not None else "")
        )
    )
    _label_axes(ax)
    return ax


def plot_density_heatmap(
    heatmap: xr.DataArray,
    *,
    ax=None,
    title: str | None = None,
    vmax: float | None = None,
    ranked: pd.DataFrame | None = None,
    cmap="YlOrRd",
):
    """Landslide area fraction per cell (percent); optionally the ranks of
    :func:`sarslide.mapping.rank_cells` written on their cells."""
    ax = _axes(ax)
    pct = 100.0 * heatmap.values
    if vmax is None:
        vmax = float(np.nanmax(pct)) if np.isfinite(pct).any() else 1.0
    im = ax.imshow(
        pct,
        extent=extent_km(heatmap),
        origin="upper",
        cmap=cmap,
        vmin=0,
        vmax=max(vmax, 1e-9),
        interpolation="nearest",
    )
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="landslide area (% of cell)")
    if ranked is not None:
        for row in ranked.itertuples():
            ax.annotate(
                str(row.rank),
                (row.x / 1e3, row.y / 1e3),
                ha="center",
                va="center",
                fontsize="x-small",
                color="black",
                weight="bold",
            )
    cell = heatmap.attrs.get("cell_size")
    ax.set_title(
        title
        or (
            f"landslide density ({cell / 1e3:g} km cells)"
            if cell
            else "landslide density"
        )
    )
    _label_axes(ax)
    return ax


def plot_density_comparison(
    heatmaps: Mapping[str, xr.DataArray],
    *,
    ranked: pd.DataFrame | None = None,
    figsize: tuple[float, float] | None = None,
):
    """Several density heatmaps side by side on one colour scale, e.g.
    ``{"true labels": ..., "model, calibrated": ..., "log-ratio baseline": ...}``;
    ``ranked`` cells are marked on the second panel (the first is usually the truth)."""
    n = len(heatmaps)
    if n == 0:
        raise ValueError("pass at least one heatmap")
    cols = min(n, 2)  # two panels a row keep the labels legible in the book's column
    rows = -(-n // cols)
    figsize = figsize or (6.2 * cols, 3.6 * rows)
    fig, grid = plt.subplots(
        rows,
        cols,
        figsize=figsize,
        sharex=True,
        sharey=True,
        squeeze=False,
        constrained_layout=True,
    )
    axes = grid.ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    vmax = max(
        float(np.nanmax(100 * h.values)) if np.isfinite(h.values).any() else 0.0
        for h in heatmaps.values()
    )
    for i, (ax, (name, heat)) in enumerate(zip(axes, heatmaps.items())):
        plot_density_heatmap(
            heat,
            ax=ax,
            title=name,
            vmax=vmax,
            ranked=ranked if (i == min(1, n - 1)) else None,
        )
    return fig


def plot_reliability_diagram(
    curves: pd.DataFrame | Mapping[str, pd.DataFrame], *, ax=None
):
    """Observed landslide frequency against mean predicted probability per bin (from
    :func:`sarslide.mapping.reliability_curve`), with the diagonal of perfect
    calibration and the pixel count per bin below. Pass a dict to overlay several
    models."""
    if isinstance(curves, pd.DataFrame):
        curves = {"model": curves}
    if ax is None:
        fig, (ax, ax_n) = plt.subplots(
            2,
            1,
            figsize=(5.5, 6),
            sharex=True,
            height_ratios=[3, 1],
            constrained_layout=True,
        )
    else:
        ax_n = None
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", label="perfectly calibrated")
    for name, curve in curves.items():
        ok = curve["count"] > 0
        ax.plot(
            curve.loc[ok, "mean_predicted"],
            curve.loc[ok, "observed_frequency"],
            "o-",
            label=name,
        )
        if ax_n is not None:
            centres = (curve["bin_lower"] + curve["bin_upper"]) / 2
            width = float((curve["bin_upper"] - curve["bin_lower"]).iloc[0])
            ax_n.bar(centres, curve["count"], width=width * 0.9, alpha=0.5, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed landslide frequency")
    ax.set_title("reliability diagram")
    ax.legend(fontsize="small")
    if ax_n is not None:
        ax_n.set_yscale("log")
        ax_n.set_ylabel("pixels")
        ax_n.set_xlabel("predicted probability")
    else:
        ax.set_xlabel("predicted probability")
    return ax


def plot_miscounts_by_threshold(
    tables: Mapping[str, pd.DataFrame], *, figsize=(10, 3.8)
):
    """Per-chip Δcount (Σŷ − Σy, pixels) for several thresholds, split into
    landslide-free chips and chips with landslides; ``tables`` maps a label (e.g.
    ``"0.5"``, ``"calibrated 0.83"``) to a :func:`sarslide.metrics.miscounts` table."""
    fig, axes = plt.subplots(
        1, 2, figsize=figsize, sharey=True, constrained_layout=True
    )
    labels = list(tables)
    for ax, has, title in (
        (axes[0], False, "landslide-free chips"),
        (axes[1], True, "landslide chips"),
    ):
        data = [
            t.loc[t["has_landslide"] == has, "delta_count"].to_numpy()
            for t in tables.values()
        ]
        ax.boxplot(data, tick_labels=labels, showmeans=False)
        ax.axhline(0, color="0.5", lw=1, ls="--")
        ax.set_title(title)
        ax.set_xlabel("threshold")
    axes[0].set_ylabel("Δcount = Σŷ − Σy (pixels)")
    return fig


def plot_mapping_overview(
    prob: xr.DataArray,
    binary: xr.DataArray,
    heatmap: xr.DataArray,
    truth_heatmap: xr.DataArray | None = None,
    *,
    truth: xr.DataArray | np.ndarray | None = None,
    ranked: pd.DataFrame | None = None,
    figsize: tuple[float, float] | None = None,
):
    """Probability, binary map (against ``truth`` labels if given), density heatmap with
    ranked cells and, if given, the true labels' heatmap — two rows of two panels (one
    row of three without the truth), sized for the book's column."""
    n = 4 if truth_heatmap is not None else 3
    rows, cols = (2, 2) if n == 4 else (1, 3)
    figsize = figsize or ((12, 6.6) if n == 4 else (12, 3.6))
    fig, grid = plt.subplots(rows, cols, figsize=figsize, constrained_layout=True)
    axes = np.atleast_1d(grid).ravel()
    plot_probability_map(prob, ax=axes[0])
    plot_binary_map(binary, truth, ax=axes[1])
    vmax = None
    if truth_heatmap is not None:
        both = np.concatenate([heatmap.values.ravel(), truth_heatmap.values.ravel()])
        vmax = 100 * float(np.nanmax(both)) if np.isfinite(both).any() else None
    plot_density_heatmap(
        heatmap, ax=axes[2], vmax=vmax, ranked=ranked, title="mapped density"
    )
    if truth_heatmap is not None:
        plot_density_heatmap(
            truth_heatmap, ax=axes[3], vmax=vmax, title="true density (labels)"
        )
    return fig
