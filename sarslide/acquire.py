"""Real Sentinel-1 data for an event: the paper's published cubes and Planetary Computer.

Two sources, one result — an event cube (see :mod:`sarslide.cube`):

**The paper's datacubes** (Zenodo record 7248056). :func:`load_paper_cube` downloads
``hokkaido_japan.zip`` / ``kaikoura_newzealand.zip`` with pooch (cached; checked against
the md5 that Zenodo publishes for the record; progress bar), unzips it once, opens the zarr
store lazily and converts its layout — dims ``timestep``/``y``/``x``/``timepair``,
variables ``vv``, ``vh``, ``dem``, ``landslides``, per-timestep coordinate
``sat:orbit_state`` (``'a'``/``'d'``) — into the event-cube schema.

**Planetary Computer** (any new event). :func:`search_passes` queries the STAC API,
:func:`select_passes` picks the passes nearest before and after the event from one
relative orbit and orbit direction, and :func:`load_planetary_computer` loads them with
odc-stac onto the event's 10 m grid as dask arrays. ``sentinel-1-rtc`` (radiometrically
terrain-corrected gamma0) needs a Planetary Computer key in ``PC_SDK_SUBSCRIPTION_KEY``;
``sentinel-1-grd`` is anonymous but neither calibrated nor terrain corrected (see
:data:`COLLECTIONS`). Asset URLs are signed again at every read, so a load that outlives
its shared-access token keeps working.

Network failures raise :class:`NetworkUnavailableError`; nothing here ever falls back to
synthetic data — that choice belongs to the profile (``SARSLIDE_PROFILE=demo``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from odc.loader import RioDriver, RioReader
from odc.loader._rio import rio_read  # the reader RioReader.read itself delegates to

from sarslide.cube import BANDS, CubeError, atomic_directory, validate_cube
from sarslide.events import Event, get_event

__all__ = [
    # errors
    "NetworkUnavailableError",
    "MissingKeyError",
    "NoPassesError",
    "UncalibratedDataWarning",
    # downloads
    "CACHE_ENV",
    "default_cache_dir",
    "network_errors",
    "fetch_file",
    "extract_zip",
    # the paper's cubes
    "fetch_paper_cube",
    "find_zarr_store",
    "paper_cube_to_event_cube",
    "load_paper_cube",
    "load_paper_pass_pair",
    # grid
    "event_geobox",
    # Planetary Computer
    "PC_STAC_URL",
    "PC_KEY_ENV",
    "COLLECTIONS",
    "stac_query",
    "search_passes",
    "Pass",
    "PassSelection",
    "group_passes",
    "pass_table",
    "select_passes",
    "require_key",
    "resign_planetary_computer",
    "ResigningRioDriver",
    "load_stac_items",
    "load_grd_items",
    "load_planetary_computer",
]

# --------------------------------------------------------------------------- errors


class NetworkUnavailableError(ConnectionError):
    """A remote service could not be reached; the message names the offline alternative."""


class MissingKeyError(PermissionError):
    """A Planetary Computer collection needs a subscription key that is not set."""


class NoPassesError(LookupError):
    """No Sentinel-1 passes satisfy the request before and/or after the event."""


class UncalibratedDataWarning(UserWarning):
    """The data are not radiometrically calibrated / terrain corrected (sentinel-1-grd)."""


_OFFLINE_HINT = (
    "No network: the paper profile and the Planetary Computer need internet access. "
    "Run offline with the demo profile instead (SARSLIDE_PROFILE=demo, or "
    "profile_name='demo' in a notebook's parameters cell), which uses synthetic cubes."
)

# --------------------------------------------------------------------------- downloads

#: Environment variable that overrides where downloads are cached (the same folder
#: :func:`sarslide.datasets.data_dir` uses for cubes and chips).
CACHE_ENV = "SARSLIDE_DATA_DIR"


def default_cache_dir() -> Path:
    """Download cache: ``$SARSLIDE_DATA_DIR`` or the OS cache folder (``pooch.os_cache``)."""
    import pooch

    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(pooch.os_cache("sarslide"))


def _connection_failure(err: BaseException) -> BaseException | None:
    """The connection error behind ``err`` (following ``__cause__``/``__context__``), if any.

    Libraries wrap connection failures (pystac-client raises ``APIError`` from a requests
    ``ConnectionError``), so the whole chain is searched.
    """
    import requests

    kinds = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.ChunkedEncodingError,
        ConnectionError,
        TimeoutError,
    )
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, kinds):
            return err
        err = err.__cause__ or err.__context__
    return None


@contextlib.contextmanager
def network_errors(what: str) -> Iterator[None]:
    """Turn connection failures inside the block into :class:`NetworkUnavailableError`.

    ``what`` (a URL or service name) is named in the message, with the demo-profile hint.
    HTTP errors (404, 403, …) and checksum mismatches pass through unchanged.
    """
    try:
        yield
    except NetworkUnavailableError:
        raise
    except Exception as err:
        cause = _connection_failure(err)
        if cause is None:
            raise
        raise NetworkUnavailableError(
            f"could not reach {what} ({type(cause).__name__}: {cause}). {_OFFLINE_HINT}"
        ) from err


def _split_doi(url: str) -> tuple[str, str]:
    """``doi:10.5281/zenodo.1/file.zip`` -> (``doi:10.5281/zenodo.1``, ``file.zip``)."""
    base, _, name = url.rpartition("/")
    if not url.startswith("doi:") or base.count("/") < 1 or not name:
        raise ValueError(
            f"{url!r} is not a pooch DOI file address; use 'doi:<prefix>/<suffix>/<file name>'"
        )
    return base, name


def fetch_file(
    url: str,
    known_hash: str | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    fname: str | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` once into ``cache_dir`` with pooch and return the local path.

    ``url`` is ``http(s)://…`` or a pooch DOI address ``doi:<doi>/<file name>``. A DOI
    download is checked against the md5 that the repository (Zenodo) publishes; an HTTP
    download against ``known_hash`` when given. pooch streams into a temporary file in
    ``cache_dir`` and renames it only after the checksum matched, so an interrupted or
    corrupt download never leaves a file under the final name. A file already in the
    cache is returned without touching the network.

    Raises
    ------
    NetworkUnavailableError
        When the server cannot be reached or the transfer breaks off.
    ValueError
        When the checksum does not match (the partial file is deleted).
    """
    import pooch

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if url.startswith("doi:"):
        base, name = _split_doi(url)
        target = cache / (fname or name)
        if target.exists():
            return target
        with network_errors(url):
            pup = pooch.create(path=cache, base_url=f"{base}/", registry=None)
            pup.load_registry_from_doi()
            if name not in pup.registry:
                raise FileNotFoundError(
                    f"the record {base} has no file {name!r}; it holds {sorted(pup.registry)}"
                )
            return Path(pup.fetch(name, progressbar=progress))
    name = fname or Path(urlparse(url).path).name
    if not name:
        raise ValueError(f"cannot tell a file name from {url!r}; pass fname=…")
    target = cache / name
    if target.exists() and known_hash is None:
        return target
    with network_errors(url):
        return Path(
            pooch.retrieve(url, known_hash, fname=name, path=cache, progressbar=progress)
        )


def extract_zip(path: str | os.PathLike, extract_dir: str | os.PathLike | None = None) -> Path:
    """Unzip ``path`` once into ``extract_dir`` (default ``<path>.unzip``), atomically.

    The archive is extracted under a temporary name and renamed when complete, so an
    interrupted extraction is never mistaken for a finished one (``pooch.Unzip`` would
    reuse a half-extracted folder). An existing ``extract_dir`` is returned as it is.
    """
    path = Path(path)
    out = Path(extract_dir) if extract_dir is not None else path.with_name(path.name + ".unzip")
    if out.is_dir():
        return out
    with atomic_directory(out) as tmp:
        with zipfile.ZipFile(path) as archive:
            archive.extractall(tmp)
    return out


# --------------------------------------------------------------------------- paper cubes

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
            f"({[str(s.relative_to(path)) for s in stores]}); top-level entries: {listing}"
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
    """Download and unzip the paper's datacube for ``event``; return the zarr store path.

    ``url`` overrides ``event.datacube.url`` (e.g. a mirror, or a loopback server in
    tests) and ``known_hash`` its checksum. Once unzipped, later calls need no network.
    """
    ev = get_event(event)
    src = url or ev.datacube.url
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "paper_cubes"
    name = _split_doi(src)[1] if src.startswith("doi:") else Path(urlparse(src).path).name
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


_ORBIT_STATES = {"a": "ascending", "d": "descending", "ascending": "ascending",
                 "descending": "descending"}


def _orbit_state(value: str) -> str:
    key = str(value).strip().lower()
    if key not in _ORBIT_STATES:
        raise ValueError(
            f"orbit_state {value!r} is not known; use 'ascending' or 'descending' ('a'/'d')"
        )
    return _ORBIT_STATES[key]


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
    """CRS of a paper cube: stored (rioxarray/attrs), else inferred from the coordinates."""
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
    if west - 1 <= x.min() and x.max() <= east + 1 and south - 1 <= y.min() and y.max() <= north + 1:
        return CRS.from_epsg(4326)
    to_utm = Transformer.from_crs("EPSG:4326", ev.crs, always_xy=True)
    ex, ey = to_utm.transform([west, east, west, east], [south, south, north, north])
    if x.max() >= min(ex) and x.min() <= max(ex) and y.max() >= min(ey) and y.min() <= max(ey):
        return CRS.from_user_input(ev.crs)
    raise CubeError(
        f"the datacube stores no CRS and its coordinates (x {x.min():.6g}..{x.max():.6g}, "
        f"y {y.min():.6g}..{y.max():.6g}) match neither lon/lat nor {ev.crs} over the "
        f"{ev.name} area; write the CRS with ds.rio.write_crs(...) and pass path=…"
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
        label variable (y, x); coordinate ``sat:orbit_state`` (timestep) ``'a'``/``'d'``.
    event:
        The event (name or :class:`~sarslide.events.Event`); gives event time, label kind
        and — if the store has none — the CRS.
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
    problems = []
    if "timestep" not in ds.dims:
        problems.append("no 'timestep' dimension")
    for name in (*BANDS, label):
        if name not in ds.data_vars:
            problems.append(f"no {name!r} variable")
    for name in BANDS:
        if name in ds.data_vars and set(ds[name].dims) != {"timestep", "y", "x"}:
            problems.append(f"{name!r} has dims {ds[name].dims}, expected (timestep, y, x)")
    if label in ds.data_vars and set(ds[label].dims) != {"y", "x"}:
        problems.append(f"{label!r} has dims {ds[label].dims}, expected (y, x)")
    if problems:
        raise CubeError(
            "unknown datacube layout (" + "; ".join(problems) + "); found "
            + _layout_summary(ds)
            + ". Expected the layout of Zenodo record 7248056: dims timestep/y/x(/timepair), "
            "variables vv, vh (timestep, y, x), landslides (y, x), coordinate sat:orbit_state"
        )
    if "timepair" in ds.dims:
        ds = ds.drop_dims("timepair")
    times = _as_datetimes(ds["timestep"].values)
    out = xr.Dataset(coords={"time": ("time", times.values), "y": ds["y"].values,
                             "x": ds["x"].values})
    for name in BANDS:
        band = ds[name].transpose("timestep", "y", "x").astype("float32")
        band = band.where(np.isfinite(band) & (band > 0))
        out[name] = (("time", "y", "x"), band.data, {"units": "1", "long_name": f"{name} linear backscatter"})
    if "sat:orbit_state" in ds.coords or "sat:orbit_state" in ds.data_vars:
        raw = ds["sat:orbit_state"].values
        states = [_orbit_state(v.decode() if isinstance(v, bytes) else v) for v in raw]
        out = out.assign_coords(orbit_state=("time", np.asarray(states, dtype=str)))
    for key, new in (("sat:relative_orbit", "relative_orbit"), ("sat:platform", "platform"),
                     ("platform", "platform")):
        if key in ds.coords and ds[key].dims == ("timestep",) and new not in out.coords:
            out = out.assign_coords({new: ("time", ds[key].values)})
    raw_label = ds[label].transpose("y", "x").fillna(0)
    if ev.label_kind == "mask":
        lab = (raw_label > 0).astype("uint8")
    else:
        lab = raw_label.round().clip(0, np.iinfo(np.uint16).max).astype("uint16")
    out["landslides"] = (("y", "x"), lab.data)
    if "dem" in ds.data_vars and set(ds["dem"].dims) == {"y", "x"}:
        out["dem"] = (("y", "x"), ds["dem"].transpose("y", "x").astype("float32").data,
                      {"units": "m"})
    if orbit_state is not None:
        wanted = _orbit_state(orbit_state)
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
        out = out.isel(time=np.flatnonzero(keep))
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
    return validate_cube(out, check_values=False, require_labels=True)


def _reproject_lazy(cube: xr.Dataset, ev: Event) -> xr.Dataset:
    """Reproject a lon/lat cube onto the event's UTM 10 m grid (dask-aware, via odc-geo).

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
            gbox, resampling="nearest" if integer else "bilinear",
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
        passes with :func:`sarslide.cube.pass_pair` (or :func:`load_paper_pass_pair`).

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
        store = fetch_paper_cube(ev, cache_dir=cache_dir, url=url, known_hash=known_hash,
                                 progress=progress)
    ds = xr.open_zarr(store, consolidated=None)
    return paper_cube_to_event_cube(ds, ev, orbit_state=orbit_state)


def load_paper_pass_pair(
    event: str | Event,
    *,
    n_pre: int = 1,
    n_post: int = 1,
    orbit_state: str | None = "descending",
    **kwargs,
) -> xr.Dataset:
    """The paper cube reduced to one (averaged) pre- and post-event pass pair.

    Convenience for ``pass_pair(load_paper_cube(event, orbit_state=…), n_pre, n_post)``;
    the published experiments used descending passes. Other keywords go to
    :func:`load_paper_cube`.
    """
    from sarslide.cube import pass_pair

    cube = load_paper_cube(event, orbit_state=orbit_state, **kwargs)
    return pass_pair(cube, n_pre=n_pre, n_post=n_post)


# --------------------------------------------------------------------------- grid


def event_geobox(
    event: str | Event,
    *,
    resolution: float | None = None,
    crs: str | None = None,
    bounds_lonlat: tuple[float, float, float, float] | None = None,
):
    """The event grid: ``event.bounds_lonlat`` in ``event.crs`` at ``event.resolution``.

    Returns an :class:`odc.geo.geobox.GeoBox` whose pixel edges sit on multiples of the
    resolution (so grids of different loads line up). ``resolution`` (metres), ``crs``
    and ``bounds_lonlat`` (W, S, E, N degrees) override the event's values.
    """
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import box

    ev = get_event(event)
    west, south, east, north = bounds_lonlat or ev.bounds_lonlat
    target = crs or ev.crs
    area = box(west, south, east, north, "EPSG:4326").to_crs(target)
    return GeoBox.from_bbox(area.boundingbox, crs=target, resolution=resolution or ev.resolution)


# --------------------------------------------------------------------------- STAC search

#: Planetary Computer's STAC API.
PC_STAC_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"
#: Environment variable holding the Planetary Computer subscription key.
PC_KEY_ENV = "PC_SDK_SUBSCRIPTION_KEY"

#: What each supported collection is, in words the notebook shows.
COLLECTIONS: dict[str, dict[str, str | bool]] = {
    "sentinel-1-rtc": {
        "needs_key": True,
        "values": "gamma0 (linear power), radiometrically terrain corrected, float32, "
                  "no-data -32768",
        "geometry": "map-projected (UTM zone of each scene, 10 m), not snapped to a "
                    "common grid",
    },
    "sentinel-1-grd": {
        "needs_key": False,
        "values": "digital numbers (uint16 amplitude), NOT calibrated to sigma0/gamma0 and "
                  "NOT terrain corrected: slopes facing the radar look brighter, slopes "
                  "facing away darker, foreshortening and layover are left in",
        "geometry": "radar geometry georeferenced only by ground control points (GCPs): "
                    "positions can be off by tens of metres in steep terrain",
    },
}


def stac_query(
    event: str | Event,
    *,
    collection: str = "sentinel-1-rtc",
    days_before: int = 36,
    days_after: int = 24,
    bounds_lonlat: tuple[float, float, float, float] | None = None,
) -> dict:
    """The STAC item-search parameters :func:`search_passes` sends (a plain dict).

    ``datetime`` spans ``days_before`` days before to ``days_after`` days after the event
    (Sentinel-1 repeats every 12 days per satellite, every 6 with two); only
    Interferometric Wide swath scenes are asked for.
    """
    ev = get_event(event)
    t0 = ev.time_utc.astimezone(timezone.utc)
    start = (t0 - timedelta(days=days_before)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (t0 + timedelta(days=days_after)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "collections": [collection],
        "bbox": list(bounds_lonlat or ev.bounds_lonlat),
        "datetime": f"{start}/{end}",
        "query": {"sar:instrument_mode": {"eq": "IW"}},
    }


def search_passes(
    event: str | Event,
    *,
    collection: str = "sentinel-1-rtc",
    days_before: int = 36,
    days_after: int = 24,
    bounds_lonlat: tuple[float, float, float, float] | None = None,
    catalog: str | object = PC_STAC_URL,
    max_items: int | None = 500,
):
    """Search a STAC API for Sentinel-1 scenes around the event.

    Parameters
    ----------
    catalog:
        STAC API URL, or an open :class:`pystac_client.Client`.
    Other parameters:
        See :func:`stac_query`.

    Returns
    -------
    pystac.ItemCollection
        The matching items (scenes), unsigned. Feed them to :func:`select_passes`.

    Raises
    ------
    NetworkUnavailableError
        When the STAC API cannot be reached.
    """
    import pystac_client

    if collection not in COLLECTIONS:
        raise ValueError(f"collection {collection!r} is not supported; use one of {list(COLLECTIONS)}")
    params = stac_query(event, collection=collection, days_before=days_before,
                        days_after=days_after, bounds_lonlat=bounds_lonlat)
    where = catalog if isinstance(catalog, str) else getattr(catalog, "self_href", "the STAC API")
    with network_errors(str(where)):
        client = pystac_client.Client.open(catalog) if isinstance(catalog, str) else catalog
        search = client.search(**params, max_items=max_items)
        return search.item_collection()


@dataclasses.dataclass(frozen=True)
class Pass:
    """One overflight: the scenes (frames) of one orbit, a few seconds apart.

    Attributes
    ----------
    time:
        Start of the first scene (UTC, timezone-naive).
    orbit_state, relative_orbit, platform:
        From the items' ``sat:`` and ``platform`` properties.
    items:
        The STAC items (frames) of the pass.
    coverage:
        Fraction (0–1) of the area of interest covered by the union of the frames.
    """

    time: pd.Timestamp
    orbit_state: str
    relative_orbit: int
    platform: str
    items: tuple
    coverage: float


def _item_time(item) -> pd.Timestamp:
    """Acquisition start of an item (``start_datetime``, else ``datetime``), naive UTC."""
    props = item.properties
    stamp = pd.Timestamp(props.get("start_datetime") or item.datetime)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def group_passes(
    items: Iterable,
    *,
    bounds_lonlat: tuple[float, float, float, float],
    max_gap: timedelta = timedelta(minutes=5),
) -> list[Pass]:
    """Group STAC items into passes: same orbit state, relative orbit and platform, and
    start times less than ``max_gap`` apart. Items lacking ``vv`` or ``vh`` are skipped.
    """
    import shapely
    from shapely.geometry import shape

    aoi = shapely.box(*bounds_lonlat)
    rows = []
    for item in items:
        props = item.properties
        if not {"vv", "vh"} <= set(item.assets):
            continue
        rows.append((
            str(props.get("sat:orbit_state", "unknown")).lower(),
            int(props.get("sat:relative_orbit", -1)),
            str(props.get("platform", "")).lower(),
            _item_time(item),
            item,
        ))
    rows.sort(key=lambda r: (r[0], r[1], r[2], r[3]))
    passes: list[Pass] = []
    group: list = []

    def close(group):
        if not group:
            return
        union = shapely.union_all([shape(r[4].geometry) for r in group])
        cover = float(union.intersection(aoi).area / aoi.area) if aoi.area else 0.0
        state, rel, plat, t0 = group[0][0], group[0][1], group[0][2], group[0][3]
        passes.append(Pass(t0, state, rel, plat, tuple(r[4] for r in group), round(cover, 6)))

    for row in rows:
        if group and (row[:3] != group[-1][:3] or row[3] - group[-1][3] > max_gap):
            close(group)
            group = []
        group.append(row)
    close(group)
    return sorted(passes, key=lambda p: p.time)


def pass_table(passes: Sequence[Pass], event: str | Event) -> pd.DataFrame:
    """One row per pass: time, side (pre/post), days from the event, orbit, coverage."""
    ev = get_event(event)
    t_event = pd.Timestamp(ev.time_utc).tz_convert("UTC").tz_localize(None)
    return pd.DataFrame(
        {
            "time": [p.time for p in passes],
            "side": ["pre" if p.time < t_event else "post" for p in passes],
            "days_from_event": [round((p.time - t_event) / pd.Timedelta(days=1), 2) for p in passes],
            "orbit_state": [p.orbit_state for p in passes],
            "relative_orbit": [p.relative_orbit for p in passes],
            "platform": [p.platform for p in passes],
            "n_items": [len(p.items) for p in passes],
            "coverage": [p.coverage for p in passes],
        }
    )


@dataclasses.dataclass(frozen=True)
class PassSelection:
    """The passes chosen around an event, nearest first on each side."""

    pre: tuple[Pass, ...]
    post: tuple[Pass, ...]
    orbit_state: str
    relative_orbit: int

    @property
    def items(self) -> list:
        """All STAC items of the chosen passes (pre then post)."""
        return [it for p in (*self.pre, *self.post) for it in p.items]

    @property
    def passes(self) -> tuple[Pass, ...]:
        return (*self.pre, *self.post)


def select_passes(
    items: Iterable,
    event: str | Event,
    *,
    n_pre: int = 1,
    n_post: int = 1,
    orbit_state: str | None = None,
    relative_orbit: int | None = None,
    min_coverage: float = 0.95,
    bounds_lonlat: tuple[float, float, float, float] | None = None,
) -> PassSelection:
    """Choose the ``n_pre`` passes nearest before and ``n_post`` nearest after the event,
    all from one relative orbit and orbit direction (so the viewing geometry is the same
    and backscatter changes come from the ground, not the look angle).

    Passes covering less than ``min_coverage`` of the area are ignored. Among the tracks
    that have enough passes on both sides, the one whose chosen passes span the shortest
    time wins (ties: larger mean coverage, then lower relative orbit number).
    ``orbit_state`` / ``relative_orbit`` restrict the tracks considered.

    Raises
    ------
    NoPassesError
        When no track has enough passes before and after the event; the message lists
        what each track had.
    """
    ev = get_event(event)
    if n_pre < 1 or n_post < 1:
        raise ValueError(f"n_pre={n_pre}, n_post={n_post}: ask for at least one pass per side")
    bounds = bounds_lonlat or ev.bounds_lonlat
    passes = group_passes(items, bounds_lonlat=bounds)
    wanted_state = _orbit_state(orbit_state) if orbit_state is not None else None
    t_event = pd.Timestamp(ev.time_utc).tz_convert("UTC").tz_localize(None)
    tracks: dict[tuple[str, int], list[Pass]] = {}
    for p in passes:
        if wanted_state is not None and p.orbit_state != wanted_state:
            continue
        if relative_orbit is not None and p.relative_orbit != int(relative_orbit):
            continue
        tracks.setdefault((p.orbit_state, p.relative_orbit), []).append(p)
    report, best, best_key = [], None, None
    for (state, rel), track in sorted(tracks.items()):
        usable = [p for p in track if p.coverage >= min_coverage]
        pre = sorted((p for p in usable if p.time < t_event), key=lambda p: t_event - p.time)
        post = sorted((p for p in usable if p.time > t_event), key=lambda p: p.time - t_event)
        report.append(
            f"{state} orbit {rel}: {len(pre)} pre / {len(post)} post passes with coverage "
            f">= {min_coverage:.0%} (of {len(track)} passes)"
        )
        if len(pre) < n_pre or len(post) < n_post:
            continue
        chosen_pre, chosen_post = tuple(pre[:n_pre]), tuple(post[:n_post])
        span = chosen_post[-1].time - chosen_pre[-1].time
        cover = np.mean([p.coverage for p in (*chosen_pre, *chosen_post)])
        key = (span, -cover, rel)
        if best_key is None or key < best_key:
            best_key = key
            best = PassSelection(chosen_pre, chosen_post, state, rel)
    if best is None:
        filters = []
        if wanted_state:
            filters.append(f"orbit_state={wanted_state!r}")
        if relative_orbit is not None:
            filters.append(f"relative_orbit={relative_orbit}")
        raise NoPassesError(
            f"no track has {n_pre} pass(es) before and {n_post} after the event "
            f"({t_event.isoformat()} UTC)"
            + (f" with {', '.join(filters)}" if filters else "")
            + ": " + ("; ".join(report) if report else f"{len(passes)} passes found in total")
            + ". Widen days_before/days_after, lower min_coverage or drop the orbit filters."
        )
    return best


# --------------------------------------------------------------------------- signing


def require_key(collection: str) -> None:
    """Raise :class:`MissingKeyError` if ``collection`` needs a key and none is set."""
    info = COLLECTIONS.get(collection)
    if info is None:
        raise ValueError(f"collection {collection!r} is not supported; use one of {list(COLLECTIONS)}")
    if not info["needs_key"]:
        return
    key = os.environ.get(PC_KEY_ENV)
    if not key:
        try:
            from planetary_computer.settings import Settings

            key = Settings.get().subscription_key
        except Exception:  # pragma: no cover - settings unavailable
            key = None
    if not key:
        raise MissingKeyError(
            f"Planetary Computer's {collection!r} needs a subscription key, but "
            f"{PC_KEY_ENV} is not set. Request one at https://planetarycomputer.microsoft.com/"
            f"account/request and run `export {PC_KEY_ENV}=<key>` (or "
            f"os.environ['{PC_KEY_ENV}'] = '<key>' in a notebook). Without a key use "
            "collection='sentinel-1-grd' (anonymous, but uncalibrated and not terrain "
            "corrected) or the paper's cubes."
        )


def resign_planetary_computer(url: str) -> str:
    """A freshly signed Planetary Computer URL (any old SAS token is dropped first).

    ``planetary_computer`` caches tokens and fetches a new one when the cached token has
    less than a minute left, so calling this at every read keeps long loads working.
    """
    import planetary_computer

    parsed = urlparse(url)
    if parsed.netloc.endswith(".blob.core.windows.net") and parsed.query:
        url = parsed._replace(query="").geturl()
    return planetary_computer.sign_url(url)


class _ResigningReader(RioReader):
    """A rasterio reader that signs its asset URL again right before each read."""

    def __init__(self, src, ctx, sign: Callable[[str], str]):
        super().__init__(src, ctx)
        self._sign = sign

    def read(self, cfg, dst_geobox, *, dst=None, selection=None):
        src = dataclasses.replace(self._src, uri=self._sign(self._src.uri))
        return rio_read(src, cfg, dst_geobox, dst=dst, selection=selection)


class ResigningRioDriver(RioDriver):
    """An odc-stac reader driver that signs each asset URL when a chunk is read.

    odc-stac's ``patch_url`` signs once, when the dask graph is built; a load that runs
    longer than the token's life then fails with HTTP 403. This driver calls ``sign`` at
    every read instead (``sign`` must accept signed or unsigned URLs, like
    :func:`resign_planetary_computer`). Pass it as ``odc.stac.load(..., driver=...)``.
    """

    def __init__(self, sign: Callable[[str], str] = resign_planetary_computer):
        super().__init__()
        self.sign = sign

    def open(self, src, ctx):
        return _ResigningReader(src, ctx, self.sign)


# --------------------------------------------------------------------------- loading


def _as_geobox(event: Event, geobox, resolution, crs, bounds_lonlat):
    if geobox is not None:
        return geobox
    return event_geobox(event, resolution=resolution, crs=crs, bounds_lonlat=bounds_lonlat)


def _attach_pass_coords(ds: xr.Dataset, passes: Sequence[Pass]) -> xr.Dataset:
    times = pd.DatetimeIndex(ds["time"].values)
    starts = pd.DatetimeIndex([p.time for p in passes])
    idx = [int(np.argmin(np.abs((starts - t).total_seconds()))) for t in times]
    return ds.assign_coords(
        time=("time", np.array([passes[i].time for i in idx], dtype="datetime64[ns]")),
        orbit_state=("time", np.array([passes[i].orbit_state for i in idx], dtype=str)),
        relative_orbit=("time", np.array([passes[i].relative_orbit for i in idx])),
        platform=("time", np.array([passes[i].platform for i in idx], dtype=str)),
    )


def load_stac_items(
    items: Sequence,
    geobox,
    *,
    bands: Sequence[str] = BANDS,
    chunks: int | None = 2048,
    sign: Callable[[str], str] | None = None,
    resampling: str = "bilinear",
    nodata_values: Sequence[float] = (-32768.0,),
) -> xr.Dataset:
    """Load map-projected STAC assets onto ``geobox`` with odc-stac (dask, one pass a day).

    Parameters
    ----------
    items:
        STAC items whose ``vv``/``vh`` assets are GeoTIFFs with projection metadata
        (``proj:`` extension); frames of one pass are mosaicked (grouped by solar day).
    geobox:
        The target grid (:func:`event_geobox`).
    chunks:
        Dask chunk edge in pixels (``None``: load eagerly).
    sign:
        Called on every asset URL at read time (e.g. :func:`resign_planetary_computer`).
    resampling:
        Resampling from the scenes' grids to the target grid.
    nodata_values:
        Sentinel values that mean no data (Planetary Computer RTC: -32768).

    Returns
    -------
    xarray.Dataset
        ``vv``, ``vh`` (time, y, x) float32, NaN = no data; coordinates ``time``, ``y``,
        ``x`` (pixel centres, metres) and the CRS of ``geobox``.
    """
    import odc.stac

    odc.stac.configure_rio(cloud_defaults=True)
    driver = ResigningRioDriver(sign) if sign is not None else None
    ds = odc.stac.load(
        list(items),
        bands=list(bands),
        geobox=geobox,
        groupby="solar_day",
        chunks=None if chunks is None else {"x": chunks, "y": chunks},
        resampling=resampling,
        dtype="float32",
        nodata=np.nan,
        driver=driver,
    )
    for name in bands:
        band = ds[name]
        for value in nodata_values:
            band = band.where(band != value)
        ds[name] = band.astype("float32")
    crs = ds.rio.crs or geobox.crs.to_wkt()
    ds = ds.drop_vars([c for c in ("spatial_ref",) if c in ds.coords])
    return ds.rio.write_crs(crs)


#: GDAL settings for reading single files over HTTP (as odc-stac's cloud defaults):
#: no directory listing on open, retries on transient errors.
_CLOUD_GDAL = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
}


def _gcp_read_block(hrefs, geobox_spec, window, resampling, sign):
    """Read one block of a GCP-georeferenced pass: DN² (float32, NaN = no data).

    For each scene, the block's outline is mapped into the scene's pixel space with GDAL's
    GCP transformer, only that source window is read (HTTP range requests on a COG), and
    it is warped onto the block with the GCPs shifted to the window. Where frames overlap
    the first scene with data wins.
    """
    import rasterio
    from affine import Affine
    from rasterio.control import GroundControlPoint
    from rasterio.enums import Resampling
    from rasterio.transform import GCPTransformer
    from rasterio.warp import reproject
    from rasterio.warp import transform as warp_points
    from rasterio.windows import Window

    crs_wkt, affine_coeffs, _ = geobox_spec
    (row0, row1), (col0, col1) = window
    height, width = row1 - row0, col1 - col0
    block = Affine(*affine_coeffs) * Affine.translation(col0, row0)
    # points along the block's border, in the target CRS
    edge = np.linspace(0, 1, 9)
    u = np.concatenate([edge, np.ones(9), edge[::-1], np.zeros(9)]) * width
    v = np.concatenate([np.zeros(9), edge, np.ones(9), edge[::-1]]) * height
    bx = block.c + block.a * u + block.b * v
    by = block.f + block.d * u + block.e * v
    out = np.full((height, width), np.nan, dtype="float32")
    margin = 8
    for href in hrefs:
        url = sign(href) if sign is not None else href
        with rasterio.Env(**_CLOUD_GDAL), rasterio.open(url) as src:
            gcps, gcp_crs = src.gcps
            if not gcps:
                raise CubeError(
                    f"{href} has no ground control points; map-projected assets load with "
                    "load_stac_items"
                )
            gx, gy = warp_points(crs_wkt, gcp_crs, bx, by)
            rows, cols = GCPTransformer(gcps).rowcol(gx, gy, op=float)
            r0 = max(int(np.floor(np.min(rows))) - margin, 0)
            r1 = min(int(np.ceil(np.max(rows))) + margin, src.height)
            c0 = max(int(np.floor(np.min(cols))) - margin, 0)
            c1 = min(int(np.ceil(np.max(cols))) + margin, src.width)
            if r0 >= r1 or c0 >= c1:
                continue  # this scene does not reach the block
            data = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
            shifted = [GroundControlPoint(row=g.row - r0, col=g.col - c0, x=g.x, y=g.y, z=g.z)
                       for g in gcps]
        dn = np.zeros((height, width), dtype=data.dtype)
        reproject(data, dn, gcps=shifted, src_crs=gcp_crs, dst_transform=block,
                  dst_crs=crs_wkt, src_nodata=0, dst_nodata=0,
                  resampling=Resampling[resampling])
        fill = (dn > 0) & np.isnan(out)
        out[fill] = dn[fill].astype("float32") ** 2
    return out


def load_grd_items(
    passes: Sequence[Pass],
    geobox,
    *,
    bands: Sequence[str] = BANDS,
    chunks: int = 2048,
    sign: Callable[[str], str] | None = None,
    resampling: str = "bilinear",
) -> xr.Dataset:
    """Load GCP-georeferenced GRD passes onto ``geobox`` (lazily, block by block).

    odc-stac needs map-projected assets, but ``sentinel-1-grd`` scenes are in radar
    geometry with ground control points; each block is warped with GDAL's GCP
    polynomial transformer instead (reading only the source window it needs). Values are DN² — uncalibrated power — with
    DN 0 as no data.

    Returns
    -------
    xarray.Dataset
        ``vv``, ``vh`` (time, y, x) float32, one time step per pass.
    """
    import dask
    import dask.array as da

    height, width = geobox.shape.y, geobox.shape.x
    spec = (geobox.crs.to_wkt(), tuple(geobox.affine)[:6], (height, width))
    rows = [(r, min(r + chunks, height)) for r in range(0, height, chunks)]
    cols = [(c, min(c + chunks, width)) for c in range(0, width, chunks)]
    data = {}
    for band in bands:
        per_pass = []
        for p in passes:
            hrefs = [it.assets[band].href for it in p.items]
            blocks = [[
                da.from_delayed(
                    dask.delayed(_gcp_read_block)(hrefs, spec, (r, c), resampling, sign),
                    shape=(r[1] - r[0], c[1] - c[0]), dtype="float32",
                ) for c in cols] for r in rows]
            per_pass.append(da.block(blocks))
        data[band] = (("time", "y", "x"), da.stack(per_pass))
    from odc.geo.xr import xr_coords

    coords = xr_coords(geobox)
    ds = xr.Dataset(
        data,
        coords={"time": ("time", np.array([p.time for p in passes], dtype="datetime64[ns]")),
                "y": coords["y"].values, "x": coords["x"].values},
    )
    return ds.rio.write_crs(geobox.crs.to_wkt())


def load_planetary_computer(
    event: str | Event,
    *,
    collection: str = "sentinel-1-rtc",
    items: Iterable | None = None,
    n_pre: int = 1,
    n_post: int = 1,
    orbit_state: str | None = None,
    relative_orbit: int | None = None,
    min_coverage: float = 0.95,
    days_before: int = 36,
    days_after: int = 24,
    geobox=None,
    resolution: float | None = None,
    crs: str | None = None,
    bounds_lonlat: tuple[float, float, float, float] | None = None,
    chunks: int | None = 2048,
    sign: bool | Callable[[str], str] = True,
    catalog: str | object = PC_STAC_URL,
    resampling: str = "bilinear",
) -> xr.Dataset:
    """Search, select and load Sentinel-1 passes around ``event`` into an event cube.

    Parameters
    ----------
    event:
        An event name or :class:`~sarslide.events.Event` (any new event works).
    collection:
        ``"sentinel-1-rtc"`` (needs ``PC_SDK_SUBSCRIPTION_KEY``) or ``"sentinel-1-grd"``
        (anonymous; uncalibrated and not terrain corrected, see :data:`COLLECTIONS`).
    items:
        STAC items to choose from instead of searching ``catalog``.
    n_pre, n_post, orbit_state, relative_orbit, min_coverage:
        Pass selection, see :func:`select_passes`.
    days_before, days_after:
        Search window, see :func:`stac_query`.
    geobox, resolution, crs, bounds_lonlat:
        Target grid: the event grid (:func:`event_geobox`) unless overridden.
    chunks:
        Dask chunk edge in pixels.
    sign:
        ``True``: sign with Planetary Computer at every read; ``False``: URLs are used
        as they are; or a callable ``url -> signed url``.

    Returns
    -------
    xarray.Dataset
        An event cube without labels (add them with
        :func:`sarslide.inventory.with_labels`): ``vv``, ``vh`` (time, y, x) float32
        linear, NaN = no data, lazy; per-pass coordinates ``orbit_state``,
        ``relative_orbit``, ``platform``; attrs ``event``, ``event_time``, ``source``,
        ``collection``, ``values``.

    Raises
    ------
    MissingKeyError
        ``sentinel-1-rtc`` with signing but no key.
    NoPassesError
        No suitable passes before/after the event.
    NetworkUnavailableError
        The STAC API cannot be reached.
    """
    ev = get_event(event)
    if collection not in COLLECTIONS:
        raise ValueError(f"collection {collection!r} is not supported; use one of {list(COLLECTIONS)}")
    signer: Callable[[str], str] | None
    if sign is True:
        require_key(collection)
        signer = resign_planetary_computer
    elif sign is False:
        signer = None
    else:
        signer = sign
    if items is None:
        items = search_passes(ev, collection=collection, days_before=days_before,
                              days_after=days_after, bounds_lonlat=bounds_lonlat,
                              catalog=catalog)
    selection = select_passes(items, ev, n_pre=n_pre, n_post=n_post, orbit_state=orbit_state,
                              relative_orbit=relative_orbit, min_coverage=min_coverage,
                              bounds_lonlat=bounds_lonlat)
    gbox = _as_geobox(ev, geobox, resolution, crs, bounds_lonlat)
    passes = sorted(selection.passes, key=lambda p: p.time)
    if collection == "sentinel-1-grd":
        warnings.warn(
            "sentinel-1-grd values are " + str(COLLECTIONS[collection]["values"]) + "; "
            + str(COLLECTIONS[collection]["geometry"]),
            UncalibratedDataWarning,
            stacklevel=2,
        )
        ds = load_grd_items(passes, gbox, chunks=chunks or 2048, sign=signer,
                            resampling=resampling)
    else:
        ds = load_stac_items([it for p in passes for it in p.items], gbox, chunks=chunks,
                             sign=signer, resampling=resampling)
    ds = _attach_pass_coords(ds, passes)
    ds.attrs = {
        "event": ev.name,
        "event_time": ev.time_utc.isoformat(),
        "source": f"planetary-computer:{collection}",
        "collection": collection,
        "values": str(COLLECTIONS[collection]["values"]),
        "pre_times": [p.time.isoformat() for p in selection.pre],
        "post_times": [p.time.isoformat() for p in selection.post],
    }
    return validate_cube(ds, check_values=False, require_labels=False)
