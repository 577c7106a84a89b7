"""The stage-2 head's 128→128 8×8 "same" convolution: direct vs FFT, float32 vs the fast
path.

95 % of the segmenter's arithmetic is this one layer
(:class:`sarslide.models.SameConv2d` with an even kernel, padding 3 before and 4 after).
This script times, on ``(B, 128, S, S)`` inputs, forward and forward+backward of

* ``direct fp32``: ``SameConv2d`` as the package runs it with ``precision="fp32"``;
* ``direct fp32 CL``: the same in channels-last layout;
* ``direct fast``: the package's fast path
  (:func:`sarslide.engine.precision.resolve_precision`, bf16 autocast + channels-last
  on CPUs with native bf16);
* ``fft chip fp32``: exact convolution theorem over the whole padded chip — rFFT of the
  input and the kernels (``S+7`` points, no wrap-around reaches the kept outputs), a
  complex matrix product over channels per frequency, inverse rFFT.  About 25× fewer
  multiply-adds than direct for 8×8 kernels at 128², but the kernels' spectra are
  ``128·128·(S+7)·(S/2+4)`` complex numbers (1.2 GB at 128²) that must be transformed at
  every training step and streamed through memory;
* ``fft tiles32 fp32`` / ``fft tiles64 fp32``: overlap-save over 32×32 (64×64) tiles,
  25×25 (57×57) outputs each: spectra of 70 MB (277 MB), more transforms,

alternating the configurations within one process after a warm-up (medians of
``--reps``), and checks each against the direct float32 convolution (max |difference|
/ max |output|).

``--check-onednn`` instead scans bf16 convolutions of small channel counts against
float32 and lists the shapes where oneDNN returns wrong values (found on this project's
Xeon with AMX and torch 2.14: 8 or 12 input channels with 8×8 kernels); ``SameConv2d``
convolves through :func:`sarslide.engine.onednn.conv2d`, which pads those inputs to 16
channels under CPU bf16 autocast.

    .venv/bin/python benchmarks/bench_conv.py                 # B=2, 128²
    .venv/bin/python benchmarks/bench_conv.py --batch 8 --size 64
    .venv/bin/python benchmarks/bench_conv.py --check-onednn
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
import torch.nn.functional as F

from sarslide.engine.precision import resolve_precision
from sarslide.models import SameConv2d

PAD = (3, 4, 3, 4)  # SameConv2d's padding of an 8x8 kernel: left, right, top, bottom


def fft_conv_chip(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """Exactly SameConv2d(x) (8x8, stride 1) through the convolution theorem over the
    chip."""
    b, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    xp = F.pad(x, PAD)  # (b, cin, h+7, w+7)
    n1, n2 = xp.shape[-2:]
    X = torch.fft.rfft2(xp, s=(n1, n2))  # (b, cin, n1, n2//2+1)
    K = torch.fft.rfft2(weight, s=(n1, n2))  # (cout, cin, n1, n2//2+1)
    # cross-correlation: Y = sum_i X_i * conj(K_oi), one (b x cin) @ (cin x cout) per
    # frequency
    Xf = X.permute(2, 3, 0, 1).reshape(-1, b, cin)
    Kf = K.conj().permute(2, 3, 1, 0).reshape(-1, cin, cout)
    Y = torch.matmul(Xf, Kf).reshape(n1, n2 // 2 + 1, b, cout).permute(2, 3, 0, 1)
    y = torch.fft.irfft2(Y, s=(n1, n2))[..., :h, :w]
    return y + bias.view(1, -1, 1, 1)


def fft_conv_tiles(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, tile: int = 32
) -> torch.Tensor:
    """Exactly SameConv2d(x) by overlap-save over tile x tile FFTs (tile-7 outputs per
    side)."""
    b, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    step = tile - (kh - 1)
    ty, tx = -(-h // step), -(-w // step)
    xp = F.pad(x, (PAD[0], PAD[1] + tx * step - w, PAD[2], PAD[3] + ty * step - h))
    patches = xp.unfold(2, tile, step).unfold(
        3, tile, step
    )  # (b, cin, ty, tx, tile, tile)
    X = torch.fft.rfft2(patches)  # (b, cin, ty, tx, tile, tile//2+1)
    K = torch.fft.rfft2(weight, s=(tile, tile))  # (cout, cin, tile, tile//2+1)
    nf = tile * (tile // 2 + 1)
    Xf = X.permute(4, 5, 0, 2, 3, 1).reshape(nf, b * ty * tx, cin)
    Kf = K.conj().permute(2, 3, 1, 0).reshape(nf, cin, cout)
    Y = torch.matmul(Xf, Kf).reshape(tile, tile // 2 + 1, b, ty, tx, cout)
    y = torch.fft.irfft2(Y.permute(2, 5, 3, 4, 0, 1), s=(tile, tile))[
        ..., :step, :step
    ]  # (b, cout, ty, tx, s, s)
    y = y.permute(0, 1, 2, 4, 3, 5).reshape(b, cout, ty * step, tx * step)[..., :h, :w]
    return y + bias.view(1, -1, 1, 1)


def _timed(fn, backward: bool) -> float:
    t0 = time.perf_counter()
    out = fn()
    if backward:
        out.float().sum().backward()
    return time.perf_counter() - t0


def bench(args) -> None:
    torch.manual_seed(0)
    conv = SameConv2d(128, 128, 8)
    x = torch.randn(args.batch, 128, args.size, args.size)
    fast = resolve_precision("cpu", "auto")
    conv_cl = SameConv2d(128, 128, 8)
    conv_cl.load_state_dict(conv.state_dict())
    conv_cl.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def direct():
        return conv(x)

    def direct_cl():
        return conv_cl(x_cl)

    def direct_fast():
        with fast.autocast():
            return (conv_cl if fast.channels_last else conv)(
                x_cl if fast.channels_last else x
            )

    configs = {
        "direct fp32": direct,
        "direct fp32 CL": direct_cl,
        f"direct fast ({fast.name})": direct_fast,
        "fft chip fp32": lambda: fft_conv_chip(x, conv.weight, conv.bias),
        "fft tiles32 fp32": lambda: fft_conv_tiles(x, conv.weight, conv.bias, tile=32),
        "fft tiles64 fp32": lambda: fft_conv_tiles(x, conv.weight, conv.bias, tile=64),
    }
    with torch.no_grad():
        ref = direct().double()
        scale = float(ref.abs().max())
        errors = {
            k: float((f().double() - ref).abs().max()) / scale
            for k, f in configs.items()
        }
    macs = args.batch * 128 * 128 * 64 * args.size**2
    print(
        f"SameConv2d(128, 128, 8) on ({args.batch}, 128, {args.size}, {args.size}): "
        f"{2 * macs / 1e9:.1f} GFLOP "
        f"forward (direct); threads {torch.get_num_threads()}; fast path "
        f"{fast.describe()}"
    )
    for mode in ("forward", "forward+backward"):
        backward = mode != "forward"
        for p in (conv, conv_cl):
            p.requires_grad_(backward)
        times = {k: [] for k in configs}
        ctx = torch.enable_grad if backward else torch.no_grad
        with ctx():
            for f in configs.values():
                _timed(f, backward)  # warm-up
            for _ in range(args.reps):
                for k, f in configs.items():
                    times[k].append(_timed(f, backward))
        base = statistics.median(times["direct fp32"])
        print(
            f"\n{mode}: {'configuration':<22s} {'s':>8s} {'vs fp32':>8s} "
            f"{'max rel err':>12s}"
        )
        for k, v in times.items():
            t = statistics.median(v)
            print(
                f"{'':<{len(mode) + 1}s} {k:<22s} {t:8.3f} {base / t:7.2f}× "
                f"{errors[k]:12.2e}"
            )


def check_onednn(args) -> None:
    """List bf16 conv shapes whose outputs disagree with float32 (> 5 % of the largest
    value), and how SameConv2d (which pads such inputs to 16 channels) does on them."""
    torch.manual_seed(0)
    bad = []
    kernels = [(1, 8), (3, 3), (3, 8), (7, 7), (8, 8), (12, 12), (16, 16)]
    for cin, k in itertools.product(range(1, 33), kernels):
        x = torch.randn(2, cin, 40, 40)
        w = torch.randn(16, cin, *k) * 0.1
        with torch.no_grad():
            ref = F.conv2d(x.bfloat16().float(), w.bfloat16().float())
            got = F.conv2d(x.bfloat16(), w.bfloat16()).float()
        err = float((got - ref).abs().max() / ref.abs().max())
        if err <= 0.05:
            continue
        line = f"in={cin:2d} kernel={k[0]}x{k[1]}: {err:.0%}"
        if k[0] == k[1]:
            conv = SameConv2d(cin, 16, k[0])
            with torch.no_grad():
                conv.weight.copy_(w)
                conv.bias.zero_()
                pref = F.conv2d(
                    F.pad(x, conv._pad).bfloat16().float(), w.bfloat16().float()
                )
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    pkg = conv(x).float()
            line += (
                "; SameConv2d under autocast: "
                f"{float((pkg - pref).abs().max() / pref.abs().max()):.1%}"
            )
        bad.append(line)
    print(
        f"torch {torch.__version__}; bf16 convolutions off by > 5 % of the largest "
        f"output: {len(bad)}"
    )
    for line in bad:
        print("  " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--check-onednn", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.check_onednn:
        check_onednn(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
