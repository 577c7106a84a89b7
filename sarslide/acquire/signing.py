"""Planetary Computer access: the subscription-key check and URL signing at every read
(an odc-stac reader driver), so loads that outlive a shared-access token keep working.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from urllib.parse import urlparse

from odc.loader import RioDriver, RioReader
from odc.loader._rio import rio_read  # the reader RioReader.read itself delegates to

from .download import network_errors
from .errors import BadResponseError, MissingKeyError
from .stac import COLLECTIONS, PC_KEY_ENV

__all__ = [
    "require_key",
    "resign_planetary_computer",
    "ResigningRioDriver",
]


def require_key(collection: str) -> None:
    """Raise :class:`MissingKeyError` if ``collection`` needs a key and none is set."""
    info = COLLECTIONS.get(collection)
    if info is None:
        raise ValueError(
            f"collection {collection!r} is not supported; use one of "
            f"{list(COLLECTIONS)}"
        )
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
            f"{PC_KEY_ENV} is not set. Request one at "
            "https://planetarycomputer.microsoft.com/account/request and run `export "
            f"{PC_KEY_ENV}=<key>` (or os.environ['{PC_KEY_ENV}'] = '<key>' in a "
            "notebook). Without a key use collection='sentinel-1-grd' (anonymous, but "
            "uncalibrated and not terrain corrected) or the paper's cubes."
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
    """A rasterio reader that signs its asset URL again right before each read (when
    ``sign`` is given) and turns connection failures and timeouts into
    :class:`~sarslide.acquire.errors.NetworkUnavailableError`."""

    def __init__(self, src, ctx, sign: Callable[[str], str] | None):
        super().__init__(src, ctx)
        self._sign = sign

    def read(self, cfg, dst_geobox, *, dst=None, selection=None):
        src = self._src
        if self._sign is not None:
            src = dataclasses.replace(src, uri=self._sign(src.uri))
        url = urlparse(self._src.uri)._replace(query="").geturl()
        from rasterio.errors import RasterioError

        try:
            with network_errors(url):
                return rio_read(src, cfg, dst_geobox, dst=dst, selection=selection)
        except (
            RasterioError
        ) as err:  # it answered, with something that is not the raster
            text = " ".join(str(err).split())[:200]
            raise BadResponseError(
                f"the server of {url} answered, but not with a readable GeoTIFF "
                f"({type(err).__name__}: {text}); the file may be missing (HTTP error) "
                "or the server sends an error page. Try again later, or check the STAC "
                "catalog's asset URLs"
            ) from None


class ResigningRioDriver(RioDriver):
    """An odc-stac reader driver that signs each asset URL when a chunk is read.

    odc-stac's ``patch_url`` signs once, when the dask graph is built; a load that runs
    longer than the token's life then fails with HTTP 403. This driver calls ``sign`` at
    every read instead (``sign`` must accept signed or unsigned URLs, like
    :func:`resign_planetary_computer`). Pass it as ``odc.stac.load(..., driver=...)``.
    ``sign=None`` reads the URLs as they are. Either way a read that cannot reach the
    server, or stalls past the GDAL HTTP timeout (GDAL itself retries transient HTTP
    errors, ``GDAL_HTTP_MAX_RETRY``; a read is not retried here, because GDAL caches the
    failed lookup and a second attempt would fail at once), raises the package's
    :class:`~sarslide.acquire.errors.NetworkUnavailableError` instead of a raw
    ``RasterioIOError``.
    """

    def __init__(self, sign: Callable[[str], str] | None = resign_planetary_computer):
        super().__init__()
        self.sign = sign

    def open(self, src, ctx):
        return _ResigningReader(src, ctx, self.sign)
