"""One training loop for both stages: early stopping, top-k checkpoints, exact resume.

Training (:func:`fit`)
    Adam, mini-batches in a seeded order (epoch ``e`` of seed ``s`` always visits the
    chips in the same order), early stopping when the validation loss has not improved
    for ``patience`` epochs, the ``top_k`` checkpoints by validation APRC (stage 2) or
    accuracy (stage 1) kept on disk, the device's fast arithmetic by default
    (``precision="auto"``: bfloat16 autocast + channels-last on CPUs with native bf16
    and on recent GPUs, float16 + gradient scaling on older GPUs, float32 elsewhere; see
    :func:`sarslide.engine.runtime.resolve_precision`), a tqdm bar per run.  The device
    is CUDA when available, else CPU.  Weights, optimiser state and checkpoints are
    float32; the losses are computed in float32.  The settings travel as one
    :class:`TrainConfig` (``TrainConfig.from_profile(profile, "stage2")``).

    What differs between the stages lives in :mod:`sarslide.tasks`:

    * ``task="stage1"``: a :class:`~sarslide.models.SiameseClassifier`; the target of a
      chip is 1 when any of its label pixels is > 0 (mask or point counts); loss =
      binary cross-entropy on the logit.
    * ``task="stage2"``: a :class:`~sarslide.models.Segmenter`; the target of a pixel is
      ``label > 0``; loss = soft dice on sigmoid probabilities, summed over the *whole
      batch* (:func:`dice_loss`).  Half the chips hold no landslide, so a batch may hold
      no landslide pixel at all: its loss is then ``Σp / (Σp + 1)``, which is zero only
      when the network predicts nothing, so landslide-free chips still teach the network
      not to raise false alarms.  (segmentation-models-pytorch's ``DiceLoss`` sets the
      loss of such a batch to zero, which would make landslide-free chips useless.)

A run's folder
    Every epoch rewrites ``last.pt`` (model, optimiser, gradient scaler, RNG states,
    history, early-stopping state); the best ``top_k`` epochs are kept as
    ``top-epochNNNN.pt`` (checkpoints in the format of
    :mod:`sarslide.engine.checkpoints`). Calling :func:`fit` again with the same
    arguments resumes from ``last.pt`` and ends exactly where an uninterrupted run would
    (bit-identical on CPU at the same torch thread count: the run's threads are recorded
    under ``"runtime"`` in every checkpoint, and resuming with another count warns with
    :class:`ThreadCountWarning`); calling it on a finished run returns its result at
    once (:func:`finished_run` reads that result without the chips).

Prediction with the trained models is in :mod:`sarslide.predict`; the cached stage-1 run
of an event in :mod:`sarslide.pretrained`.

Inputs everywhere are standardised chips ``(N, 4, H, W)`` float32 (no NaN; see
:func:`sarslide.transforms.standardize`) and labels ``(N, H, W)`` (mask 0/1 or point
counts).
"""

from __future__ import annotations

import ast
import contextlib
import os
import random
import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .engine.atomic import remove_leftovers
from .engine.checkpoints import (
    CheckpointError,
    checkpoint_info,
    load_checkpoint,
    load_checkpoints,
    model_record,
    read_checkpoint,
    save_checkpoint,
    save_record,
)
from .engine.progress import progress_bar
from .engine.runtime import (
    Precision,
    Task,
    array_fingerprint,
    batch_indices,
    check_embeddings,
    check_images,
    forward_all,
    resolve_precision,
    runtime_record,
    segmenter_embeddings,
    select_device,
    take_rows,
)
from .tasks import TrainingTask, chip_targets, dice_loss, get_task, pixel_targets

__all__ = [
    "ThreadCountWarning",
    "TrainConfig",
    "TrainResult",
    "chip_targets",
    "dice_loss",
    "evaluate",
    "finished_run",
    "fit",
    "fit_chipset",
    "pixel_targets",
    "seed_everything",
]

_LAST = "last.pt"
_TOP_PATTERN = re.compile(r"^top-epoch(\d{4,})\.pt$")


# --------------------------------------------------------------------------- utilities


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    Call it before building a model so that its initial weights are reproducible.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_labels(labels: Any, images: np.ndarray, what: str) -> np.ndarray:
    """``labels`` as an array ``(N, H, W)`` matching ``images`` ``(N, 4, H, W)``:
    finite, not negative (mask 0/1 or point counts)."""
    labels = np.asarray(labels)
    expected = (images.shape[0],) + images.shape[2:]
    if labels.shape != expected:
        raise ValueError(
            f"{what} labels have shape {labels.shape} but the chips need {expected} "
            "(N, H, W)"
        )
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError(f"{what} labels contain NaN; use 0 for 'no landslide'")
    if labels.size and labels.min() < 0:
        raise ValueError(
            f"{what} labels contain negative values; use a 0/1 mask or point counts"
        )
    return labels


class ThreadCountWarning(UserWarning):
    """A run resumes with another torch thread count than it was written with (results
    are then not bit-identical to an uninterrupted run)."""


def _writable_dir(folder: Path) -> Path:
    """``folder``, created if missing, after checking that files can be written in it
    (before any training, not after the first epoch)."""
    hint = (
        "choose a writable checkpoint_dir (e.g. a folder under $SARSLIDE_DATA_DIR) or "
        "fix the folder's permissions"
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".sarslide-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PermissionError(
            f"cannot write checkpoints to {folder} ({type(err).__name__}: "
            f"{err.strerror or err}); {hint}"
        ) from err
    return folder


def _open_run_dir(
    checkpoint_dir: str | os.PathLike, *, read_only_ok: bool = False
) -> Path:
    """The run's folder, writable, without the half-written files of a killed run.

    ``read_only_ok``: a folder that holds a ``last.pt`` but cannot be written is
    returned as it is (a finished run on a read-only mount is read, never written); the
    caller checks writability with :func:`_writable_dir` before it trains.
    """
    folder = Path(checkpoint_dir)
    if read_only_ok and (folder / _LAST).is_file() and not _can_write(folder):
        return folder
    folder = _writable_dir(folder)
    remove_leftovers(folder)  # half-written checkpoints of a killed run
    return folder


def _can_write(folder: Path) -> bool:
    try:
        _writable_dir(folder)
    except PermissionError:
        return False
    return True


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


def _frozen_fingerprint(model: nn.Module) -> str | None:
    """Hash of a segmenter's frozen stage-1 weights (None without them): a run resumed
    with another stage-1 network would silently mix two models."""
    stage1 = getattr(model, "stage1", None)
    if stage1 is None:
        return None
    tensors = [
        t.detach().cpu().contiguous().numpy()
        for _, t in sorted(stage1.state_dict().items())
    ]
    return array_fingerprint(*tensors)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TrainConfig:
    """The training settings of one stage, built once (e.g. from a profile) and passed
    to :func:`fit` / :func:`fit_chipset` as ``config=``.

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
        :class:`~sarslide.engine.runtime.Precision`
        (:func:`sarslide.engine.runtime.resolve_precision`).
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
    def from_profile(cls, profile: Any, stage: str | TrainingTask) -> TrainConfig:
        """The settings a :class:`~sarslide.profiles.Profile` (or its name; ``None``:
        the default profile) gives ``stage`` (``"stage1"``/``"stage2"``): its
        ``stage1_max_epochs`` and ``patience`` (Adam, constant learning rate) or the
        ``stage2_*`` recipe (epochs, patience, optimiser, weight decay, clipping and
        learning-rate plateaus), and the shared ``batch_size``, ``learning_rate``,
        ``top_k`` and ``precision``."""
        from .profiles import get_profile

        profile = get_profile(profile)
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


def _config_from_arguments(config: TrainConfig | None, **settings: Any) -> TrainConfig:
    """``config``, or one built from :func:`fit`'s keyword settings (those not None);
    :class:`TypeError` when both are given or ``max_epochs`` is missing."""
    given = {name: value for name, value in settings.items() if value is not None}
    if config is not None:
        if given:
            raise TypeError(
                f"fit() got config= and also {sorted(given)}; pass the training "
                "settings either in the TrainConfig (dataclasses.replace(config, ...)) "
                "or as keywords, not both"
            )
        return config
    if "max_epochs" not in given:
        raise TypeError(
            "fit() missing 1 required keyword-only argument: 'max_epochs' (or pass "
            "config=TrainConfig(...))"
        )
    return TrainConfig(**given)


def _run_settings(
    task: TrainingTask,
    model: nn.Module,
    config: TrainConfig,
    seed: int,
    precision_name: str,
    data: str | None,
) -> dict[str, Any]:
    """What a run's ``last.pt`` must agree with to be resumed (stored in every
    checkpoint under ``"settings"``); ``data`` is the fingerprint of the chips and
    targets."""
    return {
        "task": task.name,
        "model_class": type(model).__name__,
        "model_config": model.config_dict(),
        "batch_size": int(config.batch_size),
        "lr": float(config.lr),
        "seed": int(seed),
        "patience": int(config.patience),
        "top_k": int(config.top_k),
        "data": data,
        "frozen_stage1": _frozen_fingerprint(model),
        "precision": precision_name,
        **_recipe_settings(config),
    }


#: The optimisers :class:`TrainConfig` names.
_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def _recipe_settings(config: TrainConfig) -> dict[str, Any]:
    """The optimiser recipe's settings that differ from plain Adam at a constant rate
    (so runs made with plain Adam keep the settings, and the caches, they had)."""
    recipe = {
        "optimizer": config.optimizer,
        "weight_decay": float(config.weight_decay),
        "grad_clip": None if config.grad_clip is None else float(config.grad_clip),
        "lr_plateau_patience": config.lr_plateau_patience,
        "lr_plateau_factor": float(config.lr_plateau_factor),
        "min_steps_per_epoch": int(config.min_steps_per_epoch),
        "early_stopping": config.early_stopping,
        "min_epochs": int(config.min_epochs),
    }
    plain = {
        "optimizer": "adam",
        "weight_decay": 0.0,
        "grad_clip": None,
        "lr_plateau_patience": None,
        "min_steps_per_epoch": 1,
        "early_stopping": "val_loss",
        "min_epochs": 1,
    }
    if all(recipe[k] == v for k, v in plain.items()):
        return {}
    return recipe


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
        True when the validation loss did not improve for ``patience`` epochs (the run
        stopped there, and resuming it with a larger budget will not train further).
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
        self.last = self.checkpoint_dir / _LAST

    @property
    def best(self) -> Path:
        return self.checkpoints[0]

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def best_epoch(self) -> int:
        return int(checkpoint_info(self.best)["epoch"])

    def best_model(self, device: str | torch.device | None = "cpu") -> nn.Module:
        """The model of the best checkpoint, in eval mode."""
        return load_checkpoint(self.best, expected=self.task, device=device)

    def models(self, device: str | torch.device | None = "cpu") -> list[nn.Module]:
        """The models of all kept checkpoints, best first (for ensembling with
        :func:`~sarslide.predict.predict_proba`)."""
        return load_checkpoints(self.checkpoints, expected=self.task, device=device)


# --------------------------------------------------------------------------- evaluation


def evaluate(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    task: Task | TrainingTask,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    precision: str | Precision = "auto",
) -> dict[str, float]:
    """Loss and metric of ``model`` on chips, as :func:`fit` computes them each epoch.

    Returns ``{"loss": ..., "accuracy": ...}`` (stage 1: BCE, share of chips right at
    logit 0) or ``{"loss": ..., "aprc": ...}`` (stage 2: dice over all chips, APRC over
    all pixels; 0.0 with a warning on chips without any landslide pixel).
    ``precision`` as in :func:`fit`.
    """
    task = get_task(task)
    task.check_model(model)
    images = check_images(images, model, "chips")
    labels = _check_labels(labels, images, "chips")
    dev = select_device(device)
    prec = resolve_precision(dev, precision)
    prec.apply_backend_settings()
    model.eval()
    targets = task.targets(labels)
    with prec.prepared(model, dev):
        outputs = forward_all(model, images, batch_size, dev, prec)
    loss, metric = task.score(outputs, targets)
    return {"loss": loss, task.metric.removeprefix("val_"): metric}


# ----------------------------------------------------------------------- RNG, ranking


def _rng_state() -> dict[str, Any]:
    """The global RNG states (torch, NumPy, Python, CUDA if present) as checkpoint
    data."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": repr(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`_rng_state` saved."""
    torch.set_rng_state(state["torch"])
    s = state["numpy"]
    keys = s["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (s["name"], keys, s["pos"], s["has_gauss"], s["cached_gaussian"])
    )
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rank_key(entry: Mapping[str, Any]) -> tuple:
    """Best first: higher metric, then lower validation loss, then earlier epoch."""
    return (-entry["metric"], entry["val_loss"], entry["epoch"])


def _clean_dir(checkpoint_dir: Path, keep: set[str]) -> None:
    """Delete the ``top-epochNNNN.pt`` files of ``checkpoint_dir`` not named in
    ``keep``."""
    for p in checkpoint_dir.iterdir():
        if _TOP_PATTERN.match(p.name) and p.name not in keep:
            p.unlink()


# --------------------------------------------------------------------------- one run


@dataclass
class _Run:
    """What one :func:`fit` call works with; fixed for the run (the model, optimiser and
    scaler change in place)."""

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

    @property
    def last_path(self) -> Path:
        return self.checkpoint_dir / _LAST


@dataclass
class _Progress:
    """How far a run is: what ``last.pt`` stores besides the weights and optimiser."""

    history: list[dict[str, float]] = field(default_factory=list)
    top: list[dict[str, Any]] = field(default_factory=list)
    best_val_loss: float = float("inf")
    bad_epochs: int = 0
    best_metric: float = float("-inf")
    bad_metric_epochs: int = 0
    stopped_early: bool = False
    epoch: int = 0

    @classmethod
    def from_record(cls, state: Mapping[str, Any]) -> _Progress:
        """The progress saved in a ``last.pt`` record."""
        return cls(
            history=list(state["history"]),
            top=list(state["top"]),
            best_val_loss=state["best_val_loss"],
            bad_epochs=state["bad_epochs"],
            best_metric=state.get("best_metric", float("-inf")),
            bad_metric_epochs=state.get("bad_metric_epochs", 0),
            stopped_early=state["stopped_early"],
            epoch=state["epoch"],
        )

    def finished(self, max_epochs: int) -> bool:
        """Stopped early, or trained for ``max_epochs`` epochs."""
        return self.stopped_early or self.epoch >= max_epochs


def _checked_data(
    task: TrainingTask,
    model: nn.Module,
    train_images: Any,
    train_labels: Any,
    val_images: Any,
    val_labels: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked chips (float32 ``(N, 4, H, W)``) and the task's float32 targets:
    ``(train_images, train_targets, val_images, val_targets)``."""
    train_images = check_images(train_images, model, "training chips")
    train_labels = _check_labels(train_labels, train_images, "training")
    val_images = check_images(val_images, model, "validation chips")
    val_labels = _check_labels(val_labels, val_images, "validation")
    train_targets, val_targets = task.targets(train_labels), task.targets(val_labels)
    task.check_validation_targets(val_targets)
    return train_images, train_targets, val_images, val_targets


def _set_up_run(
    task: TrainingTask,
    config: TrainConfig,
    model: nn.Module,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    seed: int,
    stats: Mapping | None,
    device: torch.device,
    precision: Precision,
    checkpoint_dir: Path,
) -> _Run:
    """Record the run's settings, seed everything, move the model to the device and
    build the optimiser and gradient scaler."""
    train_images, train_targets, val_images, val_targets = data
    fingerprint = array_fingerprint(
        train_images, train_targets, val_images, val_targets
    )
    settings = _run_settings(task, model, config, seed, precision.name, fingerprint)
    runtime = runtime_record(device, precision)
    seed_everything(seed)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    optimizer = _build_optimizer(config, params)
    scaler = precision.grad_scaler_for(device)
    scheduler = None
    if config.lr_plateau_patience is not None:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=config.lr_plateau_factor,
            patience=config.lr_plateau_patience,
        )
    return _Run(
        task,
        config,
        model,
        seed,
        stats,
        device,
        precision,
        checkpoint_dir,
        train_images,
        train_targets,
        val_images,
        val_targets,
        settings,
        runtime,
        optimizer,
        scaler,
        scheduler,
    )


def _build_optimizer(
    config: TrainConfig, params: list[nn.Parameter]
) -> torch.optim.Optimizer:
    """The optimiser :class:`TrainConfig` names, at its initial learning rate."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr)


def _recorded_settings(state: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a ``last.pt`` record was written with."""
    old = dict(state.get("settings", {}))
    # runs from before precision was a setting: float16 + gradient scaler on CUDA, else
    # float32
    old.setdefault("precision", "fp16" if state.get("scaler") else "fp32")
    return old


def _check_resumable(run: _Run, state: Mapping[str, Any]) -> None:
    """Raise :class:`CheckpointError` unless ``last.pt`` is this run, within budget."""
    old = _recorded_settings(state)
    changed = sorted(k for k in run.settings if old.get(k) != run.settings[k])
    if changed:
        raise CheckpointError(
            f"{run.last_path} belongs to a different run (differs in {changed}); use "
            "another checkpoint_dir, or resume=False to overwrite it"
        )
    max_epochs = run.config.max_epochs
    if state["epoch"] > max_epochs:
        raise CheckpointError(
            f"{run.last_path} is already at epoch {state['epoch']} > "
            f"max_epochs={max_epochs}; ask for at least that many epochs, or use "
            "another checkpoint_dir"
        )


def _warn_if_threads_differ(run: _Run, state: Mapping[str, Any]) -> None:
    """:class:`ThreadCountWarning` when a run that will train further was written with
    another torch thread count (reported at :func:`fit`'s caller)."""
    was = (state.get("runtime") or {}).get("threads")
    now = run.runtime["threads"]
    if (
        was is None
        or was == now
        or _Progress.from_record(state).finished(run.config.max_epochs)
    ):
        return
    warnings.warn(
        f"{run.last_path} was written with {was} torch thread(s), this process uses "
        f"{now}: the resumed epochs will not be bit-identical to an uninterrupted run; "
        f"call torch.set_num_threads({was}) first to match it",
        ThreadCountWarning,
        stacklevel=4,  # _warn_if_threads_differ <- _start_or_resume <- fit <- caller
    )


def _start_or_resume(run: _Run, resume: bool) -> _Progress:
    """Resume from ``last.pt`` (weights, optimiser, scaler, RNG, progress) when asked
    and present; otherwise start afresh, deleting the folder's old checkpoints."""
    if not (resume and run.last_path.exists()):
        _clean_dir(run.checkpoint_dir, keep=set())
        if run.last_path.exists():
            run.last_path.unlink()
        return _Progress()
    state = read_checkpoint(run.last_path)
    _check_resumable(run, state)
    run.model.load_state_dict(state["state_dict"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    if run.scheduler is not None:
        run.scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    _warn_if_threads_differ(run, state)
    return _Progress.from_record(state)


def _split_embeddings(
    run: _Run,
    train_embeddings: np.ndarray | Tensor | None,
    val_embeddings: np.ndarray | Tensor | None,
) -> tuple[Tensor | None, Tensor | None]:
    """A segmenter's frozen stage-1 embeddings of the training and validation chips
    (``(N, 64, H, W)`` CPU tensors; None for models without them).

    The stage-1 network is frozen, so its embeddings of these chips are the same every
    epoch: computed once here (in the dtype the forward pass produces), or the caller's
    precomputed ones, checked.
    """
    model, dev, prec = run.model, run.device, run.precision
    batch = run.config.batch_size
    train_emb = check_embeddings(
        train_embeddings, model, run.train_images, "training", dev, prec
    )
    if train_emb is None:
        train_emb = segmenter_embeddings(model, run.train_images, batch, dev, prec)
    val_emb = check_embeddings(
        val_embeddings, model, run.val_images, "validation", dev, prec
    )
    if val_emb is None:
        val_emb = segmenter_embeddings(model, run.val_images, batch, dev, prec)
    return train_emb, val_emb


def _epoch_batches(run: _Run, epoch: int) -> Iterator[np.ndarray]:
    """The epoch's mini-batches of training positions: passes over the training chips,
    each in its seeded order (``[seed, epoch]`` for the first, ``[seed, epoch, k]``
    for pass ``k``), until at least ``min_steps_per_epoch`` batches are made."""
    n, batch_size = len(run.train_images), run.config.batch_size
    per_pass = -(-n // batch_size)
    passes = -(-run.config.min_steps_per_epoch // per_pass)
    for k in range(passes):
        key = [int(run.seed), epoch] if k == 0 else [int(run.seed), epoch, k]
        order = np.random.default_rng(key).permutation(n)
        yield from batch_indices(n, batch_size, order)


def _train_epoch(run: _Run, epoch: int, train_emb: Tensor | None) -> float:
    """One epoch over the training chips (:func:`_epoch_batches`); the mean over chips
    of the batch losses (float32 losses, whatever the autocast dtype)."""
    model, dev, prec = run.model, run.device, run.precision
    batch_size = run.config.batch_size
    model.train()
    n = len(run.train_images)
    total, seen = 0.0, 0
    for idx in _epoch_batches(run, epoch):
        if len(idx) == 1 and batch_size > 1 and n > 1:
            # BatchNorm cannot train on a batch of one chip at small chip sizes; the
            # order is reshuffled every epoch, so a different chip sits out each time
            continue
        xb = prec.to_input(run.train_images[idx], dev)
        yb = torch.from_numpy(run.train_targets[idx]).to(dev, non_blocking=True)
        run.optimizer.zero_grad(set_to_none=True)
        extra = (
            ()
            if train_emb is None
            else (prec.to_input(take_rows(train_emb, idx), dev),)
        )
        size = run.train_images.shape[-1]
        with prec.autocast(), _one_chip_batch_hint(len(idx), size):
            out = model(xb, *extra)
        loss = run.task.loss(out.float(), yb)
        run.scaler.scale(loss).backward()
        if run.config.grad_clip is not None:
            run.scaler.unscale_(run.optimizer)  # clip the true gradient, not the scaled
            torch.nn.utils.clip_grad_norm_(
                [p for g in run.optimizer.param_groups for p in g["params"]],
                run.config.grad_clip,
            )
        run.scaler.step(run.optimizer)
        run.scaler.update()
        total += loss.item() * len(idx)
        seen += len(idx)
    return total / seen


def _validate(run: _Run, val_emb: Tensor | None) -> tuple[float, float]:
    """(validation loss, validation metric) over the whole validation set."""
    run.model.eval()
    outputs = forward_all(
        run.model,
        run.val_images,
        run.config.batch_size,
        run.device,
        run.precision,
        val_emb,
    )
    return run.task.score(outputs, run.val_targets)


def _update_early_stopping(
    run: _Run, progress: _Progress, val_loss: float, val_metric: float
) -> None:
    """Count the epochs without a strict improvement of the validation loss and of
    the validation metric; stop when the watched one (``TrainConfig.early_stopping``;
    for ``"both"`` the more recently improved one) reaches ``patience``."""
    if val_loss < progress.best_val_loss:
        progress.best_val_loss, progress.bad_epochs = val_loss, 0
    else:
        progress.bad_epochs += 1
    if val_metric > progress.best_metric:
        progress.best_metric, progress.bad_metric_epochs = val_metric, 0
    else:
        progress.bad_metric_epochs += 1
    watched = {
        "val_loss": progress.bad_epochs,
        "metric": progress.bad_metric_epochs,
        "both": min(progress.bad_epochs, progress.bad_metric_epochs),
    }[run.config.early_stopping]
    progress.stopped_early = (
        watched >= run.config.patience and progress.epoch >= run.config.min_epochs
    )


def _keep_top_k(run: _Run, progress: _Progress, metrics: dict[str, float]) -> None:
    """Save this epoch as ``top-epochNNNN.pt`` if it ranks among the best ``top_k``,
    rewrite ``last.pt`` and delete checkpoints that dropped out of the top k."""
    epoch, metric = progress.epoch, run.task.metric
    entry = {
        "epoch": epoch,
        "metric": metrics[metric],
        "val_loss": metrics["val_loss"],
        "file": f"top-epoch{epoch:04d}.pt",
    }
    candidate = sorted(progress.top + [entry], key=_rank_key)[: run.config.top_k]
    extra = {
        "epoch": epoch,
        "metrics": metrics,
        "settings": run.settings,
        "runtime": run.runtime,
    }
    if entry in candidate:
        save_checkpoint(
            run.model,
            run.checkpoint_dir / entry["file"],
            task=run.task.name,
            stats=run.stats,
            extra=extra,
        )
    progress.top = candidate
    record = model_record(run.model, run.task.name, run.stats)
    record.update(
        epoch=epoch,
        metrics=metrics,
        settings=run.settings,
        runtime=run.runtime,
        optimizer=run.optimizer.state_dict(),
        scaler=run.scaler.state_dict(),
        scheduler=None if run.scheduler is None else run.scheduler.state_dict(),
        rng=_rng_state(),
        history=progress.history,
        top=progress.top,
        best_val_loss=progress.best_val_loss,
        bad_epochs=progress.bad_epochs,
        best_metric=progress.best_metric,
        bad_metric_epochs=progress.bad_metric_epochs,
        stopped_early=progress.stopped_early,
    )
    save_record(record, run.last_path)
    _clean_dir(run.checkpoint_dir, keep={e["file"] for e in progress.top})


def _train_remaining_epochs(
    run: _Run,
    progress: _Progress,
    embeddings: tuple[np.ndarray | Tensor | None, np.ndarray | Tensor | None],
    show_progress: bool,
) -> None:
    """Epochs ``progress.epoch + 1 .. max_epochs`` (fewer on early stopping), each
    validated, ranked and saved; the weights in the precision's layout meanwhile."""
    model, metric, max_epochs = run.model, run.task.metric, run.config.max_epochs
    run.precision.apply_layout(model)  # put back at the end
    bar = progress_bar(
        total=max_epochs,
        initial=progress.epoch,
        disable=not show_progress,
        desc=f"{run.task.name} {type(model).__name__}",
        unit="epoch",
        leave=True,
    )
    try:
        train_emb, val_emb = _split_embeddings(run, *embeddings)
        for epoch in range(progress.epoch + 1, max_epochs + 1):
            t0 = time.perf_counter()
            lr = run.optimizer.param_groups[0]["lr"]
            train_loss = _train_epoch(run, epoch, train_emb)
            val_loss, val_metric = _validate(run, val_emb)
            if run.scheduler is not None:
                run.scheduler.step(val_loss)
            metrics = {
                "train_loss": train_loss,
                "val_loss": val_loss,
                metric: val_metric,
            }
            progress.epoch = epoch
            progress.history.append(
                {
                    "epoch": epoch,
                    **metrics,
                    "lr": lr,
                    "seconds": time.perf_counter() - t0,
                }
            )
            _update_early_stopping(run, progress, val_loss, val_metric)
            _keep_top_k(run, progress, metrics)
            bar.set_postfix(
                train_loss=f"{train_loss:.4f}",
                val_loss=f"{val_loss:.4f}",
                refresh=False,
                **{metric: f"{val_metric:.3f}"},
            )
            bar.update(1)
            if progress.stopped_early:
                break
    finally:
        bar.close()
        run.precision.restore_layout(model)


def _result(
    task: TrainingTask, checkpoint_dir: Path, progress: _Progress
) -> TrainResult:
    """The :class:`TrainResult` of a run's progress."""
    columns = ["epoch", "train_loss", "val_loss", task.metric, "lr", "seconds"]
    frame = pd.DataFrame(progress.history, columns=columns)
    frame["epoch"] = frame["epoch"].astype(int)
    paths = [checkpoint_dir / e["file"] for e in sorted(progress.top, key=_rank_key)]
    return TrainResult(
        frame, paths, task.metric, progress.stopped_early, checkpoint_dir, task.name
    )


# ----------------------------------------------------------------------- entry points


def fit(
    model: nn.Module,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    *,
    task: Task | TrainingTask,
    checkpoint_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    max_epochs: int | None = None,
    patience: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    top_k: int | None = None,
    precision: str | Precision | None = None,
    seed: int = 0,
    stats: Mapping | None = None,
    device: str | torch.device | None = None,
    train_embeddings: np.ndarray | Tensor | None = None,
    val_embeddings: np.ndarray | Tensor | None = None,
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
    train_images, val_images:
        Standardised chips ``(N, 4, H, W)`` float32, no NaN.
    train_labels, val_labels:
        ``(N, H, W)``: masks (0/1) or point counts; > 0 means landslide.
    task:
        ``"stage1"``, ``"stage2"`` or a :class:`~sarslide.tasks.TrainingTask`.
    checkpoint_dir:
        The run's folder (``last.pt`` and ``top-epochNNNN.pt``); one folder per run.
    config:
        The training settings (:class:`TrainConfig`, e.g.
        ``TrainConfig.from_profile(profile, "stage2")``).
    max_epochs, patience, batch_size, lr, top_k, precision:
        Instead of ``config``: the fields of a :class:`TrainConfig` (``max_epochs``
        required, the others default to its defaults).  ``precision`` is resolved by
        :func:`sarslide.engine.runtime.resolve_precision`; the resolved name is part of
        the run's settings (a run resumes only with the same precision); checkpoints
        record it with the device and torch's thread count under ``"runtime"``.
    seed:
        Seeds torch/NumPy/Python at the start and fixes the chip order of every epoch.
    stats:
        The standardisation statistics (``BandStats`` or its dict), stored in
        checkpoints.
    device:
        ``None`` picks CUDA when available, else CPU.
    train_embeddings, val_embeddings:
        A segmenter's frozen stage-1 embeddings of ``train_images`` / ``val_images``,
        ``(N, 64, H, W)`` aligned with the chips (numpy array or CPU tensor, any float
        dtype), e.g. from :func:`sarslide.engine.embeddings.cached_embeddings`; used
        instead of computing them here.  The first chip of each split is re-embedded as
        a check that they belong to these chips and this stage-1 network.
    progress:
        Show a tqdm bar over epochs.
    resume:
        Continue from ``checkpoint_dir/last.pt`` if it exists (it must come from the
        same model configuration, data and settings); ``False`` starts afresh and
        deletes the folder's old checkpoints.

    Raises
    ------
    ValueError
        Empty splits, NaN, wrong channel count or chip size, stage-2 validation chips
        without any landslide pixel (APRC undefined), bad settings.
    TypeError
        A model of the wrong class for ``task``; ``config`` together with keyword
        settings, or neither ``config`` nor ``max_epochs``.
    CheckpointError
        ``last.pt`` belongs to a different model, data or settings.
    """
    task = get_task(task)
    task.check_model(model)
    config = _config_from_arguments(
        config,
        max_epochs=max_epochs,
        patience=patience,
        batch_size=batch_size,
        lr=lr,
        top_k=top_k,
        precision=precision,
    )
    data = _checked_data(
        task, model, train_images, train_labels, val_images, val_labels
    )
    dev = select_device(device)
    prec = resolve_precision(dev, config.precision)
    prec.apply_backend_settings()
    folder = _open_run_dir(checkpoint_dir, read_only_ok=True)
    from .transforms import warn_if_unstandardized

    warn_if_unstandardized(data[0], "training chips")
    run = _set_up_run(task, config, model, data, seed, stats, dev, prec, folder)
    state = _start_or_resume(run, resume)
    if not state.finished(config.max_epochs):
        _writable_dir(
            folder
        )  # before any training step (a read-only finished run is only read)
        _train_remaining_epochs(
            run, state, (train_embeddings, val_embeddings), progress
        )
    return _result(task, folder, state)


def finished_run(
    model: nn.Module,
    *,
    task: Task | TrainingTask,
    config: TrainConfig,
    checkpoint_dir: str | os.PathLike,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> TrainResult | None:
    """What :func:`fit` returns at once for a finished run, read without its chips.

    ``fit(model, <chips>, task=task, config=config, seed=seed,
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
    if not (Path(checkpoint_dir) / _LAST).exists():
        return None
    prec = resolve_precision(select_device(device), config.precision)
    prec.apply_backend_settings()
    folder = _open_run_dir(checkpoint_dir, read_only_ok=True)
    expected = _run_settings(task, model, config, seed, prec.name, data=None)
    del expected["data"]  # the chips are not at hand
    state = read_checkpoint(folder / _LAST)
    recorded = _recorded_settings(state)
    progress = _Progress.from_record(state)
    if (
        any(recorded.get(k) != v for k, v in expected.items())
        or state["epoch"] > config.max_epochs
        or not progress.finished(config.max_epochs)
        or not progress.top
    ):
        return None
    seed_everything(seed)  # as fit does before it reads last.pt (CUDA's RNG keeps it
    _set_rng_state(state["rng"])  # when last.pt was written without CUDA)
    return _result(task, folder, progress)


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


def fit_chipset(
    model: nn.Module,
    chipset,
    *,
    task: Task | TrainingTask,
    train_split: str | None = None,
    train_indices: Sequence[int] | None = None,
    val_split: str = "validation",
    **kwargs: Any,
) -> TrainResult:
    """:func:`fit` on a :class:`~sarslide.chips.ChipSet`: select splits, standardise,
    record stats.

    Parameters
    ----------
    chipset:
        Chips with ``stats`` (as :func:`sarslide.datasets.prepare_event` returns them).
    task:
        ``"stage1"``, ``"stage2"`` or a :class:`~sarslide.tasks.TrainingTask`.
    train_split:
        Defaults to the task's :attr:`~sarslide.tasks.TrainingTask.default_train_split`
        (``"stage1_train"`` for stage 1, ``"stage2_train"`` for stage 2).
    train_indices:
        Positions *within* the training split to use (few-shot subsets); all by default.
    val_split:
        Validation split name.
    kwargs:
        Passed to :func:`fit` (``config``, ``checkpoint_dir``, ``seed``, ...).
    """
    from .transforms import standardize

    task = get_task(task)
    if chipset.stats is None:
        raise ValueError(
            "the chips carry no standardisation statistics; compute them on the "
            "stage-1 training chips (transforms.compute_stats) or use "
            "datasets.prepare_event"
        )
    train = chipset.split(train_split or task.default_train_split)
    if train_indices is not None:
        train = train.subset(_check_indices(train_indices, len(train)))
    val = chipset.split(val_split)
    return fit(
        model,
        standardize(train.images, chipset.stats) if len(train) else train.images,
        train.labels,
        standardize(val.images, chipset.stats) if len(val) else val.images,
        val.labels,
        task=task,
        stats=chipset.stats,
        **kwargs,
    )
