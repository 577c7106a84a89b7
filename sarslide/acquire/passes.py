"""Passes from STAC items: group frames into overflights and choose the passes nearest
before and after the event from one relative orbit and orbit direction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import timedelta

import numpy as np
import pandas as pd

from sarslide.events import Event, get_event
from sarslide.orbits import normalize_orbit_state

from .errors import NoPassesError

__all__ = [
    "Pass",
    "PassSelection",
    "group_passes",
    "pass_table",
    "select_passes",
]


@dataclasses.dataclass(frozen=True)
class Pass:
    """One overflight: the scenes (frames) of one orbit, a few seconds apart.

    Attributes
    ----------
    time:
        Start of the first scene (UTC, timezone-naive).
    orbit_state, relative_orbit, platform:
        From the items' ``sat:`` and ``platform`` properties.
    items:
        The STAC items (frames) of the pass.
    coverage:
        Fraction (0–1) of the area of interest covered by the union of the frames.
    """

    time: pd.Timestamp
    orbit_state: str
    relative_orbit: int
    platform: str
    items: tuple
    coverage: float


def _item_time(item) -> pd.Timestamp:
    """Acquisition start of an item (``start_datetime``, else ``datetime``), naive
    UTC."""
    props = item.properties
    stamp = pd.Timestamp(props.get("start_datetime") or item.datetime)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def group_passes(
    items: Iterable,
    *,
    bounds_lonlat: tuple[float, float, float, float],
    max_gap: timedelta = timedelta(minutes=5),
) -> list[Pass]:
    """Group STAC items into passes: same orbit state, relative orbit and platform, and
    start times less than ``max_gap`` apart. Items lacking ``vv`` or ``vh`` are skipped.
    """
    import shapely
    from shapely.geometry import shape

    aoi = shapely.box(*bounds_lonlat)
    rows = []
    for item in items:
        props = item.properties
        if not {"vv", "vh"} <= set(item.assets):
            continue
        rows.append(
            (
                str(props.get("sat:orbit_state", "unknown")).lower(),
                int(props.get("sat:relative_orbit", -1)),
                str(props.get("platform", "")).lower(),
                _item_time(item),
                item,
            )
        )
    rows.sort(key=lambda r: (r[0], r[1], r[2], r[3]))
    passes: list[Pass] = []
    group: list = []

    def close(group):
        if not group:
            return
        union = shapely.union_all([shape(r[4].geometry) for r in group])
        cover = float(union.intersection(aoi).area / aoi.area) if aoi.area else 0.0
        state, rel, plat, t0 = group[0][0], group[0][1], group[0][2], group[0][3]
        passes.append(
            Pass(t0, state, rel, plat, tuple(r[4] for r in group), round(cover, 6))
        )

    for row in rows:
        if group and (row[:3] != group[-1][:3] or row[3] - group[-1][3] > max_gap):
            close(group)
            group = []
        group.append(row)
    close(group)
    return sorted(passes, key=lambda p: p.time)


def pass_table(passes: Sequence[Pass], event: str | Event) -> pd.DataFrame:
    """One row per pass: time, side (pre/post), days from the event, orbit, coverage."""
    ev = get_event(event)
    t_event = pd.Timestamp(ev.time_utc).tz_convert("UTC").tz_localize(None)
    return pd.DataFrame(
        {
            "time": [p.time for p in passes],
            "side": ["pre" if p.time < t_event else "post" for p in passes],
            "days_from_event": [
                round((p.time - t_event) / pd.Timedelta(days=1), 2) for p in passes
            ],
            "orbit_state": [p.orbit_state for p in passes],
            "relative_orbit": [p.relative_orbit for p in passes],
            "platform": [p.platform for p in passes],
            "n_items": [len(p.items) for p in passes],
            "coverage": [p.coverage for p in passes],
        }
    )


@dataclasses.dataclass(frozen=True)
class PassSelection:
    """The passes chosen around an event, nearest first on each side."""

    pre: tuple[Pass, ...]
    post: tuple[Pass, ...]
    orbit_state: str
    relative_orbit: int

    @property
    def items(self) -> list:
        """All STAC items of the chosen passes (pre then post)."""
        return [it for p in (*self.pre, *self.post) for it in p.items]

    @property
    def passes(self) -> tuple[Pass, ...]:
        return (*self.pre, *self.post)


def select_passes(
    items: Iterable,
    event: str | Event,
    *,
    n_pre: int = 1,
    n_post: int = 1,
    orbit_state: str | None = None,
    relative_orbit: int | None = None,
    min_coverage: float = 0.95,
    bounds_lonlat: tuple[float, float, float, float] | None = None,
) -> PassSelection:
    """Choose the ``n_pre`` passes nearest before and ``n_post`` nearest after the
    event, all from one relative orbit and orbit direction (so the viewing geometry is
    the same and backscatter changes come from the ground, not the look angle).

    Passes covering less than ``min_coverage`` of the area are ignored. Among the tracks
    that have enough passes on both sides, the one whose chosen passes span the shortest
    time wins (ties: larger mean coverage, then lower relative orbit number).
    ``orbit_state`` / ``relative_orbit`` restrict the tracks considered.

    Raises
    ------
    NoPassesError
        When no track has enough passes before and after the event; the message lists
        what each track had.
    """
    ev = get_event(event)
    if n_pre < 1 or n_post < 1:
        raise ValueError(
            f"n_pre={n_pre}, n_post={n_post}: ask for at least one pass per side"
        )
    bounds = bounds_lonlat or ev.bounds_lonlat
    passes = group_passes(items, bounds_lonlat=bounds)
    wanted_state = (
        normalize_orbit_state(orbit_state) if orbit_state is not None else None
    )
    t_event = pd.Timestamp(ev.time_utc).tz_convert("UTC").tz_localize(None)
    tracks = _passes_by_track(passes, wanted_state, relative_orbit)
    report, best, best_key = [], None, None
    for (state, rel), track in sorted(tracks.items()):
        usable = [p for p in track if p.coverage >= min_coverage]
        pre = sorted(
            (p for p in usable if p.time < t_event), key=lambda p: t_event - p.time
        )
        post = sorted(
            (p for p in usable if p.time > t_event), key=lambda p: p.time - t_event
        )
        report.append(
            f"{state} orbit {rel}: {len(pre)} pre / {len(post)} post passes with "
            f"coverage >= {min_coverage:.0%} (of {len(track)} passes)"
        )
        if len(pre) < n_pre or len(post) < n_post:
            continue
        chosen_pre, chosen_post = tuple(pre[:n_pre]), tuple(post[:n_post])
        span = chosen_post[-1].time - chosen_pre[-1].time
        cover = np.mean([p.coverage for p in (*chosen_pre, *chosen_post)])
        key = (span, -cover, rel)
        if best_key is None or key < best_key:
            best_key = key
            best = PassSelection(chosen_pre, chosen_post, state, rel)
    if best is None:
        filters = []
        if wanted_state:
            filters.append(f"orbit_state={wanted_state!r}")
        if relative_orbit is not None:
            filters.append(f"relative_orbit={relative_orbit}")
        raise NoPassesError(
            f"no track has {n_pre} pass(es) before and {n_post} after the event "
            f"({t_event.isoformat()} UTC)"
            + (f" with {', '.join(filters)}" if filters else "")
            + ": "
            + ("; ".join(report) if report else f"{len(passes)} passes found in total")
            + ". Widen days_before/days_after, lower min_coverage or drop the orbit "
            "filters."
        )
    return best


def _passes_by_track(
    passes: Sequence[Pass], wanted_state: str | None, relative_orbit: int | None
) -> dict[tuple[str, int], list[Pass]]:
    """``(orbit_state, relative_orbit)`` -> the passes of that track that pass the
    filters."""
    tracks: dict[tuple[str, int], list[Pass]] = {}
    for p in passes:
        if wanted_state is not None and p.orbit_state != wanted_state:
            continue
        if relative_orbit is not None and p.relative_orbit != int(relative_orbit):
            continue
        tracks.setdefault((p.orbit_state, p.relative_orbit), []).append(p)
    return tracks
