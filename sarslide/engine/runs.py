"""A training run's folder and its bookkeeping: what makes :func:`sarslide.train.fit`
resumable.

One folder per run holds ``last.pt`` (:data:`LAST`), rewritten every epoch, and the
run's best epochs as ``top-epochNNNN.pt`` (:func:`top_file`), checkpoints in the format
of :mod:`sarslide.engine.checkpoints`.  ``last.pt`` holds the model, the optimiser,
gradient scaler and learning-rate scheduler, the global RNG states
(:func:`rng_state`), the run's settings (:func:`run_settings`), how it was run
(:func:`runtime_record`: precision, device, torch threads) and its :class:`RunState`
(epoch, history, the kept checkpoints, the early-stopping counters).

A run resumes from ``last.pt`` only with the same settings (:func:`resume_record`) and
then ends exactly where an uninterrupted run would: bit-identical on a CPU at the same
torch thread count; resuming with another count warns with
:class:`ThreadCountWarning`.  A finished run is read back without its chips
(:func:`finished_record`).
"""

from __future__ import annotations

import ast
import os
import random
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .atomic import remove_leftovers
from .checkpoints import CheckpointError, model_record, read_checkpoint, save_record
from .precision import Precision
from .runtime import array_fingerprint

__all__ = [
    "LAST",
    "RunState",
    "ThreadCountWarning",
    "clean_dir",
    "finished_record",
    "open_run_dir",
    "resume_record",
    "rng_state",
    "run_settings",
    "runtime_record",
    "save_last",
    "set_rng_state",
    "top_file",
    "writable_dir",
]

#: The file a run rewrites every epoch, everything needed to resume.
LAST = "last.pt"
_TOP_PATTERN = re.compile(r"^top-epoch(\d{4,})\.pt$")


def top_file(epoch: int) -> str:
    """The file name of a kept epoch: ``top-epochNNNN.pt``."""
    return f"top-epoch{epoch:04d}.pt"


class ThreadCountWarning(UserWarning):
    """A run resumes with another torch thread count than it was written with (results
    are then not bit-identical to an uninterrupted run)."""


# --------------------------------------------------------------------------- the folder


def writable_dir(folder: Path) -> Path:
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


def open_run_dir(
    checkpoint_dir: str | os.PathLike, *, read_only_ok: bool = False
) -> Path:
    """The run's folder, writable, without the half-written files of a killed run.

    ``read_only_ok``: a folder that holds a ``last.pt`` but cannot be written is
    returned as it is (a finished run on a read-only mount is read, never written); the
    caller checks writability with :func:`writable_dir` before it trains.
    """
    folder = Path(checkpoint_dir)
    if read_only_ok and (folder / LAST).is_file() and not _can_write(folder):
        return folder
    folder = writable_dir(folder)
    remove_leftovers(folder)  # half-written checkpoints of a killed run
    return folder


def _can_write(folder: Path) -> bool:
    try:
        writable_dir(folder)
    except PermissionError:
        return False
    return True


def clean_dir(checkpoint_dir: Path, keep: set[str]) -> None:
    """Delete the ``top-epochNNNN.pt`` files of ``checkpoint_dir`` not named in
    ``keep``."""
    for p in checkpoint_dir.iterdir():
        if _TOP_PATTERN.match(p.name) and p.name not in keep:
            p.unlink()


# --------------------------------------------------------------------------- state


@dataclass
class RunState:
    """How far a run is: what ``last.pt`` stores besides the weights and optimiser.

    Attributes
    ----------
    history:
        One dict per epoch (``epoch``, the losses, the metric, ``lr``, ``seconds``).
    top:
        The kept epochs, best first: dicts with ``epoch``, ``metric``, ``val_loss`` and
        ``file``.
    best_val_loss, bad_epochs:
        The lowest validation loss so far, and the epochs since it last fell.
    best_metric, bad_metric_epochs:
        The highest validation metric so far, and the epochs since it last rose.
    stopped_early:
        Early stopping ended the run.
    epoch:
        The last epoch trained (0 before the first).
    """

    history: list[dict[str, float]] = field(default_factory=list)
    top: list[dict[str, Any]] = field(default_factory=list)
    best_val_loss: float = float("inf")
    bad_epochs: int = 0
    best_metric: float = float("-inf")
    bad_metric_epochs: int = 0
    stopped_early: bool = False
    epoch: int = 0

    @classmethod
    def from_record(cls, state: Mapping[str, Any]) -> RunState:
        """The state saved in a ``last.pt`` record."""
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


def rng_state() -> dict[str, Any]:
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


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    s = state["numpy"]
    keys = s["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (s["name"], keys, s["pos"], s["has_gauss"], s["cached_gaussian"])
    )
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def runtime_record(device: torch.device, precision: Precision) -> dict[str, Any]:
    """How a computation was run (precision, device, torch threads, torch version), as
    plain data for a checkpoint's metadata."""
    return {
        **precision.describe(),
        "device": str(device),
        "threads": int(torch.get_num_threads()),
        "torch": str(torch.__version__),
    }


# --------------------------------------------------------------------------- settings


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


def run_settings(
    task: str,
    model: nn.Module,
    config: Any,
    seed: int,
    precision_name: str,
    data: str | None,
) -> dict[str, Any]:
    """What a run's ``last.pt`` must agree with to be resumed (stored in every
    checkpoint under ``"settings"``).

    ``config`` is the run's :class:`sarslide.train.TrainConfig`; ``data`` the
    fingerprint of the chips and targets (None where they are not at hand).  The
    optimiser recipe is recorded only where it differs from plain Adam at a constant
    rate, so runs made with plain Adam keep the settings, and the caches, they had.
    """
    return {
        "task": task,
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


def _recipe_settings(config: Any) -> dict[str, Any]:
    """The optimiser recipe's settings, or ``{}`` for plain Adam at a constant rate."""
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


def _recorded_settings(state: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a ``last.pt`` record was written with."""
    old = dict(state.get("settings", {}))
    # runs from before precision was a setting: float16 + gradient scaler on CUDA, else
    # float32
    old.setdefault("precision", "fp16" if state.get("scaler") else "fp32")
    return old


# --------------------------------------------------------------------------- resuming


def resume_record(
    folder: Path,
    settings: Mapping[str, Any],
    max_epochs: int,
    threads: int,
    resume: bool,
) -> dict[str, Any] | None:
    """The ``last.pt`` record a run continues from, or None to start afresh.

    With ``resume`` and a ``last.pt`` in ``folder``: the record, after checking that it
    was written with ``settings`` and is within ``max_epochs``
    (:class:`~sarslide.engine.checkpoints.CheckpointError` otherwise); a run that will
    train further with another torch thread count than ``threads`` warns with
    :class:`ThreadCountWarning` (at the caller of the function that calls this one).
    Otherwise the folder's old checkpoints are deleted and None is returned.
    """
    last = folder / LAST
    if not (resume and last.exists()):
        clean_dir(folder, keep=set())
        if last.exists():
            last.unlink()
        return None
    state = read_checkpoint(last)
    old = _recorded_settings(state)
    changed = sorted(k for k in settings if old.get(k) != settings[k])
    if changed:
        raise CheckpointError(
            f"{last} belongs to a different run (differs in {changed}); use "
            "another checkpoint_dir, or resume=False to overwrite it"
        )
    if state["epoch"] > max_epochs:
        raise CheckpointError(
            f"{last} is already at epoch {state['epoch']} > "
            f"max_epochs={max_epochs}; ask for at least that many epochs, or use "
            "another checkpoint_dir"
        )
    was = (state.get("runtime") or {}).get("threads")
    if (
        was is not None
        and was != threads
        and not RunState.from_record(state).finished(max_epochs)
    ):
        warnings.warn(
            f"{last} was written with {was} torch thread(s), this process uses "
            f"{threads}: the resumed epochs will not be bit-identical to an "
            f"uninterrupted run; call torch.set_num_threads({was}) first to match it",
            ThreadCountWarning,
            stacklevel=4,  # resume_record <- its caller <- fit <- fit's caller
        )
    return state


def save_last(
    folder: Path,
    model: nn.Module,
    *,
    task: str,
    stats: Mapping | None,
    extra: Mapping[str, Any],
    state: RunState,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None,
) -> None:
    """Write the run's ``last.pt``: ``model``'s checkpoint record with the epoch's
    ``extra`` fields (epoch, metrics, settings, runtime), the optimiser, scaler and
    scheduler states, the global RNG states and ``state``."""
    record = model_record(model, task, stats)
    record.update(extra)
    record.update(
        optimizer=optimizer.state_dict(),
        scaler=scaler.state_dict(),
        scheduler=None if scheduler is None else scheduler.state_dict(),
        rng=rng_state(),
        history=state.history,
        top=state.top,
        best_val_loss=state.best_val_loss,
        bad_epochs=state.bad_epochs,
        best_metric=state.best_metric,
        bad_metric_epochs=state.bad_metric_epochs,
        stopped_early=state.stopped_early,
    )
    save_record(record, folder / LAST)


def finished_record(
    checkpoint_dir: str | os.PathLike, settings: Mapping[str, Any], max_epochs: int
) -> dict[str, Any] | None:
    """The ``last.pt`` record of the finished run in ``checkpoint_dir``, read without
    its chips.

    ``settings`` are :func:`run_settings` without ``"data"``: the caller vouches for the
    chips (e.g. with a folder named after them).  None where the run is not exactly
    that: no ``last.pt``, other settings, an epoch beyond ``max_epochs``, a run not
    finished, or no kept checkpoint.  Half-written files are removed from the folder
    (:func:`open_run_dir`).
    """
    if not (Path(checkpoint_dir) / LAST).exists():
        return None
    folder = open_run_dir(checkpoint_dir, read_only_ok=True)
    record = read_checkpoint(folder / LAST)
    recorded = _recorded_settings(record)
    state = RunState.from_record(record)
    if (
        any(recorded.get(k) != v for k, v in settings.items())
        or record["epoch"] > max_epochs
        or not state.finished(max_epochs)
        or not state.top
    ):
        return None
    return record
