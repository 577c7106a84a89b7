"""The stage-1 classifier of an event, trained once and cached: get-or-train.

:func:`train_stage1` trains (or resumes, or just returns) the stage-1 run of an event
under a profile in :func:`stage1_checkpoint_dir`, a folder named after everything that
determines the run; :func:`pretrained_stage1` returns its best model, which is what a
stage-2 chapter calls so that it runs standalone on a fresh runtime.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoints import load_checkpoint
from .models import SiameseClassifier
from .train import TrainResult, fit_chipset, seed_everything

__all__ = ["checkpoint_root", "stage1_checkpoint_dir", "train_stage1", "pretrained_stage1"]


def checkpoint_root(cache_dir=None) -> Path:
    """The folder that holds training runs: ``<data dir>/checkpoints`` (see
    :func:`sarslide.datasets.data_dir`; ``$SARSLIDE_DATA_DIR`` or the user cache)."""
    from .datasets import data_dir

    return data_dir(cache_dir) / "checkpoints"


def stage1_checkpoint_dir(
    event: str, profile=None, *, config: str | None = None, seed: int = 0, data_seed: int | None = None, cache_dir=None
) -> Path:
    """Where :func:`train_stage1` keeps a run: ``<data dir>/checkpoints/stage1-...``.

    The name carries the event, configuration, seed and a hash of the chip store's and the
    stage-1 training's settings (:data:`sarslide.profiles.STAGE1_FIELDS`), so changing the
    data or a setting starts a new run instead of reusing a stale one, while profiles that
    differ only in stage-2 settings share one stage-1 model.
    """
    from .datasets import store_key
    from .events import get_event
    from .profiles import STAGE1_FIELDS, get_profile
    from .runtime import resolve_precision, select_device

    profile = get_profile(profile)
    name = get_event(event).name
    config = config or profile.stage1_config
    # Key on the precision "auto" resolves to here: a run made in bf16 elsewhere is not ours.
    resolved = resolve_precision(select_device(None), profile.precision).name
    keyed = profile.with_overrides(precision=resolved)
    key = store_key(name, keyed, profile.data_seed if data_seed is None else data_seed, STAGE1_FIELDS)
    return checkpoint_root(cache_dir) / f"stage1-{name}-{config}-seed{seed}-{key}"


def train_stage1(
    event: str,
    profile=None,
    *,
    config: str | None = None,
    seed: int = 0,
    data_seed: int | None = None,
    cache_dir=None,
    device: str | torch.device | None = None,
    progress: bool = True,
    resume: bool = True,
) -> TrainResult:
    """Train (or resume, or just return) the stage-1 classifier of ``event`` under ``profile``.

    Uses :func:`sarslide.datasets.prepare_event` (split ``stage1_train``, validation split
    ``validation``) and the profile's budget (``stage1_max_epochs``, ``patience``,
    ``batch_size``, ``learning_rate``, ``top_k``, ``stage1_config``).  Checkpoints go to
    :func:`stage1_checkpoint_dir`; a finished run is returned without training again.
    """
    from .datasets import prepare_event
    from .profiles import Profile, get_profile

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    config = config or profile.stage1_config
    chips = prepare_event(event, profile, cache_dir=cache_dir, seed=data_seed)
    seed_everything(seed)
    model = SiameseClassifier(config)
    return fit_chipset(
        model,
        chips,
        task="stage1",
        max_epochs=profile.stage1_max_epochs,
        patience=profile.patience,
        batch_size=profile.batch_size,
        lr=profile.learning_rate,
        top_k=profile.top_k,
        seed=seed,
        checkpoint_dir=stage1_checkpoint_dir(event, profile, config=config, seed=seed, data_seed=data_seed, cache_dir=cache_dir),
        device=device,
        progress=progress,
        resume=resume,
    )


def pretrained_stage1(
    event: str,
    profile=None,
    *,
    config: str | None = None,
    seed: int = 0,
    data_seed: int | None = None,
    cache_dir=None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> SiameseClassifier:
    """The best stage-1 classifier of ``event``: loaded from the cache, trained first if missing.

    This is what a stage-2 chapter calls, so it runs standalone on a fresh runtime.
    The returned model is on the CPU in eval mode; pass it to ``Segmenter(stage1=...)``.
    """
    result = train_stage1(
        event, profile, config=config, seed=seed, data_seed=data_seed,
        cache_dir=cache_dir, device=device, progress=progress,
    )  # fmt: skip
    return load_checkpoint(result.best, "stage1", device="cpu")
