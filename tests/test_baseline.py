"""Tests for the log-ratio change-detection baseline on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from sarslide.baseline import boxcar_mean, log_ratio_score


def _flat_scene(n=1, h=12, w=12, value=0.2):
    return np.full((n, 4, h, w), value, dtype=np.float32)


def test_known_change_in_db_either_sign():
    images = _flat_scene()
    images[0, 2, 3:7, 3:7] = 0.02  # post VV: -10 dB
    images[0, 3, 3:7, 3:7] = 0.02  # post VH: -10 dB
    images[0, 2:4, 8:10, 8:10] = 2.0  # +10 dB elsewhere
    score = log_ratio_score(images, window=1)
    assert score.shape == (1, 12, 12) and score.dtype == np.float32
    np.testing.assert_allclose(score[0, 3:7, 3:7], 10.0, rtol=1e-5)
    np.testing.assert_allclose(score[0, 8:10, 8:10], 10.0, rtol=1e-5)
    unchanged = np.ones((12, 12), bool)
    unchanged[3:7, 3:7] = unchanged[8:10, 8:10] = False
    np.testing.assert_allclose(score[0][unchanged], 0.0, atol=1e-6)


def test_polarisations_are_averaged():
    images = _flat_scene()
    images[0, 2] *= 10.0  # VV +10 dB, VH unchanged
    np.testing.assert_allclose(log_ratio_score(images, window=3), 5.0, rtol=1e-5)


def test_boxcar_keeps_block_interior_and_smooths_edges():
    images = _flat_scene(h=15, w=15)
    images[0, 2:4, 4:11, 4:11] = 0.02  # -10 dB block of 7x7
    score = log_ratio_score(images, window=5)[0]
    # 2 px inside the block the 5x5 box sees only changed pixels: the full 10 dB.
    np.testing.assert_allclose(score[6:9, 6:9], 10.0, rtol=1e-5)
    # At the block edge the box mixes 3 changed and 2 unchanged columns (linear mean).
    edge = abs(10 * np.log10((3 * 0.02 + 2 * 0.2) / 5 / 0.2))
    np.testing.assert_allclose(score[7, 4], edge, rtol=1e-5)
    # 3 px outside the block: unchanged.
    np.testing.assert_allclose(score[0, 0], 0.0, atol=1e-6)


def test_boxcar_mean_ignores_nan_and_clips_at_edges():
    a = np.arange(9, dtype=float).reshape(3, 3)
    a[1, 1] = np.nan
    out = boxcar_mean(a, 3)
    # centre: mean of the 8 finite neighbours; corner: mean of its 3 finite neighbours
    assert out[1, 1] == pytest.approx(np.mean([0, 1, 2, 3, 5, 6, 7, 8]))
    assert out[0, 0] == pytest.approx(np.mean([0, 1, 3]))
    with pytest.raises(ValueError, match="odd"):
        boxcar_mean(a, 4)


def test_nan_safe():
    images = _flat_scene()
    images[0, 0, 5, 5] = np.nan  # one pre-VV pixel missing: filled by its neighbours
    images[0, 1:, :, :2] = np.nan  # VH both passes and post VV missing in two columns
    images[0, 0, :, :2] = np.nan
    score = log_ratio_score(images, window=3, fill_value=-1.0)
    assert np.isfinite(score).all()
    assert score[0, 5, 5] == pytest.approx(0.0, abs=1e-6)
    assert (score[0, :, 0] == -1.0).all()  # nothing valid within the 3x3 window
    all_nan = np.full((2, 4, 6, 6), np.nan, dtype=np.float32)
    assert (log_ratio_score(all_nan) == 0.0).all()


def test_speckle_reduction_separates_change():
    rng = np.random.default_rng(0)
    n, h, w = 2, 48, 48
    clean = _flat_scene(n, h, w, 0.2)
    truth = np.zeros((n, h, w), np.uint8)
    truth[:, 10:30, 12:28] = 1
    clean[:, 2:4][:, :, truth[0] == 1] *= 10 ** (-2.0 / 10)  # a -2 dB landslide
    noisy = clean * rng.gamma(4.0, 1 / 4.0, size=clean.shape).astype(np.float32)
    ap1 = average_precision_score(
        truth.ravel(), log_ratio_score(noisy, window=1).ravel()
    )
    ap5 = average_precision_score(
        truth.ravel(), log_ratio_score(noisy, window=5).ravel()
    )
    share = truth.mean()
    assert ap1 > share  # informative even on single pixels
    assert ap5 > ap1 + 0.2  # and much better after the boxcar


def test_bad_shape():
    with pytest.raises(ValueError, match="pre_vv"):
        log_ratio_score(np.ones((1, 2, 4, 4)))
