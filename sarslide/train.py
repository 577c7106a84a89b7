"""One training loop for both stages: early stopping, top-k checkpoints, exact resume.

:func:`fit` trains a model on a :class:`TrainingData` (standardised chips and labels of
a training and a validation split) with the settings of a :class:`TrainConfig`
(``TrainConfig.from_profile(profile, "stage2")``):

* Adam (or AdamW), mini-batches in a seeded order (epoch ``e`` of seed ``s`` always
  visits the chips in the same order), each epoch validated on the whole validation
  split;
* early stopping when the validation loss, the validation metric, or both have not
  improved for ``patience`` epochs (:attr:`TrainConfig.early_stopping`);
* the ``top_k`` epochs by validation APRC (stage 2) or accuracy (stage 1) kept on disk
  as checkpoints, best first in the :class:`TrainResult`.

What differs between the stages lives in :mod:`sarslide.tasks`:

* ``task="stage1"``: a :class:`~sarslide.models.SiameseClassifier`; the target of a
  chip is 1 when any of its label pixels is > 0 (mask or point counts); loss = binary
  cross-entropy on the logit.
* ``task="stage2"``: a :class:`~sarslide.models.Segmenter`; the target of a pixel is
  ``label > 0``; loss = soft dice on sigmoid probabilities, summed over the *whole
  batch* (:func:`sarslide.tasks.dice_loss`).  Half the chips hold no landslide, so a
  batch may hold no landslide pixel at all: its loss is then ``Σp / (Σp + 1)``, which
  is zero only when the network predicts nothing, so landslide-free chips still teach
  the network not to raise false alarms.

:func:`fit_segmenter` is one stage-2 run as the book makes it: seeded, the profile's
segmenter on a few-shot subset of the stage-2 training chips, with or without frozen
stage-1 embeddings.

The machinery around the loop is in the engine: the device and the arithmetic
(:func:`device_and_precision`; bfloat16 autocast on CPUs with native bf16 and on recent
GPUs by default, :mod:`sarslide.engine.precision`), the run's folder with ``last.pt``
and its exact resume (:mod:`sarslide.engine.runs`), checkpoints
(:mod:`sarslide.engine.checkpoints`), input checks and batched forward passes
(:mod:`sarslide.engine.runtime`).  Weights, optimiser state and checkpoints are float32;
the losses are computed in float32.

Prediction with the trained models is in :mod:`sarslide.predict`; the cached stage-1 run
of an event in :mod:`sarslide.pretrained`.

Inputs everywhere are standardised chips ``(N, 4, H, W)`` float32 (no NaN; see
:func:`sarslide.transforms.standardize`) and labels ``(N, H, W)`` (mask 0/1 or point
counts).
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .engine import runs
from .engine.checkpoints import (
    checkpoint_info,
    load_checkpoint,
    load_checkpoints,
    save_checkpoint,
)
from .engine.precision import Precision, resolve_precision, select_device
from .engine.progress import progress_bar
from .engine.runs import RunState
from .engine.runtime import (
    array_fingerprint,
    batch_indices,
    check_embeddings,
    check_images,
    check_labels,
    forward_all,
    segmenter_embeddings,
    take_rows,
)
from .models import Segmenter, SiameseClassifier
from .profiles import Profile
from .tasks import TaskName, TrainingTask, get_task
from .transforms import standardize, warn_if_unstandardized

if TYPE_CHECKING:
    from .chips import ChipSet

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingData",
    "device_and_precision",
    "evaluate",
    "finished_run",
    "fit",
    "fit_segmenter",
    "seed_everything",
]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    Call it before building a model so that its initial weights are reproducible.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- training


def fit(
    model: nn.Module,
    data: TrainingData,
    *,
    task: TaskName | TrainingTask,
    config: TrainConfig,
    checkpoint_dir: str | os.PathLike,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    resume: bool = True,
) -> TrainResult:
    """Train ``model`` in place for one stage; return its history and kept checkpoints.

    Parameters
    ----------
    model:
        A :class:`~sarslide.models.SiameseClassifier` (``task="stage1"``) or a
        :class:`~sarslide.models.Segmenter` (``task="stage2"``).  Build it after
        :func:`seed_everything` for reproducible initial weights.  After :func:`fit` it
        holds the *last* epoch's weights; use ``result.best_model()`` for the best.
    data:
        The training and validation chips and labels (:class:`TrainingData`, e.g.
        ``TrainingData.from_chipset(chips, "stage1_train")``).
    task:
        ``"stage1"``, ``"stage2"`` or a :class:`~sarslide.tasks.TrainingTask`.
    config:
        The training settings (:class:`TrainConfig`, e.g.
        ``TrainConfig.from_profile(profile, "stage2")``).
    checkpoint_dir:
        The run's folder (``last.pt`` and ``top-epochNNNN.pt``); one folder per run.
    seed:
        Seeds torch/NumPy/Python at the start and fixes the chip order of every epoch.
    device:
        ``None`` picks CUDA when available, else CPU.
    progress:
        Show a tqdm bar over epochs.
    resume:
        Continue from ``checkpoint_dir/last.pt`` if it exists (it must come from the
        same model configuration, data and settings); ``False`` starts afresh and
        deletes the folder's old checkpoints.  A finished run is returned at once.

    Raises
    ------
    ValueError
        Empty splits, NaN, wrong channel count or chip size, stage-2 validation chips
        without any landslide pixel (APRC undefined), bad settings.
    TypeError
        A model of the wrong class for ``task``, or a ``config`` that is not a
        :class:`TrainConfig`.
    CheckpointError
        ``last.pt`` belongs to a different model, data or settings.
    """
    task = get_task(task)
    task.check_model(model)
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"config must be a TrainConfig, got {type(config).__name__}; build one "
            f"with TrainConfig(max_epochs=...) or TrainConfig.from_profile(profile, "
            f"{task.name!r})"
        )
    arrays = data.checked(task, model)
    dev, prec = device_and_precision(config.precision, device)
    prec.apply_backend_settings()
    folder = runs.open_run_dir(checkpoint_dir, read_only_ok=True)
    warn_if_unstandardized(arrays[0], "training chips")
    trainer = _set_up(task, config, model, arrays, seed, data.stats, dev, prec, folder)
    state = _start_or_resume(trainer, resume)
    if not state.finished(config.max_epochs):
        # before any training step (a read-only finished run is only read)
        runs.writable_dir(folder)
        embeddings = (data.train_embeddings, data.val_embeddings)
        _train_remaining_epochs(trainer, state, embeddings, progress)
    return _result(task, folder, state)


@dataclass
class _Trainer:
    """What one :func:`fit` call works with; fixed for the run (the model, optimiser,
    scaler and scheduler change in place)."""

    task: TrainingTask
    config: TrainConfig
    model: nn.Module
    seed: int
    stats: Mapping | None
    device: torch.device
    precision: Precision
    checkpoint_dir: Path
    train_images: np.ndarray
    train_targets: np.ndarray
    val_images: np.ndarray
    val_targets: np.ndarray
    settings: dict[str, Any]
    runtime: dict[str, Any]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None


def _set_up(
    task: TrainingTask,
    config: TrainConfig,
    model: nn.Module,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    seed: int,
    stats: Mapping | None,
    device: torch.device,
    precision: Precision,
    checkpoint_dir: Path,
) -> _Trainer:
    """Record the run's settings, seed everything, move the model to the device and
    build the optimiser, gradient scaler and learning-rate scheduler."""
    fingerprint = array_fingerprint(*arrays)
    settings = runs.run_settings(
        task.name, model, config, seed, precision.name, fingerprint
    )
    runtime = runs.runtime_record(device, precision)
    seed_everything(seed)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    if config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(
            params, lr=config.lr, weight_decay=config.weight_decay
        )
    else:
        optimizer = torch.optim.Adam(params, lr=config.lr)
    scaler = precision.grad_scaler_for(device)
    scheduler = None
    if config.lr_plateau_patience is not None:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=config.lr_plateau_factor,
            patience=config.lr_plateau_patience,
        )
    return _Trainer(
        task,
        config,
        model,
        seed,
        stats,
        device,
        precision,
        checkpoint_dir,
        *arrays,
        settings,
        runtime,
        optimizer,
        scaler,
        scheduler,
    )


def _start_or_resume(trainer: _Trainer, resume: bool) -> RunState:
    """Resume from ``last.pt`` (weights, optimiser, scaler, scheduler, RNG, state) when
    asked and present; otherwise start afresh
    (:func:`sarslide.engine.runs.resume_record` checks the record, or clears the
    folder)."""
    record = runs.resume_record(
        trainer.checkpoint_dir,
        trainer.settings,
        trainer.config.max_epochs,
        trainer.runtime["threads"],
        resume,
    )
    if record is None:
        return RunState()
    trainer.model.load_state_dict(record["state_dict"])
    trainer.optimizer.load_state_dict(record["optimizer"])
    trainer.scaler.load_state_dict(record["scaler"])
    if trainer.scheduler is not None:
        trainer.scheduler.load_state_dict(record["scheduler"])
    runs.set_rng_state(record["rng"])
    return RunState.from_record(record)


def _train_remaining_epochs(
    trainer: _Trainer,
    state: RunState,
    embeddings: tuple[np.ndarray | Tensor | None, np.ndarray | Tensor | None],
    progress: bool,
) -> None:
    """Epochs ``state.epoch + 1 .. max_epochs`` (fewer on early stopping), each
    validated, ranked and saved; the weights in the precision's layout meanwhile."""
    model, metric = trainer.model, trainer.task.metric
    max_epochs = trainer.config.max_epochs
    trainer.precision.apply_layout(model)  # put back at the end
    bar = progress_bar(
        total=max_epochs,
        initial=state.epoch,
        disable=not progress,
        desc=f"{trainer.task.name} {type(model).__name__}",
        unit="epoch",
        leave=True,
    )
    try:
        train_emb, val_emb = _frozen_embeddings(trainer, *embeddings)
        for epoch in range(state.epoch + 1, max_epochs + 1):
            t0 = time.perf_counter()
            lr = trainer.optimizer.param_groups[0]["lr"]
            train_loss = _train_epoch(trainer, epoch, train_emb)
            val_loss, val_metric = _validate(trainer, val_emb)
            if trainer.scheduler is not None:
                trainer.scheduler.step(val_loss)
            metrics = {
                "train_loss": train_loss,
                "val_loss": val_loss,
                metric: val_metric,
            }
            state.epoch = epoch
            state.history.append(
                {
                    "epoch": epoch,
                    **metrics,
                    "lr": lr,
                    "seconds": time.perf_counter() - t0,
                }
            )
            _update_early_stopping(trainer.config, state, val_loss, val_metric)
            _keep_top_k(trainer, state, metrics)
            bar.set_postfix(
                train_loss=f"{train_loss:.4f}",
                val_loss=f"{val_loss:.4f}",
                refresh=False,
                **{metric: f"{val_metric:.3f}"},
            )
            bar.update(1)
            if state.stopped_early:
                break
    finally:
        bar.close()
        trainer.precision.restore_layout(model)


def _frozen_embeddings(
    trainer: _Trainer,
    train_embeddings: np.ndarray | Tensor | None,
    val_embeddings: np.ndarray | Tensor | None,
) -> tuple[Tensor | None, Tensor | None]:
    """A segmenter's frozen stage-1 embeddings of the training and validation chips
    (``(N, 64, H, W)`` CPU tensors; None for models without them).

    The stage-1 network is frozen, so its embeddings of these chips are the same every
    epoch: computed once here (in the dtype the forward pass produces), or the caller's
    precomputed ones, checked.
    """
    model, dev, prec = trainer.model, trainer.device, trainer.precision
    batch = trainer.config.batch_size
    train_emb = check_embeddings(
        train_embeddings, model, trainer.train_images, "training", dev, prec
    )
    if train_emb is None:
        train_emb = segmenter_embeddings(model, trainer.train_images, batch, dev, prec)
    val_emb = check_embeddings(
        val_embeddings, model, trainer.val_images, "validation", dev, prec
    )
    if val_emb is None:
        val_emb = segmenter_embeddings(model, trainer.val_images, batch, dev, prec)
    return train_emb, val_emb


def _epoch_batches(trainer: _Trainer, epoch: int) -> Iterator[np.ndarray]:
    """The epoch's mini-batches of training positions: passes over the training chips,
    each in its seeded order (``[seed, epoch]`` for the first, ``[seed, epoch, k]``
    for pass ``k``), until at least ``min_steps_per_epoch`` batches are made."""
    n, batch_size = len(trainer.train_images), trainer.config.batch_size
    per_pass = -(-n // batch_size)
    passes = -(-trainer.config.min_steps_per_epoch // per_pass)
    for k in range(passes):
        key = [int(trainer.seed), epoch] if k == 0 else [int(trainer.seed), epoch, k]
        order = np.random.default_rng(key).permutation(n)
        yield from batch_indices(n, batch_size, order)


def _train_epoch(trainer: _Trainer, epoch: int, train_emb: Tensor | None) -> float:
    """One epoch over the training chips (:func:`_epoch_batches`); the mean over chips
    of the batch losses (float32 losses, whatever the autocast dtype)."""
    model, dev, prec = trainer.model, trainer.device, trainer.precision
    config, optimizer, scaler = trainer.config, trainer.optimizer, trainer.scaler
    model.train()
    n = len(trainer.train_images)
    total, seen = 0.0, 0
    for idx in _epoch_batches(trainer, epoch):
        if len(idx) == 1 and config.batch_size > 1 and n > 1:
            # BatchNorm cannot train on a batch of one chip at small chip sizes; the
            # order is reshuffled every epoch, so a different chip sits out each time
            continue
        xb = prec.to_input(trainer.train_images[idx], dev)
        yb = torch.from_numpy(trainer.train_targets[idx]).to(dev, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        extra = (
            ()
            if train_emb is None
            else (prec.to_input(take_rows(train_emb, idx), dev),)
        )
        size = trainer.train_images.shape[-1]
        with prec.autocast(), _one_chip_batch_hint(len(idx), size):
            out = model(xb, *extra)
        loss = trainer.task.loss(out.float(), yb)
        scaler.scale(loss).backward()
        if config.grad_clip is not None:
            scaler.unscale_(optimizer)  # clip the true gradient, not the scaled one
            torch.nn.utils.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]],
                config.grad_clip,
            )
        scaler.step(optimizer)
        scaler.update()
        total += loss.item() * len(idx)
        seen += len(idx)
    return total / seen


@contextlib.contextmanager
def _one_chip_batch_hint(batch: int, size: int) -> Iterator[None]:
    """Turn BatchNorm's error for a batch of one chip into one that says what to
    change."""
    try:
        yield
    except ValueError as err:
        if batch == 1 and "Expected more than 1 value per channel" in str(err):
            raise ValueError(
                f"a training batch of one {size}×{size} chip is too small for the "
                "model's BatchNorm layers (one value per channel at the bottleneck); "
                "train on at least 2 chips with batch_size >= 2, or use larger chips"
            ) from err
        raise


def _validate(trainer: _Trainer, val_emb: Tensor | None) -> tuple[float, float]:
    """(validation loss, validation metric) over the whole validation set."""
    trainer.model.eval()
    outputs = forward_all(
        trainer.model,
        trainer.val_images,
        trainer.config.batch_size,
        trainer.device,
        trainer.precision,
        val_emb,
    )
    return trainer.task.score(outputs, trainer.val_targets)


def _update_early_stopping(
    config: TrainConfig, state: RunState, val_loss: float, val_metric: float
) -> None:
    """Count the epochs without a strict improvement of the validation loss and of
    the validation metric; stop when the watched one (``TrainConfig.early_stopping``;
    for ``"both"`` the more recently improved one) reaches ``patience``."""
    if val_loss < state.best_val_loss:
        state.best_val_loss, state.bad_epochs = val_loss, 0
    else:
        state.bad_epochs += 1
    if val_metric > state.best_metric:
        state.best_metric, state.bad_metric_epochs = val_metric, 0
    else:
        state.bad_metric_epochs += 1
    watched = {
        "val_loss": state.bad_epochs,
        "metric": state.bad_metric_epochs,
        "both": min(state.bad_epochs, state.bad_metric_epochs),
    }[config.early_stopping]
    state.stopped_early = (
        watched >= config.patience and state.epoch >= config.min_epochs
    )


def _rank_key(entry: Mapping[str, Any]) -> tuple:
    """Best first: higher metric, then lower validation loss, then earlier epoch."""
    return (-entry["metric"], entry["val_loss"], entry["epoch"])


def _keep_top_k(trainer: _Trainer, state: RunState, metrics: dict[str, float]) -> None:
    """Save this epoch as ``top-epochNNNN.pt`` if it ranks among the best ``top_k``,
    rewrite ``last.pt`` and delete checkpoints that dropped out of the top k."""
    epoch, metric, folder = state.epoch, trainer.task.metric, trainer.checkpoint_dir
    entry = {
        "epoch": epoch,
        "metric": metrics[metric],
        "val_loss": metrics["val_loss"],
        "file": runs.top_file(epoch),
    }
    candidate = sorted(state.top + [entry], key=_rank_key)[: trainer.config.top_k]
    extra = {
        "epoch": epoch,
        "metrics": metrics,
        "settings": trainer.settings,
        "runtime": trainer.runtime,
    }
    if entry in candidate:
        save_checkpoint(
            trainer.model,
            folder / entry["file"],
            task=trainer.task.name,
            stats=trainer.stats,
            extra=extra,
        )
    state.top = candidate
    runs.save_last(
        folder,
        trainer.model,
        task=trainer.task.name,
        stats=trainer.stats,
        extra=extra,
        state=state,
        optimizer=trainer.optimizer,
        scaler=trainer.scaler,
        scheduler=trainer.scheduler,
    )
    runs.clean_dir(folder, keep={e["file"] for e in state.top})


def _result(task: TrainingTask, checkpoint_dir: Path, state: RunState) -> TrainResult:
    """The :class:`TrainResult` of a run's state."""
    columns = ["epoch", "train_loss", "val_loss", task.metric, "lr", "seconds"]
    frame = pd.DataFrame(state.history, columns=columns)
    frame["epoch"] = frame["epoch"].astype(int)
    paths = [checkpoint_dir / e["file"] for e in sorted(state.top, key=_rank_key)]
    return TrainResult(
        frame, paths, task.metric, state.stopped_early, checkpoint_dir, task.name
    )


# ----------------------------------------------------------------------- entry points


def fit_segmenter(
    chips: ChipSet,
    train_indices: Sequence[int],
    *,
    profile: Profile,
    stage1: SiameseClassifier | None,
    embeddings: Mapping[str, np.ndarray | Tensor] | None,
    seed: int,
    checkpoint_dir: str | os.PathLike,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> TrainResult:
    """One stage-2 run: the profile's segmenter trained on a few stage-2 chips.

    Seeds everything with ``seed``, builds ``Segmenter.from_profile(profile, stage1)``
    (so its initial weights follow from the seed), and fits it (:func:`fit`) with
    ``TrainConfig.from_profile(profile, "stage2")`` on the chips ``train_indices`` of
    the ``stage2_train`` split, validated on the ``validation`` split.

    Parameters
    ----------
    chips:
        The event's chips with their statistics
        (:func:`sarslide.datasets.prepare_event`).
    train_indices:
        Positions within the ``stage2_train`` split (e.g.
        :func:`sarslide.chips.few_shot_subset`).
    profile:
        The :class:`~sarslide.profiles.Profile` whose network and recipe to train.
    stage1:
        The frozen stage-1 network whose embeddings join the segmenter's features, or
        ``None`` for the baseline.
    embeddings:
        ``stage1``'s embeddings of the whole ``stage2_train`` and ``validation`` splits
        (``{"stage2_train": (N, 64, H, W), "validation": ...}``, e.g. from
        :func:`sarslide.ablation.split_embeddings`); the rows of ``train_indices`` are
        taken here.  ``None``: computed by :func:`fit` (always for the baseline).
    seed, checkpoint_dir, device, progress:
        As in :func:`fit`.
    """
    seed_everything(seed)
    model = Segmenter.from_profile(profile, stage1)
    train_embeddings = val_embeddings = None
    if embeddings is not None:
        picked = torch.as_tensor(train_indices, dtype=torch.long)
        train_embeddings = embeddings["stage2_train"][picked]
        val_embeddings = embeddings["validation"]
    data = TrainingData.from_chipset(
        chips,
        "stage2_train",
        train_indices=train_indices,
        train_embeddings=train_embeddings,
        val_embeddings=val_embeddings,
    )
    return fit(
        model,
        data,
        task="stage2",
        config=TrainConfig.from_profile(profile, "stage2"),
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        device=device,
        progress=progress,
    )


def finished_run(
    model: nn.Module,
    *,
    task: TaskName | TrainingTask,
    config: TrainConfig,
    checkpoint_dir: str | os.PathLike,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> TrainResult | None:
    """What :func:`fit` returns at once for a finished run, read without its chips.

    ``fit(model, <data>, task=task, config=config, seed=seed,
    checkpoint_dir=checkpoint_dir, device=device)`` on a run that is finished (stopped
    early, or at ``config.max_epochs``) trains nothing and returns the run's result;
    this returns the same result without the chips, so without checking them against the
    run's data fingerprint (the caller vouches for them, e.g. with a folder named after
    the data).  ``model`` only provides its class and configuration (it may live on the
    meta device) and is not changed.

    Returns None where :func:`fit` would have to do more (train, refuse or start
    afresh): no ``last.pt``, other settings, an epoch beyond ``max_epochs``, a run not
    finished, or no kept checkpoint (the global RNG is then untouched).  Otherwise it
    has :func:`fit`'s side effects on a finished run: the device's backend settings,
    half-written files removed from the folder, and the global RNG seeded with ``seed``
    and then set to the state saved with the last epoch.
    """
    task = get_task(task)
    task.check_model(model)
    if not (Path(checkpoint_dir) / runs.LAST).exists():
        return None
    _, prec = device_and_precision(config.precision, device)
    prec.apply_backend_settings()
    expected = runs.run_settings(task.name, model, config, seed, prec.name, data=None)
    del expected["data"]  # the chips are not at hand
    record = runs.finished_record(checkpoint_dir, expected, config.max_epochs)
    if record is None:
        return None
    seed_everything(seed)  # as fit does before it reads last.pt (CUDA's RNG keeps it
    runs.set_rng_state(record["rng"])  # when last.pt was written without CUDA)
    return _result(task, Path(checkpoint_dir), RunState.from_record(record))


def evaluate(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    task: TaskName | TrainingTask,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    precision: str | Precision = "auto",
) -> dict[str, float]:
    """Loss and metric of ``model`` on chips, as :func:`fit` computes them each epoch.

    Returns ``{"loss": ..., "accuracy": ...}`` (stage 1: BCE, share of chips right at
    logit 0) or ``{"loss": ..., "aprc": ...}`` (stage 2: dice over all chips, APRC over
    all pixels; 0.0 with a warning on chips without any landslide pixel).
    ``precision`` as in :class:`TrainConfig`.
    """
    task = get_task(task)
    task.check_model(model)
    images = check_images(images, model, "chips")
    labels = check_labels(labels, images, "chips")
    dev, prec = device_and_precision(precision, device)
    prec.apply_backend_settings()
    model.eval()
    targets = task.targets(labels)
    with prec.prepared(model, dev):
        outputs = forward_all(model, images, batch_size, dev, prec)
    loss, metric = task.score(outputs, targets)
    return {"loss": loss, task.metric.removeprefix("val_"): metric}


def device_and_precision(
    precision: str | Precision = "auto", device: str | torch.device | None = None
) -> tuple[torch.device, Precision]:
    """Where :func:`fit` trains and in what arithmetic: ``device`` (``None``: CUDA when
    available, else CPU) and ``precision`` (``"auto"``: the device's fast path,
    ``"fp32"``, ``"bf16"``, ``"fp16"``) resolved for it
    (:func:`sarslide.engine.precision.resolve_precision` has the table)."""
    dev = select_device(device)
    return dev, resolve_precision(dev, precision)


# ------------------------------------------------------- what fit takes and returns


@dataclass(frozen=True)
class TrainConfig:
    """The training settings of one stage, built once (e.g. from a profile) and passed
    to :func:`fit` as ``config=``.

    Attributes
    ----------
    max_epochs:
        Epoch budget (>= 1).  Resuming with a larger budget continues the run.
    patience:
        Stop when the early-stopping signal has not improved for this many epochs
        (>= 1).
    batch_size:
        Mini-batch size in chips (>= 1).
    lr:
        Initial learning rate (> 0; default Adam betas).
    top_k:
        How many best checkpoints to keep (>= 1; by validation APRC or accuracy).
    precision:
        ``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"`` or a
        :class:`~sarslide.engine.precision.Precision`, resolved on the run's device by
        :func:`device_and_precision`.  The resolved name is part of the run's settings
        (a run resumes only with the same precision); checkpoints record it with the
        device and torch's thread count under ``"runtime"``.
    optimizer:
        ``"adam"`` (:class:`torch.optim.Adam`, the paper's text) or ``"adamw"``
        (:class:`torch.optim.AdamW` with ``weight_decay``, as the published runs).
    weight_decay:
        AdamW's decoupled weight decay (>= 0; ignored by ``"adam"``, which must have 0).
    grad_clip:
        Clip the gradient's global L2 norm to this value before each step (> 0), or
        ``None`` for no clipping.  With a float16 gradient scaler the gradients are
        unscaled first, so the bound holds for the true gradient.
    lr_plateau_patience:
        Halve the learning rate (:class:`torch.optim.lr_scheduler.ReduceLROnPlateau`
        on the validation loss) after this many epochs without improvement, or
        ``None`` for a constant learning rate.  Should be below ``patience``, so the
        learning rate drops before training stops.
    lr_plateau_factor:
        What the learning rate is multiplied by at each plateau (0 < factor < 1).
    early_stopping:
        What early stopping watches: ``"val_loss"`` (lower is better), ``"metric"``,
        the task's validation metric (higher is better; the one the top-k
        checkpoints are ranked by), or ``"both"``: a run stops only when *neither*
        has improved for ``patience`` epochs, so a noisy metric cannot end a run
        whose loss is still falling, nor a flat loss one whose metric still rises.
        The learning-rate plateaus always watch the validation loss, the smoother
        signal.
    min_epochs:
        Early stopping cannot end a run before this epoch (>= 1): a burn-in for runs
        whose validation score dips while the head re-learns (a pretrained arm starts
        high on its frozen embeddings, then falls before it rises).
    min_steps_per_epoch:
        An epoch makes at least this many optimiser steps (>= 1): a training set of
        fewer batches is passed over several times, each pass in its own seeded order,
        before the epoch is validated.  With 2 chips and ``1`` an epoch is one step
        and one whole validation pass; a few steps per validation make few-shot runs
        converge in fewer (costly) validations.

    Raises
    ------
    ValueError
        A count that is not an integer >= 1, a learning rate that is not positive, an
        unknown optimiser or a clipping bound, decay or factor out of range.
    """

    max_epochs: int
    patience: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    top_k: int = 5
    precision: str | Precision = "auto"
    optimizer: str = "adam"
    weight_decay: float = 0.0
    grad_clip: float | None = None
    lr_plateau_patience: int | None = None
    lr_plateau_factor: float = 0.5
    min_steps_per_epoch: int = 1
    early_stopping: str = "val_loss"
    min_epochs: int = 1

    def __post_init__(self) -> None:
        counts = (
            ("max_epochs", self.max_epochs),
            ("batch_size", self.batch_size),
            ("top_k", self.top_k),
            ("patience", self.patience),
            ("min_steps_per_epoch", self.min_steps_per_epoch),
            ("min_epochs", self.min_epochs),
        )
        for name, value in counts:
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"optimizer={self.optimizer!r}: use one of {sorted(_OPTIMIZERS)}"
            )
        if not self.weight_decay >= 0 or (
            self.optimizer == "adam" and self.weight_decay
        ):
            raise ValueError(
                f"weight_decay={self.weight_decay!r}: use a value >= 0, and 0 with "
                "optimizer='adam' (decoupled weight decay needs optimizer='adamw')"
            )
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(
                f"grad_clip={self.grad_clip!r}: use a positive norm bound, or None"
            )
        plateau = self.lr_plateau_patience
        if plateau is not None and (int(plateau) != plateau or plateau < 1):
            raise ValueError(
                f"lr_plateau_patience={plateau!r}: use an integer >= 1, or None"
            )
        if self.early_stopping not in ("val_loss", "metric", "both"):
            raise ValueError(
                f"early_stopping={self.early_stopping!r}: use 'val_loss', 'metric' or "
                "'both'"
            )
        if not 0 < self.lr_plateau_factor < 1:
            raise ValueError(
                f"lr_plateau_factor={self.lr_plateau_factor!r}: use a factor "
                "between 0 and 1"
            )

    @classmethod
    def from_profile(
        cls, profile: Profile, stage: TaskName | TrainingTask
    ) -> TrainConfig:
        """The settings a :class:`~sarslide.profiles.Profile` gives ``stage``
        (``"stage1"``/``"stage2"``): its ``stage1_max_epochs`` and ``patience`` (Adam,
        constant learning rate) or the ``stage2_*`` recipe (epochs, patience,
        optimiser, weight decay, clipping and learning-rate plateaus), and the shared
        ``batch_size``, ``learning_rate``, ``top_k`` and ``precision``."""
        task = get_task(stage)
        shared = dict(
            batch_size=profile.batch_size,
            lr=profile.learning_rate,
            top_k=profile.top_k,
            precision=profile.precision,
        )
        if task.name == "stage1":
            return cls(
                max_epochs=profile.stage1_max_epochs,
                patience=profile.patience,
                **shared,
            )
        return cls(
            max_epochs=profile.stage2_max_epochs,
            patience=profile.stage2_patience,
            **shared,
            optimizer=profile.stage2_optimizer,
            weight_decay=profile.stage2_weight_decay,
            grad_clip=profile.stage2_grad_clip,
            lr_plateau_patience=profile.stage2_lr_plateau_patience,
            min_steps_per_epoch=profile.stage2_min_steps_per_epoch,
            early_stopping=profile.stage2_early_stopping,
            min_epochs=profile.stage2_min_epochs,
        )


#: The optimisers :class:`TrainConfig` names.
_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class TrainingData:
    """The chips a run trains and validates on, as :func:`fit` takes them.

    Attributes
    ----------
    train_images, val_images:
        Standardised chips ``(N, 4, H, W)`` float32, no NaN
        (:func:`sarslide.transforms.standardize`).
    train_labels, val_labels:
        ``(N, H, W)``: masks (0/1) or point counts; > 0 means landslide.
    stats:
        The standardisation statistics (``BandStats`` or its dict), stored in every
        checkpoint so that a model can be applied to new chips; ``None`` stores none.
    train_embeddings, val_embeddings:
        A segmenter's frozen stage-1 embeddings of ``train_images`` / ``val_images``,
        ``(N, 64, H, W)`` aligned with the chips (numpy array or CPU tensor, any float
        dtype), e.g. from :func:`sarslide.engine.embeddings.cached_embeddings`; used
        instead of computing them in :func:`fit`.  The first chip of each split is
        re-embedded as a check that they belong to these chips and this stage-1
        network.  ``None``: :func:`fit` computes them once per run.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    stats: Any = None
    train_embeddings: np.ndarray | Tensor | None = None
    val_embeddings: np.ndarray | Tensor | None = None

    @classmethod
    def from_chipset(
        cls,
        chipset: ChipSet,
        train_split: str,
        *,
        train_indices: Sequence[int] | None = None,
        val_split: str = "validation",
        train_embeddings: np.ndarray | Tensor | None = None,
        val_embeddings: np.ndarray | Tensor | None = None,
    ) -> TrainingData:
        """The splits ``train_split`` and ``val_split`` of a
        :class:`~sarslide.chips.ChipSet`, standardised with its ``stats``.

        Parameters
        ----------
        chipset:
            Chips with ``stats`` (as :func:`sarslide.datasets.prepare_event` returns
            them).
        train_split:
            ``"stage1_train"`` or ``"stage2_train"``.
        train_indices:
            Positions *within* the training split to use (few-shot subsets); all by
            default.
        val_split:
            The validation split.
        train_embeddings, val_embeddings:
            As the attributes: aligned with the selected training chips (after
            ``train_indices``) and with the validation chips.
        """
        if chipset.stats is None:
            raise ValueError(
                "the chips carry no standardisation statistics; compute them on the "
                "stage-1 training chips (transforms.compute_stats) or use "
                "datasets.prepare_event"
            )
        train = chipset.split(train_split)
        if train_indices is not None:
            train = train.subset(_check_indices(train_indices, len(train)))
        val = chipset.split(val_split)
        return cls(
            standardize(train.images, chipset.stats) if len(train) else train.images,
            train.labels,
            standardize(val.images, chipset.stats) if len(val) else val.images,
            val.labels,
            stats=chipset.stats,
            train_embeddings=train_embeddings,
            val_embeddings=val_embeddings,
        )

    def checked(
        self, task: TrainingTask, model: nn.Module
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Checked chips (float32 ``(N, 4, H, W)``) and the task's float32 targets:
        ``(train_images, train_targets, val_images, val_targets)``."""
        train_images = check_images(self.train_images, model, "training chips")
        train_labels = check_labels(self.train_labels, train_images, "training")
        val_images = check_images(self.val_images, model, "validation chips")
        val_labels = check_labels(self.val_labels, val_images, "validation")
        train_targets = task.targets(train_labels)
        val_targets = task.targets(val_labels)
        task.check_validation_targets(val_targets)
        return train_images, train_targets, val_images, val_targets


def _check_indices(indices: Sequence[int], n: int) -> np.ndarray:
    """``indices`` as int positions in ``[0, n)``; a clear error for anything else."""
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(
            "train_indices must be a 1-D sequence of integer positions, got "
            f"{indices!r}"
        )
    bad = idx[(idx < 0) | (idx >= n)] if idx.size else idx
    if bad.size:
        raise ValueError(
            f"train_indices {sorted(set(bad.tolist()))[:10]} are outside the training "
            f"split, which holds {n} chips (positions 0..{n - 1}); use positions "
            "within the split, e.g. chips.few_shot_subset(split, size, seed)"
        )
    return idx.astype(int)


# --------------------------------------------------------------------------- results


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    history:
        One row per epoch: ``epoch`` (1-based), ``train_loss`` (mean over chips of the
        batch losses), ``val_loss`` (over the whole validation set), ``val_aprc``
        (stage 2) or ``val_accuracy`` (stage 1), ``seconds`` (wall time of the epoch).
    checkpoints:
        Paths of the kept top-k checkpoints, best first (ranked by the validation
        metric, ties by lower validation loss, then earlier epoch).
    best:
        ``checkpoints[0]``.
    metric:
        ``"val_aprc"`` or ``"val_accuracy"``.
    stopped_early:
        True when early stopping ended the run (:attr:`TrainConfig.early_stopping`;
        resuming it with a larger budget will not train further).
    checkpoint_dir, last:
        The run's folder and its ``last.pt``.
    task:
        ``"stage1"`` or ``"stage2"``.
    """

    history: pd.DataFrame
    checkpoints: list[Path]
    metric: str
    stopped_early: bool
    checkpoint_dir: Path
    task: str
    last: Path = field(init=False)

    def __post_init__(self) -> None:
        self.last = self.checkpoint_dir / runs.LAST

    @property
    def best(self) -> Path:
        return self.checkpoints[0]

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def best_epoch(self) -> int:
        return int(self.best_info()["epoch"])

    def best_info(self) -> dict[str, Any]:
        """What the best checkpoint records besides its weights: task, model class and
        configuration, epoch, metrics, standardisation statistics, settings, runtime
        and package versions."""
        return checkpoint_info(self.best)

    def best_model(self, device: str | torch.device | None = "cpu") -> nn.Module:
        """The model of the best checkpoint, in eval mode."""
        return load_checkpoint(self.best, expected=self.task, device=device)

    def models(self, device: str | torch.device | None = "cpu") -> list[nn.Module]:
        """The models of all kept checkpoints, best first (for ensembling with
        :func:`~sarslide.predict.predict_proba`)."""
        return load_checkpoints(self.checkpoints, expected=self.task, device=device)
