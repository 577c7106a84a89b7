"""Planetary Computer's STAC API: the supported Sentinel-1 collections, the search
parameters for an event, and the search itself.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import timedelta, timezone

from sarslide.events import Event, get_event

from ..engine.network import network_settings, with_retries
from .download import is_network_failure, network_errors
from .errors import BadResponseError

__all__ = [
    "PC_STAC_URL",
    "PC_KEY_ENV",
    "COLLECTIONS",
    "stac_query",
    "search_passes",
]


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
        "values": "digital numbers (uint16 amplitude), NOT calibrated to "
        "sigma0/gamma0 and NOT terrain corrected: slopes facing the radar look "
        "brighter, slopes "
        "facing away darker, foreshortening and layover are left in",
        "geometry": "radar geometry georeferenced only by ground control points "
        "(GCPs): positions can be off by tens of metres in steep terrain",
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

    ``datetime`` spans ``days_before`` days before to ``days_after`` days after the
    event (Sentinel-1 repeats every 12 days per satellite, every 6 with two); only
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


@contextlib.contextmanager
def _bad_answers(where: str) -> Iterator[None]:
    """A STAC API that answers with an HTTP error (``APIError``: 500, 502 …) or with a
    page that is not JSON (an HTML error page, a captive portal) becomes
    :class:`~sarslide.acquire.errors.BadResponseError` naming the URL."""
    from pystac_client.exceptions import APIError

    try:
        yield
    except APIError as err:
        status = getattr(err, "status_code", None)
        text = " ".join(str(err).split())[:160]
        raise BadResponseError(
            f"the STAC API at {where} answered with an error"
            f"{f' (HTTP {status})' if status else ''}: {text or 'no message'}. The "
            f"service may be "
            "down: try again later, check the catalog URL, or work offline (demo "
            "profile, or "
            "`sarslide fetch` where the network works)"
        ) from None
    except json.JSONDecodeError as err:
        raise BadResponseError(
            f"the STAC API at {where} answered with something that is not JSON "
            f"({err.msg} at character {err.pos}; an HTML error page, a proxy or login "
            "page?); check the catalog URL, or try again later"
        ) from None


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

    Every request has the package's timeout (``SARSLIDE_NETWORK_TIMEOUT``), and the
    search is tried again with backoff (``SARSLIDE_NETWORK_RETRIES``,
    ``SARSLIDE_NETWORK_BACKOFF``; see :mod:`sarslide.engine.network`) when the server
    cannot be reached or stalls.

    Raises
    ------
    NetworkUnavailableError
        When the STAC API cannot be reached or does not answer in time.
    """
    import pystac_client
    from pystac_client.stac_api_io import StacApiIO

    if collection not in COLLECTIONS:
        raise ValueError(
            f"collection {collection!r} is not supported; use one of "
            f"{list(COLLECTIONS)}"
        )
    params = stac_query(
        event,
        collection=collection,
        days_before=days_before,
        days_after=days_after,
        bounds_lonlat=bounds_lonlat,
    )
    where = (
        catalog
        if isinstance(catalog, str)
        else getattr(catalog, "self_href", "the STAC API")
    )
    settings = network_settings()

    def attempt():
        if isinstance(catalog, str):
            # retries are ours (with backoff), not urllib3's: max_retries=0
            io = StacApiIO(timeout=settings.timeout, max_retries=0)
            client = pystac_client.Client.open(
                catalog, stac_io=io, timeout=settings.timeout
            )
        else:
            client = catalog
        return client.search(**params, max_items=max_items).item_collection()

    with _bad_answers(str(where)), network_errors(str(where), settings):
        return with_retries(
            attempt,
            retry_on=is_network_failure,
            settings=settings,
            what=f"STAC search at {where}",
        )
