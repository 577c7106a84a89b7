"""Careless inputs get clear errors, not raw ones or silently wrong results (issue 14,
items 3, 8 and 9). Each test provokes one fault with the input a user could pass.

References: hand-made cubes and chips (conftest), files written here with
numpy/rasterio, counts by hand.
"""

from __future__ import annotations

import os
import sys
import zipfile

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from conftest import hand_cube

from sarslide.acquire import CorruptFileError, extract_zip
from sarslide.chips import ChipError, assign_splits, balance, make_chips
from sarslide.cube import CubeError, mask_nodata, open_cube, save_cube, validate_cube
from sarslide.inventory import InventoryWarning, rasterize, read_inventory
from sarslide.mapping import write_cog
from sarslide.models import SiameseClassifier
from sarslide.train import TrainConfig, TrainingData, fit
from sarslide.transforms import UnstandardizedInputWarning, compute_stats

torch.set_num_threads(1)


def tiny_chips(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal 8×8 chips (the smallest the reference model takes); every other
    one holds a brightened 3×3 landslide."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4, 8, 8)).astype(np.float32)
    y = np.zeros((n, 8, 8), np.uint8)
    y[::2, 2:5, 2:5] = 1
    x[::2, 2:, 2:5, 2:5] += 2.0
    return x, y


def labelled_cube(n: int = 64, seed: int = 0):
    labels = np.zeros((n, n), np.uint8)
    for r in range(0, n, 8):
        for c in range(0, n, 16):
            labels[r + 2 : r + 4, c + 2 : c + 4] = (
                1  # every other 8×8 chip holds a landslide
            )
    return hand_cube(labels, seed=seed)


# ------------------------------------------------------------------ item 3: no-data
# sentinel


def test_all_sentinel_scene_is_named_no_data_not_decibels():
    cube = labelled_cube(32)
    cube["vv"][:] = -32768.0
    cube["vh"][:] = -32768.0
    with pytest.raises(CubeError, match=r"-32768") as err:
        validate_cube(cube)
    assert "decibel" not in str(err.value) and "mask_nodata" in str(err.value)


def test_sentinel_pixels_are_refused_then_masked_and_their_chips_dropped():
    cube = labelled_cube(32)
    cube["vv"][1, :16, :16] = -32768.0  # the whole top-left chip of the post pass
    with pytest.raises(CubeError, match=r"no-data value"):
        make_chips(cube, 16)  # before: kept, and those pixels became -50 dB
    chips = make_chips(mask_nodata(cube), 16)
    assert list(zip(chips.meta["row"], chips.meta["col"])) == [
        (0, 16),
        (16, 0),
        (16, 16),
    ]


def test_open_cube_masks_a_nodata_attribute(tmp_path):
    cube = labelled_cube(32)
    cube["vh"][0, 0, :5] = -9999.0
    cube["vh"].attrs["nodata"] = -9999.0
    # validate_cube refuses the in-memory cube; a store written by another tool may hold
    # it
    with pytest.raises(CubeError, match=r"-9999"):
        save_cube(cube, tmp_path / "c.zarr")
    raw = tmp_path / "raw.zarr"
    cube.to_zarr(raw, mode="w", consolidated=True, zarr_format=2)
    back = open_cube(raw)
    assert int(np.isnan(back["vh"].values[0, 0]).sum()) == 5
    assert "nodata" not in back["vh"].attrs


# ------------------------------------------------------------------ item 8: raw errors


def test_zero_and_tiny_split_fractions_give_clear_results():
    chips = balance(make_chips(labelled_cube(64), 8))
    out = assign_splits(
        chips, (0.5, 0.5, 0.0, 0.0)
    )  # before: StopIteration, no message
    assert set(out.meta["split"]) == {"stage1_train", "stage2_train"}
    with pytest.raises(ChipError, match="would be empty"):
        assign_splits(chips, (0.5, 0.5 - 1e-7, 1e-7, 0.0))


@pytest.mark.parametrize("size", [16.0, 16.5, "16"])
def test_chip_size_must_be_an_integer(size):
    with pytest.raises(ChipError, match="whole number of pixels"):
        make_chips(labelled_cube(32), size)


def chipset_with_stats():
    chips = assign_splits(
        balance(make_chips(labelled_cube(64), 8)), (0.5, 0.25, 0.125, 0.125)
    )
    return chips.__class__(
        **{**chips.__dict__, "stats": compute_stats(chips.images).to_dict()}
    )


def test_out_of_range_train_indices_are_named(tmp_path):
    chips = chipset_with_stats()
    n = len(chips.split("stage1_train"))
    with pytest.raises(
        ValueError,
        match=rf"\[{n}, 99\] are outside the training split, which holds {n}",
    ):
        fit(
            SiameseClassifier(),
            TrainingData.from_chipset(chips, "stage1_train", train_indices=[0, n, 99]),
            task="stage1",
            config=TrainConfig(max_epochs=1),
            checkpoint_dir=tmp_path,
            progress=False,
        )
    with pytest.raises(ValueError, match="integer positions"):
        fit(
            SiameseClassifier(),
            TrainingData.from_chipset(chips, "stage1_train", train_indices=[0.5]),
            task="stage1",
            config=TrainConfig(max_epochs=1),
            checkpoint_dir=tmp_path,
            progress=False,
        )


def test_a_last_batch_of_one_chip_is_skipped_at_the_smallest_size(tmp_path):
    x, y = tiny_chips(5, seed=0)  # 5 chips, batches of 2: the last batch holds one
    xv, yv = tiny_chips(4, seed=1)
    torch.manual_seed(0)
    result = fit(
        SiameseClassifier(),
        TrainingData(x, y, xv, yv),
        task="stage1",
        config=TrainConfig(max_epochs=2, batch_size=2),
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert result.epochs == 2 and np.isfinite(result.history["train_loss"]).all()
    with pytest.raises(ValueError, match=r"batch of one 8×8 chip.*at least 2 chips"):
        fit(
            SiameseClassifier(),
            TrainingData(x[:1], y[:1], xv, yv),
            task="stage1",
            config=TrainConfig(max_epochs=1, batch_size=2),
            checkpoint_dir=tmp_path / "one",
            progress=False,
        )


def _read_only_dir(tmp_path):
    if sys.platform.startswith("linux") and os.geteuid() == 0:
        return "/proc/self"  # read-only even for root
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_read_only_checkpoint_folder_is_refused_before_training(tmp_path, toy_data):
    x, y, xv, yv = toy_data
    model = SiameseClassifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        PermissionError, match="cannot write checkpoints to .*checkpoint_dir"
    ):
        fit(
            model,
            TrainingData(x, y, xv, yv),
            task="stage1",
            config=TrainConfig(max_epochs=1),
            checkpoint_dir=_read_only_dir(tmp_path),
            progress=False,
        )
    after = model.state_dict()
    assert all(
        torch.equal(before[k], after[k]) for k in before
    )  # not a single step taken


def test_empty_inventories_in_rasterize():
    cube = labelled_cube(32)
    with pytest.raises(ValueError, match="no geometry column"):
        rasterize(gpd.GeoDataFrame(), cube)  # before: AttributeError about the CRS
    with pytest.warns(InventoryWarning, match="holds no features"):
        labels = rasterize(gpd.GeoDataFrame(geometry=[], crs="EPSG:4326"), cube)
    assert int(labels.sum()) == 0


def test_csv_in_projected_metres_is_not_read_as_lon_lat(tmp_path):
    path = tmp_path / "inventory.csv"
    pd.DataFrame({"x": [500_055.0, 500_155.0], "y": [4_699_945.0, 4_699_845.0]}).to_csv(
        path, index=False
    )
    with pytest.raises(
        ValueError, match=r"look like projected coordinates.*crs='EPSG:"
    ):
        read_inventory(
            path
        )  # before: points at 500,000 degrees, silently all-zero labels
    labels = rasterize(path, labelled_cube(32), crs="EPSG:32654")
    assert int(labels.sum()) == 2  # pixels (5, 5) and (15, 15), counted by hand
    assert labels.values[5, 5] == 1 and labels.values[15, 15] == 1


def test_write_cog_of_a_boolean_map(tmp_path):
    cube = labelled_cube(32)
    mask = cube["landslides"] > 0
    path = write_cog(mask, tmp_path / "mask.tif")
    with rasterio.open(path) as src:
        assert src.dtypes[0] == "uint8"
        np.testing.assert_array_equal(src.read(1), mask.values.astype("uint8"))


def test_corrupt_local_zip_is_named(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("cube.zarr/.zgroup", '{"zarr_format": 2}')
    broken = tmp_path / "cube.zip"
    broken.write_bytes(good.read_bytes()[:-30])  # a download cut short
    with pytest.raises(
        CorruptFileError, match=r"cube\.zip is not a readable zip archive.*delete it"
    ):
        extract_zip(broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.zip", "good.zip"]


# ------------------------------------------------------------------ item 9:
# unstandardised chips


def test_unstandardised_training_chips_are_warned_about(tmp_path):
    rng = np.random.default_rng(0)
    x, y = tiny_chips(4)
    linear = (0.2 * rng.gamma(5, 1 / 5, x.shape)).astype("float32")
    xv, yv = tiny_chips(2, seed=1)
    with pytest.warns(
        UnstandardizedInputWarning, match="looks like linear backscatter"
    ):
        fit(
            SiameseClassifier(),
            TrainingData(linear, y, xv, yv),
            task="stage1",
            config=TrainConfig(max_epochs=1),
            checkpoint_dir=tmp_path / "lin",
            progress=False,
        )
    with pytest.warns(UnstandardizedInputWarning, match="looks like decibels"):
        fit(
            SiameseClassifier(),
            TrainingData(10 * np.log10(linear), y, xv, yv),
            task="stage1",
            config=TrainConfig(max_epochs=1),
            checkpoint_dir=tmp_path / "db",
            progress=False,
        )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnstandardizedInputWarning)
        fit(
            SiameseClassifier(),
            TrainingData(x, y, xv, yv),
            task="stage1",
            config=TrainConfig(max_epochs=1),
            checkpoint_dir=tmp_path / "std",
            progress=False,
        )


# ------------------------------------------------------------------ item 10: thread
# count


def test_thread_count_is_recorded_and_a_resume_with_another_count_warns(tmp_path):
    from sarslide.engine.checkpoints import checkpoint_info
    from sarslide.engine.runs import ThreadCountWarning

    x, y = tiny_chips(4)
    xv, yv = tiny_chips(2, seed=1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        result = fit(
            SiameseClassifier(),
            TrainingData(x, y, xv, yv),
            task="stage1",
            config=TrainConfig(max_epochs=1),
            checkpoint_dir=tmp_path,
            progress=False,
        )
        assert checkpoint_info(result.last)["runtime"]["threads"] == 1
        assert checkpoint_info(result.best)["runtime"]["threads"] == 1
        torch.set_num_threads(2)
        torch.manual_seed(0)
        with pytest.warns(
            ThreadCountWarning,
            match=r"written with 1 torch thread.*set_num_threads\(1\)",
        ):
            fit(
                SiameseClassifier(),
                TrainingData(x, y, xv, yv),
                task="stage1",
                config=TrainConfig(max_epochs=2),
                checkpoint_dir=tmp_path,
                progress=False,
            )
    finally:
        torch.set_num_threads(before)
