"""Training health: each class on a hand-made learning curve whose right class is known,
and collapsed runs left out of the grid's ensembles (checked against a mean by hand)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sarslide import ablation
from sarslide.health import STATUSES, RunHealth, classify_run, health_counts

CHANCE = 0.04  # the validation pixel share


def _curve(values, train_loss=0.5):
    return pd.DataFrame(
        {
            "epoch": np.arange(1, len(values) + 1),
            "val_aprc": values,
            "train_loss": train_loss,
            "val_loss": 0.5,
        }
    )


def _classify(
    values,
    *,
    best_epoch=None,
    stopped_early=True,
    std=0.2,
    positives=300,
    max_epochs=60,
    train_loss=0.99,
):
    curve = _curve(values, train_loss)
    best = best_epoch or int(curve.loc[curve["val_aprc"].idxmax(), "epoch"])
    return classify_run(
        curve,
        best_epoch=best,
        stopped_early=stopped_early,
        max_epochs=max_epochs,
        chance_metric=CHANCE,
        output_std=std,
        train_positives=positives,
    )


def test_a_run_that_improves_then_stops_early_is_trained():
    h = _classify([0.1, 0.2, 0.3, 0.35, 0.34, 0.33], train_loss=0.4)
    assert h.status == "trained" and h.best_epoch == 4 and h.epochs == 6
    assert h.best_metric == 0.35 and h.last_metric == 0.33


def test_a_run_that_hits_the_cap_is_capped():
    h = _classify([0.1, 0.2, 0.3, 0.4], stopped_early=False, max_epochs=4)
    assert h.status == "capped" and "max_epochs=4" in h.reason


def test_a_run_whose_first_epoch_stays_best_is_stalled():
    assert _classify([0.3, 0.2, 0.25, 0.2]).status == "stalled"


@pytest.mark.parametrize(
    "values,std,why",
    [
        ([0.2, 0.3, 0.3], 1e-6, "constant output"),  # constant prediction
        ([0.04, 0.045, 0.041], 0.2, "best epoch"),  # never above chance
        ([0.2, 0.04, 0.04, 0.04], 0.2, "last epoch"),  # died after a good start
    ],
)
def test_constant_output_or_chance_apr_is_collapsed(values, std, why):
    h = _classify(values, std=std)  # the training loss stays at 0.99
    assert h.status == "collapsed" and why in h.reason


def test_chance_validation_with_a_fitted_training_set_is_overfit():
    # it learned its training chips (loss 0.04) and nothing that carries over
    h = _classify([0.034, 0.043, 0.03, 0.036], train_loss=[0.96, 0.74, 0.15, 0.04])
    assert h.status == "overfit" and "training loss 0.040 < 0.95" in h.reason
    assert h.last_train_loss == pytest.approx(0.04)
    # the same curve with a training loss stuck near 1 is a collapse
    stuck = _classify([0.034, 0.043, 0.03, 0.036], train_loss=[0.97, 0.99, 0.99, 0.99])
    assert stuck.status == "collapsed"


def test_a_draw_without_landslides_is_its_own_class_first():
    # nothing to learn: a constant "no landslide" is the right answer, not a collapse
    h = _classify([0.04, 0.04], std=0.0, positives=0)
    assert h.status == "empty_draw"


def test_the_collapse_thresholds_are_the_stated_ones():
    # at most 1.25 x chance is collapsed, just above is not
    assert _classify([0.1, 1.25 * CHANCE]).status == "collapsed"
    assert _classify([1.25 * CHANCE + 0.001, 0.06, 0.055]).status == "trained"
    assert _classify([0.2, 0.3, 0.25], std=0.99e-4).status == "collapsed"
    assert _classify([0.2, 0.3, 0.25], std=1.01e-4).status == "trained"
    assert _classify([0.03, 0.031], train_loss=0.9499).status == "overfit"
    assert _classify([0.03, 0.031], train_loss=0.95).status == "collapsed"


def test_bad_histories_are_named():
    with pytest.raises(ValueError, match="'epoch', 'train_loss' and 'val_aprc'"):
        classify_run(
            pd.DataFrame({"epoch": [1]}),
            best_epoch=1,
            stopped_early=True,
            max_epochs=5,
            chance_metric=CHANCE,
            output_std=0.1,
            train_positives=1,
        )
    with pytest.raises(ValueError, match="best_epoch=9 is not in the history"):
        _classify([0.1, 0.2], best_epoch=9)


def test_health_round_trips_and_counts_every_class():
    h = _classify([0.1, 0.2, 0.15])
    again = RunHealth.from_dict(json.loads(json.dumps(h.to_dict())))
    assert again == h and len(again.history) == 3
    frame = pd.DataFrame({"status": ["trained", "trained", "collapsed"]})
    counts = health_counts(frame)
    assert list(counts.index) == list(STATUSES)
    assert counts["trained"] == 2 and counts["collapsed"] == 1 and counts.sum() == 3


def _cell_folder(tmp_path, statuses):
    """A results folder of one cell (arm none, size 2) with one saved mean and health
    record per run; returns the table and the runs' means."""
    rows, means = [], {}
    for seed, status in enumerate(statuses):
        run = ablation.Run("none", 2, seed)
        mean = np.full((1, 4, 4), 0.1 * (seed + 1), np.float32)
        folder = tmp_path / run.run_id
        folder.mkdir()
        np.save(folder / "test_proba.npy", mean)
        positives = 0 if status == "empty_draw" else 10
        std = 0.0 if status == "collapsed" else 0.2
        health = classify_run(
            _curve([0.1, 0.2, 0.15], 0.3),
            best_epoch=2,
            stopped_early=True,
            max_epochs=9,
            chance_metric=CHANCE,
            output_std=std,
            train_positives=positives,
        )
        assert health.status == status
        (folder / "health.json").write_text(json.dumps(health.to_dict()))
        rows.append(
            {
                "run_id": run.run_id,
                "arm": "none",
                "train_size": 2,
                "seed": seed,
                "checkpoint": 0,
                "epoch": 2,
                "metric": "aprc",
                "value": 0.2,
            }
        )
        means[run.run_id] = mean
    return pd.DataFrame(rows), means


def test_collapsed_runs_are_left_out_of_ensembles_with_a_warning(tmp_path):
    table, means = _cell_folder(tmp_path, ["trained", "collapsed", "empty_draw"])
    with pytest.warns(UserWarning, match=r"none-n002-s1.*collapsed"):
        mean, n_models = ablation.ensemble_probabilities(table, "none", 2, tmp_path)
    expected = (means["none-n002-s0"] + means["none-n002-s2"]) / 2  # by hand: 0.1, 0.3
    np.testing.assert_allclose(mean, expected)
    assert n_models == 2
    health = ablation.grid_health(table, tmp_path)
    assert list(health["status"]) == ["trained", "collapsed", "empty_draw"]
    curves = ablation.grid_histories(table, tmp_path)
    assert len(curves) == 9 and set(curves["status"]) == {
        "trained",
        "collapsed",
        "empty_draw",
    }


def test_a_cell_whose_runs_all_collapsed_is_refused(tmp_path):
    table, _ = _cell_folder(tmp_path, ["collapsed", "collapsed"])
    with pytest.raises(
        ValueError, match="every run of arm='none', train_size=2 collapsed"
    ):
        ablation.ensemble_probabilities(table, "none", 2, tmp_path)


def test_a_broken_health_record_names_its_file(tmp_path):
    table, _ = _cell_folder(tmp_path, ["trained"])
    (tmp_path / "none-n002-s0" / "health.json").write_text("{not json")
    with pytest.raises(
        ValueError, match=r"none-n002-s0.health\.json is not a run-health"
    ):
        ablation.grid_health(table, tmp_path)
