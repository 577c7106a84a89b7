"""Sentinel-1 orbits: direction names, the repeat cycle, and which passes share a track.

A Sentinel-1 satellite flies over a place on an **ascending** pass (south to north, in
the evening) and on a **descending** pass (north to south, in the morning), on several
**relative orbits** (numbered tracks). One relative orbit repeats every 12 days per
satellite; S1A and S1B fly it 6 days apart, at the same time of day. Two acquisitions
from one track see the ground from the same side and incidence angle, so a difference
between them is a change on the ground.

:data:`ORBIT_STATES` is the one table of direction spellings in the package:
:func:`normalize_orbit_state` applies it to an argument a caller gives (and refuses an
unknown name), :func:`orbit_state_name` to a value a cube or a STAC item records (and
keeps an unknown name, so it can be reported).
"""

from __future__ import annotations

import pandas as pd

__all__ = [
    "ORBIT_STATES",
    "S1_REPEAT_DAYS",
    "TRACK_TOLERANCE",
    "normalize_orbit_state",
    "orbit_state_name",
    "same_track_possible",
]

#: Orbit-direction spellings (lower case) -> the direction: ``'a'``/``'d'`` as the
#: paper's cubes write them, and STAC's ``sat:orbit_state`` words.
ORBIT_STATES: dict[str, str] = {
    "a": "ascending",
    "d": "descending",
    "ascending": "ascending",
    "descending": "descending",
}
#: Sentinel-1's constellation repeat in days: two passes of one relative orbit are a
#: whole number of 6 days apart (12 for one satellite; S1A and S1B fly 6 days apart on
#: each track).
S1_REPEAT_DAYS: int = 6
#: How far the overpass time of one track may drift between repeats, and how far apart
#: the frames (time steps) of one overflight may be: 10 minutes.
TRACK_TOLERANCE: pd.Timedelta = pd.Timedelta(minutes=10)


def normalize_orbit_state(value: str) -> str:
    """``"ascending"`` or ``"descending"`` for ``value`` (``'a'``/``'d'`` or the word).

    Case and surrounding blanks are ignored.

    Raises
    ------
    ValueError
        For any other value (the message names it and the accepted spellings).
    """
    key = str(value).strip().lower()
    if key not in ORBIT_STATES:
        raise ValueError(
            f"orbit_state {value!r} is not known; use 'ascending' or 'descending' "
            "('a'/'d')"
        )
    return ORBIT_STATES[key]


def orbit_state_name(value: object) -> str:
    """The direction a cube records for a pass, as a lower-case word.

    ``'a'``/``'d'`` and the words map through :data:`ORBIT_STATES` (bytes are decoded,
    case and blanks ignored); an empty value is ``"unknown"``; any other value is kept,
    lower-cased, so that a message can name it.
    """
    key = str(value.decode() if isinstance(value, bytes) else value).strip().lower()
    return ORBIT_STATES.get(key, key or "unknown")


def same_track_possible(t1: object, t2: object) -> bool:
    """Whether two Sentinel-1 acquisitions can come from one relative orbit.

    Passes of one relative orbit repeat every 12 days per satellite and S1A/S1B share
    the track 6 days apart, at the same time of day: so the gap must be a whole number
    of :data:`S1_REPEAT_DAYS` days, to within :data:`TRACK_TOLERANCE`. ``t1``, ``t2``:
    anything :class:`pandas.Timestamp` accepts (naive = UTC). Hokkaido's named passes,
    2018-08-24 and 2018-09-13, are 20 days apart: never one track.
    """
    gap = abs(pd.Timestamp(t2) - pd.Timestamp(t1))
    period = pd.Timedelta(days=S1_REPEAT_DAYS)
    rest = gap % period
    return min(rest, period - rest) <= TRACK_TOLERANCE
