"""Log10 + standardisation of chips, with statistics of the training split only.

Backscatter is heavy-tailed in linear power and close to Gaussian in log10, so models
see ``(log10(x) − mean) / std``. The statistics are computed once per event from the
stage-1 training chips (never from validation or test chips, which would leak them) and
stored with the chips and with every checkpoint.

Statistics are per polarisation with the pre- and post-event passes pooled, so that a
real backscatter change between the passes survives standardisation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .cube import CHANNELS  # the channel order, defined once in the schema

__all__ = [
    "BandStats",
    "LINEAR_FLOOR",
    "UnstandardizedInputWarning",
    "compute_stats",
    "standardize",
    "band_channels",
    "standardization_problem",
    "warn_if_unstandardized",
]

#: Linear values below this (−50 dB, incl. zeros and negative noise) are clipped before
#: log10.
LINEAR_FLOOR = 1e-5


def band_channels(band: str) -> list[int]:
    """Channel positions of one polarisation in the 4-channel chip (``'vv'`` → [0,
    2])."""
    return [i for i, name in enumerate(CHANNELS) if name.endswith("_" + band)]


@dataclass(frozen=True)
class BandStats:
    """Mean and standard deviation of log10 backscatter per polarisation (``'vv'``,
    ``'vh'``)."""

    mean: dict[str, float]
    std: dict[str, float]

    def to_dict(self) -> dict:
        return {"mean": dict(self.mean), "std": dict(self.std)}

    @classmethod
    def from_dict(cls, data: "Mapping | BandStats") -> "BandStats":
        if isinstance(data, BandStats):
            return data
        try:
            return cls(
                mean={k: float(v) for k, v in data["mean"].items()},
                std={k: float(v) for k, v in data["std"].items()},
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(
                f"statistics {data!r} are not of the form "
                "{'mean': {'vv':…, 'vh':…}, 'std': {…}}; compute them with "
                "compute_stats(images)"
            ) from err


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != len(CHANNELS):
        raise ValueError(
            f"images have shape {images.shape} but need (N, 4, H, W) with channels "
            f"{list(CHANNELS)}"
        )
    return images


def compute_stats(images: np.ndarray) -> BandStats:
    """log10 statistics per polarisation from linear chips ``(N, 4, H, W)``, NaN
    ignored.

    Pass the stage-1 training chips only.
    """
    images = _check_images(images)
    if images.shape[0] == 0:
        raise ValueError(
            "no chips to compute statistics from; pass the stage-1 training chips"
        )
    mean, std = {}, {}
    for band in ("vv", "vh"):
        values = images[:, band_channels(band)]
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise ValueError(f"every {band!r} value is NaN; cannot compute statistics")
        logs = np.log10(np.maximum(values.astype(np.float64), LINEAR_FLOOR))
        mean[band], std[band] = float(logs.mean()), float(logs.std())
        if std[band] <= 0:
            raise ValueError(
                f"{band!r} is constant (log10 std = 0); cannot standardise"
            )
    return BandStats(mean=mean, std=std)


def standardize(images: np.ndarray, stats: "BandStats | Mapping") -> np.ndarray:
    """``(log10(max(x, LINEAR_FLOOR)) − mean) / std`` per polarisation, NaN → 0.

    Parameters
    ----------
    images:
        ``(N, 4, H, W)`` linear backscatter, channels pre_vv, pre_vh, post_vv, post_vh.
    stats:
        :class:`BandStats` or its ``to_dict()`` form (as stored with chips and
        checkpoints).

    Returns
    -------
    numpy.ndarray
        ``(N, 4, H, W)`` float32; no-data pixels become 0 (the training mean).
    """
    images = _check_images(images)
    stats = BandStats.from_dict(stats)
    out = np.empty(images.shape, dtype=np.float32)
    for band in ("vv", "vh"):
        idx = band_channels(band)
        with np.errstate(invalid="ignore"):
            logs = np.log10(np.maximum(images[:, idx].astype(np.float32), LINEAR_FLOOR))
        out[:, idx] = (logs - stats.mean[band]) / stats.std[band]
    out[~np.isfinite(out)] = 0.0
    return out


class UnstandardizedInputWarning(UserWarning):
    """Chips handed to a model do not look standardised (linear power or decibels?)."""


def standardization_problem(images: np.ndarray, *, max_chips: int = 64) -> str | None:
    """Why ``images`` do not look like :func:`standardize` output, or ``None`` if they
    do.

    Standardised chips have mean ≈ 0 and standard deviation ≈ 1 per channel over the
    training chips. Linear backscatter has a standard deviation of ~0.01–0.3 (and only
    positive values), decibels a mean of about −10 to −25. A channel is flagged when its
    mean lies outside ±2 or its standard deviation outside 0.25–4. At most ``max_chips``
    evenly spaced chips are looked at.
    """
    images = _check_images(images)
    if images.shape[0] == 0:
        return None
    step = max(images.shape[0] // max_chips, 1)
    sample = np.asarray(images[::step][:max_chips], dtype=np.float64)
    for i, name in enumerate(CHANNELS):
        values = sample[:, i][np.isfinite(sample[:, i])]
        if values.size < 2:
            continue
        mean, std = float(values.mean()), float(values.std())
        if abs(mean) > 2 or not 0.25 <= std <= 4:
            kind = (
                "linear backscatter"
                if values.min() >= 0 and std < 0.25
                else "decibels"
                if mean < -2
                else "unscaled values"
            )
            return (
                f"channel {name!r} has mean {mean:.3g} and standard deviation "
                f"{std:.3g} (standardised chips: about 0 and 1); it looks like {kind}"
            )
    return None


def warn_if_unstandardized(images: np.ndarray, what: str = "training chips") -> None:
    """Warn (:class:`UnstandardizedInputWarning`) when ``images`` do not look
    standardised."""
    problem = standardization_problem(images)
    if problem is not None:
        warnings.warn(
            f"the {what} do not look standardised: {problem}. Models expect "
            "transforms.standardize(images, stats) (log10, then the stage-1 training "
            "statistics); train.TrainingData.from_chipset does this for you",
            UnstandardizedInputWarning,
            stacklevel=3,
        )
