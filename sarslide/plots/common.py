"""Helpers shared by the figure modules."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["extent_km"]


def extent_km(da: xr.DataArray) -> list[float]:
    """``[left, right, bottom, top]`` of a (y, x) raster in km (for
    ``imshow(extent=...)``), from its pixel-centre coordinates in metres."""
    x = np.asarray(da["x"].values, dtype=float)
    y = np.asarray(da["y"].values, dtype=float)
    dx, dy = abs(x[1] - x[0]), abs(y[1] - y[0])
    return [
        (x.min() - dx / 2) / 1e3,
        (x.max() + dx / 2) / 1e3,
        (y.min() - dy / 2) / 1e3,
        (y.max() + dy / 2) / 1e3,
    ]
