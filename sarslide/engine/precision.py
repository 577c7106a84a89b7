"""The device and the arithmetic a model runs in: :func:`select_device`,
:func:`resolve_precision` and the :class:`Precision` it returns.

:func:`select_device` picks CUDA when available, else CPU; :func:`resolve_precision` is
the one place that decides the arithmetic and memory layout per device, and every
forward pass and training step goes through the :class:`Precision` it returns.

Precision
---------
``precision="auto"`` (the default everywhere) picks the fast path of the device:

============================  =========================================================
device                        what runs
============================  =========================================================
CPU with native bf16          bfloat16 autocast + channels-last memory layout (oneDNN
(AVX-512 BF16 / AMX, Arm BF16)  uses the bf16 dot-product units)
CPU without it, MPS, others   plain float32
CUDA, compute capability      bfloat16 autocast, channels-last, cuDNN autotuning, TF32
>= 8.0 (A100, L4, H100)
CUDA, capability 7.x          float16 autocast + gradient scaling, channels-last,
(T4 7.5, V100 7.0)            cuDNN autotuning, TF32 off (no TF32 units anyway)
CUDA, capability < 7.0        plain float32 (no tensor cores: half precision would only
(P100, GTX 10x0)              add rounding)
============================  =========================================================

On CUDA the choice follows the compute capability
(:func:`cuda_auto_precision`), not ``torch.cuda.is_bf16_supported()``: that call
counts emulation and is true on a T4, which has no bfloat16 hardware.  The choice and
its reason are announced once per process and device with a
:class:`PrecisionChoiceWarning` (silence it with
``warnings.simplefilter("ignore", sarslide.engine.precision.PrecisionChoiceWarning)``).

``precision="fp32"`` is plain float32 in the default layout everywhere (no TF32);
``"bf16"`` and ``"fp16"`` force one autocast dtype (``"fp16"`` only on CUDA, ``"bf16"``
on CUDA only from compute capability 8.0).

Autocast only changes the arithmetic of the forward pass: parameters, optimiser state
and checkpoints stay float32, and losses are computed in float32.  Results are
bit-identical between reruns with the same precision and thread count on a CPU, not
across precisions (the fast path's probabilities differ from float32 by well under 0.02;
see ``tests/test_precision.py``).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..models import Segmenter, SiameseClassifier
from .onednn import cpu_has_native_bf16

__all__ = [
    "BF16_MIN_CAPABILITY",
    "FP16_MIN_CAPABILITY",
    "PRECISIONS",
    "Precision",
    "PrecisionChoiceWarning",
    "cpu_bf16_is_correct",
    "cuda_auto_precision",
    "resolve_precision",
    "select_device",
]

#: What ``precision=`` accepts (besides a :class:`Precision`).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def select_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a :class:`torch.device`; ``None`` picks CUDA when available, else
    CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


#: Lowest CUDA compute capability with bfloat16 tensor cores (Ampere: A100 8.0, A10/RTX
#: 30x0 8.6, L4 8.9, H100 9.0).
BF16_MIN_CAPABILITY: tuple[int, int] = (8, 0)
#: Lowest CUDA compute capability with float16 tensor cores (Volta: V100 7.0; Turing:
#: T4 7.5).
FP16_MIN_CAPABILITY: tuple[int, int] = (7, 0)


class PrecisionChoiceWarning(UserWarning):
    """Which precision ``"auto"`` chose on a GPU, and why (once per process and
    device)."""


_ANNOUNCED: set[tuple[str, str]] = set()


def _cuda_name(device: torch.device) -> str:
    try:
        return str(torch.cuda.get_device_name(device))
    except (RuntimeError, AssertionError, ValueError):  # no driver at hand
        return "this GPU"


def cuda_auto_precision(device: str | torch.device = "cuda") -> tuple[str, str]:
    """What ``precision="auto"`` runs on a CUDA ``device``: ``(name, reason)``.

    ``name`` is ``"bf16"`` from compute capability 8.0 (:data:`BF16_MIN_CAPABILITY`),
    ``"fp16"`` (with gradient scaling) on 7.x, ``"fp32"`` below 7.0; ``reason`` is one
    sentence naming the GPU and its capability.  The capability comes from
    :func:`torch.cuda.get_device_capability`; ``torch.cuda.is_bf16_supported()`` is not
    used because it also counts emulated bfloat16 (true on a T4).
    """
    dev = torch.device(device)
    capability = tuple(int(v) for v in torch.cuda.get_device_capability(dev))
    where = f"{_cuda_name(dev)} (compute capability {capability[0]}.{capability[1]})"
    if capability >= BF16_MIN_CAPABILITY:
        return "bf16", f"{where} has bfloat16 tensor cores: bfloat16 autocast, TF32"
    if capability >= FP16_MIN_CAPABILITY:
        return "fp16", (
            f"{where} has float16 tensor cores but no bfloat16 hardware (torch would "
            "emulate it): float16 autocast with gradient scaling"
        )
    return "fp32", f"{where} has no tensor cores: plain float32"


def _announce(device: torch.device, name: str, reason: str) -> None:
    """One :class:`PrecisionChoiceWarning` per process, device and choice."""
    key = (str(device), name)
    if key in _ANNOUNCED:
        return
    _ANNOUNCED.add(key)
    warnings.warn(
        f"sarslide precision='auto' on {device}: {name}, because {reason}; pass "
        "precision='fp32' (or set the profile's precision) to run plain float32",
        PrecisionChoiceWarning,
        stacklevel=3,
    )


@functools.lru_cache(maxsize=1)
def cpu_bf16_is_correct(tolerance: float = 0.05) -> bool:
    """Whether bfloat16 autocast + channels-last gives float32's answers for the
    package's networks on this CPU: a once-per-process check on a small random
    ``Segmenter(SiameseClassifier("reference"))`` (0.9 s measured on one loaded core).

    It guards against convolution-library bugs such as the one found on this project's
    Xeon (AMX) with torch 2.14's oneDNN, where 8 input channels and an 8x8 kernel gave
    errors as large as the output (:func:`sarslide.engine.onednn.conv2d` works around
    that one).  ``precision="auto"`` falls back to float32, with a warning, if the
    largest difference exceeds ``tolerance`` times the largest float32 value.  The
    global random state is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Segmenter(SiameseClassifier("reference")).eval()
        x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        ref_emb = model.frozen_embeddings(x)
        ref = model(x, ref_emb)
        model.to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            emb = model.frozen_embeddings(xc)
            out = model(xc, emb)
    errors = {
        "stage-1 embeddings": float(
            (emb.float() - ref_emb).abs().max() / ref_emb.abs().max()
        ),
        "segmenter logits": float((out.float() - ref).abs().max() / ref.abs().max()),
    }
    bad = {k: v for k, v in errors.items() if not v <= tolerance}
    if bad:
        shares = ", ".join(f"{k}: {v:.0%} of the largest value" for k, v in bad.items())
        warnings.warn(
            f"bfloat16 convolutions on this CPU disagree with float32 ({shares}); "
            "precision='auto' uses float32 here. Update torch, or set "
            "ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 "
            "before starting Python to avoid the AMX kernels",
            RuntimeWarning,
            stacklevel=2,
        )
    return not bad


@dataclass(frozen=True)
class Precision:
    """How a model runs on one device: autocast dtype, memory layout, gradient scaling.

    Build it with :func:`resolve_precision`; pass it (or a name) as ``precision=`` to
    :class:`sarslide.train.TrainConfig`, :mod:`sarslide.predict` and
    :mod:`sarslide.mapping`.

    Attributes
    ----------
    name:
        ``"fp32"``, ``"bf16"`` or ``"fp16"``: the resolved choice (never ``"auto"``); it
        is recorded in a training run's settings, so a run resumes only with the same
        one.
    device_type:
        ``"cpu"``, ``"cuda"``, ...
    autocast_dtype:
        ``torch.bfloat16`` / ``torch.float16`` for autocast, ``None`` for plain float32.
    channels_last:
        Inputs and 4-D weights in NHWC layout (oneDNN's and cuDNN's fast convolutions).
    grad_scaler:
        Training needs a gradient scaler (float16: small gradients would underflow).
    cudnn_benchmark, tf32:
        CUDA backend settings (:meth:`apply_backend_settings`): cuDNN algorithm
        autotuning, TensorFloat-32 for the float32 matmuls and convolutions left outside
        autocast.
    """

    name: str
    device_type: str
    autocast_dtype: torch.dtype | None
    channels_last: bool
    grad_scaler: bool
    cudnn_benchmark: bool = False
    tf32: bool = False

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def storage_dtype(self) -> torch.dtype:
        """The dtype the forward pass produces: float32, or the autocast dtype.  Frozen
        embeddings kept in it lose nothing compared with recomputing them."""
        return torch.float32 if self.autocast_dtype is None else self.autocast_dtype

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context manager for the forward pass (a no-op for ``fp32``)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype)

    def to_input(self, batch: np.ndarray | Tensor, device: torch.device) -> Tensor:
        """A batch ``(B, C, H, W)`` as a tensor on ``device`` in this precision's layout
        (values unchanged; autocast casts them inside the convolutions)."""
        t = torch.from_numpy(batch) if isinstance(batch, np.ndarray) else batch
        t = t.to(device, non_blocking=True)
        return t.contiguous(memory_format=self.memory_format) if t.ndim == 4 else t

    def grad_scaler_for(self, device: torch.device) -> torch.amp.GradScaler:
        """A :class:`torch.amp.GradScaler`, enabled only when :attr:`grad_scaler`."""
        return torch.amp.GradScaler(device.type, enabled=self.grad_scaler)

    def apply_backend_settings(self) -> None:
        """Set the process-wide CUDA backend switches this precision wants (no-op off
        CUDA).

        ``cudnn.benchmark`` picks the fastest convolution algorithm per shape (results
        may then differ in the last bits between processes); TF32 as :attr:`tf32` says.
        """
        if self.device_type != "cuda":
            return
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        mode = "tf32" if self.tf32 else "ieee"
        if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9
            torch.backends.cuda.matmul.fp32_precision = mode
            torch.backends.cudnn.conv.fp32_precision = mode
        else:  # pragma: no cover - older torch
            torch.backends.cuda.matmul.allow_tf32 = self.tf32
            torch.backends.cudnn.allow_tf32 = self.tf32

    def apply_layout(self, model: nn.Module) -> nn.Module:
        """Put ``model``'s 4-D weights in this precision's layout, in place (values and
        parameter objects unchanged, so an optimiser built on them keeps working)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def restore_layout(self, model: nn.Module) -> nn.Module:
        """Undo :meth:`apply_layout`: 4-D weights back in the default layout, in
        place."""
        if self.channels_last:
            model.to(memory_format=torch.contiguous_format)
        return model

    @contextlib.contextmanager
    def prepared(self, model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
        """``model`` on ``device`` in this precision's layout for the block; its 4-D
        parameters are put back in the default layout afterwards (it stays on
        ``device``)."""
        self.apply_layout(model.to(device))
        try:
            yield model
        finally:
            self.restore_layout(model)

    def describe(self) -> dict[str, Any]:
        """Plain-data summary (for checkpoints and benchmark output)."""
        return {
            "precision": self.name,
            "device_type": self.device_type,
            "autocast_dtype": None
            if self.autocast_dtype is None
            else str(self.autocast_dtype).removeprefix("torch."),
            "channels_last": self.channels_last,
            "grad_scaler": self.grad_scaler,
            "cudnn_benchmark": self.cudnn_benchmark,
            "tf32": self.tf32,
        }


def resolve_precision(
    device: str | torch.device | None = None, precision: str | Precision = "auto"
) -> Precision:
    """Decide how to run on ``device``: see the module docstring's table.

    Parameters
    ----------
    device:
        ``None`` picks CUDA when available, else CPU (:func:`select_device`).
    precision:
        ``"auto"`` (the device's fast path), ``"fp32"`` (plain), ``"bf16"``, ``"fp16"``
        (CUDA only), or a :class:`Precision` (returned as is if it is for this device).

    Raises
    ------
    ValueError
        An unknown name, ``"fp16"`` off CUDA, ``"bf16"`` on a GPU of compute capability
        below 8.0, or a :class:`Precision` made for another device type.
    """
    dev = select_device(device)
    if isinstance(precision, Precision):
        if precision.device_type != dev.type:
            raise ValueError(
                f"precision was resolved for device type {precision.device_type!r} "
                "but the "
                f"model runs on {dev.type!r}; pass a name ('auto', 'fp32', ...) instead"
            )
        return precision
    if precision not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}"
        )
    name = precision
    if dev.type == "cuda":
        if name == "auto":
            name, reason = cuda_auto_precision(dev)
            _announce(dev, name, reason)
        elif name == "bf16":
            capability = tuple(int(v) for v in torch.cuda.get_device_capability(dev))
            if capability < BF16_MIN_CAPABILITY:
                raise ValueError(
                    f"{_cuda_name(dev)} (compute capability "
                    f"{capability[0]}.{capability[1]}) "
                    "has no bfloat16 hardware (torch would emulate it, slower than "
                    "float32); "
                    "use precision='fp16' or 'auto'"
                )
        fast = name != "fp32"
        return Precision(
            name=name,
            device_type="cuda",
            autocast_dtype=_DTYPES[name],
            channels_last=fast,
            grad_scaler=name == "fp16",
            cudnn_benchmark=fast,
            tf32=fast and name == "bf16",
        )
    if name == "fp16":
        raise ValueError(
            f"precision='fp16' needs a CUDA GPU, the model runs on {dev.type!r}; use "
            "'bf16' "
            "(fast on CPUs with AVX-512 BF16 or AMX), 'fp32' or 'auto'"
        )
    if name == "auto":
        name = (
            "bf16"
            if dev.type == "cpu" and cpu_has_native_bf16() and cpu_bf16_is_correct()
            else "fp32"
        )
    fast = name == "bf16"
    return Precision(
        name=name,
        device_type=dev.type,
        autocast_dtype=_DTYPES[name],
        channels_last=fast and dev.type == "cpu",
        grad_scaler=False,
    )
