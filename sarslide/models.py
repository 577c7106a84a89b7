"""The two networks of the method: a stage-1 Siamese classifier and a stage-2 segmenter.

Both take standardised chips ``(N, 4, H, W)`` float32 with channels
``pre_vv, pre_vh, post_vv, post_vh`` (see :func:`sarslide.transforms.standardize`).

Stage 1, :class:`SiameseClassifier`
    One U-Net with a ResNet-34 encoder (segmentation-models-pytorch, never pretrained
    weights) embeds the pre-event pair ``x[:, 0:2]`` and the post-event pair ``x[:,
    2:4]`` with *shared* weights into ``embedding_channels`` maps each, at full
    resolution; the two are concatenated (``2 * embedding_channels`` = 64 channels) and
    a small head turns them into one logit per chip: "this chip contains a landslide".

    ``architecture="reference"`` is the network the published experiments ran: encoder
    depth 1 (the ResNet stem only: 7x7 stride-2 convolution, batch norm, ReLU), one
    decoder block with 32 channels, and a head made of an 8x8 *valid* convolution to one
    channel, batch norm, LeakyReLU and a spatial mean.  smp 0.6 accepts
    ``encoder_depth=1`` but still builds (and saves) ResNet-34's four unused residual
    stages, 21.3 M parameters that never see a gradient; we delete them so parameter
    counts and checkpoints are honest.

    ``architecture="paper"`` is the network the paper's text describes: the full
    five-stage ResNet-34 encoder (21.3 M parameters), smp's default decoder, and a
    two-layer fully connected head.  The text feeds the 64x128x128 embeddings to that
    head; we average them over space first (64 numbers per chip), which keeps the head
    small and independent of the chip size.

Stage 2, :class:`Segmenter`
    A 3-layer CNN (8x8 kernels, "same" padding, 4 -> 8 -> 16 -> 64 channels), optionally
    concatenated with the 64 frozen stage-1 embeddings, then a 2-layer CNN (-> 128 -> 1,
    8x8 kernels) giving one logit per pixel.  Without a stage-1 network it is the
    paper's baseline: the same layers with 64 input channels to the head.

    ``block="reference"`` (the default) is the block the published experiments ran:
    every feature convolution and the first head convolution is followed by batch norm
    and LeakyReLU.  ``block="plain"`` is ReLU without normalisation, this package's
    first reading of the paper's text; it trains unreliably (runs collapse to a
    constant output: see the book's deviations page) and is kept to show that.

A checkpoint stores each network's constructor record (``config_dict()``), with the
architecture or block under the key ``"config"``; :func:`build_model` rebuilds the
network from it.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from .cube import CHANNELS  # the channel order, defined once in the schema
from .engine import onednn

__all__ = [
    "STAGE1_ARCHITECTURES",
    "SEGMENTER_BLOCKS",
    "SiameseClassifier",
    "Segmenter",
    "SameConv2d",
    "check_input",
    "count_parameters",
    "build_model",
]

#: The two stage-1 architectures (see the module docstring).
STAGE1_ARCHITECTURES = ("reference", "paper")

#: The two stage-2 blocks (see the module docstring).
SEGMENTER_BLOCKS = ("reference", "plain")

_REFERENCE_HEAD_KERNEL = 8


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` by
    default)."""
    return sum(
        p.numel() for p in model.parameters() if p.requires_grad or not trainable_only
    )


def check_input(x: Tensor, *, size_multiple: int = 1, min_size: int = 1) -> None:
    """Raise ``ValueError`` unless ``x`` is a ``(N, 4, H, W)`` floating tensor the net
    can take.

    ``H`` and ``W`` must be multiples of ``size_multiple`` (the encoder's total stride)
    and at least ``min_size``.  NaN is *not* checked here (that would force a device
    sync on every batch); :func:`sarslide.engine.runtime.check_images` checks whole
    arrays once before training/predicting.
    """
    if not isinstance(x, Tensor):
        raise TypeError(
            f"expected a torch.Tensor of shape (N, 4, H, W), got {type(x).__name__}"
        )
    if x.ndim != 4:
        raise ValueError(
            f"expected chips of shape (N, 4, H, W), got shape {tuple(x.shape)}; "
            "add a batch axis with x[None] for a single chip"
        )
    if x.shape[1] != len(CHANNELS):
        raise ValueError(
            f"chips have {x.shape[1]} channels but the networks need {len(CHANNELS)} "
            f"in the order {list(CHANNELS)} (pre-event VV, VH, then post-event VV, VH)"
        )
    if not torch.is_floating_point(x):
        raise ValueError(
            f"chips must be floating point (standardised), got dtype {x.dtype}"
        )
    h, w = x.shape[-2:]
    if h < min_size or w < min_size or h % size_multiple or w % size_multiple:

        def fit(n: int) -> int:
            return max(min_size, -(-n // size_multiple) * size_multiple)

        raise ValueError(
            f"chip size {h}x{w} does not fit this network: height and width must be "
            f"multiples of {size_multiple} and at least {min_size} pixels; "
            f"make chips of e.g. {fit(h)}x{fit(w)}"
        )


class SameConv2d(nn.Conv2d):
    """Stride-1 convolution whose output has the input's size ("same" padding), any
    kernel.

    For an even kernel ``k`` the ``k - 1`` padding pixels are split ``(k-1)//2`` before
    and the rest after, exactly as ``nn.Conv2d(padding="same")`` does, but without the
    warning PyTorch emits for even kernels.  Parameters: ``k*k*c_in*c_out + c_out``.

    The convolution itself is :func:`sarslide.engine.onednn.conv2d`: plain
    ``conv2d``, with a workaround for a CPU bfloat16 bug of oneDNN under autocast.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 8):
        super().__init__(c_in, c_out, kernel_size=kernel, padding=0)
        total = kernel - 1
        self._pad = (total // 2, total - total // 2, total // 2, total - total // 2)

    def forward(self, x: Tensor) -> Tensor:
        return onednn.conv2d(nn.functional.pad(x, self._pad), self.weight, self.bias)


def _same_conv(c_in: int, c_out: int, kernel: int = 8) -> SameConv2d:
    return SameConv2d(c_in, c_out, kernel)


def _reference_block(c_in: int, c_out: int) -> list[nn.Module]:
    """8x8 "same" convolution, batch norm, LeakyReLU (slope 0.01): the published
    stage-2 block."""
    return [_same_conv(c_in, c_out), nn.BatchNorm2d(c_out), nn.LeakyReLU()]


def _plain_block(c_in: int, c_out: int) -> list[nn.Module]:
    """8x8 "same" convolution and ReLU, without normalisation."""
    return [_same_conv(c_in, c_out), nn.ReLU()]


class SiameseClassifier(nn.Module):
    """Stage-1 network: shared U-Net embeddings of pre and post chips, one logit per
    chip.

    Parameters
    ----------
    architecture:
        ``"reference"`` (as the published experiments ran) or ``"paper"`` (as the text
        describes); see the module docstring.
    in_channels:
        Channels per pass (2: VV, VH).
    embedding_channels:
        Channels of each pass's embedding; the concatenated embedding has twice as many.

    Inputs are ``(N, 4, H, W)`` float32 standardised chips.  ``H`` and ``W`` must be
    multiples of :attr:`size_multiple` (2 for ``reference``, 32 for ``paper``) and at
    least :attr:`min_size`.
    """

    def __init__(
        self,
        architecture: str = "reference",
        in_channels: int = 2,
        embedding_channels: int = 32,
    ):
        super().__init__()
        # heavy import, only when a model is built
        import segmentation_models_pytorch as smp

        if architecture not in STAGE1_ARCHITECTURES:
            raise ValueError(
                f"unknown stage-1 architecture {architecture!r}; choose one of "
                f"{list(STAGE1_ARCHITECTURES)}"
            )
        if in_channels * 2 != len(CHANNELS):
            raise ValueError(
                f"in_channels={in_channels} per pass does not match the "
                f"{len(CHANNELS)} chip "
                f"channels {list(CHANNELS)}; use in_channels=2"
            )
        if embedding_channels < 1:
            raise ValueError(
                f"embedding_channels must be positive, got {embedding_channels}"
            )
        self.architecture = architecture
        self.in_channels = in_channels
        self.embedding_channels = embedding_channels

        if architecture == "reference":
            self.unet = smp.Unet(
                encoder_name="resnet34",
                encoder_weights=None,
                encoder_depth=1,
                decoder_channels=[32],
                in_channels=in_channels,
                classes=embedding_channels,
            )
            # smp keeps ResNet-34's residual stages although depth 1 only runs the stem.
            for name in ("maxpool", "layer1", "layer2", "layer3", "layer4"):
                if hasattr(self.unet.encoder, name):
                    delattr(self.unet.encoder, name)
            self.head = nn.Sequential(
                nn.Conv2d(
                    2 * embedding_channels, 1, kernel_size=_REFERENCE_HEAD_KERNEL
                ),
                nn.BatchNorm2d(1),
                nn.LeakyReLU(),
            )
            self.size_multiple = 2
            self.min_size = _REFERENCE_HEAD_KERNEL
        else:
            self.unet = smp.Unet(
                encoder_name="resnet34",
                encoder_weights=None,
                encoder_depth=5,
                in_channels=in_channels,
                classes=embedding_channels,
            )
            hidden = 2 * embedding_channels
            self.head = nn.Sequential(
                nn.Flatten(),
                nn.Linear(2 * embedding_channels, hidden),
                nn.ReLU(),
                nn.Linear(hidden, 1),
            )
            self.size_multiple = 32
            self.min_size = 32

    @property
    def embedding_dim(self) -> int:
        """Channels of :meth:`embed`'s output (pre and post concatenated)."""
        return 2 * self.embedding_channels

    def config_dict(self) -> dict[str, Any]:
        """The constructor record a checkpoint stores: ``{"config": architecture,
        "in_channels": ..., "embedding_channels": ...}``; :func:`build_model` rebuilds
        the network from it."""
        return {
            "config": self.architecture,
            "in_channels": self.in_channels,
            "embedding_channels": self.embedding_channels,
        }

    def embed(self, x: Tensor) -> Tensor:
        """Embeddings ``(N, 2*embedding_channels, H, W)``: U-Net(pre) then U-Net(post).

        The pre and post pairs go through the shared U-Net as one batch of ``2N`` so
        that, in training mode, batch norm normalises both passes with the *same*
        statistics and a brightness change between them survives into the embeddings.
        """
        check_input(x, size_multiple=self.size_multiple, min_size=self.min_size)
        n = x.shape[0]
        c = self.in_channels
        both = torch.cat([x[:, :c], x[:, c:]], dim=0)
        emb = self.unet(both)
        return torch.cat([emb[:n], emb[n:]], dim=1)

    def classify(self, embeddings: Tensor) -> Tensor:
        """Chip logits ``(N,)`` from embeddings ``(N, 2*embedding_channels, H, W)``."""
        if self.architecture == "reference":
            return self.head(embeddings).mean(dim=(1, 2, 3))
        return self.head(embeddings.mean(dim=(2, 3), keepdim=True)).squeeze(1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N,)`` of "this chip contains a landslide" (apply a sigmoid for
        probabilities)."""
        return self.classify(self.embed(x))


class Segmenter(nn.Module):
    """Stage-2 network: per-pixel landslide logits, optionally using frozen stage-1
    embeddings.

    Parameters
    ----------
    stage1:
        A trained :class:`SiameseClassifier` whose embeddings (64 channels) join the
        segmenter's own features, or ``None`` for the baseline.  A *copy* is stored,
        frozen (``requires_grad=False``) and kept in eval mode even when the segmenter
        is put in training mode, so neither its weights nor its batch-norm statistics
        ever change. Its head is never used.
    block:
        ``"reference"`` (convolution, batch norm, LeakyReLU: the published block) or
        ``"plain"`` (convolution, ReLU); see the module docstring.
    width:
        Channels of the head's hidden layer (the paper: 128).  Its 8x8 convolution is
        almost all of the network's arithmetic, so the demo profile halves it.

    ``forward(x)`` maps ``(N, 4, H, W)`` float32 chips to logits ``(N, 1, H, W)``.
    """

    def __init__(
        self,
        stage1: SiameseClassifier | None = None,
        block: str = "reference",
        width: int = 128,
    ):
        super().__init__()
        if stage1 is not None and not isinstance(stage1, SiameseClassifier):
            raise TypeError(
                "stage1 must be a SiameseClassifier (or None for the baseline), got "
                f"{type(stage1).__name__}"
            )
        if block not in SEGMENTER_BLOCKS:
            raise ValueError(
                f"unknown segmenter block {block!r}; choose one of "
                f"{list(SEGMENTER_BLOCKS)}"
            )
        if int(width) != width or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        self.block, self.width = block, int(width)
        layers = _reference_block if block == "reference" else _plain_block
        self.features = nn.Sequential(
            *layers(len(CHANNELS), 8), *layers(8, 16), *layers(16, 64)
        )
        extra = 0
        self.stage1: SiameseClassifier | None = None
        if stage1 is not None:
            frozen = copy.deepcopy(stage1)
            frozen.requires_grad_(False)
            frozen.eval()
            self.stage1 = frozen
            extra = frozen.embedding_dim
        self.head = nn.Sequential(
            *layers(64 + extra, self.width), _same_conv(self.width, 1)
        )

    @classmethod
    def from_profile(
        cls, profile: Any, stage1: SiameseClassifier | None = None
    ) -> "Segmenter":
        """The segmenter a :class:`~sarslide.profiles.Profile` asks for: its
        ``stage2_config`` block and ``stage2_width`` head, on ``stage1``'s
        embeddings."""
        return cls(stage1, profile.stage2_config, profile.stage2_width)

    @property
    def uses_embeddings(self) -> bool:
        """Whether stage-1 embeddings are part of the input to the head."""
        return self.stage1 is not None

    @property
    def size_multiple(self) -> int:
        return 1 if self.stage1 is None else self.stage1.size_multiple

    @property
    def min_size(self) -> int:
        return 1 if self.stage1 is None else self.stage1.min_size

    def config_dict(self) -> dict[str, Any]:
        """The constructor record a checkpoint stores: ``{"stage1": <stage-1 record> or
        None, "config": block, "width": hidden channels}``; see :func:`build_model`."""
        return {
            "stage1": None if self.stage1 is None else self.stage1.config_dict(),
            "config": self.block,
            "width": self.width,
        }

    def train(self, mode: bool = True) -> "Segmenter":
        super().train(mode)
        if self.stage1 is not None:
            self.stage1.eval()  # frozen: batch-norm statistics must not move
        return self

    @torch.no_grad()
    def frozen_embeddings(self, x: Tensor) -> Tensor | None:
        """The frozen stage-1 embeddings ``(N, 64, H, W)`` of chips ``x``, or None
        without stage 1.

        They never change during stage-2 training, so :func:`sarslide.train.fit`
        computes them once per run and passes them to :meth:`forward`.
        """
        return None if self.stage1 is None else self.stage1.embed(x)

    def forward(self, x: Tensor, embeddings: Tensor | None = None) -> Tensor:
        """Per-pixel logits ``(N, 1, H, W)``; ``embeddings`` are precomputed
        :meth:`frozen_embeddings` of ``x`` (computed here when not given)."""
        check_input(x, size_multiple=self.size_multiple, min_size=self.min_size)
        feats = self.features(x)
        if self.stage1 is not None:
            emb = self.frozen_embeddings(x) if embeddings is None else embeddings
            feats = torch.cat([feats, emb.to(feats.dtype)], dim=1)
        return self.head(feats)


def _stage1_from_record(record: dict[str, Any]) -> SiameseClassifier:
    """The :class:`SiameseClassifier` of a :meth:`SiameseClassifier.config_dict`
    record (its ``"config"`` is the architecture)."""
    return SiameseClassifier(
        architecture=record.get("config", "reference"),
        in_channels=record.get("in_channels", 2),
        embedding_channels=record.get("embedding_channels", 32),
    )


def build_model(model_class: str, record: dict[str, Any]) -> nn.Module:
    """Rebuild an (untrained) model from ``type(m).__name__`` and its constructor
    record ``m.config_dict()``."""
    if model_class == "SiameseClassifier":
        return _stage1_from_record(record)
    if model_class == "Segmenter":
        s1 = record.get("stage1")
        # checkpoints written before the block was a setting hold the plain block
        block = record.get("config", "plain")
        stage1 = _stage1_from_record(s1) if s1 is not None else None
        return Segmenter(stage1, block, record.get("width", 128))
    raise ValueError(
        f"unknown model class {model_class!r}; expected 'SiameseClassifier' or "
        "'Segmenter'"
    )
