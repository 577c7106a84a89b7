"""Figures of chapter 1 (data acquisition): labels, pass timelines, scene footprints.

Each function draws what it is given and returns the matplotlib Axes; the numbers shown
come from :mod:`sarslide.acquire` and :mod:`sarslide.inventory`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon as PolygonPatch
from matplotlib.patches import Rectangle

from .common import extent_km

__all__ = ["plot_labels", "plot_pass_timeline", "plot_footprints"]


def plot_labels(
    labels: xr.DataArray, *, kind: str | None = None, ax=None, title: str | None = None
):
    """A label raster as a map: a mask in one colour, point counts on a colour scale.

    Parameters
    ----------
    labels:
        (y, x) ``landslides`` raster (uint8 mask or uint16 counts) with x/y in metres.
    kind:
        ``"mask"`` or ``"points"``; default ``labels.attrs["label_kind"]`` or, failing
        that, ``"points"`` when any pixel holds more than 1.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5), constrained_layout=True)
    values = np.asarray(labels.values)
    kind = (
        kind
        or labels.attrs.get("label_kind")
        or ("points" if values.max(initial=0) > 1 else "mask")
    )
    kw = dict(extent=extent_km(labels), origin="upper", interpolation="nearest")
    ax.set_facecolor("0.92")
    if kind == "mask":
        ax.imshow(
            np.where(values > 0, 1.0, np.nan), cmap=ListedColormap(["crimson"]), **kw
        )
        ax.set_title(title or f"landslide mask: {int((values > 0).sum())} pixels")
    else:
        # Labelled pixels are few and isolated: draw each as a marker coloured by its
        # count.
        rows, cols = np.nonzero(values)
        top = max(int(values.max(initial=0)), 2)
        sc = ax.scatter(
            labels["x"].values[cols] / 1e3,
            labels["y"].values[rows] / 1e3,
            c=values[rows, cols],
            cmap="viridis",
            vmin=1,
            vmax=top,
            s=14,
            marker="s",
            edgecolors="none",
        )
        ax.set_xlim(kw["extent"][:2])
        ax.set_ylim(kw["extent"][2:])
        ax.set_aspect("equal")
        plt.colorbar(
            sc,
            ax=ax,
            shrink=0.8,
            label="landslide points per pixel",
            ticks=range(1, top + 1) if top <= 10 else None,
        )
        ax.set_title(title or f"point counts: {int(values.sum())} points")
    ax.set_xlabel("easting (km)")
    ax.set_ylabel("northing (km)")
    return ax


def plot_pass_timeline(
    table: pd.DataFrame,
    event_time,
    *,
    selected: Sequence | None = None,
    ax=None,
):
    """Sentinel-1 passes per track on a time axis, with the event and the chosen passes.

    Parameters
    ----------
    table:
        :func:`sarslide.acquire.pass_table` output (columns ``time``, ``orbit_state``,
        ``relative_orbit``, ``coverage``).
    event_time:
        The event's origin time (drawn as a vertical line).
    selected:
        Times of the chosen passes (ringed).
    """
    if ax is None:
        _, ax = plt.subplots(
            figsize=(
                10,
                0.6 + 0.5 * table.groupby(["orbit_state", "relative_orbit"]).ngroups,
            ),
            constrained_layout=True,
        )
    tracks = sorted(set(zip(table["orbit_state"], table["relative_orbit"])))
    for row, (state, rel) in enumerate(tracks):
        sub = table[(table["orbit_state"] == state) & (table["relative_orbit"] == rel)]
        colour = "tab:blue" if state == "ascending" else "tab:orange"
        sc = ax.scatter(
            sub["time"],
            [row] * len(sub),
            c=sub["coverage"],
            cmap="Greys",
            vmin=0,
            vmax=1,
            edgecolors=colour,
            s=70,
            linewidths=1.5,
            zorder=3,
        )
    if selected is not None:
        chosen = table[table["time"].isin(pd.DatetimeIndex(selected))]
        rows = [
            tracks.index((s, r))
            for s, r in zip(chosen["orbit_state"], chosen["relative_orbit"])
        ]
        ax.scatter(
            chosen["time"],
            rows,
            s=260,
            facecolors="none",
            edgecolors="crimson",
            linewidths=2,
            zorder=4,
        )
    event = pd.Timestamp(event_time)
    if event.tzinfo is not None:
        event = event.tz_convert("UTC").tz_localize(None)
    ax.axvline(event, color="crimson", ls="--", lw=1.5)
    ax.set_yticks(range(len(tracks)), [f"{s} {r}" for s, r in tracks])
    ax.set_ylim(-0.7, len(tracks) - 0.3)
    ax.set_xlabel("acquisition time (UTC)")
    handles = [
        Line2D([], [], color="crimson", ls="--", label="event"),
        Line2D(
            [],
            [],
            marker="o",
            ls="",
            mfc="none",
            mec="crimson",
            ms=12,
            mew=2,
            label="chosen",
        ),
    ]
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False
    )
    if tracks:
        plt.colorbar(sc, ax=ax, label="coverage of the area", pad=0.15)
    return ax


def plot_footprints(
    passes: Sequence, bounds_lonlat: tuple[float, float, float, float], *, ax=None
):
    """Scene footprints of passes (lon/lat outlines) over the area of interest.

    ``passes`` are :class:`sarslide.acquire.Pass` objects; each gets one colour.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6), constrained_layout=True)
    colours = plt.get_cmap("tab10")
    for k, p in enumerate(passes):
        for item in p.items:
            geom = item.geometry
            rings = (
                [geom["coordinates"][0]]
                if geom["type"] == "Polygon"
                else [poly[0] for poly in geom["coordinates"]]
            )
            for ring in rings:
                ax.add_patch(
                    PolygonPatch(
                        np.asarray(ring)[:, :2],
                        closed=True,
                        fill=False,
                        ec=colours(k % 10),
                        lw=1.5,
                        label=(
                            f"{p.time:%Y-%m-%d %H:%M} {p.orbit_state} "
                            f"{p.relative_orbit}"
                        ),
                    )
                )
    west, south, east, north = bounds_lonlat
    ax.add_patch(
        Rectangle(
            (west, south),
            east - west,
            north - south,
            fill=True,
            fc="crimson",
            alpha=0.25,
            ec="crimson",
            lw=2,
            label="area of interest",
        )
    )
    ax.autoscale_view()
    ax.set_aspect(1 / np.cos(np.deg2rad((south + north) / 2)))
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(
        unique.values(),
        unique.keys(),
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        frameon=False,
        fontsize=8,
    )
    return ax
