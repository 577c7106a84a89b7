"""Running a model on chips: input checks, fingerprints, batched forward passes.

The pieces that training (:mod:`sarslide.train`), prediction (:mod:`sarslide.predict`),
the embeddings cache (:mod:`sarslide.engine.embeddings`) and mapping
(:mod:`sarslide.mapping`) share:

* the checks that turn what a caller passes into standardised chips ``(N, 4, H, W)``
  float32 without NaN that the model can take (:func:`check_images`), labels that fit
  them (:func:`check_labels`) and frozen embeddings that belong to them
  (:func:`check_embeddings`);
* fingerprints of arrays and of a module's weights, which key caches and runs;
* the model's outputs (:func:`forward_all`) and a stage-1 network's embeddings
  (:func:`embed_all`) over all chips in mini-batches, in a
  :class:`~sarslide.engine.precision.Precision`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..models import Segmenter, SiameseClassifier, check_input
from .precision import Precision

__all__ = [
    "array_fingerprint",
    "batch_indices",
    "check_embeddings",
    "check_images",
    "check_labels",
    "embed_all",
    "forward_all",
    "segmenter_embeddings",
    "take_rows",
    "weights_fingerprint",
]


# --------------------------------------------------------------------------- inputs


def check_images(images: Any, model: nn.Module | None, what: str) -> np.ndarray:
    """``images`` as a C-contiguous float32 array ``(N, 4, H, W)`` without NaN, that
    ``model`` can take."""
    if isinstance(images, Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"{what} have shape {images.shape} but must be chips (N, 4, H, W)"
        )
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
        check_input(
            probe,
            size_multiple=getattr(model, "size_multiple", 1),
            min_size=getattr(model, "min_size", 1),
        )
    else:
        check_input(probe)
    return images


def check_labels(labels: Any, images: np.ndarray, what: str) -> np.ndarray:
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


def array_fingerprint(*arrays: np.ndarray | Tensor) -> str:
    """blake2b hex digest of the shapes, dtypes and bytes of ``arrays`` (tensors
    included)."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if isinstance(a, Tensor):
            a = a.detach().cpu().contiguous()
            h.update(str((tuple(a.shape), str(a.dtype))).encode())
            h.update(
                memoryview(a.view(-1).view(torch.uint8).numpy()) if a.numel() else b""
            )
            continue
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def weights_fingerprint(model: nn.Module) -> str:
    """Fingerprint of a module's parameters and buffers (names, shapes, dtypes,
    values)."""
    items = sorted(model.state_dict().items())
    h = hashlib.blake2b(digest_size=16)
    h.update(repr([k for k, _ in items]).encode())
    h.update(array_fingerprint(*[t for _, t in items]).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- forwards


def batch_indices(
    n: int, batch_size: int, order: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Consecutive mini-batches of positions: ``order`` (a permutation of ``range(n)``,
    int array ``(n,)``; ``None`` is ``0..n-1``) cut into arrays of ``batch_size``
    positions, the last one shorter if ``n`` is not a multiple."""
    idx = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        yield idx[start : start + batch_size]


def take_rows(array: np.ndarray | Tensor, idx: np.ndarray) -> Tensor:
    """Rows ``idx`` of a numpy array or (CPU) tensor, as a tensor."""
    if isinstance(array, Tensor):
        return array[torch.from_numpy(np.asarray(idx, dtype=np.int64))]
    return torch.from_numpy(np.ascontiguousarray(array[idx]))


@torch.no_grad()
def forward_all(
    model: nn.Module,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    precision: Precision,
    embeddings: np.ndarray | Tensor | None = None,
) -> Tensor:
    """Model outputs for all chips, float32 on CPU (model must already be on ``device``,
    in the precision's layout: :meth:`Precision.prepared`).

    ``embeddings`` (one per chip) are passed to the model as its second argument — a
    segmenter's precomputed frozen stage-1 embeddings.
    """
    outs = []
    for idx in batch_indices(len(images), batch_size):
        xb = precision.to_input(images[idx], device)
        extra = (
            ()
            if embeddings is None
            else (precision.to_input(take_rows(embeddings, idx), device),)
        )
        with precision.autocast():
            outs.append(model(xb, *extra).float().cpu())
    return torch.cat(outs)


@torch.no_grad()
def segmenter_embeddings(
    model: nn.Module,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    precision: Precision,
) -> Tensor | None:
    """A segmenter's frozen stage-1 embeddings of ``images`` ``(N, 64, H, W)``, or None
    for models without them.

    A CPU tensor in :attr:`Precision.storage_dtype` (float32, or bfloat16/float16 under
    autocast: exactly what the forward pass produced, in half the memory).  Computed
    once per training run instead of every epoch; :mod:`sarslide.engine.embeddings`
    caches them on disk across runs.
    """
    if not isinstance(model, Segmenter) or model.stage1 is None:
        return None
    return embed_all(model.stage1, images, batch_size, device, precision)


@torch.no_grad()
def embed_all(
    stage1: SiameseClassifier,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    precision: Precision,
) -> Tensor:
    """``stage1.embed`` of all chips in mini-batches: CPU tensor ``(N, 64, H, W)`` in
    the precision's storage dtype, default layout (``stage1`` already on ``device`` and
    prepared)."""
    outs = []
    for idx in batch_indices(len(images), batch_size):
        xb = precision.to_input(images[idx], device)
        with precision.autocast():
            emb = stage1.embed(xb)
        outs.append(emb.to(precision.storage_dtype).cpu().contiguous())
    return torch.cat(outs)


def check_embeddings(
    embeddings: np.ndarray | Tensor | None,
    model: nn.Module,
    images: np.ndarray,
    what: str,
    device: torch.device,
    precision: Precision,
) -> Tensor | None:
    """Precomputed frozen embeddings of ``images`` for ``model`` (a stage-1-backed
    segmenter already on ``device`` and prepared), checked, as a CPU tensor; None if
    None.

    Shape ``(N, 2*embedding_channels, H, W)`` aligned with ``images``, finite, floating;
    the first chip is re-embedded and must agree within 5 % (mean absolute difference
    relative to the mean magnitude; embeddings made under another precision differ by
    about 1 %, embeddings of another chip or another stage-1 network by far more).
    """
    if embeddings is None:
        return None
    stage1 = getattr(model, "stage1", None)
    if not isinstance(model, Segmenter) or stage1 is None:
        raise ValueError(
            f"{what} embeddings were given but the model is a {type(model).__name__} "
            "without a "
            "stage-1 network; pass embeddings only to a Segmenter(stage1)"
        )
    t = (
        embeddings
        if isinstance(embeddings, Tensor)
        else torch.from_numpy(np.asarray(embeddings))
    )
    t = t.detach().cpu()
    expected = (images.shape[0], stage1.embedding_dim) + images.shape[2:]
    if tuple(t.shape) != expected:
        raise ValueError(
            f"{what} embeddings have shape {tuple(t.shape)} but the chips need "
            f"{expected} "
            "(one embedding per chip, in the same order)"
        )
    if not torch.is_floating_point(t):
        raise ValueError(f"{what} embeddings must be floating point, got {t.dtype}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(
            f"{what} embeddings contain NaN/infinite values; compute them again"
        )
    ref = embed_all(stage1, images[:1], 1, device, precision).float()
    got = t[:1].float()
    rel = float((ref - got).abs().mean() / ref.abs().mean().clamp_min(1e-12))
    if rel > 0.05:
        raise ValueError(
            f"{what} embeddings do not belong to these chips and this stage-1 "
            "network: the "
            f"first chip's embedding differs by {rel:.1%} from a fresh one; compute "
            "them from "
            "the same chips, in the same order, with the segmenter's stage-1 network "
            "(sarslide.engine.embeddings.cached_embeddings)"
        )
    return t
