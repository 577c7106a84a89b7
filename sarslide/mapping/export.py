"""Exports of a landslide map: Cloud-Optimized GeoTIFFs, ranked cells, a PNG quick-look.

* :func:`write_cog` writes any raster of :mod:`sarslide.mapping` (probability, binary
  map, density heatmap) as a Cloud-Optimized GeoTIFF, streaming lazy maps block by
  block;
* :func:`cells_frame` turns :func:`sarslide.mapping.rank_cells`' table into square cell
  polygons (a :class:`geopandas.GeoDataFrame` in the heatmap's CRS);
* :func:`write_cells` writes them as GeoJSON (RFC 7946: lon/lat on WGS 84, no ``crs``
  member; the UTM cells as an option) and as CSV (the same rows in the map's CRS, the
  polygon as WKT, the CRS named in a ``crs`` column);
* :func:`write_quicklook` draws probability, binary map and density heatmap side by side
  into a PNG (matplotlib's Agg canvas; no display needed).

Every write is atomic (:mod:`sarslide.engine.atomic`). geopandas, shapely and matplotlib
are imported only by the functions that need them, so ``import sarslide.mapping`` stays
light.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from ..engine.atomic import atomic_file
from .calibration import BINARY_NODATA
from .errors import MappingError

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["CELL_COLUMNS", "cells_frame", "write_cells", "write_cog", "write_quicklook"]


def write_cog(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    compress: str = "DEFLATE",
    overview_resampling: str | None = None,
    tags: Mapping[str, object] | None = None,
) -> Path:
    """Write a (y, x) raster as a Cloud-Optimized GeoTIFF, atomically.

    In-memory rasters are written by rioxarray with GDAL's ``COG`` driver; dask-backed
    ones (``lazy=True`` maps) are first streamed block by block into a tiled GeoTIFF,
    then converted with the ``COG`` driver, so the map never has to fit in memory.
    Either way the file appears at ``path`` only when complete (temporary file, then
    ``os.replace``).

    Parameters
    ----------
    da:
        2-D raster with a CRS (as returned by this module). NaN (float) or
        ``rio.nodata`` (integer) marks no data. A boolean map is written as uint8 (1 =
        True, 0 = False).
    path:
        Output ``.tif`` path; its directory is created.
    compress:
        GDAL compression (``"DEFLATE"``, ``"LZW"``, ``"ZSTD"`` …).
    overview_resampling:
        Resampling for the overviews; default ``"average"`` for floats, ``"nearest"``
        for class maps (integers).
    tags:
        GDAL metadata written into the file (``gdalinfo`` lists them; rasterio's
        ``src.tags()`` reads them back), e.g. :func:`sarslide.mapping.provenance_tags`:
        what data, model and threshold made the map. Values are written as text.

    Returns
    -------
    pathlib.Path
    """
    import rasterio.shutil

    if tuple(da.dims) != ("y", "x"):
        raise MappingError(
            f"write_cog needs a (y, x) raster, got dims {tuple(da.dims)}"
        )
    if da.rio.crs is None:
        raise MappingError(
            "the raster has no CRS; attach one with da.rio.write_crs('EPSG:…')"
        )
    if da.dtype == bool:  # GeoTIFF has no boolean type: write 1 = True, 0 = False
        da = da.astype("uint8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if overview_resampling is None:
        overview_resampling = (
            "nearest" if np.issubdtype(da.dtype, np.integer) else "average"
        )
    if da.rio.nodata is None and np.issubdtype(da.dtype, np.floating):
        da = da.rio.write_nodata(np.nan, encoded=False)
    options = {"compress": compress, "overview_resampling": overview_resampling}
    text_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    with atomic_file(path, suffix=".tif") as tmp:
        if da.chunks is None:
            da.rio.to_raster(tmp, driver="COG", tags=text_tags, **options)
        else:
            # A lazy map streams block by block into a tiled GeoTIFF, then becomes a
            # COG.
            staging = tmp.with_name(tmp.stem + ".stage.tif")
            try:
                da.rio.to_raster(
                    staging,
                    driver="GTiff",
                    tiled=True,
                    blockxsize=512,
                    blockysize=512,
                    compress=compress,
                    lock=threading.Lock(),
                    windowed=True,
                    tags=text_tags,
                )
                rasterio.shutil.copy(staging, tmp, driver="COG", **options)
            finally:
                staging.unlink(missing_ok=True)
    return path


#: Attribute columns of the exported cells, in order (``geometry`` / ``geometry_wkt``
# follow).
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
        The density heatmap the cells were ranked from
        (:func:`sarslide.mapping.density_heatmap`): gives the CRS and
        ``attrs["cell_size"]`` (metres; else the pixel spacing).

    Returns
    -------
    geopandas.GeoDataFrame
        :data:`CELL_COLUMNS` plus ``geometry`` (one square per cell, side
        ``cell_size_m``), most affected first, CRS of the heatmap.
    """
    import geopandas as gpd
    import shapely

    missing = [c for c in CELL_COLUMNS[:-1] if c not in ranked.columns]
    if missing:
        raise ValueError(
            (
                f"the ranked table lacks columns {missing}; build it with "
                "sarslide.mapping.rank_cells(heatmap)"
            )
        )
    if heatmap.rio.crs is None:
        raise ValueError(
            "the heatmap has no CRS; build it with sarslide.mapping.density_heatmap"
        )
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
    return gpd.GeoDataFrame(
        table, geometry=list(polygons), crs=heatmap.rio.crs.to_wkt()
    )


def write_cells(
    cells: gpd.GeoDataFrame,
    geojson_path: str | os.PathLike,
    csv_path: str | os.PathLike,
    *,
    geojson_crs: str = "EPSG:4326",
) -> tuple[Path, Path]:
    """Write cells as GeoJSON and CSV (same rows, polygon as ``geometry_wkt``).

    The GeoJSON follows RFC 7946 by default: longitude/latitude on WGS 84
    (``geojson_crs="EPSG:4326"``) and no ``crs`` member, as web maps and most tools
    expect. ``geojson_crs="native"`` keeps the map's projected CRS (the UTM cells,
    squares in metres; GDAL then records the CRS in a non-standard ``crs`` member). The
    CSV keeps the map's CRS (``x``, ``y``, ``geometry_wkt`` in metres; ``lon``/``lat``
    in degrees) and names it in a ``crs`` column (e.g. ``EPSG:32654``).

    An empty table (no landslide mapped) still writes both files: a GeoJSON
    FeatureCollection with no features and a CSV with the header only.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The GeoJSON and CSV paths.
    """
    import shapely

    geojson_path, csv_path = Path(geojson_path), Path(csv_path)
    native = cells.crs
    out = cells if geojson_crs == "native" else cells.to_crs(geojson_crs)
    rfc7946 = out.crs is not None and out.crs.to_epsg() == 4326
    options = {"RFC7946": "YES"} if rfc7946 else {}
    with atomic_file(geojson_path, suffix=".geojson") as tmp:
        out.to_file(
            tmp,
            driver="GeoJSON",
            engine="pyogrio",
            layer=geojson_path.stem,
            layer_options=options,
        )
    table = pd.DataFrame(cells.drop(columns=cells.geometry.name))
    table["geometry_wkt"] = shapely.to_wkt(
        cells.geometry.to_numpy(), rounding_precision=-1
    )
    epsg = native.to_epsg() if native is not None else None
    table["crs"] = f"EPSG:{epsg}" if epsg else (native.to_string() if native else "")
    with atomic_file(csv_path, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    return geojson_path, csv_path


def _quicklook_raster(da: xr.DataArray, max_pixels: int, how: str) -> xr.DataArray:
    """Coarsen a (y, x) raster so neither side exceeds ``max_pixels`` (for drawing
    only)."""
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

    matplotlib.use(
        "Agg", force=False
    )  # no display; a no-op where a backend is already set
    import matplotlib.pyplot as plt

    from ..plots.maps import plot_mapping_overview

    prob = _quicklook_raster(prob, max_pixels, "mean")
    # 255 (no data) would win a max: mark it NaN first, back to 255 after.
    valid = binary != BINARY_NODATA
    small = _quicklook_raster(binary.where(valid).astype("float32"), max_pixels, "max")
    small = small.fillna(255).astype("uint8")
    small.attrs = dict(binary.attrs)
    fig = plot_mapping_overview(
        prob.compute(), small.compute(), heatmap.compute(), ranked=ranked
    )
    try:
        if title:
            fig.suptitle(title)
        path = Path(path)
        with atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path
