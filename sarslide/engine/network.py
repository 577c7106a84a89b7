"""Network settings shared by every remote call: a timeout, a bounded number of retries
with exponential backoff, and the matching GDAL HTTP options for lazy raster reads.

Defaults can be changed without touching code through environment variables:

==============================  =======  ===============================================
variable                        default  meaning
==============================  =======  ===============================================
``SARSLIDE_NETWORK_TIMEOUT``    ``60``   seconds a connection or a read may stall
``SARSLIDE_NETWORK_RETRIES``    ``3``    extra attempts after a failed one (``0``: none)
``SARSLIDE_NETWORK_BACKOFF``    ``1``    seconds before the first retry, then doubled
==============================  =======  ===============================================

A server that accepts a connection and never answers therefore costs at most about
``timeout × (retries + 1) + backoff × (2**retries − 1)`` seconds before the package's
:class:`~sarslide.acquire.errors.NetworkUnavailableError` names the host, the timeout
and the offline alternative.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "TIMEOUT_ENV",
    "RETRIES_ENV",
    "BACKOFF_ENV",
    "NetworkSettings",
    "network_settings",
    "gdal_http_options",
    "with_retries",
    "gdal_network_failure",
]

TIMEOUT_ENV = "SARSLIDE_NETWORK_TIMEOUT"
RETRIES_ENV = "SARSLIDE_NETWORK_RETRIES"
BACKOFF_ENV = "SARSLIDE_NETWORK_BACKOFF"

T = TypeVar("T")


@dataclass(frozen=True)
class NetworkSettings:
    """``timeout`` (s, > 0), ``retries`` (extra attempts, >= 0), ``backoff`` (s, >=
    0)."""

    timeout: float = 60.0
    retries: int = 3
    backoff: float = 1.0

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(
                f"network timeout must be > 0 seconds, got {self.timeout!r}"
            )
        if int(self.retries) != self.retries or self.retries < 0:
            raise ValueError(
                f"network retries must be an integer >= 0, got {self.retries!r}"
            )
        if not self.backoff >= 0:
            raise ValueError(
                f"network backoff must be >= 0 seconds, got {self.backoff!r}"
            )

    def describe(self) -> str:
        """``"timeout 60 s, 3 retries"``: for error messages."""
        retries = "retry" if self.retries == 1 else "retries"
        return f"timeout {self.timeout:g} s, {self.retries} {retries}"


def _env_number(name: str, default: float, kind: type) -> float:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"{name}={text!r} is not a number; set it to e.g. {name}={default} or "
            "unset it"
        ) from None
    if kind is int:
        if value != value or value != int(value):
            raise ValueError(
                f"{name}={text!r} is not a whole number (it counts extra attempts); "
                f"set it to e.g. {name}={default} or unset it"
            )
        return int(value)
    return kind(value)


def network_settings() -> NetworkSettings:
    """The current settings, read from the environment at every call (see module
    docstring)."""
    return NetworkSettings(
        timeout=_env_number(TIMEOUT_ENV, 60.0, float),
        retries=_env_number(RETRIES_ENV, 3, int),
        backoff=_env_number(BACKOFF_ENV, 1.0, float),
    )


def gdal_http_options(settings: NetworkSettings | None = None) -> dict[str, str]:
    """GDAL configuration for HTTP reads (``/vsicurl/``) with the package's timeout and
    retries.

    ``GDAL_HTTP_TIMEOUT`` bounds a whole request, ``GDAL_HTTP_CONNECTTIMEOUT`` the
    connection; GDAL retries transient failures ``GDAL_HTTP_MAX_RETRY`` times, waiting
    ``GDAL_HTTP_RETRY_DELAY`` seconds (it doubles the delay itself).
    """
    s = settings or network_settings()
    return {
        "GDAL_HTTP_TIMEOUT": str(max(int(round(s.timeout)), 1)),
        "GDAL_HTTP_CONNECTTIMEOUT": str(max(int(round(s.timeout)), 1)),
        "GDAL_HTTP_MAX_RETRY": str(int(s.retries)),
        "GDAL_HTTP_RETRY_DELAY": f"{s.backoff:g}",
    }


def _say_retry(
    what: str | None, err: BaseException, attempt: int, s: NetworkSettings, wait: float
) -> None:
    """One line on stderr per retry, so a user facing a silent server knows why it
    waits."""
    text = " ".join(str(err).split())[:100] or type(err).__name__
    print(
        f"sarslide: {what or 'a network call'} failed ({type(err).__name__}: {text}; "
        f"{s.describe()}); retry {attempt + 1} of {int(s.retries)} in {wait:g} s",
        file=sys.stderr,
        flush=True,
    )


def with_retries(
    call: Callable[[], T],
    *,
    retry_on: Callable[[BaseException], bool],
    settings: NetworkSettings | None = None,
    sleep: Callable[[float], None] = time.sleep,
    what: str | None = None,
) -> T:
    """``call()``, retried up to ``settings.retries`` times when ``retry_on(error)`` is
    true.

    The waits are ``backoff, 2·backoff, 4·backoff, …`` seconds, and each retry prints
    one line on stderr (naming ``what``, the error and the attempt). The last error is
    raised unchanged; errors for which ``retry_on`` is false are raised at once.
    """
    s = settings or network_settings()
    for attempt in range(int(s.retries) + 1):
        try:
            return call()
        except Exception as err:
            if attempt >= s.retries or not retry_on(err):
                raise
            wait = s.backoff * 2**attempt
            _say_retry(what, err, attempt, s, wait)
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


# curl's messages for a server that cannot be reached or stalls, as GDAL passes them on
_CURL_NETWORK = re.compile(
    r"timed? ?out|timeout was reached|couldn't connect|could not connect|connection "
    r"refused|"
    r"connection reset|couldn't resolve|could not resolve|empty reply|recv failure|"
    r"send failure|failed to connect|response code: 0\b|http response code: 0\b",
    re.IGNORECASE,
)


def gdal_network_failure(err: BaseException) -> bool:
    """Whether a rasterio/GDAL error is a connection failure or a timeout (not e.g. a
    404)."""
    try:
        from rasterio.errors import RasterioError
    except ImportError:  # pragma: no cover - rasterio is a dependency
        return False
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, RasterioError) and _CURL_NETWORK.search(str(err)):
            return True
        err = err.__cause__ or err.__context__
    return False
