import os

import numpy as np
import pytest

from sarslide.chips import (
    SPLITS,
    ChipError,
    assign_splits,
    balance,
    make_chips,
    open_chips,
    save_chips,
    split_table,
)


def test_label_counts_per_chip_match_hand_counts(make_hand_cube):
    labels = np.zeros((32, 32), dtype=np.uint8)
    labels[2:5, 3:7] = 1  # 3 x 4 = 12 pixels in the top-left chip
    labels[20, 5] = 1  # 1 pixel in the bottom-left chip
    chips = make_chips(make_hand_cube(labels), 16)
    assert list(chips.meta["row"]) == [0, 0, 16, 16]
    assert list(chips.meta["col"]) == [0, 16, 0, 16]
    assert list(chips.meta["landslide_pixels"]) == [12, 0, 1, 0]
    assert list(chips.meta["has_landslide"]) == [True, False, True, False]
    assert chips.images.shape == (4, 4, 16, 16) and chips.images.dtype == np.float32
    assert chips.labels.shape == (4, 16, 16)
    assert int(chips.labels[0].sum()) == 12


def test_point_counts_per_chip(make_hand_cube):
    labels = np.zeros((32, 32), dtype=np.uint16)
    labels[1, 1] = 3  # three landslide centroids fall in one pixel
    labels[30, 30] = 1
    chips = make_chips(make_hand_cube(labels, kind="points"), 16)
    assert list(chips.meta["landslide_points"]) == [3, 0, 0, 1]
    assert list(chips.meta["landslide_pixels"]) == [1, 0, 0, 1]


def test_chip_bounds_are_the_pixel_window(make_hand_cube):
    cube = make_hand_cube(np.zeros((32, 32), dtype=np.uint8))
    chips = make_chips(cube, 16)
    first = chips.meta.iloc[1]  # row 0, col 16
    # Cube: x pixel edges start at 500000, y top edge at 4,700,000, 10 m pixels.
    assert (first.xmin, first.xmax) == (500_160.0, 500_320.0)
    assert (first.ymin, first.ymax) == (4_699_840.0, 4_700_000.0)


def test_channels_are_pre_then_post(make_hand_cube):
    cube = make_hand_cube(np.zeros((16, 16), dtype=np.uint8))
    chips = make_chips(cube, 16)
    np.testing.assert_array_equal(chips.images[0, 0], cube["vv"].isel(time=0).values)
    np.testing.assert_array_equal(chips.images[0, 3], cube["vh"].isel(time=1).values)


def test_nodata_chips_are_dropped(make_hand_cube):
    cube = make_hand_cube(np.zeros((32, 32), dtype=np.uint8))
    cube["vh"][1, :16, :8] = np.nan  # half of the top-left chip lacks post-event VH
    cube["vv"][0, 16, 16] = np.nan  # one pixel of the bottom-right chip
    chips = make_chips(cube, 16, max_nodata_fraction=0.1)
    assert list(chips.meta["chip_id"].str[-13:]) == [
        "r00000-c00016",
        "r00016-c00000",
        "r00016-c00016",
    ]
    assert chips.meta["nodata_fraction"].iloc[-1] == pytest.approx(1 / 256)


def test_chip_size_larger_than_cube(make_hand_cube):
    with pytest.raises(
        ChipError, match=r"chip size 64 is larger than the cube \(32×48 px\)"
    ):
        make_chips(make_hand_cube(np.zeros((32, 48), dtype=np.uint8)), 64)


def _many_chips(make_hand_cube, n_side=20, n_positive=120, size=8):
    labels = np.zeros((n_side * size, n_side * size), dtype=np.uint8)
    cells = np.random.default_rng(0).choice(n_side * n_side, n_positive, replace=False)
    for cell in cells:
        r, c = divmod(int(cell), n_side)
        labels[r * size + 2, c * size + 3] = 1
    return make_chips(make_hand_cube(labels), size)


def test_balance_and_splits_follow_the_fractions(make_hand_cube):
    chips = _many_chips(make_hand_cube)
    assert len(chips) == 400 and chips.has_landslide.sum() == 120
    balanced = balance(chips, seed=1)
    assert len(balanced) == 240 and balanced.has_landslide.sum() == 120
    split = assign_splits(balanced, seed=1)
    table = split_table(split)
    # 120 chips per class x (0.5, 0.25, 0.125, 0.125)
    assert list(table.loc[list(SPLITS), "landslide"]) == [60, 30, 15, 15]
    assert list(table.loc[list(SPLITS), "landslide_free"]) == [60, 30, 15, 15]
    assert table.loc["total", "total"] == 240
    assert list(table.loc[list(SPLITS), "share"]) == [0.5, 0.25, 0.125, 0.125]
    # Every chip in exactly one split; splits disjoint by id.
    ids = [set(split.split(s).meta["chip_id"]) for s in SPLITS]
    assert sum(map(len, ids)) == 240 and len(set.union(*ids)) == 240


def test_balance_and_split_are_seeded(make_hand_cube):
    chips = _many_chips(make_hand_cube)
    a = assign_splits(balance(chips, seed=5), seed=5).meta
    b = assign_splits(balance(chips, seed=5), seed=5).meta
    c = assign_splits(balance(chips, seed=6), seed=6).meta
    assert a.equals(b)
    assert not a["chip_id"].equals(c["chip_id"]) or not a["split"].equals(c["split"])


def test_too_few_landslide_chips(make_hand_cube):
    empty = make_chips(make_hand_cube(np.zeros((32, 32), dtype=np.uint8)), 16)
    with pytest.raises(ChipError, match="0 landslide and 4 landslide-free"):
        balance(empty)
    # With shares 1/2, 1/4, 1/8, 1/8, four chips per class leave one split empty; five
    # do not.
    few = balance(_many_chips(make_hand_cube, n_positive=4), seed=0)
    with pytest.raises(
        ChipError, match="too few landslide chips to split: 4.*at least 5"
    ):
        assign_splits(few)
    five = assign_splits(balance(_many_chips(make_hand_cube, n_positive=5), seed=0))
    assert list(split_table(five).loc[list(SPLITS), "landslide"]) == [2, 1, 1, 1]


def test_split_before_assignment_is_an_error(make_hand_cube):
    chips = _many_chips(make_hand_cube)
    with pytest.raises(ChipError, match="assign_splits"):
        chips.split("test")
    with pytest.raises(ChipError, match="unknown split 'train'"):
        assign_splits(balance(chips)).split("train")


def test_store_roundtrip(make_hand_cube, tmp_path):
    chips = assign_splits(balance(_many_chips(make_hand_cube)))
    chips.stats = {"mean": {"vv": -0.7, "vh": -1.3}, "std": {"vv": 0.2, "vh": 0.2}}
    path = save_chips(chips, tmp_path / "store")
    back = open_chips(path)
    np.testing.assert_array_equal(back.images, chips.images)
    np.testing.assert_array_equal(back.labels, chips.labels)
    assert back.meta.equals(chips.meta)
    assert back.stats == chips.stats and back.attrs == chips.attrs


def test_interrupted_store_write_leaves_nothing(make_hand_cube, tmp_path, monkeypatch):
    chips = _many_chips(make_hand_cube)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("pandas.DataFrame.to_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        save_chips(chips, tmp_path / "store")
    assert os.listdir(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="not a complete chip store"):
        open_chips(tmp_path / "store")
