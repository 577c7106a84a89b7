import numpy as np
import pytest
from scipy import ndimage

from sarslide.cube import validate_cube
from sarslide.passes import pass_pair
from sarslide.synthetic import LOG10_TARGETS, make_cube


@pytest.fixture(scope="module")
def cube():
    return make_cube((384, 384), n_pre=2, n_post=2, seed=3)


@pytest.mark.parametrize("band", ["vv", "vh"])
def test_log10_statistics_match_the_hokkaido_cube(cube, band):
    # Reference numbers from the real Hokkaido cube (synthetic.LOG10_TARGETS), not from
    # this generator.
    ref_mean, ref_std = {"vv": (-0.73, 0.21), "vh": (-1.32, 0.19)}[band]
    values = np.log10(cube[band].values)
    values = values[np.isfinite(values)]
    assert abs(values.mean() - ref_mean) < 0.02
    assert abs(values.std() - ref_std) < 0.02
    assert LOG10_TARGETS[band] == (ref_mean, ref_std)


def test_linear_means_match_the_hokkaido_cube(cube):
    assert np.nanmean(cube["vv"].values) == pytest.approx(0.21, rel=0.1)
    assert np.nanmean(cube["vh"].values) == pytest.approx(0.053, rel=0.1)


def test_schema_and_metadata(cube):
    validate_cube(cube)
    assert cube.sizes == {"time": 4, "y": 384, "x": 384}
    assert cube["vv"].dtype == np.float32
    assert cube.rio.crs.to_epsg() == 32654
    assert np.allclose(np.diff(cube.x.values), 10.0) and np.allclose(
        np.diff(cube.y.values), -10.0
    )


def test_landslides_are_compact_blobs_covering_a_few_percent(cube):
    mask = cube["landslides"].values > 0
    assert 0.02 < mask.mean() < 0.05
    labelled, n = ndimage.label(mask)
    sizes = np.bincount(labelled.ravel())[1:]
    assert n > 20
    assert np.median(sizes) >= 10  # blobs, not salt-and-pepper pixels
    # clustered: some 64 px tiles are free of landslides, others are hit
    tiles = mask[:384, :384].reshape(6, 64, 6, 64).any(axis=(1, 3))
    assert 0.2 < tiles.mean() < 0.9


def test_post_event_change_is_learnable_but_not_trivial(cube):
    pair = pass_pair(cube)
    mask = cube["landslides"].values > 0
    valid = np.isfinite(pair["pre_vh"].values)
    d = np.log10(pair["post_vh"].values) - np.log10(pair["pre_vh"].values)
    inside, outside = d[mask & valid], d[~mask & valid]
    assert inside.mean() < outside.mean() - 0.1  # visible on average
    # ... but a single pixel is not separable: distributions overlap heavily.
    assert np.mean(inside > np.median(outside)) > 0.15


def test_deterministic_by_seed():
    a = make_cube((64, 64), seed=7)
    b = make_cube((64, 64), seed=7)
    c = make_cube((64, 64), seed=8)
    np.testing.assert_array_equal(a["vv"].values, b["vv"].values)
    assert not np.array_equal(
        np.nan_to_num(a["vv"].values), np.nan_to_num(c["vv"].values)
    )


def test_point_labels_count_one_centroid_per_landslide():
    cube = make_cube((256, 256), event="kaikoura", seed=1)
    assert cube.attrs["label_kind"] == "points"
    assert cube["landslides"].dtype == np.uint16
    assert int(cube["landslides"].values.sum()) == cube.attrs["landslide_count"]
    assert cube.rio.crs.to_epsg() == 32759


def test_nodata_corner_is_nan_in_every_pass():
    cube = make_cube((128, 128), nodata_corner=0.05, seed=0)
    nan = np.isnan(cube["vv"].values)
    assert nan[:, 0, 0].all() and not nan[:, -1, -1].any()
    assert (nan[0] == nan[1]).all()
    assert 0.02 < nan[0].mean() < 0.08


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shape": (16, 16)}, "too small"),
        ({"label_kind": "polygons"}, "label_kind"),
        ({"n_post": 0}, "at least one pass"),
        ({"event": "atlantis"}, "unknown event"),
    ],
)
def test_bad_arguments(kwargs, message):
    kwargs = {"shape": (64, 64), **kwargs}
    with pytest.raises((ValueError, KeyError), match=message):
        make_cube(**kwargs)


def test_water_is_dark_changes_with_wind_and_never_slides():
    cube = make_cube(
        (256, 256), n_pre=3, n_post=3, seed=5, water_fraction=0.005, nodata_corner=0.0
    )
    dem = cube["dem"].values
    water = dem <= np.quantile(dem, 0.005)  # the lowest basins, by construction
    vv_db = 10 * np.log10(cube["vv"].values)
    # Water sits far below the land (the Hokkaido VV mean is about -7 dB).
    assert np.median(vv_db[:, water]) < -12.0
    assert np.median(vv_db[:, ~water]) > -10.0
    # Wind: the water's median level moves by dB from pass to pass; the land's does not.
    land = ~water & (cube["landslides"].values == 0)
    assert np.std(np.median(vv_db[:, water], axis=1)) > 1.0
    assert np.std(np.median(vv_db[:3][:, land], axis=1)) < 0.3
    assert not (cube["landslides"].values[water] > 0).any()
    assert cube.attrs["water_fraction"] == pytest.approx(0.005, abs=1e-3)


def test_terrain_is_hilly_not_cliffs_and_landslides_sit_on_the_steeper_slopes():
    cube = make_cube((256, 512), seed=2)
    dzdy, dzdx = np.gradient(cube["dem"].values.astype(float), 10.0)
    slope = np.degrees(np.arctan(np.hypot(dzdx, dzdy)))
    assert 13.0 < np.median(slope) < 17.0  # scaled to the 15° default
    inside = cube["landslides"].values > 0
    assert np.median(slope[inside]) > np.median(slope[~inside])
