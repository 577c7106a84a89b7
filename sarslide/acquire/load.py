"""Loading Sentinel-1 passes onto the event grid: odc-stac for map-projected assets
(:func:`load_stac_items`) and the whole Planetary Computer route — search, select, load
— for any event (:func:`load_planetary_computer`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from sarslide.cube import BANDS, validate_cube
from sarslide.events import Event, get_event

from ..engine.network import gdal_http_options
from .errors import UncalibratedDataWarning
from .grd import load_grd_items
from .grid import event_geobox
from .passes import Pass, select_passes
from .signing import ResigningRioDriver, require_key, resign_planetary_computer
from .stac import COLLECTIONS, PC_STAC_URL, search_passes

__all__ = [
    "load_stac_items",
    "load_planetary_computer",
]


def _as_geobox(event: Event, geobox, resolution, crs, bounds_lonlat):
    if geobox is not None:
        return geobox
    return event_geobox(
        event, resolution=resolution, crs=crs, bounds_lonlat=bounds_lonlat
    )


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
    """Load map-projected STAC assets onto ``geobox`` with odc-stac (dask, one pass a
    day).

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
        Reads use the package's network timeout and retries
        (:func:`~sarslide.engine.network.gdal_http_options`); a server that cannot be
        reached or stalls raises
        :class:`~sarslide.acquire.errors.NetworkUnavailableError` when the data are
        computed.
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

    odc.stac.configure_rio(cloud_defaults=True, **gdal_http_options())
    driver = ResigningRioDriver(sign)
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
        raise ValueError(
            f"collection {collection!r} is not supported; use one of "
            f"{list(COLLECTIONS)}"
        )
    signer = _signer(sign, collection)
    if items is None:
        items = search_passes(
            ev,
            collection=collection,
            days_before=days_before,
            days_after=days_after,
            bounds_lonlat=bounds_lonlat,
            catalog=catalog,
        )
    selection = select_passes(
        items,
        ev,
        n_pre=n_pre,
        n_post=n_post,
        orbit_state=orbit_state,
        relative_orbit=relative_orbit,
        min_coverage=min_coverage,
        bounds_lonlat=bounds_lonlat,
    )
    gbox = _as_geobox(ev, geobox, resolution, crs, bounds_lonlat)
    passes = sorted(selection.passes, key=lambda p: p.time)
    ds = _load_passes(collection, passes, gbox, chunks, signer, resampling)
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


def _signer(
    sign: bool | Callable[[str], str], collection: str
) -> Callable[[str], str] | None:
    """The URL signer for ``sign``: Planetary Computer's (the key is checked), none, or
    the caller's callable."""
    if sign is True:
        require_key(collection)
        return resign_planetary_computer
    if sign is False:
        return None
    return sign


def _load_passes(
    collection: str,
    passes: Sequence[Pass],
    gbox,
    chunks: int | None,
    signer: Callable[[str], str] | None,
    resampling: str,
) -> xr.Dataset:
    """Load ``passes`` (time order) onto ``gbox``: GRD via the GCP warp, RTC via
    odc-stac.

    GRD loads warn with :class:`UncalibratedDataWarning`, attributed to the caller of
    :func:`load_planetary_computer` (``stacklevel=3``).
    """
    if collection == "sentinel-1-grd":
        warnings.warn(
            "sentinel-1-grd values are "
            + str(COLLECTIONS[collection]["values"])
            + "; "
            + str(COLLECTIONS[collection]["geometry"]),
            UncalibratedDataWarning,
            stacklevel=3,
        )
        return load_grd_items(
            passes, gbox, chunks=chunks or 2048, sign=signer, resampling=resampling
        )
    return load_stac_items(
        [it for p in passes for it in p.items],
        gbox,
        chunks=chunks,
        sign=signer,
        resampling=resampling,
    )
