"""What runs on one window: a model, a list of models or a callable, as a predictor.

A *predictor* maps a batch of windows ``(B, 4, h, w)`` float32 (channels
:data:`sarslide.chips.CHANNELS`) to one value per pixel ``(B, h, w)``.
:func:`as_predictor` turns what a user passes to
:func:`sarslide.mapping.predict_probability` into one: a torch module (its logits go
through a sigmoid), a plain callable, or a list of these — an ensemble whose members'
probabilities are averaged by :func:`sarslide.metrics.ensemble_mean`, the project's one
averaging rule. :func:`check_output` and :func:`dry_run` check what a predictor returns.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..cube import CHANNELS
from ..metrics import ensemble_mean, range_outside_unit
from .errors import MappingError

__all__ = ["Predictor", "as_predictor", "check_output", "dry_run"]

#: A batch of windows (B, 4, h, w) float32 -> one value per pixel (B, h, w).
Predictor = Callable[[np.ndarray], np.ndarray]


def _torch_predictor(
    model: Any, device: str | None, precision: Any = "auto"
) -> tuple[Predictor, int, int]:
    """Wrap a torch module returning logits (B, 1, h, w) as a probability predictor.

    The module runs in ``precision``
    (:func:`sarslide.engine.precision.resolve_precision`); for a channels-last precision
    a copy in that layout runs, so the caller's module is only put in eval mode and
    moved to ``device``.
    """
    import copy

    import torch

    from ..engine.precision import resolve_precision, select_device

    dev = select_device(device)
    prec = resolve_precision(dev, precision)
    prec.apply_backend_settings()
    model.eval()
    model.to(dev)
    runner = prec.apply_layout(copy.deepcopy(model)) if prec.channels_last else model

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), prec.autocast():
            logits = runner(prec.to_input(np.ascontiguousarray(batch), dev))
        if logits.ndim == 4 and logits.shape[1] == 1:
            logits = logits[:, 0]
        return torch.sigmoid(logits.float()).cpu().numpy()

    multiple = int(getattr(model, "size_multiple", 1) or 1)
    min_size = int(getattr(model, "min_size", 1) or 1)
    return predict, multiple, min_size


def _ensemble_predictor(
    members: Sequence[tuple[Predictor, int, int]],
) -> tuple[Predictor, int, int]:
    """Average the members' probabilities with :func:`sarslide.metrics.ensemble_mean`.

    Each member's output is checked (shape, values in [0, 1]) before averaging, so a
    member that returns logits is named as such. The window must fit every member: a
    multiple of the least common multiple of their ``size_multiple``, at least the
    largest ``min_size``.
    """
    multiple = int(np.lcm.reduce([m[1] for m in members]))
    min_size = max(m[2] for m in members)

    def ensemble(batch: np.ndarray) -> np.ndarray:
        outputs = (
            check_output(fn(batch), batch.shape, probabilities=True)
            for fn, _, _ in members
        )
        return ensemble_mean(outputs)  # float64 sum of probabilities, float32 mean

    return ensemble, multiple, min_size


def as_predictor(
    predict: Any, device: str | None, precision: Any = "auto"
) -> tuple[Predictor, int, int]:
    """A predictor with the window constraints ``(fn, size_multiple, min_size)``.

    Parameters
    ----------
    predict:
        A callable ``(B, 4, h, w) -> (B, h, w)`` (returned as is, constraints 1 and 1),
        a ``torch.nn.Module`` returning logits ``(B, 1, h, w)``, or a non-empty list or
        tuple of these (an ensemble).
    device, precision:
        Torch device and arithmetic for modules (:mod:`sarslide.engine.precision`).

    Raises
    ------
    MappingError
        If ``predict`` is an empty list or neither callable nor a torch module.
    """
    if isinstance(predict, (list, tuple)):
        if not predict:
            raise MappingError("got an empty list of models; pass at least one")
        return _ensemble_predictor(
            [as_predictor(m, device, precision) for m in predict]
        )
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(predict, torch.nn.Module):
        return _torch_predictor(predict, device, precision)
    if not callable(predict):
        raise MappingError(
            "predict must be a callable (B, 4, h, w) -> (B, h, w) or a "
            "torch.nn.Module, "
            f"got {type(predict).__name__}"
        )
    return predict, 1, 1


def check_output(
    out: Any, batch_shape: tuple[int, ...], probabilities: bool
) -> np.ndarray:
    """A predictor's output for a batch of ``batch_shape`` (B, 4, h, w), as (B, h, w).

    A ``(B, 1, h, w)`` output is squeezed; with ``probabilities`` the finite values must
    lie in [0, 1].

    Raises
    ------
    MappingError
        If the shape is not one value per pixel, or probabilities leave [0, 1].
    """
    out = np.asarray(out)
    b, _, h, w = batch_shape
    if out.shape == (b, 1, h, w):
        out = out[:, 0]
    if out.shape != (b, h, w):
        raise MappingError(
            f"the predictor returned shape {out.shape} for a batch of shape "
            f"{batch_shape}; "
            f"it must return one value per pixel, shape {(b, h, w)}"
        )
    if probabilities:
        outside = range_outside_unit(out)
        if outside is not None:
            raise MappingError(
                f"the predictor returned values in [{outside[0]:.3g}, "
                f"{outside[1]:.3g}], "
                "not probabilities; return sigmoid(logits) or pass the torch module "
                "itself "
                "(its logits are passed through a sigmoid), or use predict_raw for "
                "scores"
            )
    return out


def dry_run(fn: Predictor, window: int, probabilities: bool) -> None:
    """Call the predictor once on a zero batch (1, 4, window, window) to fail early.

    Raises
    ------
    MappingError
        If the predictor fails on the four channels (e.g. a model trained on two), or
        its output fails :func:`check_output`.
    """
    shape = (1, len(CHANNELS), window, window)
    try:
        out = fn(np.zeros(shape, dtype=np.float32))
    except MappingError:
        raise
    except Exception as err:  # torch raises RuntimeError for a wrong channel count
        raise MappingError(
            f"the model failed on a {shape} batch of channels {list(CHANNELS)} "
            f"(pre-event VV, VH, then post-event VV, VH): {err}. Mapping feeds exactly "
            "these 4 channels; use a model trained on them"
        ) from err
    check_output(out, shape, probabilities)
