"""Figures 2 and 3 (seaborn): the points and error bars drawn are the means and SEMs
that pandas and scipy compute from the same tidy table."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy.stats import sem  # noqa: E402

from sarslide.plots.evaluation import (  # noqa: E402
    ARM_STYLE,
    MISCOUNT_PANELS,
    per_run,
    plot_aprc_by_size,
    plot_miscounts_by_size,
)

ARMS = ["none", "hokkaido", "kaikoura"]
SIZES = [2, 5, -1]
METRICS = ["aprc"] + [m for m, _ in MISCOUNT_PANELS]


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    """A results table like run_grid's: run × checkpoint × metric, plus baseline
    rows."""
    rng = np.random.default_rng(0)
    rows = []
    for arm in ARMS:
        for size in SIZES:
            for seed in range(3 if size != 2 else 5):
                for checkpoint in range(2):
                    for metric in METRICS:
                        rows.append(
                            {
                                "run_id": f"{arm}-{size}-s{seed}",
                                "arm": arm,
                                "train_size": size,
                                "seed": seed,
                                "checkpoint": checkpoint,
                                "metric": metric,
                                "value": float(rng.random()),
                            }
                        )
    rows.append(
        {
            "run_id": "log_ratio",
            "arm": "log_ratio",
            "train_size": 0,
            "seed": 0,
            "checkpoint": 0,
            "metric": "aprc",
            "value": 0.1,
        }
    )
    return pd.DataFrame(rows)


def _marker_lines(ax) -> list:
    return [
        line
        for line in ax.lines
        if line.get_marker() not in (None, "", "None") and len(line.get_xdata())
    ]


def _error_bars(ax) -> list:
    return [
        line
        for line in ax.lines
        if line.get_marker() in (None, "", "None") and len(line.get_xdata()) == 8
    ]


def test_aprc_points_and_error_bars_are_mean_and_sem_over_runs(results):
    ax = plot_aprc_by_size(results, random_aprc=0.03)
    runs = (
        results[results["metric"] == "aprc"]
        .groupby(["arm", "train_size", "run_id"])["value"]
        .mean()
    )
    lines = _marker_lines(ax)
    assert [line.get_marker() for line in lines] == [
        ARM_STYLE[a]["marker"] for a in ARMS
    ]
    bars = iter(_error_bars(ax))
    for arm, line in zip(ARMS, lines):
        want = [runs.loc[arm, size].mean() for size in SIZES]
        np.testing.assert_allclose(line.get_ydata(), want)
        for size in SIZES:
            bar = next(bars).get_ydata()
            m, s = runs.loc[arm, size].mean(), sem(runs.loc[arm, size].to_numpy())
            np.testing.assert_allclose([np.nanmin(bar), np.nanmax(bar)], [m - s, m + s])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "5", "all"]
    plt.close(ax.figure)


def test_per_run_averages_checkpoints_first(results):
    rows = per_run(results, "aprc")
    assert len(rows) == results.loc[results["arm"].isin(ARMS), "run_id"].nunique()
    assert set(rows["arm"]) == set(ARMS)


def test_a_summary_is_refused_with_the_fix(results):
    from sarslide.ablation import summarize

    with pytest.raises(ValueError, match="pass the tidy results table"):
        plot_aprc_by_size(summarize(results))


def test_miscounts_ensemble_points_with_per_model_spread(results):
    ensemble = results.groupby(["arm", "train_size", "metric"], as_index=False)[
        "value"
    ].median()
    fig = plot_miscounts_by_size(ensemble, results, n_all=110)
    assert len(fig.axes) == 3
    for ax, (metric, _) in zip(fig.axes, MISCOUNT_PANELS):
        lines = _marker_lines(ax)
        assert len(lines) == len(ARMS)
        for arm, line in zip(ARMS, lines):
            want = ensemble[
                (ensemble["arm"] == arm) & (ensemble["metric"] == metric)
            ].set_index("train_size")["value"]
            np.testing.assert_allclose(line.get_ydata(), [want[s] for s in SIZES])
        assert len(_error_bars(ax)) == len(ARMS) * len(
            SIZES
        )  # one per arm × size, from the models
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [
        "2",
        "5",
        "all (110)",
    ]
    plt.close(fig)


def test_miscounts_accept_a_wide_table_without_error_bars(results):
    tidy = (
        results[results["arm"].isin(ARMS)]
        .groupby(["arm", "train_size", "metric"], as_index=False)["value"]
        .mean()
    )
    wide = tidy.pivot_table(
        index=["arm", "train_size"], columns="metric", values="value"
    ).reset_index()
    fig = plot_miscounts_by_size(wide)
    ax = fig.axes[1]
    assert len(_marker_lines(ax)) == len(ARMS) and not _error_bars(ax)
    plt.close(fig)


def test_size_labels_name_the_stored_codes():
    from sarslide.metrics import SIZE_ALL, SIZE_BASELINE
    from sarslide.plots.evaluation import size_label

    assert size_label(SIZE_ALL) == "all" and size_label(SIZE_ALL, 35) == "all (35)"
    assert size_label(SIZE_BASELINE) == "no training"
    assert size_label(20) == "20"
