"""Never delete what the user did not give us; survive SIGKILL leftovers and corrupt
caches; warn about lazy handles to stores that were replaced.

Every case works on real files in ``tmp_path``; the kills are real ``SIGKILL``s of child
Python processes at the moment named in each test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import hand_cube

from sarslide import datasets
from sarslide.chips import CorruptChipStoreError, make_chips, open_chips, save_chips
from sarslide.cube import CubeError, open_cube, save_cube
from sarslide.engine.atomic import (
    STORE_MARKER,
    ForeignPathError,
    atomic_directory,
    recover_directory,
)
from sarslide.engine.checkpoints import CheckpointError, save_checkpoint
from sarslide.engine.stores import StaleHandleWarning
from sarslide.experiment import Experiment
from sarslide.models import SiameseClassifier
from sarslide.profiles import get_profile

REPO = Path(__file__).resolve().parents[1]


def small_chips():
    labels = np.zeros((32, 32), np.uint8)
    labels[2:6, 2:6] = 1
    return make_chips(hand_cube(labels), 16)


def run_child(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (it is expected to SIGKILL itself)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- data loss ---


def test_save_chips_into_a_users_folder_deletes_nothing(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "thesis.tex").write_text("two years of work")
    (folder / "figures").mkdir()
    with pytest.raises(
        ForeignPathError, match=r"out already exists and was not written by sarslide"
    ) as err:
        save_chips(small_chips(), folder)
    assert "thesis.tex" in str(err.value) and "figures/" in str(err.value)
    assert (folder / "thesis.tex").read_text() == "two years of work"
    assert sorted(p.name for p in folder.iterdir()) == ["figures", "thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out"
    ]  # no temporaries either


def test_save_cube_into_data_keeps_the_users_files(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "field_notes.csv").write_text("x,y\n1,2\n")
    cube = hand_cube(np.zeros((32, 32), np.uint8))
    with pytest.raises(ForeignPathError, match="field_notes.csv"):
        save_cube(cube, data)
    assert (data / "field_notes.csv").read_text() == "x,y\n1,2\n"
    # a plain file at the path is not replaced either
    (tmp_path / "cube.zarr").write_text("not a store")
    with pytest.raises(ForeignPathError, match="a file"):
        save_cube(cube, tmp_path / "cube.zarr")
    assert (tmp_path / "cube.zarr").read_text() == "not a store"


def test_package_stores_and_empty_folders_are_still_replaced(tmp_path):
    chips = small_chips()
    (tmp_path / "empty").mkdir()
    save_chips(chips, tmp_path / "empty")  # an empty folder holds nothing to lose
    assert (tmp_path / "empty" / STORE_MARKER).is_file()
    save_chips(chips.subset([0, 1]), tmp_path / "empty")  # our own store: replaced
    assert len(open_chips(tmp_path / "empty")) == 2
    # the same files without the marker are someone else's: left untouched
    (tmp_path / "empty" / STORE_MARKER).unlink()
    with pytest.raises(ForeignPathError, match="not written by sarslide"):
        save_chips(chips, tmp_path / "empty")
    assert len(open_chips(tmp_path / "empty")) == 2


# --- SIGKILL leftovers ---


def test_killed_checkpoint_write_leaves_a_temp_file_that_the_next_write_removes(
    tmp_path,
):
    target = tmp_path / "last.pt"
    child = run_child(f"""
        import os, signal
        from sarslide.engine.atomic import atomic_file
        with atomic_file({str(target)!r}) as tmp:
            tmp.write_bytes(b"half a checkpoint")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert child.returncode == -signal.SIGKILL, child.stderr
    left = hidden(tmp_path)
    assert len(left) == 1 and left[0].startswith(".last.pt.tmp-")
    save_checkpoint(SiameseClassifier(), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_killed_store_write_leaves_a_temp_folder_that_the_next_open_removes(tmp_path):
    store = tmp_path / "store"
    save_chips(small_chips(), store)
    child = run_child(f"""
        import os, signal
        from sarslide.engine.atomic import atomic_directory
        with atomic_directory({str(store)!r}) as tmp:
            tmp.mkdir()
            (tmp / "images.npy").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert [n[:11] for n in hidden(tmp_path)] == [".store.tmp-"]
    assert len(open_chips(store)) == 4
    assert hidden(tmp_path) == []


def test_kill_between_the_two_renames_is_recovered_on_open(tmp_path):
    store = tmp_path / "store"
    chips = small_chips()
    save_chips(chips, store)
    # the child replaces the store and is killed right after moving the old one aside
    child = run_child(f"""
        import os, signal
        import numpy as np
        from sarslide.chips import open_chips, save_chips
        real = os.replace
        def replace(src, dst):
            real(src, dst)
            if ".store.old-" in str(dst):
                os.kill(os.getpid(), signal.SIGKILL)
        os.replace = replace
        chips = open_chips({str(store)!r})
        save_chips(chips.subset([0]), {str(store)!r})
    """)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert not store.exists()  # nothing at the path: the old copy is hidden
    assert sorted(n[:11] for n in hidden(tmp_path)) == [".store.old-", ".store.tmp-"]
    back = open_chips(store)  # recovered: the old store is moved back
    np.testing.assert_array_equal(back.images, chips.images)
    assert hidden(tmp_path) == []


def test_recover_directory_leaves_live_writers_alone(tmp_path):
    store = tmp_path / "store"
    with atomic_directory(store) as tmp:
        tmp.mkdir()
        recover_directory(store)  # our own, running write
        assert tmp.is_dir()
    assert store.is_dir()


# --- corrupt caches ---


def test_truncated_arrays_and_broken_info_name_the_corrupt_file(tmp_path):
    store = save_chips(small_chips(), tmp_path / "store")
    images = (store / "images.npy").read_bytes()
    (store / "images.npy").write_bytes(images[: len(images) // 2])
    for mmap in (False, True):
        with pytest.raises(CorruptChipStoreError, match=r"images\.npy is corrupt"):
            open_chips(store, mmap=mmap)
    (store / "images.npy").write_bytes(images)
    (store / "info.json").write_text('{"attrs": {"event": "hok')
    with pytest.raises(
        CorruptChipStoreError, match=r"info\.json is corrupt.*rebuild=True"
    ):
        open_chips(store)
    (store / "info.json").write_text(json.dumps({"stats": None}))
    with pytest.raises(CorruptChipStoreError, match=r"info\.json is corrupt"):
        open_chips(store)


SMALL = get_profile("demo").with_overrides(
    name="harden", synthetic_shape=(256, 256), chip_size=16, split_scheme="text"
)


def test_prepare_event_rebuilds_a_corrupt_cache(tmp_path):
    chips = datasets.prepare_event(Experiment.create("hokkaido", SMALL, tmp_path))
    (store,) = (tmp_path / "chips").iterdir()
    (store / "images.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.warns(datasets.CacheRebuiltWarning, match="images.npy is corrupt"):
        again = datasets.prepare_event(Experiment.create("hokkaido", SMALL, tmp_path))
    np.testing.assert_array_equal(again.images, chips.images)
    (cube_store,) = (tmp_path / "cubes").iterdir()
    (cube_store / ".zmetadata").write_text("{broken")
    with pytest.warns(datasets.CacheRebuiltWarning, match=r"\.zarr is corrupt"):
        cube = datasets.prepare_cube(Experiment.create("hokkaido", SMALL, tmp_path))
    assert cube.sizes["y"] == 256
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        datasets.prepare_event(
            Experiment.create("hokkaido", SMALL, tmp_path)
        )  # intact now


def test_corrupt_cube_store_is_named(tmp_path):
    path = save_cube(hand_cube(np.zeros((16, 16), np.uint8)), tmp_path / "c.zarr")
    (path / ".zmetadata").write_text("{broken")
    with pytest.raises(CubeError, match=r"c\.zarr is corrupt or incomplete"):
        open_cube(path)


@pytest.mark.parametrize("content", ["garbage", "truncated", "foreign pickle"])
def test_garbage_last_pt_is_named_corrupt_without_unsafe_advice(
    tmp_path, content, toy_data
):
    from sarslide.train import TrainConfig, TrainingData, fit

    last = tmp_path / "last.pt"
    if content == "garbage":
        last.write_bytes(os.urandom(256))
    elif content == "truncated":
        torch.save({"x": torch.zeros(1000)}, last)
        last.write_bytes(last.read_bytes()[:500])
    else:
        import pickle

        last.write_bytes(pickle.dumps(np.random.default_rng(0)))  # not loadable safely
    x, y, xv, yv = toy_data
    with pytest.raises(CheckpointError) as err:
        fit(
            SiameseClassifier(),
            TrainingData(x, y, xv, yv),
            task="stage1",
            config=TrainConfig(max_epochs=1),
            checkpoint_dir=tmp_path,
            progress=False,
        )
    text = str(err.value)
    assert str(last) in text and "corrupt" in text and "resume=False" in text
    assert "weights_only" not in text and "weights_only" not in repr(
        err.value.__cause__ or ""
    )


# --- lazy handles ---


def test_saving_over_the_store_a_lazy_cube_reads_is_refused(tmp_path):
    path = save_cube(hand_cube(np.zeros((16, 16), np.uint8)), tmp_path / "c.zarr")
    lazy = open_cube(path)
    with pytest.raises(CubeError, match=r"read lazily from .*c\.zarr.*cube\.load\(\)"):
        save_cube(lazy.isel(x=slice(0, 8)), path)
    assert open_cube(path).sizes["x"] == 16  # untouched
    save_cube(lazy.load(), path)  # in memory: fine


def test_other_live_handles_are_warned_about(tmp_path):
    path = save_cube(hand_cube(np.zeros((16, 16), np.uint8)), tmp_path / "c.zarr")
    old = open_cube(path)
    with pytest.warns(StaleHandleWarning, match=r"1 cube\(s\) opened lazily"):
        save_cube(hand_cube(np.zeros((16, 16), np.uint8), value=0.5), path)
    del old


def test_fit_removes_half_written_checkpoints_of_a_killed_run(tmp_path, toy_data):
    from sarslide.train import TrainConfig, TrainingData, fit

    run = tmp_path / "run"
    child = run_child(f"""
        import os, signal
        from sarslide.engine.atomic import atomic_file
        with atomic_file({str(run / "top-epoch0003.pt")!r}) as tmp:
            tmp.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert [n[:22] for n in hidden(run)] == [".top-epoch0003.pt.tmp-"]
    x, y, xv, yv = toy_data
    fit(
        SiameseClassifier(),
        TrainingData(x, y, xv, yv),
        task="stage1",
        config=TrainConfig(max_epochs=1),
        checkpoint_dir=run,
        progress=False,
    )
    assert hidden(run) == []
