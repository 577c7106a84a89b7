"""Figure 3 on the ensemble and the findings checks, against hand computations."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from sarslide import ablation, metrics
from sarslide.findings import evaluate_findings, findings_markdown, summarize_findings
from sarslide.metrics import PixelRanking, stratified_chip_weights, weighted_median


def _labels() -> np.ndarray:
    labels = np.zeros((6, 8, 8), dtype=np.uint8)
    labels[0, :3, :3] = 1  # 9 px
    labels[1, 4:, 4:] = 1  # 16 px
    labels[2, 0, :4] = 1  # 4 px
    return labels  # chips 3, 4, 5 are landslide-free


def _proba(rng, labels, false_alarm: int) -> np.ndarray:
    """Noisy probabilities that find the landslides and raise ``false_alarm`` px per free chip."""
    p = 0.05 + 0.04 * rng.random(labels.shape).astype(np.float32) + 0.6 * labels
    for c in (3, 4, 5):
        p[c].reshape(-1)[:false_alarm] = 0.9
    return p


@pytest.fixture()
def grid(tmp_path):
    """A hand-made results folder: arms none / hokkaido, size 2, seeds 0 and 1, 2 checkpoints."""
    rng = np.random.default_rng(0)
    labels = _labels()
    rows, probas = [], {}
    for arm, alarms in (("none", (20, 30)), ("hokkaido", (2, 4))):
        for seed, alarm in enumerate(alarms):
            run = ablation.Run(arm, 2, seed)
            p = _proba(rng, labels, alarm)
            probas[run.run_id] = p
            (tmp_path / run.run_id).mkdir()
            np.save(tmp_path / run.run_id / "test_proba.npy", p)
            for ck in range(2):
                scores = metrics.score_probabilities(p, labels)
                for metric, value in scores.items():
                    rows.append({"run_id": run.run_id, "arm": arm, "train_size": 2, "seed": seed,
                                 "checkpoint": ck, "epoch": ck, "metric": metric, "value": value})
    return pd.DataFrame(rows), tmp_path, labels, probas


def test_figure3_values_are_medians_of_the_ensemble_prediction(grid):
    table, out, labels, probas = grid
    ens = ablation.ensemble_scores(table, out_dir=out, labels=labels, n_boot=10)
    for arm in ("none", "hokkaido"):
        mean = (probas[f"{arm}-n002-s0"].astype(np.float64) + probas[f"{arm}-n002-s1"]) / 2
        predicted = (mean >= 0.5).sum(axis=(1, 2))
        true = labels.sum(axis=(1, 2))
        delta = predicted - true
        row = ens[ens["arm"] == arm].iloc[0]
        assert row["median_delta_l1"] == np.median(np.abs(delta))
        assert row["median_delta_count_free"] == np.median(delta[3:])
        assert row["median_delta_count_landslide"] == np.median(delta[:3])
        assert row["aprc"] == pytest.approx(average_precision_score(labels.reshape(-1) > 0, mean.reshape(-1)))
    tidy = ablation.ensemble_metrics(ens)
    assert set(tidy.columns) == {"arm", "train_size", "metric", "value"} and len(tidy) == 2 * 4
    # The ensemble's false alarms (mean of 20 and 30) sit between the per-model values.
    per_model = ablation.run_means(table)
    free = per_model[(per_model.arm == "none") & (per_model.metric == "median_delta_count_free")]["value"]
    assert sorted(free) == [20.0, 30.0]


def test_findings_effects_equal_the_hand_differences(grid):
    table, out, labels, probas = grid
    cells = evaluate_findings(table, out_dir=out, labels=labels, n_boot=50)
    fp = cells[cells["finding"] == "fewer_false_positives"].iloc[0]
    # Averaged, a pixel flagged by one model only is (0.9 + <0.09) / 2 < 0.5: the none
    # ensemble keeps the 20 alarms both models raise, hokkaido 2 -> effect −18 px.
    assert fp["effect"] == pytest.approx(2 - 20)
    assert fp["ci_low"] <= fp["effect"] <= fp["ci_high"] and fp["supports"]
    assert (fp["seeds_agree"], fp["n_seeds"]) == (2, 2)  # seed 0: 2 − 20 < 0; seed 1: 4 − 30 < 0
    beats = cells[cells["finding"] == "beats_random"]
    assert len(beats) == 2 and beats["supports"].all()
    summary = summarize_findings(cells)
    assert summary.set_index("finding").loc["fewer_false_positives", "verdict"] == "holds"
    assert summary.set_index("finding").loc["fewer_false_positives", "cells"] == "1 of 1"
    text = findings_markdown(summary)
    assert "lowers false positives" in text and "Shown by this run" in text


def test_weighted_ranking_equals_sklearn_on_resamples():
    rng = np.random.default_rng(3)
    scores = np.round(rng.random((9, 4, 4)), 1)  # many ties
    labels = (rng.random((9, 4, 4)) < 0.25).astype(np.uint8)
    ranking = PixelRanking(scores, labels)
    untabled = PixelRanking(scores, labels)
    untabled.max_table = 0  # the per-call path taken for very large test sets
    untabled.__init__(scores, labels)
    assert ranking._tables is not None and untabled._tables is None
    weights = stratified_chip_weights(labels.any(axis=(1, 2)), 5, seed=1)
    for w in [np.ones(9)] + list(weights):
        expected = average_precision_score(labels.reshape(-1) > 0, scores.reshape(-1), sample_weight=np.repeat(w, 16))
        assert ranking.aprc(w) == pytest.approx(expected)
        assert untabled.aprc(w) == pytest.approx(expected)
    # A chip weighted 0 drops out entirely: the same as scoring the other chips alone.
    w = np.ones(9)
    w[[0, 4]] = 0
    keep = w > 0
    alone = average_precision_score(labels[keep].reshape(-1) > 0, scores[keep].reshape(-1))
    assert ranking.aprc(w) == pytest.approx(alone)
    # Each stratified resample keeps the number of chips of each kind.
    has = labels.any(axis=(1, 2))
    assert (weights[:, has].sum(axis=1) == has.sum()).all()
    assert weighted_median(np.array([1.0, 5.0, 9.0]), np.array([0, 2, 1])) == np.median([5, 5, 9])
    with pytest.raises(ValueError, match="chip_weights has shape"):
        ranking.aprc(np.ones(3))
