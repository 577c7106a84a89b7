"""Rapid-response mapping: area-wide inference, calibrated maps, density heatmaps, COGs.

The paper's purpose is rapid assessment after a disaster: from one post-event pass, map
where landslides are and which areas are hit hardest. This module turns any chip-level
predictor into such a map.

1. :func:`predict_probability` runs a model over a whole pass pair (any size) in
   overlapping windows and blends them into one probability raster with no seams;
   :func:`predict_raw` does the same for a score computed from *linear* backscatter, such
   as the log-ratio baseline (:func:`sarslide.baseline.log_ratio_score`).
2. :func:`calibrate_threshold` picks the decision threshold on validation chips so that
   the predicted landslide area is unbiased; :func:`reliability_curve` gives the data of a
   reliability diagram; :func:`binary_map` applies the threshold.
3. :func:`density_heatmap` aggregates the map into landslide area fraction per cell
   (1 km by default), :func:`rank_cells` lists the most affected cells with their
   coordinates, and :func:`write_cog` writes any of the rasters as a Cloud-Optimized
   GeoTIFF.

Sliding windows
---------------
Windows of ``window`` pixels are laid on one global grid with stride
``window − overlap`` (the last window in each direction is shifted to end at the edge, so
every pixel is covered). Each window's prediction is weighted by a 2-D Tukey taper that is
1 in the centre and falls off over ``overlap`` pixels towards the window edges (with a
small floor, so pixels at the border of the scene — which only one window reaches there —
still count). A pixel's value is the weighted mean of every window covering it, so
neighbouring windows cross-fade smoothly and a model that is less reliable at its
window edges (zero padding) is down-weighted there.

The scene is processed in blocks of ``chunk_size`` × ``chunk_size`` pixels. A block
evaluates every window of the global grid that touches it (windows straddling two blocks
are evaluated by both), so the result does not depend on ``chunk_size`` — there is no seam
at block borders either — and memory is bounded by one block whatever the area. With
``lazy=True`` each block is a :mod:`dask` task and the result a dask-backed DataArray
that :func:`write_cog` streams to disk; pass pairs from :func:`sarslide.cube.open_cube`
are read block by block. A lazy map runs the model again each time it is evaluated: write
it once with :func:`write_cog` and reopen the file (``rioxarray.open_rasterio``) to reuse it.

No-data pixels (NaN in any of the four channels) are NaN in the output: never mapped as
landslide. Multi-pass averaging is done upstream by
``sarslide.cube.pass_pair(cube, n_pre, n_post)``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from pyproj import Transformer
from scipy.signal.windows import tukey

from ..atomic import atomic_file
from ..chips import CHANNELS
from ..progress import progress_bar
from ..transforms import BandStats, standardize

__all__ = [
    "MappingError",
    "window_starts",
    "window_weights",
    "predict_probability",
    "predict_raw",
    "binary_map",
    "calibrate_threshold",
    "reliability_curve",
    "density_heatmap",
    "rank_cells",
    "heatmap_agreement",
    "write_cog",
    "BINARY_NODATA",
]

#: No-data value of binary maps (uint8: 1 landslide, 0 none).
BINARY_NODATA = 255
_WEIGHT_FLOOR = 1e-3

Predictor = Callable[[np.ndarray], np.ndarray]


class MappingError(ValueError):
    """Input that cannot be mapped as asked; the message names the value and the fix."""


# ----------------------------------------------------------------------------- windows
def window_starts(length: int, window: int, overlap: int) -> np.ndarray:
    """Start offsets of windows covering ``length`` pixels (the last one ends at the edge).

    Raises
    ------
    MappingError
        If ``length < window`` or the overlap is not in ``[0, window)``.
    """
    if not 0 <= overlap < window:
        raise MappingError(
            f"overlap={overlap} must be >= 0 and smaller than window={window}, e.g. window // 4"
        )
    if length < window:
        raise MappingError(f"{length} pixels is less than one window of {window}")
    stride = window - overlap
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return np.asarray(starts, dtype=np.int64)


def window_weights(window: int, overlap: int, floor: float = _WEIGHT_FLOOR) -> np.ndarray:
    """2-D blending weights ``(window, window)`` float64: outer product of 1-D Tukey tapers.

    The taper is 1 except for a raised-cosine ramp over ``overlap`` pixels at each end,
    clipped below at ``floor`` (> 0). With ``overlap = 0`` all weights are 1.
    """
    if overlap == 0:
        return np.ones((window, window))
    taper = tukey(window, alpha=min(1.0, 2.0 * overlap / window), sym=True)
    taper = np.maximum(taper, floor)
    return np.outer(taper, taper)


# ----------------------------------------------------------------------------- inputs
def _pair_channels(pair: xr.Dataset) -> list[Any]:
    """The four channels' (y, x) arrays (numpy or dask, not copied), after checking the pair."""
    if not isinstance(pair, xr.Dataset):
        raise MappingError(
            f"expected a pass pair (xarray.Dataset), got {type(pair).__name__}; build one with "
            "sarslide.cube.pass_pair(cube, n_pre, n_post)"
        )
    missing = [c for c in CHANNELS if c not in pair.data_vars]
    if missing:
        have = sorted(map(str, pair.data_vars))
        hint = (
            " — this looks like an event cube; build a pass pair with "
            "sarslide.cube.pass_pair(cube, n_pre, n_post)"
            if {"vv", "vh"} <= set(have)
            else ""
        )
        raise MappingError(
            f"the pass pair has variables {have} but the model needs channels {list(CHANNELS)}; "
            f"missing {missing}{hint}"
        )
    for c in CHANNELS:
        if tuple(pair[c].dims) != ("y", "x"):
            raise MappingError(f"variable {c!r} has dims {tuple(pair[c].dims)}; need ('y', 'x')")
    if pair.rio.crs is None:
        raise MappingError(
            "the pass pair has no CRS; attach the grid's projected CRS with "
            "pair.rio.write_crs('EPSG:…')"
        )
    # No concatenation here: a (4, y, x) copy of a large pair would cost memory ∝ area.
    return [pair[c].data for c in CHANNELS]


def _torch_predictor(model: Any, device: str | None, precision: Any = "auto") -> tuple[Predictor, int, int]:
    """Wrap a torch module returning logits (B, 1, h, w) as a probability predictor.

    The module runs in ``precision`` (:func:`sarslide.runtime.resolve_precision`); for a
    channels-last precision a copy in that layout runs, so the caller's module is only
    put in eval mode and moved to ``device``.
    """
    import copy

    import torch

    from ..runtime import resolve_precision, select_device

    dev = select_device(device)
    prec = resolve_precision(dev, precision)
    prec.apply_backend_settings()
    model.eval()
    model.to(dev)
    runner = prec.apply_layout(copy.deepcopy(model)) if prec.channels_last else model

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), prec.autocast():
            logits = runner(prec.to_input(np.ascontiguousarray(batch), dev))
        if logits.ndim == 4 and logits.shape[1] == 1:
            logits = logits[:, 0]
        return torch.sigmoid(logits.float()).cpu().numpy()

    multiple = int(getattr(model, "size_multiple", 1) or 1)
    min_size = int(getattr(model, "min_size", 1) or 1)
    return predict, multiple, min_size


def _as_predictor(predict: Any, device: str | None, precision: Any = "auto") -> tuple[Predictor, int, int]:
    if isinstance(predict, (list, tuple)):
        if not predict:
            raise MappingError("got an empty list of models; pass at least one")
        members = [_as_predictor(m, device, precision) for m in predict]
        multiple = int(np.lcm.reduce([m[1] for m in members]))
        min_size = max(m[2] for m in members)

        def ensemble(batch: np.ndarray) -> np.ndarray:
            # the project's rule: average probabilities, not logits (sarslide.metrics)
            total = None
            for fn, _, _ in members:
                out = np.asarray(fn(batch), dtype=np.float64)
                total = out if total is None else total + out
            return (total / len(members)).astype(np.float32)

        return ensemble, multiple, min_size
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(predict, torch.nn.Module):
        return _torch_predictor(predict, device, precision)
    if not callable(predict):
        raise MappingError(
            f"predict must be a callable (B, 4, h, w) -> (B, h, w) or a torch.nn.Module, "
            f"got {type(predict).__name__}"
        )
    return predict, 1, 1


def _check_output(out: Any, batch_shape: tuple[int, ...], probabilities: bool) -> np.ndarray:
    out = np.asarray(out)
    b, _, h, w = batch_shape
    if out.shape == (b, 1, h, w):
        out = out[:, 0]
    if out.shape != (b, h, w):
        raise MappingError(
            f"the predictor returned shape {out.shape} for a batch of shape {batch_shape}; "
            f"it must return one value per pixel, shape {(b, h, w)}"
        )
    if probabilities:
        finite = out[np.isfinite(out)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise MappingError(
                f"the predictor returned values in [{finite.min():.3g}, {finite.max():.3g}], "
                "not probabilities; return sigmoid(logits) or pass the torch module itself "
                "(its logits are passed through a sigmoid), or use predict_raw for scores"
            )
    return out


def _dry_run(fn: Predictor, window: int, probabilities: bool) -> None:
    """Call the predictor once on a zero batch to catch channel mismatches early."""
    shape = (1, len(CHANNELS), window, window)
    try:
        out = fn(np.zeros(shape, dtype=np.float32))
    except MappingError:
        raise
    except Exception as err:  # torch raises RuntimeError for a wrong channel count
        raise MappingError(
            f"the model failed on a {shape} batch of channels {list(CHANNELS)} "
            f"(pre-event VV, VH, then post-event VV, VH): {err}. Mapping feeds exactly these "
            "4 channels; use a model trained on them"
        ) from err
    _check_output(out, shape, probabilities)


# ----------------------------------------------------------------------------- blocks
def _block_plan(
    ny: int, nx: int, window: int, overlap: int, chunk_size: int
) -> list[dict[str, Any]]:
    """For each output block: its core slice, the region to read and the windows inside."""
    ys, xs = window_starts(ny, window, overlap), window_starts(nx, window, overlap)
    plan = []
    for r0 in range(0, ny, chunk_size):
        r1 = min(r0 + chunk_size, ny)
        wy = ys[(ys < r1) & (ys + window > r0)]
        for c0 in range(0, nx, chunk_size):
            c1 = min(c0 + chunk_size, nx)
            wx = xs[(xs < c1) & (xs + window > c0)]
            plan.append(
                {
                    "core": (r0, r1, c0, c1),
                    "region": (int(wy.min()), int(wy.max()) + window, int(wx.min()), int(wx.max()) + window),
                    "windows": [(int(y), int(x)) for y in wy for x in wx],
                }
            )
    return plan


def _predict_block(
    region: list[np.ndarray],
    block: dict[str, Any],
    fn: Predictor,
    prepare: Callable[[np.ndarray], np.ndarray],
    weights: np.ndarray,
    window: int,
    batch_size: int,
    probabilities: bool,
    bar: Any = None,
) -> np.ndarray:
    """Blend all windows of one block; returns the core (float32, NaN where no data)."""
    region = np.stack([np.asarray(c, dtype=np.float32) for c in region])  # (4, hy, hx) linear
    ry0, _, rx0, _ = block["region"]
    r0, r1, c0, c1 = block["core"]
    x = prepare(region[None])[0]
    acc = np.zeros(region.shape[1:], dtype=np.float64)
    wsum = np.zeros(region.shape[1:], dtype=np.float64)
    wins = block["windows"]
    for start in range(0, len(wins), batch_size):
        batch_wins = wins[start : start + batch_size]
        batch = np.stack(
            [x[:, y - ry0 : y - ry0 + window, xx - rx0 : xx - rx0 + window] for y, xx in batch_wins]
        )
        out = _check_output(fn(batch), batch.shape, probabilities)
        for (y, xx), pred in zip(batch_wins, out):
            sl = (slice(y - ry0, y - ry0 + window), slice(xx - rx0, xx - rx0 + window))
            acc[sl] += weights * pred
            wsum[sl] += weights
        if bar is not None:
            bar.update(len(batch_wins))
    core = (slice(r0 - ry0, r1 - ry0), slice(c0 - rx0, c1 - rx0))
    result = (acc[core] / wsum[core]).astype(np.float32)
    nodata = ~np.isfinite(region[(slice(None),) + core]).all(axis=0)
    result[nodata] = np.nan
    return result


def _sliding_window(
    pair: xr.Dataset,
    fn: Predictor,
    prepare: Callable[[np.ndarray], np.ndarray],
    *,
    window: int,
    overlap: int | None,
    batch_size: int,
    chunk_size: int,
    lazy: bool,
    progress: bool,
    probabilities: bool,
    size_multiple: int = 1,
    min_size: int = 1,
    name: str,
    attrs: dict[str, Any],
) -> xr.DataArray:
    channels = _pair_channels(pair)
    ny, nx = pair.sizes["y"], pair.sizes["x"]
    window, chunk_size = int(window), int(chunk_size)
    overlap = window // 4 if overlap is None else int(overlap)
    if window % size_multiple or window < min_size:
        raise MappingError(
            f"window={window} does not fit the model: it needs a multiple of {size_multiple} "
            f"of at least {min_size} pixels"
        )
    if ny < window or nx < window:
        fit = min(ny, nx) // size_multiple * size_multiple
        raise MappingError(
            f"the pass pair is {ny}×{nx} pixels, smaller than one window of {window}×{window}; "
            f"map it with window={fit}" + (f", overlap<{fit}" if fit > 0 else "")
            + " or load a larger area"
        )
    window_starts(ny, window, overlap)  # validates overlap
    if chunk_size < 1 or batch_size < 1:
        raise MappingError(f"chunk_size={chunk_size} and batch_size={batch_size} must be >= 1")
    _dry_run(fn, window, probabilities)

    weights = window_weights(window, overlap)
    plan = _block_plan(ny, nx, window, overlap, chunk_size)
    n_rows = len(range(0, ny, chunk_size))
    n_cols = len(plan) // n_rows

    def region_of(block: dict[str, Any]):
        ry0, ry1, rx0, rx1 = block["region"]
        return [c[ry0:ry1, rx0:rx1] for c in channels]

    common = dict(fn=fn, prepare=prepare, weights=weights, window=window,
                  batch_size=batch_size, probabilities=probabilities)  # fmt: skip
    if lazy:
        import dask
        import dask.array as dsa

        blocks = []
        for block in plan:
            r0, r1, c0, c1 = block["core"]
            task = dask.delayed(_predict_block)(region_of(block), block, **common)
            blocks.append(dsa.from_delayed(task, shape=(r1 - r0, c1 - c0), dtype=np.float32))
        values = dsa.block([blocks[i * n_cols : (i + 1) * n_cols] for i in range(n_rows)])
    else:
        values = np.empty((ny, nx), dtype=np.float32)
        total = sum(len(b["windows"]) for b in plan)
        with progress_bar(total=total, desc="mapping windows", unit="win", disable=not progress) as bar:
            for block in plan:
                r0, r1, c0, c1 = block["core"]
                values[r0:r1, c0:c1] = _predict_block(
                    region_of(block), block, bar=bar, **common
                )

    out = xr.DataArray(values, coords={"y": pair["y"], "x": pair["x"]}, dims=("y", "x"), name=name)
    out.attrs.update(attrs)
    out.attrs.update(
        window=window,
        overlap=overlap,
        pre_times=list(pair.attrs.get("pre_times", [])),
        post_times=list(pair.attrs.get("post_times", [])),
    )
    if "event" in pair.attrs:
        out.attrs["event"] = pair.attrs["event"]
    out = out.rio.write_crs(pair.rio.crs)
    return out.rio.write_nodata(np.nan, encoded=False)


def predict_probability(
    pair: xr.Dataset,
    predict: Any,
    stats: BandStats | Mapping,
    *,
    window: int = 256,
    overlap: int | None = None,
    batch_size: int = 8,
    chunk_size: int = 2048,
    device: str | None = None,
    lazy: bool = False,
    progress: bool = True,
    precision: Any = "auto",
) -> xr.DataArray:
    """Landslide probability over a whole pass pair, from overlapping blended windows.

    Parameters
    ----------
    pair:
        A pass pair from :func:`sarslide.cube.pass_pair`: ``pre_vv``, ``pre_vh``,
        ``post_vv``, ``post_vh`` on (y, x), linear backscatter, NaN = no data, with a CRS.
        Numpy- or dask-backed; any size of at least one window.
    predict:
        Either a callable taking standardised chips ``(B, 4, h, w)`` float32 (see
        :func:`sarslide.transforms.standardize`) and returning probabilities
        ``(B, h, w)`` in [0, 1]; or a ``torch.nn.Module`` whose forward returns logits
        ``(B, 1, h, w)`` (it is put in eval mode, moved to ``device`` and its logits passed
        through a sigmoid, without gradients); or a list of these — an ensemble (seeds ×
        checkpoints, e.g. ``sarslide.ablation.run_models(run)``) whose probabilities are
        averaged.
    stats:
        The band statistics the model was trained with (``chipset.stats``).
    window, overlap:
        Window size and overlap of neighbouring windows in pixels (``0 <= overlap <
        window``; default ``window // 4``). The window must fit the model
        (``model.size_multiple``); a few times the model's receptive field is plenty.
    batch_size:
        Windows per forward pass.
    chunk_size:
        Side of the square blocks processed at a time (bounds the memory; does not change
        the result).
    device:
        Torch device for a module; default ``"cuda"`` when available, else ``"cpu"``.
    precision:
        Arithmetic of a torch module: ``"auto"`` (the device's fast path, e.g. bfloat16 +
        channels-last on CPUs with native bf16; probabilities within 0.02 of float32),
        ``"fp32"``, or a :class:`sarslide.runtime.Precision`; ignored for plain callables.
    lazy:
        If True return a dask-backed DataArray (one task per block; compute it with the
        ``"synchronous"`` or threaded scheduler when the model holds a GPU), e.g. to stream
        a map larger than memory into :func:`write_cog`. Otherwise compute now, with a
        progress bar.
    progress:
        Show a tqdm bar (eager mode).

    Returns
    -------
    xarray.DataArray
        (y, x) float32 probability on the pair's grid and CRS; NaN where any channel is
        no data. attrs record window, overlap and the passes used.

    Raises
    ------
    MappingError
        If the pair lacks a channel, the model fails on (or does not take) the four
        channels, the pair is smaller than one window, or the output is not a probability.
    """
    fn, multiple, min_size = _as_predictor(predict, device, precision)
    return _sliding_window(
        pair,
        fn,
        lambda images: standardize(images, stats),
        window=window,
        overlap=overlap,
        batch_size=batch_size,
        chunk_size=chunk_size,
        lazy=lazy,
        progress=progress,
        probabilities=True,
        size_multiple=multiple,
        min_size=min_size,
        name="landslide_probability",
        attrs={"long_name": "landslide probability", "units": "1"},
    )


def predict_raw(
    pair: xr.Dataset,
    score_fn: Predictor,
    *,
    window: int = 256,
    overlap: int | None = None,
    batch_size: int = 8,
    chunk_size: int = 2048,
    lazy: bool = False,
    progress: bool = True,
    name: str = "change_score",
    units: str = "",
) -> xr.DataArray:
    """Map a score computed from *linear* backscatter, e.g. the log-ratio baseline.

    Same windows, blending, blocks and no-data masking as :func:`predict_probability`, but
    ``score_fn`` receives the raw linear windows ``(B, 4, h, w)`` float32 (NaN = no data,
    not standardised) and may return any real score ``(B, h, w)``::

        predict_raw(pair, sarslide.baseline.log_ratio_score, units="dB")

    Threshold such a score with :func:`calibrate_threshold` on validation chips.
    """
    if not callable(score_fn):
        raise MappingError(f"score_fn must be callable, got {type(score_fn).__name__}")
    return _sliding_window(
        pair,
        score_fn,
        lambda images: images,
        window=window,
        overlap=overlap,
        batch_size=batch_size,
        chunk_size=chunk_size,
        lazy=lazy,
        progress=progress,
        probabilities=False,
        name=name,
        attrs={"long_name": name.replace("_", " "), "units": units},
    )


# ----------------------------------------------------------------------------- thresholds
def binary_map(score: xr.DataArray, threshold: float = 0.5) -> xr.DataArray:
    """Landslide / no landslide at ``score >= threshold`` (the convention of
    :func:`sarslide.metrics.miscounts`).

    Returns
    -------
    xarray.DataArray
        (y, x) uint8: 1 landslide, 0 none, :data:`BINARY_NODATA` (255) where ``score`` is
        NaN; same grid and CRS; ``attrs["threshold"]``.
    """
    valid = np.isfinite(score)
    out = xr.where(valid, (score >= threshold).astype(np.uint8), np.uint8(BINARY_NODATA))
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
    """Threshold that makes the predicted landslide pixel count unbiased on validation chips.

    Returns the threshold ``t`` for which ``Σ (p >= t)`` over all finite pixels is as close
    as possible to ``Σ (label > 0)`` (ties in ``p`` can make an exact match impossible;
    on a tie of the two nearest counts the lower threshold wins). Works for any score,
    not only probabilities.

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
        raise ValueError(f"probabilities {p.shape} and labels {y.shape} must have the same shape")
    k = int((y > 0).sum())
    if k == 0:
        raise ValueError(
            "labels hold no landslide pixel; calibrate on validation chips that contain landslides"
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

    Bins are ``n_bins`` equal intervals of [0, 1]; a value on an inner edge belongs to the
    lower bin (as in :func:`sklearn.calibration.calibration_curve`). NaN pixels are ignored.

    Returns
    -------
    pandas.DataFrame
        One row per bin: ``bin_lower``, ``bin_upper``, ``mean_predicted`` (mean probability
        in the bin), ``observed_frequency`` (share of landslide pixels), ``count`` (pixels).
        Empty bins have count 0 and NaN means. A calibrated model lies on the diagonal.
    """
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    y = (np.asarray(labels) > 0).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"probabilities ({p.size} values) and labels ({y.size}) must match")
    if n_bins < 1:
        raise ValueError(f"n_bins={n_bins} must be >= 1")
    finite = np.isfinite(p)
    p, y = p[finite], y[finite]
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError(
            f"probabilities lie in [{p.min():.3g}, {p.max():.3g}]; a reliability curve needs [0, 1]"
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


# ----------------------------------------------------------------------------- heatmaps
def _pixel_size(da: xr.DataArray) -> tuple[float, float]:
    if da.sizes.get("x", 0) < 2 or da.sizes.get("y", 0) < 2:
        raise MappingError(f"need a (y, x) raster of at least 2×2 pixels, got sizes {dict(da.sizes)}")
    dx = float(da["x"].values[1] - da["x"].values[0])
    dy = float(da["y"].values[0] - da["y"].values[1])
    if dx <= 0 or dy <= 0:
        raise MappingError(
            f"x must increase and y decrease along the raster (got steps {dx}, {-dy}); "
            "sort with .sortby('x').sortby('y', ascending=False)"
        )
    return dx, dy


def _valid_and_value(da: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """(valid mask, landslide value in [0, 1]) for a binary uint8 map or a float map."""
    if np.issubdtype(da.dtype, np.integer):
        nodata = da.rio.nodata
        valid = da != (BINARY_NODATA if nodata is None else nodata)
        value = (da > 0) & valid
    else:
        valid = np.isfinite(da)
        value = da.where(valid, 0.0)
    return valid, value.astype(np.float32)


def density_heatmap(raster: xr.DataArray, cell_size: float = 1000.0) -> xr.DataArray:
    """Landslide area fraction per square cell of ``cell_size`` metres.

    Parameters
    ----------
    raster:
        A binary map from :func:`binary_map` (uint8, 255 = no data) — the fraction is then
        the mapped landslide area — or a probability map (float, NaN = no data) — then the
        *expected* landslide area. Dims (y, x) with coordinates in metres.
    cell_size:
        Cell side in metres; a whole multiple of the pixel size.

    Returns
    -------
    xarray.DataArray
        (y, x) float32 on a grid of cells anchored at the raster's top-left corner
        (coordinates = cell centres, same CRS): landslide area in the cell divided by the
        full cell area (``cell_size²``), so ``Σ fraction · cell_size²`` equals the mapped
        landslide area exactly. Cells at the right/bottom edge may extend beyond the raster;
        NaN where a cell holds no valid pixel. attrs ``cell_size`` and ``pixel_size`` (m).

    Raises
    ------
    MappingError
        If ``cell_size`` is not a positive whole multiple of the pixel size.
    """
    dx, dy = _pixel_size(raster)
    factors = []
    for step in (dy, dx):
        f = cell_size / step
        if cell_size <= 0 or abs(f - round(f)) > 1e-6 or round(f) < 1:
            lo = max(1, int(np.floor(f))) * step
            raise MappingError(
                f"cell_size={cell_size} m is not a whole multiple of the pixel size "
                f"{dx:g} m × {dy:g} m; use e.g. {lo:g} or {lo + step:g} m"
            )
        factors.append(int(round(f)))
    fy, fx = factors
    valid, value = _valid_and_value(raster)
    coarse = dict(y=fy, x=fx, boundary="pad")
    area = value.coarsen(**coarse).sum()
    n_valid = valid.astype(np.float32).coarsen(**coarse).sum()
    fraction = (area / (fy * fx)).where(n_valid > 0).astype(np.float32)
    x_left = float(raster["x"].values[0]) - dx / 2
    y_top = float(raster["y"].values[0]) + dy / 2
    fraction = fraction.assign_coords(
        x=x_left + cell_size * (np.arange(fraction.sizes["x"]) + 0.5),
        y=y_top - cell_size * (np.arange(fraction.sizes["y"]) + 0.5),
    ).rename("landslide_fraction")
    fraction.attrs = {
        "long_name": "landslide area fraction",
        "units": "1",
        "cell_size": float(cell_size),
        "pixel_size": float(dx),
    }
    for key in ("threshold", "event", "pre_times", "post_times"):
        if key in raster.attrs:
            fraction.attrs[key] = raster.attrs[key]
    if raster.rio.crs is not None:
        fraction = fraction.rio.write_crs(raster.rio.crs)
    return fraction.rio.write_nodata(np.nan, encoded=False)


def rank_cells(heatmap: xr.DataArray, top: int = 20) -> pd.DataFrame:
    """The ``top`` most affected cells of a density heatmap, most affected first.

    Returns
    -------
    pandas.DataFrame
        Columns ``rank`` (1 = most affected), ``x``, ``y`` (cell centre, metres in the
        heatmap's CRS), ``lon``, ``lat`` (cell centre, degrees WGS84),
        ``landslide_fraction`` and ``landslide_area_km2``. Only cells with a landslide
        fraction > 0 are listed.
    """
    if top < 1:
        raise ValueError(f"top={top} must be >= 1")
    if heatmap.rio.crs is None:
        raise MappingError("the heatmap has no CRS; build it with density_heatmap(binary_map(prob, threshold))")
    cell = heatmap.attrs.get("cell_size")
    if cell is None:
        dx, dy = _pixel_size(heatmap)
        cell_area = dx * dy
    else:
        cell_area = float(cell) ** 2
    values = np.asarray(heatmap.values, dtype=np.float64)
    rows, cols = np.nonzero(np.isfinite(values) & (values > 0))
    frac = values[rows, cols]
    order = np.argsort(-frac, kind="stable")[:top]
    rows, cols, frac = rows[order], cols[order], frac[order]
    x = heatmap["x"].values[cols].astype(np.float64)
    y = heatmap["y"].values[rows].astype(np.float64)
    lon, lat = Transformer.from_crs(heatmap.rio.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(frac) + 1),
            "x": x,
            "y": y,
            "lon": np.asarray(lon, dtype=np.float64),
            "lat": np.asarray(lat, dtype=np.float64),
            "landslide_fraction": frac,
            "landslide_area_km2": frac * cell_area / 1e6,
        }
    )


def heatmap_agreement(mapped: xr.DataArray, truth: xr.DataArray, top: int = 5) -> dict[str, float]:
    """How well a mapped density heatmap matches the true one (same cell grid).

    Returns
    -------
    dict
        ``correlation`` (Pearson r over cells valid in both), ``shared_top_cells`` (how
        many of the ``top`` most affected true cells are also among the ``top`` mapped
        ones), ``mapped_area_km2`` and ``true_area_km2`` (Σ fraction × cell area).
    """
    if mapped.shape != truth.shape or not np.allclose(mapped["x"], truth["x"]) or not np.allclose(mapped["y"], truth["y"]):
        raise MappingError(
            f"heatmaps are on different grids ({mapped.shape} vs {truth.shape}); build both with "
            "density_heatmap(..., cell_size=...) from rasters of the same scene"
        )
    cell_area = float(mapped.attrs.get("cell_size", 0.0)) ** 2 or abs(
        float(np.prod(_pixel_size(mapped)))
    )
    a = np.asarray(mapped.values, dtype=np.float64).ravel()
    b = np.asarray(truth.values, dtype=np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    corr = float(np.corrcoef(a[ok], b[ok])[0, 1]) if ok.sum() > 1 and a[ok].std() > 0 and b[ok].std() > 0 else float("nan")
    cells = lambda h: set(map(tuple, rank_cells(h, top)[["x", "y"]].to_numpy()))  # noqa: E731
    return {
        "correlation": corr,
        "shared_top_cells": float(len(cells(mapped) & cells(truth))),
        "mapped_area_km2": float(np.nansum(a)) * cell_area / 1e6,
        "true_area_km2": float(np.nansum(b)) * cell_area / 1e6,
    }


# ----------------------------------------------------------------------------- GeoTIFF
def write_cog(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    compress: str = "DEFLATE",
    overview_resampling: str | None = None,
) -> Path:
    """Write a (y, x) raster as a Cloud-Optimized GeoTIFF, atomically.

    In-memory rasters are written by rioxarray with GDAL's ``COG`` driver; dask-backed ones
    (``lazy=True`` maps) are first streamed block by block into a tiled GeoTIFF, then
    converted with the ``COG`` driver, so the map never has to fit in memory. Either way
    the file appears at ``path`` only when complete (temporary file, then ``os.replace``).

    Parameters
    ----------
    da:
        2-D raster with a CRS (as returned by this module). NaN (float) or ``rio.nodata``
        (integer) marks no data. A boolean map is written as uint8 (1 = True, 0 = False).
    path:
        Output ``.tif`` path; its directory is created.
    compress:
        GDAL compression (``"DEFLATE"``, ``"LZW"``, ``"ZSTD"`` …).
    overview_resampling:
        Resampling for the overviews; default ``"average"`` for floats, ``"nearest"`` for
        class maps (integers).

    Returns
    -------
    pathlib.Path
    """
    import rasterio.shutil

    if tuple(da.dims) != ("y", "x"):
        raise MappingError(f"write_cog needs a (y, x) raster, got dims {tuple(da.dims)}")
    if da.rio.crs is None:
        raise MappingError("the raster has no CRS; attach one with da.rio.write_crs('EPSG:…')")
    if da.dtype == bool:  # GeoTIFF has no boolean type: write 1 = True, 0 = False
        da = da.astype("uint8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if overview_resampling is None:
        overview_resampling = "nearest" if np.issubdtype(da.dtype, np.integer) else "average"
    if da.rio.nodata is None and np.issubdtype(da.dtype, np.floating):
        da = da.rio.write_nodata(np.nan, encoded=False)
    options = {"compress": compress, "overview_resampling": overview_resampling}
    with atomic_file(path, suffix=".tif") as tmp:
        if da.chunks is None:
            da.rio.to_raster(tmp, driver="COG", **options)
        else:
            # A lazy map streams block by block into a tiled GeoTIFF, then becomes a COG.
            staging = tmp.with_name(tmp.stem + ".stage.tif")
            try:
                da.rio.to_raster(
                    staging, driver="GTiff", tiled=True, blockxsize=512, blockysize=512,
                    compress=compress, lock=threading.Lock(), windowed=True,
                )  # fmt: skip
                rasterio.shutil.copy(staging, tmp, driver="COG", **options)
            finally:
                staging.unlink(missing_ok=True)
    return path
