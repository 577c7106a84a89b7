"""Prediction with trained models; ensembles average probabilities.

:func:`predict_proba` (pixel probabilities) and :func:`predict_chip_proba` (chip
probabilities) accept one model, a checkpoint path or a list of them and **average the
probabilities** (not the logits) over the models: this is the project's ensembling rule
(seeds x checkpoints), as in the paper.  :func:`pooled_embeddings` and
:func:`embedding_pca` look inside a stage-1 classifier.

Inputs are standardised chips ``(N, 4, H, W)`` float32 (no NaN; see
:func:`sarslide.transforms.standardize`).  ``precision`` is ``"auto"`` (the device's
fast path: bfloat16 autocast + channels-last on CPUs with native bf16 and on recent
GPUs), ``"fp32"`` or a :class:`~sarslide.engine.precision.Precision`; see
:func:`sarslide.engine.precision.resolve_precision`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .engine.checkpoints import load_checkpoint
from .engine.precision import Precision, resolve_precision, select_device
from .engine.runtime import batch_indices, check_images, forward_all
from .metrics import ensemble_mean
from .models import SiameseClassifier
from .tasks import STAGE1, TaskName, get_task

__all__ = ["predict_proba", "predict_chip_proba", "pooled_embeddings", "embedding_pca"]


def _as_models(models: Any, task: TaskName) -> list[nn.Module]:
    """``models`` (a model, a checkpoint path or a list of them) as a list of models
    of ``task``'s class; checkpoints are loaded on the CPU."""
    if isinstance(models, (nn.Module, str, os.PathLike)):
        models = [models]
    models = list(models)
    if not models:
        raise ValueError(
            "no models given; pass a model, a checkpoint path or a list of them"
        )
    out = []
    for m in models:
        m = (
            load_checkpoint(m, task, device="cpu")
            if isinstance(m, (str, os.PathLike))
            else m
        )
        get_task(task).check_model(m)
        out.append(m)
    return out


@torch.no_grad()
def _predict_mean(
    models: list[nn.Module],
    images: np.ndarray,
    batch_size: int,
    device,
    precision: str | Precision,
    embeddings: np.ndarray | Tensor | None = None,
) -> np.ndarray:
    """Each model's sigmoid outputs (float32, CPU), averaged by
    :func:`sarslide.metrics.ensemble_mean`."""
    dev = select_device(device)
    prec = resolve_precision(dev, precision)
    prec.apply_backend_settings()

    def member_probabilities():
        for m in models:
            was_training = m.training
            m.eval()
            with prec.prepared(m, dev):
                prob = torch.sigmoid(
                    forward_all(m, images, batch_size, dev, prec, embeddings)
                )
            m.train(was_training)
            yield prob.numpy()

    return ensemble_mean(member_probabilities())


def predict_proba(
    models: Any,
    images: np.ndarray,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    precision: str | Precision = "auto",
    embeddings: np.ndarray | Tensor | None = None,
) -> np.ndarray:
    """Landslide probability per pixel, ``(N, H, W)`` float32 in [0, 1].

    ``models`` is a :class:`~sarslide.models.Segmenter`, a stage-2 checkpoint path, or a
    list of either.  With several models the result is the **mean of their sigmoid
    probabilities** (not of their logits): the project's ensembling rule over seeds and
    checkpoints.  ``images`` are standardised chips ``(N, 4, H, W)``.  ``embeddings``
    are the chips' precomputed frozen stage-1 embeddings
    (:func:`sarslide.engine.embeddings.cached_embeddings`), for segmenters that all
    share that stage-1 network; without them each model embeds the chips itself.
    """
    members = _as_models(models, "stage2")
    images = check_images(images, members[0], "chips")
    if embeddings is not None:
        if any(not getattr(m, "uses_embeddings", False) for m in members):
            raise ValueError(
                "embeddings were given, but some models have no stage-1 network; "
                "drop embeddings="
            )
        if len(embeddings) != len(images):
            raise ValueError(
                f"got embeddings of {len(embeddings)} chips for {len(images)} chips"
            )
    probabilities = _predict_mean(
        members, images, batch_size, device, precision, embeddings
    )
    return probabilities[:, 0]


def predict_chip_proba(
    models: Any,
    images: np.ndarray,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    precision: str | Precision = "auto",
) -> np.ndarray:
    """Probability that each chip holds a landslide, ``(N,)`` float32, from stage-1
    classifiers.

    Several models (or stage-1 checkpoint paths) are combined by averaging
    probabilities.
    """
    members = _as_models(models, "stage1")
    images = check_images(images, members[0], "chips")
    return _predict_mean(members, images, batch_size, device, precision)


@torch.no_grad()
def pooled_embeddings(
    model: SiameseClassifier,
    images: np.ndarray,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    precision: str | Precision = "auto",
) -> np.ndarray:
    """Stage-1 embeddings averaged over each chip: ``(N, 2*embedding_channels)``
    float32.

    Columns ``0:C`` come from the pre-event pass, ``C:2C`` from the post-event pass.
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_checkpoint(model, "stage1")
    STAGE1.check_model(model)
    images = check_images(images, model, "chips")
    dev = select_device(device)
    prec = resolve_precision(dev, precision)
    prec.apply_backend_settings()
    was_training = model.training
    model.eval()
    out = []
    with prec.prepared(model, dev):
        for idx in batch_indices(len(images), batch_size):
            with prec.autocast():
                emb = model.embed(prec.to_input(images[idx], dev))
            out.append(emb.float().mean(dim=(2, 3)).cpu())
    model.train(was_training)
    return torch.cat(out).numpy()


def embedding_pca(
    features: np.ndarray, n_components: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of per-chip features (scikit-learn PCA on standardised
    columns).

    Returns ``(scores (N, n_components), explained_variance_ratio (n_components,))``.
    """
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < n_components:
        raise ValueError(
            f"need at least {n_components} rows of features (N, D), got shape "
            f"{features.shape}"
        )
    pipe = make_pipeline(
        StandardScaler(), PCA(n_components=n_components, random_state=0)
    )
    scores = pipe.fit_transform(features)
    return scores.astype(np.float32), pipe[-1].explained_variance_ratio_.astype(
        np.float32
    )
