"""GIS-ready exports of a landslide map: ranked cells as GeoJSON and CSV, and a PNG quick-look.

:mod:`sarslide.mapping` computes the rasters (probability, binary map, density heatmap) and
writes them as Cloud-Optimized GeoTIFFs; this module writes what an analyst opens next to
them:

* :func:`cells_frame` turns :func:`sarslide.mapping.rank_cells`' table into square cell
  polygons (a :class:`geopandas.GeoDataFrame` in the heatmap's CRS);
* :func:`write_cells` writes them as GeoJSON (in the map CRS, which GDAL records in the
  file's ``crs`` member, so geopandas and QGIS read it back with the right CRS) and as CSV
  (the same rows, with the polygon as WKT);
* :func:`write_quicklook` draws probability, binary map and density heatmap side by side
  into a PNG (matplotlib's Agg canvas; no display needed).

Every write is atomic (:mod:`sarslide.atomic`).
"""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr

from .atomic import atomic_file

__all__ = ["CELL_COLUMNS", "cells_frame", "write_cells", "write_quicklook"]

#: Attribute columns of the exported cells, in order (``geometry`` / ``geometry_wkt`` follow).
CELL_COLUMNS: tuple[str, ...] = (
    "rank",
    "x",
    "y",
    "lon",
    "lat",
    "landslide_fraction",
    "landslide_area_km2",
    "cell_size_m",
)


def cells_frame(ranked: pd.DataFrame, heatmap: xr.DataArray) -> gpd.GeoDataFrame:
    """Square cell polygons of ranked heatmap cells, in the heatmap's CRS.

    Parameters
    ----------
    ranked:
        :func:`sarslide.mapping.rank_cells` output: ``rank``, ``x``, ``y`` (cell centre,
        metres), ``lon``, ``lat``, ``landslide_fraction``, ``landslide_area_km2``.
    heatmap:
        The density heatmap the cells were ranked from (:func:`sarslide.mapping.density_heatmap`):
        gives the CRS and ``attrs["cell_size"]`` (metres; else the pixel spacing).

    Returns
    -------
    geopandas.GeoDataFrame
        :data:`CELL_COLUMNS` plus ``geometry`` (one square per cell, side ``cell_size_m``),
        most affected first, CRS of the heatmap.
    """
    missing = [c for c in CELL_COLUMNS[:-1] if c not in ranked.columns]
    if missing:
        raise ValueError(
            f"the ranked table lacks columns {missing}; build it with sarslide.mapping.rank_cells(heatmap)"
        )
    if heatmap.rio.crs is None:
        raise ValueError("the heatmap has no CRS; build it with sarslide.mapping.density_heatmap")
    cell = heatmap.attrs.get("cell_size")
    if cell is None:
        cell = abs(float(heatmap["x"].values[1] - heatmap["x"].values[0]))
    half = float(cell) / 2.0
    x = ranked["x"].to_numpy(dtype=np.float64)
    y = ranked["y"].to_numpy(dtype=np.float64)
    polygons = shapely.box(x - half, y - half, x + half, y + half)
    table = ranked[list(CELL_COLUMNS[:-1])].reset_index(drop=True).copy()
    table["rank"] = table["rank"].astype(np.int64)
    table["cell_size_m"] = float(cell)
    return gpd.GeoDataFrame(table, geometry=list(polygons), crs=heatmap.rio.crs.to_wkt())


def write_cells(
    cells: gpd.GeoDataFrame, geojson_path: str | os.PathLike, csv_path: str | os.PathLike
) -> tuple[Path, Path]:
    """Write cells as GeoJSON (CRS kept) and CSV (same rows, polygon as ``geometry_wkt``).

    An empty table (no landslide mapped) still writes both files: a GeoJSON
    FeatureCollection with no features and a CSV with the header only.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The GeoJSON and CSV paths.
    """
    geojson_path, csv_path = Path(geojson_path), Path(csv_path)
    with atomic_file(geojson_path, suffix=".geojson") as tmp:
        cells.to_file(tmp, driver="GeoJSON", engine="pyogrio", layer=geojson_path.stem)
    table = pd.DataFrame(cells.drop(columns=cells.geometry.name))
    table["geometry_wkt"] = shapely.to_wkt(cells.geometry.to_numpy(), rounding_precision=-1)
    with atomic_file(csv_path, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    return geojson_path, csv_path


def _quicklook_raster(da: xr.DataArray, max_pixels: int, how: str) -> xr.DataArray:
    """Coarsen a (y, x) raster so neither side exceeds ``max_pixels`` (for drawing only)."""
    factor = int(np.ceil(max(da.sizes["y"], da.sizes["x"]) / max_pixels))
    if factor <= 1:
        return da
    coarse = da.coarsen(y=factor, x=factor, boundary="trim")
    out = coarse.max() if how == "max" else coarse.mean()
    out.attrs = dict(da.attrs)
    return out


def write_quicklook(
    prob: xr.DataArray,
    binary: xr.DataArray,
    heatmap: xr.DataArray,
    path: str | os.PathLike,
    *,
    ranked: pd.DataFrame | None = None,
    title: str | None = None,
    max_pixels: int = 2000,
    dpi: int = 110,
) -> Path:
    """A PNG of probability, binary map and density heatmap (ranked cells numbered).

    Rasters larger than ``max_pixels`` on a side are coarsened for drawing (probability:
    mean; binary: max, so small landslides stay visible). Drawn with
    :func:`sarslide.plots.maps.plot_mapping_overview` on matplotlib's Agg canvas.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display; a no-op where a backend is already set
    import matplotlib.pyplot as plt

    from .plots.maps import plot_mapping_overview

    prob = _quicklook_raster(prob, max_pixels, "mean")
    # 255 (no data) would win a max: mark it NaN first, back to 255 after.
    valid = binary != 255
    small = _quicklook_raster(binary.where(valid).astype("float32"), max_pixels, "max")
    small = small.fillna(255).astype("uint8")
    small.attrs = dict(binary.attrs)
    fig = plot_mapping_overview(prob.compute(), small.compute(), heatmap.compute(), ranked=ranked)
    try:
        if title:
            fig.suptitle(title)
        path = Path(path)
        with atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path
