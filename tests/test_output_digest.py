"""``tools/output_digest.py``: equal outputs give equal digests, wall-clock fields are
ignored, and one changed bit of a tensor, an array or a table value is reported.

Reference: the files are written twice by hand here, once identically and once with a
single change; the digest must see exactly the changes made."""

import json

import numpy as np
import pandas as pd
import torch
from conftest import load_tool

digest = load_tool("output_digest")


def _write_run(folder, *, weight=1.0, seconds=1.0, aprc=0.5, proba_bump=0.0):
    folder.mkdir(parents=True)
    state = {"w": torch.full((2, 3), weight, dtype=torch.bfloat16), "b": torch.zeros(3)}
    torch.save(
        {"state_dict": state, "epoch": 3, "history": [{"seconds": seconds}]},
        folder / "top-epoch0003.pt",
    )
    (folder / "health.json").write_text(
        json.dumps(
            {"status": "trained", "history": [{"val_aprc": aprc, "seconds": seconds}]}
        )
    )
    np.save(
        folder / "test_proba.npy",
        np.linspace(0, 1, 12, dtype="float32") + np.float32(proba_bump),
    )
    pd.DataFrame(
        {"metric": ["aprc"], "value": [aprc], "seconds": [seconds]}
    ).to_parquet(folder / "rows.parquet")
    (folder / ".results.lock").write_text(str(seconds))


def test_equal_runs_match_even_when_their_timings_differ(tmp_path):
    _write_run(tmp_path / "a" / "run", seconds=1.0)
    _write_run(tmp_path / "b" / "run", seconds=7.5)
    a = digest.folder_digests(tmp_path / "a")
    b = digest.folder_digests(tmp_path / "b")
    assert sorted(a) == [
        "run/health.json",
        "run/rows.parquet",
        "run/test_proba.npy",
        "run/top-epoch0003.pt",
    ]  # the lock file carries no result
    assert digest.compare(a, b) == ([], [], [], 4)


def test_one_changed_value_is_reported_by_file(tmp_path):
    _write_run(tmp_path / "a" / "run")
    _write_run(tmp_path / "b" / "run", weight=1.0078125)  # the next bfloat16 above 1
    _write_run(tmp_path / "c" / "run", aprc=0.5000001)
    _write_run(tmp_path / "d" / "run", proba_bump=1e-7)
    a = digest.folder_digests(tmp_path / "a")
    assert digest.compare(digest.folder_digests(tmp_path / "b"), a)[0] == [
        "run/top-epoch0003.pt"
    ]
    assert digest.compare(digest.folder_digests(tmp_path / "c"), a)[0] == [
        "run/health.json",
        "run/rows.parquet",
    ]
    assert digest.compare(digest.folder_digests(tmp_path / "d"), a)[0] == [
        "run/test_proba.npy"
    ]


def test_the_command_line_writes_digests_and_fails_on_a_missing_file(tmp_path, capsys):
    _write_run(tmp_path / "a" / "run")
    _write_run(tmp_path / "b" / "run")
    (tmp_path / "b" / "run" / "test_proba.npy").unlink()
    out = tmp_path / "a.json"
    assert digest.main([str(tmp_path / "a"), "--out", str(out)]) == 0
    assert digest.main([str(tmp_path / "a"), "--against", str(out)]) == 0
    assert digest.main([str(tmp_path / "b"), "--against", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "only in the other tree: run/test_proba.npy" in printed
    assert "3 files equal, 0 differ, 1 only in the other tree" in printed
