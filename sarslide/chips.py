"""Chips: tiles of an event's before/after pass pair, balanced and split like the paper.

A :class:`ChipSet` holds, for ``N`` chips of ``size × size`` pixels,

* ``images`` — ``(N, 4, size, size)`` float32 linear backscatter in the channel order
  :data:`sarslide.cube.CHANNELS` (``pre_vv, pre_vh, post_vv, post_vh``), NaN = no
  data;
* ``labels`` — ``(N, size, size)`` uint16: the landslide mask (0/1) or per-pixel point
  counts;
* ``meta`` — a table with one row per chip (id, pixel window, map bounds, landslide
  pixel and point counts, no-data share, split);
* ``attrs`` — event, label kind, CRS (WKT), chip size and the passes used;
* ``stats`` — the log10 standardisation statistics of the stage-1 training chips (a
  plain dict, see :mod:`sarslide.transforms`), once computed.

The pipeline is ``make_chips → balance → assign_splits`` and a chip store on disk
(:func:`save_chips`, :func:`open_chips`), written atomically.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .cube import CHANNELS, validate_cube
from .engine.atomic import atomic_directory, is_package_store, recover_directory
from .passes import pass_pair

__all__ = [
    "SPLITS",
    "SPLIT_FRACTIONS",
    "ChipError",
    "CorruptChipStoreError",
    "ChipSet",
    "make_chips",
    "balance",
    "assign_splits",
    "split_counts",
    "split_fractions",
    "SPLIT_SCHEMES",
    "TABLE_A1",
    "few_shot_subset",
    "FEW_SHOT_DRAWS",
    "draw_composition",
    "split_table",
    "split_comparison",
    "table_a1_difference",
    "save_chips",
    "open_chips",
]

SPLITS: tuple[str, ...] = ("stage1_train", "stage2_train", "validation", "test")
#: The paper's split: 50% stage-1 training, 25% stage-2 training, 12.5% validation,
#: 12.5% test.
SPLIT_FRACTIONS: tuple[float, ...] = (0.5, 0.25, 0.125, 0.125)
UNASSIGNED = "unassigned"


class ChipError(ValueError):
    """Chips cannot be made, balanced or split as asked; the message says why and what
    to do."""


class CorruptChipStoreError(ChipError):
    """A chip store on disk cannot be read (truncated array, broken ``info.json``,
    …)."""


@dataclass
class ChipSet:
    """Chips of one event: arrays, per-chip metadata and provenance (see module
    docstring)."""

    images: np.ndarray
    labels: np.ndarray
    meta: pd.DataFrame
    attrs: dict = field(default_factory=dict)
    stats: dict | None = None

    def __post_init__(self) -> None:
        n = len(self.meta)
        if self.images.ndim != 4 or self.images.shape[1] != len(CHANNELS):
            raise ChipError(
                f"images have shape {self.images.shape} but chips need (N, "
                f"{len(CHANNELS)}, H, W) with channels {list(CHANNELS)}"
            )
        if self.labels.shape != (self.images.shape[0],) + self.images.shape[2:]:
            raise ChipError(
                f"labels have shape {self.labels.shape} but images "
                f"{self.images.shape} need "
                f"labels of shape {(self.images.shape[0],) + self.images.shape[2:]}"
            )
        if self.images.shape[0] != n:
            raise ChipError(f"{self.images.shape[0]} chips but {n} metadata rows")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def has_landslide(self) -> np.ndarray:
        """(N,) bool: whether each chip holds any landslide pixel or point."""
        return self.meta["has_landslide"].to_numpy(dtype=bool)

    def subset(self, indices) -> "ChipSet":
        """The chips at the given positions (array of ints or a boolean mask), in that
        order."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return replace(
            self,
            images=np.asarray(self.images[idx]),
            labels=np.asarray(self.labels[idx]),
            meta=self.meta.iloc[idx].reset_index(drop=True),
        )

    def split(self, name: str) -> "ChipSet":
        """The chips of one split (one of :data:`SPLITS`)."""
        if name not in SPLITS:
            raise ChipError(f"unknown split {name!r}; splits are {list(SPLITS)}")
        if "split" not in self.meta or (self.meta["split"] == UNASSIGNED).all():
            raise ChipError(
                "chips have no splits yet; call assign_splits(chipset) first"
            )
        return self.subset((self.meta["split"] == name).to_numpy())


def make_chips(
    cube: xr.Dataset,
    size: int = 128,
    *,
    n_pre: int | None = None,
    n_post: int | None = None,
    orbit_state: str | None = None,
    relative_orbit: int | None = None,
    pre=None,
    post=None,
    named_passes: bool = False,
    same_track: bool = True,
    max_nodata_fraction: float = 0.1,
) -> ChipSet:
    """Cut the event's pass pair into non-overlapping ``size × size`` chips.

    Passes are chosen and averaged with :func:`sarslide.passes.pass_pair`, which takes
    the pass arguments as they are: ``named_passes=True`` uses exactly the event's named
    passes (the paper profile), ``pre=`` / ``post=`` passes the caller names, otherwise
    the ``n_pre`` nearest before and ``n_post`` nearest after the event (default 1) from
    one orbit track (``same_track=False`` allows a cross-track pair; ``orbit_state`` /
    ``relative_orbit`` restrict the tracks). A pixel is no data when any of the four
    channels is NaN; chips with a larger no-data share than ``max_nodata_fraction`` are
    dropped. A chip holds a landslide when any mask pixel is set (or any point falls
    inside it).

    Returns
    -------
    ChipSet
        All kept chips in row-major order, split ``"unassigned"``.
    """
    validate_cube(cube)
    size = _checked_chip_size(cube, size, max_nodata_fraction)
    pair = pass_pair(
        cube,
        n_pre=n_pre,
        n_post=n_post,
        orbit_state=orbit_state,
        relative_orbit=relative_orbit,
        pre=pre,
        post=post,
        named=named_passes,
        same_track=same_track,
    )
    stack = np.stack([np.asarray(pair[c].values, dtype=np.float32) for c in CHANNELS])
    images, labels, rows = _cut_chips(cube, stack, size, max_nodata_fraction)
    if not rows:
        raise ChipError(
            f"every {size}×{size} chip has more than {max_nodata_fraction:.0%} no "
            "data; check the cube's passes or raise max_nodata_fraction"
        )
    return ChipSet(
        images=np.stack(images).astype(np.float32),
        labels=np.stack(labels),
        meta=pd.DataFrame(rows),
        attrs=_chip_attrs(cube, pair, size),
    )


def _checked_chip_size(cube: xr.Dataset, size, max_nodata_fraction: float) -> int:
    """``size`` as an int in [8, min(ny, nx)]; ``max_nodata_fraction`` in [0, 1]."""
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        whole = isinstance(size, float) and float(size).is_integer()
        suggestion = int(size) if whole else 128
        raise ChipError(
            f"chip size must be a whole number of pixels (int), got {size!r} of type "
            f"{type(size).__name__}; use e.g. size={suggestion}"
        )
    size = int(size)
    if size < 8:
        raise ChipError(f"chip size {size} is too small; use at least 8 pixels")
    if size > ny or size > nx:
        raise ChipError(
            f"chip size {size} is larger than the cube ({ny}×{nx} px); use a smaller "
            "size or a larger area"
        )
    if not 0.0 <= max_nodata_fraction <= 1.0:
        raise ChipError(f"max_nodata_fraction={max_nodata_fraction} must lie in [0, 1]")
    return size


def _cut_chips(
    cube: xr.Dataset, stack: np.ndarray, size: int, max_nodata_fraction: float
) -> tuple[list[np.ndarray], list[np.ndarray], list[dict]]:
    """Row-major ``size × size`` tiles of ``stack`` (4, ny, nx) float32 and the labels.

    Returns the kept tiles' images (4, size, size) float32, labels (size, size) uint16
    and one meta row each (chip id, position, bounds in the cube's CRS metres, label
    counts, no-data share); tiles with more no data than ``max_nodata_fraction`` are
    skipped.
    """
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    labels_full = np.asarray(cube["landslides"].values).astype(np.uint16)
    nodata_full = ~np.isfinite(stack).all(axis=0)
    x = np.asarray(cube["x"].values, dtype=float)
    y = np.asarray(cube["y"].values, dtype=float)
    dx, dy = abs(x[1] - x[0]), abs(y[1] - y[0])
    kind = cube.attrs["label_kind"]
    images, labels, rows = [], [], []
    for r in range(0, ny - size + 1, size):
        for c in range(0, nx - size + 1, size):
            nodata = float(nodata_full[r : r + size, c : c + size].mean())
            if nodata > max_nodata_fraction:
                continue
            lab = labels_full[r : r + size, c : c + size]
            xs, ys = x[c : c + size], y[r : r + size]
            rows.append(
                {
                    "chip_id": f"{cube.attrs.get('event', 'event')}-r{r:05d}-c{c:05d}",
                    "row": r,
                    "col": c,
                    "size": size,
                    "xmin": float(xs.min() - dx / 2),
                    "ymin": float(ys.min() - dy / 2),
                    "xmax": float(xs.max() + dx / 2),
                    "ymax": float(ys.max() + dy / 2),
                    "landslide_pixels": int((lab > 0).sum()),
                    "landslide_points": int(lab.sum()) if kind == "points" else 0,
                    "has_landslide": bool(lab.any()),
                    "nodata_fraction": nodata,
                    "split": UNASSIGNED,
                }
            )
            images.append(stack[:, r : r + size, c : c + size])
            labels.append(lab)
    return images, labels, rows


def _chip_attrs(cube: xr.Dataset, pair: xr.Dataset, size: int) -> dict:
    """The chip set's attrs: event, label kind, source, CRS (WKT), size, resolution (m),
    passes."""
    x = np.asarray(cube["x"].values, dtype=float)
    return {
        "event": cube.attrs.get("event"),
        "label_kind": cube.attrs["label_kind"],
        "source": cube.attrs.get("source"),
        "crs": cube.rio.crs.to_wkt(),
        "chip_size": int(size),
        "resolution": float(abs(x[1] - x[0])),
        "pre_times": list(pair.attrs["pre_times"]),
        "post_times": list(pair.attrs["post_times"]),
        "pre_tracks": list(pair.attrs["pre_tracks"]),
        "post_tracks": list(pair.attrs["post_tracks"]),
        "same_track": bool(pair.attrs["same_track"]),
        "pass_rule": str(pair.attrs["pass_rule"]),
    }


def balance(chips: ChipSet, seed: int = 0) -> ChipSet:
    """Keep as many landslide-free chips as landslide chips (50/50), discarding at
    random.

    As in the paper, the surplus class is randomly thinned (normally the landslide-free
    chips; if landslide chips are the majority they are thinned instead). Order is kept.
    """
    has = chips.has_landslide
    n_pos, n_neg = int(has.sum()), int((~has).sum())
    if n_pos == 0 or n_neg == 0:
        raise ChipError(
            f"too few chips to balance: {n_pos} landslide and {n_neg} landslide-free "
            "chips; need both kinds (use a larger area, smaller chips, or check the "
            "labels)"
        )
    rng = np.random.default_rng(seed)
    n = min(n_pos, n_neg)
    keep_pos = np.flatnonzero(has)
    keep_neg = np.flatnonzero(~has)
    if n_pos > n:
        keep_pos = rng.choice(keep_pos, size=n, replace=False)
    if n_neg > n:
        keep_neg = rng.choice(keep_neg, size=n, replace=False)
    return chips.subset(np.sort(np.concatenate([keep_pos, keep_neg])))


#: The paper's Table A1: chips per split (stage1_train, stage2_train, validation, test).
#: Kaikōura has no segmentation labels, so no stage-2 split.
TABLE_A1: dict[str, tuple[int, int, int, int]] = {
    "hokkaido": (331, 110, 55, 56),
    "kaikoura": (1630, 0, 272, 272),
}
#: Named split schemes: ``"text"`` (§2's 50/25/12.5/12.5) and ``"table_a1"`` (Table A1).
SPLIT_SCHEMES: tuple[str, ...] = ("text", "table_a1")


def split_fractions(
    scheme: str | tuple[float, ...] = "text", *, event: str | None = None
) -> tuple[float, ...]:
    """The share of chips per split (in :data:`SPLITS` order) of a split scheme.

    ``"text"`` is :data:`SPLIT_FRACTIONS`; ``"table_a1"`` is the event's Table A1 counts
    divided by their total (``event`` required); a tuple of four non-negative fractions
    summing to 1 is returned as it is.
    """
    if isinstance(scheme, str):
        if scheme == "text":
            return SPLIT_FRACTIONS
        if scheme == "table_a1":
            if event not in TABLE_A1:
                raise ChipError(
                    f"split scheme 'table_a1' needs event= one of {sorted(TABLE_A1)}, "
                    f"got {event!r}"
                )
            counts = np.asarray(TABLE_A1[event], dtype=float)
            return tuple(float(c) for c in counts / counts.sum())
        raise ChipError(
            f"unknown split scheme {scheme!r}; use one of {list(SPLIT_SCHEMES)} or 4 "
            "fractions"
        )
    fractions = tuple(float(f) for f in scheme)
    if (
        len(fractions) != len(SPLITS)
        or min(fractions) < 0
        or not np.isclose(sum(fractions), 1.0)
    ):
        raise ChipError(
            f"split fractions {scheme} must be {len(SPLITS)} non-negative shares for "
            f"{list(SPLITS)} summing to 1"
        )
    return fractions


def _largest_remainder(n: int, fractions: tuple[float, ...]) -> np.ndarray:
    """Hamilton (largest-remainder) allocation of ``n`` items to ``fractions``.

    Each split first gets ``floor(n * fraction)``; the items left over go one each to
    the splits with the largest fractional remainders, ties to the earlier split.
    """
    exact = np.asarray(fractions, dtype=float) * n
    counts = np.floor(exact + 1e-9).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def split_counts(
    n_chips: int, scheme: str | tuple[float, ...] = "text", *, event: str | None = None
) -> dict[str, int]:
    """Chips per split for ``n_chips`` chips under a split scheme.

    Rounding rule: largest remainder over :func:`split_fractions` (ties go to the
    earlier split), so the counts always sum to ``n_chips`` and reproduce Table A1
    exactly at the paper's totals: ``split_counts(552, "table_a1", event="hokkaido")``
    gives 331 / 110 / 55 / 56 and ``split_counts(2174, "table_a1", event="kaikoura")``
    1,630 / 0 / 272 / 272.

    Returns
    -------
    dict
        Split name (:data:`SPLITS`) → number of chips.
    """
    if int(n_chips) != n_chips or n_chips < 0:
        raise ChipError(f"n_chips must be a non-negative integer, got {n_chips!r}")
    counts = _largest_remainder(int(n_chips), split_fractions(scheme, event=event))
    return {name: int(c) for name, c in zip(SPLITS, counts)}


def assign_splits(
    chips: ChipSet,
    scheme: str | tuple[float, ...] = "text",
    *,
    seed: int = 0,
    stratify: bool | None = None,
) -> ChipSet:
    """Assign every chip to one of :data:`SPLITS` under a split scheme
    (:func:`split_counts`).

    ``stratify=True`` allocates landslide and landslide-free chips separately with the
    same fractions, so on a balanced set every split is balanced (the §2 sentence: "we
    ensure that each of these datasets are also balanced"). ``stratify=False`` draws the
    split of every chip from one seeded permutation, so the split *totals* are exact —
    what Table A1 reports (the authors' notebook's Hokkaido test set holds 32 landslide
    and 24 landslide-free chips, so the published split was not stratified, although the
    text says every split is balanced). On ``"table_a1"`` a chip count other than the
    table's total is split by its shares, with a warning (:func:`table_a1_difference`).
    The default stratifies every scheme but ``"table_a1"``. The event of ``"table_a1"``
    is read from ``chips.attrs["event"]``.

    Raises
    ------
    ChipError
        If a split with a positive share would get no chip (of either kind, when
        stratified).
    """
    event = chips.attrs.get("event")
    fractions = split_fractions(scheme, event=event)
    if stratify is None:
        stratify = scheme != "table_a1"
    rng = np.random.default_rng(seed)
    split = np.empty(len(chips), dtype=object)
    groups = (
        [
            (
                np.flatnonzero(chips.has_landslide == cls),
                "landslide" if cls else "landslide-free",
            )
            for cls in (True, False)
        ]
        if stratify
        else [(np.arange(len(chips)), "")]
    )
    wanted = np.asarray(fractions) > 0
    for members, kind in groups:
        counts = _largest_remainder(len(members), fractions)
        if (counts[wanted] == 0).any():
            need = next(
                (
                    m
                    for m in range(1, 100_000)
                    if (_largest_remainder(m, fractions)[wanted] > 0).all()
                ),
                None,
            )
            empty = [name for name, c, w in zip(SPLITS, counts, wanted) if w and c == 0]
            raise ChipError(
                f"too few {kind + ' ' if kind else ''}chips to split: {len(members)}, "
                f"so split(s) {empty} would be empty; with fractions "
                f"{tuple(round(f, 4) for f in fractions)} "
                + (
                    f"at least {need} are needed"
                    if need
                    else "over 100,000 would be needed"
                )
                + "; use a larger area or smaller chips, or give every split a "
                "larger share"
            )
        members = rng.permutation(members)
        split[members] = np.repeat(np.array(SPLITS, dtype=object), counts)
    meta = chips.meta.copy()
    meta["split"] = split.astype(str)
    if scheme == "table_a1":
        difference = table_a1_difference(len(chips), event)
        if difference:
            warnings.warn(difference, stacklevel=2)
    return replace(chips, meta=meta)


def table_a1_difference(n_chips: int | ChipSet, event: str | None = None) -> str | None:
    """Why a split of ``n_chips`` balanced chips does not give Table A1's counts, or
    None.

    Table A1's counts (:data:`TABLE_A1`) come out exactly only when the cube yields
    exactly their total of balanced chips (Hokkaido: 331 + 110 + 55 + 56 = 552); any
    other number keeps the table's *shares* (largest remainder), not its counts.
    :func:`assign_splits` warns with this message on the ``"table_a1"`` scheme; chapter
    2 prints it for the run's chips. ``n_chips`` may be a chip set (its
    ``attrs["event"]`` is then the default event).
    """
    if isinstance(n_chips, ChipSet):
        event = event or n_chips.attrs.get("event")
        n_chips = len(n_chips)
    if event not in TABLE_A1:
        raise ChipError(f"Table A1 lists {sorted(TABLE_A1)}, not {event!r}")
    total = sum(TABLE_A1[event])
    if int(n_chips) == total:
        return None
    return (
        f"this cube yields {int(n_chips)} balanced chips, not Table A1's {total} for "
        f"{event}: the splits follow the table's shares, not its counts"
    )


#: How a few-shot training subset is drawn (:func:`few_shot_subset`).
FEW_SHOT_DRAWS: tuple[str, ...] = ("random", "balanced")


def few_shot_subset(
    chips: ChipSet, size: int | None, seed: int, draw: str = "random"
) -> np.ndarray:
    """Positions of a seeded few-shot training subset of ``size`` chips (None = all).

    ``draw="random"``
        ``size`` chips drawn uniformly without replacement from the pool, whatever they
        hold — the paper's "we randomly sub-sample the training set". A small draw may
        hold no landslide chip at all (a quarter of size-2 draws from a balanced pool).
    ``draw="balanced"``
        Half of the chips hold landslides (the larger half when ``size`` is odd).

    The draw depends on ``(seed, size)`` only, so each run of a grid has its own subset
    and reruns are identical. Returns sorted positions within ``chips``.
    """
    n = len(chips)
    if draw not in FEW_SHOT_DRAWS:
        raise ChipError(
            f"unknown few-shot draw {draw!r}; use one of {list(FEW_SHOT_DRAWS)}"
        )
    if size is None:
        return np.arange(n)
    if int(size) != size or size < 1:
        raise ChipError(
            f"training size must be a positive integer or None (all), got {size!r}"
        )
    size = int(size)
    if size > n:
        raise ChipError(
            f"train_size={size} but the training split holds only {n} chips; use at "
            f"most {n}"
        )
    rng = np.random.default_rng([seed, size])
    if draw == "random":
        return np.sort(rng.choice(n, size, replace=False))
    has = chips.has_landslide
    n_pos = (size + 1) // 2
    n_neg = size - n_pos
    if has.sum() < n_pos or (~has).sum() < n_neg:
        raise ChipError(
            f"cannot draw {n_pos} landslide and {n_neg} landslide-free chips from a "
            f"split with {int(has.sum())} and {int((~has).sum())}; use draw='random' "
            "or a smaller size"
        )
    pos = rng.choice(np.flatnonzero(has), n_pos, replace=False)
    neg = rng.choice(np.flatnonzero(~has), n_neg, replace=False)
    return np.sort(np.concatenate([pos, neg]))


def draw_composition(
    pool: ChipSet, sizes, seeds, draws: tuple[str, ...] = FEW_SHOT_DRAWS
) -> pd.DataFrame:
    """What each few-shot draw holds: one row per draw rule × size × seed.

    Columns ``draw``, ``train_size``, ``seed``, ``landslide_chips`` (of the
    ``train_size`` drawn) and ``landslide_pixels`` (their labelled pixels), from
    :func:`few_shot_subset`. Sizes larger than the pool are skipped; ``None`` (all) is
    the whole pool.
    """
    has = pool.has_landslide
    pixels = (
        pool.meta["landslide_pixels"].to_numpy()
        if "landslide_pixels" in pool.meta
        else ((pool.labels > 0).sum(axis=(1, 2)))
    )
    rows = []
    for draw in draws:
        for size in sizes:
            if size is not None and size > len(pool):
                continue
            for seed in seeds:
                idx = few_shot_subset(pool, size, seed, draw=draw)
                rows.append(
                    {
                        "draw": draw,
                        "train_size": len(pool) if size is None else int(size),
                        "seed": int(seed),
                        "landslide_chips": int(has[idx].sum()),
                        "landslide_pixels": int(pixels[idx].sum()),
                    }
                )
    return pd.DataFrame(rows)


def split_table(chips: ChipSet) -> pd.DataFrame:
    """Chips per split and kind, like the paper's Table A1 (rows: splits, then
    ``total``)."""
    meta = chips.meta
    table = (
        pd.crosstab(meta["split"], meta["has_landslide"])
        .reindex(
            index=[s for s in SPLITS if s in set(meta["split"])],
            columns=[True, False],
            fill_value=0,
        )
        .rename(columns={True: "landslide", False: "landslide_free"})
    )
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    table["share"] = table["total"] / len(meta)
    table.index.name = "split"
    table.columns.name = None
    return table


def split_comparison(chips: ChipSet, event: str | None = None) -> pd.DataFrame:
    """This chip set's split sizes next to the paper's Table A1 for the same event.

    Columns ``paper`` (Table A1's chips per split), ``paper_share``, ``this_run`` and
    ``this_run_share``; rows :data:`SPLITS` and ``total``. ``event`` defaults to
    ``chips.attrs["event"]``.
    """
    event = event or chips.attrs.get("event")
    if event not in TABLE_A1:
        raise ChipError(f"Table A1 lists {sorted(TABLE_A1)}, not {event!r}")
    paper = pd.Series(TABLE_A1[event], index=list(SPLITS), dtype=int)
    ours = (
        chips.meta["split"]
        .value_counts()
        .reindex(list(SPLITS), fill_value=0)
        .astype(int)
    )
    table = pd.DataFrame({"paper": paper, "this_run": ours})
    table.loc["total"] = table.sum()
    table.insert(1, "paper_share", table["paper"] / table.loc["total", "paper"])
    table["this_run_share"] = table["this_run"] / table.loc["total", "this_run"]
    table.index.name = "split"
    return table


def save_chips(chips: ChipSet, path: str | os.PathLike) -> Path:
    """Write a chip store (a directory) atomically.

    Layout: ``images.npy`` (N, 4, H, W) float32, ``labels.npy`` (N, H, W) uint16,
    ``meta.parquet`` (one row per chip) and ``info.json`` (attrs, stats, channel names).
    An interrupted write leaves the previous store (or none) in place; a full disk
    raises :class:`~sarslide.engine.filesystem.DiskFullError` with the device and the
    size needed.
    """
    path = Path(path)
    info = {
        "attrs": chips.attrs,
        "stats": chips.stats,
        "channels": list(CHANNELS),
        "format": 1,
    }
    needs = int(chips.images.nbytes + chips.labels.nbytes) + (1 << 16)  # + meta, info
    with atomic_directory(path, needs_bytes=needs) as tmp:
        tmp.mkdir(parents=True)
        np.save(tmp / "images.npy", chips.images)
        np.save(tmp / "labels.npy", chips.labels)
        chips.meta.to_parquet(tmp / "meta.parquet", index=False)
        (tmp / "info.json").write_text(json.dumps(info, indent=2))
    return path


def open_chips(path: str | os.PathLike, *, mmap: bool = False) -> ChipSet:
    """Open a chip store written by :func:`save_chips` (``mmap=True`` maps arrays
    lazily)."""
    path = recover_directory(path)
    missing = [
        n
        for n in ("images.npy", "labels.npy", "meta.parquet", "info.json")
        if not (path / n).exists()
    ]
    if missing and path.is_dir() and is_package_store(path) and len(missing) < 4:
        # a store the package wrote that lost files: corrupt, so prepare_event rebuilds
        # it
        raise CorruptChipStoreError(
            f"{path} is an incomplete chip store: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing. Delete it (rm -r "
            f"'{path}') and "
            "rebuild it, e.g. datasets.prepare_event(..., rebuild=True), which also "
            "rebuilds "
            "corrupt caches itself"
        )
    if missing:
        raise FileNotFoundError(
            f"{path} is not a complete chip store (missing {missing}); rebuild it with "
            "save_chips"
        )

    def corrupt(name: str, err: BaseException) -> CorruptChipStoreError:
        return CorruptChipStoreError(
            f"{path / name} is corrupt ({type(err).__name__}: {err}): the chip store "
            f"at {path} cannot be read. Delete it (rm -r '{path}') and rebuild it, "
            "e.g. datasets.prepare_event(..., rebuild=True), which also rebuilds "
            "corrupt caches itself"
        )

    try:
        info = json.loads((path / "info.json").read_text())
        attrs, stats = info["attrs"], info["stats"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise corrupt("info.json", err) from err
    mode = "r" if mmap else None
    arrays = {}
    for name in ("images", "labels"):
        try:
            arrays[name] = np.load(path / f"{name}.npy", mmap_mode=mode)
        except (ValueError, OSError, EOFError) as err:  # truncated or not a .npy file
            raise corrupt(f"{name}.npy", err) from err
    try:
        meta = pd.read_parquet(path / "meta.parquet")
    except Exception as err:  # pyarrow raises its own error types for a broken file
        raise corrupt("meta.parquet", err) from err
    try:
        return ChipSet(
            images=arrays["images"],
            labels=arrays["labels"],
            meta=meta,
            attrs=attrs,
            stats=stats,
        )
    except ChipError as err:  # the files disagree on the number or shape of chips
        raise corrupt("images.npy", err) from err
