"""Training health: did a run train, hit its epoch cap, stall or collapse?

A finished training run is one of six kinds, decided from its learning curve, its kept
checkpoint's predictions and its training chips (:func:`classify_run`):

``empty_draw``
    The training chips hold no landslide pixel (a random few-shot draw of landslide-free
    chips, as the paper's protocol allows): there is nothing to learn but "no
    landslide".
``collapsed``
    The output is constant (the standard deviation of the kept checkpoint's test
    probabilities is below ``constant_std``, 1e-4: a low but ranked output is not
    constant), or the validation APRC sits at the
    landslide pixel share (at most ``random_margin`` times it) at the best epoch or at
    the last one while the training loss stays at ``unfit_loss`` or above: the network
    does not even fit its own training chips (for the dice loss, 1 means it predicts
    nothing, or everything).
``overfit``
    The validation APRC sits at the pixel share (as above) but the training loss fell
    below ``unfit_loss``: the network learned its few training chips and nothing that
    carries over to others.
``capped``
    Trained for the whole epoch budget without early stopping: it may still have been
    improving, so it is not a result.
``stalled``
    Stopped early, but its best epoch is the first: it never improved after one epoch.
``trained``
    Stopped early after improving: the learning curve reached a plateau.

The classes are checked in this order, so a collapsed run that also hit the cap is
``collapsed``.  :func:`health_counts` tabulates a grid; chapter 5 draws every run's
curve with its class (:func:`sarslide.plots.training.plot_run_curves`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "STATUSES",
    "EXCLUDED",
    "RunHealth",
    "classify_run",
    "health_counts",
    "health_table",
]

#: The five kinds of finished run, in the order :func:`classify_run` checks them.
STATUSES: tuple[str, ...] = (
    "empty_draw",
    "collapsed",
    "overfit",
    "capped",
    "stalled",
    "trained",
)

#: The kinds whose models are left out of ensembles: a collapsed network predicts the
#: same everywhere, and averaging it in would only dilute the others.  Every other run
#: is kept and counted: an overfit, capped or stalled model is what the protocol gives
#: at that size and seed, and a landslide-free draw is what the paper's random draws
#: allow.
EXCLUDED: tuple[str, ...] = ("collapsed",)


@dataclass(frozen=True)
class RunHealth:
    """One run's class and the evidence for it.

    Attributes
    ----------
    status:
        One of :data:`STATUSES`.
    reason:
        The rule that decided it, in words.
    epochs:
        Epochs trained.
    best_epoch:
        The epoch of the best kept checkpoint (by the validation metric).
    stopped_early:
        Whether early stopping ended the run (else the epoch cap did).
    best_metric, last_metric:
        The validation metric (APRC) at the best and at the last epoch.
    chance_metric:
        What a constant or random prediction scores on the validation chips (for APRC
        the landslide pixel share).
    output_std:
        Standard deviation of the kept checkpoints' mean test probability over all test
        pixels (dimensionless, in ``[0, 0.5]``).
    train_positives:
        Landslide pixels in the run's training chips.
    last_train_loss:
        The training loss of the last epoch.
    history:
        The learning curve: one dict per epoch (``epoch``, ``train_loss``,
        ``val_loss``, the metric, ...).
    """

    status: str
    reason: str
    epochs: int
    best_epoch: int
    stopped_early: bool
    best_metric: float
    last_metric: float
    chance_metric: float
    output_std: float
    train_positives: int
    last_train_loss: float = float("nan")
    history: list[dict[str, float]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what the grid stores as ``health.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RunHealth:
        """The inverse of :meth:`to_dict`."""
        return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})


def classify_run(
    history: pd.DataFrame | Sequence[Mapping[str, float]],
    *,
    metric: str = "val_aprc",
    best_epoch: int,
    stopped_early: bool,
    max_epochs: int,
    chance_metric: float,
    output_std: float,
    train_positives: int,
    constant_std: float = 1e-4,
    random_margin: float = 1.25,
    unfit_loss: float = 0.95,
) -> RunHealth:
    """The class of one finished run (see the module docstring for the rules).

    Parameters
    ----------
    history:
        The run's learning curve, one row per epoch with ``epoch``, ``metric`` and
        ``train_loss``.
    metric:
        The validation metric column (higher is better).
    best_epoch:
        The epoch of the best kept checkpoint.
    stopped_early:
        Whether early stopping ended the run.
    max_epochs:
        The epoch budget.
    chance_metric:
        The metric of an uninformed prediction on the validation chips (> 0).
    output_std:
        Standard deviation of the kept checkpoints' mean test probabilities.
    train_positives:
        Landslide pixels in the training chips.
    constant_std, random_margin, unfit_loss:
        The thresholds: an output standard deviation below ``constant_std`` is
        constant; a validation metric at most ``random_margin * chance_metric`` is at
        chance; a last training loss of ``unfit_loss`` or more does not fit the
        training chips.

    Raises
    ------
    ValueError
        An empty history, a history without ``metric``, or a ``best_epoch`` that is
        not one of its epochs.
    """
    frame = pd.DataFrame(
        list(history) if not isinstance(history, pd.DataFrame) else history
    )
    if frame.empty or not {metric, "epoch", "train_loss"} <= set(frame.columns):
        raise ValueError(
            f"the history needs one row per epoch with 'epoch', 'train_loss' and "
            f"{metric!r}; got "
            f"columns {list(frame.columns)} and {len(frame)} rows"
        )
    by_epoch = frame.set_index("epoch")[metric]
    if best_epoch not in by_epoch.index:
        raise ValueError(
            f"best_epoch={best_epoch} is not in the history (epochs "
            f"{int(by_epoch.index.min())}..{int(by_epoch.index.max())})"
        )
    best, last = float(by_epoch.loc[best_epoch]), float(by_epoch.iloc[-1])
    last_train = float(frame["train_loss"].iloc[-1])
    epochs = int(by_epoch.index.max())
    floor = random_margin * chance_metric
    if train_positives == 0:
        status, reason = "empty_draw", "the training chips hold no landslide pixel"
    elif output_std < constant_std:
        status = "collapsed"
        reason = f"constant output (std {output_std:.2g} < {constant_std:g})"
    elif best <= floor or last <= floor:
        which = "best" if best <= floor else "last"
        value = best if which == "best" else last
        at_chance = (
            f"{metric} at the {which} epoch {value:.3f} <= {random_margin} x chance "
            f"{chance_metric:.3f}"
        )
        if last_train >= unfit_loss:
            status = "collapsed"
            reason = f"{at_chance}, training loss {last_train:.3f} >= {unfit_loss}"
        else:
            status = "overfit"
            reason = f"{at_chance}, training loss {last_train:.3f} < {unfit_loss}"
    elif not stopped_early:
        status = "capped"
        reason = f"reached max_epochs={max_epochs} without early stopping"
    elif best_epoch == int(by_epoch.index.min()):
        status, reason = "stalled", "stopped early; the first epoch stayed the best"
    else:
        status = "trained"
        reason = f"stopped early at epoch {epochs}, best epoch {best_epoch}"
    return RunHealth(
        status=status,
        reason=reason,
        epochs=epochs,
        best_epoch=int(best_epoch),
        stopped_early=bool(stopped_early),
        best_metric=best,
        last_metric=last,
        chance_metric=float(chance_metric),
        output_std=float(output_std),
        train_positives=int(train_positives),
        last_train_loss=last_train,
        history=[
            {k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")
        ],
    )


def _plain(value: Any) -> Any:
    """A JSON-ready scalar (numpy numbers become Python numbers)."""
    return value.item() if isinstance(value, np.generic) else value


def health_table(
    records: Iterable[tuple[Mapping[str, Any], RunHealth]],
) -> pd.DataFrame:
    """One row per run: the identifying fields given with each record (e.g. ``run_id``,
    ``arm``, ``train_size``, ``seed``) and the health fields except the history."""
    rows = []
    for keys, health in records:
        fields = health.to_dict()
        fields.pop("history")
        rows.append({**keys, **fields})
    return pd.DataFrame(rows)


def health_counts(health: pd.DataFrame) -> pd.Series:
    """How many runs of each class (:data:`STATUSES` order, zeros included)."""
    counts = health["status"].value_counts() if len(health) else pd.Series(dtype=int)
    return pd.Series({s: int(counts.get(s, 0)) for s in STATUSES}, name="runs")
