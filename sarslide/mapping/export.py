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
  into a PNG (matplotlib's Agg canvas; no display needed);
* :func:`write_map_folder` writes a whole :class:`~sarslide.mapping.SceneMap` into one
  folder (:data:`MAP_FILES`): the three rasters as COGs carrying the map's provenance,
  the ranked cells, the quick-look, the web map and ``map.json``
  (:func:`map_record`), all appearing together or not at all.

Every write is atomic (:mod:`sarslide.engine.atomic`). geopandas, shapely and matplotlib
are imported only by the functions that need them, so ``import sarslide.mapping`` stays
light.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from ..engine.atomic import atomic_directory, atomic_file
from .calibration import BINARY_NODATA
from .errors import MappingError
from .provenance import provenance_tags

if TYPE_CHECKING:
    import geopandas as gpd

    from .pipeline import SceneMap

__all__ = [
    "CELL_COLUMNS",
    "MAP_FILES",
    "cells_frame",
    "map_record",
    "write_cells",
    "write_cog",
    "write_map_folder",
    "write_quicklook",
]


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
#: follow).
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


#: The files of a map folder (:func:`write_map_folder`), by kind, in the order written.
MAP_FILES: dict[str, str] = {
    "probability": "landslide_probability.tif",
    "binary": "landslide_map.tif",
    "density": "landslide_density.tif",
    "cells_geojson": "most_affected_cells.geojson",
    "cells_csv": "most_affected_cells.csv",
    "quicklook": "quicklook.png",
    "web_map": "map.html",
    "record": "map.json",
}
#: How many ranked cells the quick-look numbers.
QUICKLOOK_CELLS = 10
_CELLS_CRS = ("lonlat", "native")


def _json_ready(value: Any) -> Any:
    """NaN → None, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def map_record(scene_map: SceneMap, *, cells_crs: str = "lonlat") -> dict[str, Any]:
    """What ``map.json`` holds: the event, the scene, the settings, the provenance (and
    its GeoTIFF tags), the threshold, window, cell size, areas, passes, the quality
    block (with the baseline's threshold) where truth exists, and the files.

    Values are as computed (NaN where undefined); :func:`write_map_folder` writes NaN as
    JSON ``null``.
    """
    scene, prov = scene_map.scene, scene_map.provenance
    event = scene.event
    quality = scene_map.quality
    if quality is not None:
        baseline = {
            **quality["log_ratio_baseline"],
            "threshold": scene_map.baseline_threshold,
        }
        quality = {**quality, "log_ratio_baseline": baseline}
    return {
        "event": event.name,
        "title": event.title,
        "quicklook_title": scene_map.title,
        "event_time_utc": event.time_utc.isoformat(),
        "bounds_lonlat": list(event.bounds_lonlat),
        "crs": scene_map.crs,
        "resolution_m": scene.resolution_m,
        "source": prov.data_source,
        "synthetic": prov.synthetic,
        "collection": prov.collection,
        "catalog": scene.catalog,
        "input_files": list(scene.files),
        "provenance": prov.to_dict(),
        "tags": provenance_tags(prov),
        "profile": scene.profile,
        "profile_overrides": list(scene.overrides),
        "model": scene_map.model,
        "threshold": scene_map.threshold,
        "threshold_choice": scene_map.threshold_choice,
        "window": scene_map.window,
        "cell_size_m": scene_map.cell_size,
        "mapped_area_km2": scene_map.mapped_area_km2,
        "valid_area_km2": scene_map.valid_area_km2,
        "pre_times": list(prov.pre_passes),
        "post_times": list(prov.post_passes),
        "cells_geojson_crs": "EPSG:4326" if cells_crs == "lonlat" else scene_map.crs,
        "quality": quality,
        "files": dict(MAP_FILES),
        "sarslide_version": prov.version,
    }


def write_map_folder(
    scene_map: SceneMap,
    folder: str | os.PathLike,
    *,
    cells_crs: str = "lonlat",
    tiles: str | None = "default",
) -> dict[str, Path]:
    """Write a map into ``folder``, replacing it whole once every file is complete.

    The files (:data:`MAP_FILES`) are built in a hidden sibling folder that replaces
    ``folder`` only at the end (:func:`sarslide.engine.atomic.atomic_directory`): a
    killed run leaves the previous map whole, a failed one no folder. A folder the
    package did not write is refused before anything is written.

    Parameters
    ----------
    scene_map:
        :func:`sarslide.mapping.map_scene`'s result.
    folder:
        The map folder (created).
    cells_crs:
        The ranked cells' GeoJSON in ``"lonlat"`` (RFC 7946, EPSG:4326) or in the map's
        own CRS (``"native"``); the CSV always holds the map's CRS.
    tiles:
        The web map's basemap (:func:`sarslide.mapping.web_map`; ``None``: none).

    Returns
    -------
    dict
        ``{kind: path}`` of the files in ``folder``, in the order of :data:`MAP_FILES`.
    """
    from .webmap import web_map, write_web_map

    if cells_crs not in _CELLS_CRS:
        raise MappingError(
            f"cells_crs={cells_crs!r}: use 'lonlat' (EPSG:4326) or 'native' (the "
            "map's CRS)"
        )
    folder = Path(folder)
    tags = provenance_tags(scene_map.provenance)
    heatmap, ranked = scene_map.heatmap, scene_map.ranked
    with atomic_directory(folder) as tmp:
        tmp.mkdir(parents=True)
        for kind, raster in (
            ("probability", scene_map.probability),
            ("binary", scene_map.binary),
            ("density", heatmap),
        ):
            write_cog(raster, tmp / MAP_FILES[kind], tags=tags)
        write_cells(
            cells_frame(ranked, heatmap),
            tmp / MAP_FILES["cells_geojson"],
            tmp / MAP_FILES["cells_csv"],
            geojson_crs="EPSG:4326" if cells_crs == "lonlat" else "native",
        )
        write_quicklook(
            scene_map.probability,
            scene_map.binary,
            heatmap,
            tmp / MAP_FILES["quicklook"],
            ranked=ranked.head(QUICKLOOK_CELLS),
            title=scene_map.title,
        )
        write_web_map(
            web_map(heatmap, ranked, tiles=tiles, title=scene_map.title),
            tmp / MAP_FILES["web_map"],
        )
        record = _json_ready(map_record(scene_map, cells_crs=cells_crs))
        (tmp / MAP_FILES["record"]).write_text(json.dumps(record, indent=2))
    return {kind: folder / name for kind, name in MAP_FILES.items()}
