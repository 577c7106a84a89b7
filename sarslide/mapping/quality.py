"""How good a map is, where the truth is known: the quality block of ``map.json``.

:func:`map_quality` compares a binary map with a true landslide map of the same grid
(the demo's synthetic labels, or an inventory rasterised with
:func:`sarslide.inventory.rasterize`): pixel precision and recall, mapped vs true area
(:func:`~sarslide.mapping.mapped_area_km2`), and, on density heatmaps of both, the
Pearson correlation and the overlap of the ``top`` most affected cells
(:func:`~sarslide.mapping.heatmap_agreement`). :func:`quality_block` does this for
several maps (the model and the log-ratio baseline) side by side, and
:func:`quality_table` shows a block as a table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .areas import mapped_area_km2
from .calibration import BINARY_NODATA
from .errors import MappingError
from .heatmap import density_heatmap, heatmap_agreement, same_grid

__all__ = ["map_quality", "quality_block", "quality_table"]


def _check_same_grid(a: xr.DataArray, b: xr.DataArray) -> None:
    if not same_grid(a, b):
        raise MappingError(
            f"the map ({a.shape}) and the truth ({b.shape}) are on different grids; "
            "rasterise the truth on the map's grid (sarslide.inventory.rasterize(inv, "
            "like=map))"
        )


def map_quality(
    binary: xr.DataArray,
    truth: xr.DataArray,
    *,
    cell_size: float = 1000.0,
    top: int = 10,
) -> dict[str, float]:
    """Pixel and cell agreement of a binary map with the true one.

    Parameters
    ----------
    binary, truth:
        (y, x) uint8 maps on one grid: 1 landslide, 0 none, 255 no data (both from
        :func:`sarslide.mapping.binary_map`).
    cell_size:
        Heatmap cell in metres (a whole multiple of the pixel size).
    top:
        How many most affected cells to compare.

    Returns
    -------
    dict
        ``precision`` and ``recall`` over pixels valid in both maps (NaN when nothing is
        mapped / nothing is true), ``mapped_area_km2`` and ``true_area_km2`` (pixels =
        1, no-data never counted), ``area_ratio`` (mapped / true),
        ``heatmap_correlation`` (Pearson r of the two density heatmaps over cells valid
        in both), ``top_cells_shared`` (how many of the ``top`` true cells are among the
        ``top`` mapped ones) and ``top_k``.
    """
    _check_same_grid(binary, truth)
    b, t = np.asarray(binary.values), np.asarray(truth.values)
    valid = (b != BINARY_NODATA) & (t != BINARY_NODATA)
    predicted, actual = (b == 1) & valid, (t == 1) & valid
    hits = int((predicted & actual).sum())
    n_pred, n_true = int(predicted.sum()), int(actual.sum())
    agreement = heatmap_agreement(
        density_heatmap(binary, cell_size=cell_size),
        density_heatmap(truth, cell_size=cell_size),
        top=top,
    )
    mapped, true = mapped_area_km2(binary), mapped_area_km2(truth)
    return {
        "precision": hits / n_pred if n_pred else float("nan"),
        "recall": hits / n_true if n_true else float("nan"),
        "mapped_area_km2": mapped,
        "true_area_km2": true,
        "area_ratio": mapped / true if true > 0 else float("nan"),
        "heatmap_correlation": agreement["correlation"],
        "top_cells_shared": int(agreement["shared_top_cells"]),
        "top_k": int(top),
    }


def quality_block(
    maps: Mapping[str, xr.DataArray],
    truth: xr.DataArray,
    *,
    cell_size: float = 1000.0,
    top: int = 10,
    truth_source: str = "",
) -> dict[str, Any]:
    """:func:`map_quality` of several maps against one truth, side by side.

    Returns
    -------
    dict
        ``{"truth": truth_source, "cell_size_m": …, "top_k": …, name: map_quality(…)}``
        for each ``name`` of ``maps`` (e.g. ``"model"``, ``"log_ratio_baseline"``);
        values are plain floats/ints (JSON-ready; NaN where undefined).
    """
    block: dict[str, Any] = {
        "truth": truth_source,
        "cell_size_m": float(cell_size),
        "top_k": int(top),
    }
    for name, binary in maps.items():
        block[name] = map_quality(binary, truth, cell_size=cell_size, top=top)
    return block


def quality_table(
    block: Mapping[str, Any], names: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """A :func:`quality_block` as a table: one row per figure, one column per map.

    Parameters
    ----------
    block:
        :func:`quality_block`'s result.
    names:
        ``{map name: column label}``, which maps to show and how to label them
        (default: every map, under its own name).
    """
    if names is None:
        names = {k: k for k, v in block.items() if isinstance(v, Mapping)}
    return pd.DataFrame({label: block[name] for name, label in names.items()})
