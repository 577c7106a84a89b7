"""Running a stage's model on chips: the two tasks, the device, input checks, batched forwards.

The pieces that training (:mod:`sarslide.train`), checkpoints (:mod:`sarslide.checkpoints`)
and prediction (:mod:`sarslide.predict`) share:

* the two tasks and the model class each one runs: ``"stage1"`` a
  :class:`~sarslide.models.SiameseClassifier` (chip classification), ``"stage2"`` a
  :class:`~sarslide.models.Segmenter` (segmentation);
* :func:`select_device`: CUDA when available, else CPU;
* the check that turns what a caller passes into standardised chips ``(N, 4, H, W)``
  float32 without NaN that the model can take;
* the model's outputs over all chips in mini-batches, with float16 autocast on CUDA only.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from .models import Segmenter, SiameseClassifier, check_input

__all__ = ["TASKS", "Task", "select_device"]

Task = Literal["stage1", "stage2"]
TASKS: tuple[str, ...] = ("stage1", "stage2")
_MODEL_FOR_TASK = {"stage1": SiameseClassifier, "stage2": Segmenter}


def select_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a :class:`torch.device`; ``None`` picks CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose 'stage1' (chip classification) or 'stage2' (segmentation)")
    return task


def _check_model_for_task(model: nn.Module, task: str) -> None:
    cls = _MODEL_FOR_TASK[task]
    if not isinstance(model, cls):
        raise TypeError(f"task={task!r} trains a {cls.__name__}, got a {type(model).__name__}")


def _check_images(images: Any, model: nn.Module | None, what: str) -> np.ndarray:
    """``images`` as a C-contiguous float32 array ``(N, 4, H, W)`` without NaN, that ``model`` can take."""
    if isinstance(images, Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"{what} have shape {images.shape} but must be chips (N, 4, H, W)")
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.shape[0] == 0:
        raise ValueError(
            f"{what} are empty (0 chips); check the split you selected "
            "(e.g. chips.split_table(chipset)) or use a larger profile/scene"
        )
    bad = int(np.count_nonzero(~np.isfinite(images)))
    if bad:
        raise ValueError(
            f"{what} contain {bad} NaN/infinite values; standardise linear chips with "
            "sarslide.transforms.standardize(images, stats), which maps no-data to 0"
        )
    probe = torch.empty((0,) + images.shape[1:])
    if model is not None:
        check_input(probe, size_multiple=getattr(model, "size_multiple", 1), min_size=getattr(model, "min_size", 1))
    else:
        check_input(probe)
    return images


def _batches(n: int, batch_size: int, order: np.ndarray | None = None):
    idx = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        yield idx[start : start + batch_size]


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=enabled)


@torch.no_grad()
def _forward_all(
    model: nn.Module,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    amp: bool,
    embeddings: np.ndarray | None = None,
) -> Tensor:
    """Model outputs for all chips, float32 on CPU (model must already be on ``device``).

    ``embeddings`` (one per chip) are passed to the model as its second argument — a
    segmenter's precomputed frozen stage-1 embeddings.
    """
    outs = []
    for idx in _batches(len(images), batch_size):
        xb = torch.from_numpy(images[idx]).to(device, non_blocking=True)
        extra = () if embeddings is None else (torch.from_numpy(embeddings[idx]).to(device, non_blocking=True),)
        with _autocast(device, amp):
            outs.append(model(xb, *extra).float().cpu())
    return torch.cat(outs)


@torch.no_grad()
def _frozen_embeddings(
    model: nn.Module, images: np.ndarray, batch_size: int, device: torch.device, amp: bool
) -> np.ndarray | None:
    """A segmenter's frozen stage-1 embeddings of ``images`` (float32, on the CPU), or None
    for models without them. Computed once per training run instead of every epoch."""
    if not isinstance(model, Segmenter) or model.stage1 is None:
        return None
    outs = []
    for idx in _batches(len(images), batch_size):
        xb = torch.from_numpy(images[idx]).to(device, non_blocking=True)
        with _autocast(device, amp):
            outs.append(model.frozen_embeddings(xb).float().cpu())
    return torch.cat(outs).numpy()
