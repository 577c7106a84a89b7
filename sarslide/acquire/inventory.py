"""The events' published landslide inventories: download once, checked, cached.

:func:`fetch_inventory` fetches ``Event.inventory`` (a direct URL with a known sha256,
or a Zenodo DOI record whose files are checked against the record's md5) into the cache
folder; :mod:`sarslide.inventory` then reads and rasterises the file (no network there).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..engine.network import with_retries
from ..events import Event, get_event
from ..inventory import GEOSPATIAL_SUFFIXES
from .download import default_cache_dir, fetch_file, is_network_failure, network_errors

__all__ = ["doi_record_files", "fetch_inventory"]


def doi_record_files(doi: str, cache_dir: Path) -> dict[str, str]:
    """File name -> ``md5:…`` of a Zenodo record (network access; pooch's timeout, the
    package's retries with backoff, see :mod:`sarslide.engine.network`)."""
    import pooch

    pup = pooch.create(path=cache_dir, base_url=f"{doi.rstrip('/')}/", registry=None)
    with_retries(pup.load_registry_from_doi, retry_on=is_network_failure)
    return dict(pup.registry)


def fetch_inventory(
    event: str | Event,
    cache_dir: str | os.PathLike | None = None,
    *,
    filename: str | None = None,
    progress: bool = True,
) -> Path:
    """Download (once) the published landslide inventory of ``event`` and return its
    path.

    Uses ``event.inventory``: a direct URL with a known sha256 (Kaikōura KMZ), or a
    Zenodo DOI record (Hokkaido) whose files are listed and checked against the record's
    md5. For a record holding several inventory files, ``filename`` picks one (the error
    lists them). ``cache_dir`` defaults to ``<default_cache_dir()>/inventories``.
    Network failures raise
    :class:`sarslide.acquire.NetworkUnavailableError`.
    """
    ev = get_event(event)
    cache = (
        Path(cache_dir)
        if cache_dir is not None
        else default_cache_dir() / "inventories"
    )
    url = ev.inventory.url
    if url.startswith("doi:") and filename is None and url.count("/") <= 1:
        # A bare record DOI: pick the geospatial file from the record's listing.
        with network_errors(url):
            files = doi_record_files(url, cache)
        candidates = sorted(
            f for f in files if Path(f).suffix.lower() in GEOSPATIAL_SUFFIXES
        )
        if len(candidates) != 1:
            raise ValueError(
                f"the record {url} holds files {sorted(files)}; pass filename=… to "
                "choose the inventory to fetch"
            )
        filename = candidates[0]
    if url.startswith("doi:") and filename is not None:
        url = f"{url.rstrip('/')}/{filename}"
    return fetch_file(url, ev.inventory.known_hash, cache_dir=cache, progress=progress)
