import numpy as np

from sarslide import datasets
from sarslide.chips import SPLITS
from sarslide.experiment import Experiment
from sarslide.profiles import get_profile
from sarslide.transforms import compute_stats

SMALL = get_profile("demo").with_overrides(
    name="small", synthetic_shape=(256, 256), chip_size=32, split_scheme="text"
)


def test_prepare_event_builds_once_and_caches(tmp_path):
    chips = datasets.prepare_event(Experiment.create("hokkaido", SMALL, tmp_path))
    stores = list((tmp_path / "chips").iterdir())
    assert len(stores) == 1
    mtime = stores[0].stat().st_mtime_ns
    again = datasets.prepare_event(Experiment.create("hokkaido", SMALL, tmp_path))
    assert stores[0].stat().st_mtime_ns == mtime  # not rebuilt
    np.testing.assert_array_equal(again.images, chips.images)
    assert again.meta.equals(chips.meta)


def test_prepared_chips_are_balanced_split_and_use_training_stats(tmp_path):
    chips = datasets.prepare_event(Experiment.create("hokkaido", SMALL, tmp_path))
    assert chips.has_landslide.mean() == 0.5
    for split in SPLITS:
        part = chips.split(split)
        assert part.has_landslide.sum() * 2 == len(part)
    expected = compute_stats(chips.split("stage1_train").images)
    assert chips.stats == expected.to_dict()
    assert chips.stats != compute_stats(chips.images).to_dict()


def test_a_changed_profile_builds_a_new_store(tmp_path):
    datasets.prepare_event(Experiment.create("kaikoura", SMALL, tmp_path))
    other = SMALL.with_overrides(chip_size=16)
    chips = datasets.prepare_event(Experiment.create("kaikoura", other, tmp_path))
    assert chips.images.shape[-1] == 16 and chips.attrs["label_kind"] == "points"
    assert len(list((tmp_path / "chips").iterdir())) == 2
