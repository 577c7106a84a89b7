"""The stage-2 training recipe: the published block, AdamW, gradient clipping, the
learning-rate plateau schedule and the fewest steps per epoch.

References used: the gradient norm measured at each optimiser step (an optimiser
step hook, independent of the clipping code), ReduceLROnPlateau's rule recomputed by
hand from the run's own validation losses, step counts by hand, and an uninterrupted
run for resume.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from sarslide.models import Segmenter, SiameseClassifier, build_model
from sarslide.profiles import get_profile
from sarslide.train import TrainConfig, TrainingData, fit, seed_everything

torch.set_num_threads(1)

RECIPE = dict(
    optimizer="adamw",
    weight_decay=0.01,
    grad_clip=0.5,
    lr_plateau_patience=1,
    min_steps_per_epoch=5,
)


def _fit(data, folder, max_epochs=3, seed=0, model=None, **settings):
    seed_everything(seed)
    model = model or Segmenter()
    config = TrainConfig(max_epochs=max_epochs, batch_size=3, top_k=1, **settings)
    result = fit(
        model,
        TrainingData(*data),
        task="stage2",
        config=config,
        checkpoint_dir=folder,
        seed=seed,
        progress=False,
    )
    return model, result


class _StepSpy:
    """Records, at every optimiser step, the global L2 norm of the gradients about to
    be applied (a step pre-hook on every optimiser)."""

    def __init__(self):
        self.norms: list[float] = []

    def __enter__(self):
        def hook(optimizer, args, kwargs):
            grads = [
                p.grad
                for g in optimizer.param_groups
                for p in g["params"]
                if p.grad is not None
            ]
            self.norms.append(
                float(
                    torch.linalg.vector_norm(
                        torch.stack([torch.linalg.vector_norm(g) for g in grads])
                    )
                )
            )

        self.handle = register_optimizer_step_pre_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_gradient_clipping_bounds_every_applied_gradient(tmp_path, toy_data):
    with _StepSpy() as free:
        _fit(toy_data, tmp_path / "free", max_epochs=2, precision="fp32")
    bound = 0.5 * min(free.norms)  # below every unclipped norm, so clipping must act
    with _StepSpy() as clipped:
        _fit(
            toy_data, tmp_path / "clip", max_epochs=2, precision="fp32", grad_clip=bound
        )
    assert len(clipped.norms) == len(free.norms) > 0
    assert max(clipped.norms) <= bound * (1 + 1e-4)
    assert max(free.norms) > bound


def test_min_steps_per_epoch_repeats_passes_and_one_is_the_plain_epoch(
    tmp_path, toy_data
):
    x = toy_data[0]  # 8 chips, batch 3: 3 batches per pass (3, 3, 2)
    assert len(x) == 8
    with _StepSpy() as plain:
        _, one = _fit(toy_data, tmp_path / "one", max_epochs=2, min_steps_per_epoch=1)
    with _StepSpy() as more:
        _fit(toy_data, tmp_path / "seven", max_epochs=2, min_steps_per_epoch=7)
    assert len(plain.norms) == 2 * 3  # one pass per epoch
    assert len(more.norms) == 2 * 9  # ceil(7 / 3) = 3 passes per epoch
    # min_steps_per_epoch=1 is the plain epoch, bit for bit
    _, default = _fit(toy_data, tmp_path / "default", max_epochs=2)
    pd.testing.assert_frame_equal(
        one.history.drop(columns="seconds"), default.history.drop(columns="seconds")
    )


def test_plateau_schedule_halves_the_rate_as_reduce_lr_on_plateau_says(
    tmp_path, make_toy_chips
):
    rng = np.random.default_rng(5)
    x, _ = make_toy_chips(8, seed=5)
    y = (rng.random((8, 32, 32)) > 0.98).astype(np.uint8)  # unrelated to the images
    xv, _ = make_toy_chips(4, seed=6)
    yv = (rng.random((4, 32, 32)) > 0.98).astype(np.uint8)
    _, result = _fit(
        (x, y, xv, yv),
        tmp_path,
        max_epochs=8,
        patience=8,
        lr=0.05,
        lr_plateau_patience=1,
    )
    h = result.history
    # ReduceLROnPlateau(mode="min", factor=0.5, patience=1, threshold=1e-4 relative):
    # after an epoch, "bad" counts epochs not below best * (1 - 1e-4); when it
    # exceeds the patience, the rate halves and the count restarts
    lr, best, bad, expected = 0.05, np.inf, 0, []
    for loss in h["val_loss"]:
        expected.append(lr)
        if loss < best * (1 - 1e-4):
            best, bad = loss, 0
        else:
            bad += 1
        if bad > 1:
            lr, bad = lr * 0.5, 0
    np.testing.assert_allclose(h["lr"].to_numpy(), expected)
    assert h["lr"].iloc[-1] < 0.05  # the unrelated labels do stall it


def test_resume_with_the_whole_recipe_reproduces_an_uninterrupted_run(
    tmp_path, toy_data
):
    full, r_full = _fit(toy_data, tmp_path / "full", max_epochs=4, **RECIPE)
    _fit(toy_data, tmp_path / "cut", max_epochs=2, **RECIPE)
    seed_everything(99)  # a fresh process: other initial weights, other RNG
    resumed, r_res = _fit(
        toy_data, tmp_path / "cut", max_epochs=4, seed=0, model=Segmenter(), **RECIPE
    )
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    pd.testing.assert_frame_equal(
        r_full.history.drop(columns="seconds"), r_res.history.drop(columns="seconds")
    )


def test_a_run_resumes_only_with_the_same_recipe(tmp_path, toy_data):
    from sarslide.engine.checkpoints import CheckpointError

    _fit(toy_data, tmp_path, max_epochs=1, **RECIPE)
    with pytest.raises(CheckpointError, match="grad_clip"):
        _fit(toy_data, tmp_path, max_epochs=2, **{**RECIPE, "grad_clip": 1.0})


@pytest.mark.parametrize(
    "settings,message",
    [
        (dict(optimizer="sgd"), "optimizer='sgd'"),
        (dict(optimizer="adam", weight_decay=0.1), "optimizer='adamw'"),
        (dict(grad_clip=0.0), "grad_clip=0.0"),
        (dict(lr_plateau_patience=0), "lr_plateau_patience=0"),
        (dict(lr_plateau_factor=1.0), "lr_plateau_factor=1.0"),
        (dict(min_steps_per_epoch=0), "min_steps_per_epoch must be an integer >= 1"),
    ],
)
def test_bad_recipe_settings_are_named(settings, message):
    with pytest.raises(
        ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        TrainConfig(max_epochs=1, **settings)


def test_profiles_give_stage2_its_own_recipe_and_stage1_stays_plain():
    demo = get_profile("demo")
    two = TrainConfig.from_profile(demo, "stage2")
    assert (
        two.max_epochs,
        two.patience,
        two.optimizer,
        two.weight_decay,
        two.grad_clip,
        two.lr_plateau_patience,
        two.min_steps_per_epoch,
        two.early_stopping,
        two.min_epochs,
    ) == (
        demo.stage2_max_epochs,
        demo.stage2_patience,
        demo.stage2_optimizer,
        demo.stage2_weight_decay,
        demo.stage2_grad_clip,
        demo.stage2_lr_plateau_patience,
        demo.stage2_min_steps_per_epoch,
        demo.stage2_early_stopping,
        demo.stage2_min_epochs,
    )
    one = TrainConfig.from_profile(demo, "stage1")
    assert one.patience == demo.patience and one.optimizer == "adam"
    assert one.grad_clip is None and one.lr_plateau_patience is None
    assert one.early_stopping == "val_loss"
    custom = replace(demo, stage2_grad_clip=2.0, stage2_patience=3)
    assert TrainConfig.from_profile(custom, "stage2").grad_clip == 2.0
    assert TrainConfig.from_profile(custom, "stage2").patience == 3


# --------------------------------------------------------------------------- the block


def _layers(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def test_reference_block_has_batch_norm_and_leaky_relu_after_each_feature_conv():
    ref, plain = Segmenter(), Segmenter(block="plain")
    # three feature convolutions and the first head convolution are normalised
    assert _layers(ref, nn.BatchNorm2d) == 4 and _layers(ref, nn.LeakyReLU) == 4
    assert _layers(ref, nn.ReLU) == 0
    assert _layers(plain, nn.BatchNorm2d) == 0 and _layers(plain, nn.ReLU) == 4
    # batch norm adds 2 parameters per channel: 2 * (8 + 16 + 64 + 128)
    trainable = sum(p.numel() for p in ref.parameters())
    assert trainable - sum(p.numel() for p in plain.parameters()) == 2 * (
        8 + 16 + 64 + 128
    )
    with_stage1 = Segmenter(SiameseClassifier())
    assert _layers(with_stage1.head, nn.BatchNorm2d) == 1
    x = torch.randn(2, 4, 32, 32)
    assert ref(x).shape == plain(x).shape == (2, 1, 32, 32)


def test_segmenter_block_round_trips_and_old_checkpoints_are_plain():
    for block in ("reference", "plain"):
        model = Segmenter(block=block)
        # the stored record keeps the key "config" (caches and digests depend on it)
        assert model.config_dict() == {"stage1": None, "config": block, "width": 128}
        rebuilt = build_model("Segmenter", model.config_dict())
        assert rebuilt.block == block
        assert rebuilt.state_dict().keys() == model.state_dict().keys()
    old = build_model("Segmenter", {"stage1": None})  # written before the setting
    assert old.block == "plain"
    with pytest.raises(ValueError, match="unknown segmenter block 'relu'"):
        Segmenter(block="relu")


def test_early_stopping_on_the_metric_stops_patience_epochs_after_the_best(
    tmp_path, make_toy_chips
):
    x, y = make_toy_chips(8, seed=2)
    xv, yv = make_toy_chips(4, seed=3)
    patience = 2
    _, result = _fit(
        (x, y, xv, yv),
        tmp_path,
        max_epochs=30,
        patience=patience,
        lr=0.05,
        early_stopping="metric",
    )
    h = result.history
    aprc = h["val_aprc"].to_numpy()
    # epochs since the last strict improvement of the validation APRC, by hand
    since, best = [], -np.inf
    for v in aprc:
        since.append(0 if v > best else since[-1] + 1)
        best = max(best, v)
    assert result.stopped_early, "the toy run should plateau within 30 epochs"
    assert since[-1] == patience and (np.array(since[:-1]) < patience).all()
    # the kept checkpoint is the first epoch of the best APRC: stop = best + patience
    assert result.best_epoch == int(np.argmax(aprc)) + 1
    assert result.epochs == result.best_epoch + patience


def test_bad_early_stopping_signal_is_named():
    with pytest.raises(ValueError, match="early_stopping='aprc'"):
        TrainConfig(max_epochs=1, early_stopping="aprc")


def test_early_stopping_on_both_waits_for_loss_and_metric_to_stall(
    tmp_path, make_toy_chips
):
    x, y = make_toy_chips(8, seed=2)
    xv, yv = make_toy_chips(4, seed=3)
    patience = 2
    _, result = _fit(
        (x, y, xv, yv),
        tmp_path,
        max_epochs=30,
        patience=patience,
        lr=0.05,
        early_stopping="both",
    )
    h = result.history

    def since_best(values, better):
        since, best = [], None
        for v in values:
            improved = best is None or better(v, best)
            since.append(0 if improved else since[-1] + 1)
            best = v if improved else best
        return np.array(since)

    loss = since_best(h["val_loss"], lambda a, b: a < b)
    metric = since_best(h["val_aprc"], lambda a, b: a > b)
    both = np.minimum(loss, metric)  # a run goes on while either improves
    assert result.stopped_early
    assert both[-1] == patience and (both[:-1] < patience).all()


def test_no_early_stop_before_min_epochs(tmp_path, make_toy_chips):
    rng = np.random.default_rng(5)
    x, _ = make_toy_chips(8, seed=5)
    y = (rng.random((8, 32, 32)) > 0.98).astype(np.uint8)  # unrelated: stops at once
    xv, _ = make_toy_chips(4, seed=6)
    yv = (rng.random((4, 32, 32)) > 0.98).astype(np.uint8)
    _, free = _fit(
        (x, y, xv, yv), tmp_path / "free", max_epochs=20, patience=1, lr=0.05
    )
    _, held = _fit(
        (x, y, xv, yv),
        tmp_path / "held",
        max_epochs=20,
        patience=1,
        lr=0.05,
        min_epochs=6,
    )
    assert free.stopped_early and free.epochs < 6
    assert held.stopped_early and held.epochs >= 6
    # the first epochs are the same run
    pd.testing.assert_frame_equal(
        free.history.drop(columns="seconds"),
        held.history.drop(columns="seconds").head(free.epochs),
    )
