"""Thresholds: calibrate the decision threshold, check calibration, binarise a map.

:func:`calibrate_threshold` picks the decision threshold on validation chips so that the
predicted landslide area is unbiased; :func:`reliability_curve` gives the data of a
reliability diagram; :func:`miscounts_by_threshold` and :func:`miscount_summary` tell
whether a threshold lowers the per-chip miscounts of other chips; :func:`binary_map`
applies the threshold to a probability (or score) map.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from ..metrics import miscounts

__all__ = [
    "BINARY_NODATA",
    "binary_map",
    "calibrate_threshold",
    "miscount_summary",
    "miscounts_by_threshold",
    "reliability_curve",
]

#: No-data value of binary maps (uint8: 1 landslide, 0 none).
BINARY_NODATA = 255


def binary_map(score: xr.DataArray, threshold: float = 0.5) -> xr.DataArray:
    """Landslide / no landslide at ``score >= threshold`` (the convention of
    :func:`sarslide.metrics.miscounts`).

    Returns
    -------
    xarray.DataArray
        (y, x) uint8: 1 landslide, 0 none, :data:`BINARY_NODATA` (255) where ``score``
        is NaN; same grid and CRS; ``attrs["threshold"]``.
    """
    valid = np.isfinite(score)
    out = xr.where(
        valid, (score >= threshold).astype(np.uint8), np.uint8(BINARY_NODATA)
    )
    out = out.astype(np.uint8).rename("landslide")
    out.attrs = {
        "long_name": "landslide (1) / none (0)",
        "threshold": float(threshold),
        "flag_values": [0, 1],
        "flag_meanings": "no_landslide landslide",
    }
    for key in ("window", "overlap", "pre_times", "post_times", "event"):
        if key in score.attrs:
            out.attrs[key] = score.attrs[key]
    if score.rio.crs is not None:
        out = out.rio.write_crs(score.rio.crs)
    return out.rio.write_nodata(BINARY_NODATA, encoded=False)


def calibrate_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Threshold that makes the predicted landslide pixel count unbiased on validation
    chips.

    Returns the threshold ``t`` for which ``Σ (p >= t)`` over all finite pixels is as
    close as possible to ``Σ (label > 0)`` (ties in ``p`` can make an exact match
    impossible; on a tie of the two nearest counts the lower threshold wins). Works for
    any score, not only probabilities.

    Parameters
    ----------
    probabilities:
        (N, H, W) scores of the validation chips (NaN ignored).
    labels:
        (N, H, W) labels (> 0 = landslide).

    Raises
    ------
    ValueError
        If the shapes differ, or there is no landslide pixel (or no finite score) to
        calibrate against.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels)
    if p.shape != y.shape:
        raise ValueError(
            f"probabilities {p.shape} and labels {y.shape} must have the same shape"
        )
    k = int((y > 0).sum())
    if k == 0:
        raise ValueError(
            (
                "labels hold no landslide pixel; calibrate on validation chips that "
                "contain landslides"
            )
        )
    s = np.sort(p[np.isfinite(p)])
    n = s.size
    if n == 0:
        raise ValueError("every score is NaN; nothing to calibrate")
    if k >= n:
        return float(s[0])

    def count_ge(t: float) -> int:
        return int(n - np.searchsorted(s, t, side="left"))

    low = s[n - k]  # the k-th largest score: >= k pixels at or above it
    above = s[s > low]
    high = above[0] if above.size else np.nextafter(low, np.inf)
    return float(low if abs(count_ge(low) - k) <= abs(count_ge(high) - k) else high)


def reliability_curve(
    probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 10
) -> pd.DataFrame:
    """Data of a reliability diagram: observed landslide frequency per probability bin.

    Bins are ``n_bins`` equal intervals of [0, 1]; a value on an inner edge belongs to
    the lower bin (as in :func:`sklearn.calibration.calibration_curve`). NaN pixels are
    ignored.

    Returns
    -------
    pandas.DataFrame
        One row per bin: ``bin_lower``, ``bin_upper``, ``mean_predicted`` (mean
        probability in the bin), ``observed_frequency`` (share of landslide pixels),
        ``count`` (pixels). Empty bins have count 0 and NaN means. A calibrated model
        lies on the diagonal.
    """
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    y = (np.asarray(labels) > 0).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(
            f"probabilities ({p.size} values) and labels ({y.size}) must match"
        )
    if n_bins < 1:
        raise ValueError(f"n_bins={n_bins} must be >= 1")
    finite = np.isfinite(p)
    p, y = p[finite], y[finite]
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError(
            (
                f"probabilities lie in [{p.min():.3g}, {p.max():.3g}]; a reliability "
                "curve needs [0, 1]"
            )
        )
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.searchsorted(edges[1:-1], p, side="left")
    count = np.bincount(idx, minlength=n_bins)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {
                "bin_lower": edges[:-1],
                "bin_upper": edges[1:],
                "mean_predicted": np.where(count > 0, sum_p / count, np.nan),
                "observed_frequency": np.where(count > 0, sum_y / count, np.nan),
                "count": count.astype(np.int64),
            }
        )


def miscounts_by_threshold(
    probabilities: np.ndarray, labels: np.ndarray, thresholds: Mapping[str, float]
) -> dict[str, pd.DataFrame]:
    """Per-chip miscounts (:func:`sarslide.metrics.miscounts`) at each of several
    thresholds.

    Parameters
    ----------
    probabilities, labels:
        (N, H, W) probabilities and labels of chips the threshold was *not* chosen on
        (the test chips).
    thresholds:
        ``{label: threshold}``, e.g. ``{"fixed 0.5": 0.5, "calibrated 0.54": 0.54}``.

    Returns
    -------
    dict
        ``{label: miscounts table}``, in the order of ``thresholds``.
    """
    return {
        name: miscounts(probabilities, labels, threshold)
        for name, threshold in thresholds.items()
    }


def miscount_summary(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One column per threshold of :func:`miscounts_by_threshold`'s tables: the median
    absolute per-chip miscount Δcount, and the predicted and true landslide pixels
    summed over the chips."""
    return pd.DataFrame(
        {
            name: {
                "median |Δcount|, test chips": t["delta_count"].abs().median(),
                "total predicted px": t["predicted_pixels"].sum(),
                "total true px": t["true_pixels"].sum(),
            }
            for name, t in tables.items()
        }
    )
