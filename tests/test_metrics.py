"""Tests for sarslide.metrics against scikit-learn, hand counts and textbook
formulas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from sarslide import metrics


# --------------------------------------------------------------------------- APRC
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aprc_equals_sklearn_on_random_chips(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random((5, 16, 16)) < 0.1).astype(np.uint8)
    scores = rng.random((5, 16, 16)) + 0.3 * labels  # informative but noisy
    expected = average_precision_score(labels.ravel(), scores.ravel())
    assert metrics.aprc(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_aprc_with_ties_equals_sklearn():
    rng = np.random.default_rng(3)
    labels = (rng.random((4, 8, 8)) < 0.3).astype(np.uint8)
    scores = np.round(rng.random((4, 8, 8)), 1)  # only 11 distinct values: many ties
    expected = average_precision_score(labels.ravel(), scores.ravel())
    assert metrics.aprc(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_aprc_hand_computed():
    # Ranking 1,0,1,0: precision 1 at recall 1/2, precision 2/3 at recall 1.
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([1, 0, 1, 0])
    assert metrics.aprc(scores, labels) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # A tie between a positive and a negative at 0.5 forms one threshold.
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    assert metrics.aprc(scores, labels) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_aprc_constant_scores_is_positive_share():
    labels = np.zeros((2, 5, 5), dtype=np.uint8)
    labels[0, :2, :] = 1  # 10 of 50 pixels
    scores = np.full(labels.shape, 0.7)
    assert metrics.aprc(scores, labels) == pytest.approx(10 / 50)
    assert metrics.random_guess_aprc(labels) == pytest.approx(10 / 50)


def test_aprc_point_counts_are_positives():
    rng = np.random.default_rng(4)
    counts = rng.integers(0, 4, size=(3, 8, 8)).astype(
        np.uint16
    )  # 0..3 points per pixel
    scores = rng.random(counts.shape)
    expected = average_precision_score((counts > 0).ravel(), scores.ravel())
    assert metrics.aprc(scores, counts) == pytest.approx(expected)


def test_aprc_perfect_ranking_is_one():
    labels = np.array([[0, 1], [1, 0]])
    assert metrics.aprc(labels * 0.9 + 0.05, labels) == pytest.approx(1.0)


def test_aprc_all_negative_raises():
    with pytest.raises(ValueError, match="no positive"):
        metrics.aprc(np.random.default_rng(0).random((2, 4, 4)), np.zeros((2, 4, 4)))


def test_aprc_bad_input():
    with pytest.raises(ValueError, match="shape"):
        metrics.aprc(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    scores = np.full((1, 2, 2), 0.5)
    scores[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        metrics.aprc(scores, np.ones((1, 2, 2)))


# --------------------------------------------------------------------------- miscounts
def test_miscounts_hand_counts():
    probabilities = np.zeros((3, 3, 3), dtype=np.float32)
    labels = np.zeros((3, 3, 3), dtype=np.uint8)
    # chip 0: predicts 4 pixels (one exactly at the threshold), truth 2 → +2
    probabilities[0, 0, :] = [0.9, 0.6, 0.5]
    probabilities[0, 1, 0] = 0.7
    probabilities[0, 2, 0] = 0.49
    labels[0, 2, :2] = 1
    # chip 1: landslide-free, predicts 1 pixel → +1
    probabilities[1, 1, 1] = 0.8
    # chip 2: truth 5 pixels (point counts 1..3), predicts 0; a NaN is not a prediction
    labels[2, 0, :] = [1, 2, 3]
    labels[2, 1, :2] = 1
    probabilities[2, 2, 2] = np.nan
    table = metrics.miscounts(
        probabilities, labels, threshold=0.5, chip_ids=["a", "b", "c"]
    )
    assert list(table.columns) == [
        "chip",
        "predicted_pixels",
        "true_pixels",
        "delta_l1",
        "delta_count",
        "has_landslide",
    ]
    assert table["chip"].tolist() == ["a", "b", "c"]
    assert table["predicted_pixels"].tolist() == [4, 1, 0]
    assert table["true_pixels"].tolist() == [2, 0, 5]
    assert table["delta_count"].tolist() == [2, 1, -5]
    assert table["delta_l1"].tolist() == [2, 1, 5]
    assert table["has_landslide"].tolist() == [True, False, True]

    medians = metrics.miscount_medians(table)
    assert medians.loc["all", "delta_l1"] == 2  # median of 2, 1, 5
    assert medians.loc["landslide_free", "delta_count"] == 1
    assert medians.loc["landslide", "delta_count"] == pytest.approx((2 - 5) / 2)
    assert medians.loc["landslide", "n_chips"] == 2


def test_miscounts_threshold_changes_counts():
    probabilities = np.array([[[0.2, 0.4], [0.6, 0.8]]])
    labels = np.zeros((1, 2, 2))
    assert (
        metrics.miscounts(probabilities, labels, threshold=0.3)["predicted_pixels"][0]
        == 3
    )
    assert (
        metrics.miscounts(probabilities, labels, threshold=0.7)["predicted_pixels"][0]
        == 1
    )


def test_miscount_medians_empty_group_is_nan():
    table = metrics.miscounts(np.ones((2, 2, 2)), np.ones((2, 2, 2)))
    medians = metrics.miscount_medians(table)
    assert math.isnan(medians.loc["landslide_free", "delta_count"])
    assert medians.loc["landslide_free", "n_chips"] == 0


def test_miscounts_bad_input():
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        metrics.miscounts(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="shape"):
        metrics.miscounts(np.zeros((1, 4, 4)), np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="chip_ids"):
        metrics.miscounts(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), chip_ids=[1])
    with pytest.raises(ValueError, match="miscounts"):
        metrics.miscount_medians(pd.DataFrame({"delta_l1": [1]}))


# --------------------------------------------------------------------------- ensembles
def test_ensemble_mean_averages_probabilities_not_logits():
    logits = np.array([-4.0, 2.0])
    probs = 1 / (1 + np.exp(-logits))
    members = [np.full((1, 2, 2), p) for p in probs]
    out = metrics.ensemble_mean(members)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (probs[0] + probs[1]) / 2, rtol=1e-6)
    # ... which is not the sigmoid of the mean logit (0.2689 vs 0.5628 here)
    assert not np.isclose(out[0, 0, 0], 1 / (1 + np.exp(-logits.mean())), atol=0.1)


def test_ensemble_mean_generator_and_stacked():
    rng = np.random.default_rng(5)
    stack = rng.random((4, 2, 3, 3))
    np.testing.assert_allclose(
        metrics.ensemble_mean(stack), stack.mean(axis=0), rtol=1e-6
    )
    np.testing.assert_allclose(
        metrics.ensemble_mean(m for m in stack), stack.mean(axis=0), rtol=1e-6
    )


def test_ensemble_mean_bad_input():
    with pytest.raises(ValueError, match="shape"):
        metrics.ensemble_mean([np.zeros((1, 2, 2)), np.zeros((1, 2, 3))])
    with pytest.raises(ValueError, match="logits"):
        metrics.ensemble_mean([np.full((1, 2, 2), -3.0)])
    with pytest.raises(ValueError, match="no members"):
        metrics.ensemble_mean([])


def test_weighted_ensemble_mean_is_the_mean_over_all_models():
    # A mean of per-run means, each weighted by its number of models, equals the plain
    # mean over every model (numpy's weighted average is the reference).
    rng = np.random.default_rng(4)
    models = rng.random((5, 2, 3, 3))
    run_a, run_b = models[:2].mean(axis=0), models[2:].mean(axis=0)
    out = metrics.ensemble_mean([run_a, run_b], weights=[2, 3])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, models.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(
        out, np.average([run_a, run_b], axis=0, weights=[2, 3]), rtol=1e-6
    )
    # Unit weights are the plain mean, bit for bit.
    assert np.array_equal(
        metrics.ensemble_mean([run_a, run_b], weights=[1, 1]),
        metrics.ensemble_mean([run_a, run_b]),
    )
    with pytest.raises(ValueError, match="2 weights for more than 2 ensemble members"):
        metrics.ensemble_mean([run_a, run_b, run_a], weights=[1, 1])
    with pytest.raises(ValueError, match="negative"):
        metrics.ensemble_mean([run_a, run_b], weights=[1, -1])


def test_score_probabilities_by_hand():
    # Two chips of 2x2: chip 0 has 2 landslide pixels, predicted 3 (one false alarm);
    # chip 1 is landslide-free with 1 false alarm. Threshold 0.5.
    labels = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]], dtype=np.uint8)
    p = np.array([[[0.9, 0.8], [0.7, 0.1]], [[0.6, 0.2], [0.1, 0.1]]], dtype=np.float32)
    scores = metrics.score_probabilities(p, labels)
    assert tuple(scores) == metrics.GRID_METRICS
    assert scores["aprc"] == pytest.approx(
        average_precision_score(labels.ravel(), p.ravel())
    )
    assert scores["median_delta_count_landslide"] == 1.0  # 3 predicted - 2 true
    assert scores["median_delta_count_free"] == 1.0
    assert scores["median_delta_l1"] == 1.0  # |+1| on both chips


# --------------------------------------------------------------------------- SEM
def test_sem_matches_hand_formula():
    values = [1.0, 2.0, 3.0, 4.0]
    # mean 2.5; squared deviations 2.25+0.25+0.25+2.25 = 5; sample variance 5/3
    expected = math.sqrt(5 / 3) / math.sqrt(4)
    assert metrics.sem(values) == pytest.approx(expected)
    assert metrics.sem(np.array([0.3, 0.3, 0.3])) == 0.0


def test_sem_single_and_empty():
    assert math.isnan(metrics.sem([0.4]))
    with pytest.raises(ValueError, match="no values"):
        metrics.sem([])
