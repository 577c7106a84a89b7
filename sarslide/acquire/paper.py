"""The paper's published datacubes (Zenodo record 7248056) as event cubes.

:func:`load_paper_cube` downloads ``hokkaido_japan.zip`` / ``kaikoura_newzealand.zip``
with pooch (cached; checked against the md5 that Zenodo publishes for the record;
progress bar), unzips it once, opens the zarr store lazily and converts its layout —
dims ``timestep``/``y``/``x``/``timepair``, variables ``vv``, ``vh``, ``dem``,
``landslides``, per-timestep coordinate ``sat:orbit_state`` (``'a'``/``'d'``) — into the
event-cube schema (:func:`paper_cube_to_event_cube`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from sarslide.cube import BANDS, CubeError, mask_nodata, validate_cube
from sarslide.events import Event, get_event
from sarslide.orbits import normalize_orbit_state
from sarslide.passes import pass_pair

from .download import default_cache_dir, extract_zip, fetch_file, split_doi
from .errors import NoPassesError

__all__ = [
    "fetch_paper_cube",
    "find_zarr_store",
    "paper_cube_to_event_cube",
    "load_paper_cube",
    "load_paper_pass_pair",
    "relative_orbit_from_absolute",
]

#: ESA's rule from absolute to relative orbit: ``(absolute - offset) mod 175 + 1``.
_RELATIVE_ORBIT_OFFSET = {"a": 73, "b": 27}


def relative_orbit_from_absolute(platform, absolute_orbit) -> int | None:
    """The relative orbit (1–175) of a Sentinel-1A/B absolute orbit number, or ``None``.

    ``platform`` is any spelling ending in the unit letter (``"sentinel-1a"``,
    ``"S1B"``); other platforms (S1C and later have their own offsets) give ``None``.
    Example: S1A absolute orbit 13949 (2016-11-15, over Kaikōura) is relative orbit 52.
    """
    name = (
        str(platform.decode() if isinstance(platform, bytes) else platform)
        .strip()
        .lower()
    )
    match = re.fullmatch(r"(?:sentinel[-_ ]?1|s1)([a-z])", name)
    unit = match.group(1) if match else ""
    try:
        absolute = int(absolute_orbit)
    except (TypeError, ValueError):
        return None
    if unit not in _RELATIVE_ORBIT_OFFSET or absolute <= 0:
        return None
    return (absolute - _RELATIVE_ORBIT_OFFSET[unit]) % 175 + 1


_ZARR_MARKERS = (".zgroup", ".zmetadata", "zarr.json")


def find_zarr_store(path: str | os.PathLike) -> Path:
    """The zarr store in ``path`` (the store itself or a folder holding exactly one).

    Raises
    ------
    CubeError
        When there is no store, or several (the message lists what was found).
    """
    path = Path(path)
    if any((path / m).exists() for m in _ZARR_MARKERS):
        return path
    found = {marker.parent for m in _ZARR_MARKERS for marker in path.rglob(m)}
    # groups inside a store carry markers too: keep only the outermost stores
    stores = sorted(p for p in found if not any(a in found for a in p.parents))
    if len(stores) != 1:
        listing = sorted(str(p.relative_to(path)) for p in path.iterdir())[:20]
        raise CubeError(
            f"expected one zarr store under {path}, found {len(stores)} "
            f"({[str(s.relative_to(path)) for s in stores]}); top-level entries: "
            f"{listing}"
        )
    return stores[0]


def fetch_paper_cube(
    event: str | Event,
    *,
    cache_dir: str | os.PathLike | None = None,
    url: str | None = None,
    known_hash: str | None = None,
    progress: bool = True,
) -> Path:
    """Download and unzip the paper's datacube for ``event``; return the zarr store
    path.

    ``url`` overrides ``event.datacube.url`` (e.g. a mirror, or a loopback server in
    tests) and ``known_hash`` its checksum. Once unzipped, later calls need no network.
    """
    ev = get_event(event)
    src = url or ev.datacube.url
    cache = (
        Path(cache_dir)
        if cache_dir is not None
        else default_cache_dir() / "paper_cubes"
    )
    name = (
        split_doi(src)[1] if src.startswith("doi:") else Path(urlparse(src).path).name
    )
    unzipped = cache / (name + ".unzip")
    if not unzipped.is_dir():
        archive = fetch_file(
            src,
            known_hash if url is not None else (known_hash or ev.datacube.known_hash),
            cache_dir=cache,
            fname=name,
            progress=progress,
        )
        extract_zip(archive, unzipped)
    return find_zarr_store(unzipped)


def _layout_summary(ds: xr.Dataset) -> str:
    return (
        f"dims {dict(ds.sizes)}, variables "
        f"{ {str(k): tuple(map(str, v.dims)) for k, v in ds.data_vars.items()} }, "
        f"coords {sorted(map(str, ds.coords))}"
    )


def _as_datetimes(values: np.ndarray) -> pd.DatetimeIndex:
    if np.issubdtype(np.asarray(values).dtype, np.datetime64):
        times = pd.DatetimeIndex(values)
    else:
        strings = [v.decode() if isinstance(v, bytes) else str(v) for v in values]
        times = pd.DatetimeIndex(pd.to_datetime(strings, utc=True))
    if times.tz is not None:
        times = times.tz_convert("UTC").tz_localize(None)
    return times


def _paper_cube_crs(ds: xr.Dataset, ev: Event):
    """CRS of a paper cube: stored (rioxarray/attrs), else inferred from the
    coordinates."""
    from pyproj import CRS, Transformer

    crs = ds.rio.crs
    if crs is None:
        for key in ("crs", "spatial_ref", "proj:epsg", "epsg", "crs_wkt"):
            value = ds.attrs.get(key)
            if value is not None:
                crs = CRS.from_user_input(int(value) if str(value).isdigit() else value)
                break
    if crs is not None:
        return CRS.from_user_input(crs)
    x = np.asarray(ds["x"].values, dtype="float64")
    y = np.asarray(ds["y"].values, dtype="float64")
    west, south, east, north = ev.bounds_lonlat
    if (
        west - 1 <= x.min()
        and x.max() <= east + 1
        and south - 1 <= y.min()
        and y.max() <= north + 1
    ):
        return CRS.from_epsg(4326)
    to_utm = Transformer.from_crs("EPSG:4326", ev.crs, always_xy=True)
    ex, ey = to_utm.transform([west, east, west, east], [south, south, north, north])
    if (
        x.max() >= min(ex)
        and x.min() <= max(ex)
        and y.max() >= min(ey)
        and y.min() <= max(ey)
    ):
        return CRS.from_user_input(ev.crs)
    raise CubeError(
        "the datacube stores no CRS and its coordinates (x "
        f"{x.min():.6g}..{x.max():.6g}, y {y.min():.6g}..{y.max():.6g}) match neither "
        f"lon/lat nor {ev.crs} over the {ev.name} area; write the CRS with "
        "ds.rio.write_crs(...) and pass path=…"
    )


def paper_cube_to_event_cube(
    ds: xr.Dataset,
    event: str | Event,
    *,
    orbit_state: str | None = None,
    label: str = "landslides",
) -> xr.Dataset:
    """Convert a dataset in the paper's datacube layout into a validated event cube.

    Parameters
    ----------
    ds:
        The opened zarr store: dims ``timestep``, ``y``, ``x`` (and ``timepair``);
        ``vv``/``vh`` (timestep, y, x) linear backscatter; optional ``dem`` (y, x); the
        label variable (y, x); coordinate ``sat:orbit_state`` (timestep)
        ``'a'``/``'d'``.
    event:
        The event (name or :class:`~sarslide.events.Event`); gives event time, label
        kind and — if the store has none — the CRS.
    orbit_state:
        Keep only ``'ascending'`` or ``'descending'`` passes (``'a'``/``'d'`` accepted).
    label:
        Name of the label variable.

    Returns
    -------
    xarray.Dataset
        ``vv``, ``vh`` (time, y, x) float32 with NaN where the cube holds no data
        (non-finite or non-positive values); ``landslides`` (y, x) uint8 mask (> 0) or
        uint16 counts, per ``event.label_kind``; ``dem`` (y, x) float32 if present;
        coordinate ``orbit_state`` (time) ``'ascending'``/``'descending'``; attrs
        ``event``, ``event_time``, ``label_kind``, ``source='zenodo'``. Variables on the
        ``timepair`` dim (interferometric pairs) are dropped. Data stay lazy (dask).
        Geographic (lon/lat) cubes are reprojected lazily to ``event.crs`` at
        ``event.resolution``.

    Raises
    ------
    CubeError
        When the layout is not the expected one; the message lists what was found.
    """
    ev = get_event(event)
    _check_paper_layout(ds, label)
    if "timepair" in ds.dims:
        ds = ds.drop_dims("timepair")
    out = _paper_bands(ds)
    out = _paper_pass_coords(ds, out)
    out["landslides"] = (("y", "x"), _paper_labels(ds[label], ev.label_kind).data)
    if "dem" in ds.data_vars and set(ds["dem"].dims) == {"y", "x"}:
        out["dem"] = (
            ("y", "x"),
            ds["dem"].transpose("y", "x").astype("float32").data,
            {"units": "m"},
        )
    if orbit_state is not None:
        out = _keep_orbit_state(out, ds, orbit_state)
    out = out.sortby("time")
    crs = _paper_cube_crs(ds, ev)
    if crs.is_geographic:
        out = _reproject_lazy(out, ev)
    else:
        out = out.rio.write_crs(crs)
    if out["y"].size > 1 and out["y"].values[0] < out["y"].values[-1]:
        out = out.isel(y=slice(None, None, -1))
    out.attrs = {
        "event": ev.name,
        "event_time": ev.time_utc.isoformat(),
        "label_kind": ev.label_kind,
        "source": "zenodo",
        "citation": ev.datacube.citation,
    }
    # The authors' cubes come from Planetary Computer's RTC assets, whose no-data is
    # −32768: mask it (and any nodata/_FillValue attribute) to NaN, lazily, like every
    # other loader.
    return validate_cube(mask_nodata(out), check_values=False, require_labels=True)


def _check_paper_layout(ds: xr.Dataset, label: str) -> None:
    """Raise :class:`CubeError` listing every way ``ds`` differs from the paper's
    layout."""
    problems = []
    if "timestep" not in ds.dims:
        problems.append("no 'timestep' dimension")
    for name in (*BANDS, label):
        if name not in ds.data_vars:
            problems.append(f"no {name!r} variable")
    for name in BANDS:
        if name in ds.data_vars and set(ds[name].dims) != {"timestep", "y", "x"}:
            problems.append(
                f"{name!r} has dims {ds[name].dims}, expected (timestep, y, x)"
            )
    if label in ds.data_vars and set(ds[label].dims) != {"y", "x"}:
        problems.append(f"{label!r} has dims {ds[label].dims}, expected (y, x)")
    if problems:
        raise CubeError(
            "unknown datacube layout ("
            + "; ".join(problems)
            + "); found "
            + _layout_summary(ds)
            + ". Expected the layout of Zenodo record 7248056: dims "
            "timestep/y/x(/timepair), "
            "variables vv, vh (timestep, y, x), landslides (y, x), coordinate "
            "sat:orbit_state"
        )


def _paper_bands(ds: xr.Dataset) -> xr.Dataset:
    """``vv``, ``vh`` as (time, y, x) float32, NaN where not finite or not positive
    (lazy)."""
    times = _as_datetimes(ds["timestep"].values)
    out = xr.Dataset(
        coords={
            "time": ("time", times.values),
            "y": ds["y"].values,
            "x": ds["x"].values,
        }
    )
    for name in BANDS:
        band = ds[name].transpose("timestep", "y", "x").astype("float32")
        band = band.where(np.isfinite(band) & (band > 0))
        out[name] = (
            ("time", "y", "x"),
            band.data,
            {"units": "1", "long_name": f"{name} linear backscatter"},
        )
    return out


def _paper_pass_coords(ds: xr.Dataset, out: xr.Dataset) -> xr.Dataset:
    """``out`` with per-pass ``orbit_state``, ``relative_orbit``, ``platform`` from
    ``ds``.

    The relative orbit is derived from the absolute orbit and platform when the store
    records only those (and every pass's can be derived).
    """
    if "sat:orbit_state" in ds.coords or "sat:orbit_state" in ds.data_vars:
        raw = ds["sat:orbit_state"].values
        states = [
            normalize_orbit_state(v.decode() if isinstance(v, bytes) else v)
            for v in raw
        ]
        out = out.assign_coords(orbit_state=("time", np.asarray(states, dtype=str)))
    for key, new in (
        ("sat:relative_orbit", "relative_orbit"),
        ("sat:platform", "platform"),
        ("platform", "platform"),
    ):
        if key in ds.coords and ds[key].dims == ("timestep",) and new not in out.coords:
            out = out.assign_coords({new: ("time", ds[key].values)})
    if "relative_orbit" not in out.coords and "platform" in out.coords:
        for key in ("sat:absolute_orbit", "absolute_orbit"):
            if key in ds.coords and ds[key].dims == ("timestep",):
                rel = [
                    relative_orbit_from_absolute(p, a)
                    for p, a in zip(out["platform"].values, ds[key].values)
                ]
                if all(r is not None for r in rel):
                    out = out.assign_coords(
                        relative_orbit=("time", np.asarray(rel, dtype="int16"))
                    )
                break
    return out


def _paper_labels(raw: xr.DataArray, label_kind: str) -> xr.DataArray:
    """(y, x) labels: uint8 mask of values > 0, or uint16 rounded counts; NaN -> 0."""
    raw_label = raw.transpose("y", "x").fillna(0)
    if label_kind == "mask":
        return (raw_label > 0).astype("uint8")
    return raw_label.round().clip(0, np.iinfo(np.uint16).max).astype("uint16")


def _keep_orbit_state(out: xr.Dataset, ds: xr.Dataset, orbit_state: str) -> xr.Dataset:
    """The passes of ``out`` flown in ``orbit_state`` (``'a'``/``'d'`` or the word)."""
    wanted = normalize_orbit_state(orbit_state)
    if "orbit_state" not in out.coords:
        raise CubeError(
            f"orbit_state={orbit_state!r} asked for but the datacube has no "
            f"'sat:orbit_state' coordinate; found {_layout_summary(ds)}"
        )
    keep = out["orbit_state"].values == wanted
    if not keep.any():
        raise NoPassesError(
            f"the datacube has no {wanted} passes; its orbit states are "
            f"{sorted(set(out['orbit_state'].values))}"
        )
    return out.isel(time=np.flatnonzero(keep))


def _reproject_lazy(cube: xr.Dataset, ev: Event) -> xr.Dataset:
    """Reproject a lon/lat cube onto the event's UTM 10 m grid (dask-aware, via
    odc-geo).

    The target covers the cube's own footprint, with pixel edges on multiples of the
    event resolution (the same lattice as :func:`event_geobox`).
    """
    import odc.geo.xr  # noqa: F401  (registers the .odc accessor)
    from odc.geo.geobox import GeoBox

    cube = cube.odc.assign_crs("EPSG:4326")
    footprint = cube.odc.geobox.extent.to_crs(ev.crs)
    gbox = GeoBox.from_bbox(footprint.boundingbox, crs=ev.crs, resolution=ev.resolution)
    parts = {}
    for name, var in cube.data_vars.items():
        integer = np.issubdtype(var.dtype, np.integer)
        parts[name] = var.odc.reproject(
            gbox,
            resampling="nearest" if integer else "bilinear",
            dst_nodata=0 if integer else np.nan,
        )
    out = xr.Dataset(parts)
    keep = [c for c in cube.coords if cube[c].dims == ("time",)]
    out = out.assign_coords({c: cube[c] for c in keep})
    out = out.drop_vars([c for c in ("spatial_ref",) if c in out.coords])
    return out.rio.write_crs(ev.crs)


def load_paper_cube(
    event: str | Event,
    *,
    cache_dir: str | os.PathLike | None = None,
    orbit_state: str | None = None,
    progress: bool = True,
    url: str | None = None,
    path: str | os.PathLike | None = None,
    known_hash: str | None = None,
) -> xr.Dataset:
    """The paper's published datacube for ``event`` as a (lazy) event cube.

    Parameters
    ----------
    event:
        ``"hokkaido"``, ``"kaikoura"`` or an :class:`~sarslide.events.Event`.
    cache_dir:
        Download cache (default ``default_cache_dir() / "paper_cubes"``).
    orbit_state:
        Keep only ``"ascending"`` or ``"descending"`` passes.
    progress:
        Show a download progress bar.
    url, known_hash:
        Download from another address (a mirror, a loopback test server) and check
        against this hash instead of the Zenodo record.
    path:
        Use a local copy instead: the ``.zip`` archive, the unzipped folder or the zarr
        store itself. No network is used.

    Returns
    -------
    xarray.Dataset
        A valid event cube (see :func:`paper_cube_to_event_cube`). Choose and average
        passes with :func:`sarslide.passes.pass_pair` (or :func:`load_paper_pass_pair`).

    Raises
    ------
    NetworkUnavailableError
        If the cube is not cached and Zenodo cannot be reached (never a silent switch to
        synthetic data).
    CubeError
        If the archive does not hold the expected layout.
    """
    ev = get_event(event)
    if path is not None:
        local = Path(path)
        if not local.exists():
            raise FileNotFoundError(f"no datacube at {local}")
        if local.is_file() and local.suffix.lower() == ".zip":
            local = extract_zip(local)
        store = find_zarr_store(local)
    else:
        store = fetch_paper_cube(
            ev, cache_dir=cache_dir, url=url, known_hash=known_hash, progress=progress
        )
    ds = xr.open_zarr(store, consolidated=None)
    return paper_cube_to_event_cube(ds, ev, orbit_state=orbit_state)


def load_paper_pass_pair(
    event: str | Event,
    *,
    named: bool = False,
    n_pre: int | None = None,
    n_post: int | None = None,
    orbit_state: str | None = None,
    relative_orbit: int | None = None,
    same_track: bool = True,
    **kwargs,
) -> xr.Dataset:
    """The paper cube reduced to one (averaged) pre- and post-event pass pair.

    Convenience for ``pass_pair(load_paper_cube(event), …)`` with the same pass
    arguments (:func:`sarslide.passes.pass_pair`): ``named=True`` gives exactly the
    paper's passes (``Event.paper_pre_pass`` / ``paper_post_pass``); otherwise the
    nearest passes from one orbit track. Other keywords go to :func:`load_paper_cube`.

    The paper's text does not say which orbit its passes came from, and the dates do not
    allow one track for Hokkaido: 2018-08-24 and 2018-09-13 are 20 days apart, not a
    multiple of Sentinel-1's 6-day repeat (:func:`sarslide.orbits.same_track_possible`).
    By Sentinel-1's orbit geometry they are most likely S1A descending relative orbit 46
    (about 20:40 UTC) and S1B ascending relative orbit 68 (about 08:27 UTC): a
    cross-track pair. Kaikōura's 2016-08-23 and 2016-11-15 are 84 days (7 × 12) apart
    and can share a track (most likely S1A ascending, relative orbit 52). The direction
    and relative orbit used are read from the cube and recorded in the result's attrs
    (``pre_tracks``, ``post_tracks``, ``same_track``), never assumed.
    """
    cube = load_paper_cube(event, **kwargs)
    return pass_pair(
        cube,
        n_pre=n_pre,
        n_post=n_post,
        orbit_state=orbit_state,
        relative_orbit=relative_orbit,
        named=named,
        same_track=same_track,
    )
