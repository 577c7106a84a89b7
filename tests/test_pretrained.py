"""The cached stage-1 run of an event (get-or-train), and the two-stage model built on
it.

On demo-profile Hokkaido chips.  References used: scikit-learn's average precision
against the pixel base rate, file modification times (a cached run is not trained
again), and the run's own saved statistics and epoch budget.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from sklearn.metrics import average_precision_score

from sarslide.engine.checkpoints import checkpoint_info, load_checkpoint
from sarslide.experiment import Experiment
from sarslide.models import Segmenter, SiameseClassifier
from sarslide.predict import predict_proba
from sarslide.pretrained import pretrained_stage1, train_stage1
from sarslide.train import TrainConfig, TrainingData, fit, seed_everything

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def demo_chips(tmp_path_factory):
    """Demo-profile Hokkaido chips (synthetic 512x512 scene, 32x32 chips, pinned here so
    a later change of the demo profile does not change this test), short stage-1
    budget."""
    from sarslide.datasets import prepare_event
    from sarslide.profiles import get_profile

    profile = get_profile("demo").with_overrides(
        synthetic_shape=(512, 512),
        chip_size=32,
        stage1_max_epochs=2,
        top_k=2,
        batch_size=8,
        split_scheme="text",
        few_shot_draw="balanced",
    )
    exp = Experiment.create("hokkaido", profile, tmp_path_factory.mktemp("cache"))
    return exp, prepare_event(exp)


def test_demo_segmenter_beats_the_pixel_base_rate(tmp_path, demo_chips):
    """The two-stage model (segmenter on frozen stage-1 embeddings), trained on the demo
    stage-2 chips, ranks the pixels of the held-back test chips clearly better than
    chance.

    An uninformative score has an APRC equal to the share of landslide pixels (the base
    rate, about 0.04-0.08 here; random scores stay within about 0.005 of it on these
    ~16k pixels), so 2x the base rate is far outside chance. Over seeds 0-3 this setup
    gave 4.1x-9.1x. (The segmenter without embeddings gave 1.0x-6.4x on the same chips:
    too fragile for a test, and the reason the chapters show both.)
    """
    from sarslide.transforms import standardize

    exp, chips = demo_chips
    test = chips.split("test")
    stage1 = pretrained_stage1(exp, progress=False)
    seed_everything(0)
    model = Segmenter(stage1)
    result = fit(
        model,
        TrainingData.from_chipset(chips, "stage2_train"),
        task="stage2",
        config=TrainConfig(max_epochs=6, batch_size=8, top_k=3),
        checkpoint_dir=tmp_path,
        progress=False,
    )
    prob = predict_proba(result.checkpoints, standardize(test.images, chips.stats))
    truth = test.labels.ravel() > 0
    base_rate = truth.mean()
    assert 0 < base_rate < 0.2
    assert average_precision_score(truth, prob.ravel()) > 2.0 * base_rate
    assert load_checkpoint(result.best).config_dict()["stage1"] == stage1.config_dict()


def test_pretrained_stage1_trains_once_then_reuses(demo_chips):
    exp, chips = demo_chips
    profile = exp.profile
    model = pretrained_stage1(exp, progress=False)
    assert (
        isinstance(model, SiameseClassifier)
        and model.architecture == profile.stage1_config
    )
    result = train_stage1(exp, progress=False)
    stamp = result.last.stat().st_mtime_ns
    again = pretrained_stage1(exp, progress=False)
    assert result.last.stat().st_mtime_ns == stamp  # not trained again
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    assert checkpoint_info(result.best)["stats"] == chips.stats
    assert result.epochs == profile.stage1_max_epochs


def test_a_finished_stage1_run_is_fetched_without_chips_or_training(
    demo_chips, monkeypatch
):
    """The fast path of pretrained_stage1 gives the model and global RNG state that
    train_stage1 (prepare the chips, build a network, go through fit) gives."""
    import random

    import numpy as np

    from sarslide import pretrained

    exp, _ = demo_chips
    pretrained_stage1(exp, progress=False)  # trained once
    slow = load_checkpoint(train_stage1(exp, progress=False).best)
    rng_slow = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.random())

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run must not go through train_stage1")

    monkeypatch.setattr(pretrained, "train_stage1", refuse)
    torch.manual_seed(
        99
    )  # the caller's RNG state does not matter: it is reset as before
    fast = pretrained_stage1(exp, progress=False)
    assert torch.equal(torch.get_rng_state(), rng_slow[0])
    assert (
        np.array_equal(np.random.get_state()[1], rng_slow[1])
        and random.random() == rng_slow[2]
    )
    assert not fast.training and type(fast) is SiameseClassifier
    for k, v in slow.state_dict().items():
        assert torch.equal(v, fast.state_dict()[k]), k


def test_stage1_trains_keys_and_records_the_profiles_precision(demo_chips):
    """One rule: the precision that trains the stage-1 model is the one its folder is
    keyed on and its checkpoints record (it used to train under "auto" whatever the
    profile said)."""
    from sarslide.engine.precision import resolve_precision
    from sarslide.pretrained import stage1_checkpoint_dir

    exp, _ = demo_chips
    on_cpu = replace(exp, device="cpu")
    auto = resolve_precision("cpu", "auto").name
    other = (
        "fp32" if auto == "bf16" else "bf16"
    )  # a precision "auto" does not give here
    forced = on_cpu.with_overrides(precision=other)
    result = train_stage1(forced, progress=False)
    for path in (result.best, result.last):
        info = checkpoint_info(path)
        assert info["settings"]["precision"] == other, path.name
        assert info["runtime"]["precision"] == other, path.name
    assert result.checkpoint_dir == stage1_checkpoint_dir(forced)
    usual = train_stage1(on_cpu, progress=False)
    assert checkpoint_info(usual.best)["settings"]["precision"] == auto
    assert usual.checkpoint_dir != result.checkpoint_dir  # two precisions, two folders
    # the forced run is found again as finished (fetched, not trained again)
    stamp = result.last.stat().st_mtime_ns
    pretrained_stage1(forced, progress=False)
    assert result.last.stat().st_mtime_ns == stamp


def test_stage1_key_and_settings_follow_the_device_that_trains(monkeypatch, tmp_path):
    """On a GPU the key and the training settings carry the precision "auto" resolves to
    there (capability mocked: no GPU needed): fp16 on a T4, bf16 on an A100, and the
    CPU's choice for device="cpu" on the same machine."""
    from sarslide.engine import precision as engine_precision
    from sarslide.pretrained import (
        stage1_checkpoint_dir,
        stage1_precision,
        stage1_train_config,
    )
    from sarslide.profiles import get_profile

    monkeypatch.setattr(
        engine_precision, "_ANNOUNCED", {("cuda", "fp16"), ("cuda", "bf16")}
    )
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda *a, **k: True
    )  # emulated
    demo = get_profile("demo")
    folders = {}
    for capability, expected in (((7, 5), "fp16"), ((8, 0), "bf16")):
        monkeypatch.setattr(
            torch.cuda, "get_device_capability", lambda device=None, c=capability: c
        )
        assert stage1_precision(demo, "cuda") == expected
        assert stage1_train_config(demo, "cuda").precision == expected
        on_gpu = Experiment.create("hokkaido", demo, tmp_path, device="cuda")
        folder = stage1_checkpoint_dir(on_gpu)
        explicit = on_gpu.with_overrides(precision=expected)
        assert folder == stage1_checkpoint_dir(explicit)
        folders[expected] = folder
    cpu = stage1_checkpoint_dir(Experiment.create("hokkaido", demo, tmp_path, "cpu"))
    assert len({folders["fp16"], folders["bf16"]}) == 2 and cpu != folders["fp16"]
    assert (
        stage1_train_config(demo, "cpu").precision
        == engine_precision.resolve_precision("cpu").name
    )
