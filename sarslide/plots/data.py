"""Figures of event cubes and chips (chapters 1–2)."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch, Rectangle

from .common import extent_km

__all__ = [
    "to_db",
    "plot_pass_pair",
    "plot_backscatter_histograms",
    "plot_chip_layout",
    "plot_example_chips",
    "plot_split_counts",
]

SPLIT_COLOURS = {
    "stage1_train": "tab:blue",
    "stage2_train": "tab:orange",
    "validation": "tab:green",
    "test": "tab:red",
}


def to_db(linear: np.ndarray | xr.DataArray):
    """Linear power to decibels, 10·log10(x); non-positive values become NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if isinstance(linear, xr.DataArray):
            return 10.0 * np.log10(linear.where(linear > 0))
        linear = np.asarray(linear, dtype=np.float64)
        return 10.0 * np.log10(np.where(linear > 0, linear, np.nan))


def plot_pass_pair(
    pair: xr.Dataset,
    band: str = "vh",
    *,
    vmin: float = -30,
    vmax: float = -5,
    figsize=(11.5, 3.4),
):
    """Pre-event and post-event backscatter (dB), their difference and the labels, as
    maps.

    ``pair`` is the output of :func:`sarslide.cube.pass_pair` (with ``landslides``).
    """
    ncols = 4 if "landslides" in pair else 3
    fig, axes = plt.subplots(
        1, ncols, figsize=figsize, sharex=True, sharey=True, constrained_layout=True
    )
    extent = extent_km(pair[f"pre_{band}"])
    pre, post = to_db(pair[f"pre_{band}"]), to_db(pair[f"post_{band}"])
    kw = dict(extent=extent, origin="upper", interpolation="nearest")
    im = axes[0].imshow(pre, cmap="gray", vmin=vmin, vmax=vmax, **kw)
    axes[0].set_title(f"before: {band.upper()} {pair.attrs['pre_times'][0][:10]}")
    axes[1].imshow(post, cmap="gray", vmin=vmin, vmax=vmax, **kw)
    axes[1].set_title(f"after: {band.upper()} {pair.attrs['post_times'][0][:10]}")
    fig.colorbar(im, ax=axes[:2], shrink=0.8, label="backscatter (dB)")
    diff = axes[2].imshow(post - pre, cmap="RdBu", vmin=-6, vmax=6, **kw)
    axes[2].set_title("change: after − before")
    fig.colorbar(diff, ax=axes[2], shrink=0.8, label="dB")
    if ncols == 4:
        lab = pair["landslides"].values
        axes[3].imshow(
            np.where(lab > 0, 1.0, np.nan), cmap=ListedColormap(["crimson"]), **kw
        )
        axes[3].set_facecolor("0.92")
        axes[3].set_title(f"landslide labels ({pair.attrs.get('label_kind', 'mask')})")
    for ax in axes:
        ax.set_xlabel("easting (km)")
    axes[0].set_ylabel("northing (km)")
    return fig


def plot_backscatter_histograms(
    cube: xr.Dataset,
    reference: dict[str, tuple[float, float]] | None = None,
    *,
    ax=None,
):
    """Histograms of log10 backscatter per polarisation, with reference means marked."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5), constrained_layout=True)
    for band, colour in (("vv", "tab:blue"), ("vh", "tab:orange")):
        values = np.log10(np.asarray(cube[band].values, dtype=np.float64))
        values = values[np.isfinite(values)]
        ax.hist(
            values,
            bins=120,
            density=True,
            alpha=0.5,
            color=colour,
            label=f"{band.upper()}: mean {values.mean():.2f}, std {values.std():.2f}",
        )
        if reference and band in reference:
            ax.axvline(reference[band][0], color=colour, ls="--", lw=1.5)
    ax.set_xlabel("log10 backscatter (linear power)")
    ax.set_ylabel("density")
    ax.legend(title="dashed: Hokkaido reference means" if reference else None)
    return ax


def plot_chip_layout(
    background: xr.DataArray, meta: pd.DataFrame, *, ax=None, db_range=(-30, -5)
):
    """Chip footprints over a backscatter map, coloured by split; landslide chips
    hatched."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 7), constrained_layout=True)
    ax.imshow(
        to_db(background),
        cmap="gray",
        vmin=db_range[0],
        vmax=db_range[1],
        extent=extent_km(background),
        origin="upper",
        interpolation="nearest",
    )
    for row in meta.itertuples():
        colour = SPLIT_COLOURS.get(row.split, "white")
        ax.add_patch(
            Rectangle(
                (row.xmin / 1e3, row.ymin / 1e3),
                (row.xmax - row.xmin) / 1e3,
                (row.ymax - row.ymin) / 1e3,
                fill=False,
                ec=colour,
                lw=1.5,
                hatch="///" if row.has_landslide else None,
            )
        )
    handles = [
        Patch(fill=False, ec=c, lw=1.5, label=s) for s, c in SPLIT_COLOURS.items()
    ]
    handles.append(Patch(fill=False, ec="k", hatch="///", label="holds landslides"))
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False
    )
    ax.set_xlabel("easting (km)")
    ax.set_ylabel("northing (km)")
    return ax


def plot_example_chips(
    chips,
    indices: Sequence[int],
    *,
    band: str = "vh",
    vmin=-30,
    vmax=-5,
    per_row: int = 4,
):
    """Per chip: before, after (dB) and the label, stacked; titles give split and
    counts.

    At most ``per_row`` chips side by side (more wrap onto further rows of three
    panels), so the figure stays about 10 in wide and its text legible in the book's
    column.
    """
    from ..cube import CHANNELS  # figures may read the channel order

    pre_i, post_i = CHANNELS.index(f"pre_{band}"), CHANNELS.index(f"post_{band}")
    cols = max(1, min(int(per_row), len(indices)))
    groups = -(-len(indices) // cols)
    fig, axes = plt.subplots(
        3 * groups,
        cols,
        figsize=(2.6 * cols, 7.6 * groups),
        squeeze=False,
        constrained_layout=True,
    )
    for k, i in enumerate(indices):
        g, col = divmod(k, cols)
        block = axes[3 * g : 3 * g + 3, col]
        row = chips.meta.iloc[i]
        block[0].imshow(
            to_db(chips.images[i, pre_i]), cmap="gray", vmin=vmin, vmax=vmax
        )
        block[1].imshow(
            to_db(chips.images[i, post_i]), cmap="gray", vmin=vmin, vmax=vmax
        )
        block[2].imshow(chips.labels[i] > 0, cmap="Reds", vmin=0, vmax=1)
        block[0].set_title(
            f"{row.split}\n{int(row.landslide_pixels)} landslide px", fontsize=9
        )
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for k in range(len(indices), groups * cols):  # empty slots of the last row
        for ax in axes[3 * (k // cols) : 3 * (k // cols) + 3, k % cols]:
            ax.set_axis_off()
    for g in range(groups):
        for r, name in enumerate(
            [f"before {band.upper()}", f"after {band.upper()}", "label"]
        ):
            axes[3 * g + r, 0].set_ylabel(name)
    return fig


def plot_split_counts(table: pd.DataFrame, *, ax=None):
    """Stacked bars of landslide / landslide-free chips per split (from
    ``split_table``)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3), constrained_layout=True)
    body = table.drop(index="total", errors="ignore")
    ax.bar(body.index, body["landslide"], color="crimson", label="landslide")
    ax.bar(
        body.index,
        body["landslide_free"],
        bottom=body["landslide"],
        color="0.6",
        label="landslide-free",
    )
    ax.set_ylabel("chips")
    ax.legend()
    return ax
