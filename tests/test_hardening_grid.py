"""The ablation grid under careless or unlucky use (issue 22 items 1, 2, 4, 6, 7; issue
20 item 5): two processes on one results folder, a dask scheduler that never answers,
broken results files, a time budget that stops between runs, partial grids that merge,
bad command-line folders, and a finished grid in a read-only folder.

The grid runs on a tiny profile (256×256 px synthetic scene, 32 px chips, one or two
epochs), one torch thread. "Two real processes" are two ``sarslide grid`` subprocesses
started together. Read-only folders are read-only bind mounts (``mount --bind`` then
``-o remount,ro``): the tests run as root, and root ignores file modes; where mounting
is not allowed those tests are skipped and say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_cli import assert_one_line_error, run_cli
from test_hardening_network import SilentServer, closed_port, run_bounded

from sarslide import ablation
from sarslide.ablation import Run
from sarslide.acquire import NetworkUnavailableError
from sarslide.cli import apply_overrides
from sarslide.datasets import prepare_event
from sarslide.engine import dispatch
from sarslide.engine.grid_plan import TimeBudget, estimate_run_seconds
from sarslide.engine.results_table import CorruptResultsWarning, read_results, run_file
from sarslide.experiment import Experiment
from sarslide.pretrained import pretrained_stage1
from sarslide.profiles import get_profile

TINY = get_profile("demo").with_overrides(
    name="tiny-grid",
    synthetic_shape=(256, 256),
    chip_size=32,
    stage1_max_epochs=1,
    stage2_max_epochs=1,
    patience=5,
    top_k=1,
    batch_size=8,
    train_sizes=(2, None),
    seeds=(0,),
    seeds_smallest=(0, 1),
    split_scheme="text",
    few_shot_draw="balanced",
)
CLI_TINY = [
    "--profile",
    "demo",
    "--set",
    "synthetic_shape=256,256",
    "--set",
    "chip_size=32",
    "--set",
    "stage1_max_epochs=1",
    "--set",
    "stage2_max_epochs=1",
    "--set",
    "top_k=1",
    "--set",
    "train_sizes=2",
    "--set",
    "seeds=0",
    "--set",
    "seeds_smallest=0,1",
]
CLI_PROFILE = apply_overrides(get_profile("demo"), CLI_TINY[3::2])


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A data cache holding the tiny profile's chips (built once)."""
    path = tmp_path_factory.mktemp("grid-cache")
    prepare_event(Experiment.create("hokkaido", TINY, path))
    return path


def tiny(cache, profile=TINY) -> Experiment:
    """The experiment of ``profile`` on Hokkaido in the data folder ``cache``."""
    return Experiment.create("hokkaido", profile, cache)


def learned(table: pd.DataFrame) -> pd.DataFrame:
    rows = table[table["arm"].isin(ablation.ARMS)]
    return rows.sort_values(["run_id", "checkpoint", "metric"]).reset_index(drop=True)


@contextmanager
def read_only_view(folder: Path, view: Path):
    """``folder`` mounted read-only at ``view`` (skips the test where mounts are
    refused)."""
    view.mkdir(parents=True, exist_ok=True)
    bind = subprocess.run(
        ["mount", "--bind", str(folder), str(view)], capture_output=True, text=True
    )
    if bind.returncode != 0:
        pytest.skip(
            f"read-only bind mounts are not allowed here ({bind.stderr.strip()})"
        )
    try:
        ro = subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(view)],
            capture_output=True,
            text=True,
        )
        if ro.returncode != 0:
            pytest.skip(f"cannot remount read-only ({ro.stderr.strip()})")
        probe = view / ".probe"
        with pytest.raises(OSError):
            probe.write_text("x")  # really read-only, even for root
        yield view
    finally:
        subprocess.run(["umount", "--lazy", str(view)], capture_output=True)


# ----------------------------------------------------------------- item 1: two
# processes
def test_two_grid_processes_on_one_folder_keep_every_row(tmp_path):
    """`grid --arms none` and `grid --arms hokkaido` at once on one --out: every row of
    both."""
    data = tmp_path / "data"
    exp = Experiment.create("hokkaido", CLI_PROFILE, data)
    prepare_event(exp)
    pretrained_stage1(exp, progress=False)  # the hokkaido arm's stage 1, shared
    out = tmp_path / "shared-results"
    env = dict(
        os.environ, SARSLIDE_DATA_DIR=str(data), OMP_NUM_THREADS="1", TQDM_DISABLE="1"
    )
    env.pop("SARSLIDE_PROFILE", None)
    cmd = [
        sys.executable,
        "-m",
        "sarslide.cli",
        "grid",
        *CLI_TINY,
        "--out",
        str(out),
        "--threads",
        "1",
    ]
    procs = [
        subprocess.Popen(
            [*cmd, "--arms", arm],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for arm in ("none", "hokkaido")
    ]
    outputs = [p.communicate(timeout=900) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stdout + stderr
    expected = {
        f"{arm}-n002-s{seed}" for arm in ("none", "hokkaido") for seed in (0, 1)
    }
    table = pd.read_parquet(out / "results.parquet")
    assert set(table["run_id"]) == expected | {"log_ratio", "random"}
    # each run's rows once: 1 checkpoint x every metric
    counts = table[table["arm"].isin(ablation.ARMS)].groupby("run_id").size()
    assert (counts == len(ablation.METRICS)).all(), counts


# ----------------------------------------------------------------- item 2: scheduler
def test_a_scheduler_that_never_answers_or_refuses_fails_within_the_timeout(
    monkeypatch,
):
    monkeypatch.setenv("SARSLIDE_NETWORK_TIMEOUT", "1")
    with SilentServer() as server:
        err, seconds = run_bounded(
            lambda: dispatch.connect(f"tcp://127.0.0.1:{server.port}")
        )
        assert server.accepted  # it did connect: the handshake is what never came
    assert isinstance(err, NetworkUnavailableError), repr(err)
    assert f"tcp://127.0.0.1:{server.port}" in str(err) and "timeout 1 s" in str(err)
    assert seconds < 15
    port = closed_port()
    err, seconds = run_bounded(lambda: dispatch.connect(f"tcp://127.0.0.1:{port}"))
    assert isinstance(err, NetworkUnavailableError) and f":{port}" in str(err)
    assert seconds < 15


def test_a_real_scheduler_still_connects():
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        client = dispatch.connect(cluster.scheduler_address)
        try:
            assert client.scheduler_info()["address"] == cluster.scheduler_address
        finally:
            client.close()


def test_cli_grid_with_a_refused_scheduler_gives_one_line(cache):
    port = closed_port()
    proc = run_cli(
        "grid",
        *CLI_TINY,
        "--arms",
        "none",
        "--out",
        str(cache / "sched"),
        "--scheduler",
        f"tcp://127.0.0.1:{port}",
        data_dir=cache,
        env_extra={"SARSLIDE_NETWORK_TIMEOUT": "1"},
        timeout=600,
    )
    assert_one_line_error(proc, f"tcp://127.0.0.1:{port}", "--scheduler serial")


# ----------------------------------------------------------------- issue 20 item 5
def test_a_time_budgeted_grid_stops_between_runs_and_a_second_call_finishes_it(
    cache, tmp_path, capsys
):
    exp = tiny(cache)
    runs = ablation.experiment_grid(TINY, arms=("none",))  # 3 runs
    whole = ablation.train_grid(exp, runs, out_dir=tmp_path / "whole", progress=False)
    out = tmp_path / "budget"
    plan = ablation.grid_plan(exp, runs, out_dir=out)
    assert len(plan.missing) == 3 and plan.estimate_s is None  # nothing measured yet
    first = ablation.train_grid(exp, runs, out_dir=out, max_minutes=1e-6, progress=True)
    said = capsys.readouterr().out
    assert "3 of 3 runs missing" in said and "no estimate yet" in said
    # the first run always starts (progress); the budget is spent, so it stops after it
    assert set(first[first["arm"] == "none"]["run_id"]) == {runs[0].run_id}
    assert first.attrs["left_for_later"] == [r.run_id for r in runs[1:]]
    assert not (out / runs[1].run_id).exists()  # nothing of the next run was started
    plan = ablation.grid_plan(exp, runs, out_dir=out)
    assert [r.run_id for r in plan.missing] == [r.run_id for r in runs[1:]]
    assert (
        plan.estimate_s is not None
        and plan.estimate_s > 0
        and "2 of 3 runs missing; about" in plan.describe()
    )
    second = ablation.train_grid(exp, runs, out_dir=out, progress=False)
    assert second.attrs["left_for_later"] == []
    pd.testing.assert_frame_equal(learned(second), learned(whole))


def test_the_estimate_follows_the_measured_per_epoch_costs():
    # seconds per epoch = 1 + 0.5 n on this device (two sizes), 4 epochs, 2 s overhead
    timings = [
        {
            "arm": "none",
            "n_train": 2,
            "seconds_per_epoch": 2.0,
            "epochs": 4,
            "overhead_seconds": 2.0,
        },
        {
            "arm": "none",
            "n_train": 10,
            "seconds_per_epoch": 6.0,
            "epochs": 4,
            "overhead_seconds": 2.0,
        },
    ]
    assert estimate_run_seconds(timings, "none", 20, max_epochs=50) == pytest.approx(
        (1 + 0.5 * 20) * 4 + 2
    )
    assert estimate_run_seconds([], "none", 20, max_epochs=50) is None
    clock = iter([0.0, 10.0, 50.0, 70.0]).__next__
    budget = TimeBudget(1.0, clock=clock)  # 60 s; started at t=0
    assert budget.allows(None)  # the first run always starts (t=10)
    assert not budget.allows(20.0)  # t=50: 50 + 20 > 60
    with pytest.raises(ValueError, match="max_minutes=0"):
        TimeBudget(0)


def test_partial_grids_over_sizes_and_seeds_merge_into_one_table(cache, tmp_path):
    whole = tiny(cache)
    small = whole.with_overrides(train_sizes=(2,), seeds_smallest=(0,))
    other = whole.with_overrides(train_sizes=(2, None), seeds=(0,), seeds_smallest=(1,))
    assert ablation.results_dir(small) == ablation.results_dir(whole)
    assert ablation.results_dir(whole.with_overrides(top_k=2)) != ablation.results_dir(
        whole
    )
    out = tmp_path / "partial"
    ablation.train_grid(
        small,
        ablation.experiment_grid(small.profile, arms=("none",)),
        out_dir=out,
        progress=False,
    )
    table = ablation.train_grid(
        other,
        ablation.experiment_grid(other.profile, arms=("none",)),
        out_dir=out,
        progress=False,
    )
    assert set(table["run_id"]) == {
        "none-n002-s0",
        "none-n002-s1",
        "none-nall-s0",
        "log_ratio",
        "random",
    }
    # and a full grid call reuses all three
    again = ablation.train_grid(
        whole,
        ablation.experiment_grid(TINY, arms=("none",)),
        out_dir=out,
        progress=False,
    )
    assert again.attrs["reused_runs"] == [
        "none-n002-s0",
        "none-n002-s1",
        "none-nall-s0",
    ]


def test_a_settings_record_of_another_format_is_refused(cache, tmp_path):
    """settings.json without this version's format (an unreleased layout keyed on every
    setting, sizes and seeds included) is refused, naming the settings that changed."""
    from dataclasses import asdict

    from sarslide.datasets import store_key

    out = tmp_path / "old"
    out.mkdir()
    old_key = store_key("hokkaido", TINY, TINY.data_seed)  # every setting
    (out / "settings.json").write_text(
        json.dumps(
            {"key": old_key, "event": "hokkaido", "profile": asdict(TINY)}, default=str
        )
    )
    with pytest.raises(ValueError, match=r"other settings .*the record's format None"):
        ablation.train_grid(tiny(cache), [], out_dir=out, progress=False)
    with pytest.raises(ValueError, match=r"changed: \['top_k'\]"):
        ablation.train_grid(
            tiny(cache, TINY.with_overrides(top_k=3)), [], out_dir=out, progress=False
        )
    assert json.loads((out / "settings.json").read_text())["key"] == old_key


# ----------------------------------------------------------------- item 4: broken files
def test_broken_results_files_are_named_and_rebuilt(cache, tmp_path):
    out = tmp_path / "broken"
    exp = tiny(cache)
    runs = [Run("none", 2, 0), Run("none", 2, 1)]
    table = ablation.train_grid(exp, runs, out_dir=out, progress=False)
    merged = out / "results.parquet"
    merged.write_bytes(merged.read_bytes()[:100])  # truncated
    with warnings.catch_warnings():  # the merged copy is never read, only rewritten
        warnings.simplefilter("error")
        rebuilt = read_results(out)
    pd.testing.assert_frame_equal(learned(rebuilt), learned(table))
    # a truncated run file: that run counts as missing and is scored again (not
    # retrained)
    one = run_file(out, "none-n002-s1")
    one.write_bytes(one.read_bytes()[:50])
    with pytest.warns(CorruptResultsWarning, match="none-n002-s1.parquet"):
        again = ablation.train_grid(exp, runs, out_dir=out, progress=False)
    assert again.attrs["reused_runs"] == ["none-n002-s0"]
    pd.testing.assert_frame_equal(learned(again), learned(table))
    pd.read_parquet(merged)  # rewritten whole
    # a broken settings.json is named, with the fix; nothing is trained
    (out / "settings.json").write_text('{"key": "abc", ')
    with pytest.raises(ValueError, match=r"settings.json is unreadable .*delete it"):
        ablation.train_grid(exp, runs, out_dir=out, progress=False)


# ----------------------------------------------------------------- items 6 and 7: the
# CLI
def test_grid_command_line_folders_and_numbers_are_checked_before_compute(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    base = ["grid", *CLI_TINY, "--arms", "none"]
    data = tmp_path / "data"
    proc = run_cli(*base, "--threads", "0", data_dir=data)
    assert_one_line_error(proc, "--threads 0", "at least 1")
    proc = run_cli(*base, "--max-minutes", "0", data_dir=data)
    assert_one_line_error(proc, "--max-minutes 0")
    proc = run_cli(*base, "--out", str(a_file), data_dir=data)
    assert_one_line_error(proc, f"--out {a_file} is a file")
    proc = run_cli(*base, "--cache-dir", str(a_file / "sub"), data_dir=data)
    assert_one_line_error(proc, "--cache-dir", "which is a file")
    proc = run_cli("fetch", "hokkaido", "--cache-dir", str(a_file), data_dir=data)
    assert_one_line_error(proc, f"--cache-dir {a_file} is a file")
    assert not data.exists()  # nothing was computed or cached


def test_a_finished_grid_in_a_read_only_folder_is_readable(cache, tmp_path):
    runs = [Run("none", 2, 0)]
    out = tmp_path / "finished"
    exp = tiny(cache, CLI_PROFILE)
    table = ablation.train_grid(exp, runs, out_dir=out, progress=False)
    with read_only_view(out, tmp_path / "ro-results") as view:
        again = ablation.train_grid(exp, runs, out_dir=view, progress=False)
        pd.testing.assert_frame_equal(learned(again), learned(table))
        proc = run_cli(
            "grid",
            *CLI_TINY,
            "--arms",
            "none",
            "--set",
            "seeds_smallest=0",
            "--out",
            str(view),
            "--list",
            data_dir=cache,
        )
        assert proc.returncode == 0, proc.stderr
        # with a run missing, the read-only folder is refused before anything trains
        proc = run_cli(
            "grid",
            *CLI_TINY,
            "--arms",
            "none",
            "--set",
            "seeds_smallest=0,5",
            "--out",
            str(view),
            data_dir=cache,
        )
        assert_one_line_error(proc, f"--out {view}", "read-only")
