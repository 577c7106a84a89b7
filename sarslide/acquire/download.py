"""Downloads: the pooch cache folder, one-time checked fetches, atomic unzip, and the
translation of connection failures into
:class:`~sarslide.acquire.errors.NetworkUnavailableError`.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from sarslide.engine.atomic import atomic_directory, recover_directory

from ..engine.network import (
    NetworkSettings,
    gdal_network_failure,
    network_settings,
    with_retries,
)
from .errors import CorruptFileError, NetworkUnavailableError

__all__ = [
    "CACHE_ENV",
    "default_cache_dir",
    "network_errors",
    "is_network_failure",
    "fetch_file",
    "extract_zip",
    "split_doi",
]


_OFFLINE_HINT = (
    "No network: the paper profile and the Planetary Computer need internet access. "
    "Run offline with the demo profile instead (SARSLIDE_PROFILE=demo, or "
    "profile_name='demo' in a notebook's parameters cell), which uses synthetic cubes, "
    "or download the data beforehand where there is a network (`sarslide fetch`). "
    "A slow server may need a longer timeout: SARSLIDE_NETWORK_TIMEOUT=<seconds>."
)


#: Environment variable that overrides where downloads are cached (the same folder
#: :func:`sarslide.experiment.resolve_data_dir` uses for cubes and chips).
CACHE_ENV = "SARSLIDE_DATA_DIR"


def default_cache_dir() -> Path:
    """Download cache: ``$SARSLIDE_DATA_DIR`` or the OS cache folder
    (``pooch.os_cache``)."""
    import pooch

    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(pooch.os_cache("sarslide"))


def _connection_failure(err: BaseException) -> BaseException | None:
    """The connection error behind ``err`` (following ``__cause__``/``__context__``), if
    any.

    Libraries wrap connection failures (pystac-client raises ``APIError`` from a
    requests ``ConnectionError``), so the whole chain is searched.
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


def is_network_failure(err: BaseException) -> bool:
    """Whether ``err`` (or an error it wraps) is a connection failure or a timeout."""
    return _connection_failure(err) is not None or gdal_network_failure(err)


def _host(what: str) -> str:
    parsed = urlparse(what)
    return parsed.netloc or what


@contextlib.contextmanager
def network_errors(
    what: str, settings: NetworkSettings | None = None
) -> Iterator[None]:
    """Turn connection failures and timeouts inside the block into
    :class:`NetworkUnavailableError`.

    ``what`` (a URL or service name) is named in the message with its host, the timeout
    and retries in force (:func:`~sarslide.engine.network.network_settings`) and the
    offline alternatives. HTTP errors (404, 403, …) and checksum mismatches pass through
    unchanged.
    """
    try:
        yield
    except NetworkUnavailableError:
        raise
    except Exception as err:
        cause = _connection_failure(err)
        if cause is None and gdal_network_failure(err):
            cause = err
        if cause is None:
            raise
        s = settings or network_settings()
        raise NetworkUnavailableError(
            f"could not reach {_host(what)} for {what} ({s.describe()}; "
            f"{type(cause).__name__}: {str(cause).strip()[:300]}). {_OFFLINE_HINT}"
        ) from err


def split_doi(url: str) -> tuple[str, str]:
    """``doi:10.5281/zenodo.1/file.zip`` -> (``doi:10.5281/zenodo.1``, ``file.zip``)."""
    base, _, name = url.rpartition("/")
    if not url.startswith("doi:") or base.count("/") < 1 or not name:
        raise ValueError(
            f"{url!r} is not a pooch DOI file address; use "
            "'doi:<prefix>/<suffix>/<file name>'"
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
        base, name = split_doi(url)
        target = cache / (fname or name)
        if target.exists():
            return target
        settings = network_settings()
        with network_errors(url, settings):
            pup = pooch.create(
                path=cache,
                base_url=f"{base}/",
                registry=None,
                retry_if_failed=int(settings.retries),
            )
            with_retries(
                pup.load_registry_from_doi,
                retry_on=is_network_failure,
                settings=settings,
                what=f"the file list of {base}",
            )
            if name not in pup.registry:
                raise FileNotFoundError(
                    f"the record {base} has no file {name!r}; it holds "
                    f"{sorted(pup.registry)}"
                )
            downloader = pooch.DOIDownloader(
                progressbar=progress, timeout=settings.timeout
            )
            return Path(pup.fetch(name, downloader=downloader))
    name = fname or Path(urlparse(url).path).name
    if not name:
        raise ValueError(f"cannot tell a file name from {url!r}; pass fname=…")
    target = cache / name
    if target.exists() and known_hash is None:
        return target
    settings = network_settings()
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=settings.timeout)
    with network_errors(url, settings):
        return Path(
            with_retries(
                lambda: pooch.retrieve(
                    url, known_hash, fname=name, path=cache, downloader=downloader
                ),
                retry_on=is_network_failure,
                settings=settings,
                what=f"download of {url}",
            )
        )


def extract_zip(
    path: str | os.PathLike, extract_dir: str | os.PathLike | None = None
) -> Path:
    """Unzip ``path`` once into ``extract_dir`` (default ``<path>.unzip``), atomically.

    The archive is extracted under a temporary name and renamed when complete, so an
    interrupted extraction is never mistaken for a finished one (``pooch.Unzip`` would
    reuse a half-extracted folder). An existing ``extract_dir`` is returned as it is.
    """
    path = Path(path)
    out = (
        Path(extract_dir)
        if extract_dir is not None
        else path.with_name(path.name + ".unzip")
    )
    recover_directory(out)
    if out.is_dir():
        return out
    if not path.is_file():
        raise FileNotFoundError(f"no archive at {path}; download it first (fetch_file)")
    try:
        with atomic_directory(out) as tmp:
            with zipfile.ZipFile(path) as archive:
                archive.extractall(tmp)
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise CorruptFileError(
            f"{path} is not a readable zip archive ({type(err).__name__}: {err}): the "
            f"file is corrupt or incomplete; delete it (rm '{path}') and download it "
            "again"
        ) from err
    return out
