"""Area-wide inference: a whole pass pair mapped in overlapping, blended windows.

:func:`predict_probability` runs a model over a whole pass pair (any size) and blends
its windows into one probability raster with no seams; :func:`predict_raw` does the same
for a score computed from *linear* backscatter, such as the log-ratio baseline
(:func:`sarslide.baseline.log_ratio_score`). Both go through one implementation: a
:class:`SlidingWindows` plan and one private mapping loop; they differ only in what runs
on a window (a probability predictor on standardised windows, or a score on raw ones).

Sliding windows
---------------
Windows of ``window`` pixels are laid on one global grid with stride
``window − overlap`` (the last window in each direction is shifted to end at the edge,
so every pixel is covered; :func:`window_starts`). Each window's prediction is weighted
by a 2-D Tukey taper that is 1 in the centre and falls off over ``overlap`` pixels
towards the window edges (with a small floor, so pixels at the border of the scene —
which only one window reaches there — still count; :func:`window_weights`). A pixel's
value is the weighted mean of every window covering it, so neighbouring windows
cross-fade smoothly and a model that is less reliable at its window edges (zero padding)
is down-weighted there.

The scene is processed in blocks of ``chunk_size`` × ``chunk_size`` pixels
(:func:`block_plan`). A block evaluates every window of the global grid that touches it
(windows straddling two blocks are evaluated by both), so the result does not depend on
``chunk_size`` — there is no seam at block borders either — and memory is bounded by one
block whatever the area. With ``lazy=True`` each block is a :mod:`dask` task and the
result a dask-backed DataArray that :func:`sarslide.mapping.write_cog` streams to disk;
pass pairs from :func:`sarslide.cube.open_cube` are read block by block. A lazy map runs
the model again each time it is evaluated: write it once with
:func:`sarslide.mapping.write_cog` and reopen the file (``rioxarray.open_rasterio``) to
reuse it.

No-data pixels (NaN in any of the four channels) are NaN in the output: never mapped as
landslide. Multi-pass averaging is done upstream by
``sarslide.cube.pass_pair(cube, n_pre, n_post)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from scipy.signal.windows import tukey

from ..cube import CHANNELS
from ..engine.progress import progress_bar
from ..transforms import BandStats, standardize
from .errors import MappingError
from .predictors import Predictor, as_predictor, check_output, dry_run
from .shift import check_input_distribution

__all__ = [
    "WEIGHT_FLOOR",
    "Block",
    "SlidingWindows",
    "block_plan",
    "predict_probability",
    "predict_raw",
    "window_starts",
    "window_weights",
]

#: Smallest blending weight of a window pixel (> 0, so the scene border still counts).
WEIGHT_FLOOR = 1e-3


# ----------------------------------------------------------------------------- plan
def window_starts(length: int, window: int, overlap: int) -> np.ndarray:
    """Start offsets (int64, pixels) of windows covering ``length`` pixels.

    The stride is ``window − overlap``; the last window is shifted to end at the edge.

    Raises
    ------
    MappingError
        If ``length < window`` or the overlap is not in ``[0, window)``.
    """
    if not 0 <= overlap < window:
        raise MappingError(
            f"overlap={overlap} must be >= 0 and smaller than window={window}, "
            "e.g. window // 4"
        )
    if length < window:
        raise MappingError(f"{length} pixels is less than one window of {window}")
    stride = window - overlap
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return np.asarray(starts, dtype=np.int64)


def window_weights(
    window: int, overlap: int, floor: float = WEIGHT_FLOOR
) -> np.ndarray:
    """2-D blending weights ``(window, window)`` float64: outer product of 1-D Tukey
    tapers.

    The taper is 1 except for a raised-cosine ramp over ``overlap`` pixels at each end,
    clipped below at ``floor`` (> 0). With ``overlap = 0`` all weights are 1.
    """
    if overlap == 0:
        return np.ones((window, window))
    taper = tukey(window, alpha=min(1.0, 2.0 * overlap / window), sym=True)
    taper = np.maximum(taper, floor)
    return np.outer(taper, taper)


@dataclass(frozen=True)
class Block:
    """One output block of the scene and the windows that reach into it.

    All offsets are pixels of the whole scene; bounds are ``(row0, row1, col0, col1)``,
    end-exclusive.
    """

    #: The block's own pixels (the part of the output it writes).
    core: tuple[int, int, int, int]
    #: The input pixels its windows read (the core grown to whole windows).
    region: tuple[int, int, int, int]
    #: Top-left corners ``(row, col)`` of every window of the global grid touching it.
    windows: tuple[tuple[int, int], ...]


def block_plan(
    ny: int, nx: int, window: int, overlap: int, chunk_size: int
) -> list[Block]:
    """The blocks of a ``ny`` × ``nx`` px scene, row by row, ``chunk_size`` px square.

    Windows come from one global grid (:func:`window_starts`), so a window straddling
    two blocks belongs to both and the map does not depend on ``chunk_size``.
    """
    ys, xs = window_starts(ny, window, overlap), window_starts(nx, window, overlap)
    plan = []
    for r0 in range(0, ny, chunk_size):
        r1 = min(r0 + chunk_size, ny)
        wy = ys[(ys < r1) & (ys + window > r0)]
        for c0 in range(0, nx, chunk_size):
            c1 = min(c0 + chunk_size, nx)
            wx = xs[(xs < c1) & (xs + window > c0)]
            region = (
                int(wy.min()),
                int(wy.max()) + window,
                int(wx.min()),
                int(wx.max()) + window,
            )
            windows = tuple((int(y), int(x)) for y in wy for x in wx)
            plan.append(Block(core=(r0, r1, c0, c1), region=region, windows=windows))
    return plan


@dataclass(frozen=True)
class SlidingWindows:
    """How a pass pair is cut into windows and blocks (the options both entry points
    take).

    Attributes
    ----------
    window, overlap:
        Window side and overlap of neighbouring windows in pixels (``0 <= overlap <
        window``; ``None`` = ``window // 4``).
    batch_size:
        Windows per call of the predictor.
    chunk_size:
        Side of the square blocks in pixels (bounds the memory, not the result).
    lazy:
        One dask task per block instead of computing now.
    progress:
        Show a tqdm bar over the windows (eager mode).
    """

    window: int = 256
    overlap: int | None = None
    batch_size: int = 8
    chunk_size: int = 2048
    lazy: bool = False
    progress: bool = True

    def resolve(
        self, ny: int, nx: int, size_multiple: int = 1, min_size: int = 1
    ) -> tuple[int, int, int]:
        """``(window, overlap, chunk_size)`` in pixels for a ``ny`` × ``nx`` scene.

        Raises
        ------
        MappingError
            If the window does not fit the model (a multiple of ``size_multiple``, at
            least ``min_size``) or the scene, the overlap is not in ``[0, window)``, or
            ``chunk_size`` or ``batch_size`` is below 1.
        """
        window, chunk_size = int(self.window), int(self.chunk_size)
        overlap = window // 4 if self.overlap is None else int(self.overlap)
        if window % size_multiple or window < min_size:
            raise MappingError(
                f"window={window} does not fit the model: it needs a multiple of "
                f"{size_multiple} of at least {min_size} pixels"
            )
        if ny < window or nx < window:
            fit = min(ny, nx) // size_multiple * size_multiple
            raise MappingError(
                f"the pass pair is {ny}×{nx} pixels, smaller than one window of "
                f"{window}×{window}; map it with window={fit}"
                + (f", overlap<{fit}" if fit > 0 else "")
                + " or load a larger area"
            )
        window_starts(ny, window, overlap)  # validates overlap
        if chunk_size < 1 or self.batch_size < 1:
            raise MappingError(
                f"chunk_size={chunk_size} and batch_size={self.batch_size} must be >= 1"
            )
        return window, overlap, chunk_size


@dataclass(frozen=True)
class _WindowScorer:
    """What runs on a window: ``prepare`` (linear (1, 4, h, w) -> model input), then
    ``fn``."""

    fn: Predictor
    prepare: Callable[[np.ndarray], np.ndarray]
    probabilities: bool
    size_multiple: int = 1
    min_size: int = 1


# ----------------------------------------------------------------------------- inputs
def _pair_channels(pair: xr.Dataset) -> list[Any]:
    """The four channels' (y, x) arrays (numpy or dask, not copied), after checking the
    pair."""
    if not isinstance(pair, xr.Dataset):
        raise MappingError(
            f"expected a pass pair (xarray.Dataset), got {type(pair).__name__}; build "
            "one "
            "with sarslide.cube.pass_pair(cube, n_pre, n_post)"
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
            f"the pass pair has variables {have} but the model needs channels "
            f"{list(CHANNELS)}; missing {missing}{hint}"
        )
    for c in CHANNELS:
        if tuple(pair[c].dims) != ("y", "x"):
            raise MappingError(
                f"variable {c!r} has dims {tuple(pair[c].dims)}; need ('y', 'x')"
            )
    if pair.rio.crs is None:
        raise MappingError(
            "the pass pair has no CRS; attach the grid's projected CRS with "
            "pair.rio.write_crs('EPSG:…')"
        )
    # No concatenation here: a (4, y, x) copy of a large pair would cost memory ∝ area.
    return [pair[c].data for c in CHANNELS]


def _region_of(channels: list[Any], block: Block) -> list[Any]:
    """The block's input region of each channel (views / dask slices, not copies)."""
    ry0, ry1, rx0, rx1 = block.region
    return [c[ry0:ry1, rx0:rx1] for c in channels]


# ----------------------------------------------------------------------------- blocks
def _predict_block(
    region: list[np.ndarray],
    block: Block,
    scorer: _WindowScorer,
    weights: np.ndarray,
    window: int,
    batch_size: int,
    bar: Any = None,
) -> np.ndarray:
    """Blend all windows of one block; returns the core (float32, NaN where no data)."""
    region = np.stack([np.asarray(c, dtype=np.float32) for c in region])  # (4, hy, hx)
    ry0, _, rx0, _ = block.region
    r0, r1, c0, c1 = block.core
    x = scorer.prepare(region[None])[0]
    acc = np.zeros(region.shape[1:], dtype=np.float64)
    wsum = np.zeros(region.shape[1:], dtype=np.float64)
    wins = block.windows
    for start in range(0, len(wins), batch_size):
        batch_wins = wins[start : start + batch_size]
        batch = np.stack(
            [
                x[:, y - ry0 : y - ry0 + window, xx - rx0 : xx - rx0 + window]
                for y, xx in batch_wins
            ]
        )
        out = check_output(scorer.fn(batch), batch.shape, scorer.probabilities)
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


def _blocks_eager(
    plan: list[Block],
    channels: list[Any],
    predict_block: Callable[..., np.ndarray],
    shape: tuple[int, int],
    progress: bool,
) -> np.ndarray:
    """Every block computed now, into one (y, x) float32 array, with a progress bar."""
    values = np.empty(shape, dtype=np.float32)
    total = sum(len(b.windows) for b in plan)
    with progress_bar(
        total=total, desc="mapping windows", unit="win", disable=not progress
    ) as bar:
        for block in plan:
            r0, r1, c0, c1 = block.core
            values[r0:r1, c0:c1] = predict_block(
                _region_of(channels, block), block, bar=bar
            )
    return values


def _blocks_lazy(
    plan: list[Block],
    channels: list[Any],
    predict_block: Callable[..., np.ndarray],
    n_rows: int,
) -> Any:
    """One dask task per block, assembled into a (y, x) float32 dask array."""
    import dask
    import dask.array as dsa

    n_cols = len(plan) // n_rows
    blocks = []
    for block in plan:
        r0, r1, c0, c1 = block.core
        task = dask.delayed(predict_block)(_region_of(channels, block), block)
        blocks.append(
            dsa.from_delayed(task, shape=(r1 - r0, c1 - c0), dtype=np.float32)
        )
    return dsa.block([blocks[i * n_cols : (i + 1) * n_cols] for i in range(n_rows)])


def _as_map(
    values: Any,
    pair: xr.Dataset,
    name: str,
    attrs: dict[str, Any],
    window: int,
    overlap: int,
) -> xr.DataArray:
    """The (y, x) values on the pair's grid and CRS, NaN no-data, window and passes in
    attrs."""
    out = xr.DataArray(
        values, coords={"y": pair["y"], "x": pair["x"]}, dims=("y", "x"), name=name
    )
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


def _map_windows(
    pair: xr.Dataset,
    scorer: _WindowScorer,
    windows: SlidingWindows,
    *,
    name: str,
    attrs: dict[str, Any],
) -> xr.DataArray:
    """The one mapping loop behind :func:`predict_probability` and
    :func:`predict_raw`."""
    channels = _pair_channels(pair)
    ny, nx = pair.sizes["y"], pair.sizes["x"]
    window, overlap, chunk_size = windows.resolve(
        ny, nx, scorer.size_multiple, scorer.min_size
    )
    dry_run(scorer.fn, window, scorer.probabilities)
    plan = block_plan(ny, nx, window, overlap, chunk_size)
    predict_block = functools.partial(
        _predict_block,
        scorer=scorer,
        weights=window_weights(window, overlap),
        window=window,
        batch_size=windows.batch_size,
    )
    if windows.lazy:
        n_rows = len(range(0, ny, chunk_size))
        values = _blocks_lazy(plan, channels, predict_block, n_rows)
    else:
        values = _blocks_eager(
            plan, channels, predict_block, (ny, nx), windows.progress
        )
    return _as_map(values, pair, name, attrs, window, overlap)


# ----------------------------------------------------------------------------- entry
# points
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
    force: bool = False,
) -> xr.DataArray:
    """Landslide probability over a whole pass pair, from overlapping blended windows.

    Before any window is computed, the scene's log10 backscatter statistics are compared
    with ``stats`` (:func:`sarslide.mapping.check_input_distribution`): a scene the
    model never saw the like of (real radar for a model trained on synthetic scenes,
    decibels) is refused with :class:`sarslide.mapping.InputShiftError` unless
    ``force=True``.

    Parameters
    ----------
    pair:
        A pass pair from :func:`sarslide.cube.pass_pair`: ``pre_vv``, ``pre_vh``,
        ``post_vv``, ``post_vh`` on (y, x), linear backscatter, NaN = no data, with a
        CRS. Numpy- or dask-backed; any size of at least one window.
    predict:
        Either a callable taking standardised chips ``(B, 4, h, w)`` float32 (see
        :func:`sarslide.transforms.standardize`) and returning probabilities
        ``(B, h, w)`` in [0, 1]; or a ``torch.nn.Module`` whose forward returns logits
        ``(B, 1, h, w)`` (it is put in eval mode, moved to ``device`` and its logits
        passed through a sigmoid, without gradients); or a list of these — an ensemble
        (seeds × checkpoints, e.g. ``sarslide.ablation.run_models(exp, run)``) whose
        probabilities are averaged (:func:`sarslide.metrics.ensemble_mean`).
    stats:
        The band statistics the model was trained with (``chipset.stats``).
    window, overlap:
        Window size and overlap of neighbouring windows in pixels (``0 <= overlap <
        window``; default ``window // 4``). The window must fit the model
        (``model.size_multiple``); a few times the model's receptive field is plenty.
    batch_size:
        Windows per forward pass.
    chunk_size:
        Side of the square blocks processed at a time (bounds the memory; does not
        change the result).
    device:
        Torch device for a module; default ``"cuda"`` when available, else ``"cpu"``.
    precision:
        Arithmetic of a torch module: ``"auto"`` (the device's fast path, e.g. bfloat16
        + channels-last on CPUs with native bf16; probabilities within 0.02 of float32),
        ``"fp32"``, or a :class:`sarslide.engine.precision.Precision`; ignored for plain
        callables.
    lazy:
        If True return a dask-backed DataArray (one task per block; compute it with the
        ``"synchronous"`` or threaded scheduler when the model holds a GPU), e.g. to
        stream a map larger than memory into :func:`sarslide.mapping.write_cog`.
        Otherwise compute now, with a progress bar.
    progress:
        Show a tqdm bar (eager mode).
    force:
        Map even a scene whose statistics are far from the training statistics.

    Returns
    -------
    xarray.DataArray
        (y, x) float32 probability on the pair's grid and CRS; NaN where any channel is
        no data. attrs record window, overlap and the passes used.

    Raises
    ------
    MappingError
        If the pair lacks a channel, the model fails on (or does not take) the four
        channels, the pair is smaller than one window, or the output is not a
        probability; :class:`~sarslide.mapping.InputShiftError` (a MappingError) for a
        scene outside the training distribution.
    """
    _pair_channels(
        pair
    )  # a clear error for a wrong input before its statistics are read
    if not force:
        check_input_distribution(pair, stats)
    fn, multiple, min_size = as_predictor(predict, device, precision)
    scorer = _WindowScorer(
        fn=fn,
        prepare=lambda images: standardize(images, stats),
        probabilities=True,
        size_multiple=multiple,
        min_size=min_size,
    )
    windows = SlidingWindows(window, overlap, batch_size, chunk_size, lazy, progress)
    return _map_windows(
        pair,
        scorer,
        windows,
        name="landslide_probability",
        attrs={"long_name": "landslide probability", "units": "1"},
    )


def _linear(images: np.ndarray) -> np.ndarray:
    """The raw linear windows, unchanged (what :func:`predict_raw`'s score sees)."""
    return images


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

    Same windows, blending, blocks and no-data masking as :func:`predict_probability`,
    but ``score_fn`` receives the raw linear windows ``(B, 4, h, w)`` float32 (NaN = no
    data,
    not standardised) and may return any real score ``(B, h, w)``::

        predict_raw(pair, sarslide.baseline.log_ratio_score, units="dB")

    Threshold such a score with :func:`sarslide.mapping.calibrate_threshold` on
    validation chips.

    Returns
    -------
    xarray.DataArray
        (y, x) float32 score named ``name`` (attrs ``units``), on the pair's grid and
        CRS; NaN where any channel is no data.
    """
    if not callable(score_fn):
        raise MappingError(f"score_fn must be callable, got {type(score_fn).__name__}")
    scorer = _WindowScorer(fn=score_fn, prepare=_linear, probabilities=False)
    windows = SlidingWindows(window, overlap, batch_size, chunk_size, lazy, progress)
    return _map_windows(
        pair,
        scorer,
        windows,
        name=name,
        attrs={"long_name": name.replace("_", " "), "units": units},
    )
