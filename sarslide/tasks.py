"""The two training tasks, one object each: what differs between stage 1 and stage 2.

A :class:`TrainingTask` carries everything stage-specific that training, evaluation and
the model checks need, so that :func:`sarslide.train.fit` has no ``if task == ...``:

* the model it trains: :class:`~sarslide.models.SiameseClassifier` (:data:`STAGE1`) or
  :class:`~sarslide.models.Segmenter` (:data:`STAGE2`);
* the targets built from labels: per chip, :func:`chip_targets` ``(N,)``, or per
  pixel, :func:`pixel_targets` ``(N, 1, H, W)``;
* the loss: binary cross-entropy on the chip logit, or :func:`dice_loss` over the
  batch;
* the validation metric: ``val_accuracy`` (logit > 0), or ``val_aprc``
  (:func:`sarslide.metrics.aprc` over all pixels);
* whether the validation set needs a positive: no, or yes (APRC is undefined without
  landslide pixels).

:func:`get_task` turns the names ``"stage1"`` / ``"stage2"`` (what notebooks, tests and
checkpoints use) into these objects; every public entry point accepts either.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from .models import Segmenter, SiameseClassifier

__all__ = [
    "STAGE1",
    "STAGE2",
    "TASKS_BY_NAME",
    "TaskName",
    "TrainingTask",
    "chip_targets",
    "dice_loss",
    "get_task",
    "pixel_targets",
]

#: A task's name, as notebooks, tests and checkpoints write it.
TaskName = Literal["stage1", "stage2"]


def dice_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """Soft dice loss over the whole batch: ``1 - (2 Σ p·y + s) / (Σ p + Σ y + s)``.

    Parameters
    ----------
    logits:
        Per-pixel logits, any shape (typically ``(N, 1, H, W)``).
    target:
        Same shape, 1 for landslide pixels and 0 elsewhere.
    smooth:
        ``s`` above.  On a batch without any landslide pixel the loss is
        ``Σp / (Σp + s)``: it still penalises every predicted landslide pixel and is 0
        only when the network predicts none.

    Returns
    -------
    Tensor
        Scalar in ``[0, 1)``, computed in float32.
    """
    if logits.shape != target.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in "
            "shape"
        )
    p = torch.sigmoid(logits.float())
    t = target.float()
    inter = (p * t).sum()
    return 1.0 - (2.0 * inter + smooth) / (p.sum() + t.sum() + smooth)


def chip_targets(labels: np.ndarray) -> np.ndarray:
    """Stage-1 targets ``(N,)`` float32: 1.0 where any label pixel of the chip is
    > 0."""
    labels = np.asarray(labels)
    return (labels.reshape(labels.shape[0], -1) > 0).any(axis=1).astype(np.float32)


def pixel_targets(labels: np.ndarray) -> np.ndarray:
    """Stage-2 targets ``(N, 1, H, W)`` float32: 1.0 where the label is > 0 (mask or
    points)."""
    return (np.asarray(labels) > 0).astype(np.float32)[:, None]


def _bce_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Binary cross-entropy on chip logits ``(N,)`` against 0/1 targets ``(N,)``."""
    return nn.functional.binary_cross_entropy_with_logits(logits, targets)


def _accuracy(logits: Tensor, targets: np.ndarray) -> float:
    """Share of chips classified right at logit 0: float32 CPU logits ``(N,)``, 0/1
    float32 targets ``(N,)``."""
    t = torch.from_numpy(targets)
    return float(((logits > 0).float() == t).float().mean())


def _pixel_aprc(logits: Tensor, targets: np.ndarray) -> float:
    """APRC over all pixels of the sigmoid of float32 CPU logits ``(N, 1, H, W)``
    against 0/1 float32 targets of the same shape, through
    :func:`sarslide.metrics.aprc`."""
    from .metrics import aprc  # imported here: metrics pulls in scikit-learn and pandas

    probabilities = torch.sigmoid(logits).numpy()
    if not (targets > 0).any():
        # metrics.aprc refuses a set without landslide pixels; before it was used here,
        # scikit-learn returned 0.0 with a UserWarning.  fit() refuses such validation
        # chips up front, evaluate() gets here: keep its value (0.0) and the warning.
        warnings.warn(
            "the chips hold no landslide pixel, so their APRC is undefined; reporting "
            "0.0 (evaluate on chips that contain landslides)",
            UserWarning,
            stacklevel=3,
        )
        return 0.0
    return aprc(probabilities, targets)


@dataclass(frozen=True)
class TrainingTask:
    """What one stage trains and how: the model class, targets, loss, validation metric.

    Attributes
    ----------
    name:
        ``"stage1"`` or ``"stage2"``: the name checkpoints record.
    model_class:
        The model it trains (:class:`~sarslide.models.SiameseClassifier` or
        :class:`~sarslide.models.Segmenter`).
    description:
        What the model does, in words (for error messages).
    targets:
        Labels ``(N, H, W)`` (mask 0/1 or point counts) -> float32 targets: ``(N,)``
        per chip or ``(N, 1, H, W)`` per pixel.
    loss:
        ``loss(outputs, targets)``: float32 outputs and targets as tensors of the same
        shape -> scalar float32 tensor (training and validation use the same one).
    validation_metric:
        ``metric(outputs, targets)``: float32 CPU outputs (tensor) and targets (numpy)
        of the whole validation set -> a float in [0, 1], higher is better.
    metric:
        The history column of :attr:`validation_metric` (``"val_accuracy"`` or
        ``"val_aprc"``); without ``"val_"`` it is :func:`sarslide.train.evaluate`'s key.
    needs_positive_validation:
        Whether the validation targets must hold a positive (APRC is undefined without).
    """

    name: str
    model_class: type[nn.Module]
    description: str
    targets: Callable[[np.ndarray], np.ndarray]
    loss: Callable[[Tensor, Tensor], Tensor]
    validation_metric: Callable[[Tensor, np.ndarray], float]
    metric: str
    needs_positive_validation: bool

    def check_model(self, model: nn.Module) -> None:
        """Raise :class:`TypeError` unless ``model`` is a :attr:`model_class`."""
        if not isinstance(model, self.model_class):
            raise TypeError(
                f"task={self.name!r} trains a {self.model_class.__name__}, got a "
                f"{type(model).__name__}"
            )

    def check_validation_targets(self, targets: np.ndarray) -> None:
        """Raise :class:`ValueError` if the metric is undefined on these targets."""
        if self.needs_positive_validation and targets.sum() == 0:
            raise ValueError(
                "the validation chips hold no landslide pixel, so APRC is undefined; "
                "use a validation split with landslide chips (chips.balance keeps half)"
            )

    def score(self, outputs: Tensor, targets: np.ndarray) -> tuple[float, float]:
        """(loss, metric) of float32 CPU ``outputs`` against numpy float32 ``targets``
        of the same shape (the whole validation set)."""
        loss = self.loss(outputs, torch.from_numpy(targets)).item()
        return loss, self.validation_metric(outputs, targets)


#: Stage 1: chip classification with a Siamese U-Net.
STAGE1 = TrainingTask(
    name="stage1",
    model_class=SiameseClassifier,
    description="chip classification",
    targets=chip_targets,
    loss=_bce_loss,
    validation_metric=_accuracy,
    metric="val_accuracy",
    needs_positive_validation=False,
)

#: Stage 2: segmentation, optionally on frozen stage-1 embeddings.
STAGE2 = TrainingTask(
    name="stage2",
    model_class=Segmenter,
    description="segmentation",
    targets=pixel_targets,
    loss=dice_loss,
    validation_metric=_pixel_aprc,
    metric="val_aprc",
    needs_positive_validation=True,
)

#: The tasks by name, in stage order.
TASKS_BY_NAME: dict[str, TrainingTask] = {t.name: t for t in (STAGE1, STAGE2)}


def get_task(task: TaskName | TrainingTask) -> TrainingTask:
    """The :class:`TrainingTask` called ``task`` (``"stage1"`` or ``"stage2"``); a
    :class:`TrainingTask` is returned as is.

    Raises
    ------
    ValueError
        For any other name.
    """
    if isinstance(task, TrainingTask):
        return task
    if task not in tuple(TASKS_BY_NAME):
        choices = " or ".join(
            f"{t.name!r} ({t.description})" for t in TASKS_BY_NAME.values()
        )
        raise ValueError(f"unknown task {task!r}; choose {choices}")
    return TASKS_BY_NAME[task]
