import numpy as np
import pandas as pd
import pytest
import torch

from sarslide import ablation, metrics
from sarslide.ablation import Run, experiment_grid, summarize
from sarslide.datasets import prepare_event
from sarslide.experiment import Experiment
from sarslide.metrics import aprc
from sarslide.profiles import get_profile

TINY = get_profile("demo").with_overrides(
    name="tiny-ablation",
    synthetic_shape=(256, 256),
    chip_size=32,
    stage1_max_epochs=1,
    stage2_max_epochs=2,
    patience=5,
    top_k=2,
    batch_size=8,
    train_sizes=(2, None),
    seeds=(0,),
    seeds_smallest=(0, 1),
    split_scheme="text",
    few_shot_draw="balanced",
)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_paper_grid_has_the_papers_runs():
    runs = experiment_grid(get_profile("paper"))
    # 3 arms x (5 seeds at 2 chips + 3 seeds at each of 5, 10, 20, all)
    assert len(runs) == 3 * (5 + 3 * 4)
    assert {r.arm for r in runs} == {"none", "hokkaido", "kaikoura"}
    assert sorted({r.train_size for r in runs}, key=lambda s: s or 10**6) == [
        2,
        5,
        10,
        20,
        None,
    ]
    assert len({r.run_id for r in runs}) == len(runs)


def test_bad_runs():
    with pytest.raises(ValueError, match="unknown arm 'imagenet'"):
        Run("imagenet", 2, 0)
    with pytest.raises(ValueError, match="at least 2 chips"):
        Run("none", 1, 0)


def test_grid_draws_its_few_shot_subset_as_the_profile_says(tmp_path, monkeypatch):
    from sarslide import chips as chips_module

    seen = []
    real = chips_module.few_shot_subset

    def spy(chips, size, seed, draw="random"):
        seen.append((size, seed, draw))
        return real(chips, size, seed, draw)

    monkeypatch.setattr(ablation, "few_shot_subset", spy)
    random_draws = TINY.with_overrides(
        name="tiny-random", few_shot_draw="random", stage2_max_epochs=1
    )
    exp = Experiment.create("hokkaido", random_draws, tmp_path)
    ablation.train_grid(exp, [Run("none", 2, 3)], progress=False)
    assert seen == [(2, 3, "random")]


def test_results_of_other_settings_are_never_reused(tmp_path):
    out = tmp_path / "grid"
    one = Experiment.create(
        "hokkaido",
        TINY.with_overrides(name="tiny-settings", stage2_max_epochs=1),
        tmp_path,
    )
    ablation.train_grid(one, [], out_dir=out, progress=False)
    changed = one.with_overrides(top_k=1)
    with pytest.raises(ValueError, match=r"other settings .*changed: \['top_k'\]"):
        ablation.train_grid(changed, [], out_dir=out, progress=False)
    # The default folders are keyed on the settings, so they never collide.
    assert ablation.results_dir(one) != ablation.results_dir(changed)


def test_summary_uses_per_run_means_and_the_sem_formula():
    rows = []
    # run means: 0.2, 0.4, 0.9 (two checkpoints each)
    for seed, (v1, v2) in enumerate([(0.1, 0.3), (0.4, 0.4), (1.0, 0.8)]):
        for ck, v in enumerate((v1, v2)):
            rows.append(
                {
                    "run_id": f"none-n002-s{seed}",
                    "arm": "none",
                    "train_size": 2,
                    "seed": seed,
                    "checkpoint": ck,
                    "epoch": ck,
                    "metric": "aprc",
                    "value": v,
                }
            )
    out = summarize(pd.DataFrame(rows)).iloc[0]
    run_means = np.array([0.2, 0.4, 0.9])
    assert out["mean"] == pytest.approx(0.5)
    # SEM by hand: sample std (ddof=1) / sqrt(3)
    hand = np.sqrt(((run_means - 0.5) ** 2).sum() / 2) / np.sqrt(3)
    assert out["sem"] == pytest.approx(hand)
    assert out["n_runs"] == 3


def test_stratified_interval_always_has_landslides_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    labels = np.zeros((4, 8, 8), dtype=np.uint16)
    labels[0, :2, :2] = (
        1  # one landslide chip among four: plain bootstraps often miss it
    )
    probabilities = rng.random((4, 8, 8)).astype(np.float32)
    probabilities[0, :2, :2] += 0.5
    low, high = metrics.stratified_aprc_interval(
        probabilities, labels, n_boot=100, seed=0
    )
    assert low <= aprc(probabilities, labels) <= high


@pytest.fixture(scope="module")
def grid_dirs(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    runs = experiment_grid(TINY, arms=("none", "hokkaido"))[
        :3
    ]  # none x2 seeds at size 2, none at all
    runs.append(Run("hokkaido", 2, 0))
    serial = tmp_path_factory.mktemp("serial")
    exp = Experiment.create("hokkaido", TINY, cache)
    table = ablation.train_grid(
        exp, runs, out_dir=serial, num_threads=1, progress=False
    )
    return exp, serial, runs, table


def test_grid_table_is_tidy_and_complete(grid_dirs):
    _, serial, runs, table = grid_dirs
    learned = table[table["arm"].isin(["none", "hokkaido"])]
    assert set(learned["run_id"]) == {r.run_id for r in runs}
    per_run = learned.groupby("run_id")["checkpoint"].nunique()
    assert (per_run >= 1).all() and (per_run <= TINY.top_k).all()
    assert set(learned["metric"]) == set(ablation.METRICS)
    assert {"log_ratio", "random"} <= set(table["arm"])
    assert (serial / "results.parquet").exists()
    for r in runs:
        assert (serial / r.run_id / "test_proba.npy").exists()


def test_resumed_grid_skips_finished_runs(grid_dirs, monkeypatch):
    exp, serial, runs, table = grid_dirs
    calls = []
    real = ablation.train_run

    def counting(exp, run, **kwargs):
        calls.append(run.run_id)
        return real(exp, run, **kwargs)

    monkeypatch.setattr(ablation, "train_run", counting)
    extra = Run("hokkaido", 2, 1)
    again = ablation.train_grid(
        exp, runs + [extra], out_dir=serial, num_threads=1, progress=False
    )
    assert calls == [extra.run_id]
    assert again.attrs["reused_runs"] == sorted(r.run_id for r in runs)
    old = again[again["run_id"] != extra.run_id].reset_index(drop=True)
    pd.testing.assert_frame_equal(old, table.reset_index(drop=True))


def test_ensemble_equals_the_plain_mean_over_all_checkpoints(grid_dirs):
    exp, serial, runs, table = grid_dirs
    labels = prepare_event(exp).split("test").labels
    ens = ablation.ensemble_scores(table, serial, labels, n_boot=20)
    row = ens[(ens["arm"] == "none") & (ens["train_size"] == 2)].iloc[0]
    ids = [r.run_id for r in runs if r.arm == "none" and r.train_size == 2]
    counts = [table[table["run_id"] == i]["checkpoint"].nunique() for i in ids]
    means = [np.load(serial / i / "test_proba.npy") for i in ids]
    plain = sum(c * m.astype(np.float64) for c, m in zip(counts, means)) / sum(counts)
    assert row["aprc"] == pytest.approx(aprc(plain, labels))
    assert row["n_models"] == sum(counts)


def test_dask_local_cluster_gives_the_serial_table(grid_dirs, tmp_path):
    pytest.importorskip("distributed")
    exp, serial, runs, table = grid_dirs
    subset = runs[:2]
    distributed = ablation.train_grid(
        exp,
        subset,
        out_dir=tmp_path,
        scheduler="local",
        num_threads=1,
        progress=False,
    )
    ids = {r.run_id for r in subset} | {"log_ratio", "random"}
    expected = table[table["run_id"].isin(ids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        distributed.reset_index(drop=True), expected, check_exact=False, rtol=1e-5
    )


def test_run_models_reloads_the_grids_checkpoints_without_retraining(grid_dirs):
    from sarslide.predict import predict_proba
    from sarslide.transforms import standardize

    exp, serial, runs, table = grid_dirs
    run = runs[0]
    before = sorted(
        p.stat().st_mtime_ns for p in (serial / run.run_id / "checkpoints").iterdir()
    )
    models = ablation.run_models(exp, run, out_dir=serial, progress=False)
    assert len(models) == table[table["run_id"] == run.run_id]["checkpoint"].nunique()
    after = sorted(
        p.stat().st_mtime_ns for p in (serial / run.run_id / "checkpoints").iterdir()
    )
    assert before == after  # nothing was trained or rewritten
    chips = prepare_event(exp)
    images = standardize(chips.split("test").images, chips.stats)
    np.testing.assert_allclose(
        predict_proba(models, images),
        np.load(serial / run.run_id / "test_proba.npy"),
        atol=1e-5,
    )


def test_stored_sizes_have_names_and_sort_all_last():
    assert Run("none", None, 0).stored_size == metrics.SIZE_ALL
    assert Run("none", 5, 0).stored_size == 5
    assert sorted([metrics.SIZE_ALL, 20, 2, 5], key=metrics.size_sort_key) == [
        2,
        5,
        20,
        metrics.SIZE_ALL,
    ]
    assert metrics.SIZE_BASELINE not in {
        r.stored_size for r in experiment_grid(get_profile("demo"))
    }


def test_auto_scheduler_is_local_on_a_multicore_cpu_and_serial_on_a_gpu(monkeypatch):
    import torch

    from sarslide.engine import dispatch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dispatch.os, "cpu_count", lambda: 2)
    assert dispatch.resolve_scheduler("auto") == ("local", 1)
    assert dispatch.resolve_scheduler("auto", num_threads=2) == ("local", 2)
    assert dispatch.resolve_scheduler("auto", device="cuda") == (None, None)
    assert dispatch.resolve_scheduler("auto", device=torch.device("cuda")) == (
        None,
        None,
    )
    monkeypatch.setattr(dispatch.os, "cpu_count", lambda: 1)
    assert dispatch.resolve_scheduler("auto") == (None, None)
    monkeypatch.setattr(dispatch.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dispatch.resolve_scheduler("auto") == (None, None)
    # anything else passes through untouched
    assert dispatch.resolve_scheduler(None, num_threads=3) == (None, 3)
    assert dispatch.resolve_scheduler("tcp://h:8786") == ("tcp://h:8786", None)


def test_longest_first_orders_runs_by_size_with_all_first():
    runs = experiment_grid(get_profile("demo"), arms=("none",))
    ordered = ablation.longest_first(runs)
    sizes = [r.train_size for r in ordered]
    assert sizes[:3] == [None, None, None]  # "all" first
    assert sizes[3:] == sorted(sizes[3:], reverse=True)
    assert sorted(r.run_id for r in ordered) == sorted(r.run_id for r in runs)
    # ties keep their order (seeds ascending)
    assert [r.seed for r in ordered if r.train_size == 2] == [0, 1, 2, 3, 4]
