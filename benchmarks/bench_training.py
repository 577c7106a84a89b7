"""Training-step throughput of both stages, plain float32 against the default fast path.

Run from the repository root::

    .venv/bin/python benchmarks/bench_training.py    # 128² and the demo chip size
    .venv/bin/python benchmarks/bench_training.py --sizes 128 --reps 5 --threads 2
    .venv/bin/python benchmarks/bench_training.py --device cuda    # on a GPU

For each chip size it times one training step (forward, float32 loss, backward, Adam;
the same code path as :func:`sarslide.train.fit`) of

* stage 2: ``Segmenter(SiameseClassifier("reference"))`` with precomputed frozen
  embeddings (as ``fit`` trains it), and
* stage 1: ``SiameseClassifier("reference")``,

under ``precision="fp32"`` (plain float32, default layout) and ``precision="auto"`` (the
device's fast path, :func:`sarslide.engine.precision.resolve_precision`).  The
configurations are **alternated** within one process after a warm-up, so machine load
hits all of them alike; the median of ``--reps`` steps is reported.  Chips are random:
the speed does not depend on their content.  The last line is ``stage-2 step speedup
over plain fp32: N.NN×`` at 128² (or the first size given).

``--embedding-grid`` adds what computing the frozen embeddings once per event
(:mod:`sarslide.engine.embeddings`) saves over once per run, on the demo and paper
grids, from a measured per-chip embedding cost.  Nothing is asserted: timings depend on
the machine.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time

import numpy as np
import torch

from sarslide.engine.precision import Precision, resolve_precision, select_device
from sarslide.engine.runtime import embed_all, segmenter_embeddings
from sarslide.models import Segmenter, SiameseClassifier, count_parameters
from sarslide.profiles import get_profile
from sarslide.tasks import TrainingTask, get_task
from sarslide.train import seed_everything


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _Case:
    """One model + optimiser + batch under one precision, ready to step."""

    def __init__(
        self, task: str, model: torch.nn.Module, prec: Precision, x, y, emb, device
    ):
        self.task: TrainingTask = get_task(task)  # its loss is the one fit trains with
        self.prec, self.device = prec, device
        self.model = prec.apply_layout(model.to(device)).train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(params, lr=1e-3)
        self.scaler = prec.grad_scaler_for(device)
        self.x, self.y, self.emb = x, y, emb

    def step(self) -> float:
        prec, dev = self.prec, self.device
        t0 = time.perf_counter()
        xb = prec.to_input(self.x, dev)
        yb = self.y.to(dev)
        extra = () if self.emb is None else (prec.to_input(self.emb, dev),)
        self.opt.zero_grad(set_to_none=True)
        with prec.autocast():
            out = self.model(xb, *extra)
        loss = self.task.loss(out.float(), yb)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        loss.item()
        _sync(dev)
        return time.perf_counter() - t0


def _cases(
    size: int, batch: int, device: torch.device, precisions: dict[str, Precision]
):
    seed_everything(0)
    stage1 = SiameseClassifier("reference").eval()
    seg = Segmenter(stage1)
    x = torch.randn(batch, 4, size, size)
    y_pix = (torch.rand(batch, 1, size, size) > 0.95).float()
    y_chip = (torch.arange(batch) % 2).float()
    cases = {}
    for pname, prec in precisions.items():
        # embeddings as fit holds them: computed once, in the precision's storage dtype
        with prec.prepared(seg, device):
            emb = segmenter_embeddings(seg, x.numpy(), batch, device, prec)
        cases[("stage2", pname)] = _Case(
            "stage2", copy.deepcopy(seg), prec, x, y_pix, emb, device
        )
        cases[("stage1", pname)] = _Case(
            "stage1", copy.deepcopy(stage1), prec, x, y_chip, None, device
        )
    return cases


def _time_size(size: int, args, device, precisions) -> dict[tuple[str, str], float]:
    cases = _cases(size, args.batch, device, precisions)
    for _ in range(args.warmup):
        for case in cases.values():
            case.step()
    times: dict[tuple[str, str], list[float]] = {k: [] for k in cases}
    for _ in range(args.reps):
        for (
            key,
            case,
        ) in cases.items():  # alternate: load hits every configuration alike
            times[key].append(case.step())
    return {k: statistics.median(v) for k, v in times.items()}


def _embedding_grid(args, device, fast: Precision) -> None:
    """Seconds the repeated embedding computation cost per grid, before and after
    caching."""
    from sarslide.ablation import experiment_grid
    from sarslide.chips import TABLE_A1

    print(
        "\nfrozen stage-1 embeddings: once per run (before) vs once per event "
        "(sarslide.engine.embeddings)"
    )
    grids = {
        # (profile, stage-2 pool, validation, test): paper = Table A1 Hokkaido; demo:
        # measured
        "paper": (get_profile("paper"), *TABLE_A1["hokkaido"][1:]),
    }
    try:
        from sarslide.datasets import prepare_event
        from sarslide.experiment import Experiment

        demo = get_profile("demo")
        chips = prepare_event(Experiment.create("hokkaido", demo))
        grids["demo"] = (
            demo,
            *(len(chips.split(s)) for s in ("stage2_train", "validation", "test")),
        )
    except Exception as err:  # noqa: BLE001 - the demo chips are optional here
        print(f"  (demo chips unavailable: {err}; demo grid skipped)")
    for name, (profile, pool, n_val, n_test) in grids.items():
        size = profile.chip_size
        seed_everything(0)
        stage1 = SiameseClassifier("reference").eval()
        x = np.random.default_rng(0).normal(size=(16, 4, size, size)).astype(np.float32)
        per_chip = {}
        for pname, prec in (
            ("fp32", resolve_precision(device, "fp32")),
            ("fast", fast),
        ):
            with prec.prepared(stage1, device):
                embed_all(stage1, x[:4], 4, device, prec)  # warm-up
                t0 = time.perf_counter()
                embed_all(stage1, x, 8, device, prec)
                _sync(device)
                per_chip[pname] = (time.perf_counter() - t0) / len(x)
        runs = [r for r in experiment_grid(profile) if r.arm != "none"]
        arms = {r.arm for r in runs}
        k = profile.top_k
        sizes = [pool if r.train_size is None else r.train_size for r in runs]
        # before: each run embedded its training and validation chips once (fit), and
        # each of its top-k checkpoints embedded the test chips again when predicting
        before = sum(n + n_val + k * n_test for n in sizes)
        # after: each arm embeds the pool, validation and test chips once; each run
        # re-embeds one chip per split as fit's check
        after = len(arms) * (pool + n_val + n_test) + 2 * len(runs)
        print(
            f"  {name}: {len(runs)} runs on {len(arms)} pretrained arms, {size}² "
            f"chips, pool {pool}, "
            f"validation {n_val}, test {n_test}, top-k {k}: {before:,} chip "
            "embeddings before, "
            f"{after:,} after ({before / after:.0f}× fewer)"
        )
        for pname, t in per_chip.items():
            print(
                f"    {pname:<4s} {t * 1e3:7.1f} ms/chip: {before * t:8.1f} s before, "
                f"{after * t:7.1f} s after, "
                f"saving {(before - after) * t:8.1f} s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help="chip sides (default: 128 and the demo's)",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--reps", type=int, default=3, help="timed steps per configuration (median)"
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: torch's choice)",
    )
    parser.add_argument(
        "--device", default=None, help="cpu / cuda (default: CUDA when available)"
    )
    parser.add_argument(
        "--embedding-grid",
        action="store_true",
        help="also estimate the saving of cached embeddings",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    sizes = args.sizes or sorted({128, get_profile("demo").chip_size}, reverse=True)
    precisions = {
        "fp32": resolve_precision(device, "fp32"),
        "fast": resolve_precision(device, "auto"),
    }
    fast = precisions["fast"]
    cpu = platform.processor() or platform.machine()
    if device.type == "cuda":
        cpu = torch.cuda.get_device_name(device)
    print(
        f"device={device} ({cpu}), torch {torch.__version__}, "
        f"threads={torch.get_num_threads()}, "
        f"cpu count {os.cpu_count()}, batch {args.batch}, {args.reps} alternated reps "
        f"after {args.warmup} warm-up"
    )
    print(f"fast path = {fast.describe()}")
    seg = Segmenter(SiameseClassifier("reference"))
    print(
        f"Segmenter(stage1=reference): {count_parameters(seg):,} trainable, "
        f"{count_parameters(seg, trainable_only=False):,} total; "
        "SiameseClassifier('reference'): "
        f"{count_parameters(SiameseClassifier('reference')):,}"
    )
    print(
        f"{'chip':>5s} {'task':<7s} {'precision':<10s} {'s/step':>8s} {'chips/s':>8s} "
        f"{'vs fp32':>8s}"
    )
    headline = None
    for size in sizes:
        med = _time_size(size, args, device, precisions)
        for task in ("stage2", "stage1"):
            for pname in precisions:
                t = med[(task, pname)]
                ratio = med[(task, "fp32")] / t
                label = "fp32" if pname == "fp32" else fast.name
                print(
                    f"{size:>4d}² {task:<7s} {label:<10s} {t:8.3f} "
                    f"{args.batch / t:8.2f} {ratio:7.2f}×"
                )
        if headline is None:
            headline = (
                size,
                med[("stage2", "fp32")] / med[("stage2", "fast")],
                med[("stage1", "fp32")] / med[("stage1", "fast")],
            )
    if args.embedding_grid:
        _embedding_grid(args, device, fast)
    size, s2, s1 = headline
    print(
        f"stage-1 step speedup over plain fp32: {s1:.2f}× ({size}² chips, batch "
        f"{args.batch})"
    )
    print(
        f"stage-2 step speedup over plain fp32: {s2:.2f}× ({size}² chips, batch "
        f"{args.batch})"
    )


if __name__ == "__main__":
    main()
