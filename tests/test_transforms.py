import numpy as np
import pytest

from sarslide.transforms import BandStats, compute_stats, standardize


def _images(seed=0, n=6, size=8):
    rng = np.random.default_rng(seed)
    vv = 10 ** rng.normal(-0.73, 0.21, (n, 2, size, size))
    vh = 10 ** rng.normal(-1.32, 0.19, (n, 2, size, size))
    images = np.empty((n, 4, size, size), dtype=np.float32)
    images[:, [0, 2]] = vv
    images[:, [1, 3]] = vh
    return images


def test_stats_pool_pre_and_post_per_polarisation():
    images = _images()
    stats = compute_stats(images)
    ref_vv = np.log10(images[:, [0, 2]].astype(np.float64))
    assert stats.mean["vv"] == pytest.approx(ref_vv.mean(), abs=1e-9)
    assert stats.std["vv"] == pytest.approx(ref_vv.std(), abs=1e-9)
    assert stats.mean["vh"] == pytest.approx(
        np.log10(images[:, [1, 3]].astype(np.float64)).mean(), abs=1e-9
    )


def test_standardize_gives_zero_mean_unit_std_and_zero_for_nan():
    images = _images()
    stats = compute_stats(images)
    out = standardize(images, stats)
    assert out.dtype == np.float32 and out.shape == images.shape
    assert out[:, [0, 2]].mean() == pytest.approx(0, abs=1e-5)
    assert out[:, [1, 3]].std() == pytest.approx(1, abs=1e-4)
    images[0, 1, 0, 0] = np.nan
    images[0, 0, 0, 1] = 0.0  # zero power is clipped at the floor, not -inf
    out = standardize(images, stats.to_dict())  # the stored dict form works too
    assert out[0, 1, 0, 0] == 0.0
    assert np.isfinite(out).all()
    assert out[0, 0, 0, 1] == pytest.approx(
        (-5 - stats.mean["vv"]) / stats.std["vv"], rel=1e-5
    )


def test_a_real_change_survives_standardisation():
    images = _images()
    images[:, 3] *= 0.5  # post-event VH drops by 3 dB everywhere
    out = standardize(images, compute_stats(images))
    assert (out[:, 3] - out[:, 1]).mean() < -0.5


def test_bad_input():
    with pytest.raises(
        ValueError, match=r"shape \(2, 2, 8, 8\) but need \(N, 4, H, W\)"
    ):
        compute_stats(np.ones((2, 2, 8, 8)))
    with pytest.raises(ValueError, match="no chips"):
        compute_stats(np.ones((0, 4, 8, 8)))
    with pytest.raises(ValueError, match="every 'vv' value is NaN"):
        compute_stats(np.full((1, 4, 2, 2), np.nan))
    with pytest.raises(ValueError, match="not of the form"):
        standardize(_images(), {"vv": 1})
    assert BandStats.from_dict(compute_stats(_images()).to_dict()) == compute_stats(
        _images()
    )
