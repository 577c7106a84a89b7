"""How much of an ablation grid is left, what it will cost here, and a time budget.

The paper's grid is 51 stage-2 runs (hours on a GPU); a Colab session ends before it
does. Before anything trains, :func:`plan_grid` says how many runs are missing and
estimates their time **on this device** from what finished runs cost: every finished run
records its epochs and measured seconds per epoch
(:func:`sarslide.engine.results_table.write_run_timing`, from the training history).
:class:`TimeBudget` lets :func:`sarslide.ablation.train_grid` stop cleanly *between*
runs, so the grid can be finished over several sessions.

The estimate of a missing run of arm ``a`` with ``n`` training chips:

* seconds per epoch = ``c0 + c1 · n``, a least-squares line through the finished runs of
  the same arm on the same device (a constant when they all had one size; the other
  arms' runs when the arm has none yet),
* × epochs = the mean epochs of finished runs of that arm and size (early stopping),
  else of that arm, else the profile's ``stage2_max_epochs`` (an upper bound),
* + the median measured overhead of a run (scoring the test chips, writing files).

With no finished run on this device there is no estimate (``None``): say so, run one.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .results_table import read_run_timings

__all__ = [
    "GridPlan",
    "TimeBudget",
    "plan_grid",
    "device_label",
    "estimate_run_seconds",
]


def device_label(device: Any = None) -> str:
    """What a run's timing is comparable across: ``"cpu (2 threads)"`` or
    ``"cuda (NVIDIA H200)"``."""
    import torch

    from .precision import select_device

    dev = select_device(device)
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"{dev.type} ({torch.get_num_threads()} threads)"


def _fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """``(c0, c1)`` of ``seconds = c0 + c1 · n`` through ``(n, seconds)`` points."""
    ns = np.array([p[0] for p in points], dtype=float)
    ys = np.array([p[1] for p in points], dtype=float)
    if len(set(ns.tolist())) < 2:
        return float(ys.mean()), 0.0
    c1, c0 = np.polyfit(ns, ys, 1)
    if c1 < 0:  # noise; a larger set never costs less per epoch
        return float(ys.mean()), 0.0
    return float(c0), float(c1)


def estimate_run_seconds(
    timings: Sequence[dict[str, Any]], arm: str, n_train: int, max_epochs: int
) -> float | None:
    """Estimated wall time (s) of one run from finished runs' ``timings`` (see module
    docstring); ``None`` without any timing."""
    usable = [t for t in timings if t.get("seconds_per_epoch") and t.get("n_train")]
    if not usable:
        return None
    same_arm = [t for t in usable if t.get("arm") == arm] or usable
    c0, c1 = _fit_line(
        [(float(t["n_train"]), float(t["seconds_per_epoch"])) for t in same_arm]
    )
    per_epoch = max(c0 + c1 * n_train, 0.0)
    same_size = [
        t for t in same_arm if int(t["n_train"]) == int(n_train) and t.get("arm") == arm
    ]
    pool = same_size or [t for t in same_arm if t.get("arm") == arm]
    epochs = float(np.mean([t["epochs"] for t in pool])) if pool else float(max_epochs)
    overhead = float(
        np.median([max(t.get("overhead_seconds", 0.0), 0.0) for t in same_arm])
    )
    return per_epoch * epochs + overhead


@dataclass
class GridPlan:
    """What is left of a grid: ``missing`` runs, ``done`` run ids and the estimate."""

    total: int
    missing: list
    done: list[str]
    estimate_s: float | None
    per_run_s: dict[str, float | None] = field(default_factory=dict)
    measured: int = 0
    device: str = ""

    def describe(self) -> str:
        """One line for a person: how many runs are missing and about how long they
        take."""
        head = f"{len(self.missing)} of {self.total} runs missing"
        if not self.missing:
            return f"{head}: the grid is complete"
        known = [v for v in self.per_run_s.values() if v is not None]
        if self.estimate_s is None and known:
            return (
                f"{head}; about {_minutes(sum(known))} on {self.device} for "
                f"{len(known)} of them "
                f"(from {self.measured} finished "
                f"run{'s' if self.measured != 1 else ''}); "
                f"{len(self.missing) - len(known)} not estimated yet (their chip "
                "count is unknown)"
            )
        if self.estimate_s is None:
            return (
                f"{head}; no estimate yet: no finished run on {self.device} to "
                "measure from "
                "(the first run's time gives one; --max-minutes stops between runs)"
            )
        return (
            f"{head}; about {_minutes(self.estimate_s)} on {self.device} (from the "
            "measured "
            f"per-epoch cost of {self.measured} finished "
            f"run{'s' if self.measured != 1 else ''})"
        )


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def plan_grid(
    runs: Sequence,
    out_dir: str | os.PathLike,
    *,
    max_epochs: int,
    pool_size: int | None = None,
    device: Any = None,
) -> GridPlan:
    """The plan of ``runs`` against the results in ``out_dir`` (see module docstring).

    ``pool_size`` is the number of stage-2 training chips (the size of a run on "all");
    without it such runs are estimated only from finished "all" runs.
    """
    from .results_table import finished_run_ids

    done_ids = finished_run_ids(out_dir)
    missing = [r for r in runs if r.run_id not in done_ids]
    label = device_label(device)
    timings = [
        t for t in read_run_timings(out_dir).values() if t.get("device") == label
    ]
    if pool_size is None:  # the stage-2 pool, as finished runs recorded it
        pools = [int(t["pool_size"]) for t in timings if t.get("pool_size")]
        pool_size = pools[0] if pools else None
    per_run: dict[str, float | None] = {}
    for run in missing:
        n = run.train_size if run.train_size is not None else pool_size
        per_run[run.run_id] = (
            None if n is None else estimate_run_seconds(timings, run.arm, n, max_epochs)
        )
    known = [v for v in per_run.values() if v is not None]
    estimate = None if (not missing or len(known) < len(missing)) else float(sum(known))
    if not missing:
        estimate = 0.0
    return GridPlan(
        total=len(runs),
        missing=missing,
        done=sorted(r.run_id for r in runs if r.run_id in done_ids),
        estimate_s=estimate,
        per_run_s=per_run,
        measured=len(timings),
        device=label,
    )


class TimeBudget:
    """A wall-clock budget checked between runs.

    ``allows(estimate_s)`` is true for the first run of a call (so every call makes
    progress), and afterwards while the time spent is under the budget and the next
    run's estimate (when there is one) fits in what is left.  ``max_minutes=None``: no
    budget.
    """

    def __init__(self, max_minutes: float | None, clock=time.monotonic) -> None:
        if max_minutes is not None:
            try:
                ok = math.isfinite(float(max_minutes)) and float(max_minutes) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(
                    f"max_minutes={max_minutes!r}: give a positive number of minutes "
                    "(e.g. 30), "
                    "or None for no budget"
                )
        self.max_s = None if max_minutes is None else float(max_minutes) * 60.0
        self._clock = clock
        self._start = clock()
        self.started = 0

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._start

    def allows(self, estimate_s: float | None = None) -> bool:
        """Whether the next run may start (and counts it if so)."""
        ok = (
            self.max_s is None
            or self.started == 0
            or (
                self.elapsed_s < self.max_s
                and (estimate_s is None or self.elapsed_s + estimate_s <= self.max_s)
            )
        )
        if ok:
            self.started += 1
        return ok
