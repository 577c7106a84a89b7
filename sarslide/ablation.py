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

Every run draws its own training subset from the stage-2 training split — at random, as
the paper does, or balanced (the profile's ``few_shot_draw``, see
:func:`sarslide.chips.few_shot_subset`) — keeps its top-k checkpoints by validation APRC
and scores each on the test split.

Results are a *tidy* table — one row per run × checkpoint × metric — stored as Parquet,
one file per finished run merged on read (:mod:`sarslide.engine.results_table`), so an
interrupted grid resumes where it stopped (finished runs are skipped) and two processes
on one folder lose no rows. :func:`grid_plan` says how many runs are missing and about
how long they take here; ``run_grid(max_minutes=...)`` stops between runs. Runs can be
dispatched to a dask.distributed cluster: ``scheduler="local"`` starts a
:class:`~distributed.LocalCluster`, an address such as ``"tcp://10.0.0.5:8786"`` uses a
real cluster, and ``None`` runs serially in-process.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from .baseline import log_ratio_score
from .chips import ChipSet, few_shot_subset
from .datasets import data_dir, prepare_event, store_key
from .engine.atomic import atomic_file
from .engine.progress import progress_bar
from .engine.results_table import (
    BASELINE_FILE_ID,
    RESULTS_FILE,
    merge_results,
    read_results,
    run_file,
    run_lock,
    write_run_rows,
    write_run_timing,
)
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
    "run_one_locked",
    "split_embeddings",
    "run_models",
    "run_baseline",
    "run_grid",
    "resolve_scheduler",
    "longest_first",
    "summarize",
    "run_means",
    "ensemble_metrics",
    "results_dir",
    "results_key",
    "GRID_SHAPE_FIELDS",
    "grid_plan",
    "ensemble_probabilities",
    "run_health",
    "grid_health",
    "grid_histories",
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


_RESULTS = RESULTS_FILE
_SETTINGS = "settings.json"
_PROBA = "test_proba.npy"
_HEALTH = "health.json"


@dataclass(frozen=True)
class Run:
    """One cell of the grid: pretraining arm, training-set size (None = all) and
    seed."""

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
        """``train_size`` as the results table stores it (:data:`SIZE_ALL` for all
        chips)."""
        return SIZE_ALL if self.train_size is None else self.train_size

    @property
    def run_id(self) -> str:
        size = "all" if self.train_size is None else f"{self.train_size:03d}"
        return f"{self.arm}-n{size}-s{self.seed}"


def experiment_grid(
    profile: Profile | str | None = None, arms: Sequence[str] = ARMS
) -> list[Run]:
    """All runs of a profile: arms × ``train_sizes`` × seeds (``seeds_smallest`` for the
    smallest size)."""
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
    the
    device."""
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


def split_embeddings(
    stage1, chips: ChipSet, split: str, profile: Profile, cache_dir, device=None
):
    """The frozen stage-1 embeddings of one split's standardised chips, cached per
    event.

    Every run of an arm shares one frozen stage-1 network, so the embeddings of the
    event's stage-2, validation and test chips are computed once per (arm, event,
    settings) and stored with the chips
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
        data_dir(cache_dir) / "embeddings",
        batch_size=profile.batch_size,
        device=device,
        precision=profile.precision,
    )


def _fit_run(
    run: Run,
    chips: ChipSet,
    profile: Profile,
    out_dir: Path,
    cache_dir,
    device,
    progress,
):
    """Train one run (or return it at once if its checkpoints say it is finished).

    Returns the training result and the run's frozen stage-1 network (None for
    ``none``).
    """
    import torch

    from .models import Segmenter
    from .pretrained import pretrained_stage1
    from .train import TrainConfig, TrainingData, fit, seed_everything

    stage1 = (
        None
        if run.arm == "none"
        else pretrained_stage1(run.arm, profile, cache_dir=cache_dir, progress=progress)
    )
    subset = few_shot_subset(
        chips.split("stage2_train"),
        run.train_size,
        run.seed,
        draw=profile.few_shot_draw,
    )
    pool_emb = split_embeddings(
        stage1, chips, "stage2_train", profile, cache_dir, device
    )
    val_emb = split_embeddings(stage1, chips, "validation", profile, cache_dir, device)
    seed_everything(run.seed)
    model = Segmenter.from_profile(profile, stage1)
    result = fit(
        model,
        TrainingData.from_chipset(
            chips,
            "stage2_train",
            train_indices=subset,
            train_embeddings=None
            if pool_emb is None
            else pool_emb[torch.as_tensor(subset, dtype=torch.long)],
            val_embeddings=val_emb,
        ),
        task="stage2",
        config=TrainConfig.from_profile(profile, "stage2"),
        seed=run.seed,
        checkpoint_dir=out_dir / run.run_id / "checkpoints",
        device=device,
        show_progress=progress,
    )
    return result, stage1, subset


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
    :func:`sarslide.pretrained.pretrained_stage1` (cached; trained on first use). The
    mean test probabilities over the run's checkpoints are saved as
    ``<out_dir>/<run_id>/test_proba.npy``. ``train_size`` is stored as :data:`SIZE_ALL`
    for "all chips". The rows and what the run cost are written to ``<out_dir>/runs/``
    (:mod:`sarslide.engine.results_table`).
    """
    import torch

    from .engine.checkpoints import checkpoint_info, load_checkpoint
    from .predict import predict_proba

    started = time.perf_counter()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    profile = get_profile(profile)
    chips = prepare_event(event, profile, cache_dir=cache_dir)
    run_dir = Path(out_dir) / run.run_id
    result, stage1, subset = _fit_run(
        run, chips, profile, Path(out_dir), cache_dir, device, progress
    )
    test = chips.split("test")
    images = standardize(test.images, chips.stats)
    test_emb = split_embeddings(stage1, chips, "test", profile, cache_dir, device)
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
    """The kept checkpoints of one run as models (an ensemble), training the run first
    if it has not been trained — the same run, folder and checkpoints as
    :func:`run_grid`."""
    from .engine.checkpoints import load_checkpoints

    profile = get_profile(profile)
    out = (
        Path(out_dir) if out_dir is not None else results_dir(event, profile, cache_dir)
    )
    chips = prepare_event(event, profile, cache_dir=cache_dir)
    result, _, _ = _fit_run(run, chips, profile, out, cache_dir, device, progress)
    return load_checkpoints(result.checkpoints, "stage2", device=device or "cpu")


def run_baseline(
    *,
    event: str = "hokkaido",
    profile: Profile | str | None = None,
    cache_dir: str | os.PathLike | None = None,
    window: int = 5,
) -> pd.DataFrame:
    """Rows for the non-learned references on the test split: the log-ratio change score
    (APRC only: it is not a probability, so there is no 0.5 threshold) and a random
    guess."""
    profile = get_profile(profile)
    test = prepare_event(event, profile, cache_dir=cache_dir).split("test")
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


#: Profile fields that choose *which* runs a grid holds, not how a run is made: a grid
# made : with a subset of sizes or seeds (``--set train_sizes=2``) shares its results
# folder and : table with the full grid, so partial grids merge (:func:`results_key`).
GRID_SHAPE_FIELDS: tuple[str, ...] = ("train_sizes", "seeds", "seeds_smallest")
_SETTINGS_FORMAT = 2


def results_key(event: str, profile: Profile | str | None = None) -> str:
    """The fingerprint of a results folder: :func:`sarslide.datasets.store_key` of every
    profile setting that changes a run (all but :data:`GRID_SHAPE_FIELDS` and the
    name)."""
    from dataclasses import fields

    profile = get_profile(profile)
    keep = [
        f.name for f in fields(profile) if f.name not in GRID_SHAPE_FIELDS + ("name",)
    ]
    return store_key(event, profile, profile.data_seed, fields=keep)


def _read_settings(marker: Path) -> dict[str, Any]:
    try:
        old = json.loads(marker.read_text())
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
        return old
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{marker} is unreadable ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:80]}); it "
            "records which settings made the results in its folder. If they were made "
            "with "
            f"these settings, delete it (rm '{marker}') and run again (it is "
            "rewritten); "
            "otherwise use another out_dir"
        ) from None


def _legacy_key_matches(old: dict[str, Any], event: str, profile: Profile) -> bool:
    """Whether a marker of an older version (keyed on every setting, grid shape
    included) was written by these settings: its key is recomputed with its own grid
    shape."""
    stored = old.get("profile", {})
    try:
        shape = {
            "train_sizes": tuple(stored["train_sizes"]),
            "seeds": tuple(stored["seeds"]),
            "seeds_smallest": tuple(stored["seeds_smallest"]),
        }
    except (KeyError, TypeError):
        return False
    return old.get("key") == store_key(
        event, profile.with_overrides(**shape), profile.data_seed
    )


def _check_settings(out: Path, event: str, profile: Profile) -> None:
    """Refuse to mix runs made under other settings into one results folder.

    The folder records the fingerprint (:func:`results_key`) of the event, profile and
    data seed it was made with; a folder made with other settings is an error that names
    both fingerprints and the fix. Only :data:`GRID_SHAPE_FIELDS` may differ. A broken
    ``settings.json`` is named, with the fix. Nothing is written when the marker is
    there (a finished grid in a read-only folder stays readable).
    """
    key = results_key(event, profile)
    marker = out / _SETTINGS
    if marker.exists():
        old = _read_settings(marker)
        if old.get("key") == key and old.get("format") == _SETTINGS_FORMAT:
            return
        if old.get("format") != _SETTINGS_FORMAT and _legacy_key_matches(
            old, event, profile
        ):
            return
        normal = json.loads(json.dumps(asdict(profile), default=str))
        changed = sorted(
            k
            for k in set(old.get("profile", {})) | set(normal)
            if k not in GRID_SHAPE_FIELDS
            and old.get("profile", {}).get(k) != normal.get(k)
        )
        raise ValueError(
            f"{out} holds results made with other settings (fingerprint "
            f"{old.get('key')} "
            f"for event {old.get('event')!r}, this run {key}; changed: "
            f"{changed or 'event'}); "
            "use another out_dir, or the default results_dir(event, profile), which "
            "is keyed "
            "on the settings"
        )
    payload = {
        "format": _SETTINGS_FORMAT,
        "key": key,
        "event": event,
        "profile": asdict(profile),
    }
    with atomic_file(marker) as tmp:
        Path(tmp).write_text(json.dumps(payload, indent=2, default=str))


def resolve_scheduler(
    scheduler: Any, device: str | None = None, num_threads: int | None = None
) -> tuple[Any, int | None]:
    """``(scheduler, num_threads)`` for :func:`run_grid`, with ``"auto"`` resolved.

    ``"auto"`` is ``"local"`` with one torch thread per worker on a machine without a
    GPU (``device`` not ``"cuda"`` and none available) and with at least two CPU cores
    — each run's small batches use one core far better than two, so two runs at once
    finish sooner than one run on both — and ``None`` (serial, in this process)
    otherwise.  Any other value is returned as it is.
    """
    if scheduler != "auto":
        return scheduler, num_threads
    import torch

    wants_gpu = (device or "").startswith("cuda") or (
        device is None and torch.cuda.is_available()
    )
    if wants_gpu or (os.cpu_count() or 1) < 2:
        return None, num_threads
    return "local", 1 if num_threads is None else num_threads


def _client(scheduler: Any):
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, None
    if scheduler == "local":
        cluster = LocalCluster(
            n_workers=min(os.cpu_count() or 1, 4), threads_per_worker=1, processes=True
        )
        return Client(cluster), cluster
    if isinstance(scheduler, str):
        return _connect(scheduler), None
    raise ValueError(
        f"scheduler={scheduler!r}: use None (serial), 'local', an address or a "
        "distributed.Client"
    )


def _connect(address: str):
    """A :class:`distributed.Client` of the scheduler at ``address`` within the
    package's network timeout (:func:`sarslide.engine.network.network_settings`); a
    scheduler that refuses, or accepts and never answers, raises
    :class:`~sarslide.acquire.errors.NetworkUnavailableError` naming the address."""
    import asyncio

    from distributed import Client

    from .acquire.errors import NetworkUnavailableError
    from .engine.network import network_settings

    settings = network_settings()
    try:
        _probe_scheduler(address, settings.timeout)
        return Client(address, timeout=settings.timeout)
    except (OSError, TimeoutError, asyncio.TimeoutError) as err:
        raise NetworkUnavailableError(
            f"no dask scheduler answered at {address} within "
            f"{settings.describe().split(',')[0]} "
            f"({type(err).__name__}: "
            f"{' '.join(str(err).split())[:120] or 'no answer'}); check "
            "that `dask scheduler` runs there and the port is open, or run the grid "
            "serially "
            "(scheduler=None, or --scheduler serial) or on this machine "
            "(scheduler='local'); "
            "SARSLIDE_NETWORK_TIMEOUT sets the wait"
        ) from None


def _probe_scheduler(address: str, timeout: float) -> None:
    """Connect to ``address`` and complete dask's handshake within ``timeout`` seconds
    (distributed bounds the connection but not the handshake's read, so a server that
    accepts and never answers would hold ``Client(address)`` forever). Runs on its own
    thread and event loop, so it works inside a notebook's running loop too."""
    import asyncio
    import threading

    from distributed.comm import connect

    failure: list[BaseException] = []

    async def probe() -> None:
        comm = await asyncio.wait_for(
            connect(address, timeout=timeout), timeout=timeout
        )
        await comm.close()

    def target() -> None:
        try:
            asyncio.run(probe())
        except BaseException as err:  # handed to the caller's thread
            failure.append(err)

    thread = threading.Thread(
        target=target, daemon=True, name="sarslide-scheduler-probe"
    )
    thread.start()
    thread.join(timeout + 5)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if failure:
        err = failure[0]
        raise (
            err
            if isinstance(err, OSError)
            else TimeoutError(str(err) or type(err).__name__)
        )


def grid_plan(
    runs: Sequence[Run],
    *,
    event: str = "hokkaido",
    profile: Profile | str | None = None,
    out_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | None = None,
    prepare: bool = True,
):
    """How many of ``runs`` are missing from the results folder, and an estimate of
    their time on this device from the measured per-epoch costs of finished runs
    (:func:`sarslide.engine.grid_plan.plan_grid`); trains nothing.
    ``print(plan.describe())``.

    The number of chips of a run on "all" is read from the event's chips
    (:func:`sarslide.datasets.prepare_event`, built if missing); with ``prepare=False``
    nothing is built or written, and such runs are estimated from finished "all" runs
    only.
    """
    from .engine.grid_plan import plan_grid

    profile = get_profile(profile)
    out = (
        Path(out_dir) if out_dir is not None else results_dir(event, profile, cache_dir)
    )
    pool = None
    if prepare and any(r.train_size is None for r in runs):
        try:
            pool = len(
                prepare_event(event, profile, cache_dir=cache_dir).split("stage2_train")
            )
        except Exception:  # only for an estimate: the grid itself reports what is wrong
            pool = None
    return plan_grid(
        runs, out, max_epochs=profile.stage2_max_epochs, pool_size=pool, device=device
    )


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
    max_minutes: float | None = None,
) -> pd.DataFrame:
    """Run every run not yet in the results folder and return the whole table.

    Parameters
    ----------
    runs:
        From :func:`experiment_grid` (or any subset).
    out_dir:
        Results folder; defaults to :func:`results_dir` (keyed on every setting except
        the grid's sizes and seeds, so partial grids merge into one table).
    scheduler:
        ``None`` (serial), ``"local"`` (a LocalCluster), ``"auto"``
        (:func:`resolve_scheduler`: ``"local"`` on a CPU-only machine with several
        cores, else serial), a scheduler address or a :class:`distributed.Client`.
        An address that does not answer within ``SARSLIDE_NETWORK_TIMEOUT`` raises
        ``NetworkUnavailableError``.
    num_threads:
        Torch threads per run (``1`` on a multi-worker cluster to avoid
        oversubscription).
    max_minutes:
        A time budget: runs start only while the time spent is under it and the next
        run's estimate fits (the first missing run always starts, so every call makes
        progress); the grid stops cleanly between runs, and the next call goes on. Runs
        left out are in ``table.attrs["left_for_later"]``.

    Each finished run's rows go to their own file (``runs/<run_id>.parquet``) and the
    merged ``results.parquet`` is rewritten under a folder lock, so two processes on one
    folder lose no rows (:mod:`sarslide.engine.results_table`); a run being trained by
    another process is waited for and reused, not trained twice. A failed run raises
    after the finished ones are saved. Runs already in the folder are not run again:
    their ids are in ``table.attrs["reused_runs"]`` (and logged). With ``progress``, the
    number of missing runs and their estimated time are printed before anything trains
    (:func:`grid_plan`). A folder made with other settings is refused. When nothing is
    missing nothing is written, so a finished grid in a read-only folder is readable.
    """
    from .engine.grid_plan import TimeBudget

    budget = TimeBudget(max_minutes)
    profile = get_profile(profile)
    scheduler, num_threads = resolve_scheduler(scheduler, device, num_threads)
    out = (
        Path(out_dir) if out_dir is not None else results_dir(event, profile, cache_dir)
    )
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, event, profile)
    table = read_results(out)
    done = set(table["run_id"]) if len(table) else set()
    reused = sorted({r.run_id for r in runs} & done)
    if reused:
        _log.info("reusing %d finished runs from %s", len(reused), out)
    todo = [r for r in runs if r.run_id not in done]
    if progress and runs:
        plan = grid_plan(
            runs,
            event=event,
            profile=profile,
            out_dir=out,
            cache_dir=cache_dir,
            device=device,
        )
        print(plan.describe(), flush=True)
    if BASELINE_ARM not in done:
        write_run_rows(
            out,
            BASELINE_FILE_ID,
            run_baseline(event=event, profile=profile, cache_dir=cache_dir),
        )
        merge_results(out)
    if todo:
        _prepare_shared_inputs(todo, event, profile, cache_dir, progress)
    kwargs = dict(
        event=event,
        profile=profile,
        out_dir=out,
        cache_dir=cache_dir,
        device=device,
        num_threads=num_threads,
    )
    left: list[str] = []
    bar = progress_bar(
        total=len(todo), desc="ablation runs", disable=not progress or not todo
    )
    try:
        for _rows in _dispatch(todo, kwargs, scheduler, budget, left):
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


def run_one_locked(run: Run, **kwargs: Any) -> pd.DataFrame:
    """:func:`run_one` under the run's lock
    (:func:`sarslide.engine.results_table.run_lock`): if another process finished the
    run meanwhile, its rows are read back instead."""
    out = Path(kwargs["out_dir"])
    with run_lock(out, run.run_id):
        path = run_file(out, run.run_id)
        if path.is_file():
            try:
                return pd.read_parquet(path)
            except (
                Exception
            ):  # a damaged file: score the run again (from its checkpoints)
                pass
        return run_one(run, **kwargs)


def _prepare_shared_inputs(
    todo: Sequence[Run], event: str, profile: Profile, cache_dir, progress: bool
) -> None:
    """Build what every run shares once, before any dispatch: the chips and each arm's
    stage-1 model (so parallel workers never train the same stage-1 network twice)."""
    from .pretrained import pretrained_stage1

    prepare_event(event, profile, cache_dir=cache_dir)
    for arm in sorted({r.arm for r in todo} - {"none"}):
        pretrained_stage1(arm, profile, cache_dir=cache_dir, progress=progress)


def _next_estimate(run: Run, kwargs: dict[str, Any]) -> float | None:
    plan = grid_plan(
        [run],
        event=kwargs["event"],
        profile=kwargs["profile"],
        out_dir=kwargs["out_dir"],
        cache_dir=kwargs["cache_dir"],
        device=kwargs["device"],
    )
    return plan.per_run_s.get(run.run_id)


def longest_first(runs: Sequence[Run]) -> list[Run]:
    """``runs`` by training size, largest first ("all" before every count), keeping
    the given order among runs of one size."""
    return sorted(runs, key=lambda r: -size_sort_key(r.stored_size))


def _dispatch(
    todo: Sequence[Run],
    kwargs: dict[str, Any],
    scheduler: Any,
    budget=None,
    left: list[str] | None = None,
) -> Iterator[pd.DataFrame]:
    """Each run's tidy rows as it finishes: in this process (``scheduler=None``) or on a
    dask cluster (:func:`_client`), in completion order. With a ``budget``
    (:class:`sarslide.engine.grid_plan.TimeBudget`) runs stop starting once it is spent;
    their ids go to ``left``."""
    left = left if left is not None else []
    if scheduler is None:
        for i, run in enumerate(todo):
            if (
                budget is not None
                and budget.max_s is not None
                and not budget.allows(_next_estimate(run, kwargs))
            ):
                left.extend(r.run_id for r in todo[i:])
                return
            yield run_one_locked(run, **kwargs)
        return
    if not todo:
        return
    from distributed import as_completed

    client, cluster = _client(scheduler)
    try:
        # largest training sets first (dask starts tasks in submission order): the
        # long runs then overlap, and the short ones fill the workers at the end
        # instead of one long run finishing alone (the results do not depend on order)
        futures = {
            client.submit(
                run_one_locked,
                run,
                pure=False,
                key=f"sarslide-{run.run_id}-{uuid.uuid4().hex[:6]}",
                **kwargs,
            ): run
            for run in longest_first(todo)
        }
        pending = dict(futures)
        for future in as_completed(list(futures)):
            pending.pop(future, None)
            yield future.result()
            if (
                budget is not None
                and budget.max_s is not None
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


def results_dir(
    event: str = "hokkaido",
    profile: Profile | str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """The default results folder of a grid: ``<data
    dir>/ablation/<event>-<profile>-<key>``.

    ``key`` is :func:`results_key`, a hash of every profile setting but the grid's sizes
    and seeds (:data:`GRID_SHAPE_FIELDS`), and of the data seed: results made under
    other settings are never returned for these, and grids over subsets of sizes or
    seeds share one folder and one table.
    """
    profile = get_profile(profile)
    return (
        data_dir(cache_dir)
        / "ablation"
        / f"{event}-{profile.name}-{results_key(event, profile)}"
    )


def run_health(out_dir: str | os.PathLike, run_ids: Iterable[str]) -> dict[str, Any]:
    """The :class:`~sarslide.health.RunHealth` of each finished run that has one, by id
    (runs trained before health was recorded have none)."""
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
    *,
    event: str = "hokkaido",
    profile: Profile | str | None = None,
    out_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    n_boot: int = 200,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> pd.DataFrame:
    """Metrics of each arm × size on probabilities averaged over all its seeds ×
    checkpoints (:func:`ensemble_probabilities`), with a stratified percentile bootstrap
    95 % interval of the APRC over test chips (:func:`stratified_aprc_interval`).

    ``labels`` (N, H, W) are the test labels; by default those of the prepared event.
    """
    out = (
        Path(out_dir) if out_dir is not None else results_dir(event, profile, cache_dir)
    )
    if labels is None:
        labels = prepare_event(event, profile, cache_dir=cache_dir).split("test").labels
    learned = table[table["arm"].isin(ARMS)]
    records = []
    for (arm, size), _ in learned.groupby(["arm", "train_size"]):
        mean, n_models = ensemble_probabilities(table, arm, size, out)
        scores = score_probabilities(mean, labels)
        low, high = stratified_aprc_interval(mean, labels, n_boot=n_boot, seed=seed)
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


#: The paper's reported APRC, read from its Figure 2; :data:`SIZE_ALL` is "all" (110
# chips : in the paper).
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
