"""The ablation grid: stage-2 training-set size × stage-1 pretraining × seed.

The paper's experiment (Böhm et al. 2022, Figures 2–3) trains the stage-2 segmenter on
2, 5, 10, 20 and all (110) labelled Hokkaido chips, three seeds each (five for two
chips), in three *arms*:

``none``
    no pretraining (the segmenter alone),
``hokkaido``
    frozen stage-1 embeddings pretrained on Hokkaido chips,
``kaikoura``
    frozen stage-1 embeddings pretrained on Kaikōura chips (point labels, another country).

Every run draws its own training subset from the stage-2 training split — at random, as
the paper does, or balanced (the profile's ``few_shot_draw``, see
:func:`sarslide.chips.few_shot_subset`) — keeps its top-k checkpoints by validation APRC and
scores each on the test split.

Results are a *tidy* table — one row per run × checkpoint × metric — stored as Parquet
and written atomically after every finished run, so an interrupted grid resumes where it
stopped (finished runs are skipped). Runs can be dispatched to a dask.distributed cluster:
``scheduler="local"`` starts a :class:`~distributed.LocalCluster`, an address such as
``"tcp://10.0.0.5:8786"`` uses a real cluster, and ``None`` runs serially in-process.

Each run also saves the mean of its checkpoints' test probabilities, so arm-level
ensembles over seeds × checkpoints (probabilities averaged, see :mod:`sarslide.metrics`)
are computed without retraining; the log-ratio change-detection score is the
non-learned baseline in every table.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from .atomic import atomic_file
from .baseline import log_ratio_score
from .chips import ChipSet, few_shot_subset
from .datasets import data_dir, prepare_event, store_key
from .metrics import (
    GRID_METRICS,
    aprc,
    ensemble_mean,
    random_guess_aprc,
    score_probabilities,
    sem,
    stratified_aprc_interval,
)
from .profiles import Profile, get_profile
from .progress import progress_bar
from .transforms import standardize

__all__ = [
    "ARMS",
    "BASELINE_ARM",
    "METRICS",
    "SIZE_ALL",
    "SIZE_BASELINE",
    "size_sort_key",
    "Run",
    "experiment_grid",
    "run_one",
    "split_embeddings",
    "run_models",
    "run_baseline",
    "run_grid",
    "summarize",
    "run_means",
    "ensemble_metrics",
    "results_dir",
    "ensemble_probabilities",
    "ensemble_scores",
    "paper_comparison",
    "PAPER_APRC",
]

_log = logging.getLogger(__name__)

ARMS: tuple[str, ...] = ("none", "hokkaido", "kaikoura")
BASELINE_ARM = "log_ratio"
METRICS: tuple[str, ...] = GRID_METRICS

#: How the results table stores a training size: the number of chips, or these codes.
#: ``SIZE_ALL``: the whole stage-2 training split ("all", ``Run.train_size is None``);
#: ``SIZE_BASELINE``: the non-learned reference rows (log-ratio, random guess).
SIZE_ALL = -1
SIZE_BASELINE = 0


def size_sort_key(size: int) -> float:
    """Sort key for stored training sizes: numbers in order, :data:`SIZE_ALL` last."""
    return np.inf if int(size) == SIZE_ALL else float(size)

_RESULTS = "results.parquet"
_SETTINGS = "settings.json"
_PROBA = "test_proba.npy"


@dataclass(frozen=True)
class Run:
    """One cell of the grid: pretraining arm, training-set size (None = all) and seed."""

    arm: str
    train_size: int | None
    seed: int

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            raise ValueError(f"unknown arm {self.arm!r}; arms are {list(ARMS)}")
        if self.train_size is not None and self.train_size < 2:
            raise ValueError(f"train_size={self.train_size}: use at least 2 chips (one of each kind)")

    @property
    def stored_size(self) -> int:
        """``train_size`` as the results table stores it (:data:`SIZE_ALL` for all chips)."""
        return SIZE_ALL if self.train_size is None else self.train_size

    @property
    def run_id(self) -> str:
        size = "all" if self.train_size is None else f"{self.train_size:03d}"
        return f"{self.arm}-n{size}-s{self.seed}"


def experiment_grid(profile: Profile | str | None = None, arms: Sequence[str] = ARMS) -> list[Run]:
    """All runs of a profile: arms × ``train_sizes`` × seeds (``seeds_smallest`` for the smallest size)."""
    profile = get_profile(profile)
    sizes = list(profile.train_sizes)
    finite = [s for s in sizes if s is not None]
    smallest = min(finite) if finite else None
    runs = []
    for arm in arms:
        for size in sizes:
            seeds = profile.seeds_smallest if size == smallest else profile.seeds
            runs.extend(Run(arm, size, seed) for seed in seeds)
    return runs


def _write_table(table: pd.DataFrame, path: Path) -> None:
    with atomic_file(path) as tmp:
        table.to_parquet(tmp, index=False)


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


def split_embeddings(stage1, chips: ChipSet, split: str, profile: Profile, cache_dir, device=None):
    """The frozen stage-1 embeddings of one split's standardised chips, cached per event.

    Every run of an arm shares one frozen stage-1 network, so the embeddings of the
    event's stage-2, validation and test chips are computed once per (arm, event,
    settings) and stored with the chips (:func:`sarslide.embeddings.cached_embeddings`,
    keyed on the weights, the chips and the precision); every run and chapter 4 reuse them.
    Returns ``None`` for the arm without pretraining.
    """
    if stage1 is None:
        return None
    from .embeddings import cached_embeddings

    part = chips.split(split)
    return cached_embeddings(
        stage1, standardize(part.images, chips.stats), data_dir(cache_dir) / "embeddings",
        batch_size=profile.batch_size, device=device, precision=profile.precision,
    )  # fmt: skip


def _fit_run(run: Run, chips: ChipSet, profile: Profile, out_dir: Path, cache_dir, device, progress):
    """Train one run (or return it at once if its checkpoints say it is finished).

    Returns the training result and the run's frozen stage-1 network (None for ``none``).
    """
    import torch

    from .models import Segmenter
    from .pretrained import pretrained_stage1
    from .train import TrainConfig, fit_chipset, seed_everything

    stage1 = None if run.arm == "none" else pretrained_stage1(run.arm, profile, cache_dir=cache_dir, progress=progress)
    subset = few_shot_subset(chips.split("stage2_train"), run.train_size, run.seed, draw=profile.few_shot_draw)
    pool_emb = split_embeddings(stage1, chips, "stage2_train", profile, cache_dir, device)
    val_emb = split_embeddings(stage1, chips, "validation", profile, cache_dir, device)
    seed_everything(run.seed)
    model = Segmenter(stage1)
    result = fit_chipset(
        model,
        chips,
        task="stage2",
        train_indices=subset,
        config=TrainConfig.from_profile(profile, "stage2"),
        seed=run.seed,
        checkpoint_dir=out_dir / run.run_id / "checkpoints",
        device=device,
        progress=progress,
        train_embeddings=None if pool_emb is None else pool_emb[torch.as_tensor(subset, dtype=torch.long)],
        val_embeddings=val_emb,
    )
    return result, stage1


def run_one(
    run: Run,
    *,
    event: str = "hokkaido",
    profile: Profile | str | None = None,
    out_dir: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    device: str | None = None,
    num_threads: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Train and score one run; return its tidy rows (one per checkpoint × metric).

    The stage-1 model of the run's arm comes from
    :func:`sarslide.pretrained.pretrained_stage1` (cached; trained on first use). The mean test
    probabilities over the run's checkpoints are saved as ``<out_dir>/<run_id>/test_proba.npy``.
    ``train_size`` is stored as :data:`SIZE_ALL` for "all chips".
    """
    import torch

    from .checkpoints import checkpoint_info, load_checkpoint
    from .predict import predict_proba

    if num_threads is not None:
        torch.set_num_threads(num_threads)
    profile = get_profile(profile)
    chips = prepare_event(event, profile, cache_dir=cache_dir)
    run_dir = Path(out_dir) / run.run_id
    result, stage1 = _fit_run(run, chips, profile, Path(out_dir), cache_dir, device, progress)
    test = chips.split("test")
    images = standardize(test.images, chips.stats)
    test_emb = split_embeddings(stage1, chips, "test", profile, cache_dir, device)
    rows, members = [], []
    for rank, path in enumerate(result.checkpoints):
        model = load_checkpoint(path, "stage2", device="cpu")
        probabilities = predict_proba(model, images, device=device, precision=profile.precision, embeddings=test_emb)
        members.append(probabilities)
        epoch = int(checkpoint_info(path).get("epoch", -1))
        rows.append((rank, epoch, score_probabilities(probabilities, test.labels)))
    with atomic_file(run_dir / _PROBA) as tmp, open(tmp, "wb") as f:  # np.save(path) would append ".npy"
        np.save(f, ensemble_mean(members))
    return _tidy(run, rows)


def run_models(
    run: Run,
    *,
    event: str = "hokkaido",
    profile: Profile | str | None = None,
    out_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | None = None,
    progress: bool = True,
) -> list:
    """The kept checkpoints of one run as models (an ensemble), training the run first if
    it has not been trained — the same run, folder and checkpoints as :func:`run_grid`."""
    from .checkpoints import load_checkpoints

    profile = get_profile(profile)
    out = Path(out_dir) if out_dir is not None else results_dir(event, profile, cache_dir)
    chips = prepare_event(event, profile, cache_dir=cache_dir)
    result, _ = _fit_run(run, chips, profile, out, cache_dir, device, progress)
    return load_checkpoints(result.checkpoints, "stage2", device=device or "cpu")


def run_baseline(
    *,
    event: str = "hokkaido",
    profile: Profile | str | None = None,
    cache_dir: str | os.PathLike | None = None,
    window: int = 5,
) -> pd.DataFrame:
    """Rows for the non-learned references on the test split: the log-ratio change score
    (APRC only: it is not a probability, so there is no 0.5 threshold) and a random guess."""
    profile = get_profile(profile)
    test = prepare_event(event, profile, cache_dir=cache_dir).split("test")
    score = log_ratio_score(test.images, window=window)
    base = {"arm": BASELINE_ARM, "train_size": SIZE_BASELINE, "seed": 0, "checkpoint": 0, "epoch": 0}
    return pd.DataFrame(
        [
            {"run_id": BASELINE_ARM, **base, "metric": "aprc", "value": aprc(np.nan_to_num(score, nan=0.0), test.labels)},
            {"run_id": "random", **base, "arm": "random", "metric": "aprc", "value": random_guess_aprc(test.labels)},
        ]
    )


def _check_settings(out: Path, event: str, profile: Profile) -> None:
    """Refuse to mix runs made under other settings into one results folder.

    The folder records the fingerprint (:func:`sarslide.datasets.store_key`) of the event,
    profile and data seed it was made with; a folder made with other settings is an error
    that names both fingerprints and the fix.
    """
    key = store_key(event, profile, profile.data_seed)
    marker = out / _SETTINGS
    if marker.exists():
        old = json.loads(marker.read_text())
        if old.get("key") != key:
            changed = sorted(
                k for k in set(old.get("profile", {})) | set(asdict(profile))
                if old.get("profile", {}).get(k) != json.loads(json.dumps(asdict(profile), default=str)).get(k)
            )
            raise ValueError(
                f"{out} holds results made with other settings (fingerprint {old.get('key')} "
                f"for event {old.get('event')!r}, this run {key}; changed: {changed or 'event'}); "
                "use another out_dir, or the default results_dir(event, profile), which is keyed "
                "on the settings"
            )
        return
    payload = {"key": key, "event": event, "profile": asdict(profile)}
    with atomic_file(marker) as tmp:
        Path(tmp).write_text(json.dumps(payload, indent=2, default=str))


def _load_results(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def _client(scheduler: Any):
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=min(os.cpu_count() or 1, 4), threads_per_worker=1, processes=True)
        return Client(cluster), cluster
    if isinstance(scheduler, str):
        return Client(scheduler), None
    raise ValueError(f"scheduler={scheduler!r}: use None (serial), 'local', an address or a distributed.Client")


def run_grid(
    runs: Sequence[Run],
    *,
    event: str = "hokkaido",
    profile: Profile | str | None = None,
    out_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    scheduler: Any = None,
    device: str | None = None,
    num_threads: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every run not yet in ``<out_dir>/results.parquet`` and return the whole table.

    Parameters
    ----------
    runs:
        From :func:`experiment_grid` (or any subset).
    out_dir:
        Results folder; defaults to ``<data dir>/ablation/<event>-<profile>``.
    scheduler:
        ``None`` (serial), ``"local"`` (a LocalCluster), a scheduler address or a
        :class:`distributed.Client`.
    num_threads:
        Torch threads per run (``1`` on a multi-worker cluster to avoid oversubscription).

    The table is written atomically after each finished run, plus once with the baseline
    rows; a failed run raises after the finished ones are saved. Runs already in the table
    are not run again: their ids are in ``table.attrs["reused_runs"]`` (and logged). The
    folder is keyed on the settings (:func:`results_dir`), and a folder made with other
    settings is refused, so a reused run always comes from the same settings.
    """
    profile = get_profile(profile)
    out = Path(out_dir) if out_dir is not None else results_dir(event, profile, cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / _RESULTS
    _check_settings(out, event, profile)
    table = _load_results(path)
    done = set(table["run_id"]) if len(table) else set()
    reused = sorted({r.run_id for r in runs} & done)
    if reused:
        _log.info("reusing %d finished runs from %s", len(reused), path)
    if BASELINE_ARM not in done:
        table = pd.concat([table, run_baseline(event=event, profile=profile, cache_dir=cache_dir)], ignore_index=True)
        _write_table(table, path)
    todo = [r for r in runs if r.run_id not in done]
    if todo:
        _prepare_shared_inputs(todo, event, profile, cache_dir, progress)
    kwargs = dict(event=event, profile=profile, out_dir=out, cache_dir=cache_dir, device=device, num_threads=num_threads)

    def add(rows: pd.DataFrame) -> None:
        nonlocal table
        table = pd.concat([table, rows], ignore_index=True)
        _write_table(table, path)

    bar = progress_bar(total=len(todo), desc="ablation runs", disable=not progress or not todo)
    try:
        for rows in _dispatch(todo, kwargs, scheduler):
            add(rows)
            bar.update()
    finally:
        bar.close()
    table = _sorted(table)
    table.attrs["reused_runs"] = reused  # run ids read back from results.parquet, not rerun
    return table


def _prepare_shared_inputs(todo: Sequence[Run], event: str, profile: Profile, cache_dir, progress: bool) -> None:
    """Build what every run shares once, before any dispatch: the chips and each arm's
    stage-1 model (so parallel workers never train the same stage-1 network twice)."""
    from .pretrained import pretrained_stage1

    prepare_event(event, profile, cache_dir=cache_dir)
    for arm in sorted({r.arm for r in todo} - {"none"}):
        pretrained_stage1(arm, profile, cache_dir=cache_dir, progress=progress)


def _dispatch(todo: Sequence[Run], kwargs: dict[str, Any], scheduler: Any) -> Iterator[pd.DataFrame]:
    """Each run's tidy rows as it finishes: in this process (``scheduler=None``) or on a
    dask cluster (:func:`_client`), in completion order."""
    if scheduler is None:
        for run in todo:
            yield run_one(run, **kwargs)
        return
    if not todo:
        return
    from distributed import as_completed

    client, cluster = _client(scheduler)
    try:
        futures = [
            client.submit(run_one, run, pure=False, key=f"sarslide-{run.run_id}-{uuid.uuid4().hex[:6]}", **kwargs)
            for run in todo
        ]
        for future in as_completed(futures):
            yield future.result()
    finally:
        if cluster is not None:
            client.close()
            cluster.close()


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    if not len(table):
        return table
    return table.sort_values(["arm", "train_size", "seed", "checkpoint", "metric"]).reset_index(drop=True)


def run_means(table: pd.DataFrame) -> pd.DataFrame:
    """One row per learned run × metric: the run's mean over its kept checkpoints.

    Columns ``arm``, ``train_size``, ``seed``, ``run_id``, ``metric``, ``value``: the
    per-model spread behind Figure 3's error bars (one model = one seed's run).
    """
    learned = table[table["arm"].isin(ARMS)]
    return learned.groupby(["arm", "train_size", "seed", "run_id", "metric"], as_index=False)["value"].mean()


def ensemble_metrics(ensembles: pd.DataFrame) -> pd.DataFrame:
    """:func:`ensemble_scores` as a tidy table (``arm, train_size, metric, value``).

    Each metric is computed once on the prediction averaged over every seed × checkpoint
    of a cell (probabilities averaged), the statistic the paper scores. Chapter 6 draws
    its Figures 2 and 3 and tests every finding on these same ensemble values, with
    intervals from :func:`sarslide.findings.hierarchical_bootstrap`; the per-model
    means of :func:`run_means` / :func:`summarize` (chapter 5's first look) are not them.
    """
    return ensembles.melt(id_vars=["arm", "train_size"], value_vars=list(METRICS),
                          var_name="metric", value_name="value")  # fmt: skip


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and SEM per arm × training size × metric.

    Each run is first reduced to the mean over its checkpoints; the mean and the standard
    error of the mean (ddof=1) are then taken over runs (seeds), the paper's error bars.
    """
    per_run = table.groupby(["arm", "train_size", "metric", "run_id"], as_index=False)["value"].mean()
    grouped = per_run.groupby(["arm", "train_size", "metric"])["value"]
    out = grouped.agg(mean="mean", n_runs="count").reset_index()
    out["sem"] = grouped.agg(lambda v: sem(v.to_numpy()) if len(v) > 1 else np.nan).to_numpy()
    return out


def results_dir(event: str = "hokkaido", profile: Profile | str | None = None,
                cache_dir: str | os.PathLike | None = None) -> Path:
    """The default results folder of a grid: ``<data dir>/ablation/<event>-<profile>-<key>``.

    ``key`` is :func:`sarslide.datasets.store_key`, a hash of every profile setting and the
    data seed, so results made under other settings are never returned for these.
    """
    profile = get_profile(profile)
    return data_dir(cache_dir) / "ablation" / f"{event}-{profile.name}-{store_key(event, profile, profile.data_seed)}"


def ensemble_probabilities(table: pd.DataFrame, arm: str, train_size: int, out_dir: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Test probabilities ``(N, H, W)`` averaged over every checkpoint of every seed of one cell.

    Each run's saved mean is weighted by its number of checkpoints, so the result equals
    the plain mean over all checkpoints. Returns the mean and the number of models.
    """
    group = table[(table["arm"] == arm) & (table["train_size"] == train_size)]
    if group.empty:
        raise ValueError(f"no runs for arm={arm!r}, train_size={train_size} in the table")
    weights = group.groupby("run_id")["checkpoint"].nunique()
    means = (np.load(Path(out_dir) / run_id / _PROBA) for run_id in weights.index)
    return ensemble_mean(means, weights=weights.to_numpy()), int(weights.sum())


def ensemble_scores(
    table: pd.DataFrame,
    *,
    event: str = "hokkaido",
    profile: Profile | str | None = None,
    out_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    n_boot: int = 200,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> pd.DataFrame:
    """Metrics of each arm × size on probabilities averaged over all its seeds × checkpoints
    (:func:`ensemble_probabilities`), with a stratified percentile bootstrap 95 % interval
    of the APRC over test chips (:func:`stratified_aprc_interval`).

    ``labels`` (N, H, W) are the test labels; by default those of the prepared event.
    """
    out = Path(out_dir) if out_dir is not None else results_dir(event, profile, cache_dir)
    if labels is None:
        labels = prepare_event(event, profile, cache_dir=cache_dir).split("test").labels
    learned = table[table["arm"].isin(ARMS)]
    records = []
    for (arm, size), _ in learned.groupby(["arm", "train_size"]):
        mean, n_models = ensemble_probabilities(table, arm, size, out)
        scores = score_probabilities(mean, labels)
        low, high = stratified_aprc_interval(mean, labels, n_boot=n_boot, seed=seed)
        records.append({"arm": arm, "train_size": size, "n_models": n_models, **scores,
                        "aprc_low": low, "aprc_high": high})
    return pd.DataFrame.from_records(records)


#: The paper's reported APRC, read from its Figure 2; :data:`SIZE_ALL` is "all" (110 chips
#: in the paper).
PAPER_APRC: dict[str, dict[int, float]] = {
    "none": {2: 0.048, 5: 0.080, 10: 0.132, 20: 0.183, SIZE_ALL: 0.323},
    "hokkaido": {2: 0.047, 5: 0.088, 10: 0.168, 20: 0.179, SIZE_ALL: 0.337},
    "kaikoura": {2: 0.048, 5: 0.075, 10: 0.145, 20: 0.180, SIZE_ALL: 0.337},
}


def paper_comparison(summary: pd.DataFrame) -> pd.DataFrame:
    """Side by side: this grid's mean APRC per arm × size and the paper's reported APRC."""
    ours = summary[summary["metric"] == "aprc"].set_index(["arm", "train_size"])["mean"]
    rows = []
    for arm, by_size in PAPER_APRC.items():
        for size, value in by_size.items():
            rows.append({"arm": arm, "train_size": size, "paper_aprc": value,
                         "our_aprc": float(ours.get((arm, size), np.nan))})
    return pd.DataFrame(rows)
