"""The event cube: one schema for every data source.

An event cube is an :class:`xarray.Dataset` on a projected grid (metres, north-up):

========================  ===================  =========================================
name                      dims                 meaning
========================  ===================  =========================================
``vv``, ``vh``            (time, y, x)         linear backscatter (gamma0 or sigma0),
                                               floating point, NaN = no data
``time``                  (time,)              acquisition time (UTC, datetime64)
``landslides``            (y, x)               uint8 mask (``label_kind="mask"``) or
                                               uint16 centroid counts (``"points"``)
``orbit_state``,          (time,)              optional per-pass coordinates:
``relative_orbit``, …                          direction (``"ascending"``/
                                               ``"descending"``) and track
========================  ===================  =========================================

attrs: ``event`` (name), ``event_time`` (ISO 8601 UTC), ``label_kind`` (``"mask"`` or
``"points"``), ``source``; CRS through rioxarray (``cube.rio.crs``). The synthetic
generator and the real-data loaders all return this schema, and :func:`validate_cube`
checks it in one place.

:data:`CHANNELS` (``pre_vv, pre_vh, post_vv, post_vh``) is the channel order of a pass
pair, of every chip and of every network input; this is its one definition. Which
passes form the pair is decided in :mod:`sarslide.passes`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from .engine.atomic import atomic_directory, recover_directory
from .engine.stores import register_lazy_handle, warn_stale_handles

__all__ = [
    "CubeError",
    "BANDS",
    "PAIR_SIDES",
    "CHANNELS",
    "LABEL_KINDS",
    "validate_cube",
    "save_cube",
    "open_cube",
    "event_time",
    "pre_event_times",
    "post_event_times",
    "NODATA_SENTINEL",
    "mask_nodata",
]

#: The polarisations of every pass, in this order.
BANDS: tuple[str, str] = ("vv", "vh")
#: The two sides of the event a pass pair averages, in this order.
PAIR_SIDES: tuple[str, str] = ("pre", "post")
#: The channel order of a pass pair, of chips and of the networks' input:
#: ``("pre_vv", "pre_vh", "post_vv", "post_vh")`` (pre-event VV, VH, then post-event).
CHANNELS: tuple[str, ...] = tuple(
    f"{side}_{band}" for side in PAIR_SIDES for band in BANDS
)
LABEL_KINDS: tuple[str, str] = ("mask", "points")


class CubeError(ValueError):
    """An event cube does not follow the schema; the message says what to change."""


#: No-data value of Planetary Computer's ``sentinel-1-rtc`` assets (and of many int16
#: rasters): never a real linear backscatter.
NODATA_SENTINEL: float = -32768.0


def _nodata_values(da: xr.DataArray) -> list[float]:
    """The sentinel and the variable's own ``nodata`` / ``_FillValue`` attribute, if
    any."""
    values = [NODATA_SENTINEL]
    for key in ("nodata", "_FillValue"):
        v = da.attrs.get(key)
        if (
            v is not None
            and np.isscalar(v)
            and np.isfinite(float(v))
            and float(v) not in values
        ):
            values.append(float(v))
    return values


def mask_nodata(cube: xr.Dataset) -> xr.Dataset:
    """``vv``/``vh`` with no-data values replaced by NaN (lazy for dask cubes).

    Masks :data:`NODATA_SENTINEL` (−32768) and each band's ``nodata`` / ``_FillValue``
    attribute (as rasterio and rioxarray write it); the attributes are then dropped,
    since NaN is the event cube's only no-data marker. Other variables are left as they
    are.
    """
    out = cube.copy()
    for band in BANDS:
        if band not in out.data_vars:
            continue
        da = out[band]
        values = _nodata_values(da)
        masked = (
            da.where(~da.isin(values)) if np.issubdtype(da.dtype, np.floating) else da
        )
        masked.attrs = {
            k: v for k, v in da.attrs.items() if k not in ("nodata", "_FillValue")
        }
        masked.encoding = dict(da.encoding)
        out[band] = masked
    return out


def event_time(cube: xr.Dataset) -> pd.Timestamp:
    """The event's origin time from ``cube.attrs["event_time"]`` (timezone-naive
    UTC)."""
    if "event_time" not in cube.attrs:
        raise CubeError(
            "cube has no attrs['event_time']; set it to the event's UTC origin time, "
            "e.g. cube.attrs['event_time'] = "
            "sarslide.events.get_event('hokkaido').time_utc.isoformat()"
        )
    stamp = pd.Timestamp(cube.attrs["event_time"])
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def _times(cube: xr.Dataset) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(cube["time"].values)


def pre_event_times(cube: xr.Dataset) -> pd.DatetimeIndex:
    """Acquisition times strictly before the event, nearest to the event first."""
    times = _times(cube)
    pre = times[times < event_time(cube)]
    return (
        pre[::-1] if pre.is_monotonic_increasing else pre.sort_values(ascending=False)
    )


def post_event_times(cube: xr.Dataset) -> pd.DatetimeIndex:
    """Acquisition times strictly after the event, nearest to the event first."""
    times = _times(cube)
    return times[times > event_time(cube)].sort_values()


def validate_cube(
    cube: xr.Dataset, *, require_labels: bool = True, check_values: bool = True
) -> xr.Dataset:
    """Check that ``cube`` follows the event-cube schema and return it unchanged.

    Parameters
    ----------
    cube:
        The dataset to check.
    require_labels:
        Whether the ``landslides`` layer must be present (a freshly acquired cube has
        none until :func:`sarslide.inventory.rasterize` adds it).
    check_values:
        Whether to read the data to find all-NaN passes and decibel values. This reads
        every pixel: loaders of large lazy (dask) cubes pass ``False`` and leave the
        check to the first computation.

    Raises
    ------
    CubeError
        With a message that names the offending value and the fix.
    """
    if not isinstance(cube, xr.Dataset):
        raise CubeError(
            f"an event cube is an xarray.Dataset, got {type(cube).__name__}"
        )
    _check_bands(cube)
    _check_time_axis(cube)
    _check_grid(cube)
    _check_labels(cube, require_labels)
    times = _check_both_sides(cube)
    if check_values:
        for band in BANDS:
            _check_band_values(cube, band, times)
    return cube


def _check_bands(cube: xr.Dataset) -> None:
    """Both :data:`BANDS` present, dims (time, y, x), floating point."""
    present = [b for b in BANDS if b in cube.data_vars]
    if len(present) != len(BANDS):
        raise CubeError(
            f"cube has bands {present} (variables {sorted(map(str, cube.data_vars))}) "
            f"but an event cube needs {list(BANDS)} as linear backscatter; rename or "
            "add the missing polarisation"
        )
    for band in BANDS:
        da = cube[band]
        if tuple(da.dims) != ("time", "y", "x"):
            raise CubeError(
                f"variable {band!r} has dims {tuple(da.dims)} but the schema needs "
                "('time', 'y', 'x'); use .transpose('time', 'y', 'x') or rename the "
                "dims"
            )
        if not np.issubdtype(da.dtype, np.floating):
            raise CubeError(
                f"variable {band!r} has dtype {da.dtype} but backscatter must be "
                "floating point with NaN for no data; convert with .astype('float32') "
                "after masking no-data"
            )


def _check_time_axis(cube: xr.Dataset) -> None:
    """At least one pass; ``time`` is datetime64."""
    if cube.sizes["time"] == 0:
        raise CubeError("cube has no passes (time dimension is empty)")
    if not np.issubdtype(cube["time"].dtype, np.datetime64):
        raise CubeError(
            f"coordinate 'time' has dtype {cube['time'].dtype}; it must be datetime64 "
            "(UTC)"
        )


def _check_grid(cube: xr.Dataset) -> None:
    """A projected CRS in metres and regular ``y`` / ``x`` axes of at least 2 pixels."""
    crs = cube.rio.crs
    if crs is None:
        raise CubeError(
            "cube has no CRS; attach the grid's projected CRS with "
            "cube.rio.write_crs('EPSG:…')"
        )
    if not crs.is_projected:
        raise CubeError(
            f"cube CRS {crs.to_string()} is geographic (degrees) but an event cube "
            "needs a projected CRS in metres; reproject with cube.rio.reproject(<UTM "
            "EPSG>, resolution=10)"
        )
    unit = (crs.linear_units or "").lower()
    if unit not in ("metre", "meter", "m", "metres", "meters"):
        raise CubeError(
            f"cube CRS {crs.to_string()} has units {unit!r}; the grid must be in metres"
        )
    for dim in ("y", "x"):
        if cube.sizes[dim] < 2:
            raise CubeError(
                f"cube has {cube.sizes[dim]} pixel(s) along {dim!r}; need at least 2"
            )
        step = np.diff(np.asarray(cube[dim].values, dtype="float64"))
        if not np.allclose(step, step[0], rtol=1e-6, atol=1e-6):
            raise CubeError(
                f"coordinate {dim!r} is not a regular grid; resample it onto one"
            )


def _check_labels(cube: xr.Dataset, require_labels: bool) -> None:
    """``landslides`` (y, x) integer with a known ``label_kind``, or absent if
    allowed."""
    kind = cube.attrs.get("label_kind")
    if "landslides" in cube.variables:
        if kind not in LABEL_KINDS:
            raise CubeError(
                f"attrs['label_kind'] is {kind!r}; set it to one of "
                f"{list(LABEL_KINDS)} to say whether 'landslides' is a mask or point "
                "counts"
            )
        lab = cube["landslides"]
        if tuple(lab.dims) != ("y", "x"):
            raise CubeError(
                f"'landslides' has dims {tuple(lab.dims)}; it must be ('y', 'x')"
            )
        if not np.issubdtype(lab.dtype, np.integer):
            raise CubeError(
                f"'landslides' has dtype {lab.dtype}; use uint8 for a mask or uint16 "
                "for counts"
            )
    elif require_labels:
        raise CubeError(
            "cube has no 'landslides' layer; add one with "
            "sarslide.inventory.rasterize(inventory, like=cube)"
        )


def _check_both_sides(cube: xr.Dataset) -> pd.DatetimeIndex:
    """Passes before and after ``attrs['event_time']``; returns the pass times."""
    evt = event_time(cube)
    times = _times(cube)
    if not (times < evt).any() or not (times > evt).any():
        raise CubeError(
            f"cube needs passes both before and after the event ({evt.isoformat()}); "
            f"its passes are {[t.strftime('%Y-%m-%d') for t in times]}"
        )
    return times


def _check_band_values(cube: xr.Dataset, band: str, times: pd.DatetimeIndex) -> None:
    """No no-data sentinels, no all-NaN pass, no decibels in ``band`` (reads the data).

    One reduction per band over (y, x) keeps this cheap; the decibel test samples the
    first pass on a grid of at most about 256 × 256 pixels.
    """
    values = _nodata_values(cube[band])
    flagged = cube[band].isin(values)
    if bool(flagged.any()):
        share = float(flagged.mean())
        raise CubeError(
            f"{band!r} holds the no-data value(s) {values} in {share:.1%} of its "
            "pixels (Planetary Computer RTC marks no data with -32768); they are not "
            "backscatter. Mask them first: cube = sarslide.cube.mask_nodata(cube)"
        )
    finite = np.isfinite(cube[band]).any(dim=("y", "x")).values
    if not finite.all():
        bad = [times[i].strftime("%Y-%m-%d %H:%M") for i in np.flatnonzero(~finite)]
        raise CubeError(
            f"pass(es) {bad} of {band!r} are all NaN (no data); drop them with "
            f"cube.drop_sel(time=...) before use"
        )
    step_y = max(cube.sizes["y"] // 256, 1)
    step_x = max(cube.sizes["x"] // 256, 1)
    sample = np.asarray(
        cube[band].isel(
            time=0, y=slice(None, None, step_y), x=slice(None, None, step_x)
        )
    )
    median = float(np.nanmedian(sample)) if np.isfinite(sample).any() else 0.0
    if median < 0:
        raise CubeError(
            f"{band!r} has median {median:.3g} < 0: it looks like decibels; event "
            "cubes hold linear backscatter, convert with 10 ** (db / 10)"
        )


def save_cube(cube: xr.Dataset, path: str | os.PathLike) -> Path:
    """Validate ``cube`` and write it as a zarr store at ``path``, atomically.

    Returns the path. An interrupted write leaves no store at ``path`` (or the previous
    one).
    """
    validate_cube(cube, require_labels=False)
    path = Path(path)
    source = cube.encoding.get("source")
    lazy = any(cube[name].chunks is not None for name in cube.variables)
    if lazy and source and path.exists() and Path(source).resolve() == path.resolve():
        raise CubeError(
            f"the cube is read lazily from {path}, the store it would overwrite: the "
            "old files would vanish under it. Save it to another path, or load it into "
            "memory first (cube = cube.load()), then save"
        )
    out = cube.copy()
    # Strings in attrs only: zarr attrs must be JSON.
    out.attrs = {
        k: (v.isoformat() if hasattr(v, "isoformat") else v)
        for k, v in out.attrs.items()
    }
    for name in out.variables:
        out[name].encoding.pop("chunks", None)
        out[name].encoding.pop("preferred_chunks", None)
    with atomic_directory(path) as tmp:
        out.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)
    warn_stale_handles(path, stacklevel=2)
    return path


def open_cube(path: str | os.PathLike, *, require_labels: bool = True) -> xr.Dataset:
    """Open a cube written by :func:`save_cube` (lazily, with dask) and validate it."""
    path = recover_directory(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no event cube at {path}; build one with save_cube(cube, path)"
        )
    try:
        cube = xr.open_zarr(path, consolidated=True, decode_coords="all")
    except Exception as err:  # truncated metadata, missing arrays, not a zarr store
        raise CubeError(
            f"the event cube at {path} is corrupt or incomplete ({type(err).__name__}: "
            f"{err}); delete it (rm -r '{path}') and save or prepare the cube again"
        ) from err
    cube = validate_cube(mask_nodata(cube), require_labels=require_labels)
    register_lazy_handle(path, cube)
    return cube
