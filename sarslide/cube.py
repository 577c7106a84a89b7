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
``orbit_state``,          (time,)              optional per-pass coordinates: direction
``relative_orbit``, …                          (``"ascending"``/``"descending"``) and track
========================  ===================  ==========================================

attrs: ``event`` (name), ``event_time`` (ISO 8601 UTC), ``label_kind`` (``"mask"`` or
``"points"``), ``source``; CRS through rioxarray (``cube.rio.crs``). The synthetic
generator and the real-data loaders all return this schema, and :func:`validate_cube`
checks it in one place.

Which passes form the before/after pair is decided in one place too, :func:`pass_pair`:
the event's named passes (the paper profile), passes the caller names, or the nearest
passes from one orbit track (:func:`cube_passes` lists each pass with its track).
The pair's variables, in :data:`CHANNELS` order (``pre_vv, pre_vh, post_vv, post_vh``),
are the channel order of every chip and every network input; this is its one definition.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from .engine.atomic import atomic_directory, recover_directory

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
    "pass_pair",
    "cube_passes",
    "same_track_possible",
    "PassSelectionError",
    "S1_REPEAT_DAYS",
    "NODATA_SENTINEL",
    "mask_nodata",
    "StaleHandleWarning",
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


class StaleHandleWarning(UserWarning):
    """A store was replaced while cubes opened lazily from it were still alive."""


# path -> weak references to the cubes open_cube returned for it (see save_cube)
_LAZY_HANDLES: dict[str, list] = {}


def _live_handles(path: Path) -> list:
    """Weak references to cubes from ``open_cube(path)`` that still read it lazily."""
    key = str(path.resolve())
    if _LAZY_HANDLES.get(key):
        import gc

        gc.collect()  # xarray objects sit in reference cycles: drop the dead ones first

    def lazy(ref) -> bool:
        cube = ref()
        return cube is not None and any(
            v.chunks is not None for v in cube.variables.values()
        )

    alive = [r for r in _LAZY_HANDLES.get(key, []) if lazy(r)]
    _LAZY_HANDLES[key] = alive
    return alive


#: No-data value of Planetary Computer's ``sentinel-1-rtc`` assets (and of many int16
#: rasters): never a real linear backscatter.
NODATA_SENTINEL: float = -32768.0


def _nodata_values(da: xr.DataArray) -> list[float]:
    """The sentinel and the variable's own ``nodata`` / ``_FillValue`` attribute, if any."""
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
    attribute (as rasterio and rioxarray write it); the attributes are then dropped, since
    NaN is the event cube's only no-data marker. Other variables are left as they are.
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
        every pixel: loaders of large lazy (dask) cubes pass ``False`` and leave the check
        to the first computation.

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


def _check_time_axis(cube: xr.Dataset) -> None:
    """At least one pass; ``time`` is datetime64."""
    if cube.sizes["time"] == 0:
        raise CubeError("cube has no passes (time dimension is empty)")
    if not np.issubdtype(cube["time"].dtype, np.datetime64):
        raise CubeError(
            f"coordinate 'time' has dtype {cube['time'].dtype}; it must be datetime64 (UTC)"
        )


def _check_grid(cube: xr.Dataset) -> None:
    """A projected CRS in metres and regular ``y`` / ``x`` axes of at least 2 pixels."""
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
    """``landslides`` (y, x) integer with a known ``label_kind``, or absent if allowed."""
    kind = cube.attrs.get("label_kind")
    if "landslides" in cube.variables:
        if kind not in LABEL_KINDS:
            raise CubeError(
                f"attrs['label_kind'] is {kind!r}; set it to one of {list(LABEL_KINDS)} "
                "to say whether 'landslides' is a mask or point counts"
            )
        lab = cube["landslides"]
        if tuple(lab.dims) != ("y", "x"):
            raise CubeError(
                f"'landslides' has dims {tuple(lab.dims)}; it must be ('y', 'x')"
            )
        if not np.issubdtype(lab.dtype, np.integer):
            raise CubeError(
                f"'landslides' has dtype {lab.dtype}; use uint8 for a mask or uint16 for counts"
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
            f"{band!r} holds the no-data value(s) {values} in {share:.1%} of its pixels "
            "(Planetary Computer RTC marks no data with -32768); they are not backscatter. "
            "Mask them first: cube = sarslide.cube.mask_nodata(cube)"
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
            f"{band!r} has median {median:.3g} < 0: it looks like decibels; event cubes "
            f"hold linear backscatter, convert with 10 ** (db / 10)"
        )


#: Sentinel-1's constellation repeat in days: two passes of one relative orbit are a whole
#: number of 6 days apart (12 for one satellite; S1A and S1B fly 6 days apart on each track).
S1_REPEAT_DAYS: int = 6
#: How far (minutes) the overpass time of one track may drift between repeats, and how far
#: apart the frames (time steps) of one overflight may be.
_TRACK_TOLERANCE = pd.Timedelta(minutes=10)
_ORBIT_NAMES = {
    "a": "ascending",
    "d": "descending",
    "ascending": "ascending",
    "descending": "descending",
}


class PassSelectionError(CubeError):
    """The passes asked for do not exist in the cube, or would mix orbit tracks."""


def same_track_possible(t1, t2) -> bool:
    """Whether two Sentinel-1 acquisitions can come from one relative orbit.

    Passes of one relative orbit repeat every 12 days per satellite and S1A/S1B share the
    track 6 days apart, at the same time of day: so the gap must be a whole number of
    :data:`S1_REPEAT_DAYS` days, to within 10 minutes. ``t1``, ``t2``: anything
    :class:`pandas.Timestamp` accepts (naive = UTC). Hokkaido's named passes,
    2018-08-24 and 2018-09-13, are 20 days apart: never one track.
    """
    gap = abs(pd.Timestamp(t2) - pd.Timestamp(t1))
    period = pd.Timedelta(days=S1_REPEAT_DAYS)
    rest = gap % period
    return min(rest, period - rest) <= _TRACK_TOLERANCE


def _orbit_name(value) -> str:
    key = str(value.decode() if isinstance(value, bytes) else value).strip().lower()
    return _ORBIT_NAMES.get(key, key or "unknown")


def cube_passes(cube: xr.Dataset) -> pd.DataFrame:
    """One row per time step of ``cube``: when, which side of the event, which orbit track.

    Direction and relative orbit are read from the cube's per-time coordinates
    ``orbit_state`` and ``relative_orbit`` (as every loader writes them; ``sat:`` names are
    accepted too). Where the cube records no relative orbit, time steps are put on one
    track when :func:`same_track_possible` allows it (the Sentinel-1 repeat) and the track
    is marked as inferred. Time steps minutes apart on one track are frames of one
    overflight and share a ``pass_id``; :func:`pass_pair` averages them as one pass.

    Returns
    -------
    pandas.DataFrame
        Indexed by time-step position; columns ``time`` (naive UTC), ``side``
        (``"pre"``/``"post"``), ``days_from_event`` (float), ``orbit_state`` (str,
        ``"unknown"`` if not recorded), ``relative_orbit`` (nullable Int64), ``platform``
        (str, may be empty), ``track`` (str label, e.g. ``"descending 46"``),
        ``track_inferred`` (bool) and ``pass_id`` (int).
    """
    times = _times(cube)
    evt = event_time(cube)
    states = _per_time_values(cube, "orbit_state", "sat:orbit_state")
    rel = _per_time_values(cube, "relative_orbit", "sat:relative_orbit")
    plat = _per_time_values(cube, "platform", "sat:platform")
    n = len(times)
    table = pd.DataFrame(
        {
            "time": times,
            "side": np.where(times < evt, "pre", "post"),
            "days_from_event": np.round((times - evt) / pd.Timedelta(days=1), 3),
            "orbit_state": [_orbit_name(s) for s in states]
            if states is not None
            else ["unknown"] * n,
            "relative_orbit": pd.array(
                [
                    int(r)
                    if r is not None and np.isfinite(float(r)) and int(r) > 0
                    else None
                    for r in rel
                ]
                if rel is not None
                else [None] * n,
                dtype="Int64",
            ),
            "platform": [str(p.decode() if isinstance(p, bytes) else p) for p in plat]
            if plat is not None
            else [""] * n,
        }
    )
    tracks, inferred = _track_labels(table, times)
    table["track"] = tracks
    table["track_inferred"] = inferred
    table["pass_id"] = _pass_ids(table, times, tracks)
    return table


def _per_time_values(cube: xr.Dataset, *names: str) -> np.ndarray | None:
    """Values of the first of ``names`` that is a (time,) variable of ``cube``, or None."""
    for name in names:
        if name in cube.coords or name in cube.data_vars:
            da = cube[name]
            if tuple(da.dims) == ("time",):
                return np.asarray(da.values)
    return None


def _track_labels(
    table: pd.DataFrame, times: pd.DatetimeIndex
) -> tuple[list[str], list[bool]]:
    """Track label per time step (``"descending 46"``) and whether it was inferred.

    Without a relative orbit, time steps join the first earlier track of their direction
    that :func:`same_track_possible` allows, else start ``"<state> track <k>"``.
    """
    n = len(times)
    tracks, inferred = [""] * n, [False] * n
    anchors: list[
        tuple[str, pd.Timestamp, str]
    ] = []  # (orbit_state, first time, label)
    for i in np.argsort(times.values, kind="stable"):
        state, r = table.at[i, "orbit_state"], table.at[i, "relative_orbit"]
        if r is not pd.NA:
            tracks[i] = f"{state} {int(r)}"
            continue
        for a_state, a_time, label in anchors:
            if a_state == state and same_track_possible(a_time, times[i]):
                tracks[i] = label
                break
        else:
            label = f"{state} track {len(anchors) + 1}"
            anchors.append((state, times[i], label))
            tracks[i] = label
        inferred[i] = True
    return tracks, inferred


def _pass_ids(
    table: pd.DataFrame, times: pd.DatetimeIndex, tracks: list[str]
) -> np.ndarray:
    """One int id per overflight: steps of one track and side ≤ 10 minutes apart share it."""
    pass_id, last = np.zeros(len(times), dtype=int), {}
    next_id = 0
    for i in np.argsort(times.values, kind="stable"):
        prev = last.get(tracks[i])
        if (
            prev is not None
            and times[i] - times[prev] <= _TRACK_TOLERANCE
            and table.at[i, "side"] == table.at[prev, "side"]
        ):
            pass_id[i] = pass_id[prev]
        else:
            pass_id[i] = next_id
            next_id += 1
        last[tracks[i]] = i
    return pass_id


def _describe(rows: pd.DataFrame) -> str:
    """``'2018-08-24 20:40 UTC descending, relative orbit 46'`` for each pass, joined."""
    out = []
    for _, group in rows.groupby("pass_id", sort=False):
        first = group.iloc[0]
        rel = first["relative_orbit"]
        orbit = (
            f"relative orbit {int(rel)}"
            if rel is not pd.NA
            else f"relative orbit not recorded ({first['track']}, inferred)"
        )
        plat = f" {first['platform']}" if first["platform"] else ""
        frames = f", {len(group)} frames" if len(group) > 1 else ""
        out.append(
            f"{first['time']:%Y-%m-%d %H:%M} UTC{plat} {first['orbit_state']}, {orbit}{frames}"
        )
    return "; ".join(out)


def _as_names(value) -> list[pd.Timestamp]:
    if value is None:
        return []
    if isinstance(value, (str, pd.Timestamp)) or not hasattr(value, "__iter__"):
        value = [value]
    names = []
    for v in value:
        stamp = pd.Timestamp(v)
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        names.append(stamp)
    return names


def _named_rows(
    table: pd.DataFrame, name: pd.Timestamp, side: str, cube_table: pd.DataFrame
) -> pd.DataFrame:
    """The time steps of the one pass named by a date (whole UTC day) or a time (±10 min)."""
    if name == name.normalize():
        rows = table[table["time"].dt.normalize() == name]
        what = f"{name:%Y-%m-%d} (UTC day)"
    else:
        rows = table[(table["time"] - name).abs() <= _TRACK_TOLERANCE]
        what = f"{name:%Y-%m-%d %H:%M} UTC (±10 min)"
    if rows.empty:
        raise PassSelectionError(
            f"the {side}-event pass {what} is not in the cube (after any orbit_state / "
            f"relative_orbit filter); the cube has {len(cube_table)} pass time step(s): "
            f"{_describe(cube_table)}. Name one of these, or load a cube that holds the pass"
        )
    if rows["side"].ne(side).any():
        raise PassSelectionError(
            f"the pass named as {side}-event, {what}, lies on the other side of the event "
            f"({_describe(rows)})"
        )
    if rows["pass_id"].nunique() > 1:
        raise PassSelectionError(
            f"{what} holds {rows['pass_id'].nunique()} different passes: {_describe(rows)}; "
            "name the time as well (e.g. '2018-09-13T08:27') or filter with orbit_state= / "
            "relative_orbit="
        )
    return rows


def pass_pair(
    cube: xr.Dataset,
    n_pre: int | None = None,
    n_post: int | None = None,
    orbit_state: str | None = None,
    *,
    relative_orbit: int | None = None,
    pre=None,
    post=None,
    named: bool = False,
    same_track: bool = True,
) -> xr.Dataset:
    """Choose passes before and after the event and average each side into one image.

    Which passes (checked in this order):

    * ``named=True``: exactly the event's named passes, ``Event.paper_pre_pass`` and
      ``paper_post_pass`` of ``cube.attrs["event"]`` (the paper profile: Hokkaido
      2018-08-24 / 2018-09-13, Kaikōura 2016-08-23 / 2016-11-15). One pass per side.
    * ``pre=`` / ``post=``: the passes the caller names, as dates (the whole UTC day) or
      times (±10 minutes), one or a list per side; a side left out is chosen
      automatically. Named passes may come from different tracks (``same_track`` is not
      enforced on them; the result's ``attrs["same_track"]`` says whether they share one).
    * otherwise, automatically, with ``same_track=True``: the ``n_pre`` nearest passes
      before and ``n_post`` nearest after the event **from one orbit track** (one orbit
      direction and one relative orbit, read from the cube's ``orbit_state`` and
      ``relative_orbit`` coordinates, see :func:`cube_passes`). Rule: among the tracks
      with enough passes on both sides, the one whose chosen passes span the shortest
      time (first chosen pre to last chosen post) wins; ties go to the track with the
      earlier first post-event pass, then to the lower ``(orbit_state, relative_orbit)``.
      If no track has enough passes on both sides the nearest passes would mix tracks:
      that is an error naming them.
    * ``same_track=False``: the nearest passes from any track (the result records whether
      the pair is cross-track).

    Time steps minutes apart on one track are frames of one overflight and count as one
    pass. Averaging is done in linear power with NaN ignored (a pixel is NaN only where
    every averaged pass is NaN), which lowers speckle and mosaics frames.

    A cross-track pair sees the ground from another incidence angle and, between an
    ascending and a descending pass, from the opposite side: slopes that face one radar
    and turn away from the other change their backscatter by several dB without any
    change on the ground, and that looks like change.

    Parameters
    ----------
    cube:
        A valid event cube.
    n_pre, n_post:
        How many passes to average on each side (>= 1; default 1). With named passes the
        number named wins; a different explicit number is an error.
    orbit_state, relative_orbit:
        Only passes with this direction (``"ascending"``/``"descending"``, ``"a"``/``"d"``)
        and relative orbit are considered.
    pre, post:
        Passes named by the caller (see above).
    named:
        Use the event's named passes.
    same_track:
        Require one track for automatically chosen passes.

    Returns
    -------
    xarray.Dataset
        Variables ``pre_vv``, ``pre_vh``, ``post_vv``, ``post_vh`` with dims (y, x),
        float32, plus ``landslides`` if the cube has it. ``attrs`` add ``pre_times`` /
        ``post_times`` (ISO strings, nearest first), ``pre_tracks`` / ``post_tracks``
        (e.g. ``"descending 46"`` per pass), ``same_track`` (bool) and ``pass_rule``
        (``"named"``, ``"caller"``, ``"same-track"`` or ``"any-track"``).

    Raises
    ------
    PassSelectionError
        A named pass missing from the cube (the message lists the passes it has), several
        passes on a named day, too few passes, or an automatic pair that would mix tracks.
    """
    for label, n in (("n_pre", n_pre), ("n_post", n_post)):
        if n is not None and (int(n) != n or n < 1):
            raise ValueError(f"{label}={n}: average at least one pass per side")
    if named:
        pre, post = _event_named_passes(cube, pre, post)
    full = cube_passes(cube)
    table, filters = _filter_passes(full, orbit_state, relative_orbit)
    chosen = _caller_named_passes(table, full, pre, post, n_pre, n_post, named)
    caller_named = bool(chosen)
    auto = [s for s in ("pre", "post") if s not in chosen]
    want = {"pre": n_pre or 1, "post": n_post or 1}
    if auto:
        evt = event_time(cube)
        _warn_undated_event_day(table, evt)
        if same_track:
            picks = _same_track_picks(table, chosen, auto, want, filters, evt)
        else:
            picks = {s: _side_passes(table, s, evt)[: want[s]] for s in auto}
        for s in auto:
            if len(picks[s]) < want[s]:
                raise PassSelectionError(
                    f"asked for {want[s]} {s}-event pass(es) but the cube has "
                    f"{len(_side_passes(table, s, evt))}"
                    + (f" with {filters}" if filters else "")
                    + "; lower the number of passes or load more"
                )
            chosen[s] = picks[s]
    rule = (
        "named"
        if named
        else "caller"
        if caller_named
        else "same-track"
        if same_track
        else "any-track"
    )
    return _average_pair(cube, chosen, rule)


def _event_named_passes(cube: xr.Dataset, pre, post) -> tuple[str, str]:
    """The paper's (pre, post) pass names of ``cube.attrs['event']`` for ``named=True``."""
    if pre is not None or post is not None:
        raise ValueError(
            "named=True uses the event's named passes; do not also give pre= / post="
        )
    from .events import get_event

    try:
        ev = get_event(cube.attrs.get("event", ""))
    except KeyError as err:
        raise PassSelectionError(
            f"named=True needs a known event in cube.attrs['event'] (got "
            f"{cube.attrs.get('event')!r}); name the passes with pre= / post= instead"
        ) from err
    return ev.paper_pre_pass, ev.paper_post_pass


def _filter_passes(
    full: pd.DataFrame, orbit_state: str | None, relative_orbit: int | None
) -> tuple[pd.DataFrame, str]:
    """Rows of :func:`cube_passes` that pass the orbit filters, and the filters as text."""
    table = full
    if orbit_state is not None:
        wanted = _orbit_name(orbit_state)
        if wanted not in ("ascending", "descending"):
            raise ValueError(
                f"orbit_state={orbit_state!r}; use 'ascending' or 'descending' ('a'/'d')"
            )
        if (full["orbit_state"] == "unknown").all():
            raise CubeError(
                f"orbit_state={orbit_state!r} asked for but the cube has no 'orbit_state' coordinate"
            )
        table = table[table["orbit_state"] == wanted]
    if relative_orbit is not None:
        table = table[table["relative_orbit"] == int(relative_orbit)]
    filters = ", ".join(
        f
        for f in (
            orbit_state and f"orbit_state={orbit_state!r}",
            relative_orbit is not None and f"relative_orbit={relative_orbit}",
        )
        if f
    )
    return table, filters


def _caller_named_passes(
    table: pd.DataFrame, full: pd.DataFrame, pre, post, n_pre, n_post, named: bool
) -> dict[str, list[pd.DataFrame]]:
    """Per side with names: the rows of each named pass (a side without names is absent)."""
    chosen: dict[str, list[pd.DataFrame]] = {}
    for side, names, n in (
        ("pre", _as_names(pre), n_pre),
        ("post", _as_names(post), n_post),
    ):
        if not names:
            continue
        if n is not None and n != len(names):
            raise ValueError(
                f"n_{side}={n} but {len(names)} {side}-event pass(es) are named"
                + (
                    " (named=True names one pass per side; use n_pre=n_post=1)"
                    if named
                    else ""
                )
            )
        chosen[side] = [_named_rows(table, name, side, full) for name in names]
    return chosen


def _side_passes(
    rows: pd.DataFrame, side: str, evt: pd.Timestamp
) -> list[pd.DataFrame]:
    """The passes (row groups by ``pass_id``) on ``side`` of the event, nearest first."""
    rows = rows[rows["side"] == side]
    groups = [g for _, g in rows.groupby("pass_id", sort=False)]
    return sorted(groups, key=lambda g: abs(g["time"].iloc[0] - evt))


def _warn_undated_event_day(table: pd.DataFrame, evt: pd.Timestamp) -> None:
    """Warn about passes stored as a bare date on the event's own UTC day.

    Such a pass may lie on either side of the event. The warning is attributed to the
    caller of :func:`pass_pair` (``stacklevel=3``).
    """
    undated = (table["time"] == table["time"].dt.normalize()) & (
        table["time"].dt.normalize() == evt.normalize()
    )
    if undated.any():
        import warnings

        warnings.warn(
            f"pass(es) {_describe(table[undated])} are stored as a date without a time on "
            f"the event's UTC day ({evt:%Y-%m-%d}, event at {evt:%H:%M} UTC), so they count "
            "as before the event although they may have been taken after it; name the "
            "passes with pre= / post=, or drop these with cube.drop_sel(time=...)",
            UserWarning,
            stacklevel=3,
        )


def _same_track_picks(
    table: pd.DataFrame,
    chosen: dict[str, list[pd.DataFrame]],
    auto: list[str],
    want: dict[str, int],
    filters: str,
    evt: pd.Timestamp,
) -> dict[str, list[pd.DataFrame]]:
    """The automatic sides' passes from the one track that spans the shortest time.

    Only tracks of already named passes are candidates; ties go to the earlier first
    post-event pass, then to the lower track label.
    """
    fixed = {
        g["track"].iloc[0] for s in chosen for g in chosen[s]
    }  # tracks of named passes
    candidates = []
    for track, rows in table.groupby("track", sort=True):
        if fixed and track not in fixed:
            continue
        picks = {s: _side_passes(rows, s, evt)[: want[s]] for s in auto}
        if any(len(picks[s]) < want[s] for s in auto):
            continue
        everything = [g for s in chosen for g in chosen[s]] + [
            g for s in auto for g in picks[s]
        ]
        first = min(g["time"].min() for g in everything)
        last = max(g["time"].max() for g in everything)
        posts = [g for g in everything if g["side"].iloc[0] == "post"]
        first_post = min(g["time"].min() for g in posts)
        candidates.append(((last - first, first_post, track), picks))
    if not candidates:
        raise _no_track_error(table, auto, want, filters, evt)
    _, picks = min(candidates, key=lambda c: c[0])
    return picks


def _no_track_error(
    table: pd.DataFrame,
    auto: list[str],
    want: dict[str, int],
    filters: str,
    evt: pd.Timestamp,
) -> PassSelectionError:
    """The error when no track has enough passes: too few overall, or mixed tracks."""
    nearest = {s: _side_passes(table, s, evt)[: want[s]] for s in ("pre", "post")}
    per_track = "; ".join(
        f"{track}: {(rows['side'] == 'pre').sum()} pre / {(rows['side'] == 'post').sum()} post"
        for track, rows in table.groupby("track", sort=True)
    )
    short = [s for s in auto if len(nearest[s]) < want[s]]
    if short:
        s = short[0]
        return PassSelectionError(
            f"asked for {want[s]} {s}-event pass(es) but the cube has {len(nearest[s])}"
            + (f" with {filters}" if filters else "")
            + f" ({per_track or 'no passes'}); lower the number of passes or load more"
        )
    mixed = ""
    if all(len(nearest[s]) >= 1 for s in ("pre", "post")):
        mixed = (
            f"The nearest passes, before: {_describe(nearest['pre'][0])} and after: "
            f"{_describe(nearest['post'][0])}, come from different orbit tracks, and "
            "an automatic pair never mixes tracks (a different look direction or "
            "incidence changes the backscatter of slopes, which looks like change). "
        )
    return PassSelectionError(
        f"no orbit track has {want['pre'] if 'pre' in auto else 'the named'} pass(es) "
        f"before and {want['post'] if 'post' in auto else 'the named'} after the event"
        + (f" with {filters}" if filters else "")
        + f" ({per_track or 'no passes'}). "
        + mixed
        + "Name the passes with pre= / post=, lower n_pre / n_post, or pass "
        "same_track=False to accept a cross-track pair"
    )


def _average_pair(
    cube: xr.Dataset, chosen: dict[str, list[pd.DataFrame]], rule: str
) -> xr.Dataset:
    """Average the chosen passes of each side into :data:`CHANNELS` (y, x) float32.

    Keeps ``landslides`` and the cube's attrs and CRS; adds the times, tracks,
    ``same_track`` and ``pass_rule`` attrs that :func:`pass_pair` documents.
    """
    out = xr.Dataset(coords={"y": cube["y"], "x": cube["x"]})
    for side in PAIR_SIDES:
        positions = np.concatenate([g.index.to_numpy() for g in chosen[side]])
        sel = cube.isel(time=np.sort(positions))
        for band in BANDS:
            out[f"{side}_{band}"] = (
                sel[band].mean("time", skipna=True).astype("float32")
            )
    if "landslides" in cube.variables:
        out["landslides"] = cube["landslides"]
    out.attrs.update(cube.attrs)
    tracks = {g["track"].iloc[0] for side in chosen for g in chosen[side]}
    for side in PAIR_SIDES:
        out.attrs[f"{side}_times"] = [
            g["time"].iloc[0].isoformat() for g in chosen[side]
        ]
        out.attrs[f"{side}_tracks"] = [str(g["track"].iloc[0]) for g in chosen[side]]
    out.attrs["same_track"] = len(tracks) == 1
    out.attrs["pass_rule"] = rule
    if cube.rio.crs is not None:
        out = out.rio.write_crs(cube.rio.crs)
    return out


def save_cube(cube: xr.Dataset, path: str | os.PathLike) -> Path:
    """Validate ``cube`` and write it as a zarr store at ``path``, atomically.

    Returns the path. An interrupted write leaves no store at ``path`` (or the previous one).
    """
    validate_cube(cube, require_labels=False)
    path = Path(path)
    source = cube.encoding.get("source")
    lazy = any(cube[name].chunks is not None for name in cube.variables)
    if lazy and source and path.exists() and Path(source).resolve() == path.resolve():
        raise CubeError(
            f"the cube is read lazily from {path}, the store it would overwrite: the old "
            "files would vanish under it. Save it to another path, or load it into memory "
            "first (cube = cube.load()), then save"
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
    stale = _live_handles(path)
    if stale:
        import warnings

        warnings.warn(
            f"{len(stale)} cube(s) opened lazily from {path} before this save now read the new "
            "store's files; open it again with open_cube(path) rather than computing with the "
            "old handle(s), which would mix the two stores",
            StaleHandleWarning,
            stacklevel=2,
        )
        _LAZY_HANDLES.pop(str(path.resolve()), None)
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
            f"the event cube at {path} is corrupt or incomplete ({type(err).__name__}: {err}); "
            f"delete it (rm -r '{path}') and save or prepare the cube again"
        ) from err
    cube = validate_cube(mask_nodata(cube), require_labels=require_labels)
    import weakref

    _live_handles(path).append(weakref.ref(cube))
    return cube
