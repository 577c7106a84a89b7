"""Frozen stage-1 embeddings computed once per event and cached on disk.

References used: the segmenter's own forward pass (which embeds the chips itself) for
the logits; a counting wrapper around the module's compute function for "once per
event"; the stage-1 network's state dict for the cache key.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sarslide.engine.embeddings as embeddings
from sarslide.engine.embeddings import cached_embeddings, embeddings_path
from sarslide.engine.onednn import cpu_has_native_bf16
from sarslide.engine.precision import resolve_precision
from sarslide.models import Segmenter, SiameseClassifier
from sarslide.train import TrainConfig, TrainingData, fit, seed_everything

torch.set_num_threads(1)


@pytest.fixture()
def stage1():
    seed_everything(0)
    model = SiameseClassifier("reference")
    # non-trivial batch-norm statistics, so eval mode differs from training mode
    model.train()
    with torch.no_grad():
        model.embed(torch.randn(4, 4, 32, 32) * 2 + 1)
    return model.eval()


@pytest.fixture()
def event(make_toy_chips):
    return make_toy_chips(12, seed=3)


def _count_computations(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = embeddings._compute

    def counting(stage1, images, *args, **kwargs):
        calls.append(len(images))
        return real(stage1, images, *args, **kwargs)

    monkeypatch.setattr(embeddings, "_compute", counting)
    return calls


def test_embeddings_are_computed_once_per_event_across_runs(
    tmp_path, monkeypatch, stage1, event
):
    x, y = event
    calls = _count_computations(monkeypatch)
    # fit must not embed whole splits itself when it is given the embeddings
    monkeypatch.setattr(
        "sarslide.train.segmenter_embeddings", lambda *a, **k: pytest.fail("recomputed")
    )
    train_sets = [
        np.array([0, 1]),
        np.array([2, 3, 4, 5]),
        np.array([0, 2, 4, 6, 7, 1]),
    ]
    val = np.array([8, 9, 10, 11])
    for run, idx in enumerate(train_sets):
        emb = cached_embeddings(stage1, x, tmp_path / "cache", precision="fp32")
        seed_everything(run)
        data = TrainingData(
            x[idx],
            y[idx],
            x[val],
            y[val],
            train_embeddings=emb[torch.as_tensor(idx)],
            val_embeddings=emb[torch.as_tensor(val)],
        )
        fit(
            Segmenter(stage1),
            data,
            task="stage2",
            config=TrainConfig(max_epochs=1, batch_size=4, top_k=1, precision="fp32"),
            checkpoint_dir=tmp_path / f"run{run}",
            progress=False,
        )
    assert calls == [len(x)]  # one computation of all 12 chips for three runs
    assert len(list((tmp_path / "cache").glob("embeddings-*-float32.npy"))) == 1


def test_cached_fp32_embeddings_give_bit_identical_logits(tmp_path, stage1, event):
    x, _ = event
    emb = cached_embeddings(stage1, x, tmp_path, precision="fp32", batch_size=5)
    again = cached_embeddings(
        stage1, x, tmp_path, precision="fp32"
    )  # read from the file
    assert emb.dtype == torch.float32 and emb.shape == (12, 64, 32, 32)
    torch.testing.assert_close(again, emb, rtol=0, atol=0)
    model = Segmenter(stage1).eval()
    xt = torch.from_numpy(x)
    with torch.no_grad():
        direct = model(xt)  # the segmenter embeds the chips itself
        cached = model(xt, again)
    torch.testing.assert_close(cached, direct, rtol=0, atol=0)


def test_cached_bf16_embeddings_are_what_the_fast_path_computes(
    tmp_path, stage1, event
):
    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bfloat16 (AVX-512 BF16 / AMX / Arm BF16)")
    x, _ = event
    prec = resolve_precision("cpu", "bf16")
    emb = cached_embeddings(stage1, x, tmp_path, precision=prec)
    path = embeddings_path(tmp_path, stage1, x, prec)
    assert path.name.endswith("-bfloat16.npy") and emb.dtype == torch.bfloat16
    assert (
        path.stat().st_size < 12 * 64 * 32 * 32 * 4 * 0.51
    )  # half of float32 (+ header)
    model = Segmenter(stage1).eval()
    xt = torch.from_numpy(x)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        direct = torch.sigmoid(model(xt).float())
        cached = torch.sigmoid(model(xt, emb).float())
    assert float((cached - direct).abs().max()) <= 0.02
    # and the bf16 embeddings are within bf16 rounding (plus accumulated error) of fp32
    # ones
    ref = cached_embeddings(stage1, x, None, precision="fp32")
    rel = float((emb.float() - ref).abs().mean() / ref.abs().mean())
    assert rel < 0.02


def test_cache_key_follows_weights_chips_and_precision(
    tmp_path, stage1, event, monkeypatch
):
    x, _ = event
    calls = _count_computations(monkeypatch)
    fp32 = resolve_precision("cpu", "fp32")
    first = embeddings_path(tmp_path, stage1, x, fp32)
    cached_embeddings(stage1, x, tmp_path, precision="fp32")
    other_chips = x.copy()
    other_chips[0, 0, 0, 0] += 1.0
    assert embeddings_path(tmp_path, stage1, other_chips, fp32) != first
    retrained = SiameseClassifier("reference").eval()
    retrained.load_state_dict(stage1.state_dict())
    with torch.no_grad():
        retrained.unet.encoder.bn1.running_mean += (
            0.1  # only a batch-norm statistic moves
        )
    assert embeddings_path(tmp_path, retrained, x, fp32) != first
    if cpu_has_native_bf16():
        assert (
            embeddings_path(tmp_path, stage1, x, resolve_precision("cpu", "bf16"))
            != first
        )
    cached_embeddings(retrained, x, tmp_path, precision="fp32")
    assert calls == [12, 12]
    # same weights in a fresh module: the same file, no computation
    clone = SiameseClassifier("reference").eval()
    clone.load_state_dict(stage1.state_dict())
    cached_embeddings(clone, x, tmp_path, precision="fp32")
    assert calls == [12, 12]


def test_corrupt_or_interrupted_cache_files_are_recomputed(
    tmp_path, stage1, event, monkeypatch
):
    x, _ = event
    fp32 = resolve_precision("cpu", "fp32")
    path = embeddings_path(tmp_path, stage1, x, fp32)
    path.write_bytes(b"not an npy file")
    emb = cached_embeddings(stage1, x, tmp_path, precision="fp32")
    assert emb.shape == (12, 64, 32, 32)
    np.testing.assert_array_equal(np.load(path), emb.numpy())

    # Ctrl-C in the middle of computing: nothing is left at the path, no temporary
    # either
    path.unlink()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(embeddings, "embed_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cached_embeddings(stage1, x, tmp_path, precision="fp32")
    assert list(tmp_path.iterdir()) == []
    assert not stage1.training


def test_fit_refuses_embeddings_of_other_chips_or_shapes(tmp_path, stage1, event):
    x, y = event
    emb = cached_embeddings(stage1, x, None, precision="fp32")
    train, val = np.arange(4), np.arange(8, 12)

    def go(train_emb, model=None):
        fit(
            model or Segmenter(stage1),
            TrainingData(
                x[train], y[train], x[val], y[val], train_embeddings=train_emb
            ),
            task="stage2",
            config=TrainConfig(max_epochs=1, precision="fp32"),
            checkpoint_dir=tmp_path,
            progress=False,
        )

    with pytest.raises(ValueError, match="do not belong to these chips"):
        go(emb[4:8])  # embeddings of other chips
    with pytest.raises(
        ValueError,
        match=r"have shape \(3, 64, 32, 32\) but the chips need \(4, 64, 32, 32\)",
    ):
        go(emb[:3])
    with pytest.raises(ValueError, match="without a stage-1 network"):
        go(emb[:4], Segmenter())
    bad = emb[:4].clone()
    bad[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        go(bad)
    go(emb[:4].numpy())  # a numpy array is fine too


def test_bad_inputs_are_named(tmp_path, stage1, event):
    x, _ = event
    with pytest.raises(TypeError, match="SiameseClassifier"):
        cached_embeddings(Segmenter(), x, tmp_path)
    with pytest.raises(ValueError, match="NaN"):
        bad = x.copy()
        bad[0, 0, 0, 0] = np.nan
        cached_embeddings(stage1, bad, tmp_path)
    with pytest.raises(ValueError, match="unknown precision"):
        cached_embeddings(stage1, x, tmp_path, precision="half")
