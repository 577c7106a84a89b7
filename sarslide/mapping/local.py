"""Scenes already on disk: GeoTIFFs, a folder of them, or a static STAC catalog.

An analyst who downloaded Sentinel-1 RTC or GRD scenes (or got them on a USB stick) maps
them without a STAC API: :func:`local_cube` turns

* GeoTIFF files (``.tif``/``.tiff``), one polarisation each,
* folders of such files (searched recursively),
* a static STAC catalog or collection (``catalog.json``/``collection.json``), an item
  collection (a GeoJSON FeatureCollection of items) or a single item JSON

into an event cube (:mod:`sarslide.cube`'s schema) on the grid of the first file: its
CRS and its pixel size (or ``resolution`` metres when given), every other file
reprojected onto it. The pre/post passes are then chosen by the same rule as everywhere
(:func:`sarslide.datasets.profile_pass_pair` / :func:`sarslide.cube.pass_pair`).

Which file is which: for a GeoTIFF, the polarisation is the ``VV``/``VH`` token of its
name (any case, e.g. ``…_VV.tif``, ``s1a-iw-grd-vh-….tiff``) or else its band
description; its time is the first ``YYYYMMDDTHHMMSS`` (else ``YYYYMMDD``) in the name,
else the ``TIFFTAG_DATETIME`` tag. A STAC item gives its ``datetime``, assets whose key
is ``vv``/``vh`` in any case, and ``sat:orbit_state`` / ``sat:relative_orbit`` /
``platform``. Files of one time must hold one VV and one VH.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import rioxarray
import xarray as xr

from ..cube import BANDS, NODATA_SENTINEL, validate_cube
from .errors import MappingError

__all__ = ["LocalScene", "files_grid", "local_cube", "local_scenes"]

_TIF = (".tif", ".tiff")
_STAMP = re.compile(r"(?<!\d)(\d{8})T(\d{6})")
_DAY = re.compile(r"(?<!\d)(\d{8})(?!\d)")
_POL = re.compile(r"(?i)(?<![a-z])(vv|vh)(?![a-z])")


@dataclass(frozen=True)
class LocalScene:
    """One polarisation of one pass on disk (or at a URL named by a STAC item)."""

    href: str
    band: str  # "vv" or "vh"
    time: pd.Timestamp  # naive UTC
    orbit_state: str = "unknown"
    relative_orbit: int = 0  # 0 = not recorded
    platform: str = ""


def _naive_utc(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp


def _tif_scene(path: Path) -> LocalScene:
    import rasterio

    name = path.name
    pol = _POL.findall(path.stem)
    band = pol[-1].lower() if pol else None
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioError as err:
        raise MappingError(f"{path}: not a readable GeoTIFF ({err})") from None
    with src:
        if band is None:
            desc = " ".join(d or "" for d in src.descriptions)
            found = _POL.findall(desc)
            band = found[-1].lower() if found else None
        tag_time = src.tags().get("TIFFTAG_DATETIME")
    if band is None:
        raise MappingError(
            f"{path}: cannot tell its polarisation; name the file with VV or VH "
            "(e.g. scene_20180913_VV.tif) or set the band description"
        )
    stamp = _STAMP.search(name)
    if stamp:
        time = pd.Timestamp(f"{stamp[1]}T{stamp[2]}")
    elif (day := _DAY.search(name)) is not None:
        time = pd.Timestamp(day[1])
    elif tag_time:
        time = pd.Timestamp(tag_time.replace(":", "-", 2))
    else:
        raise MappingError(
            f"{path}: cannot tell when it was acquired; put the date in the name "
            "(YYYYMMDD or YYYYMMDDTHHMMSS) or set TIFFTAG_DATETIME"
        )
    platform = next((p.upper() for p in re.findall(r"(?i)S1[ABCD]", name)), "")
    return LocalScene(str(path), band, time, platform=platform)


def _stac_items(path: Path) -> list:
    import pystac

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MappingError(f"{path} is not a JSON file ({err})") from None
    kind = data.get("type") if isinstance(data, dict) else None
    try:
        if kind == "FeatureCollection":
            return list(pystac.ItemCollection.from_file(str(path)))
        if kind == "Feature":
            return [pystac.Item.from_file(str(path))]
        if kind in ("Catalog", "Collection"):
            return list(pystac.read_file(str(path)).get_items(recursive=True))
    # pystac raises many kinds of error for a broken catalog
    except Exception as err:  # noqa: BLE001
        raise MappingError(f"{path}: not a readable STAC {kind} ({err})") from None
    raise MappingError(
        f"{path} is JSON of type {kind!r}, not a STAC catalog, collection, item "
        "collection "
        "or item; give GeoTIFF files, a folder of them, or a static STAC catalog"
    )


def _item_scenes(item) -> list[LocalScene]:
    props = item.properties
    when = item.datetime or props.get("start_datetime")
    if when is None:
        raise MappingError(f"STAC item {item.id!r} has no datetime")
    scenes = []
    for key, asset in item.assets.items():
        if key.lower() in BANDS:
            href = asset.get_absolute_href() or asset.href
            scenes.append(
                LocalScene(
                    href=href,
                    band=key.lower(),
                    time=_naive_utc(when),
                    orbit_state=str(props.get("sat:orbit_state") or "unknown"),
                    relative_orbit=int(props.get("sat:relative_orbit") or 0),
                    platform=str(props.get("platform") or ""),
                )
            )
    return scenes


def local_scenes(sources: Sequence[str | os.PathLike]) -> list[LocalScene]:
    """Every VV/VH scene named by ``sources`` (files, folders, STAC JSON), in time
    order.

    Raises
    ------
    MappingError
        For a missing path, a file of another type, a folder without GeoTIFFs, or a
        scene whose polarisation or time cannot be told.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    scenes: list[LocalScene] = []
    for source in sources:
        path = Path(source).expanduser()
        if not path.exists():
            raise MappingError(f"{path}: no such file or folder")
        if path.is_dir():
            tifs = sorted(p for p in path.rglob("*") if p.suffix.lower() in _TIF)
            catalogs = [
                path / n
                for n in ("catalog.json", "collection.json")
                if (path / n).is_file()
            ]
            if catalogs:
                scenes += [
                    s for it in _stac_items(catalogs[0]) for s in _item_scenes(it)
                ]
            elif tifs:
                scenes += [_tif_scene(p) for p in tifs]
            else:
                raise MappingError(
                    f"{path} holds no GeoTIFF (*.tif, *.tiff) and no catalog.json"
                )
        elif path.suffix.lower() in _TIF:
            scenes.append(_tif_scene(path))
        elif path.suffix.lower() in (".json", ".geojson"):
            scenes += [s for it in _stac_items(path) for s in _item_scenes(it)]
        else:
            raise MappingError(
                f"{path}: not a GeoTIFF (.tif/.tiff) or STAC JSON; give GeoTIFF "
                "files, a "
                "folder of them, or a static STAC catalog / item collection"
            )
    if not scenes:
        raise MappingError(f"{list(map(str, sources))} name no VV or VH scene")
    return sorted(scenes, key=lambda s: (s.time, s.band))


def _by_time(scenes: Iterable[LocalScene]) -> dict[pd.Timestamp, dict[str, LocalScene]]:
    passes: dict[pd.Timestamp, dict[str, LocalScene]] = {}
    for scene in scenes:
        held = passes.setdefault(scene.time, {})
        if scene.band in held:
            raise MappingError(
                f"two {scene.band.upper()} scenes at {scene.time}: "
                f"{held[scene.band].href} "
                f"and {scene.href}; give one file per polarisation and pass"
            )
        held[scene.band] = scene
    for time, held in passes.items():
        missing = [b.upper() for b in BANDS if b not in held]
        if missing:
            have = next(iter(held.values())).href
            raise MappingError(
                f"the pass at {time} has no {' or '.join(missing)} scene (only "
                f"{have}); "
                "both polarisations are needed"
            )
    return passes


def _read(href: str) -> xr.DataArray:
    import rasterio

    try:
        da = rioxarray.open_rasterio(href, masked=True)
    except rasterio.errors.RasterioError as err:
        raise MappingError(f"{href}: not a readable GeoTIFF ({err})") from None
    if "band" in da.dims:
        da = da.isel(band=0, drop=True)
    da = da.astype("float32")
    return da.where(da != NODATA_SENTINEL)


def files_grid(sources: Sequence[str | os.PathLike]) -> tuple[str, float, tuple]:
    """``(crs, pixel size in metres, bounds in lon/lat)`` of the first scene, read from
    its header only (for checks before any pixel is read)."""
    import rasterio
    from rasterio.warp import transform_bounds

    first = local_scenes(sources)[0]
    try:
        src = rasterio.open(first.href)
    except rasterio.errors.RasterioError as err:
        raise MappingError(f"{first.href}: not a readable GeoTIFF ({err})") from None
    with src:
        if src.crs is None or not src.crs.is_projected:
            raise MappingError(
                f"{first.href} has CRS {src.crs}; mapping needs a projected grid in "
                "metres "
                "(e.g. UTM): reproject it first (gdalwarp -t_srs EPSG:326NN)"
            )
        lonlat = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        return src.crs.to_string(), float(abs(src.res[0])), tuple(map(float, lonlat))


def local_cube(
    sources: Sequence[str | os.PathLike],
    event_time,
    *,
    event: str = "local",
    resolution: float | None = None,
) -> xr.Dataset:
    """An event cube from scenes on disk (see the module docstring for what is
    accepted).

    Parameters
    ----------
    sources:
        GeoTIFF paths, folders, or STAC JSON files (catalog, collection, item
        collection, item).
    event_time:
        The event's UTC time (anything :class:`pandas.Timestamp` takes); passes before
        it are pre-event, after it post-event.
    event:
        The cube's ``attrs["event"]``.
    resolution:
        Pixel size in metres of the cube; default: the first file's own.

    Returns
    -------
    xarray.Dataset
        ``vv``, ``vh`` (time, y, x) float32 linear, NaN = no data (and -32768 masked),
        per-pass ``orbit_state``, ``relative_orbit``, ``platform``; attrs ``event``,
        ``event_time``, ``source`` (``"files"``), ``files`` (the paths read).
    """
    passes = _by_time(local_scenes(sources))
    times = sorted(passes)
    first = passes[times[0]]
    ref = _read(first["vv"].href)
    if ref.rio.crs is None or not ref.rio.crs.is_projected:
        raise MappingError(
            f"{first['vv'].href} has CRS {ref.rio.crs}; mapping needs a projected "
            "grid in "
            "metres (e.g. UTM): reproject it first (gdalwarp -t_srs EPSG:326NN)"
        )
    if resolution is not None and not np.isclose(
        abs(ref.rio.resolution()[0]), resolution
    ):
        ref = ref.rio.reproject(ref.rio.crs, resolution=float(resolution))
    from rasterio.enums import Resampling

    bands: dict[str, list[xr.DataArray]] = {b: [] for b in BANDS}
    for time in times:
        for band in BANDS:
            da = _read(passes[time][band].href)
            if (
                da.rio.crs != ref.rio.crs
                or da.shape != ref.shape
                or not (
                    np.allclose(da["x"], ref["x"]) and np.allclose(da["y"], ref["y"])
                )
            ):
                da = da.rio.reproject_match(ref, resampling=Resampling.bilinear)
                da = da.assign_coords(x=ref["x"], y=ref["y"])
            bands[band].append(da.drop_vars("spatial_ref", errors="ignore"))
    t = pd.DatetimeIndex(times)
    cube = xr.Dataset(
        {
            b: xr.concat(bands[b], dim="time").assign_coords(time=t).astype("float32")
            for b in BANDS
        },
        attrs={
            "event": event,
            "event_time": _naive_utc(event_time).isoformat() + "+00:00",
            "source": "files",
            "files": [passes[tm][b].href for tm in times for b in BANDS],
        },
    )
    cube = cube.assign_coords(
        orbit_state=(
            "time",
            np.array([passes[tm]["vv"].orbit_state for tm in times], dtype=str),
        ),
        relative_orbit=(
            "time",
            np.array([passes[tm]["vv"].relative_orbit for tm in times]),
        ),
        platform=(
            "time",
            np.array([passes[tm]["vv"].platform for tm in times], dtype=str),
        ),
    )
    cube = cube.transpose("time", "y", "x").rio.write_crs(ref.rio.crs)
    return validate_cube(cube, require_labels=False)
