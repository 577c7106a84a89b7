"""Figure 3 on the ensemble and the findings checks, against hand computations."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from sarslide import ablation, findings, metrics
from sarslide.findings import (
    GridBootstrap,
    evaluate_findings,
    findings_markdown,
    hierarchical_bootstrap,
    summarize_findings,
)
from sarslide.metrics import PixelRanking, stratified_chip_weights, weighted_median


def _labels() -> np.ndarray:
    labels = np.zeros((6, 8, 8), dtype=np.uint8)
    labels[0, :3, :3] = 1  # 9 px
    labels[1, 4:, 4:] = 1  # 16 px
    labels[2, 0, :4] = 1  # 4 px
    return labels  # chips 3, 4, 5 are landslide-free


def _proba(rng, labels, false_alarm: int) -> np.ndarray:
    """Noisy probabilities that find the landslides and raise ``false_alarm`` px per
    free chip."""
    p = 0.05 + 0.04 * rng.random(labels.shape).astype(np.float32) + 0.6 * labels
    for c in (3, 4, 5):
        p[c].reshape(-1)[:false_alarm] = 0.9
    return p


@pytest.fixture()
def grid(tmp_path):
    """A hand-made results folder: arms none / hokkaido, size 2, seeds 0 and 1, 2
    checkpoints."""
    rng = np.random.default_rng(0)
    labels = _labels()
    rows, probas = [], {}
    for arm, alarms in (("none", (20, 30)), ("hokkaido", (2, 4))):
        for seed, alarm in enumerate(alarms):
            run = ablation.Run(arm, 2, seed)
            p = _proba(rng, labels, alarm)
            probas[run.run_id] = p
            (tmp_path / run.run_id).mkdir()
            np.save(tmp_path / run.run_id / "test_proba.npy", p)
            for ck in range(2):
                scores = metrics.score_probabilities(p, labels)
                for metric, value in scores.items():
                    rows.append(
                        {
                            "run_id": run.run_id,
                            "arm": arm,
                            "train_size": 2,
                            "seed": seed,
                            "checkpoint": ck,
                            "epoch": ck,
                            "metric": metric,
                            "value": value,
                        }
                    )
    return pd.DataFrame(rows), tmp_path, labels, probas


def test_figure3_values_are_medians_of_the_ensemble_prediction(grid):
    table, out, labels, probas = grid
    ens = ablation.ensemble_scores(table, out, labels, n_boot=10)
    for arm in ("none", "hokkaido"):
        mean = (
            probas[f"{arm}-n002-s0"].astype(np.float64) + probas[f"{arm}-n002-s1"]
        ) / 2
        predicted = (mean >= 0.5).sum(axis=(1, 2))
        true = labels.sum(axis=(1, 2))
        delta = predicted - true
        row = ens[ens["arm"] == arm].iloc[0]
        assert row["median_delta_l1"] == np.median(np.abs(delta))
        assert row["median_delta_count_free"] == np.median(delta[3:])
        assert row["median_delta_count_landslide"] == np.median(delta[:3])
        assert row["aprc"] == pytest.approx(
            average_precision_score(labels.reshape(-1) > 0, mean.reshape(-1))
        )
    tidy = ablation.ensemble_metrics(ens)
    assert (
        set(tidy.columns) == {"arm", "train_size", "metric", "value"}
        and len(tidy) == 2 * 4
    )
    # The ensemble's false alarms (mean of 20 and 30) sit between the per-model values.
    per_model = ablation.run_means(table)
    free = per_model[
        (per_model.arm == "none") & (per_model.metric == "median_delta_count_free")
    ]["value"]
    assert sorted(free) == [20.0, 30.0]


def test_findings_effects_equal_the_hand_differences(grid):
    table, out, labels, _ = grid
    cells = evaluate_findings(hierarchical_bootstrap(table, out, labels, n_boot=200))
    fp = cells[cells["finding"] == "fewer_false_positives"].iloc[0]
    # Averaged, a pixel flagged by one model only is (0.9 + <0.09) / 2 < 0.5: the none
    # ensemble keeps the 20 alarms both models raise, hokkaido 2 -> effect −18 px.
    assert fp["effect"] == pytest.approx(2 - 20)
    assert fp["ci_low"] <= fp["effect"] <= fp["ci_high"] and fp["outcome"] == "supports"
    assert (fp["seeds_agree"], fp["n_seeds"]) == (
        2,
        2,
    )  # seed 0: 2 − 20 < 0; seed 1: 4 − 30 < 0
    mean_fp = cells[cells["finding"] == "fewer_false_positives_mean"].iloc[0]
    assert mean_fp["effect"] == pytest.approx(
        2 - 20
    )  # every free chip has the same alarms
    beats = cells[cells["finding"] == "beats_random"]
    assert (
        len(beats) == 2 and beats["supports"].all() and set(beats["kind"]) == {"sanity"}
    )
    summary = summarize_findings(cells)
    assert (
        summary.set_index("finding").loc["fewer_false_positives", "verdict"] == "holds"
    )
    assert (
        summary.set_index("finding").loc["fewer_false_positives", "cells"] == "1 of 1"
    )
    text = findings_markdown(summary)
    assert "lowers false positives" in text and "Shown by this run" in text
    assert "Sanity checks** (not findings of the paper)" in text


def test_bootstrap_points_are_the_ensemble_scores(grid):
    table, out, labels, _ = grid
    boot = hierarchical_bootstrap(table, out, labels, n_boot=20)
    ens = ablation.ensemble_scores(table, out, labels, n_boot=10).set_index("arm")
    for arm in ("none", "hokkaido"):
        for metric in metrics.GRID_METRICS:
            assert boot.point[(arm, 2)][metric] == pytest.approx(ens.loc[arm, metric])
    shown = boot.intervals()
    assert set(shown["metric"]) == set(findings.CELL_METRICS)
    assert (shown["n_seeds"] == 2).all() and (shown["n_models"] == 4).all()


def test_bootstrap_resamples_seeds_paired_across_arms(grid):
    """Every free chip holds the same false alarms, so resampling chips alone cannot
    move the mean Δcount on free chips: only the seed draw can. The none ensemble raises
    20 px per free chip from seeds {0, 0} or {0, 1} and 30 from {1, 1} (a quarter of
    draws)."""
    table, out, labels, _ = grid
    boot = hierarchical_bootstrap(table, out, labels, n_boot=1000, boot_seed=3)
    none = boot.samples[("none", 2)]["mean_delta_count_free"]
    hok = boot.samples[("hokkaido", 2)]["mean_delta_count_free"]
    assert set(np.unique(none)) == {20.0, 30.0} and set(np.unique(hok)) == {2.0, 4.0}
    assert np.mean(none == 30) == pytest.approx(0.25, abs=0.04)
    assert ((none == 30) == (hok == 4)).all()  # the same seeds in both arms of a draw


def test_bootstrap_refuses_unpaired_seeds_and_no_resamples(grid):
    table, out, labels, _ = grid
    unpaired = table[~((table["arm"] == "hokkaido") & (table["seed"] == 1))]
    with pytest.raises(ValueError, match="pairs arms by seed"):
        hierarchical_bootstrap(unpaired, out, labels, n_boot=5)
    with pytest.raises(ValueError, match="n_boot=0"):
        hierarchical_bootstrap(table, out, labels, n_boot=0)


def test_aprc_margin_is_the_largest_arm_difference_in_the_papers_figure_2():
    assert findings.APRC_MARGIN == pytest.approx(
        0.168 - 0.132
    )  # Hokkaido vs none, 10 chips
    keys = {f.key for f in findings.FINDINGS}
    assert {"beats_random", "aprc_grows"}.isdisjoint(keys)
    assert {f.key for f in findings.SANITY_CHECKS} == {"beats_random", "aprc_grows"}
    assert {"aprc_events_similar", "hokkaido_stronger"} <= keys


# --- Each rule on a hand-made table of ensemble values, whose right outcome is known.
# ---

_OFFSETS = np.linspace(-1.0, 1.0, 201)  # resample offsets: the 95 % interval is ±0.95


def _hand_boot(values: dict, spread: dict | None = None, seeds=None) -> GridBootstrap:
    """A bootstrap made by hand: ``values[(arm, size)][metric]`` is the ensemble value,
    its resamples are value + spread × offsets (the same offsets in every cell, as
    paired resamples), and each seed's run has ``seeds[(arm, size)]`` (default the
    value)."""
    spread = spread or {}
    seeds = seeds or {}
    point, samples, per_seed = {}, {}, {}
    for cell, by_metric in values.items():
        full = {m: by_metric.get(m, 0.0) for m in findings.CELL_METRICS}
        point[cell] = full
        samples[cell] = {
            m: v + spread.get(cell, 0.0) * _OFFSETS for m, v in full.items()
        }
        per_seed[cell] = {
            s: {
                m: seeds.get(cell, full)[m] if m in seeds.get(cell, {}) else v
                for m, v in full.items()
            }
            for s in (0, 1, 2)
        }
    sizes = sorted({c[1] for c in values}, key=metrics.size_sort_key)
    return GridBootstrap(
        point,
        samples,
        per_seed,
        0.03,
        np.full(len(_OFFSETS), 0.03),
        sizes,
        len(_OFFSETS),
        0,
    )


def _outcomes(boot, key):
    check = {f.key: f for f in findings.FINDINGS + findings.SANITY_CHECKS}[key]
    cells = evaluate_findings(boot, checks=(check,))
    return cells.set_index(["arm", "train_size"])["outcome"].to_dict(), cells


def test_direction_rule_supports_contradicts_inconclusive_and_ties():
    m = "median_delta_count_free"
    boot = _hand_boot(
        {
            ("none", 2): {m: 100.0},
            ("hokkaido", 2): {m: 10.0},
            ("kaikoura", 2): {m: 160.0},
            ("none", 5): {m: 0.0},
            ("hokkaido", 5): {m: 0.0},
            ("kaikoura", 5): {m: 80.0},
        },
        spread={("hokkaido", 2): 20.0, ("kaikoura", 2): 20.0, ("kaikoura", 5): 100.0},
    )
    outcomes, cells = _outcomes(boot, "fewer_false_positives")
    assert outcomes == {
        ("hokkaido", 2): "supports",  # −90 ± 19: below zero
        ("kaikoura", 2): "contradicts",  # +60 ± 19: above zero
        ("hokkaido", 5): "tie",  # 0 and 0: the same count, no contradiction
        ("kaikoura", 5): "inconclusive",
    }  # +80 ± 95 straddles zero
    row = cells.set_index(["arm", "train_size"]).loc[("hokkaido", 2)]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((-90 - 19, -90 + 19))
    assert summarize_findings(cells).iloc[0][
        ["cells", "ties", "contradicts", "verdict"]
    ].tolist() == ["1 of 4", 1, 1, "holds in part"]


def test_verdicts_holds_in_part_and_does_not_hold_with_ties():
    m = "median_delta_count_free"
    supports_or_ties = _hand_boot(
        {
            ("none", 2): {m: 50.0},
            ("hokkaido", 2): {m: 5.0},
            ("none", 5): {m: 0.0},
            ("hokkaido", 5): {m: 0.0},
        }
    )
    _, cells = _outcomes(supports_or_ties, "fewer_false_positives")
    assert (
        summarize_findings(cells).iloc[0]["verdict"] == "holds"
    )  # a tie does not count against
    only_ties = _hand_boot({("none", 5): {m: 0.0}, ("hokkaido", 5): {m: 0.0}})
    _, cells = _outcomes(only_ties, "fewer_false_positives")
    assert (
        summarize_findings(cells).iloc[0]["verdict"] == "does not hold"
    )  # no evidence either way
    noisy = _hand_boot(
        {("none", 2): {m: 50.0}, ("hokkaido", 2): {m: 40.0}},
        spread={("hokkaido", 2): 30.0},
    )
    _, cells = _outcomes(noisy, "fewer_false_positives")
    assert summarize_findings(cells).iloc[0]["verdict"] == "does not hold"


def test_equivalence_needs_a_narrow_interval_inside_the_margin():
    margin = findings.APRC_MARGIN
    boot = _hand_boot(
        {
            ("none", 2): {"aprc": 0.20},
            ("hokkaido", 2): {"aprc": 0.21},
            ("kaikoura", 2): {"aprc": 0.20},
            ("none", 5): {"aprc": 0.20},
            ("hokkaido", 5): {"aprc": 0.30},
            ("kaikoura", 5): {"aprc": 0.20},
        },
        spread={("hokkaido", 2): 0.01, ("kaikoura", 5): 0.2},
    )
    outcomes, cells = _outcomes(boot, "aprc_unchanged")
    assert outcomes == {
        ("hokkaido", 2): "supports",  # +0.01 ± 0.009 (90 %) inside ±0.036
        ("hokkaido", 5): "contradicts",  # +0.10 ± 0: outside the margin
        ("kaikoura", 2): "supports",  # exactly 0
        # 0 ± 0.18: contains zero, but so noisy it shows nothing
        ("kaikoura", 5): "inconclusive",
    }
    assert set(cells["ci_level"]) == {0.90} and set(cells["margin"]) == {margin}
    events, _ = _outcomes(boot, "aprc_events_similar")  # Hokkaido − Kaikōura
    # +0.10 away, but Kaikōura's noisy cell (± 0.19) leaves it inconclusive
    assert events == {("hokkaido", 2): "supports", ("hokkaido", 5): "inconclusive"}


def test_undercount_is_tested_as_lower_and_larger_than_without_pretraining():
    m = "median_delta_count_landslide"
    boot = _hand_boot(
        {
            ("none", 2): {m: 5.0},
            ("hokkaido", 2): {m: -20.0},  # lower and larger
            ("none", 5): {m: -30.0},
            ("hokkaido", 5): {m: -10.0},  # higher, smaller
            ("none", 10): {m: 40.0},
            ("hokkaido", 10): {m: 10.0},
        }
    )  # lower, smaller
    lower, _ = _outcomes(boot, "undercount")
    larger, _ = _outcomes(boot, "larger_landslide_miscount")
    assert lower == {
        ("hokkaido", 2): "supports",
        ("hokkaido", 5): "contradicts",
        ("hokkaido", 10): "supports",
    }
    assert larger == {
        ("hokkaido", 2): "supports",
        ("hokkaido", 5): "contradicts",
        ("hokkaido", 10): "contradicts",
    }
    # Only where both hold is the miscount negative and larger, as the paper says.


def test_hokkaido_stronger_and_sanity_checks():
    m = "median_delta_count_free"
    boot = _hand_boot(
        {
            ("none", 2): {m: 90.0, "aprc": 0.05},
            ("hokkaido", 2): {m: 0.0, "aprc": 0.05},
            ("kaikoura", 2): {m: 40.0, "aprc": 0.02},
            ("none", metrics.SIZE_ALL): {"aprc": 0.30},
            ("hokkaido", metrics.SIZE_ALL): {"aprc": 0.02},
            ("kaikoura", metrics.SIZE_ALL): {"aprc": 0.30},
        }
    )
    stronger, _ = _outcomes(boot, "hokkaido_stronger")
    # 0 − 40 < 0 at 2 chips; at all chips both medians are 0: a tie
    assert stronger == {
        ("hokkaido", 2): "supports",
        ("hokkaido", metrics.SIZE_ALL): "tie",
    }
    beats, _ = _outcomes(boot, "beats_random")  # random guess 0.03
    assert beats[("none", 2)] == "supports" and beats[("kaikoura", 2)] == "contradicts"
    grows, cells = _outcomes(boot, "aprc_grows")
    assert grows[("none", metrics.SIZE_ALL)] == "supports"
    assert grows[("hokkaido", metrics.SIZE_ALL)] == "contradicts"
    assert set(summarize_findings(cells)["kind"]) == {"sanity"}


def test_seed_agreement_counts_paired_runs():
    m = "median_delta_count_free"
    boot = _hand_boot(
        {("none", 2): {m: 50.0}, ("hokkaido", 2): {m: 10.0}},
        seeds={("hokkaido", 2): {m: 60.0}},
    )  # every hokkaido seed above none's 50
    _, cells = _outcomes(boot, "fewer_false_positives")
    assert (cells.iloc[0]["seeds_agree"], cells.iloc[0]["n_seeds"]) == (0, 3)


def test_many_resamples_equal_one_by_one():
    rng = np.random.default_rng(4)
    scores = np.round(rng.random((7, 4, 4)), 2)
    labels = (rng.random((7, 4, 4)) < 0.3).astype(np.uint8)
    labels[0, 0, 0] = 1
    weights = stratified_chip_weights(labels.any(axis=(1, 2)), 6, seed=2)
    ranking = PixelRanking(scores, labels)
    assert ranking.aprc_many(weights) == pytest.approx(
        [ranking.aprc(w) for w in weights]
    )
    with pytest.raises(ValueError, match="expected"):
        ranking.aprc_many(np.ones(7))


def test_weighted_ranking_equals_sklearn_on_resamples():
    rng = np.random.default_rng(3)
    scores = np.round(rng.random((9, 4, 4)), 1)  # many ties
    labels = (rng.random((9, 4, 4)) < 0.25).astype(np.uint8)
    ranking = PixelRanking(scores, labels)
    untabled = PixelRanking(scores, labels)
    untabled.max_table = 0  # the per-call path taken for very large test sets
    untabled.__init__(scores, labels)
    assert ranking._tables is not None and untabled._tables is None
    weights = stratified_chip_weights(labels.any(axis=(1, 2)), 5, seed=1)
    for w in [np.ones(9)] + list(weights):
        expected = average_precision_score(
            labels.reshape(-1) > 0, scores.reshape(-1), sample_weight=np.repeat(w, 16)
        )
        assert ranking.aprc(w) == pytest.approx(expected)
        assert untabled.aprc(w) == pytest.approx(expected)
    # A chip weighted 0 drops out entirely: the same as scoring the other chips alone.
    w = np.ones(9)
    w[[0, 4]] = 0
    keep = w > 0
    alone = average_precision_score(
        labels[keep].reshape(-1) > 0, scores[keep].reshape(-1)
    )
    assert ranking.aprc(w) == pytest.approx(alone)
    # Each stratified resample keeps the number of chips of each kind.
    has = labels.any(axis=(1, 2))
    assert (weights[:, has].sum(axis=1) == has.sum()).all()
    assert weighted_median(np.array([1.0, 5.0, 9.0]), np.array([0, 2, 1])) == np.median(
        [5, 5, 9]
    )
    with pytest.raises(ValueError, match="chip_weights has shape"):
        ranking.aprc(np.ones(3))


def test_chapter_6_defines_the_verdicts_and_outcomes_where_it_uses_them():
    import json
    from pathlib import Path

    nb = json.loads(
        (
            Path(__file__).resolve().parents[1]
            / "notebooks"
            / "06_miscount_analysis.ipynb"
        ).read_text()
    )
    cells = ["".join(c["source"]) for c in nb["cells"]]
    uses = next(k for k, c in enumerate(cells) if "summarize_findings(" in c)
    definitions = cells[uses - 1]  # the markdown cell right before the verdicts
    for word in (
        "**holds**",
        "**holds in part**",
        "**does not hold**",
        "**supports**",
        "**contradicts**",
        "**tie**",
        "**inconclusive**",
        "**equivalence",
        "APRC_MARGIN",
    ):
        assert word in definitions, word
