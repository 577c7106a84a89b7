"""Estimate the paper profile's whole grid: 51 stage-2 runs and 2 stage-1 pretrainings.

Run from the repository root::

    .venv/bin/python benchmarks/estimate_paper_grid.py   # FLOPs + a CPU measurement
    .venv/bin/python benchmarks/estimate_paper_grid.py --epochs 150 --no-measure

The grid (``sarslide.ablation.experiment_grid(get_profile("paper"))``): 3 arms (no
pretraining, Hokkaido-pretrained, Kaikōura-pretrained) × training sizes 2 (5 seeds), 5,
10, 20 and all 110 Hokkaido stage-2 chips (3 seeds) = 51 runs, each validated on 55
chips per epoch, the top-5 checkpoints then predicting the 56 test chips; plus the two
stage-1 pretrainings on 331 (Hokkaido) and 1,630 (Kaikōura) chips, validated on 55 and
272.
Chips are 128², batch 32, early stopping with patience 50 (at most 500 epochs).

How the estimate is made (every assumption is printed):

1. FLOPs per chip of each kind of work — a training step (forward + backward), a
   validation forward, a frozen-embedding forward — counted on the real models with
   :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products;
   element-wise work is not counted).
2. Work of the grid = chips × epochs × FLOPs per chip; the frozen embeddings are
   computed once per arm (:mod:`sarslide.engine.embeddings`).  Epochs per run are an
   assumption (``--epochs``, default 100 = best epoch ~50 + patience 50; the bounds 51
   and 500 are printed too).
3. Time on a GPU = work / (peak × achieved fraction) + per-epoch overhead.  The
   overhead is what a GPU does not speed up, *measured* on the machine running the
   script (unless ``--no-measure``; the ``--epoch-overhead`` figure alone otherwise):
   the per-epoch validation scoring on the CPU (the loss and the APRC over the 55
   validation chips' 901,120 pixels; stage 1: the loss and accuracy of its validation
   chips) and the ``last.pt`` checkpoint written every epoch (weights + Adam state,
   ~14 MB for a two-stage segmenter), plus ``--epoch-overhead`` seconds for Python,
   kernel launches and the tiny batches of the few-shot runs.  Peaks are the vendors'
   dense tensor-core figures for the dtype ``precision="auto"`` picks there
   (:func:`sarslide.engine.precision.cuda_auto_precision`): T4 65 TFLOP/s fp16 (compute
   capability 7.5: fp16 + gradient scaling), L4 121 TFLOP/s bf16, A100 312 TFLOP/s
   bf16, H100 SXM 989 TFLOP/s bf16; achieved fractions 0.25 (0.20 on the H100: 8×8
   convolutions with 128 channels run well below peak, the H100 more so at batch 32 of
   128² chips).  These fractions are assumptions, not measurements.
4. Per chapter (the book's cost on Colab, ``colab.md``): chapter 3 trains the two
   stage-1 networks, chapter 4 one stage-2 run (10 chips, Hokkaido-pretrained),
   chapter 5 the whole grid with its two pretrainings (chapter 6 reuses its results).
5. On the machine running the script (unless ``--no-measure``) the per-chip seconds of a
   stage-2 and a stage-1 training step are *measured* under the fast path and plain
   fp32, giving the CPU's grid time and its achieved TFLOP/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from sarslide.ablation import experiment_grid
from sarslide.chips import TABLE_A1
from sarslide.engine.checkpoints import model_record, save_record
from sarslide.engine.precision import resolve_precision, select_device
from sarslide.models import Segmenter, SiameseClassifier
from sarslide.profiles import get_profile
from sarslide.tasks import STAGE1, STAGE2, dice_loss
from sarslide.train import seed_everything

GPUS = {
    # name: (peak dense TFLOP/s of the fast path's dtype, dtype, achieved fraction)
    "T4": (65.0, "fp16", 0.25),
    "L4": (121.0, "bf16", 0.25),
    "A100": (312.0, "bf16", 0.25),
    "H100 SXM": (989.0, "bf16", 0.20),
}
#: The two stage-1 pretrainings: (training chips, validation chips).
STAGE1_CHIPS = {"hokkaido": (331, 55), "kaikoura": (1630, 272)}


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def flops_per_chip(size: int) -> dict[str, float]:
    """FLOPs per chip: stage-2 training step (with / without embeddings), validation
    forward, frozen embeddings, stage-1 training step and forward."""
    seed_everything(0)
    stage1 = SiameseClassifier("reference").eval()
    seg, base = Segmenter(stage1), Segmenter()
    b = 2
    x = torch.randn(b, 4, size, size)
    y = (torch.rand(b, 1, size, size) > 0.95).float()
    with torch.no_grad():
        emb = seg.frozen_embeddings(x)

    def train_step(model, *extra):
        dice_loss(model(x, *extra), y).backward()

    def stage1_step():
        stage1.train()
        torch.nn.functional.binary_cross_entropy_with_logits(
            stage1(x), torch.ones(b)
        ).backward()
        stage1.eval()

    out = {
        "stage2 step (embeddings given)": _flops(lambda: train_step(seg, emb)),
        "stage2 step (no pretraining)": _flops(lambda: train_step(base)),
        "stage1 step": _flops(stage1_step),
    }
    with torch.no_grad():
        out["stage2 forward (embeddings given)"] = _flops(lambda: seg(x, emb))
        out["stage2 forward (no pretraining)"] = _flops(lambda: base(x))
        out["frozen embeddings"] = _flops(lambda: stage1.embed(x))
        out["stage1 forward"] = _flops(lambda: stage1(x))
    return {k: v / b for k, v in out.items()}


def grid_work(profile, flops: dict[str, float], epochs: float) -> dict[str, float]:
    """Total FLOPs of each part of the grid (stage-2 runs, stage-1 pretrainings,
    test)."""
    pool, n_val, n_test = TABLE_A1["hokkaido"][1:]
    runs = experiment_grid(profile)
    k = profile.top_k
    work = {
        "stage2 training": 0.0,
        "stage2 validation": 0.0,
        "test prediction": 0.0,
        "frozen embeddings": 0.0,
    }
    for r in runs:
        n = pool if r.train_size is None else r.train_size
        emb = r.arm != "none"
        kind = "(embeddings given)" if emb else "(no pretraining)"
        work["stage2 training"] += epochs * n * flops[f"stage2 step {kind}"]
        work["stage2 validation"] += epochs * n_val * flops[f"stage2 forward {kind}"]
        work["test prediction"] += k * n_test * flops[f"stage2 forward {kind}"]
    arms = {r.arm for r in runs if r.arm != "none"}
    work["frozen embeddings"] = (
        len(arms) * (pool + n_val + n_test) * flops["frozen embeddings"]
    )
    work["stage1 pretraining"] = sum(
        epochs * (n_tr * flops["stage1 step"] + n_v * flops["stage1 forward"])
        for n_tr, n_v in STAGE1_CHIPS.values()
    )
    return work


def chapter_work(
    profile, flops: dict[str, float], epochs: float
) -> dict[str, tuple[float, float]]:
    """(FLOPs, epochs) of what each training chapter runs on the paper profile."""
    pool, n_val, n_test = TABLE_A1["hokkaido"][1:]
    grid = grid_work(profile, flops, epochs)
    one_run = (
        epochs * 10 * flops["stage2 step (embeddings given)"]
        + epochs * n_val * flops["stage2 forward (embeddings given)"]
        + profile.top_k * n_test * flops["stage2 forward (embeddings given)"]
        + (pool + n_val + n_test) * flops["frozen embeddings"]
    )
    return {
        "chapter 3: two stage-1 pretrainings": (grid["stage1 pretraining"], 2 * epochs),
        "chapter 4: one stage-2 run (10 chips, Hokkaido-pretrained)": (one_run, epochs),
        "chapter 5: the grid, stage 1 included (chapter 6 reuses it)": (
            sum(grid.values()),
            _epochs_total(profile, epochs),
        ),
    }


def measure_epoch_overhead(profile, reps: int = 5) -> dict[str, float]:
    """Measured seconds of the per-epoch work a GPU does not speed up: validation
    scoring on the CPU (stage 2: dice loss + APRC over the 55 validation chips; stage 1:
    BCE + accuracy over Kaikoura's 272), and writing a ``last.pt`` as the training loop
    does (weights + Adam state of a two-stage segmenter), with its size in MB.  Each the
    fastest of ``reps`` repetitions (the least disturbed by other work on the
    machine)."""
    size = profile.chip_size
    n_val = TABLE_A1["hokkaido"][2]
    rng = np.random.default_rng(0)
    labels = (rng.random((n_val, size, size)) < 0.05).astype(np.uint8)
    targets = STAGE2.targets(labels)
    outputs = torch.from_numpy(rng.normal(size=targets.shape).astype(np.float32))
    s1_targets = STAGE1.targets(
        (rng.random((272, size, size)) < 0.001).astype(np.uint8)
    )
    s1_outputs = torch.from_numpy(rng.normal(size=s1_targets.shape).astype(np.float32))
    seed_everything(0)
    model = Segmenter(SiameseClassifier("reference"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params)
    model(
        torch.randn(2, 4, 32, 32), model.frozen_embeddings(torch.randn(2, 4, 32, 32))
    ).mean().backward()
    opt.step()  # Adam's two moment buffers exist, as in every saved epoch
    record = model_record(model, "stage2", None)
    record.update(
        optimizer=opt.state_dict(), history=[{"epoch": e} for e in range(100)]
    )

    def timed(fn) -> float:
        # the fastest of reps: on a machine shared with other work, the least disturbed
        fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.pt"
        write = timed(lambda: save_record(record, path))
        mb = path.stat().st_size / 1e6
    return {
        "stage2 validation scoring": timed(lambda: STAGE2.score(outputs, targets)),
        "stage1 validation scoring": timed(
            lambda: STAGE1.score(s1_outputs, s1_targets)
        ),
        "checkpoint write": write,
        "checkpoint MB": mb,
    }


def _epochs_total(profile, epochs: float) -> float:
    return epochs * (len(experiment_grid(profile)) + 2)


def measure(size: int, batch: int, reps: int) -> dict[str, dict[str, float]]:
    """Measured seconds per chip of training steps on this machine, fp32 vs the fast
    path."""
    dev = select_device(None)
    out: dict[str, dict[str, float]] = {}
    seed_everything(0)
    stage1 = SiameseClassifier("reference").eval()
    x = torch.randn(batch, 4, size, size)
    y = (torch.rand(batch, 1, size, size) > 0.95).float()
    precisions = {
        "fp32": resolve_precision(dev, "fp32"),
        "fast": resolve_precision(dev, "auto"),
    }
    cases = {}
    for pname, prec in precisions.items():
        seg = prec.apply_layout(Segmenter(stage1).to(dev))
        s1 = prec.apply_layout(SiameseClassifier("reference").to(dev))
        with torch.no_grad(), prec.autocast():
            emb = seg.frozen_embeddings(prec.to_input(x, dev))
        opt2 = torch.optim.Adam([p for p in seg.parameters() if p.requires_grad])
        opt1 = torch.optim.Adam(s1.parameters())

        def s2_step(seg=seg, opt=opt2, prec=prec, emb=emb):
            opt.zero_grad()
            with prec.autocast():
                out = seg(prec.to_input(x, dev), emb)
            dice_loss(out.float(), y.to(dev)).backward()
            opt.step()

        def s1_step(s1=s1, opt=opt1, prec=prec):
            opt.zero_grad()
            with prec.autocast():
                out = s1(prec.to_input(x, dev))
            torch.nn.functional.binary_cross_entropy_with_logits(
                out.float(), (torch.arange(batch) % 2).float().to(dev)
            ).backward()
            opt.step()

        cases[("stage2", pname)] = s2_step
        cases[("stage1", pname)] = s1_step
    times = {k: [] for k in cases}
    for f in cases.values():
        f()  # warm-up
    for _ in range(reps):
        for k, f in cases.items():
            t0 = time.perf_counter()
            f()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t0)
    for (task, pname), v in times.items():
        out.setdefault(pname, {})[task] = statistics.median(v) / batch
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs",
        type=float,
        default=100.0,
        help="assumed epochs per run (early stopping)",
    )
    parser.add_argument(
        "--epoch-overhead",
        type=float,
        default=0.05,
        help="seconds per epoch on a GPU beyond the FLOPs",
    )
    parser.add_argument(
        "--no-measure", action="store_true", help="skip the measurement on this machine"
    )
    parser.add_argument("--batch", type=int, default=8, help="batch of the measurement")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: torch's choice)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    profile = get_profile("paper")
    size = profile.chip_size
    flops = flops_per_chip(size)
    print(
        f"paper profile: {len(experiment_grid(profile))} stage-2 runs + 2 stage-1 "
        f"pretrainings, {size}² chips, "
        f"batch {profile.batch_size}, patience {profile.patience}, max "
        f"{profile.stage2_max_epochs} epochs"
    )
    print("FLOPs per chip (FlopCounterMode: convolutions and matmuls):")
    for k, v in flops.items():
        print(f"  {k:<36s} {v / 1e9:9.2f} GFLOP")
    if args.no_measure:
        per_epoch = per_epoch_s1 = args.epoch_overhead
        print(
            f"\nper-epoch overhead on a GPU: {per_epoch:.2f} s (--epoch-overhead "
            "only; not measured)"
        )
    else:
        over = measure_epoch_overhead(profile)
        per_epoch = (
            over["stage2 validation scoring"]
            + over["checkpoint write"]
            + args.epoch_overhead
        )
        # a stage-1 checkpoint is smaller than the segmenter's: the write is an upper
        # bound
        per_epoch_s1 = (
            over["stage1 validation scoring"]
            + over["checkpoint write"]
            + args.epoch_overhead
        )
        print(
            f"\nper-epoch overhead on a GPU, measured here ({torch.get_num_threads()} "
            "threads): "
            f"stage-2 validation scoring {over['stage2 validation scoring']:.3f} s, "
            "stage-1 "
            f"{over['stage1 validation scoring']:.3f} s, last.pt write "
            f"{over['checkpoint write']:.3f} s "
            f"({over['checkpoint MB']:.1f} MB), + {args.epoch_overhead:.2f} s assumed "
            f"= {per_epoch:.2f} s "
            f"per stage-2 epoch, {per_epoch_s1:.2f} s per stage-1 epoch"
        )
    for epochs in sorted({51.0, args.epochs, 500.0}):
        work = grid_work(profile, flops, epochs)
        total = sum(work.values())
        epoch_count = _epochs_total(profile, epochs)
        print(
            f"\nassuming {epochs:.0f} epochs per run ({epoch_count:,.0f} epochs in "
            f"all): {total / 1e15:.2f} PFLOP"
        )
        for k, v in work.items():
            print(f"  {k:<20s} {v / 1e15:8.3f} PFLOP ({v / total:5.1%})")
        for gpu, (peak, dtype, frac) in GPUS.items():
            compute = total / (peak * 1e12 * frac)
            overhead = (
                epoch_count - 2 * epochs
            ) * per_epoch + 2 * epochs * per_epoch_s1
            print(
                f"  {gpu:<9s} {dtype} peak {peak:5.0f} TFLOP/s × {frac:.2f} achieved "
                f"+ {per_epoch:.2f} s/epoch "
                f"overhead: {compute / 3600:6.2f} h compute + {overhead / 3600:5.2f} "
                "h overhead = "
                f"{(compute + overhead) / 3600:6.2f} h"
            )

    print(
        f"\nper chapter, assuming {args.epochs:.0f} epochs per run (hours: compute + "
        "overhead):"
    )
    for chapter, (chapter_flops, chapter_epochs) in chapter_work(
        profile, flops, args.epochs
    ).items():
        s1_epochs = (
            2 * args.epochs if chapter.startswith(("chapter 3", "chapter 5")) else 0
        )
        chapter_overhead = (
            chapter_epochs - s1_epochs
        ) * per_epoch + s1_epochs * per_epoch_s1
        cells = []
        for gpu, (peak, _, frac) in GPUS.items():
            hours = (chapter_flops / (peak * 1e12 * frac) + chapter_overhead) / 3600
            cells.append(f"{gpu} {hours:6.2f} h")
        print(
            f"  {chapter:<58s} {chapter_flops / 1e15:7.3f} PFLOP, "
            f"{chapter_epochs:5.0f} epochs: " + ", ".join(cells)
        )

    if args.no_measure:
        return
    dev = select_device(None)
    measured = measure(size, args.batch, args.reps)
    work = grid_work(profile, flops, args.epochs)
    print(
        f"\nmeasured on this machine ({dev}, {torch.get_num_threads()} threads, "
        f"{size}² chips, batch {args.batch}):"
    )
    for pname, per in measured.items():
        ach = flops["stage2 step (embeddings given)"] / per["stage2"] / 1e12
        # scale every part of the work by the stage-2 step's measured FLOP rate, except
        # stage-1 pretraining which uses its own measured rate
        s1_rate = flops["stage1 step"] / per["stage1"]
        s2_rate = flops["stage2 step (embeddings given)"] / per["stage2"]
        seconds = (
            work["stage1 pretraining"] / s1_rate
            + sum(v for k, v in work.items() if k != "stage1 pretraining") / s2_rate
        )
        print(
            f"  {pname:<4s}: stage-2 step {per['stage2'] * 1e3:7.1f} ms/chip "
            f"({ach:.2f} TFLOP/s), stage-1 step "
            f"{per['stage1'] * 1e3:7.1f} ms/chip; whole grid at {args.epochs:.0f} "
            "epochs/run ≈ "
            f"{seconds / 86400:6.1f} days"
        )
    print(
        "grid on this CPU, fast path vs fp32: "
        f"{measured['fp32']['stage2'] / measured['fast']['stage2']:.2f}× per "
        "stage-2 step"
    )


if __name__ == "__main__":
    main()
