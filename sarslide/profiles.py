"""Run profiles: one setting that chooses data source and compute budget.

The same notebooks serve CI, a student on Colab and a full reproduction of the paper.
The active profile is read from the environment variable ``SARSLIDE_PROFILE`` (default
``"demo"``) and a notebook may override it in its ``parameters`` cell. A name is looked
up once, where an experiment is made (:meth:`sarslide.experiment.Experiment.create`);
everything after takes the resolved :class:`Profile`::

    from sarslide.profiles import get_profile
    profile = get_profile()            # SARSLIDE_PROFILE or "demo"
    profile = get_profile("paper")     # explicit

``demo``
    Synthetic event cubes, small chips and a few epochs: every notebook runs offline in
    minutes on two CPU cores.
``paper``
    The paper's published datacubes and its protocol (batch 32, Adam lr 1e-3, early
    stopping with patience 50, top-5 checkpoints, training sizes 2/5/10/20/110, 3 seeds,
    5 for size 2). Needs the network for the first download.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

__all__ = [
    "Profile",
    "PROFILES",
    "get_profile",
    "PROFILE_ENV",
    "CUBE_FIELDS",
    "CHIP_FIELDS",
    "STAGE1_FIELDS",
]

PROFILE_ENV = "SARSLIDE_PROFILE"


@dataclass(frozen=True)
class Profile:
    """Every knob the notebooks read, in one immutable record.

    Attributes
    ----------
    name:
        ``"demo"`` or ``"paper"``.
    data_source:
        ``"synthetic"`` (offline generator) or ``"zenodo"`` (the paper's datacubes).
    synthetic_shape:
        ``(ny, nx)`` pixels of a synthetic event cube (10 m pixels).
    chip_size:
        Chip edge in pixels.
    max_nodata_fraction:
        Chips with a larger share of no-data pixels are dropped.
    n_pre_passes, n_post_passes:
        How many passes before / after the event are averaged into one chip.
    batch_size, learning_rate:
        Optimiser settings shared by both stages.
    stage1_max_epochs, stage2_max_epochs:
        Epoch budgets.
    patience:
        Stage 1's early-stopping patience in epochs (validation loss).
    top_k:
        Number of best checkpoints kept per training run.
    train_sizes:
        Stage-2 training-set sizes of the ablation grid (``None`` = all chips).
    seeds:
        Random seeds per run; ``seeds_smallest`` for the smallest training size.
    stage1_config:
        ``"reference"`` (as the published experiments ran) or ``"paper"`` (as the text
        says).
    split_scheme:
        How chips are split (:func:`sarslide.chips.split_counts`): ``"table_a1"`` (the
        paper's Table A1 counts), ``"text"`` (the 50/25/12.5/12.5 sentence of §2) or a
        tuple of four fractions (stage1_train, stage2_train, validation, test).
    few_shot_draw:
        How a few-shot training subset is drawn from the stage-2 pool: ``"random"`` (the
        paper: any mix, possibly without a landslide chip) or ``"balanced"`` (half
        landslide).
    named_passes:
        Use the event's named passes (``Event.paper_pre_pass`` / ``paper_post_pass``)
        instead of the nearest same-track passes around the event.
    data_seed:
        Seeds the data: the synthetic scene, the balancing and the split (one seed, one
        scene; studies vary it to repeat the experiment on independent scenes).
    precision:
        ``"auto"`` (bf16 autocast + channels-last where the device supports it) or
        ``"fp32"``.
    stage2_config:
        The segmenter's block (:data:`sarslide.models.SEGMENTER_CONFIGS`):
        ``"reference"`` (batch norm, LeakyReLU) or ``"plain"`` (ReLU).
    stage2_width:
        Hidden channels of the segmenter's head (the paper: 128).
    stage2_patience:
        Stage 2's early-stopping patience in epochs (validation loss).
    stage2_optimizer, stage2_weight_decay, stage2_grad_clip, stage2_lr_plateau_patience:
        Stage 2's optimiser recipe (:class:`sarslide.train.TrainConfig`): ``"adam"`` or
        ``"adamw"`` with its weight decay, the gradient-norm bound (``None``: no
        clipping) and the epochs without improvement after which the learning rate is
        halved (``None``: constant).
    stage2_min_steps_per_epoch:
        The fewest optimiser steps between two validations
        (:attr:`sarslide.train.TrainConfig.min_steps_per_epoch`).
    stage2_early_stopping:
        What stage 2's early stopping watches: ``"val_loss"``, ``"metric"`` (the
        validation APRC that also ranks its checkpoints) or ``"both"``
        (:attr:`sarslide.train.TrainConfig.early_stopping`).
    stage2_min_epochs:
        Stage 2's burn-in: early stopping cannot end a run before this epoch.
    """

    name: str
    data_source: str
    synthetic_shape: tuple[int, int]
    chip_size: int
    max_nodata_fraction: float
    n_pre_passes: int
    n_post_passes: int
    batch_size: int
    learning_rate: float
    stage1_max_epochs: int
    stage2_max_epochs: int
    patience: int
    top_k: int
    train_sizes: tuple[int | None, ...]
    seeds: tuple[int, ...]
    seeds_smallest: tuple[int, ...]
    stage1_config: str = "reference"
    split_scheme: str | tuple[float, float, float, float] = "text"
    few_shot_draw: str = "balanced"
    named_passes: bool = False
    precision: str = "auto"
    data_seed: int = 0
    stage2_config: str = "reference"
    stage2_width: int = 128
    stage2_patience: int = 50
    stage2_optimizer: str = "adam"
    stage2_weight_decay: float = 0.0
    stage2_grad_clip: float | None = None
    stage2_lr_plateau_patience: int | None = None
    stage2_min_steps_per_epoch: int = 1
    stage2_early_stopping: str = "val_loss"
    stage2_min_epochs: int = 1

    @property
    def offline(self) -> bool:
        """True when the profile never needs the network."""
        return self.data_source == "synthetic"

    def with_overrides(self, **changes) -> "Profile":
        """A copy with some fields changed
        (``profile.with_overrides(batch_size=8)``)."""
        return replace(self, **changes)


#: The settings that determine each cached product (its cache key hashes only these, so
#: a profile that changes, say, the few-shot draw reuses the same chips and stage-1
#: model).
CUBE_FIELDS: tuple[str, ...] = (
    "data_source",
    "synthetic_shape",
    "n_pre_passes",
    "n_post_passes",
)
CHIP_FIELDS: tuple[str, ...] = CUBE_FIELDS + (
    "chip_size",
    "max_nodata_fraction",
    "split_scheme",
    "named_passes",
)
STAGE1_FIELDS: tuple[str, ...] = CHIP_FIELDS + (
    "batch_size",
    "learning_rate",
    "stage1_max_epochs",
    "patience",
    "top_k",
    "stage1_config",
    "precision",
)

#: The demo's split: like the paper, stage 1 sees many more chips than the few-shot pool
#: of stage 2, and the test set holds over 100 chips so that the paper's effects are
#: resolved.
DEMO_SPLIT_FRACTIONS: tuple[float, float, float, float] = (0.58, 0.08, 0.10, 0.24)

PROFILES: dict[str, Profile] = {
    "demo": Profile(
        name="demo",
        data_source="synthetic",
        synthetic_shape=(1024, 2048),
        chip_size=64,
        max_nodata_fraction=0.1,
        n_pre_passes=1,
        n_post_passes=1,
        batch_size=16,
        learning_rate=1e-3,
        # Both stages train until early stopping; the caps only bound a run that never
        # plateaus (the grid's training-health check reports any run that hits one).
        stage1_max_epochs=40,
        stage2_max_epochs=60,
        patience=5,
        # One checkpoint per run: every model is one more pass over the test chips
        # and the whole scene in chapter 7; the ensembles are over the seeds.
        top_k=1,
        train_sizes=(2, 5, 10, 20, None),
        seeds=(0, 1, 2),
        seeds_smallest=(0, 1, 2, 3, 4),
        split_scheme=DEMO_SPLIT_FRACTIONS,
        few_shot_draw="random",
        # a quarter of the paper's head: its 8x8 convolution is nearly all the
        # arithmetic of the 51-run grid
        stage2_width=32,
        stage2_patience=4,
        stage2_optimizer="adamw",
        stage2_weight_decay=0.01,
        stage2_grad_clip=0.5,
        stage2_lr_plateau_patience=2,
        stage2_min_steps_per_epoch=2,
        # stop when neither the validation loss nor the APRC has improved: on the loss
        # alone runs stopped while their APRC still rose, on the noisy APRC alone
        # while their loss still fell
        stage2_early_stopping="both",
        # a pretrained arm's validation APRC dips for a few epochs while its head
        # re-learns: no early stop before epoch 10
        stage2_min_epochs=10,
    ),
    "paper": Profile(
        name="paper",
        data_source="zenodo",
        synthetic_shape=(2048, 2048),
        chip_size=128,
        max_nodata_fraction=0.1,
        n_pre_passes=1,
        n_post_passes=1,
        batch_size=32,
        learning_rate=1e-3,
        stage1_max_epochs=500,
        stage2_max_epochs=500,
        patience=50,
        top_k=5,
        train_sizes=(2, 5, 10, 20, None),
        seeds=(0, 1, 2),
        seeds_smallest=(0, 1, 2, 3, 4),
        split_scheme="table_a1",
        few_shot_draw="random",
        named_passes=True,
        # the text's early stopping (patience 50) with the published runs' optimiser
        stage2_patience=50,
        stage2_optimizer="adamw",
        stage2_weight_decay=0.01,
        stage2_grad_clip=0.5,
        stage2_lr_plateau_patience=20,
        stage2_early_stopping="both",
    ),
}


def get_profile(name: "str | Profile | None" = None) -> Profile:
    """The named profile, or the one in ``$SARSLIDE_PROFILE`` (default ``"demo"``).

    A :class:`Profile` passed in is returned as it is. Entry points call it once
    (through :meth:`sarslide.experiment.Experiment.create`) and pass the object on.

    Raises
    ------
    KeyError
        For an unknown name; the message lists the known profiles and the variable.
    """
    if isinstance(name, Profile):
        return name
    chosen = name if name is not None else os.environ.get(PROFILE_ENV, "demo")
    key = str(chosen).strip().lower()
    if key not in PROFILES:
        raise KeyError(
            f"unknown profile {chosen!r}; choose one of {sorted(PROFILES)} "
            f"(set {PROFILE_ENV} or pass profile=...)"
        )
    return PROFILES[key]
