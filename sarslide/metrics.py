"""Evaluation metrics: APRC, per-chip pixel miscounts, ensembling and uncertainty.

The paper (Böhm et al. 2022) scores segmentations in two ways:

* **APRC**, the area under the precision–recall curve over *all* test pixels, computed
  as scikit-learn's :func:`~sklearn.metrics.average_precision_score` (step-wise average
  precision, no interpolation). A random guess scores the landslide pixel share
  (≈ 0.032 on the Hokkaido test set).
* **Per-chip miscounts** at a fixed threshold (0.5): ΔL1 = |Σŷ − Σy| and
  Δcount = Σŷ − Σy, where ŷ = (p ≥ threshold) and y = (label > 0), summarised by their
  medians over all chips, over landslide-free chips and over chips with landslides.

Conventions used throughout the package (and stated here once):

* A pixel is a **landslide** where its label is > 0, so point-count labels (uint16) and
  masks (uint8) are treated alike.
* A pixel is **predicted** landslide where its probability is ``>= threshold``
  (scikit-learn's convention in :func:`~sklearn.metrics.precision_recall_curve`).
* Ensembles average **probabilities** (after the sigmoid), not logits, over seeds ×
  saved checkpoints; :func:`ensemble_mean` is the one place this happens.
* Error bars are the standard error of the mean over runs with ``ddof=1``
  (:func:`sem`); confidence intervals over test chips are percentile bootstraps that
  resample whole chips, landslide and landslide-free chips separately
  (:func:`stratified_chip_weights`, :func:`stratified_aprc_interval`), because pixels
  within a chip are not independent and every resample must hold landslides.
* A set of test probabilities is scored by :func:`score_probabilities` (the grid's four
  metrics); every APRC in the package goes through :func:`aprc` or
  :class:`PixelRanking`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

__all__ = [
    "aprc",
    "random_guess_aprc",
    "miscounts",
    "miscount_medians",
    "ensemble_mean",
    "range_outside_unit",
    "score_probabilities",
    "GRID_METRICS",
    "SIZE_ALL",
    "SIZE_BASELINE",
    "size_sort_key",
    "sem",
    "PixelRanking",
    "stratified_chip_weights",
    "stratified_aprc_interval",
    "weighted_median",
]


def _check_same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} has shape {a.shape} but {names[1]} has shape {b.shape}; "
            "they must match pixel for pixel"
        )


def aprc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision–recall curve over all pixels (average precision).

    Parameters
    ----------
    scores:
        Any shape, e.g. (N, H, W) probabilities or any monotone score (higher = more
        likely landslide). Must be finite: mask or fill no-data before scoring.
    labels:
        Same shape as ``scores``; pixels with label > 0 are positives (mask or counts).

    Returns
    -------
    float
        ``sklearn.metrics.average_precision_score(labels > 0, scores)`` over the
        flattened arrays, in [0, 1].

    Raises
    ------
    ValueError
        If the shapes differ, if a score is NaN/inf, or if there is no positive label —
        average precision is undefined without positives (scikit-learn would silently
        return 0 with a warning); evaluate on chips that contain landslides.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    _check_same_shape(scores, labels, ("scores", "labels"))
    if scores.size == 0:
        raise ValueError("aprc got empty arrays; pass at least one pixel")
    flat_scores = scores.reshape(-1).astype(np.float64, copy=False)
    bad = ~np.isfinite(flat_scores)
    if bad.any():
        raise ValueError(
            f"scores hold {int(bad.sum())} non-finite value(s) (NaN = no data?); "
            "fill or drop those pixels before computing the APRC"
        )
    positive = labels.reshape(-1) > 0
    if not positive.any():
        raise ValueError(
            f"labels hold no positive pixel among {positive.size}; the APRC is "
            "undefined "
            "without landslides — evaluate on a set of chips that contains some"
        )
    return float(average_precision_score(positive, flat_scores))


def random_guess_aprc(labels: np.ndarray) -> float:
    """The APRC of an uninformative score: the share of positive (label > 0) pixels."""
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError("random_guess_aprc got an empty label array")
    return float(np.mean(labels > 0))


def miscounts(
    probabilities: np.ndarray,
    labels: np.ndarray,
    threshold: float = 0.5,
    chip_ids: Sequence | None = None,
) -> pd.DataFrame:
    """Per-chip pixel miscounts at a decision threshold.

    Parameters
    ----------
    probabilities:
        (N, H, W) float landslide probabilities. NaN (no data) counts as not predicted.
    labels:
        (N, H, W) labels; > 0 is landslide.
    threshold:
        A pixel is predicted landslide where ``probability >= threshold``.
    chip_ids:
        Optional N identifiers for the ``chip`` column (default 0 … N−1).

    Returns
    -------
    pandas.DataFrame
        One row per chip with columns ``chip``, ``predicted_pixels`` (Σŷ),
        ``true_pixels`` (Σy), ``delta_l1`` = |Σŷ − Σy|, ``delta_count`` = Σŷ − Σy
        (all int64, in pixels) and ``has_landslide`` (bool, Σy > 0).
    """
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)
    if probabilities.ndim != 3:
        raise ValueError(
            f"probabilities have shape {probabilities.shape}; expected (N, H, W) — "
            "add a chip "
            "axis with [None] for a single chip"
        )
    _check_same_shape(probabilities, labels, ("probabilities", "labels"))
    n = probabilities.shape[0]
    if chip_ids is None:
        chip_ids = np.arange(n)
    elif len(chip_ids) != n:
        raise ValueError(f"got {len(chip_ids)} chip_ids for {n} chips")
    with np.errstate(invalid="ignore"):
        predicted = (probabilities >= threshold).sum(axis=(1, 2)).astype(np.int64)
    true = (labels > 0).sum(axis=(1, 2)).astype(np.int64)
    delta = predicted - true
    return pd.DataFrame(
        {
            "chip": np.asarray(chip_ids),
            "predicted_pixels": predicted,
            "true_pixels": true,
            "delta_l1": np.abs(delta),
            "delta_count": delta,
            "has_landslide": true > 0,
        }
    )


def miscount_medians(table: pd.DataFrame) -> pd.DataFrame:
    """Medians of ΔL1 and Δcount over all chips, landslide-free chips and landslide
    chips.

    Parameters
    ----------
    table:
        The output of :func:`miscounts` (needs ``delta_l1``, ``delta_count``,
        ``has_landslide``).

    Returns
    -------
    pandas.DataFrame
        Index ``["all", "landslide_free", "landslide"]``, columns ``delta_l1``,
        ``delta_count`` (float, pixels; NaN for an empty group) and ``n_chips``.
        The paper's Figure 3 reads ΔL1 from ``all`` and Δcount from the other two rows.
    """
    missing = {"delta_l1", "delta_count", "has_landslide"} - set(table.columns)
    if missing:
        raise ValueError(
            f"table lacks columns {sorted(missing)}; build it with "
            "sarslide.metrics.miscounts"
        )
    has = table["has_landslide"].astype(bool)
    groups = {"all": table, "landslide_free": table[~has], "landslide": table[has]}
    rows = {
        name: {
            "delta_l1": float(g["delta_l1"].median()) if len(g) else np.nan,
            "delta_count": float(g["delta_count"].median()) if len(g) else np.nan,
            "n_chips": len(g),
        }
        for name, g in groups.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def range_outside_unit(values: np.ndarray) -> tuple[float, float] | None:
    """``(min, max)`` of the finite ``values`` when they leave [0, 1] (so they are not
    probabilities, e.g. logits), else ``None``; NaNs (no data) are ignored."""
    finite = np.asarray(values)[np.isfinite(values)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        return float(finite.min()), float(finite.max())
    return None


def ensemble_mean(
    probabilities: Sequence[np.ndarray] | Iterable[np.ndarray],
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Average the probability maps of several models (seeds × saved checkpoints).

    The project averages **probabilities** (sigmoid outputs), never logits, so every
    ensemble member has the same say whatever its confidence scale. This is the one
    place the package averages models: prediction
    (:func:`sarslide.predict.predict_proba`), whole-scene mapping, each grid run's saved
    test mean and the grid's cell ensembles all call it.

    Parameters
    ----------
    probabilities:
        A sequence (or iterable, consumed once — handy for a generator that predicts one
        checkpoint at a time) of arrays of one common shape, e.g. (N, H, W), with values
        in [0, 1]; or one stacked array of shape (M, N, H, W).
    weights:
        Optional weight per member (e.g. the number of models a member already averages,
        so a mean of means equals the mean over all models); default 1 each.

    Returns
    -------
    numpy.ndarray
        float32 array of the members' common shape: ``Σ w·p / Σ w``, accumulated in
        float64. NaN where any member is NaN.
    """
    if isinstance(probabilities, np.ndarray):
        probabilities = list(probabilities)
    weight_list = None if weights is None else [float(w) for w in weights]
    total: np.ndarray | None = None
    norm = 0.0
    count = 0
    for member in probabilities:
        member = np.asarray(member, dtype=np.float64)
        if total is None:
            total = np.zeros_like(member)
        elif member.shape != total.shape:
            raise ValueError(
                f"ensemble member {count} has shape {member.shape} but member 0 has "
                f"{total.shape}; predict every member on the same chips"
            )
        outside = range_outside_unit(member)
        if outside is not None:
            raise ValueError(
                f"ensemble member {count} has values in [{outside[0]:.3g}, "
                f"{outside[1]:.3g}]"
                " — these look like logits; apply the sigmoid first (the project "
                "averages "
                "probabilities)"
            )
        weight = 1.0 if weight_list is None else _member_weight(weight_list, count)
        total += member if weight == 1.0 else weight * member
        norm += weight
        count += 1
    if total is None:
        raise ValueError(
            "ensemble_mean got no members; pass at least one probability array"
        )
    if weight_list is not None and len(weight_list) != count:
        raise ValueError(
            f"got {len(weight_list)} weights for {count} ensemble members; give one "
            "per member"
        )
    if norm <= 0:
        raise ValueError(f"ensemble weights sum to {norm}; they must be positive")
    return (total / norm).astype(np.float32)


def _member_weight(weights: list[float], index: int) -> float:
    if index >= len(weights):
        raise ValueError(
            f"got {len(weights)} weights for more than {len(weights)} ensemble "
            "members; give one per member"
        )
    if weights[index] < 0:
        raise ValueError(
            f"ensemble weight {weights[index]} of member {index} is negative"
        )
    return weights[index]


#: The grid's metrics of one set of test probabilities (:func:`score_probabilities`).
GRID_METRICS: tuple[str, ...] = (
    "aprc",
    "median_delta_l1",
    "median_delta_count_free",
    "median_delta_count_landslide",
)

#: How a results table stores a training size: the number of chips, or these codes.
#: ``SIZE_ALL``: the whole stage-2 training split ("all"; ``train_size=None`` of a
#: :class:`sarslide.ablation.Run`); ``SIZE_BASELINE``: the non-learned reference rows
#: (log-ratio, random guess).
SIZE_ALL = -1
SIZE_BASELINE = 0


def size_sort_key(size: int) -> float:
    """Sort key for stored training sizes: numbers in order, :data:`SIZE_ALL` last."""
    return np.inf if int(size) == SIZE_ALL else float(size)


def score_probabilities(
    probabilities: np.ndarray, labels: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """The grid's four metrics (:data:`GRID_METRICS`) of test probabilities ``(N, H,
    W)``.

    ``aprc`` over all pixels; the medians over chips of ΔL1 (all chips) and of Δcount on
    landslide-free and on landslide chips, at ``threshold`` (:func:`miscount_medians`).
    """
    medians = miscount_medians(miscounts(probabilities, labels, threshold))
    return {
        "aprc": aprc(probabilities, labels),
        "median_delta_l1": float(medians.loc["all", "delta_l1"]),
        "median_delta_count_free": float(medians.loc["landslide_free", "delta_count"]),
        "median_delta_count_landslide": float(medians.loc["landslide", "delta_count"]),
    }


def sem(values: Sequence[float] | np.ndarray) -> float:
    """Standard error of the mean over runs: ``std(values, ddof=1) / sqrt(N)``.

    ``ddof=1`` (the sample standard deviation) because the runs are a sample of the
    possible seeds. With a single value the SEM is undefined and NaN is returned (so a
    one-seed table still renders, with no error bar). NaN values propagate.

    Raises
    ------
    ValueError
        If ``values`` is empty.
    """
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError("sem got no values; pass the per-run metric values")
    if arr.size == 1:
        return float("nan")
    return float(np.std(arr, ddof=1) / np.sqrt(arr.size))


class PixelRanking:
    """All test pixels of one prediction, ranked once, so the APRC of any resample of
    whole chips is a small matrix product (a chip drawn k times weighs k).

    ``PixelRanking(p, labels).aprc(w)`` equals
    ``sklearn.metrics.average_precision_score(labels > 0, p, sample_weight=w per
    pixel)``, ties included; with ``w`` all ones it is :func:`aprc`. Used by chip
    bootstraps, where hundreds of resamples of the same chips would otherwise sort the
    pixels every time.

    How: the average precision only changes at thresholds (distinct scores) that hold a
    landslide pixel, ``K`` of them. For each chip the counts of landslide and other
    pixels scoring at or above each such threshold are tabulated once, ``(N, K)``; a
    resample's true and false positives at every threshold are then ``w @ table``. Where
    ``N × K`` would exceed :attr:`max_table` entries the counts are instead accumulated
    over all pixels per call (same result, slower).

    Parameters
    ----------
    scores:
        (N, H, W) finite scores (probabilities).
    labels:
        (N, H, W) labels; > 0 is landslide.
    """

    max_table: int = 40_000_000

    def __init__(self, scores: np.ndarray, labels: np.ndarray) -> None:
        scores = np.asarray(scores)
        labels = np.asarray(labels)
        _check_same_shape(scores, labels, ("scores", "labels"))
        if scores.ndim != 3:
            raise ValueError(
                f"scores have shape {scores.shape}; expected chips (N, H, W)"
            )
        if not np.isfinite(scores).all():
            raise ValueError(
                "scores hold non-finite values; fill no-data before ranking"
            )
        n, h, w = scores.shape
        flat = scores.reshape(-1).astype(np.float64)
        order = np.argsort(-flat, kind="stable")
        chip = (order // (h * w)).astype(np.int64)
        positive = (labels.reshape(-1) > 0)[order]
        ranked = flat[order]
        # Group g of each ranked pixel: the index of its run of equal scores (its
        # threshold).
        group = np.r_[0, np.cumsum(ranked[1:] != ranked[:-1])]
        key_groups = np.unique(group[positive])  # thresholds at which recall moves
        self.n_chips = n
        self._tables: tuple[np.ndarray, np.ndarray] | None = None
        if key_groups.size and n * key_groups.size <= self.max_table:
            # Pixel i counts at key threshold k when group[i] <= key_groups[k].
            first_key = np.searchsorted(key_groups, group)
            inside = first_key < key_groups.size
            k, c, pos = first_key[inside], chip[inside], positive[inside]
            shape = (n, key_groups.size)
            tp = np.zeros(shape)
            fp = np.zeros(shape)
            np.add.at(tp, (c[pos], k[pos]), 1.0)
            np.add.at(fp, (c[~pos], k[~pos]), 1.0)
            self._tables = (np.cumsum(tp, axis=1), np.cumsum(fp, axis=1))
        else:
            self._chip = chip
            self._positive = positive
            self._ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])

    def aprc(self, chip_weights: np.ndarray | None = None) -> float:
        """Average precision with each chip weighted by ``chip_weights`` ((N,) ≥ 0)."""
        if chip_weights is None:
            chip_weights = np.ones(self.n_chips)
        chip_weights = np.asarray(chip_weights, dtype=np.float64)
        if chip_weights.shape != (self.n_chips,):
            raise ValueError(
                f"chip_weights has shape {chip_weights.shape}; expected "
                f"({self.n_chips},)"
            )
        if self._tables is not None:
            tp, fp = chip_weights @ self._tables[0], chip_weights @ self._tables[1]
        else:
            weights = chip_weights[self._chip]
            tp = np.cumsum(weights * self._positive)[self._ends]
            fp = np.cumsum(weights * ~self._positive)[self._ends]
        if tp.size == 0 or tp[-1] <= 0:
            raise ValueError(
                "the resample holds no landslide pixel; the APRC is undefined"
            )
        precision = tp / np.maximum(tp + fp, np.finfo(float).tiny)
        recall_step = np.diff(np.r_[0.0, tp]) / tp[-1]
        return float(np.sum(recall_step * precision))

    def aprc_many(self, chip_weights: np.ndarray) -> np.ndarray:
        """:meth:`aprc` of many resamples at once: ``chip_weights`` (B, N) -> (B,)
        float64.

        With the per-chip tables this is one matrix product per resample batch (the
        bootstrap of :mod:`sarslide.findings` scores a thousand resamples per cell);
        otherwise it calls :meth:`aprc` per row. Same values as :meth:`aprc` row by row.
        """
        chip_weights = np.asarray(chip_weights, dtype=np.float64)
        if chip_weights.ndim != 2 or chip_weights.shape[1] != self.n_chips:
            raise ValueError(
                f"chip_weights has shape {chip_weights.shape}; expected (B, "
                f"{self.n_chips})"
            )
        if self._tables is None:
            return np.array([self.aprc(w) for w in chip_weights])
        tp, fp = chip_weights @ self._tables[0], chip_weights @ self._tables[1]
        total = tp[:, -1:]
        if (total <= 0).any():
            raise ValueError(
                "a resample holds no landslide pixel; the APRC is undefined"
            )
        precision = tp / np.maximum(tp + fp, np.finfo(float).tiny)
        recall_step = np.diff(tp, axis=1, prepend=0.0) / total
        return np.sum(recall_step * precision, axis=1)


def stratified_chip_weights(
    has_landslide: np.ndarray, n_boot: int, seed: int = 0
) -> np.ndarray:
    """Bootstrap resamples of test chips as chip weights, drawn within each kind.

    Landslide and landslide-free chips are resampled separately (with replacement, each
    kind keeping its size), so every resample holds landslides and the APRC is defined.

    Returns
    -------
    numpy.ndarray
        (n_boot, N) float64: how many times each chip is drawn in each resample.
    """
    has = np.asarray(has_landslide, dtype=bool)
    pos, neg = np.flatnonzero(has), np.flatnonzero(~has)
    if len(pos) == 0:
        raise ValueError(
            "the chips hold no landslide; a stratified bootstrap needs some"
        )
    rng = np.random.default_rng(seed)
    weights = np.zeros((int(n_boot), has.size))
    for b in range(int(n_boot)):
        for members in (pos, neg):
            if len(members):
                np.add.at(weights[b], rng.choice(members, len(members)), 1.0)
    return weights


def stratified_aprc_interval(
    probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the APRC that resamples test chips *within* each
    kind.

    Landslide and landslide-free chips are resampled separately
    (:func:`stratified_chip_weights`), so every resample holds landslides and the APRC
    is always defined, even on small test sets. The pixels are ranked once
    (:class:`PixelRanking`). ``probabilities`` and ``labels`` are ``(N, H, W)``; returns
    ``(low, high)`` of the ``1 − alpha`` interval.
    """
    has = (np.asarray(labels) > 0).any(axis=(1, 2))
    if not has.any():
        raise ValueError("the test chips hold no landslide; the APRC is undefined")
    ranking = PixelRanking(probabilities, labels)
    values = [ranking.aprc(w) for w in stratified_chip_weights(has, n_boot, seed)]
    return float(np.quantile(values, alpha / 2)), float(
        np.quantile(values, 1 - alpha / 2)
    )


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The median of ``values`` repeated ``weights`` times (integer weights, as a
    resample).

    Equals ``numpy.median(numpy.repeat(values, weights))``; NaN when all weights are 0.
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.int64)
    if weights.sum() == 0:
        return float("nan")
    return float(np.median(np.repeat(values, weights)))
