"""Which passes form the before/after pair, and how each side becomes one image.

An event cube holds every pass a loader found. :func:`cube_passes` lists them, one row
per time step, with the side of the event each lies on and its orbit track (direction
and relative orbit, see :mod:`sarslide.orbits`). :func:`pass_pair` chooses the passes:
the event's named passes (the paper profile), passes the caller names, or the nearest
passes from one orbit track; it averages each side in linear power into the
:data:`~sarslide.cube.CHANNELS` images ``pre_vv, pre_vh, post_vv, post_vh``, the input
of every chip. This is the one place where a cube's passes are chosen
(:mod:`sarslide.acquire.passes` chooses which catalogued passes to download).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr

from .cube import BANDS, PAIR_SIDES, CubeError, event_time
from .events import get_event
from .orbits import TRACK_TOLERANCE, orbit_state_name, same_track_possible

__all__ = [
    "PassSelectionError",
    "cube_passes",
    "pass_pair",
]


def _times(cube: xr.Dataset) -> pd.DatetimeIndex:
    """The cube's pass times as a :class:`pandas.DatetimeIndex` (naive UTC)."""
    return pd.DatetimeIndex(cube["time"].values)


class PassSelectionError(CubeError):
    """The passes asked for do not exist in the cube, or would mix orbit tracks."""


def cube_passes(cube: xr.Dataset) -> pd.DataFrame:
    """One row per time step of ``cube``: when, which side of the event, which track.

    Direction and relative orbit are read from the cube's per-time coordinates
    ``orbit_state`` and ``relative_orbit`` (as every loader writes them; ``sat:`` names
    are accepted too). Where the cube records no relative orbit, time steps are put on
    one track when :func:`~sarslide.orbits.same_track_possible` allows it (the
    Sentinel-1 repeat) and the track is marked as inferred. Time steps minutes apart on
    one track are frames of one overflight and share a ``pass_id``; :func:`pass_pair`
    averages them as one pass.

    Returns
    -------
    pandas.DataFrame
        Indexed by time-step position; columns ``time`` (naive UTC), ``side``
        (``"pre"``/``"post"``), ``days_from_event`` (float), ``orbit_state`` (str,
        ``"unknown"`` if not recorded), ``relative_orbit`` (nullable Int64),
        ``platform`` (str, may be empty), ``track`` (str label, e.g.
        ``"descending 46"``), ``track_inferred`` (bool) and ``pass_id`` (int).
    """
    times = _times(cube)
    evt = event_time(cube)
    states = _per_time_values(cube, "orbit_state", "sat:orbit_state")
    rel = _per_time_values(cube, "relative_orbit", "sat:relative_orbit")
    plat = _per_time_values(cube, "platform", "sat:platform")
    n = len(times)
    table = pd.DataFrame(
        {
            "time": times,
            "side": np.where(times < evt, "pre", "post"),
            "days_from_event": np.round((times - evt) / pd.Timedelta(days=1), 3),
            "orbit_state": [orbit_state_name(s) for s in states]
            if states is not None
            else ["unknown"] * n,
            "relative_orbit": pd.array(
                [
                    int(r)
                    if r is not None and np.isfinite(float(r)) and int(r) > 0
                    else None
                    for r in rel
                ]
                if rel is not None
                else [None] * n,
                dtype="Int64",
            ),
            "platform": [str(p.decode() if isinstance(p, bytes) else p) for p in plat]
            if plat is not None
            else [""] * n,
        }
    )
    tracks, inferred = _track_labels(table, times)
    table["track"] = tracks
    table["track_inferred"] = inferred
    table["pass_id"] = _pass_ids(table, times, tracks)
    return table


def _per_time_values(cube: xr.Dataset, *names: str) -> np.ndarray | None:
    """Values of the first of ``names`` that is a (time,) variable of ``cube``, or None.

    Returns the values as a NumPy array of shape ``(time,)``.
    """
    for name in names:
        if name in cube.coords or name in cube.data_vars:
            da = cube[name]
            if tuple(da.dims) == ("time",):
                return np.asarray(da.values)
    return None


def _track_labels(
    table: pd.DataFrame, times: pd.DatetimeIndex
) -> tuple[list[str], list[bool]]:
    """Track label per time step (``"descending 46"``) and whether it was inferred.

    Without a relative orbit, time steps join the first earlier track of their
    direction that :func:`~sarslide.orbits.same_track_possible` allows, else start
    ``"<state> track <k>"``.
    """
    n = len(times)
    tracks, inferred = [""] * n, [False] * n
    anchors: list[
        tuple[str, pd.Timestamp, str]
    ] = []  # (orbit_state, first time, label)
    for i in np.argsort(times.values, kind="stable"):
        state, r = table.at[i, "orbit_state"], table.at[i, "relative_orbit"]
        if r is not pd.NA:
            tracks[i] = f"{state} {int(r)}"
            continue
        for a_state, a_time, label in anchors:
            if a_state == state and same_track_possible(a_time, times[i]):
                tracks[i] = label
                break
        else:
            label = f"{state} track {len(anchors) + 1}"
            anchors.append((state, times[i], label))
            tracks[i] = label
        inferred[i] = True
    return tracks, inferred


def _pass_ids(
    table: pd.DataFrame, times: pd.DatetimeIndex, tracks: list[str]
) -> np.ndarray:
    """One int id per overflight: one track and side, steps ≤ 10 min apart."""
    pass_id, last = np.zeros(len(times), dtype=int), {}
    next_id = 0
    for i in np.argsort(times.values, kind="stable"):
        prev = last.get(tracks[i])
        if (
            prev is not None
            and times[i] - times[prev] <= TRACK_TOLERANCE
            and table.at[i, "side"] == table.at[prev, "side"]
        ):
            pass_id[i] = pass_id[prev]
        else:
            pass_id[i] = next_id
            next_id += 1
        last[tracks[i]] = i
    return pass_id


def _describe(rows: pd.DataFrame) -> str:
    """``'2018-08-24 20:40 UTC descending, relative orbit 46'`` per pass, joined."""
    out = []
    for _, group in rows.groupby("pass_id", sort=False):
        first = group.iloc[0]
        rel = first["relative_orbit"]
        orbit = (
            f"relative orbit {int(rel)}"
            if rel is not pd.NA
            else f"relative orbit not recorded ({first['track']}, inferred)"
        )
        plat = f" {first['platform']}" if first["platform"] else ""
        frames = f", {len(group)} frames" if len(group) > 1 else ""
        out.append(
            f"{first['time']:%Y-%m-%d %H:%M} UTC{plat} {first['orbit_state']}, "
            f"{orbit}{frames}"
        )
    return "; ".join(out)


def _as_names(value) -> list[pd.Timestamp]:
    """The passes a caller names (one value or a list) as naive UTC timestamps."""
    if value is None:
        return []
    if isinstance(value, (str, pd.Timestamp)) or not hasattr(value, "__iter__"):
        value = [value]
    names = []
    for v in value:
        stamp = pd.Timestamp(v)
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        names.append(stamp)
    return names


def _named_rows(
    table: pd.DataFrame, name: pd.Timestamp, side: str, cube_table: pd.DataFrame
) -> pd.DataFrame:
    """The time steps of the one pass named by a date (UTC day) or a time (±10 min)."""
    if name == name.normalize():
        rows = table[table["time"].dt.normalize() == name]
        what = f"{name:%Y-%m-%d} (UTC day)"
    else:
        rows = table[(table["time"] - name).abs() <= TRACK_TOLERANCE]
        what = f"{name:%Y-%m-%d %H:%M} UTC (±10 min)"
    if rows.empty:
        raise PassSelectionError(
            f"the {side}-event pass {what} is not in the cube (after any orbit_state / "
            f"relative_orbit filter); the cube has {len(cube_table)} pass time "
            f"step(s): {_describe(cube_table)}. Name one of these, or load a cube that "
            "holds the pass"
        )
    if rows["side"].ne(side).any():
        raise PassSelectionError(
            f"the pass named as {side}-event, {what}, lies on the other side of the "
            f"event ({_describe(rows)})"
        )
    if rows["pass_id"].nunique() > 1:
        raise PassSelectionError(
            f"{what} holds {rows['pass_id'].nunique()} different passes: "
            f"{_describe(rows)}; name the time as well (e.g. '2018-09-13T08:27') or "
            "filter with orbit_state= / relative_orbit="
        )
    return rows


def pass_pair(
    cube: xr.Dataset,
    n_pre: int | None = None,
    n_post: int | None = None,
    orbit_state: str | None = None,
    *,
    relative_orbit: int | None = None,
    pre=None,
    post=None,
    named: bool = False,
    same_track: bool = True,
) -> xr.Dataset:
    """Choose passes before and after the event and average each side into one image.

    Which passes (checked in this order):

    * ``named=True``: exactly the event's named passes, ``Event.paper_pre_pass`` and
      ``paper_post_pass`` of ``cube.attrs["event"]`` (the paper profile: Hokkaido
      2018-08-24 / 2018-09-13, Kaikōura 2016-08-23 / 2016-11-15). One pass per side.
    * ``pre=`` / ``post=``: the passes the caller names, as dates (the whole UTC day)
      or times (±10 minutes), one or a list per side; a side left out is chosen
      automatically. Named passes may come from different tracks (``same_track`` is not
      enforced on them; the result's ``attrs["same_track"]`` says whether they share
      one).
    * otherwise, automatically, with ``same_track=True``: the ``n_pre`` nearest passes
      before and ``n_post`` nearest after the event **from one orbit track** (one orbit
      direction and one relative orbit, read from the cube's ``orbit_state`` and
      ``relative_orbit`` coordinates, see :func:`cube_passes`). Rule: among the tracks
      with enough passes on both sides, the one whose chosen passes span the shortest
      time (first chosen pre to last chosen post) wins; ties go to the track with the
      earlier first post-event pass, then to the lower
      ``(orbit_state, relative_orbit)``. If no track has enough passes on both sides
      the nearest passes would mix tracks: that is an error naming them.
    * ``same_track=False``: the nearest passes from any track (the result records
      whether the pair is cross-track).

    Time steps minutes apart on one track are frames of one overflight and count as one
    pass. Averaging is done in linear power with NaN ignored (a pixel is NaN only where
    every averaged pass is NaN), which lowers speckle and mosaics frames.

    A cross-track pair sees the ground from another incidence angle and, between an
    ascending and a descending pass, from the opposite side: slopes that face one radar
    and turn away from the other change their backscatter by several dB without any
    change on the ground, and that looks like change.

    Parameters
    ----------
    cube:
        A valid event cube.
    n_pre, n_post:
        How many passes to average on each side (>= 1; default 1). With named passes
        the number named wins; a different explicit number is an error.
    orbit_state, relative_orbit:
        Only passes with this direction (``"ascending"``/``"descending"``,
        ``"a"``/``"d"``) and relative orbit are considered.
    pre, post:
        Passes named by the caller (see above).
    named:
        Use the event's named passes.
    same_track:
        Require one track for automatically chosen passes.

    Returns
    -------
    xarray.Dataset
        Variables ``pre_vv``, ``pre_vh``, ``post_vv``, ``post_vh`` with dims (y, x),
        float32, plus ``landslides`` if the cube has it. ``attrs`` add ``pre_times`` /
        ``post_times`` (ISO strings, nearest first), ``pre_tracks`` / ``post_tracks``
        (e.g. ``"descending 46"`` per pass), ``same_track`` (bool) and ``pass_rule``
        (``"named"``, ``"caller"``, ``"same-track"`` or ``"any-track"``).

    Raises
    ------
    PassSelectionError
        A named pass missing from the cube (the message lists the passes it has),
        several passes on a named day, too few passes, or an automatic pair that would
        mix tracks.
    """
    for label, n in (("n_pre", n_pre), ("n_post", n_post)):
        if n is not None and (int(n) != n or n < 1):
            raise ValueError(f"{label}={n}: average at least one pass per side")
    if named:
        pre, post = _event_named_passes(cube, pre, post)
    full = cube_passes(cube)
    table, filters = _filter_passes(full, orbit_state, relative_orbit)
    chosen = _caller_named_passes(table, full, pre, post, n_pre, n_post, named)
    caller_named = bool(chosen)
    auto = [s for s in ("pre", "post") if s not in chosen]
    want = {"pre": n_pre or 1, "post": n_post or 1}
    if auto:
        evt = event_time(cube)
        _warn_undated_event_day(table, evt)
        if same_track:
            picks = _same_track_picks(table, chosen, auto, want, filters, evt)
        else:
            picks = {s: _side_passes(table, s, evt)[: want[s]] for s in auto}
        for s in auto:
            if len(picks[s]) < want[s]:
                raise PassSelectionError(
                    f"asked for {want[s]} {s}-event pass(es) but the cube has "
                    f"{len(_side_passes(table, s, evt))}"
                    + (f" with {filters}" if filters else "")
                    + "; lower the number of passes or load more"
                )
            chosen[s] = picks[s]
    rule = (
        "named"
        if named
        else "caller"
        if caller_named
        else "same-track"
        if same_track
        else "any-track"
    )
    return _average_pair(cube, chosen, rule)


def _event_named_passes(cube: xr.Dataset, pre, post) -> tuple[str, str]:
    """The paper's (pre, post) passes of ``cube.attrs['event']``, for ``named=True``."""
    if pre is not None or post is not None:
        raise ValueError(
            "named=True uses the event's named passes; do not also give pre= / post="
        )
    try:
        ev = get_event(cube.attrs.get("event", ""))
    except KeyError as err:
        raise PassSelectionError(
            f"named=True needs a known event in cube.attrs['event'] (got "
            f"{cube.attrs.get('event')!r}); name the passes with pre= / post= instead"
        ) from err
    return ev.paper_pre_pass, ev.paper_post_pass


def _filter_passes(
    full: pd.DataFrame, orbit_state: str | None, relative_orbit: int | None
) -> tuple[pd.DataFrame, str]:
    """Rows of :func:`cube_passes` that pass the orbit filters, and those as text."""
    table = full
    if orbit_state is not None:
        wanted = orbit_state_name(orbit_state)
        if wanted not in ("ascending", "descending"):
            raise ValueError(
                f"orbit_state={orbit_state!r}; use 'ascending' or 'descending' "
                "('a'/'d')"
            )
        if (full["orbit_state"] == "unknown").all():
            raise CubeError(
                f"orbit_state={orbit_state!r} asked for but the cube has no "
                "'orbit_state' coordinate"
            )
        table = table[table["orbit_state"] == wanted]
    if relative_orbit is not None:
        table = table[table["relative_orbit"] == int(relative_orbit)]
    filters = ", ".join(
        f
        for f in (
            orbit_state and f"orbit_state={orbit_state!r}",
            relative_orbit is not None and f"relative_orbit={relative_orbit}",
        )
        if f
    )
    return table, filters


def _caller_named_passes(
    table: pd.DataFrame, full: pd.DataFrame, pre, post, n_pre, n_post, named: bool
) -> dict[str, list[pd.DataFrame]]:
    """Per side with names: the rows of each named pass (sides without names absent)."""
    chosen: dict[str, list[pd.DataFrame]] = {}
    for side, names, n in (
        ("pre", _as_names(pre), n_pre),
        ("post", _as_names(post), n_post),
    ):
        if not names:
            continue
        if n is not None and n != len(names):
            raise ValueError(
                f"n_{side}={n} but {len(names)} {side}-event pass(es) are named"
                + (
                    " (named=True names one pass per side; use n_pre=n_post=1)"
                    if named
                    else ""
                )
            )
        chosen[side] = [_named_rows(table, name, side, full) for name in names]
    return chosen


def _side_passes(
    rows: pd.DataFrame, side: str, evt: pd.Timestamp
) -> list[pd.DataFrame]:
    """Passes (row groups by ``pass_id``) on ``side`` of the event, nearest first."""
    rows = rows[rows["side"] == side]
    groups = [g for _, g in rows.groupby("pass_id", sort=False)]
    return sorted(groups, key=lambda g: abs(g["time"].iloc[0] - evt))


def _warn_undated_event_day(table: pd.DataFrame, evt: pd.Timestamp) -> None:
    """Warn about passes stored as a bare date on the event's own UTC day.

    Such a pass may lie on either side of the event. The warning is attributed to the
    caller of :func:`pass_pair` (``stacklevel=3``).
    """
    undated = (table["time"] == table["time"].dt.normalize()) & (
        table["time"].dt.normalize() == evt.normalize()
    )
    if undated.any():
        warnings.warn(
            f"pass(es) {_describe(table[undated])} are stored as a date without a time "
            f"on the event's UTC day ({evt:%Y-%m-%d}, event at {evt:%H:%M} UTC), so "
            "they count as before the event although they may have been taken after "
            "it; name the passes with pre= / post=, or drop these with "
            "cube.drop_sel(time=...)",
            UserWarning,
            stacklevel=3,
        )


def _same_track_picks(
    table: pd.DataFrame,
    chosen: dict[str, list[pd.DataFrame]],
    auto: list[str],
    want: dict[str, int],
    filters: str,
    evt: pd.Timestamp,
) -> dict[str, list[pd.DataFrame]]:
    """The automatic sides' passes from the one track that spans the shortest time.

    Only tracks of already named passes are candidates; ties go to the earlier first
    post-event pass, then to the lower track label.
    """
    fixed = {
        g["track"].iloc[0] for s in chosen for g in chosen[s]
    }  # tracks of named passes
    candidates = []
    for track, rows in table.groupby("track", sort=True):
        if fixed and track not in fixed:
            continue
        picks = {s: _side_passes(rows, s, evt)[: want[s]] for s in auto}
        if any(len(picks[s]) < want[s] for s in auto):
            continue
        everything = [g for s in chosen for g in chosen[s]] + [
            g for s in auto for g in picks[s]
        ]
        first = min(g["time"].min() for g in everything)
        last = max(g["time"].max() for g in everything)
        posts = [g for g in everything if g["side"].iloc[0] == "post"]
        first_post = min(g["time"].min() for g in posts)
        candidates.append(((last - first, first_post, track), picks))
    if not candidates:
        raise _no_track_error(table, auto, want, filters, evt)
    _, picks = min(candidates, key=lambda c: c[0])
    return picks


def _no_track_error(
    table: pd.DataFrame,
    auto: list[str],
    want: dict[str, int],
    filters: str,
    evt: pd.Timestamp,
) -> PassSelectionError:
    """The error when no track has enough passes: too few overall, or mixed tracks."""
    nearest = {s: _side_passes(table, s, evt)[: want[s]] for s in ("pre", "post")}
    per_track = "; ".join(
        f"{track}: {(rows['side'] == 'pre').sum()} pre / "
        f"{(rows['side'] == 'post').sum()} post"
        for track, rows in table.groupby("track", sort=True)
    )
    short = [s for s in auto if len(nearest[s]) < want[s]]
    if short:
        s = short[0]
        return PassSelectionError(
            f"asked for {want[s]} {s}-event pass(es) but the cube has {len(nearest[s])}"
            + (f" with {filters}" if filters else "")
            + f" ({per_track or 'no passes'}); lower the number of passes or load more"
        )
    mixed = ""
    if all(len(nearest[s]) >= 1 for s in ("pre", "post")):
        mixed = (
            f"The nearest passes, before: {_describe(nearest['pre'][0])} and after: "
            f"{_describe(nearest['post'][0])}, come from different orbit tracks, and "
            "an automatic pair never mixes tracks (a different look direction or "
            "incidence changes the backscatter of slopes, which looks like change). "
        )
    return PassSelectionError(
        f"no orbit track has {want['pre'] if 'pre' in auto else 'the named'} pass(es) "
        f"before and {want['post'] if 'post' in auto else 'the named'} after the event"
        + (f" with {filters}" if filters else "")
        + f" ({per_track or 'no passes'}). "
        + mixed
        + "Name the passes with pre= / post=, lower n_pre / n_post, or pass "
        "same_track=False to accept a cross-track pair"
    )


def _average_pair(
    cube: xr.Dataset, chosen: dict[str, list[pd.DataFrame]], rule: str
) -> xr.Dataset:
    """Average the chosen passes of each side into ``CHANNELS`` (y, x) float32 images.

    Keeps ``landslides`` and the cube's attrs and CRS; adds the times, tracks,
    ``same_track`` and ``pass_rule`` attrs that :func:`pass_pair` documents.
    """
    out = xr.Dataset(coords={"y": cube["y"], "x": cube["x"]})
    for side in PAIR_SIDES:
        positions = np.concatenate([g.index.to_numpy() for g in chosen[side]])
        sel = cube.isel(time=np.sort(positions))
        for band in BANDS:
            out[f"{side}_{band}"] = (
                sel[band].mean("time", skipna=True).astype("float32")
            )
    if "landslides" in cube.variables:
        out["landslides"] = cube["landslides"]
    out.attrs.update(cube.attrs)
    tracks = {g["track"].iloc[0] for side in chosen for g in chosen[side]}
    for side in PAIR_SIDES:
        out.attrs[f"{side}_times"] = [
            g["time"].iloc[0].isoformat() for g in chosen[side]
        ]
        out.attrs[f"{side}_tracks"] = [str(g["track"].iloc[0]) for g in chosen[side]]
    out.attrs["same_track"] = len(tracks) == 1
    out.attrs["pass_rule"] = rule
    if cube.rio.crs is not None:
        out = out.rio.write_crs(cube.rio.crs)
    return out
