"""Areas of a map: the one rule for "how many km² are mapped as landslide".

A binary map (:func:`sarslide.mapping.binary_map`) stores 1 = landslide, 0 = none and
:data:`~sarslide.mapping.BINARY_NODATA` (255) = no data. Counting ``binary > 0`` would
count every no-data pixel as landslide; :func:`mapped_area_km2` counts only the value 1,
and :func:`valid_area_km2` the pixels that hold data. Chapter 7, ``sarslide map`` and
its ``map.json`` all take their areas from here.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .calibration import BINARY_NODATA
from .errors import MappingError

__all__ = ["mapped_area_km2", "pixel_area_km2", "valid_area_km2"]


def pixel_area_km2(raster: xr.DataArray) -> float:
    """Area of one pixel in km² from the ``x`` / ``y`` coordinate steps (metres).

    Raises
    ------
    MappingError
        If the raster has fewer than 2 pixels along ``x`` or ``y`` (no step to read).
    """
    if raster.sizes.get("x", 0) < 2 or raster.sizes.get("y", 0) < 2:
        raise MappingError(
            f"need a (y, x) raster of at least 2×2 pixels to know its pixel size, got "
            f"sizes {dict(raster.sizes)}"
        )
    dx = float(raster["x"].values[1] - raster["x"].values[0])
    dy = float(raster["y"].values[1] - raster["y"].values[0])
    return abs(dx * dy) / 1e6


def _check_binary(binary: xr.DataArray) -> int:
    """The no-data value of a binary map (its ``rio.nodata``, else 255)."""
    if not np.issubdtype(binary.dtype, np.integer):
        raise MappingError(
            f"expected a binary map (uint8: 1 landslide, 0 none, {BINARY_NODATA} no "
            "data), "
            f"got dtype {binary.dtype}; threshold it first with "
            "sarslide.mapping.binary_map(prob, threshold)"
        )
    nodata = binary.rio.nodata
    return BINARY_NODATA if nodata is None or not np.isfinite(nodata) else int(nodata)


def mapped_area_km2(binary: xr.DataArray) -> float:
    """Landslide area of a binary map in km²: pixels equal to 1, times the pixel area.

    No-data pixels (``rio.nodata``, default 255) never count, whatever their value.

    Parameters
    ----------
    binary:
        (y, x) integer map from :func:`sarslide.mapping.binary_map`, coordinates in
        metres.
    """
    nodata = _check_binary(binary)
    values = np.asarray(binary.values)
    count = int(((values == 1) & (values != nodata)).sum())
    return count * pixel_area_km2(binary)


def valid_area_km2(raster: xr.DataArray) -> float:
    """Area in km² of the pixels that hold data (finite floats; integers ≠ no-data)."""
    values = np.asarray(raster.values)
    if np.issubdtype(values.dtype, np.integer):
        valid = values != _check_binary(raster)
    else:
        valid = np.isfinite(values)
    return int(valid.sum()) * pixel_area_km2(raster)
