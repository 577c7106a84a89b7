"""The paper's findings, checked on a grid's numbers with their uncertainty.

Böhm et al. (2022) draw six conclusions from their Figures 2 and 3. :func:`evaluate_findings`
tests each on a finished ablation grid (:func:`sarslide.ablation.run_grid`) in three ways:

* **the ensemble effect** — on the probabilities averaged over every seed × checkpoint of a
  cell (arm × training size), as the paper scores, e.g. "median Δcount on landslide-free
  chips with Hokkaido pretraining minus without, at 2 chips";
* **a 95 % bootstrap interval** of that effect over test chips (landslide and
  landslide-free chips resampled separately; both arms of a comparison see the same
  resample, so the interval is that of the *difference*);
* **seeds** — in how many paired runs (same seed, hence the same few-shot training chips)
  the effect has the paper's sign, on each run's mean over its checkpoints.

A cell *supports* a finding when its bootstrap interval lies on the paper's side of zero
(for the null finding "pretraining leaves the APRC unchanged": when the interval of the
difference contains zero). A finding **holds** when every cell supports it, **holds in
part** when some do, and **does not hold** when none does.
:func:`findings_markdown` turns the verdicts into sentences, so no text states a result
the numbers beside it contradict.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from .ablation import ARMS, ensemble_probabilities, results_dir, run_means, size_sort_key
from .datasets import prepare_event
from .metrics import PixelRanking, miscounts, stratified_chip_weights, weighted_median
from .profiles import get_profile

__all__ = ["FINDINGS", "Finding", "evaluate_findings", "summarize_findings", "findings_markdown"]

PRETRAINED_ARMS: tuple[str, ...] = tuple(a for a in ARMS if a != "none")


@dataclass(frozen=True)
class Finding:
    """One of the paper's conclusions, as a test on the numbers.

    Attributes
    ----------
    key:
        Short identifier.
    statement:
        The finding in the paper's sense, in words.
    metric:
        The grid metric it is read from (a column of the tidy table's ``metric``).
    sign:
        ``+1`` / ``-1``: the paper's effect is positive / negative; ``0``: the paper
        reports no effect (the interval should contain zero).
    unit:
        Unit of the effect, for the text.
    """

    key: str
    statement: str
    metric: str
    sign: int
    unit: str


FINDINGS: tuple[Finding, ...] = (
    Finding("beats_random", "the networks beat a random guess at every training size", "aprc", +1, "APRC"),
    Finding("aprc_grows", "the APRC grows from the smallest training size to all chips", "aprc", +1, "APRC"),
    Finding("aprc_unchanged", "pretraining leaves the APRC about unchanged", "aprc", 0, "APRC"),
    Finding(
        "fewer_false_positives",
        "pretraining lowers false positives on landslide-free chips (median Δcount)",
        "median_delta_count_free", -1, "pixels",
    ),
    Finding("smaller_l1", "pretraining lowers the median counting error ΔL1", "median_delta_l1", -1, "pixels"),
    Finding(
        "undercount",
        "pretrained models under-count on landslide chips (median Δcount < 0)",
        "median_delta_count_landslide", -1, "pixels",
    ),
)

_NULL_TOLERANCE = 0.05  # |ΔAPRC| below which a paired seed counts as "unchanged"


class _Cell:
    """The ensemble prediction of one arm × size, with per-chip miscounts and a ranking."""

    def __init__(self, probabilities: np.ndarray, labels: np.ndarray):
        self.ranking = PixelRanking(probabilities, labels)
        counts = miscounts(probabilities, labels)
        self.delta_l1 = counts["delta_l1"].to_numpy()
        self.delta_count = counts["delta_count"].to_numpy()
        self.has = counts["has_landslide"].to_numpy()

    def metric(self, name: str, weights: np.ndarray) -> float:
        """A grid metric of this prediction on a resample given as chip weights."""
        if name == "aprc":
            return self.ranking.aprc(weights)
        if name == "median_delta_l1":
            return weighted_median(self.delta_l1, weights)
        if name == "median_delta_count_free":
            return weighted_median(self.delta_count, weights * ~self.has)
        if name == "median_delta_count_landslide":
            return weighted_median(self.delta_count, weights * self.has)
        raise ValueError(f"unknown metric {name!r}")


def _paired(run_means: pd.DataFrame, metric: str, a: tuple[str, int], b: tuple[str, int] | None) -> np.ndarray:
    """Per-seed values of cell ``a`` minus cell ``b`` (or ``a`` alone), on common seeds."""
    m = run_means[run_means["metric"] == metric]
    va = m[(m["arm"] == a[0]) & (m["train_size"] == a[1])].set_index("seed")["value"]
    if b is None:
        return va.to_numpy()
    vb = m[(m["arm"] == b[0]) & (m["train_size"] == b[1])].set_index("seed")["value"]
    common = va.index.intersection(vb.index)
    return (va[common] - vb[common]).to_numpy()


def evaluate_findings(
    table: pd.DataFrame,
    *,
    event: str = "hokkaido",
    profile=None,
    out_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    n_boot: int = 200,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> pd.DataFrame:
    """Every comparison behind :data:`FINDINGS` on a finished grid, one row per cell.

    Parameters
    ----------
    table:
        The tidy results of :func:`sarslide.ablation.run_grid` (with its baseline rows).
    out_dir:
        The grid's results folder (default :func:`sarslide.ablation.results_dir`), where
        each run saved its mean test probabilities.
    n_boot, seed:
        Bootstrap resamples of the test chips and their seed.
    labels:
        (N, H, W) test labels; by default those of the prepared event.

    Returns
    -------
    pandas.DataFrame
        Columns ``finding``, ``arm``, ``train_size`` (:data:`sarslide.ablation.SIZE_ALL` = all), ``comparison`` (what is
        subtracted from what), ``effect`` (on the ensembles), ``ci_low``, ``ci_high``
        (95 % percentile bootstrap over test chips), ``seeds_agree``, ``n_seeds`` (paired
        runs with the paper's sign) and ``supports`` (bool).
    """
    profile = get_profile(profile)
    out = Path(out_dir) if out_dir is not None else results_dir(event, profile, cache_dir)
    if labels is None:
        labels = prepare_event(event, profile, cache_dir=cache_dir).split("test").labels
    grid = _Grid(table, out, labels, n_boot, seed)
    rows = []
    for finding in FINDINGS:
        for arm, size, comparison, value, seeds in _comparisons(finding, grid):
            rows.append(grid.judge(finding, arm, size, comparison, value, seeds))
    return pd.DataFrame(rows)


_Value = Callable[[np.ndarray], float]


class _Grid:
    """What every comparison of a finished grid needs: the cells' ensemble predictions,
    the per-run means, the bootstrap resamples of the test chips and the random guess."""

    def __init__(self, table: pd.DataFrame, out: Path, labels: np.ndarray, n_boot: int, seed: int):
        has = (labels > 0).any(axis=(1, 2))
        self.weights = stratified_chip_weights(has, n_boot, seed)
        self.ones = np.ones(len(labels))
        self.random_aprc = float(np.mean(labels > 0))
        per_chip = (labels > 0).reshape(len(labels), -1).sum(1)
        self.pixel_share = [per_chip @ w / (w.sum() * labels[0].size) for w in self.weights]
        learned = table[table["arm"].isin(ARMS)]
        self.sizes = sorted(set(learned["train_size"]), key=size_sort_key)
        self.cells = {
            (arm, size): _Cell(ensemble_probabilities(table, arm, size, out)[0], labels)
            for arm, size in learned.groupby(["arm", "train_size"]).groups
        }
        self.means = run_means(table)

    def judge(self, finding: Finding, arm: str, size: int, comparison: str,
              value: _Value, seeds: np.ndarray) -> dict:
        """One row: the effect on the ensembles, its bootstrap interval, the seeds."""
        effect = value(self.ones)
        boot = np.array([value(w) for w in self.weights])
        if finding.key == "beats_random":  # against the resample's own landslide share
            boot = boot - np.asarray(self.pixel_share)
            effect = effect - self.random_aprc
        low, high = np.nanquantile(boot, [0.025, 0.975])
        if finding.sign == 0:
            supports = bool(low <= 0.0 <= high)
            agree = int(np.sum(np.abs(seeds) <= _NULL_TOLERANCE))
        else:
            supports = bool(high < 0.0) if finding.sign < 0 else bool(low > 0.0)
            agree = int(np.sum(np.sign(seeds) == finding.sign))
        return {
            "finding": finding.key, "arm": arm, "train_size": size, "comparison": comparison,
            "effect": float(effect), "ci_low": float(low), "ci_high": float(high),
            "seeds_agree": agree, "n_seeds": int(len(seeds)), "supports": supports,
        }  # fmt: skip


def _comparisons(finding: Finding, grid: _Grid) -> Iterator[tuple[str, int, str, _Value, np.ndarray]]:
    """(arm, size, comparison, value of a resample, paired per-seed values) per cell."""
    cells, means, sizes = grid.cells, grid.means, grid.sizes
    if finding.key == "beats_random":
        for (arm, size), cell in cells.items():
            seeds = _paired(means, "aprc", (arm, size), None) - grid.random_aprc
            yield arm, size, "APRC − random guess", (lambda w, c=cell: c.metric("aprc", w)), seeds
    elif finding.key == "aprc_grows":
        for arm in ARMS:
            if (arm, sizes[0]) not in cells or (arm, sizes[-1]) not in cells:
                continue
            big, small = cells[(arm, sizes[-1])], cells[(arm, sizes[0])]
            seeds = _paired(means, "aprc", (arm, sizes[-1]), (arm, sizes[0]))
            value = lambda w, b=big, s=small: b.metric("aprc", w) - s.metric("aprc", w)  # noqa: E731
            yield arm, sizes[-1], f"APRC(all) − APRC({sizes[0]})", value, seeds
    else:
        yield from _pretraining_comparisons(finding, grid)


def _pretraining_comparisons(finding: Finding, grid: _Grid):
    """A pretrained arm against no pretraining at each size (or alone, for "undercount")."""
    cells, means, m = grid.cells, grid.means, finding.metric
    for arm in PRETRAINED_ARMS:
        for size in grid.sizes:
            if (arm, size) not in cells or ("none", size) not in cells:
                continue
            mine, base = cells[(arm, size)], cells[("none", size)]
            if finding.key == "undercount":
                seeds = _paired(means, m, (arm, size), None)
                value = lambda w, c=mine: c.metric(m, w)  # noqa: E731
                yield arm, size, f"{m} ({arm})", value, seeds
            else:
                seeds = _paired(means, m, (arm, size), ("none", size))
                value = lambda w, c=mine, b=base: c.metric(m, w) - b.metric(m, w)  # noqa: E731
                yield arm, size, f"{m}: {arm} − none", value, seeds


def summarize_findings(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per finding: how many cells and paired seeds support it, and the verdict.

    Columns ``finding``, ``statement``, ``cells`` ("k of n"), ``seeds`` ("k of n" paired
    runs with the paper's sign, or within ±0.05 APRC for the null finding),
    ``median_effect`` (over cells, in ``unit``), ``unit`` and ``verdict`` (``"holds"``,
    ``"holds in part"``, ``"does not hold"``).
    """
    rows = []
    for finding in FINDINGS:
        part = cells[cells["finding"] == finding.key]
        if part.empty:
            continue
        k, n = int(part["supports"].sum()), len(part)
        verdict = "holds" if k == n else ("does not hold" if k == 0 else "holds in part")
        rows.append({
            "finding": finding.key, "statement": finding.statement, "cells": f"{k} of {n}",
            "seeds": f"{int(part['seeds_agree'].sum())} of {int(part['n_seeds'].sum())}",
            "median_effect": float(part["effect"].median()), "unit": finding.unit, "verdict": verdict,
        })  # fmt: skip
    return pd.DataFrame(rows)


def findings_markdown(summary: pd.DataFrame, *, data: str = "this run") -> str:
    """Sentences stating which of the paper's findings ``summary`` shows, from its numbers."""
    groups = {v: summary[summary["verdict"] == v] for v in ("holds", "holds in part", "does not hold")}

    def listing(part: pd.DataFrame) -> str:
        return "; ".join(
            f"{r.statement} ({r.cells} comparisons, median effect {r.median_effect:+.3g} {r.unit})"
            for r in part.itertuples()
        )

    lines = []
    if len(groups["holds"]):
        lines.append(f"- **Shown by {data}:** {listing(groups['holds'])}.")
    if len(groups["holds in part"]):
        lines.append(f"- **Shown only in part:** {listing(groups['holds in part'])}.")
    if len(groups["does not hold"]):
        lines.append(f"- **Not shown by {data}:** {listing(groups['does not hold'])}.")
    return "\n".join(lines)
