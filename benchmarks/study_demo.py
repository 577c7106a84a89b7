"""Repeat the demo protocol on independently generated synthetic scenes.

One scene is one experiment: its chips, its stage-1 pretraining, its 51-run grid.
Whether a finding of the paper shows on the demo data is a property of the method only
if it shows on most scenes, so this script runs the whole demo protocol
(``experiment_grid`` + ``train_grid`` on the demo profile) on ``--scenes`` scenes,
each from its own ``data_seed`` (the book's chapters use ``data_seed=0``; the study uses
1, 2, …), checks every finding with :func:`sarslide.findings.evaluate_findings`
(hierarchical bootstrap over seeds, then test chips, ``--n-boot`` resamples) and prints
one row per finding — the paper's findings first, then the sanity checks, labelled — in
how many scenes it holds, holds in part or does not hold (the rules of
:mod:`sarslide.findings`), and the median over scenes of its median effect.

Run (about 5-8 minutes a scene on two CPU cores)::

    SARSLIDE_DATA_DIR=/tmp/study .venv/bin/python benchmarks/study_demo.py --scenes 5

Results are cached like the book's (resumable: an interrupted study continues where it
stopped); ``--csv`` also writes the per-scene verdicts.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from sarslide import ablation, findings
from sarslide.datasets import prepare_event
from sarslide.experiment import Experiment


def scene(base: Experiment, data_seed: int) -> Experiment:
    """The experiment ``base`` on the scene of ``data_seed``, its profile named apart
    (``demo-scene1``: its own results folder)."""
    name = f"{base.profile.name}-scene{data_seed}"
    return base.with_overrides(name=name, data_seed=data_seed)


def run_scene(exp: Experiment, n_boot: int = findings.N_BOOT) -> pd.DataFrame:
    """The grid of one scene's experiment; returns its findings summary."""
    table = ablation.train_grid(
        exp, ablation.experiment_grid(exp.profile), progress=False
    )
    labels = prepare_event(exp).split("test").labels
    boot = findings.hierarchical_bootstrap(
        table, ablation.results_dir(exp), labels, n_boot=n_boot
    )
    summary = findings.summarize_findings(findings.evaluate_findings(boot))
    summary.insert(0, "scene", exp.profile.data_seed)
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenes", type=int, default=5, help="number of independent scenes (default 5)"
    )
    parser.add_argument(
        "--first-seed",
        type=int,
        default=1,
        help="data_seed of the first scene (default 1)",
    )
    parser.add_argument("--event", default="hokkaido")
    parser.add_argument("--profile", default="demo")
    parser.add_argument(
        "--n-boot",
        type=int,
        default=findings.N_BOOT,
        help="bootstrap resamples per scene",
    )
    parser.add_argument(
        "--csv", default=None, help="also write the per-scene verdicts to this CSV file"
    )
    args = parser.parse_args(argv)

    base = Experiment.create(args.event, args.profile)
    start = time.perf_counter()
    per_scene = []
    for k in range(args.scenes):
        seed = args.first_seed + k
        t0 = time.perf_counter()
        per_scene.append(run_scene(scene(base, seed), args.n_boot))
        print(f"scene {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    everything = pd.concat(per_scene, ignore_index=True)
    if args.csv:
        everything.to_csv(args.csv, index=False)

    rows = []
    for finding in findings.FINDINGS + findings.SANITY_CHECKS:
        part = everything[everything["finding"] == finding.key]
        if part.empty:
            continue
        counts = part["verdict"].value_counts()
        rows.append(
            {
                "kind": "paper" if finding.kind == "paper" else "sanity check",
                "finding": finding.statement,
                "rule": finding.rule,
                "holds": f"{counts.get('holds', 0)} of {len(part)}",
                "in part": int(counts.get("holds in part", 0)),
                "not": int(counts.get("does not hold", 0)),
                "median effect": (
                    f"{part['median_effect'].median():+.3g} {finding.unit}"
                ),
            }
        )
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(pd.DataFrame(rows).to_string(index=False))
    print(f"{args.scenes} scenes in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
