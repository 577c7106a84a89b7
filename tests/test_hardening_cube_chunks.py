"""A truncated zarr chunk in the cached cube: the synthetic cube is rebuilt with a word,
and the chips equal those of an undamaged cache."""

from __future__ import annotations

import numpy as np
import pytest

from sarslide.datasets import CacheRebuiltWarning, prepare_cube, prepare_event
from sarslide.experiment import Experiment
from sarslide.profiles import get_profile

TINY = get_profile("demo").with_overrides(
    name="tiny-chunks", synthetic_shape=(256, 256), chip_size=32
)


def _chunk_files(cache):
    return sorted(
        p
        for p in (cache / "cubes").glob("*.zarr/vv/**/*")
        if p.is_file() and not p.name.startswith(".") and p.stat().st_size > 100
    )


@pytest.mark.parametrize(
    "which", [0, -1]
)  # read by the cube's check, or by the chipping
def test_a_truncated_cube_chunk_is_rebuilt_with_a_warning(tmp_path, which):
    clean = prepare_event(Experiment.create("hokkaido", TINY, tmp_path / "clean"))
    damaged = tmp_path / "damaged"
    prepare_cube(Experiment.create("hokkaido", TINY, damaged))
    chunk = _chunk_files(damaged)[which]
    with open(chunk, "r+b") as f:  # half a compressed chunk: blosc cannot decode it
        f.truncate(chunk.stat().st_size // 2)
    with pytest.warns(
        CacheRebuiltWarning, match=r"rebuilding the cached cube.*could not be decoded"
    ):
        chips = prepare_event(Experiment.create("hokkaido", TINY, damaged))
    np.testing.assert_array_equal(chips.images, clean.images)
    np.testing.assert_array_equal(chips.labels, clean.labels)
    assert list(chips.meta["split"]) == list(clean.meta["split"])
