"""Refuse data the model never saw: the scene's input statistics against the training
ones.

A model sees ``(log10(x) − mean) / std`` with the mean and standard deviation of its
stage-1 training chips (:mod:`sarslide.transforms`). A scene whose log10 backscatter
sits far from those statistics — real radar given to a model trained on synthetic
scenes, decibels, another sensor — is outside what the model learned, and its map means
nothing (a demo model marks almost all of a real OPERA RTC scene as landslide).

:func:`input_shift` computes the scene's statistics per polarisation the way
:func:`sarslide.transforms.compute_stats` computes the training ones (pre- and
post-event passes pooled, NaN ignored) on an evenly strided sample, and standardises
them with the training statistics: the scene is *out of distribution* when its
standardised mean leaves ±:data:`MAX_MEAN_SHIFT` (the bound
:func:`sarslide.transforms.standardization_problem` uses for chips that "do not look
standardised") or its spread is more than ten times narrower or wider than the training
spread (:data:`MIN_STD_RATIO`, :data:`MAX_STD_RATIO`). Real Sentinel-1 RTC given to the
demo model is about 5 training standard deviations off in VV.
:func:`check_input_distribution` raises :class:`InputShiftError` naming the band, both
sets of statistics and the fix; it runs before any model computes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..cube import CHANNELS
from ..transforms import LINEAR_FLOOR, BandStats, band_channels
from .errors import MappingError

__all__ = [
    "MAX_MEAN_SHIFT",
    "MAX_STD_RATIO",
    "MIN_STD_RATIO",
    "InputShift",
    "InputShiftError",
    "check_input_distribution",
    "input_shift",
    "scene_stats",
]

#: Largest |scene mean − training mean| / training std (log10 backscatter) accepted.
MAX_MEAN_SHIFT = 2.0
#: Accepted range of scene std / training std (log10 backscatter).
MIN_STD_RATIO, MAX_STD_RATIO = 0.1, 10.0


class InputShiftError(MappingError):
    """The scene's backscatter statistics are far from the model's training
    statistics."""

    __module__ = "sarslide.mapping"


@dataclass(frozen=True)
class InputShift:
    """One polarisation of a scene compared with the training statistics (log10
    units)."""

    band: str
    scene_mean: float
    scene_std: float
    train_mean: float
    train_std: float

    @property
    def mean_shift(self) -> float:
        """(scene mean − training mean) / training std."""
        return (self.scene_mean - self.train_mean) / self.train_std

    @property
    def std_ratio(self) -> float:
        """scene std / training std."""
        return self.scene_std / self.train_std

    @property
    def out_of_distribution(self) -> bool:
        return bool(
            abs(self.mean_shift) > MAX_MEAN_SHIFT
            or not MIN_STD_RATIO <= self.std_ratio <= MAX_STD_RATIO
        )

    def describe(self) -> str:
        return (
            f"band {self.band}: the scene's log10 backscatter has mean "
            f"{self.scene_mean:.3f} and std {self.scene_std:.3f}, the model's training "
            f"chips mean {self.train_mean:.3f} and std {self.train_std:.3f} "
            f"({self.mean_shift:+.1f} training std apart, spread ×{self.std_ratio:.2f})"
        )


def _sample(pair: xr.Dataset, max_side: int) -> dict[str, np.ndarray]:
    """An evenly strided sample (at most ``max_side``² px) of each channel, float64."""
    ny, nx = pair.sizes["y"], pair.sizes["x"]
    step_y, step_x = max(ny // max_side, 1), max(nx // max_side, 1)
    out = {}
    for name in CHANNELS:
        if name not in pair.data_vars:
            raise MappingError(
                f"the pass pair lacks {name!r} (has "
                f"{sorted(map(str, pair.data_vars))}); "
                "build it with sarslide.cube.pass_pair(cube)"
            )
        sub = pair[name].isel(y=slice(None, None, step_y), x=slice(None, None, step_x))
        out[name] = np.asarray(sub.values, dtype=np.float64)
    return out


def scene_stats(pair: xr.Dataset, *, max_side: int = 512) -> BandStats:
    """log10 mean and std per polarisation of a pass pair (pre and post pooled, NaN
    ignored).

    The same statistics as :func:`sarslide.transforms.compute_stats`, on an evenly
    strided sample of at most ``max_side`` × ``max_side`` pixels (a lazy pair reads only
    that).

    Raises
    ------
    MappingError
        If a polarisation holds no finite value.
    """
    sample = _sample(pair, max_side)
    mean, std = {}, {}
    for band in ("vv", "vh"):
        names = [CHANNELS[i] for i in band_channels(band)]
        values = np.concatenate([sample[n].ravel() for n in names])
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise MappingError(f"every {band} value of the scene is no data (NaN)")
        logs = np.log10(np.maximum(values, LINEAR_FLOOR))
        mean[band], std[band] = float(logs.mean()), float(logs.std())
    return BandStats(mean=mean, std=std)


def input_shift(
    pair: xr.Dataset, stats: BandStats | Mapping, *, max_side: int = 512
) -> list[InputShift]:
    """The scene's statistics against ``stats`` (the model's training statistics), per
    band."""
    train = BandStats.from_dict(stats)
    scene = scene_stats(pair, max_side=max_side)
    return [
        InputShift(
            band=band,
            scene_mean=scene.mean[band],
            scene_std=scene.std[band],
            train_mean=float(train.mean[band]),
            train_std=float(train.std[band]),
        )
        for band in ("vv", "vh")
    ]


def check_input_distribution(
    pair: xr.Dataset,
    stats: BandStats | Mapping,
    *,
    force_hint: str = "force=True",
) -> list[InputShift]:
    """Raise :class:`InputShiftError` when the scene is outside the training
    distribution.

    Parameters
    ----------
    pair:
        The pass pair to map (linear backscatter).
    stats:
        The model's training statistics (``chipset.stats`` / a checkpoint's ``stats``).
    force_hint:
        How the caller overrides the check, named in the message (``"--force"`` on the
        command line).

    Returns
    -------
    list of InputShift
        Both bands' comparison, when neither is out of distribution.
    """
    shifts = input_shift(pair, stats)
    bad = [s for s in shifts if s.out_of_distribution]
    if bad:
        raise InputShiftError(
            "the scene is outside what the model was trained on: "
            + "; ".join(s.describe() for s in bad)
            + f" (accepted: within ±{MAX_MEAN_SHIFT:g} std, spread ×{MIN_STD_RATIO:g}–"
            f"{MAX_STD_RATIO:g}). Its map would mean nothing. Map it with a model "
            "trained "
            "on this kind of data (e.g. --profile paper for real Sentinel-1 RTC), or "
            "pass "
            f"{force_hint} to map anyway"
        )
    return shifts
