"""Density heatmaps: landslide area fraction per cell, the most affected cells,
agreement.

:func:`density_heatmap` aggregates a binary or probability map into landslide area
fraction per cell (1 km by default), :func:`rank_cells` lists the most affected cells
with their coordinates, and :func:`heatmap_agreement` compares a mapped heatmap with the
true one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from pyproj import Transformer

from .calibration import BINARY_NODATA
from .errors import MappingError

__all__ = ["density_heatmap", "heatmap_agreement", "rank_cells", "same_grid"]


def _pixel_size(da: xr.DataArray) -> tuple[float, float]:
    if da.sizes.get("x", 0) < 2 or da.sizes.get("y", 0) < 2:
        raise MappingError(
            f"need a (y, x) raster of at least 2×2 pixels, got sizes {dict(da.sizes)}"
        )
    dx = float(da["x"].values[1] - da["x"].values[0])
    dy = float(da["y"].values[0] - da["y"].values[1])
    if dx <= 0 or dy <= 0:
        raise MappingError(
            f"x must increase and y decrease along the raster (got steps {dx}, {-dy}); "
            "sort with .sortby('x').sortby('y', ascending=False)"
        )
    return dx, dy


def _valid_and_value(da: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """(valid mask, landslide value in [0, 1]) for a binary uint8 map or a float map."""
    if np.issubdtype(da.dtype, np.integer):
        nodata = da.rio.nodata
        valid = da != (BINARY_NODATA if nodata is None else nodata)
        value = (da > 0) & valid
    else:
        valid = np.isfinite(da)
        value = da.where(valid, 0.0)
    return valid, value.astype(np.float32)


def density_heatmap(raster: xr.DataArray, cell_size: float = 1000.0) -> xr.DataArray:
    """Landslide area fraction per square cell of ``cell_size`` metres.

    Parameters
    ----------
    raster:
        A binary map from :func:`binary_map` (uint8, 255 = no data) — the fraction is
        then the mapped landslide area — or a probability map (float, NaN = no data) —
        then the *expected* landslide area. Dims (y, x) with coordinates in metres.
    cell_size:
        Cell side in metres; a whole multiple of the pixel size.

    Returns
    -------
    xarray.DataArray
        (y, x) float32 on a grid of cells anchored at the raster's top-left corner
        (coordinates = cell centres, same CRS): landslide area in the cell divided by
        the full cell area (``cell_size²``), so ``Σ fraction · cell_size²`` equals the
        mapped landslide area exactly. Cells at the right/bottom edge may extend beyond
        the raster; NaN where a cell holds no valid pixel. attrs ``cell_size`` and
        ``pixel_size`` (m).

    Raises
    ------
    MappingError
        If ``cell_size`` is not a positive whole multiple of the pixel size.
    """
    dx, dy = _pixel_size(raster)
    factors = []
    for step in (dy, dx):
        f = cell_size / step
        if cell_size <= 0 or abs(f - round(f)) > 1e-6 or round(f) < 1:
            lo = max(1, int(np.floor(f))) * step
            raise MappingError(
                f"cell_size={cell_size} m is not a whole multiple of the pixel size "
                f"{dx:g} m × {dy:g} m; use e.g. {lo:g} or {lo + step:g} m"
            )
        factors.append(int(round(f)))
    fy, fx = factors
    valid, value = _valid_and_value(raster)
    coarse = dict(y=fy, x=fx, boundary="pad")
    area = value.coarsen(**coarse).sum()
    n_valid = valid.astype(np.float32).coarsen(**coarse).sum()
    fraction = (area / (fy * fx)).where(n_valid > 0).astype(np.float32)
    x_left = float(raster["x"].values[0]) - dx / 2
    y_top = float(raster["y"].values[0]) + dy / 2
    fraction = fraction.assign_coords(
        x=x_left + cell_size * (np.arange(fraction.sizes["x"]) + 0.5),
        y=y_top - cell_size * (np.arange(fraction.sizes["y"]) + 0.5),
    ).rename("landslide_fraction")
    fraction.attrs = {
        "long_name": "landslide area fraction",
        "units": "1",
        "cell_size": float(cell_size),
        "pixel_size": float(dx),
    }
    for key in ("threshold", "event", "pre_times", "post_times"):
        if key in raster.attrs:
            fraction.attrs[key] = raster.attrs[key]
    if raster.rio.crs is not None:
        fraction = fraction.rio.write_crs(raster.rio.crs)
    return fraction.rio.write_nodata(np.nan, encoded=False)


def rank_cells(heatmap: xr.DataArray, top: int = 20) -> pd.DataFrame:
    """The ``top`` most affected cells of a density heatmap, most affected first.

    Returns
    -------
    pandas.DataFrame
        Columns ``rank`` (1 = most affected), ``x``, ``y`` (cell centre, metres in the
        heatmap's CRS), ``lon``, ``lat`` (cell centre, degrees WGS84),
        ``landslide_fraction`` and ``landslide_area_km2``. Only cells with a landslide
        fraction > 0 are listed.
    """
    if top < 1:
        raise ValueError(f"top={top} must be >= 1")
    if heatmap.rio.crs is None:
        raise MappingError(
            "the heatmap has no CRS; build it with density_heatmap(binary_map(prob, "
            "threshold))"
        )
    cell = heatmap.attrs.get("cell_size")
    if cell is None:
        dx, dy = _pixel_size(heatmap)
        cell_area = dx * dy
    else:
        cell_area = float(cell) ** 2
    values = np.asarray(heatmap.values, dtype=np.float64)
    rows, cols = np.nonzero(np.isfinite(values) & (values > 0))
    frac = values[rows, cols]
    order = np.argsort(-frac, kind="stable")[:top]
    rows, cols, frac = rows[order], cols[order], frac[order]
    x = heatmap["x"].values[cols].astype(np.float64)
    y = heatmap["y"].values[rows].astype(np.float64)
    lon, lat = Transformer.from_crs(
        heatmap.rio.crs, "EPSG:4326", always_xy=True
    ).transform(x, y)
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(frac) + 1),
            "x": x,
            "y": y,
            "lon": np.asarray(lon, dtype=np.float64),
            "lat": np.asarray(lat, dtype=np.float64),
            "landslide_fraction": frac,
            "landslide_area_km2": frac * cell_area / 1e6,
        }
    )


def same_grid(a: xr.DataArray, b: xr.DataArray) -> bool:
    """Whether two rasters share one grid: the same shape and ``x`` / ``y``
    coordinates."""
    return (
        a.shape == b.shape
        and np.allclose(a["x"], b["x"])
        and np.allclose(a["y"], b["y"])
    )


def heatmap_agreement(
    mapped: xr.DataArray, truth: xr.DataArray, top: int = 5
) -> dict[str, float]:
    """How well a mapped density heatmap matches the true one (same cell grid).

    Returns
    -------
    dict
        ``correlation`` (Pearson r over cells valid in both), ``shared_top_cells`` (how
        many of the ``top`` most affected true cells are also among the ``top`` mapped
        ones), ``mapped_area_km2`` and ``true_area_km2`` (Σ fraction × cell area).
    """
    if not same_grid(mapped, truth):
        raise MappingError(
            f"heatmaps are on different grids ({mapped.shape} vs {truth.shape}); "
            "build both with "
            "density_heatmap(..., cell_size=...) from rasters of the same scene"
        )
    cell_area = float(mapped.attrs.get("cell_size", 0.0)) ** 2 or abs(
        float(np.prod(_pixel_size(mapped)))
    )
    a = np.asarray(mapped.values, dtype=np.float64).ravel()
    b = np.asarray(truth.values, dtype=np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    corr = (
        float(np.corrcoef(a[ok], b[ok])[0, 1])
        if ok.sum() > 1 and a[ok].std() > 0 and b[ok].std() > 0
        else float("nan")
    )

    def cells(h):
        return set(map(tuple, rank_cells(h, top)[["x", "y"]].to_numpy()))

    return {
        "correlation": corr,
        "shared_top_cells": float(len(cells(mapped) & cells(truth))),
        "mapped_area_km2": float(np.nansum(a)) * cell_area / 1e6,
        "true_area_km2": float(np.nansum(b)) * cell_area / 1e6,
    }
