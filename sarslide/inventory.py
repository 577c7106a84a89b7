"""Landslide inventories -> label rasters on the event-cube grid.

An inventory is either a set of **polygons** (mapped landslide outlines, e.g. the
Hokkaido inventory of Zhang et al. 2019) or a set of **points** (landslide centroids,
e.g. the GNS Kaikōura inventory). Both are rasterised onto the grid of an event cube:

* polygons -> ``uint8`` mask, 1 where the pixel centre lies inside any polygon;
* points -> ``uint16`` counts, the number of points that fall inside each pixel.

Inputs may be a :class:`geopandas.GeoDataFrame` or a path to a GeoPackage, shapefile
(also zipped), GeoJSON, KML/KMZ or CSV file with longitude/latitude columns. Any input
CRS is reprojected to the cube's CRS. Pure geometry -> raster: no network here; the
events' published inventories are downloaded by
:func:`sarslide.acquire.fetch_inventory`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import rioxarray  # noqa: F401  (registers the .rio accessor)
import shapely
import shapely.geometry
import xarray as xr
from rasterio.enums import MergeAlg

from sarslide.cube import CubeError, validate_cube

__all__ = [
    "InventoryWarning",
    "GEOSPATIAL_SUFFIXES",
    "read_inventory",
    "inventory_kind",
    "rasterize",
    "with_labels",
    "polygons_from_mask",
]

#: File endings :func:`read_inventory` understands (``.zip`` = zipped
#: shapefile/GeoPackage).
GEOSPATIAL_SUFFIXES: tuple[str, ...] = (
    ".gpkg",
    ".shp",
    ".geojson",
    ".json",
    ".kml",
    ".kmz",
    ".csv",
    ".zip",
    ".fgb",
    ".parquet",
)
_LON_NAMES = ("lon", "longitude", "long", "lng", "x")
_LAT_NAMES = ("lat", "latitude", "y")
_MAX_COUNT = np.iinfo(np.uint16).max


class InventoryWarning(UserWarning):
    """The inventory does not overlap the cube, or holds no usable geometry."""


def _read_csv(path: Path, crs: str | None) -> gpd.GeoDataFrame:
    table = pd.read_csv(path)
    lower = {str(c).strip().lower(): c for c in table.columns}
    lon = next((lower[n] for n in _LON_NAMES if n in lower), None)
    lat = next((lower[n] for n in _LAT_NAMES if n in lower), None)
    if lon is None or lat is None:
        raise ValueError(
            f"CSV inventory {path} has columns {list(table.columns)}; it needs a "
            f"longitude column (one of {list(_LON_NAMES)}) and a latitude column (one "
            f"of {list(_LAT_NAMES)}), case-insensitive"
        )
    if crs is None:
        _check_lonlat_ranges(path, table[lon], table[lat], (lon, lat))
    geometry = gpd.points_from_xy(table[lon], table[lat])
    return gpd.GeoDataFrame(table, geometry=geometry, crs=crs or "EPSG:4326")


def _check_lonlat_ranges(
    path: Path, lon: pd.Series, lat: pd.Series, names: tuple
) -> None:
    """Refuse coordinates read as lon/lat that cannot be degrees (e.g. projected
    metres)."""
    lon = pd.to_numeric(lon, errors="coerce")
    lat = pd.to_numeric(lat, errors="coerce")
    bad_lon = ~lon.between(-180, 180) & lon.notna()
    bad_lat = ~lat.between(-90, 90) & lat.notna()
    if bad_lon.any() or bad_lat.any():
        raise ValueError(
            f"CSV inventory {path}: columns {names[0]!r}/{names[1]!r} are read as "
            f"longitude/latitude (EPSG:4326) but span {lon.min():.6g}..{lon.max():.6g} "
            f"and {lat.min():.6g}..{lat.max():.6g}, outside ±180/±90 degrees: they "
            "look like projected coordinates (metres). Pass their CRS, e.g. "
            "read_inventory(path, crs='EPSG:32654') or rasterize(path, cube, "
            "crs='EPSG:32654')"
        )


def _open_inventory(
    inventory: str | os.PathLike | gpd.GeoDataFrame | gpd.GeoSeries, crs: str | None
) -> tuple[gpd.GeoDataFrame, str]:
    """A copy of a GeoDataFrame/GeoSeries, or the file read by its type; and its
    name."""
    if isinstance(inventory, gpd.GeoSeries):
        inventory = gpd.GeoDataFrame(geometry=inventory)
    if isinstance(inventory, gpd.GeoDataFrame):
        gdf = inventory.copy()
        source = "the GeoDataFrame"
        try:
            _ = gdf.geometry
        except AttributeError:  # no active geometry column, e.g. gpd.GeoDataFrame()
            raise ValueError(
                "the GeoDataFrame has no geometry column (columns: "
                f"{list(gdf.columns)}{', no rows' if len(gdf) == 0 else ''}); an "
                "inventory needs landslide polygons or points, e.g. "
                "gpd.GeoDataFrame(geometry=[...], crs='EPSG:4326')"
            ) from None
    else:
        path = Path(inventory)
        source = str(path)
        if not path.exists():
            raise FileNotFoundError(f"no inventory file at {path}")
        suffix = path.suffix.lower()
        if suffix not in GEOSPATIAL_SUFFIXES and not path.is_dir():
            raise ValueError(
                f"inventory {path} has an unknown file type {suffix!r}; use one of "
                f"{list(GEOSPATIAL_SUFFIXES)} or pass a GeoDataFrame"
            )
        if suffix == ".csv":
            gdf = _read_csv(path, crs)
        elif suffix == ".parquet":
            gdf = gpd.read_parquet(path)
        else:
            gdf = gpd.read_file(path)
    return gdf, source


def read_inventory(
    inventory: str | os.PathLike | gpd.GeoDataFrame | gpd.GeoSeries,
    *,
    crs: str | None = None,
) -> gpd.GeoDataFrame:
    """Read an inventory into a GeoDataFrame with a CRS and 2-D geometries.

    Parameters
    ----------
    inventory:
        A GeoDataFrame/GeoSeries, or a path to a GeoPackage, shapefile (``.shp`` or a
        ``.zip`` holding one), GeoJSON, FlatGeobuf, GeoParquet, KML/KMZ, or a CSV with
        longitude/latitude columns (``lon``/``lat``, ``longitude``/``latitude`` or
        ``x``/``y``).
    crs:
        CRS of the input when the file does not say (CSV coordinates default to
        EPSG:4326); ignored for inputs that carry their own CRS.

    Returns
    -------
    geopandas.GeoDataFrame
        Rows with empty or missing geometry dropped, Z coordinates removed.

    Raises
    ------
    FileNotFoundError, ValueError
        For a missing file, an unknown file type or an input without a CRS.
    """
    gdf, source = _open_inventory(inventory, crs)
    if gdf.crs is None:
        if crs is None:
            raise ValueError(
                f"{source} has no CRS; pass crs='EPSG:…' (e.g. 'EPSG:4326' for "
                "lon/lat) or set it with gdf.set_crs(...)"
            )
        gdf = gdf.set_crs(crs)
    gdf = gdf[~(gdf.geometry.is_empty | gdf.geometry.isna())]
    if gdf.geometry.has_z.any():
        gdf = gdf.set_geometry(gdf.geometry.force_2d())
    return gdf


def inventory_kind(gdf: gpd.GeoDataFrame) -> str:
    """``"points"`` for (multi)point inventories, ``"mask"`` for (multi)polygon ones.

    Raises
    ------
    ValueError
        For lines, mixed geometry kinds or an empty inventory.
    """
    types = set(gdf.geom_type.dropna().unique())
    if not types:
        raise ValueError("the inventory holds no geometries")
    if types <= {"Point", "MultiPoint"}:
        return "points"
    if types <= {"Polygon", "MultiPolygon"}:
        return "mask"
    raise ValueError(
        f"inventory geometry types {sorted(types)} cannot be rasterised as one label "
        "layer; use only polygons (a mask) or only points (counts), e.g. "
        "gdf[gdf.geom_type == 'Point']"
    )


def _grid(like: xr.Dataset | xr.DataArray):
    crs = like.rio.crs
    if crs is None:
        raise CubeError(
            "the target grid has no CRS; attach one with like.rio.write_crs('EPSG:…')"
        )
    for dim in ("y", "x"):
        if dim not in like.dims:
            raise CubeError(
                f"the target grid has dims {tuple(like.dims)}; it needs 'y' and 'x'"
            )
    shape = (like.sizes["y"], like.sizes["x"])
    return crs, like.rio.transform(recalc=True), shape


def rasterize(
    inventory: str | os.PathLike | gpd.GeoDataFrame | gpd.GeoSeries,
    like: xr.Dataset | xr.DataArray,
    *,
    kind: str | None = None,
    crs: str | None = None,
    all_touched: bool = False,
) -> xr.DataArray:
    """Rasterise a landslide inventory onto the grid of ``like``.

    Parameters
    ----------
    inventory:
        Polygons or points: a GeoDataFrame or a file path (see :func:`read_inventory`).
    like:
        An event cube (or any DataArray/Dataset with ``y``/``x`` pixel-centre
        coordinates and a rioxarray CRS); the labels are built on its grid.
    kind:
        ``"mask"`` or ``"points"``; by default taken from the geometry type.
    crs:
        CRS of the input when the file carries none (CSV defaults to EPSG:4326).
    all_touched:
        Polygons only: mark every pixel a polygon touches instead of the pixels whose
        centre is inside (the default, which keeps the rasterised area unbiased).

    Returns
    -------
    xarray.DataArray
        Named ``landslides``, dims (y, x) with the coordinates and CRS of ``like``:
        uint8 0/1 for polygons, uint16 counts of points per pixel for points. Attribute
        ``label_kind`` says which, ``n_features`` and ``n_features_inside`` how many
        geometries the inventory held and how many touch the grid.

    Warns
    -----
    InventoryWarning
        When no geometry falls on the grid (the labels are then all zero).
    """
    gdf = read_inventory(inventory, crs=crs)
    grid_crs, transform, shape = _grid(like)
    kind = _checked_kind(gdf, kind)
    gdf = gdf.to_crs(grid_crs)
    bounds = _grid_bounds(transform, shape)
    inside = gdf.geometry.intersects(shapely.box(*bounds))
    n_inside = int(inside.sum())
    data = _burn(gdf.geometry[inside], kind, shape, transform, all_touched)
    _warn_if_no_labels(gdf, n_inside, data, bounds, grid_crs)
    out = xr.DataArray(
        data,
        dims=("y", "x"),
        coords={"y": like["y"].values, "x": like["x"].values},
        name="landslides",
        attrs={
            "label_kind": kind,
            "n_features": int(len(gdf)),
            "n_features_inside": n_inside,
            "long_name": "landslide mask"
            if kind == "mask"
            else "landslide points per pixel",
        },
    )
    return out.rio.write_crs(grid_crs)


def _checked_kind(gdf: gpd.GeoDataFrame, kind: str | None) -> str:
    """The label kind: ``kind`` if given and it matches the geometries, else detected.

    An empty inventory takes ``kind`` (default ``"mask"``).
    """
    detected = inventory_kind(gdf) if len(gdf) else (kind or "mask")
    kind = kind or detected
    if kind not in ("mask", "points"):
        raise ValueError(
            f"kind={kind!r}; use 'mask' (polygons) or 'points' (centroids)"
        )
    if kind != detected:
        raise ValueError(
            f"kind={kind!r} but the inventory holds {detected!r} geometries; drop "
            "kind= to use the geometry type"
        )
    return kind


def _grid_bounds(
    transform, shape: tuple[int, int]
) -> tuple[float, float, float, float]:
    """The grid's outer edges ``(xmin, ymin, xmax, ymax)`` in its own CRS (metres)."""
    west, north = transform.c, transform.f
    east, south = west + transform.a * shape[1], north + transform.e * shape[0]
    xmin, xmax = sorted((west, east))
    ymin, ymax = sorted((south, north))
    return xmin, ymin, xmax, ymax


def _burn(
    geoms: gpd.GeoSeries,
    kind: str,
    shape: tuple[int, int],
    transform,
    all_touched: bool,
) -> np.ndarray:
    """Rasterise ``geoms`` (already in the grid's CRS) to (ny, nx) labels.

    ``"points"``: GDAL adds 1 per point into the pixel that holds it (multi-points are
    exploded), giving uint16 counts capped at 65535. ``"mask"``: uint8 1 where a pixel
    centre lies inside a polygon (every touched pixel with ``all_touched``).
    """
    points = kind == "points"
    if points:
        geoms = geoms.explode(index_parts=False)
    if not len(geoms):
        return np.zeros(shape, dtype=np.uint16 if points else np.uint8)
    merge_alg, touched, dtype = (
        (MergeAlg.add, False, "uint32")
        if points
        else (MergeAlg.replace, all_touched, "uint8")
    )
    burned = rasterio.features.rasterize(
        ((g, 1) for g in geoms),
        out_shape=shape,
        transform=transform,
        fill=0,
        all_touched=touched,
        merge_alg=merge_alg,
        dtype=dtype,
    )
    return np.minimum(burned, _MAX_COUNT).astype(np.uint16) if points else burned


def _warn_if_no_labels(
    gdf: gpd.GeoDataFrame, n_inside: int, data: np.ndarray, bounds: tuple, grid_crs
) -> None:
    """:class:`InventoryWarning` when the labels came out all zero (for the caller of
    :func:`rasterize`, ``stacklevel=3``): an empty inventory, or none on the grid."""
    xmin, ymin, xmax, ymax = bounds
    if len(gdf) == 0:
        warnings.warn(
            "the inventory holds no features (empty, or only empty geometries); the "
            "labels are all zero — check that the right inventory was passed",
            InventoryWarning,
            stacklevel=3,
        )
    elif n_inside == 0 or not data.any():
        warnings.warn(
            f"none of the inventory's {len(gdf)} features falls on the cube grid (x "
            f"{xmin:.0f}..{xmax:.0f}, y {ymin:.0f}..{ymax:.0f} in "
            f"{grid_crs.to_string()}); the labels are all zero — check the inventory "
            "and the cube cover the same area",
            InventoryWarning,
            stacklevel=3,
        )


def with_labels(
    cube: xr.Dataset,
    inventory: str | os.PathLike | gpd.GeoDataFrame | gpd.GeoSeries,
    **kwargs,
) -> xr.Dataset:
    """Return ``cube`` with a ``landslides`` layer rasterised from ``inventory``.

    Keyword arguments go to :func:`rasterize`. The result has ``attrs["label_kind"]``
    set and is checked with :func:`sarslide.cube.validate_cube`.
    """
    labels = rasterize(inventory, like=cube, **kwargs)
    out = cube.copy()
    out["landslides"] = (
        ("y", "x"),
        labels.values,
        {"long_name": labels.attrs["long_name"]},
    )
    out.attrs["label_kind"] = labels.attrs["label_kind"]
    out.attrs["n_landslide_features"] = labels.attrs["n_features_inside"]
    return validate_cube(out)


def polygons_from_mask(labels: xr.DataArray) -> gpd.GeoDataFrame:
    """Vectorise a label raster: one polygon per 4-connected group of labelled pixels.

    The inverse of :func:`rasterize` for masks (pixel-aligned polygons rasterise back to
    the same pixels), useful to write labels or predictions as a GeoPackage/GeoJSON.

    Parameters
    ----------
    labels:
        (y, x) integer raster with a rioxarray CRS; pixels > 0 are landslide.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``geometry`` (polygons in the raster's CRS) and ``area_m2``.
    """
    crs, transform, _ = _grid(labels)
    mask = np.asarray(labels.values) > 0
    shapes = rasterio.features.shapes(
        mask.astype("uint8"), mask=mask, transform=transform, connectivity=4
    )
    geoms = [shapely.geometry.shape(geom) for geom, _ in shapes]
    gdf = gpd.GeoDataFrame(geometry=geoms, crs=crs)
    gdf["area_m2"] = gdf.area
    return gdf
