"""The training loop: losses, targets, learning, exact resume, early stopping and top-k.

References used: hand-computed dice values and segmentation-models-pytorch's DiceLoss,
scikit-learn's average precision, the pixel base rate, the epoch history itself for the
early-stopping and top-k rules, and an uninterrupted run for resume.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import toy_chips
from segmentation_models_pytorch.losses import DiceLoss
from sklearn.metrics import average_precision_score

from sarslide.engine.checkpoints import CheckpointError
from sarslide.models import Segmenter, SiameseClassifier
from sarslide.predict import predict_proba
from sarslide.tasks import chip_targets, dice_loss, pixel_targets
from sarslide.train import TrainConfig, TrainingData, fit, seed_everything

torch.set_num_threads(1)


def run(model_cls, data, tmp, task, max_epochs, seed=0, resume=True, **settings):
    seed_everything(seed)
    model = model_cls()
    settings.setdefault("batch_size", 3)
    settings.setdefault("top_k", 2)
    result = fit(
        model,
        TrainingData(*data),
        task=task,
        config=TrainConfig(max_epochs=max_epochs, **settings),
        checkpoint_dir=tmp,
        seed=seed,
        progress=False,
        resume=resume,
    )
    return model, result


# --------------------------------------------------------------------------- losses and
# targets


def test_dice_loss_by_hand_and_against_smp():
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # 1 - (2 * 1 + 1) / (2 + 2 + 1)
    assert dice_loss(logits, target).item() == pytest.approx(0.4)
    assert dice_loss(
        torch.full((1, 1, 2, 2), -30.0) + 60 * target, target
    ).item() == pytest.approx(0.0, abs=1e-6)

    torch.manual_seed(0)
    logits = torch.randn(3, 1, 8, 8)
    target = (torch.rand(3, 1, 8, 8) > 0.7).float()
    smp_loss = DiceLoss(mode="binary", from_logits=True, smooth=1.0)(logits, target)
    # smp 0.6 writes dice as a Tversky score, (I + s) / (I + fp/2 + fn/2 + s), which is
    # the classic (2I + 2s) / (sum p + sum y + 2s): its smoothing term counts twice.
    torch.testing.assert_close(dice_loss(logits, target, smooth=2.0), smp_loss)


def test_dice_loss_on_a_batch_without_landslides_still_penalises_false_positives():
    logits = torch.zeros(2, 1, 2, 2, requires_grad=True)  # sum p = 4
    target = torch.zeros(2, 1, 2, 2)
    loss = dice_loss(logits, target)
    assert loss.item() == pytest.approx(4 / 5)  # sum p / (sum p + 1)
    loss.backward()
    assert (logits.grad > 0).all()  # lowering every logit lowers the loss
    # smp's DiceLoss gives such a batch zero loss: landslide-free chips would teach
    # nothing
    assert (
        DiceLoss(mode="binary", from_logits=True, smooth=1.0)(logits, target).item()
        == 0.0
    )


def test_targets_from_masks_and_point_counts():
    labels = np.zeros((3, 4, 4), np.uint16)
    labels[0, 1, 2] = 3  # a pixel holding three landslide points
    labels[2] = 1
    np.testing.assert_array_equal(chip_targets(labels), [1.0, 0.0, 1.0])
    px = pixel_targets(labels)
    assert px.shape == (3, 1, 4, 4) and px.dtype == np.float32
    assert px.sum() == 1 + 16 and px[0, 0, 1, 2] == 1.0


# --------------------------------------------------------------------------- learning


def test_stage2_loss_falls_and_beats_base_rate_on_a_learnable_task(
    tmp_path, make_toy_chips
):
    x, y = make_toy_chips(16, seed=2)
    xv, yv = make_toy_chips(8, seed=3)
    xt, yt = make_toy_chips(8, seed=4)
    model, result = run(Segmenter, (x, y, xv, yv), tmp_path, "stage2", 5, batch_size=8)
    h = result.history
    assert h["train_loss"].iloc[-1] < 0.8 * h["train_loss"].iloc[0]
    prob = predict_proba(result.checkpoints, xt)
    assert prob.shape == yt.shape and prob.dtype == np.float32
    base_rate = (yt > 0).mean()
    assert average_precision_score(yt.ravel() > 0, prob.ravel()) > 5 * base_rate


def test_stage1_loss_falls_on_a_learnable_task(tmp_path, make_toy_chips):
    x, y = make_toy_chips(16, seed=2)
    xv, yv = make_toy_chips(8, seed=3)
    _, result = run(
        SiameseClassifier, (x, y, xv, yv), tmp_path, "stage1", 6, batch_size=8
    )
    h = result.history
    assert h["train_loss"].iloc[-2:].mean() < h["train_loss"].iloc[0] - 0.05
    assert set(h.columns) == {
        "epoch",
        "train_loss",
        "val_loss",
        "val_accuracy",
        "lr",
        "seconds",
    }
    assert h["val_accuracy"].between(0, 1).all()


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize(
    "task,cls", [("stage1", SiameseClassifier), ("stage2", Segmenter)]
)
def test_resume_reproduces_an_uninterrupted_run(tmp_path, toy_data, task, cls):
    full, r_full = run(cls, toy_data, tmp_path / "full", task, 4)
    run(cls, toy_data, tmp_path / "cut", task, 2)  # "interrupted" after epoch 2
    # a fresh process would build a fresh model with other initial weights
    seed_everything(123)
    resumed = cls()
    r_res = fit(
        resumed,
        TrainingData(*toy_data),
        task=task,
        config=TrainConfig(max_epochs=4, batch_size=3, top_k=2),
        checkpoint_dir=tmp_path / "cut",
        progress=False,
    )
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    pd.testing.assert_frame_equal(
        r_full.history.drop(columns="seconds"), r_res.history.drop(columns="seconds")
    )
    assert [p.name for p in r_full.checkpoints] == [p.name for p in r_res.checkpoints]


def test_finished_run_is_returned_without_training(tmp_path, toy_data):
    model, first = run(Segmenter, toy_data, tmp_path, "stage2", 2)
    stamp = first.last.stat().st_mtime_ns
    seed_everything(7)
    again = Segmenter()
    second = fit(
        again,
        TrainingData(*toy_data),
        task="stage2",
        config=TrainConfig(max_epochs=2, batch_size=3, top_k=2),
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert first.last.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(first.history, second.history)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])


def test_resume_refuses_a_different_run(tmp_path, toy_data):
    run(Segmenter, toy_data, tmp_path, "stage2", 2)
    with pytest.raises(CheckpointError, match=r"differs in \['lr'\]"):
        run(Segmenter, toy_data, tmp_path, "stage2", 3, lr=1e-2)
    with pytest.raises(CheckpointError, match="model_config"):
        run(lambda: Segmenter(SiameseClassifier()), toy_data, tmp_path, "stage2", 3)
    x, y, xv, yv = toy_data
    with pytest.raises(CheckpointError, match="data"):
        run(Segmenter, (x[:6], y[:6], xv, yv), tmp_path, "stage2", 3)
    with pytest.raises(CheckpointError, match="already at epoch 2 > max_epochs=1"):
        run(Segmenter, toy_data, tmp_path, "stage2", 1)
    _, fresh = run(Segmenter, toy_data, tmp_path, "stage2", 1, resume=False, top_k=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "top-epoch0001.pt"]
    assert fresh.epochs == 1


def test_resume_refuses_another_frozen_stage1(tmp_path, toy_data):
    torch.manual_seed(1)
    first = SiameseClassifier()
    torch.manual_seed(2)
    other = SiameseClassifier()
    run(lambda: Segmenter(first), toy_data, tmp_path, "stage2", 1)
    with pytest.raises(CheckpointError, match="frozen_stage1"):
        run(lambda: Segmenter(other), toy_data, tmp_path, "stage2", 2)


# --------------------------------------------------------------------------- early
# stopping, top-k


def test_top_k_and_early_stopping_follow_the_history(tmp_path, make_toy_chips):
    rng = np.random.default_rng(5)
    x, _ = make_toy_chips(12, seed=5)
    y = (rng.random((12, 32, 32)) > 0.995).astype(
        np.uint8
    )  # labels unrelated to the images
    xv, _ = make_toy_chips(6, seed=6)
    yv = (rng.random((6, 32, 32)) > 0.995).astype(np.uint8)
    patience, max_epochs, k = 2, 12, 3
    _, result = run(
        SiameseClassifier,
        (x, y, xv, yv),
        tmp_path,
        "stage1",
        max_epochs,
        patience=patience,
        top_k=k,
        lr=0.05,
        batch_size=4,
    )
    h = result.history
    losses = h["val_loss"].to_numpy()
    # epochs since the last strict improvement of the validation loss, per epoch
    since, best = [], np.inf
    for v in losses:
        since.append(0 if v < best else since[-1] + 1)
        best = min(best, v)
    since = np.array(since)
    if result.stopped_early:
        assert since[-1] == patience and (since[:-1] < patience).all()
    else:
        assert len(h) == max_epochs and (since < patience).all()
    assert list(h["epoch"]) == list(range(1, len(h) + 1))

    expected = h.sort_values(
        ["val_accuracy", "val_loss", "epoch"], ascending=[False, True, True]
    )
    expected_epochs = expected["epoch"].head(k).tolist()
    assert [
        int(p.name[len("top-epoch") : -3]) for p in result.checkpoints
    ] == expected_epochs
    on_disk = sorted(p.name for p in tmp_path.iterdir())
    assert on_disk == sorted(["last.pt"] + [p.name for p in result.checkpoints])
    assert (
        result.best == result.checkpoints[0] and result.best_epoch == expected_epochs[0]
    )


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_to_fit(tmp_path, toy_data):
    x, y, xv, yv = toy_data

    def go(model=None, task="stage2", **arrays):
        a = dict(train_images=x, train_labels=y, val_images=xv, val_labels=yv) | arrays
        fit(
            model or Segmenter(),
            TrainingData(**a),
            task=task,
            config=TrainConfig(max_epochs=1),
            checkpoint_dir=tmp_path,
            progress=False,
        )

    nan = x.copy()
    nan[0, 1, 3, 3] = np.nan
    with pytest.raises(ValueError, match="1 NaN/infinite values; standardise"):
        go(train_images=nan)
    with pytest.raises(ValueError, match="empty \\(0 chips\\)"):
        go(train_images=x[:0], train_labels=y[:0])
    with pytest.raises(ValueError, match="3 channels"):
        go(train_images=x[:, :3])
    with pytest.raises(ValueError, match="multiples of 2"):
        go(
            SiameseClassifier(),
            "stage1",
            train_images=x[..., :31],
            train_labels=y[..., :31],
        )
    with pytest.raises(ValueError, match="labels have shape"):
        go(train_labels=y[:, :16])
    with pytest.raises(ValueError, match="APRC is undefined"):
        go(val_labels=np.zeros_like(yv))
    with pytest.raises(TypeError, match="task='stage1' trains a SiameseClassifier"):
        go(Segmenter(), "stage1")
    with pytest.raises(ValueError, match="unknown task"):
        go(task="stage3")
    with pytest.raises(ValueError, match="max_epochs must be an integer >= 1"):
        TrainConfig(max_epochs=0)


def test_frozen_embeddings_are_computed_once_per_run_not_every_epoch(
    tmp_path, toy_data
):
    x, y, xv, yv = toy_data
    seed_everything(0)
    model = Segmenter(SiameseClassifier("reference"))
    calls = []
    real_embed = model.stage1.embed

    def counting_embed(batch):
        calls.append(len(batch))
        return real_embed(batch)

    model.stage1.embed = counting_embed
    fit(
        model,
        TrainingData(x, y, xv, yv),
        task="stage2",
        config=TrainConfig(max_epochs=3, batch_size=4, top_k=1),
        checkpoint_dir=tmp_path,
        progress=False,
    )
    # One pass over the 8 training and 4 validation chips, not one per epoch (3x as
    # many).
    assert sum(calls) == len(x) + len(xv)


def test_precomputed_embeddings_give_the_same_logits():
    seed_everything(0)
    model = Segmenter(SiameseClassifier("reference")).eval()
    x = torch.from_numpy(
        np.random.default_rng(0).normal(size=(3, 4, 32, 32)).astype(np.float32)
    )
    with torch.no_grad():
        direct = model(x)
        cached = model(x, model.frozen_embeddings(x))
    torch.testing.assert_close(cached, direct, rtol=0, atol=0)
    assert Segmenter().frozen_embeddings(x) is None


# --------------------------------------------------------------------------- tasks and
# settings


def test_tasks_are_looked_up_by_name_and_carry_what_differs(tmp_path):
    from sarslide.engine.checkpoints import load_checkpoint, save_checkpoint
    from sarslide.tasks import STAGE1, STAGE2, TASKS_BY_NAME, get_task

    assert get_task("stage1") is STAGE1 and get_task(STAGE2) is STAGE2
    assert (STAGE1.metric, STAGE2.metric) == ("val_accuracy", "val_aprc")
    assert {name: t.model_class for name, t in TASKS_BY_NAME.items()} == {
        "stage1": SiameseClassifier,
        "stage2": Segmenter,
    }
    assert get_task(STAGE2).name == "stage2"
    message = (
        "unknown task 'stage3'; choose 'stage1' (chip classification) or "
        "'stage2' (segmentation)"
    )
    with pytest.raises(ValueError) as err:
        get_task("stage3")
    assert str(err.value) == message
    with pytest.raises(
        TypeError, match="task='stage2' trains a Segmenter, got a SiameseClassifier"
    ):
        STAGE2.check_model(SiameseClassifier())
    # checkpoints look the stages up the same way
    path = save_checkpoint(Segmenter(), tmp_path / "s2.pt")
    with pytest.raises(ValueError) as err:
        load_checkpoint(path, "stage3")
    assert str(err.value) == message
    with pytest.raises(CheckpointError, match=r"stage1 model \(SiameseClassifier\)"):
        load_checkpoint(path, "stage1")


def test_stage2_validation_aprc_is_metrics_aprc_and_equals_scikit_learn_exactly():
    from sarslide.tasks import STAGE2

    rng = np.random.default_rng(0)
    # coarse logits: many tied probabilities, as a barely trained network gives
    logits = torch.from_numpy(
        np.round(rng.normal(size=(6, 1, 16, 16)), 1).astype(np.float32)
    )
    targets = pixel_targets((rng.random((6, 16, 16)) > 0.9).astype(np.uint8))
    expected = float(
        average_precision_score(targets.ravel(), torch.sigmoid(logits).numpy().ravel())
    )
    assert STAGE2.validation_metric(logits, targets) == expected  # bit for bit
    # no landslide pixel: scikit-learn gave 0.0 with a warning, and so does this
    with pytest.warns(UserWarning, match="no landslide pixel"):
        assert STAGE2.validation_metric(logits, np.zeros_like(targets)) == 0.0


def test_train_config_from_profile_is_the_only_way_to_set_fit(tmp_path, toy_data):
    import inspect
    from dataclasses import replace

    from sarslide.profiles import get_profile

    profile = get_profile("demo").with_overrides(
        stage1_max_epochs=7, stage2_max_epochs=3
    )
    one, two = (
        TrainConfig.from_profile(profile, "stage1"),
        TrainConfig.from_profile(get_profile("demo"), "stage2"),
    )
    assert (
        one.max_epochs == 7 and two.max_epochs == get_profile("demo").stage2_max_epochs
    )
    assert (one.patience, one.batch_size, one.lr, one.top_k, one.precision) == (
        profile.patience,
        profile.batch_size,
        profile.learning_rate,
        profile.top_k,
        profile.precision,
    )
    with pytest.raises(ValueError, match="top_k must be an integer >= 1, got 0"):
        replace(one, top_k=0)
    # the settings travel as one TrainConfig: no keyword alternative, no other type
    assert len(inspect.signature(fit).parameters) <= 10
    with pytest.raises(TypeError, match="config must be a TrainConfig, got dict"):
        fit(
            Segmenter(),
            TrainingData(*toy_data),
            task="stage2",
            config={"max_epochs": 2, "lr": 0.1},
            checkpoint_dir=tmp_path,
        )
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_fit_on_a_finished_run_in_a_read_only_folder(tmp_path, toy_data):
    """A finished run on a read-only mount (a shared drive, a course's data folder) is
    read without writing; training further there is refused by name. Root ignores file
    modes, so the folder is a read-only bind mount; skipped where mounting is
    refused."""
    import subprocess

    x, y, xv, yv = toy_data
    folder = tmp_path / "run"
    data = TrainingData(x, y, xv, yv)
    first = fit(
        SiameseClassifier(),
        data,
        task="stage1",
        config=TrainConfig(max_epochs=1),
        checkpoint_dir=folder,
        progress=False,
    )
    view = tmp_path / "view"
    view.mkdir()
    if subprocess.run(
        ["mount", "--bind", str(folder), str(view)], capture_output=True
    ).returncode:
        pytest.skip("bind mounts are not allowed here")
    try:
        remount = ["mount", "-o", "remount,ro,bind", str(view)]
        if subprocess.run(remount, capture_output=True).returncode:
            pytest.skip("read-only remounts are not allowed here")
        with pytest.raises(OSError):
            (view / "probe").write_text("x")  # the mount really is read-only
        again = fit(
            SiameseClassifier(),
            data,
            task="stage1",
            config=TrainConfig(max_epochs=1),
            checkpoint_dir=view,
            progress=False,
        )
        assert [p.name for p in again.checkpoints] == [
            p.name for p in first.checkpoints
        ]
        with pytest.raises(PermissionError, match="cannot write checkpoints"):
            fit(
                SiameseClassifier(),
                data,
                task="stage1",
                config=TrainConfig(max_epochs=2),
                checkpoint_dir=view,
                progress=False,
            )
    finally:
        subprocess.run(["umount", "--lazy", str(view)], capture_output=True)


# ----------------------------------------------------------- one stage-2 run from chips


def _toy_chipset():
    """16 linear toy chips (8 stage-2 training, 4 validation, 4 test) with their
    statistics."""
    from sarslide.chips import ChipSet
    from sarslide.transforms import compute_stats

    x, y = toy_chips(16, seed=7)
    linear = (10.0 ** (0.2 * x - 1.0)).astype(np.float32)
    meta = pd.DataFrame(
        {"split": ["stage2_train"] * 8 + ["validation"] * 4 + ["test"] * 4}
    )
    return ChipSet(linear, y, meta, stats=compute_stats(linear).to_dict())


def test_training_data_from_a_chipset_standardises_the_chosen_chips():
    from sarslide.transforms import standardize

    chips = _toy_chipset()
    data = TrainingData.from_chipset(chips, "stage2_train", train_indices=[5, 0, 3])
    pool, val = chips.split("stage2_train"), chips.split("validation")
    np.testing.assert_array_equal(
        data.train_images, standardize(pool.images[[5, 0, 3]], chips.stats)
    )
    np.testing.assert_array_equal(data.train_labels, pool.labels[[5, 0, 3]])
    np.testing.assert_array_equal(data.val_images, standardize(val.images, chips.stats))
    np.testing.assert_array_equal(data.val_labels, val.labels)
    assert data.stats == chips.stats
    with pytest.raises(ValueError, match="no standardisation statistics"):
        TrainingData.from_chipset(
            type(chips)(chips.images, chips.labels, chips.meta), "stage2_train"
        )


def test_fit_segmenter_is_the_seeded_few_shot_run_written_out(tmp_path):
    from sarslide.engine.embeddings import cached_embeddings
    from sarslide.profiles import get_profile
    from sarslide.train import fit_segmenter
    from sarslide.transforms import standardize

    chips = _toy_chipset()
    profile = get_profile("demo").with_overrides(
        stage2_max_epochs=2, stage2_width=16, batch_size=2
    )
    seed_everything(1)
    stage1 = SiameseClassifier().eval()
    embeddings = {
        split: cached_embeddings(
            stage1, standardize(chips.split(split).images, chips.stats), None
        )
        for split in ("stage2_train", "validation")
    }
    subset = [5, 0, 3, 6]
    for arm, emb in ((stage1, embeddings), (None, None)):
        by_call = fit_segmenter(
            chips,
            subset,
            profile=profile,
            stage1=arm,
            embeddings=emb,
            seed=3,
            checkpoint_dir=tmp_path / f"call-{arm is None}",
            progress=False,
        )
        # the same run written out: seed, build, fit on the subset with its embeddings
        seed_everything(3)
        model = Segmenter.from_profile(profile, arm)
        data = TrainingData.from_chipset(
            chips,
            "stage2_train",
            train_indices=subset,
            train_embeddings=None
            if emb is None
            else emb["stage2_train"][torch.as_tensor(subset)],
            val_embeddings=None if emb is None else emb["validation"],
        )
        by_hand = fit(
            model,
            data,
            task="stage2",
            config=TrainConfig.from_profile(profile, "stage2"),
            seed=3,
            checkpoint_dir=tmp_path / f"hand-{arm is None}",
            progress=False,
        )
        pd.testing.assert_frame_equal(
            by_call.history.drop(columns="seconds"),
            by_hand.history.drop(columns="seconds"),
        )
        a, b = by_call.best_model().state_dict(), by_hand.best_model().state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert by_call.best_info()["model_config"] == model.config_dict()
