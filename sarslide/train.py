"""One training loop for both stages: early stopping, top-k checkpoints, exact resume.

Training (:func:`fit`)
    Adam, mini-batches in a seeded order (epoch ``e`` of seed ``s`` always visits the
    chips in the same order), early stopping when the validation loss has not improved for
    ``patience`` epochs, the ``top_k`` checkpoints by validation APRC (stage 2) or accuracy
    (stage 1) kept on disk, the device's fast arithmetic by default (``precision="auto"``:
    bfloat16 autocast + channels-last on CPUs with native bf16 and on recent GPUs, float16
    + gradient scaling on older GPUs, float32 elsewhere; see
    :func:`sarslide.runtime.resolve_precision`), a tqdm bar per run.  The device is CUDA
    when available, else CPU.  Weights, optimiser state and checkpoints are float32; the
    losses are computed in float32.

    * ``task="stage1"``: a :class:`~sarslide.models.SiameseClassifier`; the target of a
      chip is 1 when any of its label pixels is > 0 (mask or point counts); loss = binary
      cross-entropy on the logit.
    * ``task="stage2"``: a :class:`~sarslide.models.Segmenter`; the target of a pixel is
      ``label > 0``; loss = soft dice on sigmoid probabilities, summed over the *whole batch*
      (:func:`dice_loss`).  Half the chips hold no landslide, so a batch may hold no
      landslide pixel at all: its loss is then ``Σp / (Σp + 1)``, which is zero only when
      the network predicts nothing, so landslide-free chips still teach the network not to
      raise false alarms.  (segmentation-models-pytorch's ``DiceLoss`` sets the loss of
      such a batch to zero, which would make landslide-free chips useless.)

A run's folder
    Every epoch rewrites ``last.pt`` (model, optimiser, gradient scaler, RNG states, history,
    early-stopping state); the best ``top_k`` epochs are kept as ``top-epochNNNN.pt``
    (checkpoints in the format of :mod:`sarslide.checkpoints`).  Calling :func:`fit` again
    with the same arguments resumes from ``last.pt`` and ends exactly where an uninterrupted
    run would (bit-identical on CPU at the same torch thread count: the run's threads are
    recorded under ``"runtime"`` in every checkpoint, and resuming with another count warns
    with :class:`ThreadCountWarning`); calling it on a finished run returns its result at once.

Prediction with the trained models is in :mod:`sarslide.predict`; the cached stage-1 run of
an event in :mod:`sarslide.pretrained`.

Inputs everywhere are standardised chips ``(N, 4, H, W)`` float32 (no NaN; see
:func:`sarslide.transforms.standardize`) and labels ``(N, H, W)`` (mask 0/1 or point counts).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .atomic import remove_leftovers
from .checkpoints import (
    CheckpointError,
    save_record,
    model_record,
    read_checkpoint,
    checkpoint_info,
    load_checkpoint,
    load_checkpoints,
    save_checkpoint,
)
from .progress import progress_bar
from .runtime import (
    Precision,
    Task,
    batch_indices,
    check_embeddings,
    check_images,
    check_model_for_task,
    check_task,
    array_fingerprint,
    forward_all,
    segmenter_embeddings,
    take_rows,
    resolve_precision,
    runtime_record,
    select_device,
)

__all__ = [
    "ThreadCountWarning",
    "TrainResult",
    "seed_everything",
    "dice_loss",
    "chip_targets",
    "pixel_targets",
    "evaluate",
    "fit",
    "fit_chipset",
]

_METRIC_FOR_TASK = {"stage1": "val_accuracy", "stage2": "val_aprc"}
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
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    p = torch.sigmoid(logits.float())
    t = target.float()
    inter = (p * t).sum()
    return 1.0 - (2.0 * inter + smooth) / (p.sum() + t.sum() + smooth)


def chip_targets(labels: np.ndarray) -> np.ndarray:
    """Stage-1 targets ``(N,)`` float32: 1.0 where any label pixel of the chip is > 0."""
    labels = np.asarray(labels)
    return (labels.reshape(labels.shape[0], -1) > 0).any(axis=1).astype(np.float32)


def pixel_targets(labels: np.ndarray) -> np.ndarray:
    """Stage-2 targets ``(N, 1, H, W)`` float32: 1.0 where the label is > 0 (mask or points)."""
    return (np.asarray(labels) > 0).astype(np.float32)[:, None]


def _check_labels(labels: Any, images: np.ndarray, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    expected = (images.shape[0],) + images.shape[2:]
    if labels.shape != expected:
        raise ValueError(f"{what} labels have shape {labels.shape} but the chips need {expected} (N, H, W)")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError(f"{what} labels contain NaN; use 0 for 'no landslide'")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{what} labels contain negative values; use a 0/1 mask or point counts")
    return labels


class ThreadCountWarning(UserWarning):
    """A run resumes with another torch thread count than it was written with (results
    are then not bit-identical to an uninterrupted run)."""


def _writable_dir(folder: Path) -> Path:
    """``folder``, created if missing, after checking that files can be written in it
    (before any training, not after the first epoch)."""
    hint = ("choose a writable checkpoint_dir (e.g. a folder under $SARSLIDE_DATA_DIR) or "
            "fix the folder's permissions")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".sarslide-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PermissionError(
            f"cannot write checkpoints to {folder} ({type(err).__name__}: {err.strerror or err}); {hint}"
        ) from err
    return folder


@contextlib.contextmanager
def _one_chip_batch_hint(batch: int, size: int):
    """Turn BatchNorm's error for a batch of one chip into one that says what to change."""
    try:
        yield
    except ValueError as err:
        if batch == 1 and "Expected more than 1 value per channel" in str(err):
            raise ValueError(
                f"a training batch of one {size}×{size} chip is too small for the model's "
                "BatchNorm layers (one value per channel at the bottleneck); train on at least "
                "2 chips with batch_size >= 2, or use larger chips"
            ) from err
        raise


def _frozen_fingerprint(model: nn.Module) -> str | None:
    """Hash of a segmenter's frozen stage-1 weights (None without them): a run resumed with
    another stage-1 network would silently mix two models."""
    stage1 = getattr(model, "stage1", None)
    if stage1 is None:
        return None
    tensors = [t.detach().cpu().contiguous().numpy() for _, t in sorted(stage1.state_dict().items())]
    return array_fingerprint(*tensors)


# --------------------------------------------------------------------------- results


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    history:
        One row per epoch: ``epoch`` (1-based), ``train_loss`` (mean over chips of the
        batch losses), ``val_loss`` (over the whole validation set), ``val_aprc`` (stage 2)
        or ``val_accuracy`` (stage 1), ``seconds`` (wall time of the epoch).
    checkpoints:
        Paths of the kept top-k checkpoints, best first (ranked by the validation metric,
        ties by lower validation loss, then earlier epoch).
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
        return int(len(self.history))

    @property
    def best_epoch(self) -> int:
        return int(checkpoint_info(self.best)["epoch"])

    def best_model(self, device: str | torch.device | None = "cpu") -> nn.Module:
        """The model of the best checkpoint, in eval mode."""
        return load_checkpoint(self.best, expected=self.task, device=device)

    def models(self, device: str | torch.device | None = "cpu") -> list[nn.Module]:
        """The models of all kept checkpoints (for ensembling with :func:`~sarslide.predict.predict_proba`)."""
        return load_checkpoints(self.checkpoints, expected=self.task, device=device)


# --------------------------------------------------------------------------- evaluation


def _score(task: str, outputs: Tensor, targets: np.ndarray) -> tuple[float, float]:
    """(validation loss, validation metric) from float32 CPU outputs."""
    from sklearn.metrics import average_precision_score

    t = torch.from_numpy(targets)
    if task == "stage1":
        loss = nn.functional.binary_cross_entropy_with_logits(outputs, t).item()
        accuracy = float(((outputs > 0).float() == t).float().mean())
        return loss, accuracy
    loss = dice_loss(outputs, t).item()
    aprc = float(average_precision_score(targets.ravel(), torch.sigmoid(outputs).numpy().ravel()))
    return loss, aprc


def evaluate(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    task: Task,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    precision: str | Precision = "auto",
) -> dict[str, float]:
    """Loss and metric of ``model`` on chips, as :func:`fit` computes them each epoch.

    Returns ``{"loss": ..., "accuracy": ...}`` (stage 1: BCE, share of chips right at logit 0)
    or ``{"loss": ..., "aprc": ...}`` (stage 2: dice over all chips, APRC over all pixels).
    ``precision`` as in :func:`fit`.
    """
    check_model_for_task(model, check_task(task))
    images = check_images(images, model, "chips")
    labels = _check_labels(labels, images, "chips")
    dev = select_device(device)
    prec = resolve_precision(dev, precision)
    prec.apply_backend_settings()
    model.eval()
    targets = chip_targets(labels) if task == "stage1" else pixel_targets(labels)
    with prec.prepared(model, dev):
        outputs = forward_all(model, images, batch_size, dev, prec)
    loss, metric = _score(task, outputs, targets)
    return {"loss": loss, _METRIC_FOR_TASK[task].removeprefix("val_"): metric}


# --------------------------------------------------------------------------- training


def _rng_state() -> dict[str, Any]:
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
    import ast

    torch.set_rng_state(state["torch"])
    s = state["numpy"]
    np.random.set_state((s["name"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["cached_gaussian"]))
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rank_key(entry: Mapping[str, Any]) -> tuple:
    # best first: higher metric, then lower validation loss, then earlier epoch
    return (-entry["metric"], entry["val_loss"], entry["epoch"])


def _clean_dir(checkpoint_dir: Path, keep: set[str]) -> None:
    for p in checkpoint_dir.iterdir():
        if _TOP_PATTERN.match(p.name) and p.name not in keep:
            p.unlink()


def fit(
    model: nn.Module,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    *,
    task: Task,
    max_epochs: int,
    checkpoint_dir: str | os.PathLike,
    patience: int = 50,
    batch_size: int = 32,
    lr: float = 1e-3,
    top_k: int = 5,
    seed: int = 0,
    stats: Mapping | None = None,
    device: str | torch.device | None = None,
    precision: str | Precision = "auto",
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
    max_epochs:
        Epoch budget.  Resuming with a larger budget continues the run.
    checkpoint_dir:
        The run's folder (``last.pt`` and ``top-epochNNNN.pt``); one folder per run.
    patience:
        Stop when the validation loss has not improved for this many epochs.
    batch_size, lr:
        Mini-batch size and Adam learning rate (default Adam betas).
    top_k:
        How many best checkpoints to keep (by validation APRC or accuracy).
    seed:
        Seeds torch/NumPy/Python at the start and fixes the chip order of every epoch.
    stats:
        The standardisation statistics (``BandStats`` or its dict), stored in checkpoints.
    device:
        ``None`` picks CUDA when available, else CPU.
    precision:
        ``"auto"`` (the device's fast path), ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA) or a
        :class:`~sarslide.runtime.Precision`; see :func:`sarslide.runtime.resolve_precision`.
        The resolved name is part of the run's settings (a run resumes only with the same
        precision); checkpoints record it with the device and torch's thread count under
        ``"runtime"``.
    train_embeddings, val_embeddings:
        A segmenter's frozen stage-1 embeddings of ``train_images`` / ``val_images``,
        ``(N, 64, H, W)`` aligned with the chips (numpy array or CPU tensor, any float
        dtype), e.g. from :func:`sarslide.embeddings.cached_embeddings`; used instead of
        computing them here.  The first chip of each split is re-embedded as a check that
        they belong to these chips and this stage-1 network.
    progress:
        Show a tqdm bar over epochs.
    resume:
        Continue from ``checkpoint_dir/last.pt`` if it exists (it must come from the same
        model configuration, data and settings); ``False`` starts afresh and deletes the
        folder's old checkpoints.

    Raises
    ------
    ValueError
        Empty splits, NaN, wrong channel count or chip size, stage-2 validation chips
        without any landslide pixel (APRC undefined), bad settings.
    CheckpointError
        ``last.pt`` belongs to a different model, data or settings.
    """
    task = check_task(task)
    check_model_for_task(model, task)
    for name, value, low in (("max_epochs", max_epochs, 1), ("batch_size", batch_size, 1), ("top_k", top_k, 1), ("patience", patience, 1)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    train_images = check_images(train_images, model, "training chips")
    train_labels = _check_labels(train_labels, train_images, "training")
    val_images = check_images(val_images, model, "validation chips")
    val_labels = _check_labels(val_labels, val_images, "validation")

    if task == "stage1":
        train_t, val_t = chip_targets(train_labels), chip_targets(val_labels)
        criterion = nn.functional.binary_cross_entropy_with_logits
    else:
        train_t, val_t = pixel_targets(train_labels), pixel_targets(val_labels)
        if val_t.sum() == 0:
            raise ValueError(
                "the validation chips hold no landslide pixel, so APRC is undefined; "
                "use a validation split with landslide chips (chips.balance keeps half)"
            )
        criterion = dice_loss
    metric_name = _METRIC_FOR_TASK[task]

    dev = select_device(device)
    prec = resolve_precision(dev, precision)
    prec.apply_backend_settings()
    checkpoint_dir = _writable_dir(Path(checkpoint_dir))
    remove_leftovers(checkpoint_dir)  # half-written checkpoints of a killed run
    last_path = checkpoint_dir / _LAST
    from .transforms import warn_if_unstandardized

    warn_if_unstandardized(train_images, "training chips")

    settings = {
        "task": task,
        "model_class": type(model).__name__,
        "model_config": model.config_dict(),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "seed": int(seed),
        "patience": int(patience),
        "top_k": int(top_k),
        "data": array_fingerprint(train_images, train_t, val_images, val_t),
        "frozen_stage1": _frozen_fingerprint(model),
        "precision": prec.name,
    }
    runtime = runtime_record(dev, prec)

    seed_everything(seed)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    optimizer = torch.optim.Adam(params, lr=lr)
    scaler = prec.grad_scaler_for(dev)

    history: list[dict[str, float]] = []
    top: list[dict[str, Any]] = []
    best_val_loss = float("inf")
    bad_epochs = 0
    stopped_early = False
    start_epoch = 0

    if resume and last_path.exists():
        state = read_checkpoint(last_path)
        old = dict(state.get("settings", {}))
        # runs from before precision was a setting: float16 + gradient scaler on CUDA, else float32
        old.setdefault("precision", "fp16" if state.get("scaler") else "fp32")
        changed = sorted(k for k in settings if old.get(k) != settings[k])
        if changed:
            raise CheckpointError(
                f"{last_path} belongs to a different run (differs in {changed}); use another "
                "checkpoint_dir, or resume=False to overwrite it"
            )
        if state["epoch"] > max_epochs:
            raise CheckpointError(
                f"{last_path} is already at epoch {state['epoch']} > max_epochs={max_epochs}; "
                "ask for at least that many epochs, or use another checkpoint_dir"
            )
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        history = list(state["history"])
        top = list(state["top"])
        best_val_loss = state["best_val_loss"]
        bad_epochs = state["bad_epochs"]
        stopped_early = state["stopped_early"]
        start_epoch = state["epoch"]
        was = (state.get("runtime") or {}).get("threads")
        if was is not None and was != runtime["threads"] and start_epoch < max_epochs and not stopped_early:
            import warnings

            warnings.warn(
                f"{last_path} was written with {was} torch thread(s), this process uses "
                f"{runtime['threads']}: the resumed epochs will not be bit-identical to an "
                f"uninterrupted run; call torch.set_num_threads({was}) first to match it",
                ThreadCountWarning,
                stacklevel=2,
            )
    else:
        _clean_dir(checkpoint_dir, keep=set())
        if last_path.exists():
            last_path.unlink()

    def result() -> TrainResult:
        frame = pd.DataFrame(history, columns=["epoch", "train_loss", "val_loss", metric_name, "seconds"])
        frame["epoch"] = frame["epoch"].astype(int)
        paths = [checkpoint_dir / e["file"] for e in sorted(top, key=_rank_key)]
        return TrainResult(frame, paths, metric_name, stopped_early, checkpoint_dir, task)

    if stopped_early or start_epoch >= max_epochs:
        return result()

    n = len(train_images)
    # The precision's memory layout for the weights while training (put back at the end).
    prec.apply_layout(model)
    bar = progress_bar(
        total=max_epochs, initial=start_epoch, disable=not progress,
        desc=f"{task} {type(model).__name__}", unit="epoch", leave=True,
    )  # fmt: skip
    try:
        # A segmenter's stage-1 network is frozen: its embeddings of these chips are the
        # same every epoch, so compute them once (N × 64 × H × W per split, on the CPU, in
        # the dtype the forward pass produces), or take the caller's precomputed ones.
        train_emb = check_embeddings(train_embeddings, model, train_images, "training", dev, prec)
        if train_emb is None:
            train_emb = segmenter_embeddings(model, train_images, batch_size, dev, prec)
        val_emb = check_embeddings(val_embeddings, model, val_images, "validation", dev, prec)
        if val_emb is None:
            val_emb = segmenter_embeddings(model, val_images, batch_size, dev, prec)
        for epoch in range(start_epoch + 1, max_epochs + 1):
            t0 = time.perf_counter()
            model.train()
            order = np.random.default_rng([int(seed), epoch]).permutation(n)
            total, seen = 0.0, 0
            for idx in batch_indices(n, batch_size, order):
                if len(idx) == 1 and batch_size > 1 and n > 1:
                    # BatchNorm cannot train on a batch of one chip at small chip sizes; the
                    # order is reshuffled every epoch, so a different chip sits out each time
                    continue
                xb = prec.to_input(train_images[idx], dev)
                yb = torch.from_numpy(train_t[idx]).to(dev, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                extra = () if train_emb is None else (prec.to_input(take_rows(train_emb, idx), dev),)
                with prec.autocast(), _one_chip_batch_hint(len(idx), train_images.shape[-1]):
                    out = model(xb, *extra)
                loss = criterion(out.float(), yb)  # float32 loss, whatever the autocast dtype
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += loss.item() * len(idx)
                seen += len(idx)
            train_loss = total / seen

            model.eval()
            val_loss, val_metric = _score(task, forward_all(model, val_images, batch_size, dev, prec, val_emb), val_t)
            history.append(
                {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                 metric_name: val_metric, "seconds": time.perf_counter() - t0}
            )  # fmt: skip

            if val_loss < best_val_loss:
                best_val_loss, bad_epochs = val_loss, 0
            else:
                bad_epochs += 1
            stopped_early = bad_epochs >= patience

            entry = {"epoch": epoch, "metric": val_metric, "val_loss": val_loss, "file": f"top-epoch{epoch:04d}.pt"}
            candidate = sorted(top + [entry], key=_rank_key)[:top_k]
            metrics = {"train_loss": train_loss, "val_loss": val_loss, metric_name: val_metric}
            if entry in candidate:
                save_checkpoint(
                    model, checkpoint_dir / entry["file"], task=task, stats=stats,
                    extra={"epoch": epoch, "metrics": metrics, "settings": settings, "runtime": runtime},
                )  # fmt: skip
            top = candidate
            record = model_record(model, task, stats)
            record.update(
                epoch=epoch, metrics=metrics, settings=settings, runtime=runtime,
                optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), rng=_rng_state(),
                history=history, top=top, best_val_loss=best_val_loss, bad_epochs=bad_epochs,
                stopped_early=stopped_early,
            )  # fmt: skip
            save_record(record, last_path)
            _clean_dir(checkpoint_dir, keep={e["file"] for e in top})

            bar.set_postfix(
                train_loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}", refresh=False,
                **{metric_name: f"{val_metric:.3f}"},
            )  # fmt: skip
            bar.update(1)
            if stopped_early:
                break
    finally:
        bar.close()
        prec.restore_layout(model)
    return result()


def _check_indices(indices: Sequence[int], n: int) -> np.ndarray:
    """``indices`` as int positions in ``[0, n)``; a clear error for anything else."""
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(
            f"train_indices must be a 1-D sequence of integer positions, got {indices!r}"
        )
    bad = idx[(idx < 0) | (idx >= n)] if idx.size else idx
    if bad.size:
        raise ValueError(
            f"train_indices {sorted(set(bad.tolist()))[:10]} are outside the training split, "
            f"which holds {n} chips (positions 0..{n - 1}); use positions within the split, e.g. "
            "chips.few_shot_subset(split, size, seed)"
        )
    return idx.astype(int)


def fit_chipset(
    model: nn.Module,
    chipset,
    *,
    task: Task,
    train_split: str | None = None,
    train_indices: Sequence[int] | None = None,
    val_split: str = "validation",
    **kwargs: Any,
) -> TrainResult:
    """:func:`fit` on a :class:`~sarslide.chips.ChipSet`: select splits, standardise, record stats.

    Parameters
    ----------
    chipset:
        Chips with ``stats`` (as :func:`sarslide.datasets.prepare_event` returns them).
    train_split:
        Defaults to ``"stage1_train"`` for stage 1 and ``"stage2_train"`` for stage 2.
    train_indices:
        Positions *within* the training split to use (few-shot subsets); all by default.
    val_split:
        Validation split name.
    kwargs:
        Passed to :func:`fit` (``max_epochs``, ``checkpoint_dir``, ``seed``, ...).
    """
    from .transforms import standardize

    task = check_task(task)
    if chipset.stats is None:
        raise ValueError(
            "the chips carry no standardisation statistics; compute them on the stage-1 "
            "training chips (transforms.compute_stats) or use datasets.prepare_event"
        )
    train = chipset.split(train_split or ("stage1_train" if task == "stage1" else "stage2_train"))
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
