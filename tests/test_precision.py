"""The fast path (bf16 autocast + channels-last) gives float32's answers, and reruns
repeat.

References used: the same weights run in plain float32 (precision="fp32"); a float32
training run of the same task; scikit-learn's average precision; the device table of
:func:`sarslide.engine.precision.resolve_precision` written out by hand.  The bf16
assertions skip on a CPU without native bfloat16.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import toy_chips
from sklearn.metrics import average_precision_score

from sarslide import mapping, passes, synthetic
from sarslide.engine import onednn
from sarslide.engine import precision as engine_precision
from sarslide.engine.checkpoints import (
    CheckpointError,
    checkpoint_info,
    read_checkpoint,
    save_record,
)
from sarslide.engine.precision import Precision, resolve_precision
from sarslide.models import SameConv2d, Segmenter, SiameseClassifier
from sarslide.predict import predict_chip_proba, predict_proba
from sarslide.train import TrainConfig, TrainingData, fit, seed_everything
from sarslide.transforms import compute_stats

torch.set_num_threads(1)

needs_bf16 = pytest.mark.skipif(
    not onednn.cpu_has_native_bf16(),
    reason=(
        "this CPU has no native bfloat16 (AVX-512 BF16 / AMX / Arm BF16): 'auto' "
        "is fp32 here"
    ),
)
TOL = 0.02  # largest allowed difference of a probability between the fast path and fp32


# --------------------------------------------------------------------------- the device
# table


@pytest.mark.filterwarnings("ignore::sarslide.engine.precision.PrecisionChoiceWarning")
def test_resolve_precision_follows_the_device_table(monkeypatch):
    plain = resolve_precision("cpu", "fp32")
    assert (
        plain.name,
        plain.autocast_dtype,
        plain.channels_last,
        plain.grad_scaler,
    ) == ("fp32", None, False, False)
    monkeypatch.setattr(engine_precision, "cpu_has_native_bf16", lambda: True)
    fast = resolve_precision("cpu")
    assert (fast.name, fast.autocast_dtype, fast.channels_last, fast.grad_scaler) == (
        "bf16",
        torch.bfloat16,
        True,
        False,
    )
    assert fast.storage_dtype == torch.bfloat16 and plain.storage_dtype == torch.float32
    monkeypatch.setattr(engine_precision, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("cpu").name == "fp32"  # no native bf16: plain float32
    assert resolve_precision("cpu", "bf16").name == "bf16"  # asked for explicitly
    # CUDA, decided from the GPU's compute capability (no GPU needed to check the
    # decision; see the capability tests below)
    _fake_gpu(monkeypatch, (8, 0), "NVIDIA A100")
    ampere = resolve_precision("cuda")
    assert (
        ampere.name,
        ampere.grad_scaler,
        ampere.channels_last,
        ampere.cudnn_benchmark,
        ampere.tf32,
    ) == ("bf16", False, True, True, True)
    _fake_gpu(monkeypatch, (7, 5), "Tesla T4")
    t4 = resolve_precision("cuda")
    assert (t4.name, t4.autocast_dtype, t4.grad_scaler, t4.channels_last) == (
        "fp16",
        torch.float16,
        True,
        True,
    )
    cuda_plain = resolve_precision("cuda", "fp32")
    assert (
        cuda_plain.autocast_dtype,
        cuda_plain.channels_last,
        cuda_plain.cudnn_benchmark,
        cuda_plain.tf32,
    ) == (None, False, False, False)
    with pytest.raises(
        ValueError,
        match=r"Tesla T4 \(compute capability 7\.5\) has no bfloat16 hardware",
    ):
        resolve_precision("cuda", "bf16")
    assert resolve_precision("cpu", plain) is plain


def _fake_gpu(monkeypatch, capability: tuple[int, int], name: str) -> None:
    """Make torch report a GPU of ``capability`` whose bfloat16 torch would emulate:
    ``torch.cuda.is_bf16_supported()`` is true whatever the capability (as on a real
    T4), so a choice made from it would be wrong below 8.0.  Forget earlier
    announcements."""
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda device=None: capability
    )
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(engine_precision, "_ANNOUNCED", set())


# The rule written out by hand from the GPUs' data sheets: bfloat16 tensor cores from
# Ampere (8.0), float16 tensor cores on Volta/Turing (7.x), none before.
GPU_TABLE = [
    # capability, GPU, (name, autocast dtype, grad scaler, channels-last, cudnn
    # autotune, tf32)
    ((7, 5), "Tesla T4", ("fp16", torch.float16, True, True, True, False)),
    ((7, 0), "Tesla V100", ("fp16", torch.float16, True, True, True, False)),
    ((8, 0), "NVIDIA A100", ("bf16", torch.bfloat16, False, True, True, True)),
    ((8, 9), "NVIDIA L4", ("bf16", torch.bfloat16, False, True, True, True)),
    ((9, 0), "NVIDIA H100", ("bf16", torch.bfloat16, False, True, True, True)),
    ((6, 1), "GeForce GTX 1080", ("fp32", None, False, False, False, False)),
]


@pytest.mark.parametrize(
    "capability,gpu,expected", GPU_TABLE, ids=[g for _, g, _ in GPU_TABLE]
)
def test_auto_on_cuda_follows_the_compute_capability_not_emulated_bf16(
    monkeypatch, capability, gpu, expected
):
    _fake_gpu(monkeypatch, capability, gpu)
    with pytest.warns(engine_precision.PrecisionChoiceWarning) as record:
        prec = resolve_precision("cuda", "auto")
    got = (
        prec.name,
        prec.autocast_dtype,
        prec.grad_scaler,
        prec.channels_last,
        prec.cudnn_benchmark,
        prec.tf32,
    )
    assert got == expected
    # the announcement says what was chosen and why, naming the GPU and its capability
    (message,) = [
        str(w.message)
        for w in record
        if w.category is engine_precision.PrecisionChoiceWarning
    ]
    assert f"{gpu} (compute capability {capability[0]}.{capability[1]})" in message
    assert f": {expected[0]}, because" in message
    assert engine_precision.cuda_auto_precision("cuda")[0] == expected[0]


def test_the_gpu_choice_is_announced_once_per_process(monkeypatch, recwarn):
    _fake_gpu(monkeypatch, (7, 5), "Tesla T4")
    for _ in range(3):
        assert resolve_precision("cuda").name == "fp16"
    assert (
        resolve_precision("cuda", "fp16").name == "fp16"
    )  # explicit: nothing to announce
    announced = [
        w for w in recwarn if w.category is engine_precision.PrecisionChoiceWarning
    ]
    assert len(announced) == 1
    assert "float16 autocast with gradient scaling" in str(announced[0].message)


def test_explicit_bf16_needs_capability_8_even_when_torch_emulates_it(monkeypatch):
    _fake_gpu(monkeypatch, (7, 5), "Tesla T4")
    with pytest.raises(
        ValueError,
        match=(
            r"Tesla T4 \(compute capability 7\.5\) has no bfloat16 hardware.*'fp16' "
            r"or 'auto'"
        ),
    ):
        resolve_precision("cuda", "bf16")
    _fake_gpu(monkeypatch, (8, 6), "NVIDIA A10")
    assert resolve_precision("cuda", "bf16").name == "bf16"
    _fake_gpu(monkeypatch, (6, 1), "GeForce GTX 1080")
    assert resolve_precision(
        "cuda", "fp16"
    ).grad_scaler  # asked for explicitly: as asked


def test_bad_precisions_are_named():
    with pytest.raises(
        ValueError,
        match=(
            r"unknown precision 'half'; choose one of \['auto', 'fp32', 'bf16', "
            r"'fp16'\]"
        ),
    ):
        resolve_precision("cpu", "half")
    with pytest.raises(ValueError, match="'fp16' needs a CUDA GPU"):
        resolve_precision("cpu", "fp16")
    cuda = Precision("fp16", "cuda", torch.float16, True, True)
    with pytest.raises(ValueError, match="resolved for device type 'cuda'"):
        resolve_precision("cpu", cuda)


# --------------------------------------------------------------------------- same
# weights


def _spread_logits(
    layer: torch.nn.Conv2d, logits: torch.Tensor, std: float = 2.5
) -> None:
    """Rescale the last (linear) layer so the float32 logits have mean 0 and std
    ``std``: probabilities spread over (0, 1), where a bf16 error would show."""
    a = std / float(logits.std())
    with torch.no_grad():
        layer.weight.mul_(a)
        layer.bias.mul_(a).sub_(a * float(logits.mean()))


@pytest.fixture(scope="module")
def trained():
    """Float32 weights as a real run has them, and chips.

    ``baseline``: a segmenter trained for 20 epochs on toy chips (it learns them).
    ``stage1``: fixed random weights with batch-norm statistics of the chips, its head
    rescaled so chip probabilities spread over (0, 1).  ``two_stage``: a segmenter on
    that stage-1 network holding the trained baseline's weights plus freshly initialised
    weights for the 64 embedding channels (on toy chips it does not train well by
    itself), so the embeddings move its output.  Random untrained segmenters are no
    test: their logits are a large bias plus a tiny variation, and rescaling that
    variation rescales the rounding of the bias with it.
    """
    x, y = toy_chips(16, seed=2)
    xv, yv = toy_chips(8, seed=3)
    xt = torch.from_numpy(xv)
    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as tmp:
        seed_everything(0)
        baseline = Segmenter()
        fit(
            baseline,
            TrainingData(x, y, xv, yv),
            task="stage2",
            config=TrainConfig(
                max_epochs=20, patience=20, batch_size=8, precision="fp32"
            ),
            checkpoint_dir=tmp,
            progress=False,
        )
        stage1 = SiameseClassifier("reference")
        stage1.train()
        with torch.no_grad():
            stage1(torch.from_numpy(x))  # batch-norm running statistics of the chips
        stage1.eval()
        with torch.no_grad():
            pre_bn = stage1.head[0](stage1.embed(xt)).mean(dim=(1, 2, 3))
            a = 1.0 / float(pre_bn.std())
            stage1.head[0].weight.mul_(a)
            stage1.head[0].bias.mul_(a).sub_(a * float(pre_bn.mean()))
        two_stage = Segmenter(stage1)
        with torch.no_grad():
            two_stage.features.load_state_dict(baseline.features.state_dict())
            two_stage.head[0].weight[:, :64] = baseline.head[0].weight
            two_stage.head[0].bias.copy_(baseline.head[0].bias)
            two_stage.head[2].load_state_dict(baseline.head[2].state_dict())
    return {
        "baseline": baseline.eval(),
        "stage1": stage1,
        "two_stage": two_stage.eval(),
        "chips": xv,
    }


@needs_bf16
@pytest.mark.parametrize("name", ["baseline", "two_stage"])
def test_segmenter_fast_path_probabilities_within_tolerance_of_fp32(trained, name):
    model, x = trained[name], trained["chips"]
    ref = predict_proba(model, x, precision="fp32")
    fast = predict_proba(model, x)  # "auto" = bf16 + channels-last here
    assert resolve_precision("cpu").name == "bf16"
    assert (
        ref.std() > 0.05
    )  # the probabilities spread out, so the tolerance means something
    diff = np.abs(fast - ref)
    assert diff.max() <= TOL, f"max |fast - fp32| = {diff.max():.4f}"
    assert diff.max() > 0  # the fast path really ran in another arithmetic
    # the caller's model is left in the default layout and mode
    assert all(p.is_contiguous() for p in model.parameters()) and not model.training


@needs_bf16
def test_siamese_fast_path_probabilities_within_tolerance_of_fp32(trained):
    model, x = trained["stage1"], trained["chips"]
    ref = predict_chip_proba(model, x, precision="fp32")
    fast = predict_chip_proba(model, x)
    assert np.abs(fast - ref).max() <= TOL
    assert not np.array_equal(fast, ref)


@needs_bf16
def test_whole_mapped_scene_within_tolerance_of_fp32(trained):
    pair = passes.pass_pair(synthetic.make_cube((160, 160), seed=1)).drop_vars(
        "landslides"
    )
    linear = np.stack(
        [pair[c].values for c in ("pre_vv", "pre_vh", "post_vv", "post_vh")]
    )[None]
    stats = compute_stats(np.nan_to_num(linear, nan=float(np.nanmedian(linear))))
    model = trained["two_stage"]
    kw = dict(window=64, overlap=16, batch_size=4, progress=False, device="cpu")
    ref = mapping.predict_probability(pair, model, stats, precision="fp32", **kw).values
    fast = mapping.predict_probability(pair, model, stats, **kw).values
    assert np.array_equal(np.isnan(ref), np.isnan(fast))
    ok = np.isfinite(ref)
    assert ok.mean() > 0.9 and np.nanstd(ref) > 0.01
    assert np.abs(fast[ok] - ref[ok]).max() <= TOL
    assert all(p.is_contiguous() for p in model.parameters())  # mapping ran a copy


# --------------------------------------------------------------------------- training


def _train(tmp, data, precision, name="run", epochs=8, build=Segmenter):
    seed_everything(0)
    model = build()
    result = fit(
        model,
        TrainingData(*data),
        task="stage2",
        config=TrainConfig(
            max_epochs=epochs, batch_size=8, top_k=1, precision=precision
        ),
        checkpoint_dir=tmp / name,
        progress=False,
    )
    return model, result


@needs_bf16
def test_fast_training_reaches_the_fp32_validation_aprc(tmp_path, make_toy_chips):
    # Validation APRC swings from epoch to epoch on 8 toy chips (0.48 -> 0.87 -> 0.52 in
    # float32), so compare what the protocol keeps: the best checkpoint's, rescored
    # here.
    x, y = make_toy_chips(16, seed=2)
    xv, yv = make_toy_chips(8, seed=3)
    data = (x, y, xv, yv)
    base_rate = (yv > 0).mean()
    scores = {}
    for precision in ("fp32", "bf16"):
        _, result = _train(tmp_path, data, precision, name=precision)
        best = result.best_model()
        prob = predict_proba(
            best, xv, precision="fp32"
        )  # judge both with the same arithmetic
        scores[precision] = average_precision_score(yv.ravel() > 0, prob.ravel())
        assert scores[precision] > 0.8 > 20 * base_rate  # both learned the task
        assert result.history["val_aprc"].max() == pytest.approx(
            scores[precision], abs=0.02
        )
    assert abs(scores["bf16"] - scores["fp32"]) <= 0.05, scores


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=needs_bf16)])
def test_reruns_are_bit_identical_within_one_precision(tmp_path, toy_data, precision):
    first, r1 = _train(
        tmp_path,
        toy_data,
        precision,
        name="a",
        epochs=2,
        build=lambda: Segmenter(SiameseClassifier()),
    )
    second, r2 = _train(
        tmp_path,
        toy_data,
        precision,
        name="b",
        epochs=2,
        build=lambda: Segmenter(SiameseClassifier()),
    )
    for k, v in first.state_dict().items():
        assert torch.equal(v, second.state_dict()[k]), k
    pd.testing.assert_frame_equal(
        r1.history.drop(columns="seconds"), r2.history.drop(columns="seconds")
    )
    x = toy_data[2]
    np.testing.assert_array_equal(
        predict_proba(first, x, precision=precision),
        predict_proba(second, x, precision=precision),
    )


def test_checkpoints_record_precision_and_threads_and_stay_fp32(tmp_path, toy_data):
    prec = resolve_precision("cpu")
    model, result = _train(tmp_path, toy_data, "auto", epochs=1)
    info = checkpoint_info(result.best)
    assert info["settings"]["precision"] == prec.name
    assert info["runtime"]["precision"] == prec.name
    assert info["runtime"]["threads"] == torch.get_num_threads()
    assert (
        info["runtime"]["channels_last"] == prec.channels_last
        and info["runtime"]["device"] == "cpu"
    )
    state = read_checkpoint(result.best)["state_dict"]
    assert all(
        t.dtype == torch.float32 for t in state.values() if t.is_floating_point()
    )
    assert all(
        p.is_contiguous() and p.dtype == torch.float32 for p in model.parameters()
    )


def test_resume_needs_the_same_precision_and_accepts_older_fp32_runs(
    tmp_path, toy_data
):
    _train(tmp_path, toy_data, "fp32", epochs=1)
    with pytest.raises(CheckpointError, match=r"differs in \['precision'\]"):
        _train(tmp_path, toy_data, "bf16", epochs=2)
    # a run written before precision was a setting (CPU: plain float32) resumes as fp32
    last = tmp_path / "run" / "last.pt"
    record = read_checkpoint(last)
    del record["settings"]["precision"]
    save_record(record, last)
    _, resumed = _train(tmp_path, toy_data, "fp32", epochs=2)
    assert resumed.epochs == 2


# --------------------------------------------------------------------------- oneDNN
# guard


@needs_bf16
@pytest.mark.parametrize("c_in", [4, 8, 12, 16])
def test_same_conv_under_bf16_autocast_matches_fp32(c_in):
    # oneDNN's AMX kernel in torch 2.14 returns wrong values for 8 or 12 input channels
    # with an 8x8 kernel (errors as large as the output); SameConv2d convolves through
    # onednn.conv2d, which pads channels to 16.
    torch.manual_seed(0)
    conv = SameConv2d(c_in, 16, 8).eval()
    x = torch.randn(2, c_in, 24, 24)
    with torch.no_grad():
        ref = conv(
            x.bfloat16().float()
        )  # the same inputs, rounded as autocast rounds them
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = conv(x.contiguous(memory_format=torch.channels_last)).float()
    assert float((got - ref).abs().max() / ref.abs().max()) < 0.02


def test_onednn_conv2d_pads_only_under_cpu_autocast():
    # padding channels with zeros adds nothing: outside autocast, and where no padding
    # is needed, the result is torch's own convolution bit for bit
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 8, 12, 12), torch.randn(4, 8, 3, 3), torch.randn(4)
    assert torch.equal(onednn.conv2d(x, w, b), torch.nn.functional.conv2d(x, w, b))
    x16, w16 = torch.randn(2, 16, 12, 12), torch.randn(4, 16, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = onednn.conv2d(x16, w16, b)
        theirs = torch.nn.functional.conv2d(x16, w16, b)
    assert ours.dtype == torch.bfloat16 and torch.equal(ours, theirs)


def test_auto_falls_back_to_fp32_when_bf16_disagrees(monkeypatch):
    monkeypatch.setattr(engine_precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(engine_precision, "cpu_bf16_is_correct", lambda: False)
    assert resolve_precision("cpu").name == "fp32"
    assert (
        resolve_precision("cpu", "bf16").name == "bf16"
    )  # asked for explicitly: as asked


# --------------------------------------------------------------------------- float16
# path


def _cpu_float16_training_support() -> str | None:
    """Why this torch cannot run the T4's training path on a CPU, or None if it can:
    float16 autocast of a convolution and ``torch.amp.GradScaler("cpu")``."""
    try:
        conv = torch.nn.Conv2d(4, 4, 3)
        with torch.autocast("cpu", dtype=torch.float16):
            out = conv(torch.randn(2, 4, 8, 8))
        if out.dtype != torch.float16:
            return (
                f"CPU float16 autocast of a convolution gives {out.dtype} in torch "
                f"{torch.__version__}"
            )
        scaler = torch.amp.GradScaler("cpu")
        if not scaler.is_enabled():
            return (
                f"torch.amp.GradScaler('cpu') is disabled in torch {torch.__version__}"
            )
        loss = out.float().sum()
        opt = torch.optim.SGD(conv.parameters(), lr=0.1)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    except (RuntimeError, TypeError, AttributeError) as err:
        return (
            f"torch {torch.__version__} cannot train in float16 on a CPU "
            f"({type(err).__name__}: {err})"
        )
    return None


_NO_CPU_FP16 = _cpu_float16_training_support()
needs_cpu_fp16 = pytest.mark.skipif(
    _NO_CPU_FP16 is not None,
    reason=(
        "the float16 + GradScaler training path cannot run without a GPU here: "
        f"{_NO_CPU_FP16}"
    ),
)


def _t4_path_on_cpu() -> Precision:
    """What resolve_precision gives a T4 (float16 autocast, gradient scaling), built for
    the CPU: resolve_precision refuses 'fp16' off CUDA because it is slow there, but the
    arithmetic, the scaler and the checkpointing are the T4's.  The default layout, not
    the T4's channels-last: CPU float16 convolutions are slowest in channels-last (the
    layout is tested under bf16 above)."""
    cpu_fp16 = Precision(
        "fp16", "cpu", torch.float16, channels_last=False, grad_scaler=True
    )
    assert resolve_precision("cpu", cpu_fp16) is cpu_fp16
    return cpu_fp16


def _tiny_chips(n: int, seed: int, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Noise chips of 8x8 pixels (CPU float16 convolutions take ~0.5 s per step of four
    of them, 30x more at 32x32); every other chip has a 4x4 'landslide' that brightens
    the post pass."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4, size, size)).astype(np.float32)
    y = np.zeros((n, size, size), np.uint8)
    for i in range(0, n, 2):
        r, c = rng.integers(0, size - 4, 2)
        y[i, r : r + 4, c : c + 4] = 1
        x[i, 2:, r : r + 4, c : c + 4] += 2.0
    return x, y


def _conv_output_dtypes(model: torch.nn.Module) -> set:
    """Record the output dtype of every convolution forward (training and
    validation)."""
    seen = set()
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
    return seen


@needs_cpu_fp16
def test_float16_with_grad_scaler_trains_stage2(tmp_path):
    x, y = _tiny_chips(8, seed=2)
    xv, yv = _tiny_chips(4, seed=3)
    seed_everything(0)
    model = Segmenter()
    dtypes = _conv_output_dtypes(model)
    result = fit(
        model,
        TrainingData(x, y, xv, yv),
        task="stage2",
        config=TrainConfig(
            max_epochs=8, batch_size=4, top_k=1, precision=_t4_path_on_cpu()
        ),
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert dtypes == {torch.float16}  # every convolution ran in float16
    h = result.history
    assert np.isfinite(h["train_loss"]).all()
    assert (
        h["train_loss"].iloc[-2:].mean() < h["train_loss"].iloc[0] - 0.05
    )  # it learns
    base_rate = float((yv > 0).mean())
    assert h["val_aprc"].max() > 2 * base_rate  # far above an uninformative score
    record = read_checkpoint(result.last)
    assert record["settings"]["precision"] == "fp16"
    assert (
        record["runtime"]["grad_scaler"]
        and record["runtime"]["autocast_dtype"] == "float16"
    )
    # an enabled scaler was saved: its scale is a power of two (65536 halved on
    # overflow)
    scale = record["scaler"]["scale"]
    assert 0 < scale <= 65536.0 and float(np.log2(scale)).is_integer()
    state = read_checkpoint(result.best)["state_dict"]
    assert all(
        t.dtype == torch.float32 for t in state.values() if t.is_floating_point()
    )


@needs_cpu_fp16
def test_float16_with_grad_scaler_resumes_bit_identically(tmp_path):
    data = _tiny_chips(8, seed=0) + _tiny_chips(4, seed=1)

    def run(name, epochs, seed=0):
        seed_everything(seed)
        model = Segmenter()
        result = fit(
            model,
            TrainingData(*data),
            task="stage2",
            config=TrainConfig(
                max_epochs=epochs, batch_size=4, top_k=2, precision=_t4_path_on_cpu()
            ),
            checkpoint_dir=tmp_path / name,
            progress=False,
        )
        return model, result

    full, r_full = run("full", 3)
    run("cut", 1)  # "interrupted" after epoch 1
    resumed, r_res = run("cut", 3, seed=123)  # a fresh process: other initial weights
    assert r_res.epochs == 3
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    pd.testing.assert_frame_equal(
        r_full.history.drop(columns="seconds"), r_res.history.drop(columns="seconds")
    )
    assert [p.name for p in r_full.checkpoints] == [p.name for p in r_res.checkpoints]
    assert (
        read_checkpoint(r_full.last)["scaler"] == read_checkpoint(r_res.last)["scaler"]
    )
