"""The ablation grid: stage-2 training-set size × stage-1 pretraining × seed.

The paper's experiment (Böhm et al. 2022, Figures 2–3) trains the stage-2 segmenter on
2, 5, 10, 20 and all (110) labelled Hokkaido chips, three seeds each (five for two
chips), in three *arms*:

``none``
    no pretraining (the segmenter alone),
``hokkaido``
    frozen stage-1 embeddings pretrained on Hokkaido chips,
``kaikoura``
    frozen stage-1 embeddings pretrained on Kaikōura chips (point labels, another
    country).

What trains takes the :class:`~sarslide.experiment.Experiment` (event, profile, data
folder, device) and a :class:`Run` — one cell of the grid: arm, training size, seed;
what reads results takes the table and its folder. A run draws its own training subset
from the stage-2 training split — at random, as the paper does, or balanced (the
profile's ``few_shot_draw``, see :func:`sarslide.chips.few_shot_subset`) — keeps its
top-k checkpoints by validation APRC and scores each on the test split
(:func:`train_run`).

Results are a *tidy* table — one row per run × checkpoint × metric — stored as Parquet,
one file per finished run merged on read (:mod:`sarslide.engine.results_table`), in a
folder keyed on the settings (:func:`results_dir`), so an interrupted grid resumes where
it stopped (finished runs are skipped) and two processes on one folder lose no rows.
:func:`grid_plan` says how many runs are missing and about how long they take here;
``train_grid(max_minutes=...)`` stops between runs. Runs can be dispatched to a
dask.distributed cluster (:mod:`sarslide.engine.dispatch`).

Each run also saves the mean of its checkpoints' test probabilities, so arm-level
ensembles over seeds × checkpoints (probabilities averaged, see :mod:`sarslide.metrics`)
are computed without retraining; the log-ratio change-detection score is the
non-learned baseline in every table.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from .baseline import SMOOTHING_WINDOW, log_ratio_score
from .chips import ChipSet, few_shot_subset
from .datasets import prepare_event, store_key
from .engine.atomic import atomic_file
from .engine.progress import progress_bar
from .engine.results_table import (
    BASELINE_FILE_ID,
    check_settings,
    merge_results,
    read_results,
    run_file,
    run_lock,
    write_run_rows,
    write_run_timing,
)
from .experiment import Experiment
from .metrics import (
    GRID_METRICS,
    SIZE_ALL,
    SIZE_BASELINE,
    aprc,
    ensemble_mean,
    random_guess_aprc,
    score_probabilities,
    sem,
    size_sort_key,
    stratified_aprc_interval,
)
from .profiles import Profile
from .transforms import standardize

__all__ = [
    "ARMS",
    "BASELINE_ARM",
    "METRICS",
    "GRID_SHAPE_FIELDS",
    "PAPER_APRC",
    "Run",
    "experiment_grid",
    "results_key",
    "results_dir",
    "split_embeddings",
    "train_run",
    "train_run_locked",
    "run_models",
    "score_baseline",
    "grid_plan",
    "train_grid",
    "longest_first",
    "summarize",
    "run_means",
    "run_health",
    "grid_health",
    "grid_histories",
    "ensemble_probabilities",
    "ensemble_scores",
    "ensemble_metrics",
    "paper_comparison",
]

_log = logging.getLogger(__name__)

ARMS: tuple[str, ...] = ("none", "hokkaido", "kaikoura")
BASELINE_ARM = "log_ratio"
METRICS: tuple[str, ...] = GRID_METRICS

_PROBA = "test_proba.npy"
_HEALTH = "health.json"


@dataclass(frozen=True)
class Run:
    """One cell of the grid: pretraining arm, training-set size (None = all) and
    seed (of the few-shot draw and the segmenter's training)."""

    arm: str
    train_size: int | None
    seed: int

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            raise ValueError(f"unknown arm {self.arm!r}; arms are {list(ARMS)}")
        if self.train_size is not None and self.train_size < 2:
            raise ValueError(
                f"train_size={self.train_size}: use at least 2 chips (one of each kind)"
            )

    @property
    def stored_size(self) -> int:
        """``train_size`` as the results table stores it
        (:data:`sarslide.metrics.SIZE_ALL` for all chips)."""
        return SIZE_ALL if self.train_size is None else self.train_size

    @property
    def run_id(self) -> str:
        """The run's name in the results table and its folder: ``none-n002-s0``,
        ``hokkaido-nall-s1``."""
        size = "all" if self.train_size is None else f"{self.train_size:03d}"
        return f"{self.arm}-n{size}-s{self.seed}"


def experiment_grid(profile: Profile, arms: Sequence[str] = ARMS) -> list[Run]:
    """All runs of a profile: arms × ``train_sizes`` × seeds (``seeds_smallest`` for the
    smallest size)."""
    sizes = list(profile.train_sizes)
    finite = [s for s in sizes if s is not None]
    smallest = min(finite) if finite else None
    runs = []
    for arm in arms:
        for size in sizes:
            seeds = profile.seeds_smallest if size == smallest else profile.seeds
            runs.extend(Run(arm, size, seed) for seed in seeds)
    return runs


#: Profile fields that choose *which* runs a grid holds, not how a run is made: a grid
#: made with a subset of sizes or seeds (``--set train_sizes=2``) shares its results
#: folder and table with the full grid, so partial grids merge (:func:`results_key`).
GRID_SHAPE_FIELDS: tuple[str, ...] = ("train_sizes", "seeds", "seeds_smallest")


def results_key(exp: Experiment) -> str:
    """The fingerprint of a results folder: :func:`sarslide.datasets.store_key` of the
    event, the data seed and every profile setting that changes a run (all but
    :data:`GRID_SHAPE_FIELDS` and the name)."""
    profile = exp.profile
    keep = [
        f.name for f in fields(profile) if f.name not in GRID_SHAPE_FIELDS + ("name",)
    ]
    return store_key(exp.event, profile, profile.data_seed, fields=keep)


def results_dir(exp: Experiment) -> Path:
    """The results folder of the experiment's grid:
    ``<data dir>/ablation/<event>-<profile>-<key>``.

    ``key`` is :func:`results_key`, a hash of every profile setting but the grid's sizes
    and seeds (:data:`GRID_SHAPE_FIELDS`), and of the data seed: results made under
    other settings are never returned for these, and grids over subsets of sizes or
    seeds share one folder and one table.
    """
    name = f"{exp.event}-{exp.profile.name}-{results_key(exp)}"
    return exp.data_dir / "ablation" / name


def split_embeddings(exp: Experiment, stage1, chips: ChipSet, split: str):
    """The frozen stage-1 embeddings of one split's standardised chips, cached per
    event.

    Every run of an arm shares one frozen stage-1 network, so the embeddings of the
    event's stage-2, validation and test chips are computed once per (arm, event,
    settings) and stored in the data folder
    (:func:`sarslide.engine.embeddings.cached_embeddings`, keyed on the weights, the
    chips and the precision); every run and chapter 4 reuse them. Returns ``None`` for
    the arm without pretraining.
    """
    if stage1 is None:
        return None
    from .engine.embeddings import cached_embeddings

    part = chips.split(split)
    return cached_embeddings(
        stage1,
        standardize(part.images, chips.stats),
        exp.data_dir / "embeddings",
        batch_size=exp.profile.batch_size,
        device=exp.device,
        precision=exp.profile.precision,
    )


def _fit_run(exp: Experiment, run: Run, chips: ChipSet, out_dir: Path, progress: bool):
    """Train one run (or return it at once if its checkpoints say it is finished).

    Returns the training result, the run's frozen stage-1 network (None for ``none``)
    and the indices of its training chips in the stage-2 pool.
    """
    from .pretrained import pretrained_stage1
    from .train import fit_segmenter

    stage1 = (
        None
        if run.arm == "none"
        else pretrained_stage1(exp.for_event(run.arm), progress=progress)
    )
    subset = few_shot_subset(
        chips.split("stage2_train"),
        run.train_size,
        run.seed,
        draw=exp.profile.few_shot_draw,
    )
    embeddings = (
        None
        if stage1 is None
        else {
            split: split_embeddings(exp, stage1, chips, split)
            for split in ("stage2_train", "validation")
        }
    )
    result = fit_segmenter(
        chips,
        subset,
        profile=exp.profile,
        stage1=stage1,
        embeddings=embeddings,
        seed=run.seed,
        checkpoint_dir=out_dir / run.run_id / "checkpoints",
        device=exp.device,
        progress=progress,
    )
    return result, stage1, subset


def _tidy(run: Run, rows: Iterable[tuple[int, int, dict[str, float]]]) -> pd.DataFrame:
    records = []
    for rank, epoch, scores in rows:
        for metric, value in scores.items():
            records.append(
                {
                    "run_id": run.run_id,
                    "arm": run.arm,
                    "train_size": run.stored_size,
                    "seed": run.seed,
                    "checkpoint": rank,
                    "epoch": epoch,
                    "metric": metric,
                    "value": float(value),
                }
            )
    return pd.DataFrame.from_records(records)


def _run_timing(
    run: Run, result, chips: ChipSet, started: float, device
) -> dict[str, Any]:
    """What a finished run cost, for :mod:`sarslide.engine.grid_plan`'s estimates: its
    epochs, the median measured seconds per epoch (training + validation, from the
    history), the rest of the run's wall time (``overhead_seconds``: scoring, files) and
    the device."""
    from .engine.grid_plan import device_label

    seconds = (
        result.history["seconds"].to_numpy(dtype=float)
        if len(result.history)
        else np.zeros(0)
    )
    total = time.perf_counter() - started
    pool = len(chips.split("stage2_train"))
    n_train = run.train_size if run.train_size is not None else pool
    return {
        "run_id": run.run_id,
        "arm": run.arm,
        "train_size": run.train_size,
        "n_train": int(n_train),
        "pool_size": int(pool),
        "epochs": int(len(seconds)),
        "seconds_per_epoch": float(np.median(seconds)) if len(seconds) else None,
        "overhead_seconds": float(max(total - seconds.sum(), 0.0)),
        "device": device_label(device),
    }


def _run_health(result, chips: ChipSet, subset, profile: Profile, proba: np.ndarray):
    """The :class:`~sarslide.health.RunHealth` of a finished stage-2 run."""
    from .health import classify_run
    from .train import TrainConfig

    pool = chips.split("stage2_train")
    return classify_run(
        result.history,
        metric=result.metric,
        best_epoch=result.best_epoch,
        stopped_early=result.stopped_early,
        max_epochs=TrainConfig.from_profile(profile, "stage2").max_epochs,
        chance_metric=random_guess_aprc(chips.split("validation").labels),
        output_std=float(np.std(proba)),
        train_positives=int((pool.labels[np.asarray(subset)] > 0).sum()),
    )


def train_run(
    exp: Experiment,
    run: Run,
    *,
    out_dir: str | os.PathLike,
    num_threads: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Train and score one run; return its tidy rows (one per checkpoint × metric).

    The stage-1 model of the run's arm comes from
    :func:`sarslide.pretrained.pretrained_stage1` (cached; trained on first use). The
    mean test probabilities over the run's checkpoints are saved as
    ``<out_dir>/<run_id>/test_proba.npy``, its training health as ``health.json``
    beside it. ``train_size`` is stored as :data:`sarslide.metrics.SIZE_ALL` for "all
    chips". The rows and what the run cost are written to ``<out_dir>/runs/``
    (:mod:`sarslide.engine.results_table`). ``num_threads`` sets torch's CPU threads;
    ``progress`` shows progress bars.
    """
    import torch

    from .engine.checkpoints import checkpoint_info, load_checkpoint
    from .predict import predict_proba

    started = time.perf_counter()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    profile, device = exp.profile, exp.device
    out_dir = Path(out_dir)
    chips = prepare_event(exp)
    run_dir = out_dir / run.run_id
    result, stage1, subset = _fit_run(exp, run, chips, out_dir, progress)
    test = chips.split("test")
    images = standardize(test.images, chips.stats)
    test_emb = split_embeddings(exp, stage1, chips, "test")
    rows, members = [], []
    for rank, path in enumerate(result.checkpoints):
        model = load_checkpoint(path, "stage2", device="cpu")
        probabilities = predict_proba(
            model,
            images,
            device=device,
            precision=profile.precision,
            embeddings=test_emb,
        )
        members.append(probabilities)
        epoch = int(checkpoint_info(path).get("epoch", -1))
        rows.append((rank, epoch, score_probabilities(probabilities, test.labels)))
    mean = ensemble_mean(members)
    with (
        atomic_file(run_dir / _PROBA) as tmp,
        open(tmp, "wb") as f,
    ):  # np.save(path) would append ".npy"
        np.save(f, mean)
    health = _run_health(result, chips, subset, profile, mean)
    with atomic_file(run_dir / _HEALTH) as tmp:
        Path(tmp).write_text(json.dumps(health.to_dict(), indent=1))
    tidy = _tidy(run, rows)
    write_run_timing(
        out_dir, run.run_id, _run_timing(run, result, chips, started, device)
    )
    write_run_rows(out_dir, run.run_id, tidy)
    return tidy


def train_run_locked(
    exp: Experiment,
    run: Run,
    *,
    out_dir: str | os.PathLike,
    num_threads: int | None = None,
) -> pd.DataFrame:
    """:func:`train_run` under the run's lock
    (:func:`sarslide.engine.results_table.run_lock`): if another process finished the
    run meanwhile, its rows are read back instead."""
    out = Path(out_dir)
    with run_lock(out, run.run_id):
        path = run_file(out, run.run_id)
        if path.is_file():
            try:
                return pd.read_parquet(path)
            except (
                Exception
            ):  # a damaged file: score the run again (from its checkpoints)
                pass
        return train_run(exp, run, out_dir=out, num_threads=num_threads)


def run_models(
    exp: Experiment,
    run: Run,
    *,
    chips: ChipSet | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> list:
    """The kept checkpoints of one run as models (an ensemble), training the run first
    if it has not been trained — the same run, folder and checkpoints as
    :func:`train_grid` (``out_dir``: :func:`results_dir` by default). ``chips``: the
    experiment's chips where the caller holds them already (else
    :func:`~sarslide.datasets.prepare_event`)."""
    from .engine.checkpoints import load_checkpoints

    out = Path(out_dir) if out_dir is not None else results_dir(exp)
    chips = prepare_event(exp) if chips is None else chips
    result, _, _ = _fit_run(exp, run, chips, out, progress)
    return load_checkpoints(result.checkpoints, "stage2", device=exp.device or "cpu")


def score_baseline(test: ChipSet, *, window: int = SMOOTHING_WINDOW) -> pd.DataFrame:
    """Rows for the non-learned references on the test chips ``test``: the log-ratio
    change score (APRC only: it is not a probability, so there is no 0.5 threshold) and
    a random guess."""
    score = log_ratio_score(test.images, window=window)
    base = {
        "arm": BASELINE_ARM,
        "train_size": SIZE_BASELINE,
        "seed": 0,
        "checkpoint": 0,
        "epoch": 0,
    }
    return pd.DataFrame(
        [
            {
                "run_id": BASELINE_ARM,
                **base,
                "metric": "aprc",
                "value": aprc(np.nan_to_num(score, nan=0.0), test.labels),
            },
            {
                "run_id": "random",
                **base,
                "arm": "random",
                "metric": "aprc",
                "value": random_guess_aprc(test.labels),
            },
        ]
    )


def grid_plan(
    exp: Experiment, runs: Sequence[Run], *, out_dir: str | os.PathLike | None = None
):
    """How many of ``runs`` are missing from the results folder (``out_dir``:
    :func:`results_dir` by default), and an estimate of their time on the experiment's
    device from the measured per-epoch costs of finished runs
    (:func:`sarslide.engine.grid_plan.plan_grid`); builds and trains nothing.
    ``print(plan.describe())``."""
    from .engine.grid_plan import plan_grid

    out = Path(out_dir) if out_dir is not None else results_dir(exp)
    return plan_grid(
        runs, out, max_epochs=exp.profile.stage2_max_epochs, device=exp.device
    )


def train_grid(
    exp: Experiment,
    runs: Sequence[Run],
    *,
    out_dir: str | os.PathLike | None = None,
    scheduler: Any = None,
    num_threads: int | None = None,
    progress: bool = True,
    max_minutes: float | None = None,
) -> pd.DataFrame:
    """Train every run not yet in the results folder and return the whole table.

    Parameters
    ----------
    exp:
        The experiment: event, profile, data folder, device.
    runs:
        From :func:`experiment_grid` (or any subset).
    out_dir:
        Results folder; defaults to :func:`results_dir` (keyed on every setting except
        the grid's sizes and seeds, so partial grids merge into one table).
    scheduler:
        ``None`` (serial), ``"local"`` (a LocalCluster), ``"auto"``
        (:func:`sarslide.engine.dispatch.resolve_scheduler`: ``"local"`` on a CPU-only
        machine with several cores, else serial), a scheduler address or a
        :class:`distributed.Client`. An address that does not answer within
        ``SARSLIDE_NETWORK_TIMEOUT`` raises ``NetworkUnavailableError``.
    num_threads:
        Torch threads per run (``1`` on a multi-worker cluster to avoid
        oversubscription).
    progress:
        Print the plan (:func:`grid_plan`) before anything trains and show progress
        bars.
    max_minutes:
        A time budget: runs start only while the time spent is under it and the next
        run's estimate fits (the first missing run always starts, so every call makes
        progress); the grid stops cleanly between runs, and the next call goes on. Runs
        left out are in ``table.attrs["left_for_later"]``.

    The event's chips are prepared once, with each arm's stage-1 model, before any run
    starts (so parallel workers never train the same stage-1 network twice). Each
    finished run's rows go to their own file (``runs/<run_id>.parquet``) and the merged
    ``results.parquet`` is rewritten under a folder lock, so two processes on one folder
    lose no rows (:mod:`sarslide.engine.results_table`); a run being trained by another
    process is waited for and reused, not trained twice. A failed run raises after the
    finished ones are saved. Runs already in the folder are not run again: their ids are
    in ``table.attrs["reused_runs"]`` (and logged). A folder made with other settings is
    refused. When nothing is missing nothing is written, so a finished grid in a
    read-only folder is readable.
    """
    from .engine.dispatch import resolve_scheduler
    from .engine.grid_plan import TimeBudget

    budget = TimeBudget(max_minutes)
    scheduler, num_threads = resolve_scheduler(scheduler, exp.device, num_threads)
    out = Path(out_dir) if out_dir is not None else results_dir(exp)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(
        out,
        key=results_key(exp),
        event=exp.event,
        profile=exp.profile,
        shape_fields=GRID_SHAPE_FIELDS,
    )
    table = read_results(out)
    done = set(table["run_id"]) if len(table) else set()
    reused = sorted({r.run_id for r in runs} & done)
    if reused:
        _log.info("reusing %d finished runs from %s", len(reused), out)
    todo = [r for r in runs if r.run_id not in done]
    if progress and runs:
        print(grid_plan(exp, runs, out_dir=out).describe(), flush=True)
    if BASELINE_ARM not in done or todo:
        chips = prepare_event(exp)
        if BASELINE_ARM not in done:
            write_run_rows(out, BASELINE_FILE_ID, score_baseline(chips.split("test")))
            merge_results(out)
    if todo:
        _prepare_stage1(exp, todo, progress)
    left: list[str] = []
    bar = progress_bar(
        total=len(todo), desc="ablation runs", disable=not progress or not todo
    )
    try:
        for _rows in _dispatch(exp, todo, out, num_threads, scheduler, budget, left):
            merge_results(out)
            bar.update()
    finally:
        bar.close()
    if left and progress:
        print(
            f"time budget of {max_minutes:g} min reached: {len(left)} runs left for "
            "the next call",
            flush=True,
        )
    table = _sorted(read_results(out))
    table.attrs["reused_runs"] = reused  # run ids read back from the folder, not rerun
    table.attrs["left_for_later"] = left
    return table


def _prepare_stage1(exp: Experiment, todo: Sequence[Run], progress: bool) -> None:
    """Train (or find) each pretrained arm's stage-1 model once, before any dispatch."""
    from .pretrained import pretrained_stage1

    for arm in sorted({r.arm for r in todo} - {"none"}):
        pretrained_stage1(exp.for_event(arm), progress=progress)


def longest_first(runs: Sequence[Run]) -> list[Run]:
    """``runs`` by training size, largest first ("all" before every count), keeping
    the given order among runs of one size."""
    return sorted(runs, key=lambda r: -size_sort_key(r.stored_size))


def _dispatch(
    exp: Experiment,
    todo: Sequence[Run],
    out: Path,
    num_threads: int | None,
    scheduler: Any,
    budget,
    left: list[str],
) -> Iterator[pd.DataFrame]:
    """Each run's tidy rows as it finishes: in this process (``scheduler=None``) or on a
    dask cluster (:func:`sarslide.engine.dispatch.open_client`), in completion order.
    Runs stop starting once the ``budget``
    (:class:`sarslide.engine.grid_plan.TimeBudget`) is spent; their ids go to
    ``left``."""
    if scheduler is None:
        for i, run in enumerate(todo):
            if budget.max_s is not None:
                estimate = grid_plan(exp, [run], out_dir=out).per_run_s.get(run.run_id)
                if not budget.allows(estimate):
                    left.extend(r.run_id for r in todo[i:])
                    return
            yield train_run_locked(exp, run, out_dir=out, num_threads=num_threads)
        return
    if not todo:
        return
    from distributed import as_completed

    from .engine.dispatch import open_client

    client, cluster = open_client(scheduler)
    try:
        # largest training sets first (dask starts tasks in submission order): the
        # long runs then overlap, and the short ones fill the workers at the end
        # instead of one long run finishing alone (the results do not depend on order)
        futures = {
            client.submit(
                train_run_locked,
                exp,
                run,
                pure=False,
                key=f"sarslide-{run.run_id}-{uuid.uuid4().hex[:6]}",
                out_dir=out,
                num_threads=num_threads,
            ): run
            for run in longest_first(todo)
        }
        pending = dict(futures)
        for future in as_completed(list(futures)):
            pending.pop(future, None)
            yield future.result()
            if (
                budget.max_s is not None
                and budget.elapsed_s >= budget.max_s
                and pending
            ):
                client.cancel(list(pending))
                left.extend(run.run_id for run in pending.values())
                return
    finally:
        if cluster is not None:
            client.close()
            cluster.close()


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    if not len(table):
        return table
    return table.sort_values(
        ["arm", "train_size", "seed", "checkpoint", "metric"]
    ).reset_index(drop=True)


def run_means(table: pd.DataFrame) -> pd.DataFrame:
    """One row per learned run × metric: the run's mean over its kept checkpoints.

    Columns ``arm``, ``train_size``, ``seed``, ``run_id``, ``metric``, ``value``: the
    per-model spread behind Figure 3's error bars (one model = one seed's run).
    """
    learned = table[table["arm"].isin(ARMS)]
    return learned.groupby(
        ["arm", "train_size", "seed", "run_id", "metric"], as_index=False
    )["value"].mean()


def ensemble_metrics(ensembles: pd.DataFrame) -> pd.DataFrame:
    """:func:`ensemble_scores` as a tidy table (``arm, train_size, metric, value``).

    Each metric is computed once on the prediction averaged over every seed × checkpoint
    of a cell (probabilities averaged), the statistic the paper scores. Chapter 6 draws
    its Figures 2 and 3 and tests every finding on these same ensemble values, with
    intervals from :func:`sarslide.findings.hierarchical_bootstrap`; the per-model
    means of :func:`run_means` / :func:`summarize` (chapter 5's first look) are not
    them.
    """
    return ensembles.melt(
        id_vars=["arm", "train_size"],
        value_vars=list(METRICS),
        var_name="metric",
        value_name="value",
    )


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and SEM per arm × training size × metric.

    Each run is first reduced to the mean over its checkpoints; the mean and the
    standard error of the mean (ddof=1) are then taken over runs (seeds), the paper's
    error bars.
    """
    per_run = table.groupby(["arm", "train_size", "metric", "run_id"], as_index=False)[
        "value"
    ].mean()
    grouped = per_run.groupby(["arm", "train_size", "metric"])["value"]
    out = grouped.agg(mean="mean", n_runs="count").reset_index()
    out["sem"] = grouped.agg(
        lambda v: sem(v.to_numpy()) if len(v) > 1 else np.nan
    ).to_numpy()
    return out


def run_health(out_dir: str | os.PathLike, run_ids: Iterable[str]) -> dict[str, Any]:
    """The :class:`~sarslide.health.RunHealth` of each run in ``run_ids`` that has a
    record (``<out_dir>/<run_id>/health.json``), by id; runs without one are left
    out."""
    from .health import RunHealth

    found = {}
    for run_id in run_ids:
        path = Path(out_dir) / run_id / _HEALTH
        if path.exists():
            try:
                found[run_id] = RunHealth.from_dict(json.loads(path.read_text()))
            except (json.JSONDecodeError, TypeError, KeyError) as err:
                raise ValueError(
                    f"{path} is not a run-health record ({err}); delete the run's "
                    "folder "
                    f"{path.parent} and its rows to train it again"
                ) from None
    return found


def grid_health(table: pd.DataFrame, out_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per learned run of ``table``: ``run_id, arm, train_size, seed`` and its
    health (:func:`sarslide.health.health_table`; runs without a record are left
    out)."""
    from .health import health_table

    learned = table[table["arm"].isin(ARMS)]
    keys = learned.drop_duplicates("run_id").set_index("run_id")[
        ["arm", "train_size", "seed"]
    ]
    found = run_health(out_dir, keys.index)
    frame = health_table(
        ({"run_id": rid, **keys.loc[rid].to_dict()}, h) for rid, h in found.items()
    )
    if frame.empty:
        return frame
    return frame.sort_values(
        ["arm", "train_size", "seed"],
        key=lambda c: c.map(size_sort_key) if c.name == "train_size" else c,
    ).reset_index(drop=True)


def grid_histories(table: pd.DataFrame, out_dir: str | os.PathLike) -> pd.DataFrame:
    """Every learned run's learning curve, long: ``run_id, arm, train_size, seed,
    status, best_epoch`` and the history's columns (``epoch``, ``train_loss``,
    ``val_loss``, ``val_aprc``, ...), one row per run × epoch."""
    learned = table[table["arm"].isin(ARMS)].drop_duplicates("run_id")
    found = run_health(out_dir, learned["run_id"])
    frames = []
    for row in learned.itertuples():
        health = found.get(row.run_id)
        if health is None:
            continue
        curve = pd.DataFrame(health.history)
        curve.insert(0, "run_id", row.run_id)
        curve.insert(1, "arm", row.arm)
        curve.insert(2, "train_size", row.train_size)
        curve.insert(3, "seed", row.seed)
        curve.insert(4, "status", health.status)
        curve.insert(5, "best_epoch", health.best_epoch)
        frames.append(curve)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def ensemble_probabilities(
    table: pd.DataFrame, arm: str, train_size: int, out_dir: str | os.PathLike
) -> tuple[np.ndarray, int]:
    """Test probabilities ``(N, H, W)`` averaged over every checkpoint of every seed of
    one cell.

    Each run's saved mean is weighted by its number of checkpoints, so the result equals
    the plain mean over all checkpoints. Returns the mean and the number of models.
    Runs whose health record (:func:`run_health`) says they collapsed
    (:data:`sarslide.health.EXCLUDED`) are left out, with a warning that names them;
    if no run of the cell is left, ValueError.
    """
    import warnings

    from .health import EXCLUDED

    group = table[(table["arm"] == arm) & (table["train_size"] == train_size)]
    if group.empty:
        raise ValueError(
            f"no runs for arm={arm!r}, train_size={train_size} in the table"
        )
    unhealthy = {
        rid: h.status
        for rid, h in run_health(out_dir, group["run_id"].unique()).items()
        if h.status in EXCLUDED
    }
    if unhealthy:
        kept = sorted(set(group["run_id"]) - set(unhealthy))
        if not kept:
            raise ValueError(
                f"every run of arm={arm!r}, train_size={train_size} collapsed "
                f"({unhealthy}); "
                "retrain them (another seed or recipe) before ensembling"
            )
        warnings.warn(
            f"left out of the {arm!r} x {train_size} ensemble: {unhealthy} "
            "(see sarslide.health)",
            UserWarning,
            stacklevel=2,
        )
        group = group[group["run_id"].isin(kept)]
    weights = group.groupby("run_id")["checkpoint"].nunique()
    means = (np.load(Path(out_dir) / run_id / _PROBA) for run_id in weights.index)
    return ensemble_mean(means, weights=weights.to_numpy()), int(weights.sum())


def ensemble_scores(
    table: pd.DataFrame,
    out_dir: str | os.PathLike,
    labels: np.ndarray,
    *,
    n_boot: int = 200,
    boot_seed: int = 0,
) -> pd.DataFrame:
    """Metrics of each arm × size on probabilities averaged over all its seeds ×
    checkpoints (:func:`ensemble_probabilities`, read from the results folder
    ``out_dir``), with a stratified percentile bootstrap 95 % interval of the APRC over
    test chips (:func:`sarslide.metrics.stratified_aprc_interval`, ``n_boot`` resamples
    drawn with ``boot_seed``).

    ``labels`` (N, H, W) are the test labels (``prepare_event(exp).split("test")``).
    """
    learned = table[table["arm"].isin(ARMS)]
    records = []
    for (arm, size), _ in learned.groupby(["arm", "train_size"]):
        mean, n_models = ensemble_probabilities(table, arm, size, out_dir)
        scores = score_probabilities(mean, labels)
        low, high = stratified_aprc_interval(
            mean, labels, n_boot=n_boot, seed=boot_seed
        )
        records.append(
            {
                "arm": arm,
                "train_size": size,
                "n_models": n_models,
                **scores,
                "aprc_low": low,
                "aprc_high": high,
            }
        )
    return pd.DataFrame.from_records(records)


#: The paper's reported APRC, read from its Figure 2; :data:`sarslide.metrics.SIZE_ALL`
#: is "all" (110 chips in the paper).
PAPER_APRC: dict[str, dict[int, float]] = {
    "none": {2: 0.048, 5: 0.080, 10: 0.132, 20: 0.183, SIZE_ALL: 0.323},
    "hokkaido": {2: 0.047, 5: 0.088, 10: 0.168, 20: 0.179, SIZE_ALL: 0.337},
    "kaikoura": {2: 0.048, 5: 0.075, 10: 0.145, 20: 0.180, SIZE_ALL: 0.337},
}


def paper_comparison(summary: pd.DataFrame) -> pd.DataFrame:
    """Side by side: this grid's mean APRC per arm × size and the paper's reported
    APRC."""
    ours = summary[summary["metric"] == "aprc"].set_index(["arm", "train_size"])["mean"]
    rows = []
    for arm, by_size in PAPER_APRC.items():
        for size, value in by_size.items():
            rows.append(
                {
                    "arm": arm,
                    "train_size": size,
                    "paper_aprc": value,
                    "our_aprc": float(ours.get((arm, size), np.nan)),
                }
            )
    return pd.DataFrame(rows)
