import os

import pytest

from sarslide.engine.atomic import STORE_MARKER, atomic_directory, atomic_file


def test_atomic_file_replaces_only_when_complete(tmp_path):
    target = tmp_path / "table.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["table.txt"]
    with atomic_file(target, suffix=".tif") as tmp:
        assert tmp.name.endswith(".tif") and tmp.parent == tmp_path
        tmp.write_text("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["table.txt"]


def test_atomic_directory_swaps_in_a_complete_directory(tmp_path):
    target = tmp_path / "store"
    with atomic_directory(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target) as tmp:
            tmp.mkdir()
            (tmp / "a").write_text("2")
            raise KeyboardInterrupt
    assert (target / "a").read_text() == "1" and os.listdir(tmp_path) == ["store"]
    with atomic_directory(target) as tmp:
        tmp.mkdir()
        (tmp / "b").write_text("3")
    assert sorted(os.listdir(target)) == [STORE_MARKER, "b"] and os.listdir(
        tmp_path
    ) == ["store"]
