"""Checkpoints: one self-describing file per model, written atomically.

Every file is a ``torch.save`` of a plain dict (read back with ``weights_only=True``)
that records the format marker and version, the task (``"stage1"``/``"stage2"``), the
model class and configuration, the weights, the data statistics
(:class:`~sarslide.transforms.BandStats` as a dict) and package versions, plus any extra
fields (epoch, metrics; a training run's ``last.pt`` also holds the optimiser, gradient
scaler, RNG states, history and early-stopping state, see
:mod:`sarslide.engine.runs`).
Writes go to a temporary file in the same folder, then ``os.replace``.

:func:`load_checkpoint` rebuilds the model from the file alone; :func:`load_weights`
loads the weights into a model you built.  A file that does not fit what was asked
raises :class:`CheckpointError` with what is wrong and how to fix it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..models import SiameseClassifier, build_model
from ..tasks import TaskName, get_task
from .atomic import atomic_file
from .precision import select_device

__all__ = [
    "CheckpointError",
    "checkpoint_info",
    "load_checkpoint",
    "load_checkpoints",
    "load_weights",
    "model_record",
    "read_checkpoint",
    "save_checkpoint",
    "save_record",
]

_FORMAT = "sarslide-checkpoint"
_FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint does not fit what was asked of it; the message says what and how to
    fix it."""


def _versions() -> dict[str, str]:
    import segmentation_models_pytorch as smp

    return {
        "sarslide": __version__,
        "torch": str(torch.__version__),
        "segmentation_models_pytorch": str(smp.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
    }


def _record_bytes(obj: Any) -> int:
    """Bytes of the tensors and arrays in a (nested) checkpoint record: about its file
    size."""
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, Mapping):
        return sum(_record_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_record_bytes(v) for v in obj)
    return 0


def save_record(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically; a full disk raises
    :class:`~sarslide.engine.filesystem.DiskFullError` with the device and the size
    needed."""
    with atomic_file(path, needs_bytes=_record_bytes(obj) + (1 << 16)) as tmp:
        torch.save(obj, tmp)


def model_record(model: nn.Module, task: str, stats: Mapping | None) -> dict[str, Any]:
    """The checkpoint record of ``model``: format marker and version, ``task``, model
    class and constructor record, weights (CPU copies), ``stats`` and versions."""
    return {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "task": task,
        "model_class": type(model).__name__,
        "model_config": model.config_dict(),
        "state_dict": {
            k: v.detach().cpu().clone() for k, v in model.state_dict().items()
        },
        "stats": None if stats is None else _stats_dict(stats),
        "versions": _versions(),
    }


def _stats_dict(stats: Any) -> dict:
    from ..transforms import BandStats

    return BandStats.from_dict(stats).to_dict()


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    task: TaskName | None = None,
    stats: Mapping | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a self-describing checkpoint of ``model`` atomically and return its path.

    ``task`` defaults from the model class.  ``extra`` adds plain fields (epoch,
    metrics).
    """
    if task is None:
        task = "stage1" if isinstance(model, SiameseClassifier) else "stage2"
    get_task(task).check_model(model)
    record = model_record(model, task, stats)
    record.update(dict(extra or {}))
    path = Path(path)
    save_record(record, path)
    return path


_UNSAFE_ADVICE = (
    "weights_only",
    "trusted source",
    "arbitrary code",
    "re-running",
    "pytorch 2.6",
)


def _load_failure(err: BaseException, path: Path | None = None) -> str:
    """torch's reason for refusing a file, without its advice to load it unsafely; for a
    file that is not a torch archive at all, what the file looks like instead."""
    head = b""
    if path is not None:
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError:
            head = b""
    if head and not head.strip(b"\0"):
        return (
            "the file holds only zero bytes (a write that never finished, or a "
            "damaged disk)"
        )
    if head and not head.startswith(b"PK"):
        return (
            "the file is not a torch checkpoint archive (truncated, or another format)"
        )
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split(
            "Check the documentation", 1
        )[0]
    text = " ".join(text.split())
    sentences = [
        t
        for t in text.split(". ")
        if not any(bad in t.lower() for bad in _UNSAFE_ADVICE)
    ]
    return f"{type(err).__name__}: {'. '.join(sentences[:1]).strip() or 'unreadable'}"


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The whole record saved at ``path`` (weights included), checked to be a
    checkpoint of this format; :class:`CheckpointError` names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}; train with sarslide.train.fit(...) first"
        )
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file, foreign pickle
        raise CheckpointError(
            f"{path} is corrupt or not a sarslide checkpoint: it cannot be read safely "
            f"({_load_failure(err, path)}). Delete it (rm '{path}'); a training run "
            "then starts "
            "afresh (or pass resume=False), and a kept top-k checkpoint is written "
            "again by "
            "training once more"
        ) from None
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise CheckpointError(
            f"{path} is not a sarslide checkpoint (no '{_FORMAT}' marker)"
        )
    if record.get("format_version", 0) > _FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {record['format_version']}, newer than "
            "this sarslide "
            f"({_FORMAT_VERSION}); upgrade sarslide"
        )
    return record


def checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's metadata (task, model class/config, stats, versions, epoch,
    metrics), no weights."""
    record = read_checkpoint(path)
    skip = {"state_dict", "optimizer", "scaler", "rng"}
    return {k: v for k, v in record.items() if k not in skip}


def _describe(model_class: str, config: Mapping[str, Any]) -> str:
    return f"{model_class}({', '.join(f'{k}={v!r}' for k, v in config.items())})"


def load_checkpoint(
    path: str | os.PathLike,
    expected: TaskName | None = None,
    *,
    device: str | torch.device | None = "cpu",
) -> nn.Module:
    """Rebuild the model saved at ``path`` (in eval mode, on ``device``).

    Parameters
    ----------
    expected:
        ``"stage1"`` or ``"stage2"`` to insist on a stage; a checkpoint of the other
        stage raises :class:`CheckpointError`.
    device:
        Where to put the model (``None``: CUDA when available).
    """
    record = read_checkpoint(path)
    task = record.get("task")
    if expected is not None:
        wanted = get_task(expected).model_class.__name__
        if task != expected:
            raise CheckpointError(
                f"{path} holds a {task} model ({record.get('model_class')}) but a "
                f"{expected} model ({wanted}) was expected; pick a checkpoint from a "
                f"{expected} run"
            )
    # Built on the meta device: no memory and no random initialisation (the stage-1
    # reference network's constructor initialises a whole ResNet-34 before trimming it,
    # 0.4 s per load); the saved tensors are then assigned in place of the empty ones.
    with torch.device("meta"):
        model = build_model(record["model_class"], record["model_config"])
    try:
        model.load_state_dict(record["state_dict"], assign=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"weights in {path} do not fit "
            f"{_describe(record['model_class'], record['model_config'])}: {err}"
        ) from err
    left = [
        name
        for name, t in (*model.named_parameters(), *model.named_buffers())
        if t.is_meta
    ]
    if left:
        raise CheckpointError(
            f"{path} has no values for {left}; the checkpoint is incomplete"
        )
    return model.to(select_device(device)).eval()


def load_checkpoints(
    paths: Sequence[str | os.PathLike],
    expected: TaskName | None = None,
    *,
    device: str | torch.device | None = "cpu",
) -> list[nn.Module]:
    """:func:`load_checkpoint` for each path: the members of an ensemble."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if len(paths) == 0:
        raise ValueError(
            "no checkpoint paths given; pass TrainResult.checkpoints of one or more "
            "runs"
        )
    return [load_checkpoint(p, expected, device=device) for p in paths]


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the weights at ``path`` into an existing ``model`` of the same class and
    configuration."""
    record = read_checkpoint(path)
    saved = (record["model_class"], record["model_config"])
    have = (type(model).__name__, model.config_dict())
    if saved != have:
        raise CheckpointError(
            f"{path} was saved from {_describe(*saved)} but the model is "
            f"{_describe(*have)}; "
            "build the matching model or use load_checkpoint(path) to rebuild it"
        )
    model.load_state_dict(record["state_dict"])
    return model
