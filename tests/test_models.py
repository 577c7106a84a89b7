"""Stage-1 and stage-2 networks: parameter counts against hand formulas, shapes, weight
sharing, frozen stage-1 weights, and clear errors for inputs the networks cannot
take."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

from sarslide.models import (
    SameConv2d,
    Segmenter,
    SiameseClassifier,
    build_model,
    count_parameters,
)

torch.set_num_threads(1)


def conv(k: int, c_in: int, c_out: int, bias: bool = True) -> int:
    """Parameters of a k x k convolution."""
    return k * k * c_in * c_out + (c_out if bias else 0)


def bn(c: int) -> int:
    """Learnable parameters of a batch norm (weight and bias)."""
    return 2 * c


# --------------------------------------------------------------------------- parameter
# counts


def test_reference_parameter_count_matches_hand_formula():
    # ResNet stem (7x7 stride 2, no bias) + BN; one decoder block (two 3x3 convs without
    # bias, each with BN); smp's 3x3 segmentation head to 32 channels; the 8x8 valid
    # conv head 64 -> 1 and its BN.
    unet = conv(7, 2, 64, bias=False) + bn(64)
    unet += conv(3, 64, 32, bias=False) + bn(32) + conv(3, 32, 32, bias=False) + bn(32)
    unet += conv(3, 32, 32)
    head = conv(8, 64, 1) + bn(1)
    model = SiameseClassifier("reference")
    assert count_parameters(model.head) == head
    assert count_parameters(model) == unet + head == 47_523


def test_reference_has_no_dead_weights():
    """Every parameter of the reference network receives a gradient (smp's unused
    ResNet stages are removed rather than carried along)."""
    model = SiameseClassifier("reference")
    model(torch.randn(2, 4, 16, 16)).sum().backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None]
    assert dead == []


def test_paper_encoder_is_resnet34_with_two_input_channels():
    reference = torchvision.models.resnet34(weights=None)
    expected = count_parameters(reference) - count_parameters(reference.fc)
    expected += conv(7, 2, 64, bias=False) - conv(7, 3, 64, bias=False)
    model = SiameseClassifier("paper")
    assert count_parameters(model.unet.encoder) == expected
    assert 21.0e6 < expected < 21.5e6
    # two fully connected layers: 64 -> 64 -> 1
    linears = [m for m in model.head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 64), (64, 1)]
    assert count_parameters(model.head) == (64 * 64 + 64) + (64 + 1)


def test_segmenter_parameter_counts():
    # the plain block: convolutions only; the reference block adds batch norm's scale
    # and shift, 2 per channel, after every convolution but the last
    features = conv(8, 4, 8) + conv(8, 8, 16) + conv(8, 16, 64)
    with_embeddings = features + conv(8, 128, 128) + conv(8, 128, 1)
    baseline = features + conv(8, 64, 128) + conv(8, 128, 1)
    norm = 2 * (8 + 16 + 64 + 128)
    stage1 = SiameseClassifier("reference")
    seg = Segmenter(stage1)
    assert count_parameters(seg) == with_embeddings + norm == 1_132_761 + 432
    assert count_parameters(Segmenter(stage1, "plain")) == with_embeddings == 1_132_761
    assert count_parameters(
        seg, trainable_only=False
    ) == with_embeddings + norm + count_parameters(stage1)
    assert count_parameters(Segmenter()) == baseline + norm == 608_473 + 432
    # the demo's narrower head: 128 -> 32 -> 1
    narrow = features + conv(8, 128, 32) + conv(8, 32, 1) + 2 * (8 + 16 + 64 + 32)
    assert count_parameters(Segmenter(stage1, width=32)) == narrow
    with pytest.raises(ValueError, match="width must be a positive integer, got 0"):
        Segmenter(width=0)


# --------------------------------------------------------------------------- shapes and
# behaviour


@pytest.mark.parametrize(
    "architecture,h,w",
    [("reference", 32, 48), ("reference", 8, 8), ("paper", 64, 32)],
)
def test_classifier_shapes(architecture, h, w):
    model = SiameseClassifier(architecture).eval()
    x = torch.randn(3, 4, h, w)
    with torch.no_grad():
        assert model.embed(x).shape == (3, 64, h, w)
        assert model(x).shape == (3,)


def test_embeddings_are_shared_between_pre_and_post():
    """Swapping the pre and post pair swaps the two halves of the embedding."""
    torch.manual_seed(0)
    model = SiameseClassifier("reference").eval()
    x = torch.randn(2, 4, 16, 16)
    swapped = torch.cat([x[:, 2:], x[:, :2]], dim=1)
    with torch.no_grad():
        e, s = model.embed(x), model.embed(swapped)
    torch.testing.assert_close(s[:, :32], e[:, 32:])
    torch.testing.assert_close(s[:, 32:], e[:, :32])
    assert not torch.allclose(e[:, :32], e[:, 32:])


@pytest.mark.parametrize("h,w", [(32, 32), (17, 23)])
def test_segmenter_shapes(h, w):
    x = torch.randn(2, 4, h, w)
    with torch.no_grad():
        assert Segmenter().eval()(x).shape == (2, 1, h, w)
    if h % 2 == 0:
        with torch.no_grad():
            assert Segmenter(SiameseClassifier()).eval()(x).shape == (2, 1, h, w)


def test_same_conv_matches_pytorch_same_padding():
    torch.manual_seed(0)
    ours = SameConv2d(3, 5, kernel=8)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # PyTorch warns about even kernels with padding="same"
        theirs = nn.Conv2d(3, 5, 8, padding="same")
        theirs.load_state_dict(ours.state_dict())
        x = torch.randn(2, 3, 13, 20)
        torch.testing.assert_close(ours(x), theirs(x))


def test_stage1_frozen_in_segmenter():
    torch.manual_seed(0)
    stage1 = SiameseClassifier("reference")
    seg = Segmenter(stage1)
    assert all(not p.requires_grad for p in seg.stage1.parameters())
    assert all(p.requires_grad for p in stage1.parameters()), (
        "the caller's model must not be modified"
    )
    seg.train()
    assert seg.training and not seg.stage1.training
    assert not any(m.training for m in seg.stage1.modules())

    before = {k: v.clone() for k, v in seg.state_dict().items()}
    opt = torch.optim.Adam([p for p in seg.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(4, 4, 16, 16)
    loss = seg(x).sigmoid().mean()
    loss.backward()
    opt.step()
    after = seg.state_dict()
    frozen = [k for k in before if k.startswith("stage1.")]
    trained = [k for k in before if not k.startswith("stage1.")]
    assert frozen and trained
    for k in frozen:  # includes batch-norm running statistics
        assert torch.equal(before[k], after[k]), k
    assert all(p.grad is None for p in seg.stage1.parameters())
    assert any(not torch.equal(before[k], after[k]) for k in trained)


def test_build_model_round_trip():
    for model in (
        SiameseClassifier("reference"),
        Segmenter(),
        Segmenter(SiameseClassifier()),
    ):
        rebuilt = build_model(type(model).__name__, model.config_dict())
        assert type(rebuilt) is type(model)
        assert rebuilt.config_dict() == model.config_dict()
        rebuilt.load_state_dict(
            model.state_dict()
        )  # same architecture: strict load works


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "model",
    [SiameseClassifier("reference"), Segmenter(), Segmenter(SiameseClassifier())],
    ids=["stage1", "baseline", "stage2"],
)
def test_wrong_channel_count(model):
    with pytest.raises(ValueError, match=r"3 channels .*pre_vv"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\)"):
        model(torch.randn(4, 16, 16))


@pytest.mark.parametrize(
    "model,shape,hint",
    [
        (SiameseClassifier("reference"), (1, 4, 33, 32), "multiples of 2"),
        (SiameseClassifier("reference"), (1, 4, 6, 6), "at least 8"),
        (SiameseClassifier("paper"), (1, 4, 48, 64), "multiples of 32"),
        (Segmenter(SiameseClassifier("reference")), (1, 4, 31, 32), "32x32"),
    ],
)
def test_chip_size_the_network_cannot_take(model, shape, hint):
    with pytest.raises(ValueError, match=hint):
        model(torch.randn(*shape))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="unknown stage-1 architecture 'big'"):
        SiameseClassifier("big")
    with pytest.raises(ValueError, match="in_channels=3"):
        SiameseClassifier(in_channels=3)
    with pytest.raises(TypeError, match="SiameseClassifier"):
        Segmenter(stage1=nn.Identity())
    with pytest.raises(ValueError, match="unknown model class"):
        build_model("UNet", {})


def test_the_stored_constructor_record_keeps_its_keys_and_rebuilds_the_network():
    # checkpoints, run settings and cache keys hold this record: its key "config"
    # (the architecture) must not change
    paper = SiameseClassifier(architecture="paper")
    assert paper.config_dict() == {
        "config": "paper",
        "in_channels": 2,
        "embedding_channels": 32,
    }
    rebuilt = build_model("SiameseClassifier", paper.config_dict())
    assert rebuilt.architecture == "paper"
    assert rebuilt.state_dict().keys() == paper.state_dict().keys()
    seg = Segmenter(SiameseClassifier(), block="plain", width=16)
    assert seg.config_dict() == {
        "stage1": {"config": "reference", "in_channels": 2, "embedding_channels": 32},
        "config": "plain",
        "width": 16,
    }
    again = build_model("Segmenter", seg.config_dict())
    assert (again.block, again.width, again.stage1.architecture) == (
        "plain",
        16,
        "reference",
    )
