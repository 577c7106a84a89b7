"""Are the demo's models trained, and what do trained models show? One row per scene.

For each of ``--scenes`` independent synthetic scenes (``data_seed`` 0, 1, …; 0 is the
book's scene) this runs, or reads back, the demo profile's 51-run grid — the same runs
and cache folders as chapter 5 and ``benchmarks/study_demo.py`` — and prints:

* the training-health classes of every run (:mod:`sarslide.health`), the runs whose
  best epoch is the first, and the median epochs trained;
* per arm × training size, the ensemble APRC (probabilities averaged over the cell's
  seeds) next to the log-ratio change score and the random guess;
* chapter 7's map quality: the ``hokkaido`` arm's "all"-chips run of seed 0 maps the
  whole scene, its density heatmap (500 m cells) is compared with the true one — the
  Pearson correlation and how many of the 10 most affected true cells are among the
  model's 10 — and the same for the log-ratio map.

Run (about 8-12 minutes a scene on two CPU cores; resumable)::

    SARSLIDE_DATA_DIR=/tmp/study .venv/bin/python benchmarks/study_training.py \
        --scenes 5 --csv /tmp/study/training.csv --workers 2

``--workers 2`` trains two runs at a time (a dask LocalCluster of one thread each).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from sarslide import ablation, mapping
from sarslide.baseline import log_ratio_score
from sarslide.datasets import prepare_cube, prepare_event, profile_pass_pair
from sarslide.experiment import Experiment
from sarslide.health import health_counts
from sarslide.predict import predict_proba
from sarslide.transforms import standardize

CELL_SIZE = 500.0
TOP = 10


def scene(base: Experiment, data_seed: int) -> Experiment:
    """The experiment of one scene: the book's own for ``data_seed=0``, else its
    profile named apart (as ``benchmarks/study_demo.py`` names it, so both share one
    cache)."""
    if data_seed == 0:
        return base
    name = f"{base.profile.name}-scene{data_seed}"
    return base.with_overrides(name=name, data_seed=data_seed)


def map_quality(exp: Experiment) -> dict[str, float]:
    """Chapter 7's comparison of the mapped and the true density heatmaps, for the
    ``hokkaido`` "all" run of seed 0 and for the log-ratio score."""
    cube = prepare_cube(exp)
    pair = profile_pass_pair(cube, exp.profile)
    chips = prepare_event(exp)
    models = ablation.run_models(exp, ablation.Run("hokkaido", None, 0), progress=False)
    prob = mapping.predict_probability(
        pair,
        lambda b: predict_proba(models, b),
        chips.stats,
        window=128,
        progress=False,
    )
    val = chips.split("validation")
    threshold = mapping.calibrate_threshold(
        predict_proba(models, standardize(val.images, chips.stats)), val.labels
    )
    valid = np.isfinite(prob)
    truth = (
        cube["landslides"].astype("float32").where(valid).rio.write_crs(cube.rio.crs)
    )
    truth_map = mapping.density_heatmap(
        mapping.binary_map(truth, 0.5), cell_size=CELL_SIZE
    )
    model_map = mapping.density_heatmap(
        mapping.binary_map(prob, threshold), cell_size=CELL_SIZE
    )
    score = mapping.predict_raw(
        pair, lambda b: log_ratio_score(b, window=5), window=128, progress=False
    )
    score_threshold = mapping.calibrate_threshold(
        log_ratio_score(val.images, window=5), val.labels
    )
    ratio_map = mapping.density_heatmap(
        mapping.binary_map(score, score_threshold), cell_size=CELL_SIZE
    )
    model = mapping.heatmap_agreement(model_map, truth_map, top=TOP)
    ratio = mapping.heatmap_agreement(ratio_map, truth_map, top=TOP)
    return {
        "map_corr": model["correlation"],
        "map_top10": model["shared_top_cells"],
        "log_ratio_corr": ratio["correlation"],
        "log_ratio_top10": ratio["shared_top_cells"],
    }


def run_scene(exp: Experiment, workers: int):
    """The grid, its health, its ensemble APRC per cell and the map quality of one
    scene's experiment: ``(scene row, cell rows)``."""
    data_seed = exp.profile.data_seed
    scheduler = "local" if workers > 1 else None
    table = ablation.train_grid(
        exp,
        ablation.experiment_grid(exp.profile),
        progress=False,
        scheduler=scheduler,
        num_threads=1 if workers > 1 else None,
    )
    out = ablation.results_dir(exp)
    health = ablation.grid_health(table, out)
    counts = health_counts(health)
    refs = table[table["arm"].isin(["random", "log_ratio"])].set_index("arm")["value"]
    labels = prepare_event(exp).split("test").labels
    ens = ablation.ensemble_scores(table, out, labels, n_boot=50)
    cells = ens[["arm", "train_size", "n_models", "aprc"]].assign(
        scene=data_seed,
        log_ratio=refs["log_ratio"],
        random=refs["random"],
        above_log_ratio=lambda f: f["aprc"] > refs["log_ratio"],
    )
    row = {
        "scene": data_seed,
        "runs": len(health),
        **counts.to_dict(),
        "best_is_first": int((health["best_epoch"] == 1).sum()),
        "median_epochs": float(health["epochs"].median()),
        "max_epochs": int(health["epochs"].max()),
        "cells_above_log_ratio": int(cells["above_log_ratio"].sum()),
        "log_ratio_aprc": float(refs["log_ratio"]),
        **map_quality(exp),
    }
    return row, cells


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=5, help="scenes (default 5)")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="data_seed of the first scene (default 0, the book's)",
    )
    parser.add_argument("--event", default="hokkaido")
    parser.add_argument("--profile", default="demo")
    parser.add_argument(
        "--workers", type=int, default=1, help="runs trained at once (default 1)"
    )
    parser.add_argument(
        "--csv",
        default=None,
        help="also write the rows to CSV files "
        "(FILE and FILE with '-cells' before the suffix)",
    )
    args = parser.parse_args(argv)

    base = Experiment.create(args.event, args.profile)
    start = time.perf_counter()
    rows, cells = [], []
    for k in range(args.scenes):
        seed = args.first_seed + k
        t0 = time.perf_counter()
        row, cell = run_scene(scene(base, seed), args.workers)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        cells.append(cell)
        print(f"scene {seed}: {row['seconds']:.0f} s", flush=True)
    scenes = pd.DataFrame(rows)
    every_cell = pd.concat(cells, ignore_index=True)
    if args.csv:
        scenes.to_csv(args.csv, index=False)
        every_cell.to_csv(args.csv.replace(".csv", "-cells.csv"), index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(scenes.round(3).to_string(index=False))
        wide = every_cell.pivot_table(
            index=["arm", "train_size"], columns="scene", values="aprc"
        )
        print("\nensemble APRC per cell and scene (log-ratio per scene below)")
        print(wide.round(3).to_string())
        print(scenes.set_index("scene")["log_ratio_aprc"].round(3).to_string())
    print(f"{args.scenes} scenes in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
