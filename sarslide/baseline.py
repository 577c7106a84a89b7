"""A non-learned baseline: the log ratio of post- to pre-event backscatter.

Operational SAR landslide detection is change detection: a landslide strips vegetation
and rearranges the surface, which changes the radar backscatter between a pass before
and a pass after the event. The change can have either sign — vegetation loss and
smoother scarps usually *lower* the return (by 1–3 dB in C band), while rough debris or
newly exposed slopes facing the radar can *raise* it — so the score is the magnitude of
the change in decibels. This is the amplitude change approach evaluated for rapid
landslide mapping by Handwerger et al. (2022), *Generating landslide density heatmaps
for rapid detection using open-access satellite radar data in Google Earth Engine*,
Natural Hazards and Earth System Sciences 22, 753–773,
https://doi.org/10.5194/nhess-22-753-2022.

Single-look speckle makes the per-pixel ratio very noisy, so both passes are first
averaged over a small boxcar (``window`` × ``window`` pixels, in linear power,
NaN-aware) before the ratio is taken.

The score is in dB, not a probability: rank-based metrics such as the APRC need no
calibration, and a decision threshold is chosen on validation chips
(:func:`sarslide.mapping.calibrate_threshold`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .cube import CHANNELS
from .transforms import LINEAR_FLOOR

__all__ = ["SMOOTHING_WINDOW", "boxcar_mean", "log_ratio_score"]

#: The boxcar window (pixels) of the log-ratio score, wherever it is computed.
SMOOTHING_WINDOW = 5


def boxcar_mean(images: np.ndarray, window: int) -> np.ndarray:
    """NaN-aware moving average over the last two axes (a square ``window``).

    Each output pixel is the mean of the finite values in the ``window`` × ``window``
    neighbourhood (clipped at the array edge); NaN where there is none.

    Parameters
    ----------
    images:
        Array ``(..., H, W)``, any float dtype.
    window:
        Odd neighbourhood size in pixels (1 = no smoothing).

    Returns
    -------
    numpy.ndarray
        float64 array of the same shape.
    """
    if int(window) != window or window < 1 or window % 2 == 0:
        raise ValueError(
            f"window={window} must be an odd positive number of pixels, e.g. 5"
        )
    values = np.asarray(images, dtype=np.float64)
    valid = np.isfinite(values)
    if window == 1:
        return np.where(valid, values, np.nan)
    size = (1,) * (values.ndim - 2) + (int(window), int(window))
    total = ndimage.uniform_filter(
        np.where(valid, values, 0.0), size=size, mode="constant"
    )
    count = ndimage.uniform_filter(valid.astype(np.float64), size=size, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        # uniform_filter divides both by window²; the ratio is the mean of valid values.
        return np.where(count > 1e-9, total / np.maximum(count, 1e-12), np.nan)


def log_ratio_score(
    images: np.ndarray, window: int = SMOOTHING_WINDOW, fill_value: float = 0.0
) -> np.ndarray:
    """Magnitude of the post/pre backscatter log ratio in dB, averaged over VV and VH.

    ``score = mean_{p in (VV, VH)} | 10 · log10( boxcar(post_p) / boxcar(pre_p) ) |``

    Parameters
    ----------
    images:
        ``(N, 4, H, W)`` *linear* backscatter (not standardised), channels
        ``pre_vv, pre_vh, post_vv, post_vh``; NaN = no data. Values below
        ``transforms.LINEAR_FLOOR`` (−50 dB) are clipped to it.
    window:
        Odd boxcar size in pixels for speckle reduction (1 = none).
    fill_value:
        Score where neither polarisation has any valid data in the window (default 0:
        "no evidence of change"), so every pixel has a finite score.

    Returns
    -------
    numpy.ndarray
        ``(N, H, W)`` float32 change magnitude in dB (≥ 0; higher = more likely
        landslide). Where only one polarisation is valid, its value alone is used.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != len(CHANNELS):
        raise ValueError(
            f"images have shape {images.shape} but the log-ratio baseline needs (N, "
            "4, H, W) "
            f"linear backscatter with channels {list(CHANNELS)}"
        )
    smooth = boxcar_mean(images, window)
    smooth = np.where(np.isfinite(smooth), np.maximum(smooth, LINEAR_FLOOR), np.nan)
    scores = []
    for band in ("vv", "vh"):
        pre = smooth[:, CHANNELS.index(f"pre_{band}")]
        post = smooth[:, CHANNELS.index(f"post_{band}")]
        scores.append(np.abs(10.0 * np.log10(post / pre)))
    stacked = np.stack(scores)
    valid = np.isfinite(stacked)
    n_valid = valid.sum(axis=0)
    total = np.where(valid, stacked, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n_valid > 0, total / np.maximum(n_valid, 1), fill_value)
    return out.astype(np.float32)
