"""Tests for sarslide.mapping: sliding windows, calibration, heatmaps and GeoTIFF
export."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from pyproj import Transformer
from sklearn.calibration import calibration_curve

from sarslide import mapping, metrics
from sarslide.baseline import log_ratio_score
from sarslide.mapping import MappingError
from sarslide.transforms import BandStats

CRS = "EPSG:32654"
X0, Y0 = 500_000.0, 4_700_000.0  # top-left corner of the test grids
#: Standardisation that leaves log10 values unchanged, so a model sees log10(linear).
IDENTITY_STATS = BandStats(mean={"vv": 0.0, "vh": 0.0}, std={"vv": 1.0, "vh": 1.0})


def _pair(ny: int, nx: int, seed: int = 0, res: float = 10.0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    data = {
        name: (("y", "x"), rng.gamma(4.0, scale, size=(ny, nx)).astype(np.float32))
        for name, scale in zip(
            ("pre_vv", "pre_vh", "post_vv", "post_vh"), (0.05, 0.013, 0.05, 0.013)
        )
    }
    pair = xr.Dataset(
        data,
        coords={
            "y": Y0 - res * (np.arange(ny) + 0.5),
            "x": X0 + res * (np.arange(nx) + 0.5),
        },
        attrs={
            "event": "test",
            "pre_times": ["2018-08-24"],
            "post_times": ["2018-09-13"],
        },
    )
    return pair.rio.write_crs(CRS)


def _constant(value: float):
    def predict(batch):
        return np.full((batch.shape[0],) + batch.shape[2:], value, dtype=np.float32)

    return predict


def _window_mean_model(batch):
    """Position-dependent: each window predicts one number (a squashed mean of its
    input)."""
    m = batch[:, 0].mean(axis=(1, 2))
    return np.broadcast_to(
        (1 / (1 + np.exp(-m)))[:, None, None], (batch.shape[0],) + batch.shape[2:]
    )


# ----------------------------------------------------------------------------- windows
@pytest.mark.parametrize(
    "length,window,overlap", [(100, 32, 8), (64, 64, 0), (97, 30, 7), (33, 32, 31)]
)
def test_windows_cover_every_pixel(length, window, overlap):
    starts = mapping.window_starts(length, window, overlap)
    covered = np.zeros(length, int)
    for s in starts:
        covered[s : s + window] += 1
    assert covered.min() >= 1
    assert starts[0] == 0 and starts[-1] + window == length
    assert (np.diff(starts) <= window - overlap).all()


def test_window_weights_positive_and_flat_centre():
    w = mapping.window_weights(64, 16)
    assert w.shape == (64, 64) and w.min() > 0
    assert w[16:48, 16:48] == pytest.approx(1.0)
    assert w[0, 0] < 0.01


def test_constant_model_gives_constant_map():
    pair = _pair(150, 170)
    prob = mapping.predict_probability(
        pair,
        _constant(0.37),
        IDENTITY_STATS,
        window=48,
        overlap=12,
        chunk_size=64,
        progress=False,
    )
    assert (
        prob.dims == ("y", "x")
        and prob.shape == (150, 170)
        and prob.dtype == np.float32
    )
    np.testing.assert_allclose(prob.values, 0.37, rtol=1e-6)


def test_ramp_of_global_coordinates_comes_back():
    ny, nx = 130, 157
    rows, cols = np.mgrid[0:ny, 0:nx]
    ramp = (0.1 + 0.8 * (rows + 2 * cols) / (ny + 2 * nx)).astype(np.float32)
    pair = _pair(ny, nx)
    pair["pre_vv"] = (("y", "x"), (10.0**ramp).astype(np.float32))
    # with IDENTITY_STATS the model sees log10(pre_vv) = ramp in channel 0 and returns
    # it
    prob = mapping.predict_probability(
        pair,
        lambda b: b[:, 0],
        IDENTITY_STATS,
        window=40,
        overlap=9,
        chunk_size=50,
        progress=False,
    )
    np.testing.assert_allclose(prob.values, ramp, atol=1e-6)


def test_blocks_leave_no_seam_and_match_brute_force():
    ny, nx, window, overlap = 120, 140, 32, 8
    pair = _pair(ny, nx, seed=3)
    kwargs = dict(window=window, overlap=overlap, progress=False)
    small = mapping.predict_probability(
        pair, _window_mean_model, IDENTITY_STATS, chunk_size=37, **kwargs
    )
    whole = mapping.predict_probability(
        pair, _window_mean_model, IDENTITY_STATS, chunk_size=10_000, **kwargs
    )
    lazy = mapping.predict_probability(
        pair, _window_mean_model, IDENTITY_STATS, chunk_size=45, lazy=True, **kwargs
    )
    assert lazy.chunks is not None
    np.testing.assert_allclose(small.values, whole.values, rtol=1e-6)
    np.testing.assert_allclose(lazy.values, whole.values, rtol=1e-6)

    # Brute force: every window over the whole scene, weighted mean per pixel.
    x = np.log10(
        np.stack([pair[c].values for c in ("pre_vv", "pre_vh", "post_vv", "post_vh")])
    )
    weights = mapping.window_weights(window, overlap)
    acc, wsum = np.zeros((ny, nx)), np.zeros((ny, nx))
    for r in mapping.window_starts(ny, window, overlap):
        for c in mapping.window_starts(nx, window, overlap):
            pred = _window_mean_model(x[None, :, r : r + window, c : c + window])[0]
            acc[r : r + window, c : c + window] += weights * pred
            wsum[r : r + window, c : c + window] += weights
    np.testing.assert_allclose(whole.values, acc / wsum, rtol=1e-5)


# ----------------------------------------------------------------------------- bad
# input
def test_nodata_is_masked_never_landslide():
    pair = _pair(100, 100)
    pair["post_vv"][10:30, 40:70] = np.nan
    pair["pre_vh"][80:, :5] = np.nan
    nodata = ~np.isfinite(np.stack([pair[v].values for v in pair.data_vars])).all(
        axis=0
    )
    prob = mapping.predict_probability(
        pair, _constant(1.0), IDENTITY_STATS, window=32, overlap=8, progress=False
    )
    np.testing.assert_array_equal(np.isnan(prob.values), nodata)
    binary = mapping.binary_map(prob, 0.5)
    assert (binary.values[nodata] == mapping.BINARY_NODATA).all()
    assert (binary.values[~nodata] == 1).all()
    heat = mapping.density_heatmap(binary, cell_size=500.0)  # 2x2 cells of 50x50 px
    assert float(heat.sum()) * 500.0**2 == pytest.approx((~nodata).sum() * 100.0)


def test_pair_smaller_than_one_window():
    with pytest.raises(
        MappingError, match=r"50×60 pixels, smaller than one window of 64×64.*window=50"
    ):
        mapping.predict_probability(
            _pair(50, 60), _constant(0.5), IDENTITY_STATS, window=64, overlap=8
        )


def test_model_channel_mismatch_names_the_channels():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    two_channel = torch.nn.Conv2d(2, 1, 3, padding=1)  # e.g. a VV+VH single-pass model
    with pytest.raises(
        MappingError, match=r"\['pre_vv', 'pre_vh', 'post_vv', 'post_vh'\]"
    ):
        mapping.predict_probability(
            _pair(64, 64), two_channel, IDENTITY_STATS, window=32, overlap=8
        )


def test_pair_missing_channel_or_event_cube():
    pair = _pair(64, 64).drop_vars("post_vh")
    with pytest.raises(MappingError, match=r"missing \['post_vh'\]"):
        mapping.predict_probability(pair, _constant(0.5), IDENTITY_STATS, window=32)
    cube = xr.Dataset(
        {
            b: (("time", "y", "x"), np.ones((2, 64, 64), np.float32))
            for b in ("vv", "vh")
        }
    ).rio.write_crs(CRS)
    with pytest.raises(MappingError, match="pass_pair"):
        mapping.predict_probability(cube, _constant(0.5), IDENTITY_STATS, window=32)


def test_predictor_output_checked():
    pair = _pair(64, 64)
    with pytest.raises(MappingError, match="not probabilities"):
        mapping.predict_probability(
            pair, lambda b: b[:, 0] * 50, IDENTITY_STATS, window=32
        )
    with pytest.raises(MappingError, match="shape"):
        mapping.predict_probability(pair, lambda b: b[:, :2], IDENTITY_STATS, window=32)
    with pytest.raises(MappingError, match="overlap"):
        mapping.predict_probability(
            pair, _constant(0.5), IDENTITY_STATS, window=32, overlap=32
        )


# ----------------------------------------------------------------------------- torch
# models
def test_torch_module_logits_go_through_sigmoid():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    model = torch.nn.Conv2d(4, 1, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.fill_(np.log(0.2 / 0.8))  # logit of 0.2
    model.train()
    prob = mapping.predict_probability(
        _pair(70, 90),
        model,
        IDENTITY_STATS,
        window=32,
        overlap=8,
        device="cpu",
        progress=False,
        # exact reference; the bf16 fast path is checked in test_precision.py
        precision="fp32",
    )
    np.testing.assert_allclose(prob.values, 0.2, rtol=1e-5)
    assert not model.training


def test_list_of_modules_averages_probabilities():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    members = []
    for p in (0.2, 0.6):
        model = torch.nn.Conv2d(4, 1, 1)
        with torch.no_grad():
            model.weight.zero_()
            model.bias.fill_(np.log(p / (1 - p)))
        members.append(model)
    prob = mapping.predict_probability(
        _pair(40, 40),
        members,
        IDENTITY_STATS,
        window=32,
        overlap=8,
        device="cpu",
        progress=False,
        # exact reference; the bf16 fast path is checked in test_precision.py
        precision="fp32",
    )
    np.testing.assert_allclose(
        prob.values, 0.4, rtol=1e-5
    )  # not sigmoid(mean logit) ≈ 0.38


def test_stage2_segmenter_maps_a_pair():
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("sarslide.models")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = models.Segmenter(None)
    prob = mapping.predict_probability(
        _pair(48, 56), model, IDENTITY_STATS, window=32, overlap=8, progress=False
    )
    assert prob.shape == (48, 56)
    assert np.isfinite(prob.values).all()
    assert ((prob.values >= 0) & (prob.values <= 1)).all()


# ----------------------------------------------------------------------------- baseline
def test_log_ratio_baseline_mapped_on_linear_input():
    pair = _pair(90, 110, seed=5)
    pair["post_vv"][20:40, 30:60] *= 0.1
    pair["post_vv"][0:3, 0:3] = np.nan
    score = mapping.predict_raw(
        pair,
        functools.partial(log_ratio_score, window=1),
        window=32,
        overlap=8,
        progress=False,
    )
    images = np.stack(
        [pair[c].values for c in ("pre_vv", "pre_vh", "post_vv", "post_vh")]
    )[None]
    expected = log_ratio_score(images, window=1)[0]
    expected[0:3, 0:3] = np.nan
    np.testing.assert_allclose(score.values, expected, rtol=1e-5)
    assert score.rio.crs == pair.rio.crs


# -----------------------------------------------------------------------------
# thresholds
def test_binary_map_threshold_and_nodata():
    prob = _pair(4, 4)["pre_vv"] * 0
    prob.values[:] = np.array([[0.1, 0.5, 0.49, np.nan]] * 4, dtype=np.float32)
    binary = mapping.binary_map(prob, 0.5)
    assert binary.dtype == np.uint8
    np.testing.assert_array_equal(binary.values[0], [0, 1, 0, 255])
    assert binary.rio.nodata == 255 and binary.rio.crs == prob.rio.crs


def test_calibrate_threshold_hand_cases():
    p = np.linspace(0.1, 1.0, 10).reshape(1, 2, 5)
    y = np.zeros((1, 2, 5))
    y[0, 0, :3] = 1  # 3 landslide pixels → the 3 highest scores: threshold 0.8
    assert mapping.calibrate_threshold(p, y) == pytest.approx(0.8)
    # ties: four at 0.5 and one at 0.9 with 2 positives → 0.9 (1 predicted) beats 0.5
    # (5)
    p = np.array([[[0.5, 0.5, 0.5, 0.5, 0.9]]])
    y = np.array([[[1, 1, 0, 0, 0]]])
    assert mapping.calibrate_threshold(p, y) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="no landslide"):
        mapping.calibrate_threshold(p, np.zeros_like(y))


def _miscalibrated_chips(seed: int, n: int = 40, size: int = 32):
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n // 2):  # half of the chips hold one landslide of random size
        h, w = rng.integers(3, 12, size=2)
        r, c = rng.integers(0, size - 12, size=2)
        labels[i, r : r + h, c : c + w] = 1
    logit = 3.0 * labels - 2.5 + rng.normal(0.0, 1.0, labels.shape)
    over_confident = 1 / (
        1 + np.exp(-(logit + 2.5))
    )  # shifted: far too many pixels ≥ 0.5
    return over_confident, labels


def test_calibration_reduces_median_abs_delta_count():
    val_p, val_y = _miscalibrated_chips(seed=0)
    test_p, test_y = _miscalibrated_chips(seed=1)
    t = mapping.calibrate_threshold(val_p, val_y)
    assert t > 0.5  # over-confident scores need a higher threshold
    # unbiased total on the validation chips: Σŷ = Σy up to ties
    assert abs(int((val_p >= t).sum()) - int(val_y.sum())) <= 1
    for p, y in ((val_p, val_y), (test_p, test_y)):
        fixed = metrics.miscounts(p, y, threshold=0.5)["delta_count"].abs().median()
        calibrated = metrics.miscounts(p, y, threshold=t)["delta_count"].abs().median()
        assert calibrated < 0.5 * fixed


def test_reliability_curve_matches_sklearn():
    rng = np.random.default_rng(2)
    p = rng.random((3, 20, 20))
    y = (rng.random(p.shape) < p**2).astype(np.uint8)
    curve = mapping.reliability_curve(p, y, n_bins=8)
    prob_true, prob_pred = calibration_curve(y.ravel(), p.ravel(), n_bins=8)
    filled = curve[curve["count"] > 0]
    np.testing.assert_allclose(filled["observed_frequency"], prob_true)
    np.testing.assert_allclose(filled["mean_predicted"], prob_pred)
    assert curve["count"].sum() == p.size
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mapping.reliability_curve(p + 1, y)


# ----------------------------------------------------------------------------- heatmaps
def test_heatmap_total_equals_mapped_area_and_hand_cell():
    rng = np.random.default_rng(4)
    ny, nx = 250, 330  # not whole cells: the last row/column of cells is partial
    prob = _pair(ny, nx)["pre_vv"].copy(
        data=rng.random((ny, nx)).astype(np.float32) ** 4
    )
    prob.values[:20, :20] = np.nan
    binary = mapping.binary_map(prob, 0.3)
    heat = mapping.density_heatmap(binary, cell_size=1000.0)
    assert heat.shape == (3, 4)
    mapped_m2 = (binary.values == 1).sum() * 10.0 * 10.0
    assert float(heat.sum()) * 1000.0**2 == pytest.approx(mapped_m2, rel=1e-6)
    # one cell by hand: rows 100–199, columns 200–299
    assert float(heat[1, 2]) == pytest.approx(
        (binary.values[100:200, 200:300] == 1).mean()
    )
    # cell centres in metres, same CRS
    assert float(heat["x"][0]) == X0 + 500.0 and float(heat["y"][0]) == Y0 - 500.0
    assert heat.rio.crs == prob.rio.crs
    # a probability map gives the expected area
    expected = mapping.density_heatmap(prob, cell_size=500.0)
    assert float(expected.sum()) * 500.0**2 == pytest.approx(
        np.nansum(prob.values) * 100.0, rel=1e-5
    )


def test_heatmap_cell_size_must_be_multiple_of_pixel():
    binary = mapping.binary_map(_pair(50, 50)["pre_vv"] * 0, 0.5)
    with pytest.raises(
        MappingError,
        match=r"cell_size=1005.0 m is not a whole multiple of the pixel size 10 m",
    ):
        mapping.density_heatmap(binary, cell_size=1005.0)
    with pytest.raises(MappingError, match="multiple"):
        mapping.density_heatmap(binary, cell_size=5.0)


def test_rank_cells():
    values = np.zeros((3, 4), np.float32)
    values[2, 1], values[0, 3], values[1, 1] = 0.5, 0.25, 0.125
    values[0, 0] = np.nan
    heat = xr.DataArray(
        values,
        dims=("y", "x"),
        coords={
            "y": Y0 - 1000 * (np.arange(3) + 0.5),
            "x": X0 + 1000 * (np.arange(4) + 0.5),
        },
        attrs={"cell_size": 1000.0},
    ).rio.write_crs(CRS)
    table = mapping.rank_cells(heat, top=2)
    assert table["rank"].tolist() == [1, 2]
    assert table["landslide_fraction"].tolist() == [0.5, 0.25]
    assert table["landslide_area_km2"].tolist() == pytest.approx([0.5, 0.25])
    assert (table.loc[0, "x"], table.loc[0, "y"]) == (X0 + 1500.0, Y0 - 2500.0)
    back = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(
        table["lon"].values, table["lat"].values
    )
    np.testing.assert_allclose(back, [table["x"], table["y"]], atol=1e-3)
    assert len(mapping.rank_cells(heat, top=10)) == 3  # only cells with landslides


# ----------------------------------------------------------------------------- GeoTIFF
def _expected_transform(da: xr.DataArray) -> Affine:
    dx = float(da.x[1] - da.x[0])
    dy = float(da.y[0] - da.y[1])
    return Affine(dx, 0.0, float(da.x[0]) - dx / 2, 0.0, -dy, float(da.y[0]) + dy / 2)


@pytest.mark.parametrize("lazy", [False, True])
def test_written_cogs_keep_georeferencing(tmp_path, lazy):
    pair = _pair(120, 150, seed=6)
    pair["post_vh"][:10, :10] = np.nan
    prob = mapping.predict_probability(
        pair,
        _window_mean_model,
        IDENTITY_STATS,
        window=32,
        overlap=8,
        chunk_size=64,
        lazy=lazy,
        progress=False,
    )
    binary = mapping.binary_map(prob, 0.5)
    heat = mapping.density_heatmap(binary, cell_size=500.0)
    for name, da in (("prob", prob), ("binary", binary), ("heat", heat)):
        path = mapping.write_cog(da, tmp_path / "out" / f"{name}.tif")
        with rasterio.open(path) as src:
            assert src.crs == rasterio.crs.CRS.from_user_input(CRS)
            assert src.transform.almost_equals(_expected_transform(da))
            assert src.shape == da.shape
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            band = src.read(1)
            if name == "binary":
                assert src.nodata == 255
                np.testing.assert_array_equal(band, da.values)
            else:
                np.testing.assert_array_equal(np.isnan(band), np.isnan(da.values))
                np.testing.assert_allclose(band, da.values, rtol=1e-6)
    with rasterio.open(tmp_path / "out" / "prob.tif") as src:
        assert tuple(src.bounds) == pytest.approx((X0, Y0 - 1200.0, X0 + 1500.0, Y0))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "binary.tif",
        "heat.tif",
        "prob.tif",
    ]


def test_write_cog_needs_crs(tmp_path):
    da = xr.DataArray(
        np.zeros((4, 4), np.float32),
        dims=("y", "x"),
        coords={"y": np.arange(4.0)[::-1], "x": np.arange(4.0)},
    )
    with pytest.raises(MappingError, match="CRS"):
        mapping.write_cog(da, tmp_path / "x.tif")
    assert not list(tmp_path.iterdir())


def _heatmap(values, cell=1000.0):
    values = np.asarray(values, dtype=np.float32)
    ny, nx = values.shape
    da = xr.DataArray(
        values,
        dims=("y", "x"),
        coords={
            "y": 4_700_000.0 - cell * (np.arange(ny) + 0.5),
            "x": 500_000.0 + cell * (np.arange(nx) + 0.5),
        },
        attrs={"cell_size": cell},
    )
    return da.rio.write_crs("EPSG:32654")


def test_heatmap_agreement_against_hand_values():
    truth = _heatmap([[0.4, 0.0, 0.1], [0.0, 0.2, np.nan]])
    same = mapping.heatmap_agreement(truth, truth, top=2)
    assert same["correlation"] == pytest.approx(1.0)
    assert same["shared_top_cells"] == 2
    # 0.7 of a 1 km² cell in total
    assert same["true_area_km2"] == pytest.approx(0.7) and same[
        "mapped_area_km2"
    ] == pytest.approx(0.7)
    swapped = _heatmap([[0.0, 0.4, 0.1], [0.2, 0.0, np.nan]])
    out = mapping.heatmap_agreement(swapped, truth, top=2)
    a = np.array([0.0, 0.4, 0.1, 0.2, 0.0])
    b = np.array([0.4, 0.0, 0.1, 0.0, 0.2])
    assert out["correlation"] == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert (
        out["shared_top_cells"] == 0
    )  # top-2 truth cells are (0,0) and (1,1); mapped (0,1) and (1,0)
    with pytest.raises(MappingError, match="different grids"):
        mapping.heatmap_agreement(_heatmap([[0.1, 0.2]]), truth)


# -----------------------------------------------------------------------------
# structure
def test_public_names_of_the_subpackage():
    """Every name the notebooks, CLI, tests and benchmarks use lives on
    sarslide.mapping."""
    for name in mapping.__all__:
        assert hasattr(mapping, name), name
    assert mapping.MappingError.__module__ == "sarslide.mapping"
    assert issubclass(mapping.MappingError, ValueError)


def test_block_plan_covers_the_scene_once():
    ny, nx, window, overlap, chunk = 130, 95, 32, 8, 50
    plan = mapping.block_plan(ny, nx, window, overlap, chunk)
    written = np.zeros((ny, nx), int)
    for block in plan:
        r0, r1, c0, c1 = block.core
        written[r0:r1, c0:c1] += 1
        ry0, ry1, rx0, rx1 = block.region
        assert ry0 <= r0 and r1 <= ry1 and rx0 <= c0 and c1 <= rx1
        for (
            y,
            x,
        ) in block.windows:  # every window lies in the region and touches the core
            assert ry0 <= y and y + window <= ry1 and rx0 <= x and x + window <= rx1
            assert y < r1 and y + window > r0 and x < c1 and x + window > c0
    assert (written == 1).all()


def test_ensemble_goes_through_metrics_ensemble_mean(monkeypatch):
    calls = []

    def counting_mean(members):
        members = list(members)
        calls.append(len(members))
        return metrics.ensemble_mean(members)

    monkeypatch.setattr(mapping.predictors, "ensemble_mean", counting_mean)
    pair = _pair(64, 64)
    prob = mapping.predict_probability(
        pair,
        [_constant(0.2), _constant(0.7)],
        IDENTITY_STATS,
        window=32,
        overlap=8,
        progress=False,
    )
    assert calls and set(calls) == {2}  # dry run and every batch average two members
    np.testing.assert_allclose(prob.values, 0.45, rtol=1e-6)


def test_ensemble_member_returning_logits_is_refused():
    with pytest.raises(MappingError, match="not probabilities"):
        mapping.predict_probability(
            _pair(64, 64), [_constant(0.5), _constant(3.0)], IDENTITY_STATS, window=32
        )


def test_raw_and_probability_share_one_window_plan():
    """One callable through both entry points: the same blend, only the input
    differs."""
    from sarslide.transforms import LINEAR_FLOOR

    pair = _pair(70, 90, seed=2)
    kwargs = dict(window=32, overlap=8, chunk_size=40, progress=False)
    prob = mapping.predict_probability(
        pair, _window_mean_model, IDENTITY_STATS, **kwargs
    )
    # IDENTITY_STATS standardises to log10(max(x, floor)): do that inside the raw score
    raw = mapping.predict_raw(
        pair,
        lambda b: _window_mean_model(np.log10(np.maximum(b, LINEAR_FLOOR))),
        **kwargs,
    )
    assert (raw.attrs["window"], raw.attrs["overlap"]) == (prob.attrs["window"], 8)
    np.testing.assert_allclose(raw.values, prob.values, rtol=1e-5)
