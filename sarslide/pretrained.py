"""The stage-1 classifier of an event, trained once and cached: get-or-train.

:func:`train_stage1` trains (or resumes, or just returns) the stage-1 run of an
experiment's event in :func:`stage1_checkpoint_dir`, a folder named after everything
that determines the run; :func:`pretrained_stage1` returns its best model, which is what
a stage-2 chapter calls so that it runs standalone on a fresh runtime. The pretraining
arm of another event is the same experiment on that event
(``exp.for_event("kaikoura")``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .engine.checkpoints import load_checkpoint
from .experiment import Experiment
from .models import SiameseClassifier
from .profiles import Profile
from .tasks import STAGE1
from .train import (
    TrainConfig,
    TrainingData,
    TrainResult,
    finished_run,
    fit,
    seed_everything,
)

__all__ = [
    "checkpoint_root",
    "pretrained_stage1",
    "stage1_checkpoint_dir",
    "stage1_precision",
    "stage1_train_config",
    "train_stage1",
]


def checkpoint_root(exp: Experiment) -> Path:
    """The folder that holds training runs: ``<data dir>/checkpoints``."""
    return exp.data_dir / "checkpoints"


def stage1_precision(profile: Profile, device: str | torch.device | None = None) -> str:
    """The precision an event's stage-1 run trains under on ``device`` (``None``: CUDA
    when available, else CPU): ``profile.precision`` resolved by
    :func:`sarslide.engine.precision.resolve_precision` (``"fp32"``, ``"bf16"`` or
    ``"fp16"``).

    The one rule for stage 1: this name trains the model, keys its folder
    (:func:`stage1_checkpoint_dir`) and is recorded in its checkpoints' settings.
    """
    from .engine.precision import resolve_precision, select_device

    return resolve_precision(select_device(device), profile.precision).name


def stage1_checkpoint_dir(
    exp: Experiment, *, architecture: str | None = None, seed: int = 0
) -> Path:
    """Where :func:`train_stage1` keeps a run: ``<data dir>/checkpoints/stage1-...``.

    The name carries the event, the architecture (``None``: the profile's
    ``stage1_config``), the training seed and a hash of the chip store's and the
    stage-1 training's settings (:data:`sarslide.profiles.STAGE1_FIELDS`), with the
    precision as :func:`stage1_precision` resolves it on the experiment's device (a run
    trained in bf16 on one machine is not the fp16 run of another), so changing the
    data or a setting starts a new run instead of reusing a stale one, while profiles
    that differ only in stage-2 settings share one stage-1 model.
    """
    from .datasets import store_key
    from .profiles import STAGE1_FIELDS

    profile = exp.profile
    architecture = architecture or profile.stage1_config
    keyed = profile.with_overrides(precision=stage1_precision(profile, exp.device))
    key = store_key(exp.event, keyed, profile.data_seed, STAGE1_FIELDS)
    name = f"stage1-{exp.event}-{architecture}-seed{seed}-{key}"
    return checkpoint_root(exp) / name


def stage1_train_config(
    profile: Profile, device: str | torch.device | None = None
) -> TrainConfig:
    """The training settings of an event's stage-1 run under ``profile`` on ``device``:
    :meth:`TrainConfig.from_profile` for stage 1 (``stage1_max_epochs``, ``patience``,
    ``batch_size``, ``learning_rate``, ``top_k``), with the profile's precision resolved
    for ``device`` (:func:`stage1_precision`; ``"auto"`` gives the device's fast path),
    the same name that keys the run's folder.
    """
    precision = stage1_precision(profile, device)
    return replace(TrainConfig.from_profile(profile, STAGE1), precision=precision)


def train_stage1(
    exp: Experiment,
    *,
    architecture: str | None = None,
    seed: int = 0,
    progress: bool = True,
    resume: bool = True,
) -> TrainResult:
    """Train (or resume, or just return) the stage-1 classifier of the experiment's
    event.

    Uses :func:`sarslide.datasets.prepare_event` (split ``stage1_train``, validation
    split ``validation``), :func:`stage1_train_config` and the ``architecture``
    (``None``: the profile's ``stage1_config``), seeded with ``seed``, in the profile's
    precision resolved for the experiment's device (:func:`stage1_precision`).
    Checkpoints go to :func:`stage1_checkpoint_dir`; a finished run is returned without
    training again. ``progress`` shows progress bars.
    """
    from .datasets import prepare_event

    profile, device = exp.profile, exp.device
    architecture = architecture or profile.stage1_config
    chips = prepare_event(exp)
    seed_everything(seed)
    model = SiameseClassifier(architecture)
    folder = stage1_checkpoint_dir(exp, architecture=architecture, seed=seed)
    return fit(
        model,
        TrainingData.from_chipset(chips, "stage1_train"),
        task=STAGE1,
        config=stage1_train_config(profile, device),
        seed=seed,
        checkpoint_dir=folder,
        device=device,
        progress=progress,
        resume=resume,
    )


def _finished_stage1(
    folder: Path, architecture: str, profile: Profile, seed: int, device
) -> TrainResult | None:
    """The finished stage-1 run in ``folder`` as :func:`train_stage1` would return it,
    without preparing chips or initialising a network; None if it is not finished.

    The folder is named after the chips and settings (:func:`stage1_checkpoint_dir`),
    which stands in for fit's data check.  The global RNG ends as after
    :func:`train_stage1` (:func:`~sarslide.train.finished_run`).
    """
    # Only the class and configuration are compared: built on the meta device (no
    # weights), in a forked RNG (initialising it would still draw from torch's).
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = SiameseClassifier(architecture)
    return finished_run(
        model,
        task=STAGE1,
        config=stage1_train_config(profile, device),
        checkpoint_dir=folder,
        seed=seed,
        device=device,
    )


def pretrained_stage1(
    exp: Experiment,
    *,
    architecture: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> SiameseClassifier:
    """The best stage-1 classifier of the experiment's event: loaded from the cache,
    trained first if missing.

    This is what a stage-2 chapter calls, so it runs standalone on a fresh runtime.  A
    finished run is read straight from its checkpoint folder (no chips, no network to
    initialise: the ablation grid calls this once per stage-2 run); otherwise
    :func:`train_stage1` trains or resumes it.  Either way the same model and the same
    global RNG state result.  The returned model is on the CPU in eval mode; pass it to
    ``Segmenter(stage1=...)``.
    """
    architecture = architecture or exp.profile.stage1_config
    folder = stage1_checkpoint_dir(exp, architecture=architecture, seed=seed)
    result = _finished_stage1(folder, architecture, exp.profile, seed, exp.device)
    if result is None:
        result = train_stage1(
            exp, architecture=architecture, seed=seed, progress=progress
        )
    return load_checkpoint(result.best, "stage1", device="cpu")
