"""Exceptions and warnings raised while acquiring data (shared by the acquire
modules)."""

from __future__ import annotations

__all__ = [
    "NetworkUnavailableError",
    "MissingKeyError",
    "NoPassesError",
    "UncalibratedDataWarning",
    "CorruptFileError",
    "BadResponseError",
]


class NetworkUnavailableError(ConnectionError):
    """A remote service could not be reached; the message names the offline
    alternative."""


class MissingKeyError(PermissionError):
    """A Planetary Computer collection needs a subscription key that is not set."""


class NoPassesError(LookupError):
    """No Sentinel-1 passes satisfy the request before and/or after the event."""


class UncalibratedDataWarning(UserWarning):
    """The data are not radiometrically calibrated / terrain corrected
    (sentinel-1-grd)."""


class CorruptFileError(ValueError):
    """A downloaded or cached file cannot be read; the message names it and how to
    replace it."""


class BadResponseError(ConnectionError):
    """A server answered, but not with what was asked (an HTTP error such as 500, an
    HTML page instead of JSON, bytes that are not a GeoTIFF); the message names the
    URL."""
