"""Shared fixtures: small hand-built event cubes and toy chips with known contents."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import xarray as xr

# Tests draw off-screen. Set here, inside the pytest run only: an exported MPLBACKEND
# would reach the notebook kernels too, and the book's pages would lose every figure.
matplotlib.use("Agg")

# Offline tests that provoke network errors need not wait out the real backoff (1, 2, 4
# s); tests that check the backoff itself set their own value.
os.environ.setdefault("SARSLIDE_NETWORK_BACKOFF", "0.05")

REPO = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    """Import ``tools/<name>.py`` (the tools folder is scripts, not a package)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        f"tools_{name}", REPO / "tools" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# Real data files that travel with the repository (provenance, licences:
# data/README.md).
FIXTURES = Path(__file__).resolve().parent / "data"


def hand_cube(
    labels: np.ndarray,
    *,
    kind: str = "mask",
    n_pre: int = 1,
    n_post: int = 1,
    crs: str = "EPSG:32654",
    value: float = 0.2,
    seed: int = 0,
) -> xr.Dataset:
    """A valid event cube of the labels' shape with gamma-distributed backscatter.

    Passes are 12 days apart around 2018-09-06 (the Hokkaido event), at 20:40 UTC on the
    dates of Sentinel-1A's descending relative orbit 46 (2018-08-24 before, 2018-09-17
    after): one track, though the cube records no orbit coordinates. Pixel size 10 m.
    """
    ny, nx = labels.shape
    rng = np.random.default_rng(seed)
    times = pd.DatetimeIndex(
        [
            pd.Timestamp("2018-08-24T20:40") - pd.Timedelta(days=12 * i)
            for i in range(n_pre)
        ][::-1]
        + [
            pd.Timestamp("2018-09-17T20:40") + pd.Timedelta(days=12 * i)
            for i in range(n_post)
        ]
    )
    shape = (len(times), ny, nx)
    cube = xr.Dataset(
        {
            "vv": (
                ("time", "y", "x"),
                (value * rng.gamma(5, 1 / 5, shape)).astype("float32"),
            ),
            "vh": (
                ("time", "y", "x"),
                (value / 4 * rng.gamma(5, 1 / 5, shape)).astype("float32"),
            ),
            "landslides": (
                ("y", "x"),
                labels.astype("uint8" if kind == "mask" else "uint16"),
            ),
        },
        coords={
            "time": times,
            "y": 4_700_000.0 - 10.0 * (np.arange(ny) + 0.5),
            "x": 500_000.0 + 10.0 * (np.arange(nx) + 0.5),
        },
        attrs={
            "event": "hokkaido",
            "event_time": "2018-09-05T18:07:59+00:00",
            "label_kind": kind,
            "source": "test",
        },
    )
    return cube.rio.write_crs(crs)


@pytest.fixture
def make_hand_cube():
    return hand_cube


def toy_chips(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise chips; every other chip has an 8x8 'landslide' that brightens the post
    pass."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4, size, size)).astype(np.float32)
    y = np.zeros((n, size, size), np.uint8)
    for i in range(0, n, 2):
        r, c = rng.integers(0, size - 8, 2)
        y[i, r : r + 8, c : c + 8] = 1
        x[i, 2:, r : r + 8, c : c + 8] += 2.0
    return x, y


@pytest.fixture
def make_toy_chips():
    return toy_chips


@pytest.fixture(scope="module")
def toy_data():
    """Training (8) and validation (4) toy chips and labels: ``(x, y, xv, yv)``."""
    return toy_chips(8, seed=0) + toy_chips(4, seed=1)
