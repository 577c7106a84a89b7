"""oneDNN, PyTorch's CPU convolution library: its bfloat16 hardware, and a bug's
workaround.

* :func:`cpu_has_native_bf16`: whether this CPU computes bfloat16 dot products in
  hardware that oneDNN can use (the condition for ``precision="auto"`` to pick bfloat16
  on a CPU, :func:`sarslide.engine.precision.resolve_precision`).
* :func:`conv2d`: a stride-1 convolution without padding, as
  :func:`torch.nn.functional.conv2d` computes it, except that under CPU autocast an
  input whose channel count is not a multiple of :data:`CHANNEL_MULTIPLE` is zero-padded
  to one (the weights alike; the result is exactly the same).  oneDNN's AMX convolution
  bundled with torch 2.14 returns wrong values for 4-14 input channels with some
  kernels (e.g. 8 channels, 8x8: errors as large as the output itself, found on this
  project's Xeon with AMX; see ``benchmarks/bench_conv.py --check-onednn``).
  :class:`sarslide.models.SameConv2d` convolves through it; the padding costs a few
  percent of the segmenter's arithmetic (its first two layers are tiny).
"""

from __future__ import annotations

import platform

import torch
from torch import Tensor, nn

__all__ = ["CHANNEL_MULTIPLE", "conv2d", "cpu_has_native_bf16"]

#: Under CPU autocast, input channels are zero-padded to a multiple of this.
CHANNEL_MULTIPLE = 16


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 dot products in hardware and oneDNN can use
    them.

    x86: AVX-512 BF16 or AMX (``torch.cpu._is_avx512_bf16_supported``,
    ``torch.cpu._is_amx_tile_supported``); Arm: the BF16 extension as oneDNN reports it.
    Plain AVX-512 without BF16 only *emulates* bfloat16 (slower than float32), so it
    counts as no.  False when oneDNN (mkldnn) is unavailable or disabled.
    """
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    machine = platform.machine().lower()
    try:
        if machine in ("x86_64", "amd64", "i386", "i686"):
            return bool(
                torch.cpu._is_avx512_bf16_supported()
                or torch.cpu._is_amx_tile_supported()
            )
        if machine in ("aarch64", "arm64"):
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (
        AttributeError,
        RuntimeError,
    ):  # private helpers: absent in other torch builds
        return False
    return False


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv2d(x, weight, bias)`` with stride 1 and no padding: ``x`` ``(N, C, H, W)``,
    ``weight`` ``(C_out, C, k, k)``, ``bias`` ``(C_out,)`` or None, output
    ``(N, C_out, H - k + 1, W - k + 1)``.

    Under CPU autocast, ``C`` is zero-padded to a multiple of :data:`CHANNEL_MULTIPLE`
    in ``x`` and ``weight`` (the zero channels add nothing to the sums), which keeps
    oneDNN off its wrong AMX kernels; everywhere else it is plain
    :func:`torch.nn.functional.conv2d`.
    """
    extra = -x.shape[1] % CHANNEL_MULTIPLE
    if extra and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        weight = nn.functional.pad(weight, (0, 0, 0, 0, 0, extra))
        x = nn.functional.pad(x, (0, 0, 0, 0, 0, extra))
    return nn.functional.conv2d(x, weight, bias)
