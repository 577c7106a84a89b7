"""Seconds per training epoch of both stages at demo sizes, and parameter counts.

Run from the repository root::

    .venv/bin/python benchmarks/bench_training.py            # torch's default thread count
    .venv/bin/python benchmarks/bench_training.py --threads 1

It builds the demo profile's Hokkaido chips (synthetic, cached), then times
:func:`sarslide.train.fit` for a few epochs of each model on the demo split sizes
(stage 1: the ``stage1_train`` split; stage 2: the ``stage2_train`` split; validation on
the ``validation`` split) and prints a table.  Nothing is asserted: timings depend on the
machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch

from sarslide.datasets import prepare_event
from sarslide.models import Segmenter, SiameseClassifier, count_parameters
from sarslide.profiles import get_profile
from sarslide.runtime import select_device
from sarslide.train import fit, seed_everything
from sarslide.transforms import standardize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per model (the first is dropped)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--device", default=None, help="cpu / cuda (default: CUDA when available)")
    parser.add_argument("--paper-config", action="store_true", help="also time the 'paper' stage-1 config")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    device = select_device(args.device)

    print("parameter counts (trainable):")
    ref, paper = SiameseClassifier("reference"), SiameseClassifier("paper")
    rows = {
        "SiameseClassifier('reference')": count_parameters(ref),
        "SiameseClassifier('paper')": count_parameters(paper),
        "  paper encoder (ResNet-34, 2 input channels)": count_parameters(paper.unet.encoder),
        "Segmenter(stage1=reference) trainable": count_parameters(Segmenter(ref)),
        "Segmenter(stage1=reference) total incl. frozen": count_parameters(Segmenter(ref), trainable_only=False),
        "Segmenter() baseline": count_parameters(Segmenter()),
    }
    for name, n in rows.items():
        print(f"  {name:<50s} {n:>12,d}")

    chips = prepare_event("hokkaido", profile)
    s1, s2, val = (chips.split(s) for s in ("stage1_train", "stage2_train", "validation"))
    std = lambda c: standardize(c.images, chips.stats)  # noqa: E731
    print(
        f"\nprofile={profile.name} chip={profile.chip_size} batch={profile.batch_size} "
        f"device={device} threads={torch.get_num_threads()} "
        f"stage1_train={len(s1)} stage2_train={len(s2)} validation={len(val)} chips"
    )
    cases = [("stage1", "SiameseClassifier('reference')", lambda: SiameseClassifier("reference"), s1)]
    if args.paper_config:
        cases.append(("stage1", "SiameseClassifier('paper')", lambda: SiameseClassifier("paper"), s1))
    cases += [
        ("stage2", "Segmenter() baseline", lambda: Segmenter(), s2),
        ("stage2", "Segmenter(stage1=reference)", lambda: Segmenter(SiameseClassifier("reference")), s2),
    ]
    print(f"{'task':<7s} {'model':<32s} {'s/epoch':>8s}  (training + validation, mean over epochs 2..{args.epochs})")
    for task, name, build, train in cases:
        seed_everything(0)
        model = build()
        with tempfile.TemporaryDirectory() as tmp:
            result = fit(
                model, std(train), train.labels, std(val), val.labels, task=task,
                max_epochs=args.epochs, patience=args.epochs + 1, batch_size=profile.batch_size,
                lr=profile.learning_rate, top_k=1, checkpoint_dir=tmp, device=device, progress=False,
            )  # fmt: skip
        secs = result.history["seconds"].to_numpy()
        per_epoch = float(np.mean(secs[1:])) if len(secs) > 1 else float(secs[0])
        print(f"{task:<7s} {name:<32s} {per_epoch:>8.2f}")


if __name__ == "__main__":
    main()
