"""The paper's findings, tested as the paper states them, on a grid's numbers.

Böhm et al. (2022) read their conclusions from Figures 2 and 3, computed on the
*ensemble* of each cell (arm × training size): the probabilities averaged over every
seed × kept checkpoint. This module uses that one statistic for every figure and verdict
(chapter 6 draws both figures from :meth:`GridBootstrap.intervals`) and tests:

:data:`FINDINGS` — what the paper states
    pretraining leaves the APRC about unchanged; Hokkaido and Kaikōura pretraining give
    similar APRC; fewer false positives on landslide-free chips (median Δcount, and the
    mean, which the paper says does not change its conclusions); a smaller median ΔL1;
    on landslide chips a miscount that is negative *and* larger than without
    pretraining; effects more pronounced for Hokkaido than for Kaikōura.
:data:`SANITY_CHECKS` — not the paper's findings, kept apart
    the networks beat a random guess; the APRC grows from the smallest size to all
    chips.

**Uncertainty: a hierarchical bootstrap** (:func:`hierarchical_bootstrap`). Seeds are
the largest source of variance (one seed's few-shot draw can decide a cell), so each of
``n_boot`` (default :data:`N_BOOT`) resamples first draws the seeds of a cell with
replacement (the same draw for every arm at that size, so a comparison stays paired: one
seed = the same training chips in every arm), rebuilds the cell's ensemble from those
runs, then resamples test chips (landslide and landslide-free chips separately, the same
chips for every cell). An effect's interval is the percentile interval of its resampled
values.

**What a cell shows** (:func:`evaluate_findings`, column ``outcome``):

* a directional finding (e.g. "fewer false positives"): ``supports`` when the 95 %
  interval lies on the paper's side of zero, ``contradicts`` when it lies on the other
  side, ``tie`` when both arms give exactly the same value (e.g. both medians 0 — no
  difference, not a contradiction), otherwise ``inconclusive``;
* an equivalence finding ("about unchanged", "similar"; the paper: "minor",
  "negligible", "hardly significant"): ``supports`` when the 90 % interval lies inside
  ±:data:`APRC_MARGIN` (two one-sided tests at 5 %), ``contradicts`` when it lies wholly
  outside, otherwise ``inconclusive``. Absence of evidence is not evidence of no effect:
  a noisy run gives a wide interval, which is inconclusive here.

**Verdicts** (:func:`summarize_findings`): a finding **holds** when at least one cell
supports it and every other cell is a tie; it **holds in part** when some cells support
it and others are inconclusive or contradict it; it **does not hold** when no cell
supports it. :func:`findings_markdown` turns the verdicts into sentences, so no text
states a result the numbers beside it contradict.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .ablation import ARMS, PAPER_APRC, ensemble_probabilities
from .metrics import (
    GRID_METRICS,
    PixelRanking,
    ensemble_mean,
    miscounts,
    size_sort_key,
    stratified_chip_weights,
    weighted_median,
)

__all__ = [
    "APRC_MARGIN",
    "CELL_METRICS",
    "FINDINGS",
    "N_BOOT",
    "SANITY_CHECKS",
    "VERDICTS",
    "Finding",
    "GridBootstrap",
    "cell_metrics",
    "evaluate_findings",
    "findings_markdown",
    "hierarchical_bootstrap",
    "summarize_findings",
]

PRETRAINED_ARMS: tuple[str, ...] = tuple(a for a in ARMS if a != "none")

#: Resamples of the hierarchical bootstrap (seeds, then chips).
N_BOOT = 1000

#: The equivalence margin of "APRC about unchanged", in APRC: the largest difference
#: between two arms at one size in the paper's Figure 2 (:data:`PAPER_APRC`: Hokkaido
#: 0.168 against 0.132 without pretraining at 10 chips), a difference the paper still
#: calls minor. Computed from the paper's values, not chosen on this book's runs.
APRC_MARGIN: float = round(
    max(
        abs(PAPER_APRC[a][s] - PAPER_APRC[b][s])
        for a in PAPER_APRC
        for b in PAPER_APRC
        for s in PAPER_APRC[a]
    ),
    3,
)

#: Every statistic computed on a cell's ensemble: the grid's four metrics and the mean
#: Δcount on landslide-free chips (false-positive pixels per free chip).
CELL_METRICS: tuple[str, ...] = (*GRID_METRICS, "mean_delta_count_free")

#: The verdicts, in the order the text lists them.
VERDICTS: tuple[str, ...] = ("holds", "holds in part", "does not hold")


@dataclass(frozen=True)
class Finding:
    """One conclusion, as a test on the ensembles' numbers.

    Attributes
    ----------
    key:
        Short identifier.
    statement:
        The finding in words.
    metric:
        One of :data:`CELL_METRICS`.
    test:
        ``"direction"`` (the effect has the sign ``sign``) or ``"equivalence"`` (the
        effect lies within ±``margin``).
    sign:
        ``+1`` / ``-1`` for a directional finding; ``0`` for an equivalence.
    against:
        What the effect is measured against: ``"none"`` (the arm minus no pretraining at
        the same size), ``"kaikoura"`` (Hokkaido minus Kaikōura), ``"random"`` (minus
        the random guess) or ``"smallest"`` (all chips minus the smallest size).
    unit:
        Unit of the effect, for the text.
    kind:
        ``"paper"`` (a finding the paper states) or ``"sanity"`` (a check of the run).
    magnitude:
        Compare absolute values (``|arm| − |none|``), e.g. "a larger miscount".
    margin:
        Equivalence margin in ``unit`` (equivalence tests only).
    arms:
        The arms tested.
    """

    key: str
    statement: str
    metric: str
    test: str
    sign: int
    against: str
    unit: str
    kind: str = "paper"
    magnitude: bool = False
    margin: float | None = None
    arms: tuple[str, ...] = PRETRAINED_ARMS

    def __post_init__(self) -> None:
        if self.metric not in CELL_METRICS:
            raise ValueError(f"metric {self.metric!r} is not one of {CELL_METRICS}")
        if self.test == "equivalence" and (
            self.margin is None or self.margin <= 0 or self.sign != 0
        ):
            raise ValueError(
                f"{self.key}: an equivalence test needs sign 0 and a margin > 0"
            )
        if self.test == "direction" and self.sign not in (-1, 1):
            raise ValueError(
                f"{self.key}: a directional test needs sign +1 or -1, got {self.sign}"
            )
        if self.test not in ("direction", "equivalence"):
            raise ValueError(
                f"{self.key}: test {self.test!r} is not 'direction' or 'equivalence'"
            )
        if self.against not in ("none", "kaikoura", "random", "smallest"):
            raise ValueError(f"{self.key}: against={self.against!r} is unknown")

    @property
    def rule(self) -> str:
        """How a cell is judged, in words (shown with the verdicts)."""
        if self.test == "equivalence":
            return f"90 % interval within ±{self.margin:g} {self.unit}"
        return f"95 % interval {'below' if self.sign < 0 else 'above'} 0"


FINDINGS: tuple[Finding, ...] = (
    Finding(
        "aprc_unchanged",
        "pretraining leaves the APRC about unchanged",
        "aprc",
        "equivalence",
        0,
        "none",
        "APRC",
        margin=APRC_MARGIN,
    ),
    Finding(
        "aprc_events_similar",
        "Hokkaido and Kaikōura pretraining give similar APRC",
        "aprc",
        "equivalence",
        0,
        "kaikoura",
        "APRC",
        margin=APRC_MARGIN,
        arms=("hokkaido",),
    ),
    Finding(
        "fewer_false_positives",
        "pretraining lowers false positives on landslide-free chips (median Δcount)",
        "median_delta_count_free",
        "direction",
        -1,
        "none",
        "pixels",
    ),
    Finding(
        "fewer_false_positives_mean",
        "pretraining lowers false positives on landslide-free chips (mean Δcount)",
        "mean_delta_count_free",
        "direction",
        -1,
        "none",
        "pixels",
    ),
    Finding(
        "smaller_l1",
        "pretraining lowers the median counting error ΔL1",
        "median_delta_l1",
        "direction",
        -1,
        "none",
        "pixels",
    ),
    Finding(
        "undercount",
        "on landslide chips pretraining lowers the median Δcount (under-counts more)",
        "median_delta_count_landslide",
        "direction",
        -1,
        "none",
        "pixels",
    ),
    Finding(
        "larger_landslide_miscount",
        "on landslide chips pretraining makes the median miscount |Δcount| larger",
        "median_delta_count_landslide",
        "direction",
        +1,
        "none",
        "pixels",
        magnitude=True,
    ),
    Finding(
        "hokkaido_stronger",
        "the false-positive effect is more pronounced for Hokkaido than for Kaikōura "
        "pretraining (median Δcount, landslide-free chips)",
        "median_delta_count_free",
        "direction",
        -1,
        "kaikoura",
        "pixels",
        arms=("hokkaido",),
    ),
)

SANITY_CHECKS: tuple[Finding, ...] = (
    Finding(
        "beats_random",
        "the networks beat a random guess at every training size",
        "aprc",
        "direction",
        +1,
        "random",
        "APRC",
        kind="sanity",
        arms=ARMS,
    ),
    Finding(
        "aprc_grows",
        "the APRC grows from the smallest training size to all chips",
        "aprc",
        "direction",
        +1,
        "smallest",
        "APRC",
        kind="sanity",
        arms=ARMS,
    ),
)


def cell_metrics(
    probabilities: np.ndarray, labels: np.ndarray, chip_weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Every :data:`CELL_METRICS` of one prediction on many resamples of its test chips.

    Parameters
    ----------
    probabilities, labels:
        (N, H, W) test probabilities and labels (> 0 is landslide).
    chip_weights:
        (B, N) resamples as chip weights (how often each chip is drawn; all ones = the
        test set itself).

    Returns
    -------
    dict
        metric -> (B,) float64 values; miscounts at the 0.5 threshold, in pixels.
    """
    chip_weights = np.atleast_2d(np.asarray(chip_weights, dtype=np.float64))
    counts = miscounts(probabilities, labels)
    dl1, dc = counts["delta_l1"].to_numpy(), counts["delta_count"].to_numpy()
    has = counts["has_landslide"].to_numpy()
    free_weights = chip_weights[:, ~has]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_free = free_weights @ dc[~has] / free_weights.sum(axis=1)
    return {
        "aprc": PixelRanking(probabilities, labels).aprc_many(chip_weights),
        "median_delta_l1": np.array([weighted_median(dl1, w) for w in chip_weights]),
        "median_delta_count_free": np.array(
            [weighted_median(dc, w * ~has) for w in chip_weights]
        ),
        "median_delta_count_landslide": np.array(
            [weighted_median(dc, w * has) for w in chip_weights]
        ),
        "mean_delta_count_free": mean_free,
    }


@dataclass
class GridBootstrap:
    """The ensembles of a finished grid and their hierarchical bootstrap.

    Attributes
    ----------
    point:
        (arm, size) -> metric -> the value on the cell's ensemble (all its seeds once,
        all test chips): the number Figures 2 and 3 plot.
    samples:
        (arm, size) -> metric -> (n_boot,) values on the resampled ensembles. Resample
        ``b`` uses the same test chips in every cell and the same seeds in every arm of
        a size, so differences of cells are paired.
    per_seed:
        (arm, size) -> seed -> metric -> the value of that seed's run alone.
    random_point, random_samples:
        The random guess's APRC (the landslide pixel share) on the test set and on each
        chip resample.
    sizes:
        Stored training sizes, smallest first (:data:`sarslide.metrics.SIZE_ALL` last).
    n_boot, boot_seed:
        Number of resamples and the seed that drew them.
    """

    point: dict
    samples: dict
    per_seed: dict
    random_point: float
    random_samples: np.ndarray
    sizes: list
    n_boot: int
    boot_seed: int
    n_models: dict = field(default_factory=dict)

    def intervals(self, level: float = 0.95) -> pd.DataFrame:
        """One row per arm × size × metric: ``value`` (ensemble), ``ci_low``,
        ``ci_high`` (percentile interval at ``level`` of the hierarchical bootstrap),
        ``n_seeds``, ``n_models``. The error bars of chapter 6's Figures 2 and 3."""
        tail = (1 - level) / 2
        rows = []
        for (arm, size), values in self.point.items():
            for metric, value in values.items():
                low, high = _quantiles(self.samples[(arm, size)][metric], tail)
                rows.append(
                    {
                        "arm": arm,
                        "train_size": size,
                        "metric": metric,
                        "value": value,
                        "ci_low": low,
                        "ci_high": high,
                        "n_seeds": len(self.per_seed[(arm, size)]),
                        "n_models": self.n_models.get((arm, size), np.nan),
                    }
                )
        return pd.DataFrame(rows)


def _quantiles(values: np.ndarray, tail: float) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    low, high = np.nanquantile(values, [tail, 1 - tail])
    return float(low), float(high)


def _cell_runs(table: pd.DataFrame, arm: str, size: int) -> pd.DataFrame:
    """The runs of one cell, one row per run: ``seed``, ``run_id``, ``checkpoints``."""
    cell = table[(table["arm"] == arm) & (table["train_size"] == size)]
    runs = (
        cell.groupby(["seed", "run_id"])["checkpoint"].nunique().rename("checkpoints")
    )
    return runs.reset_index().sort_values("seed").reset_index(drop=True)


def hierarchical_bootstrap(
    table: pd.DataFrame,
    out_dir: str | os.PathLike,
    labels: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    boot_seed: int = 0,
) -> GridBootstrap:
    """Resample seeds within each cell, then test chips, ``n_boot`` times (module
    docstring).

    Parameters
    ----------
    table:
        The tidy results of :func:`sarslide.ablation.train_grid`.
    out_dir:
        The grid's results folder (:func:`sarslide.ablation.results_dir`), where each
        run saved the mean of its checkpoints' test probabilities.
    labels:
        (N, H, W) test labels (``prepare_event(exp).split("test").labels``).
    n_boot, boot_seed:
        Resamples (at least 1,000 for the book's verdicts) and the seed that draws
        them.

    Every arm at one size must hold the same seeds (as
    :func:`sarslide.ablation.experiment_grid` makes them), so that seed draws pair the
    arms; otherwise a ``ValueError`` names them. A cell's ensemble for a draw weighs
    each run by how often it is drawn times its number of checkpoints, so the
    undrawn-resample ensemble equals :func:`sarslide.ablation.ensemble_probabilities`.
    """
    if int(n_boot) < 1:
        raise ValueError(
            f"n_boot={n_boot}: draw at least one resample (the book uses {N_BOOT})"
        )
    labels = np.asarray(labels)
    has = (labels > 0).any(axis=(1, 2))
    chip_weights = stratified_chip_weights(has, n_boot, boot_seed)
    rng = np.random.default_rng([boot_seed, 1])
    per_chip = (labels > 0).reshape(len(labels), -1).sum(axis=1)
    learned = table[table["arm"].isin(ARMS)]
    sizes = sorted({int(s) for s in learned["train_size"]}, key=size_sort_key)
    boot = GridBootstrap(
        point={},
        samples={},
        per_seed={},
        random_point=float(np.mean(labels > 0)),
        random_samples=chip_weights
        @ per_chip
        / (chip_weights.sum(axis=1) * labels[0].size),
        sizes=sizes,
        n_boot=int(n_boot),
        boot_seed=boot_seed,
    )
    for size in sizes:
        arms = [
            a
            for a in ARMS
            if ((learned["arm"] == a) & (learned["train_size"] == size)).any()
        ]
        runs = {arm: _cell_runs(learned, arm, size) for arm in arms}
        seeds = list(runs[arms[0]]["seed"])
        for arm in arms[1:]:
            if list(runs[arm]["seed"]) != seeds:
                raise ValueError(
                    f"at train_size={size} arm {arm!r} has seeds "
                    f"{list(runs[arm]['seed'])} but "
                    f"{arms[0]!r} has {seeds}; the bootstrap pairs arms by seed: run "
                    "the same seeds"
                )
        draws = rng.integers(0, len(seeds), size=(int(n_boot), len(seeds)))
        counts = np.stack([np.bincount(d, minlength=len(seeds)) for d in draws])
        for arm in arms:
            _bootstrap_cell(
                boot,
                learned,
                arm,
                size,
                runs[arm],
                counts,
                chip_weights,
                labels,
                out_dir,
            )
    return boot


def _bootstrap_cell(
    boot: GridBootstrap, table, arm, size, runs, counts, chip_weights, labels, out
) -> None:
    """Fill ``boot`` for one cell: its ensemble, its resamples and each seed alone."""
    probas = [
        ensemble_probabilities(table[table["run_id"] == r], arm, size, out)[0]
        for r in runs["run_id"]
    ]
    checkpoints = runs["checkpoints"].to_numpy()
    ones = np.ones((1, len(labels)))
    whole = ensemble_mean(probas, weights=checkpoints)
    boot.point[(arm, size)] = {
        m: float(v[0]) for m, v in cell_metrics(whole, labels, ones).items()
    }
    boot.n_models[(arm, size)] = int(checkpoints.sum())
    boot.per_seed[(arm, size)] = {
        int(s): {m: float(v[0]) for m, v in cell_metrics(p, labels, ones).items()}
        for s, p in zip(runs["seed"], probas)
    }
    samples = {m: np.full(len(counts), np.nan) for m in CELL_METRICS}
    unique, inverse = np.unique(counts, axis=0, return_inverse=True)
    for u, drawn in enumerate(unique):
        rows = np.flatnonzero(inverse.reshape(-1) == u)
        keep = drawn > 0
        members = [p for p, k in zip(probas, keep) if k]
        ensemble = ensemble_mean(members, weights=(drawn * checkpoints)[keep])
        for metric, values in cell_metrics(
            ensemble, labels, chip_weights[rows]
        ).items():
            samples[metric][rows] = values
    boot.samples[(arm, size)] = samples


@dataclass(frozen=True)
class _Effect:
    arm: str
    size: int
    comparison: str
    point: float
    samples: np.ndarray
    seeds: np.ndarray
    tie: bool


def _comparisons(finding: Finding, boot: GridBootstrap) -> Iterator[_Effect]:
    """Every cell a finding is about, with its effect, resamples and per-seed
    effects."""
    m = finding.metric
    f = np.abs if finding.magnitude else (lambda v: np.asarray(v, dtype=np.float64))
    label = f"|{m}|" if finding.magnitude else m

    def seeds_of(cell, other=None):
        mine = boot.per_seed[cell]
        if other is None:
            return np.array([f(v[m]) for v in mine.values()])
        theirs = boot.per_seed[other]
        return np.array([f(mine[s][m]) - f(theirs[s][m]) for s in mine if s in theirs])

    def versus(cell, other, comparison):
        a, b = boot.point[cell][m], boot.point[other][m]
        return _Effect(
            cell[0],
            cell[1],
            comparison,
            float(f(a) - f(b)),
            f(boot.samples[cell][m]) - f(boot.samples[other][m]),
            seeds_of(cell, other),
            tie=bool(a == b),
        )

    if finding.against == "random":
        for cell in boot.point:
            if cell[0] in finding.arms:
                yield _Effect(
                    cell[0],
                    cell[1],
                    "APRC − random guess",
                    boot.point[cell][m] - boot.random_point,
                    boot.samples[cell][m] - boot.random_samples,
                    seeds_of(cell) - boot.random_point,
                    tie=False,
                )
    elif finding.against == "smallest":
        small, big = boot.sizes[0], boot.sizes[-1]
        for arm in finding.arms:
            if (arm, small) in boot.point and (arm, big) in boot.point and small != big:
                effect = versus((arm, big), (arm, small), f"{m}(all) − {m}({small})")
                yield _Effect(
                    arm,
                    big,
                    effect.comparison,
                    effect.point,
                    effect.samples,
                    effect.seeds,
                    False,
                )
    else:
        for arm in finding.arms:
            for size in boot.sizes:
                cell, other = (arm, size), (finding.against, size)
                if cell in boot.point and other in boot.point:
                    yield versus(cell, other, f"{label}: {arm} − {finding.against}")


def _judge(finding: Finding, effect: _Effect) -> dict:
    """One row of :func:`evaluate_findings`: the effect, its interval and the cell's
    outcome."""
    if finding.test == "equivalence":
        level, margin = 0.90, float(finding.margin)
        low, high = _quantiles(effect.samples, 0.05)
        if -margin < low and high < margin:
            outcome = "supports"
        elif low > margin or high < -margin:
            outcome = "contradicts"
        else:
            outcome = "inconclusive"
        agree = int(np.sum(np.abs(effect.seeds) < margin))
    else:
        level, margin = 0.95, np.nan
        low, high = _quantiles(effect.samples, 0.025)
        side = low > 0 if finding.sign > 0 else high < 0
        other_side = high < 0 if finding.sign > 0 else low > 0
        if effect.tie:
            outcome = "tie"
        elif side:
            outcome = "supports"
        elif other_side:
            outcome = "contradicts"
        else:
            outcome = "inconclusive"
        agree = int(np.sum(np.sign(effect.seeds) == finding.sign))
    return {
        "finding": finding.key,
        "kind": finding.kind,
        "arm": effect.arm,
        "train_size": effect.size,
        "comparison": effect.comparison,
        "effect": effect.point,
        "ci_low": low,
        "ci_high": high,
        "ci_level": level,
        "margin": margin,
        "outcome": outcome,
        "supports": outcome == "supports",
        "seeds_agree": agree,
        "n_seeds": len(effect.seeds),
    }


def evaluate_findings(
    bootstrap: GridBootstrap,
    checks: tuple[Finding, ...] = FINDINGS + SANITY_CHECKS,
) -> pd.DataFrame:
    """Every comparison behind ``checks`` (the paper's findings, then the sanity
    checks) on a grid's :func:`hierarchical_bootstrap` (chapter 6 passes the one its
    figures are drawn from).

    Returns
    -------
    pandas.DataFrame
        One row per finding × cell: ``finding``, ``kind`` (paper / sanity), ``arm``,
        ``train_size`` (:data:`sarslide.metrics.SIZE_ALL` = all), ``comparison``,
        ``effect`` (on the ensembles, in the finding's unit), ``ci_low``, ``ci_high``,
        ``ci_level`` (0.95 directional, 0.90 equivalence), ``margin`` (equivalence
        only), ``outcome`` (supports / tie / inconclusive / contradicts, module
        docstring), ``supports`` (bool), ``seeds_agree`` of ``n_seeds`` (seeds whose own
        run has the paper's sign, or lies within the margin).
    """
    rows = [
        _judge(finding, effect)
        for finding in checks
        for effect in _comparisons(finding, bootstrap)
    ]
    return pd.DataFrame(rows)


def _verdict(outcomes: pd.Series) -> str:
    supports = int((outcomes == "supports").sum())
    others = int(outcomes.isin(["inconclusive", "contradicts"]).sum())
    if supports == 0:
        return "does not hold"
    return "holds" if others == 0 else "holds in part"


def summarize_findings(
    cells: pd.DataFrame, checks: tuple[Finding, ...] = FINDINGS + SANITY_CHECKS
) -> pd.DataFrame:
    """One row per finding: its cells' outcomes and the verdict.

    Columns ``finding``, ``kind``, ``statement``, ``rule`` (how a cell is judged),
    ``cells`` ("k of n" supporting), ``ties``, ``contradicts`` (counts of cells),
    ``seeds`` ("k of n" paired runs with the paper's sign or within the margin),
    ``median_effect`` (over cells, in ``unit``), ``unit`` and ``verdict``: **holds** (at
    least one cell supports it and every other cell is a tie), **holds in part** (some
    cells support it, others are inconclusive or contradict it), **does not hold** (no
    cell supports it).
    """
    rows = []
    for finding in checks:
        part = cells[cells["finding"] == finding.key]
        if part.empty:
            continue
        outcomes = part["outcome"]
        rows.append(
            {
                "finding": finding.key,
                "kind": finding.kind,
                "statement": finding.statement,
                "rule": finding.rule,
                "cells": f"{int((outcomes == 'supports').sum())} of {len(part)}",
                "ties": int((outcomes == "tie").sum()),
                "contradicts": int((outcomes == "contradicts").sum()),
                "seeds": f"{int(part['seeds_agree'].sum())} of "
                f"{int(part['n_seeds'].sum())}",
                "median_effect": float(part["effect"].median()),
                "unit": finding.unit,
                "verdict": _verdict(outcomes),
            }
        )
    return pd.DataFrame(rows)


def findings_markdown(summary: pd.DataFrame, *, data: str = "this run") -> str:
    """Sentences stating which of the paper's findings ``summary`` shows, from its
    numbers; the sanity checks follow on their own line, labelled as not the paper's
    findings."""

    def item(r) -> str:
        ties = f", {r.ties} tied" if r.ties else ""
        against = f", {r.contradicts} against" if r.contradicts else ""
        return (
            f"{r.statement} ({r.cells} comparisons support it{ties}{against}; rule: "
            f"{r.rule}; "
            f"median effect {r.median_effect:+.3g} {r.unit})"
        )

    paper = summary[summary["kind"] == "paper"] if "kind" in summary else summary
    heads = {
        "holds": f"Shown by {data}",
        "holds in part": "Shown only in part",
        "does not hold": f"Not shown by {data}",
    }
    lines = []
    for verdict in VERDICTS:
        part = paper[paper["verdict"] == verdict]
        if len(part):
            lines.append(
                f"- **{heads[verdict]}:** "
                + "; ".join(item(r) for r in part.itertuples())
                + "."
            )
    if "kind" in summary:
        sanity = summary[summary["kind"] == "sanity"]
        if len(sanity):
            checks = "; ".join(
                f"{r.statement}: {r.verdict} ({r.cells})" for r in sanity.itertuples()
            )
            lines.append(f"- **Sanity checks** (not findings of the paper): {checks}.")
    return "\n".join(lines)
