import os

import numpy as np
import pytest

from sarslide import cube as cube_mod
from sarslide.cube import CubeError, open_cube, save_cube, validate_cube
from sarslide.passes import pass_pair


@pytest.fixture
def cube(make_hand_cube):
    labels = np.zeros((32, 32), dtype=np.uint8)
    labels[4:8, 4:8] = 1
    return make_hand_cube(labels, n_pre=2, n_post=3)


def test_valid_cube_passes(cube):
    assert validate_cube(cube) is cube


def test_missing_band(cube):
    with pytest.raises(
        CubeError, match=r"cube has bands \['vv'\].*needs \['vv', 'vh'\]"
    ):
        validate_cube(cube.drop_vars("vh"))


def test_geographic_crs_is_refused(cube):
    with pytest.raises(CubeError, match="EPSG:4326 is geographic.*reproject"):
        validate_cube(cube.rio.write_crs("EPSG:4326"))


def test_missing_crs(cube):
    with pytest.raises(CubeError, match="no CRS"):
        validate_cube(cube.drop_vars("spatial_ref"))


def test_all_nan_pass_is_named(cube):
    bad = cube.copy(deep=True)
    bad["vv"][1] = np.nan
    with pytest.raises(
        CubeError, match=r"pass\(es\) \['2018-08-24 20:40'\] of 'vv' are all NaN"
    ):
        validate_cube(bad)


def test_decibels_are_refused(cube):
    db = cube.copy(deep=True)
    db["vv"] = 10 * np.log10(db["vv"])
    with pytest.raises(CubeError, match="looks like decibels"):
        validate_cube(db)


def test_labels_required_and_kind(cube):
    with pytest.raises(CubeError, match="no 'landslides' layer"):
        validate_cube(cube.drop_vars("landslides"))
    assert validate_cube(cube.drop_vars("landslides"), require_labels=False) is not None
    odd = cube.copy()
    odd.attrs["label_kind"] = "polygons"
    with pytest.raises(CubeError, match="label_kind"):
        validate_cube(odd)


def test_needs_passes_on_both_sides(cube):
    with pytest.raises(CubeError, match="before and after the event"):
        validate_cube(cube.isel(time=slice(0, 2)))


def test_pre_and_post_times_nearest_first(cube):
    pre = cube_mod.pre_event_times(cube)
    post = cube_mod.post_event_times(cube)
    assert [t.strftime("%m-%d") for t in pre] == ["08-24", "08-12"]
    assert [t.strftime("%m-%d") for t in post] == ["09-17", "09-29", "10-11"]


def test_pass_pair_averages_the_nearest_passes(cube):
    pair = pass_pair(cube, n_pre=2, n_post=2)
    expected_post = cube["vv"].isel(time=[2, 3]).values.mean(axis=0)
    np.testing.assert_allclose(pair["post_vv"].values, expected_post, rtol=1e-6)
    np.testing.assert_allclose(
        pair["pre_vh"].values,
        cube["vh"].isel(time=[0, 1]).values.mean(axis=0),
        rtol=1e-6,
    )
    assert pair.attrs["post_times"][0].startswith("2018-09-17")
    with pytest.raises(CubeError, match="asked for 4 post-event pass"):
        pass_pair(cube, n_post=4)


def test_pass_pair_ignores_nan_in_one_pass(cube):
    c = cube.copy(deep=True)
    c["vv"][2, 0, 0] = np.nan
    pair = pass_pair(c, n_post=2)
    assert pair["post_vv"].values[0, 0] == pytest.approx(float(c["vv"][3, 0, 0]))


def test_save_open_roundtrip(cube, tmp_path):
    path = save_cube(cube, tmp_path / "c.zarr")
    back = open_cube(path)
    assert back.rio.crs == cube.rio.crs
    np.testing.assert_array_equal(back["vv"].values, cube["vv"].values)
    np.testing.assert_array_equal(back["landslides"].values, cube["landslides"].values)
    assert back.attrs["label_kind"] == "mask"


def test_interrupted_save_leaves_previous_store(cube, tmp_path, monkeypatch):
    path = save_cube(cube, tmp_path / "c.zarr")
    before = sorted(os.listdir(tmp_path))

    def boom(self, *args, **kwargs):
        # write part of the store, then die
        os.makedirs(args[0], exist_ok=True)
        (args[0] / "partial").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(type(cube), "to_zarr", boom)
    changed = cube.copy(deep=True)
    changed["vv"] = changed["vv"] * 2
    with pytest.raises(KeyboardInterrupt):
        save_cube(changed, path)
    assert sorted(os.listdir(tmp_path)) == before  # no temp directory left behind
    monkeypatch.undo()
    np.testing.assert_array_equal(open_cube(path)["vv"].values, cube["vv"].values)


def test_open_missing_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="no event cube"):
        open_cube(tmp_path / "nope.zarr")


def test_value_checks_can_be_skipped_for_lazy_cubes(cube):
    bad = cube.copy(deep=True)
    bad["vv"][1] = np.nan
    assert validate_cube(bad, check_values=False) is bad  # schema only, no data read
    with pytest.raises(CubeError, match="all NaN"):
        validate_cube(bad)
