"""Real Sentinel-1 data for an event, from three sources, with one result: an event cube
(see :mod:`sarslide.cube`).

**The paper's datacubes** (Zenodo record 7248056, :mod:`.paper`).
:func:`load_paper_cube` downloads ``hokkaido_japan.zip`` / ``kaikoura_newzealand.zip``
with pooch (cached; checked against the md5 that Zenodo publishes for the record;
progress bar), unzips it once, opens the zarr store lazily and converts its layout —
dims ``timestep``/``y``/``x``/``timepair``, variables ``vv``, ``vh``, ``dem``,
``landslides``, per-timestep coordinate ``sat:orbit_state`` (``'a'``/``'d'``) — into the
event-cube schema.

**Planetary Computer** (any new event). :func:`search_passes` queries the STAC API
(:mod:`.stac`), :func:`select_passes` picks the passes nearest before and after the
event from one relative orbit and orbit direction (:mod:`.passes`), and
:func:`load_planetary_computer` loads them onto the event's 10 m grid
(:func:`event_geobox`) as dask arrays (:mod:`.load`). Two collections (see
:data:`COLLECTIONS`):

- ``sentinel-1-rtc`` — radiometrically terrain-corrected gamma0, map-projected, loaded
  with odc-stac; needs a Planetary Computer key in ``PC_SDK_SUBSCRIPTION_KEY``.
- ``sentinel-1-grd`` — anonymous, but neither calibrated nor terrain corrected, in radar
  geometry with ground control points; warped block by block with GDAL's GCP transformer
  (:mod:`.grd`).

Asset URLs are signed again at every read (:mod:`.signing`), so a load that outlives its
shared-access token keeps working.

Every network call has a timeout and a bounded retry with backoff
(:mod:`sarslide.engine.network`; ``SARSLIDE_NETWORK_TIMEOUT``,
``SARSLIDE_NETWORK_RETRIES``, ``SARSLIDE_NETWORK_BACKOFF``). Network failures raise
:class:`NetworkUnavailableError` (:mod:`.download`, :mod:`.errors`); nothing here ever
falls back to synthetic data — that choice belongs to the profile
(``SARSLIDE_PROFILE=demo``).

Modules: :mod:`.errors` (exceptions, warnings), :mod:`.download` (pooch fetch, atomic
unzip, cache folder, network-error translation), :mod:`.paper` (Zenodo cubes → event
cube), :mod:`.grid` (event grid), :mod:`.stac` (collections, STAC search),
:mod:`.passes` (pass grouping and selection), :mod:`.signing` (key check, re-signing
reader), :mod:`.load` (odc-stac and Planetary Computer loads), :mod:`.grd` (GCP-warped
GRD loads), :mod:`.inventory` (the events' published landslide inventories,
:func:`fetch_inventory`). Orbit-direction names come from :mod:`sarslide.orbits`.
"""

from __future__ import annotations

from ..engine.network import NetworkSettings, gdal_http_options, network_settings
from .download import (
    CACHE_ENV,
    default_cache_dir,
    extract_zip,
    fetch_file,
    is_network_failure,
    network_errors,
    split_doi,
)
from .errors import (
    BadResponseError,
    CorruptFileError,
    MissingKeyError,
    NetworkUnavailableError,
    NoPassesError,
    UncalibratedDataWarning,
)
from .grd import load_grd_items
from .grid import event_geobox
from .inventory import doi_record_files, fetch_inventory
from .load import load_planetary_computer, load_stac_items
from .paper import (
    fetch_paper_cube,
    find_zarr_store,
    load_paper_cube,
    load_paper_pass_pair,
    paper_cube_to_event_cube,
)
from .passes import Pass, PassSelection, group_passes, pass_table, select_passes
from .signing import ResigningRioDriver, require_key, resign_planetary_computer
from .stac import COLLECTIONS, PC_KEY_ENV, PC_STAC_URL, search_passes, stac_query

__all__ = [
    # errors
    "NetworkUnavailableError",
    "MissingKeyError",
    "NoPassesError",
    "UncalibratedDataWarning",
    "CorruptFileError",
    "BadResponseError",
    # network settings
    "NetworkSettings",
    "network_settings",
    "gdal_http_options",
    # downloads
    "CACHE_ENV",
    "default_cache_dir",
    "network_errors",
    "is_network_failure",
    "fetch_file",
    "extract_zip",
    "split_doi",
    # the events' landslide inventories
    "fetch_inventory",
    "doi_record_files",
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
