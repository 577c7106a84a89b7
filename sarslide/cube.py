"""The event cube: one schema for every data source.

An event cube is an :class:`xarray.Dataset` on a projected grid (metres, north-up):

========================  ===================  ==========================================
name                      dims                 meaning
========================  ===================  ==========================================
``vv``, ``vh``            (time, y, x)         linear backscatter (gamma0 or sigma0),
                                               floating point, NaN = no data
``time``                  (time,)              acquisition time (UTC, datetime64)
``landslides``            (y, x)               uint8 mask (``label_kind="mask"``) or
                                               uint16 centroid counts (``"points"``)
``orbit_state`` etc.      (time,)              optional per-pass coordinates
========================  ===================  ==========================================

attrs: ``event`` (name), ``event_time`` (ISO 8601 UTC), ``label_kind`` (``"mask"`` or
``"points"``), ``source``; CRS through rioxarray (``cube.rio.crs``). The synthetic
generator and the real-data loaders all return this schema, and :func:`validate_cube`
checks it in one place.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from .atomic import atomic_directory

__all__ = [
    "CubeError",
    "BANDS",
    "LABEL_KINDS",
    "validate_cube",
    "save_cube",
    "open_cube",
    "event_time",
    "pre_event_times",
    "post_event_times",
    "pass_pair",
]

BANDS: tuple[str, str] = ("vv", "vh")
LABEL_KINDS: tuple[str, str] = ("mask", "points")


class CubeError(ValueError):
    """An event cube does not follow the schema; the message says what to change."""


def event_time(cube: xr.Dataset) -> pd.Timestamp:
    """The event's origin time from ``cube.attrs["event_time"]`` (timezone-naive UTC)."""
    if "event_time" not in cube.attrs:
        raise CubeError(
            "cube has no attrs['event_time']; set it to the event's UTC origin time, e.g. "
            "cube.attrs['event_time'] = sarslide.events.get_event('hokkaido').time_utc.isoformat()"
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
    return pre[::-1] if pre.is_monotonic_increasing else pre.sort_values(ascending=False)


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
        every pixel: loaders of large lazy (dask) cubes pass ``False`` and leave the check
        to the first computation.

    Raises
    ------
    CubeError
        With a message that names the offending value and the fix.
    """
    if not isinstance(cube, xr.Dataset):
        raise CubeError(f"an event cube is an xarray.Dataset, got {type(cube).__name__}")
    present = [b for b in BANDS if b in cube.data_vars]
    if len(present) != len(BANDS):
        raise CubeError(
            f"cube has bands {present} (variables {sorted(map(str, cube.data_vars))}) but an "
            f"event cube needs {list(BANDS)} as linear backscatter; rename or add the missing "
            "polarisation"
        )
    for band in BANDS:
        da = cube[band]
        if tuple(da.dims) != ("time", "y", "x"):
            raise CubeError(
                f"variable {band!r} has dims {tuple(da.dims)} but the schema needs "
                "('time', 'y', 'x'); use .transpose('time', 'y', 'x') or rename the dims"
            )
        if not np.issubdtype(da.dtype, np.floating):
            raise CubeError(
                f"variable {band!r} has dtype {da.dtype} but backscatter must be floating point "
                "with NaN for no data; convert with .astype('float32') after masking no-data"
            )
    if cube.sizes["time"] == 0:
        raise CubeError("cube has no passes (time dimension is empty)")
    if not np.issubdtype(cube["time"].dtype, np.datetime64):
        raise CubeError(
            f"coordinate 'time' has dtype {cube['time'].dtype}; it must be datetime64 (UTC)"
        )
    crs = cube.rio.crs
    if crs is None:
        raise CubeError(
            "cube has no CRS; attach the grid's projected CRS with cube.rio.write_crs('EPSG:…')"
        )
    if not crs.is_projected:
        raise CubeError(
            f"cube CRS {crs.to_string()} is geographic (degrees) but an event cube needs a "
            "projected CRS in metres; reproject with cube.rio.reproject(<UTM EPSG>, resolution=10)"
        )
    unit = (crs.linear_units or "").lower()
    if unit not in ("metre", "meter", "m", "metres", "meters"):
        raise CubeError(f"cube CRS {crs.to_string()} has units {unit!r}; the grid must be in metres")
    for dim in ("y", "x"):
        if cube.sizes[dim] < 2:
            raise CubeError(f"cube has {cube.sizes[dim]} pixel(s) along {dim!r}; need at least 2")
        step = np.diff(np.asarray(cube[dim].values, dtype="float64"))
        if not np.allclose(step, step[0], rtol=1e-6, atol=1e-6):
            raise CubeError(f"coordinate {dim!r} is not a regular grid; resample it onto one")
    kind = cube.attrs.get("label_kind")
    if "landslides" in cube.variables:
        if kind not in LABEL_KINDS:
            raise CubeError(
                f"attrs['label_kind'] is {kind!r}; set it to one of {list(LABEL_KINDS)} "
                "to say whether 'landslides' is a mask or point counts"
            )
        lab = cube["landslides"]
        if tuple(lab.dims) != ("y", "x"):
            raise CubeError(f"'landslides' has dims {tuple(lab.dims)}; it must be ('y', 'x')")
        if not np.issubdtype(lab.dtype, np.integer):
            raise CubeError(
                f"'landslides' has dtype {lab.dtype}; use uint8 for a mask or uint16 for counts"
            )
    elif require_labels:
        raise CubeError(
            "cube has no 'landslides' layer; add one with "
            "sarslide.inventory.rasterize(inventory, like=cube)"
        )
    evt = event_time(cube)
    times = _times(cube)
    if not (times < evt).any() or not (times > evt).any():
        raise CubeError(
            f"cube needs passes both before and after the event ({evt.isoformat()}); "
            f"its passes are {[t.strftime('%Y-%m-%d') for t in times]}"
        )
    if not check_values:
        return cube
    # Value checks read the data: one reduction per band over (y, x) keeps this cheap.
    for band in BANDS:
        finite = np.isfinite(cube[band]).any(dim=("y", "x")).values
        if not finite.all():
            bad = [times[i].strftime("%Y-%m-%d %H:%M") for i in np.flatnonzero(~finite)]
            raise CubeError(
                f"pass(es) {bad} of {band!r} are all NaN (no data); drop them with "
                f"cube.drop_sel(time=...) before use"
            )
        step_y = max(cube.sizes["y"] // 256, 1)
        step_x = max(cube.sizes["x"] // 256, 1)
        sample = np.asarray(cube[band].isel(time=0, y=slice(None, None, step_y), x=slice(None, None, step_x)))
        median = float(np.nanmedian(sample)) if np.isfinite(sample).any() else 0.0
        if median < 0:
            raise CubeError(
                f"{band!r} has median {median:.3g} < 0: it looks like decibels; event cubes "
                f"hold linear backscatter, convert with 10 ** (db / 10)"
            )
    return cube


def pass_pair(
    cube: xr.Dataset,
    n_pre: int = 1,
    n_post: int = 1,
    orbit_state: str | None = None,
) -> xr.Dataset:
    """Average the ``n_pre`` passes nearest before and ``n_post`` nearest after the event.

    Averaging is done in linear power with NaN ignored (a pixel is NaN only where every
    averaged pass is NaN), which lowers speckle and is how multi-pass change detection is
    usually done.

    Parameters
    ----------
    cube:
        A valid event cube.
    n_pre, n_post:
        How many passes to average on each side (>= 1).
    orbit_state:
        If given, only passes whose ``orbit_state`` coordinate equals it are used.

    Returns
    -------
    xarray.Dataset
        Variables ``pre_vv``, ``pre_vh``, ``post_vv``, ``post_vh`` with dims (y, x),
        float32, plus ``landslides`` if the cube has it; attrs record the passes used.
    """
    if n_pre < 1 or n_post < 1:
        raise ValueError(f"n_pre={n_pre}, n_post={n_post}: average at least one pass per side")
    if orbit_state is not None:
        if "orbit_state" not in cube.coords:
            raise CubeError(
                f"orbit_state={orbit_state!r} asked for but the cube has no 'orbit_state' coordinate"
            )
        cube = cube.sel(time=cube["orbit_state"] == orbit_state)
    pre_t, post_t = pre_event_times(cube), post_event_times(cube)
    for side, times, n in (("pre", pre_t, n_pre), ("post", post_t, n_post)):
        if len(times) < n:
            raise CubeError(
                f"asked for {n} {side}-event pass(es) but the cube has {len(times)}"
                + (f" with orbit_state={orbit_state!r}" if orbit_state else "")
                + "; lower the number of passes or load more"
            )
    out = xr.Dataset(coords={"y": cube["y"], "x": cube["x"]})
    for side, times, n in (("pre", pre_t, n_pre), ("post", post_t, n_post)):
        sel = cube.sel(time=times[:n])
        for band in BANDS:
            out[f"{side}_{band}"] = sel[band].mean("time", skipna=True).astype("float32")
    if "landslides" in cube.variables:
        out["landslides"] = cube["landslides"]
    out.attrs.update(cube.attrs)
    out.attrs["pre_times"] = [t.isoformat() for t in pre_t[:n_pre]]
    out.attrs["post_times"] = [t.isoformat() for t in post_t[:n_post]]
    if cube.rio.crs is not None:
        out = out.rio.write_crs(cube.rio.crs)
    return out


def save_cube(cube: xr.Dataset, path: str | os.PathLike) -> Path:
    """Validate ``cube`` and write it as a zarr store at ``path``, atomically.

    Returns the path. An interrupted write leaves no store at ``path`` (or the previous one).
    """
    validate_cube(cube, require_labels=False)
    path = Path(path)
    out = cube.copy()
    # Strings in attrs only: zarr attrs must be JSON.
    out.attrs = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in out.attrs.items()}
    for name in out.variables:
        out[name].encoding.pop("chunks", None)
        out[name].encoding.pop("preferred_chunks", None)
    with atomic_directory(path) as tmp:
        out.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)
    return path


def open_cube(path: str | os.PathLike, *, require_labels: bool = True) -> xr.Dataset:
    """Open a cube written by :func:`save_cube` (lazily, with dask) and validate it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no event cube at {path}; build one with save_cube(cube, path)")
    cube = xr.open_zarr(path, consolidated=True, decode_coords="all")
    return validate_cube(cube, require_labels=require_labels)
