"""The offer to keep the data cache on Google Drive: a no-op off Colab, and on a faked
Colab runtime (``$COLAB_RELEASE_TAG`` and a stand-in ``google.colab.drive`` whose
``mount`` makes the folder Colab would) it mounts once, points the cache there, and
falls back to the runtime's disk when Drive is refused.

References used: the environment and the fake's record of its calls, and
:func:`sarslide.experiment.resolve_data_dir` as every other module of the package
reads it.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import types

import pytest

from sarslide import colab
from sarslide.experiment import DATA_DIR_ENV, resolve_data_dir


@pytest.fixture
def no_colab(monkeypatch, tmp_path):
    """Off Colab, with the data dir unset (the default would be the user cache: point
    the default at tmp_path so nothing is written outside the test)."""
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.delenv(colab.USE_DRIVE_ENV, raising=False)
    monkeypatch.setattr(
        "pooch.os_cache", lambda name: tmp_path / "runtime-cache" / name
    )
    return tmp_path


@pytest.fixture
def fake_colab(no_colab, monkeypatch):
    """A Colab runtime: the release tag, and google.colab.drive.mount that records its
    calls and creates <mount>/MyDrive as Colab does (or raises, when told to refuse)."""
    calls: list[str] = []
    behaviour = {"refuse": False}

    def mount(path, *args, **kwargs):
        calls.append(path)
        if behaviour["refuse"]:
            raise ValueError("mount failed: permission denied by the user")
        (no_colab / "drive" / "MyDrive").mkdir(parents=True, exist_ok=True)

    google = types.ModuleType("google")
    google.__path__ = []
    google_colab = types.ModuleType("google.colab")
    google_colab.__path__ = []
    google_colab.__spec__ = importlib.machinery.ModuleSpec(
        "google.colab", None, is_package=True
    )
    drive = types.ModuleType("google.colab.drive")
    drive.mount = mount
    google.colab, google_colab.drive = google_colab, drive
    for name, module in (
        ("google", google),
        ("google.colab", google_colab),
        ("google.colab.drive", drive),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-test")
    return {"calls": calls, "behaviour": behaviour, "mount": no_colab / "drive"}


def test_off_colab_it_does_nothing_whatever_is_asked(no_colab, capsys):
    assert not colab.on_colab()
    before = resolve_data_dir()
    assert (
        colab.setup_data_dir(use_drive=True, drive_mount=no_colab / "drive") == before
    )
    assert DATA_DIR_ENV not in os.environ
    assert not (no_colab / "drive").exists()
    assert capsys.readouterr().out == ""


def test_the_release_tag_alone_is_not_colab(no_colab, monkeypatch):
    monkeypatch.setenv("COLAB_RELEASE_TAG", "x")  # but no google.colab package
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(colab.importlib.util, "find_spec", lambda name: None)
    assert not colab.on_colab()


def test_on_colab_the_default_only_makes_the_offer(fake_colab, capsys):
    assert colab.on_colab()
    path = colab.setup_data_dir(drive_mount=fake_colab["mount"])
    assert path == resolve_data_dir() and "runtime-cache" in str(path)
    assert fake_colab["calls"] == []
    out = capsys.readouterr().out
    assert "deletes when the runtime resets" in out and "use_drive=True" in out


def test_on_colab_use_drive_mounts_once_and_moves_the_cache(
    fake_colab, monkeypatch, capsys
):
    path = colab.setup_data_dir(use_drive=True, drive_mount=fake_colab["mount"])
    target = fake_colab["mount"] / "MyDrive" / "sarslide-data"
    assert path == target and target.is_dir()
    assert os.environ[DATA_DIR_ENV] == str(target)
    assert resolve_data_dir() == target  # the rest of the package now caches on Drive
    assert fake_colab["calls"] == [str(fake_colab["mount"])]
    assert str(target) in capsys.readouterr().out
    # the first cell run again (or another chapter in the same runtime): no second mount
    assert (
        colab.setup_data_dir(use_drive=True, drive_mount=fake_colab["mount"]) == target
    )
    assert fake_colab["calls"] == [str(fake_colab["mount"])]


def test_on_colab_the_environment_can_answer_the_offer(fake_colab, monkeypatch):
    monkeypatch.setenv(colab.USE_DRIVE_ENV, "1")
    target = fake_colab["mount"] / "MyDrive" / "sarslide-data"
    assert colab.setup_data_dir(drive_mount=fake_colab["mount"]) == target
    assert len(fake_colab["calls"]) == 1


def test_a_refused_mount_keeps_the_runtime_cache(fake_colab, capsys):
    fake_colab["behaviour"]["refuse"] = True
    path = colab.setup_data_dir(use_drive=True, drive_mount=fake_colab["mount"])
    assert path == resolve_data_dir() and "runtime-cache" in str(path)
    assert DATA_DIR_ENV not in os.environ
    out = capsys.readouterr().out
    assert "was not mounted (ValueError: mount failed: permission denied" in out


def test_a_data_dir_already_set_is_kept_on_colab(fake_colab, monkeypatch, tmp_path):
    mine = tmp_path / "mine"
    monkeypatch.setenv(DATA_DIR_ENV, str(mine))
    assert colab.setup_data_dir(use_drive=True, drive_mount=fake_colab["mount"]) == mine
    assert fake_colab["calls"] == []
