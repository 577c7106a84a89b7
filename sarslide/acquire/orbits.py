"""Orbit-direction names: ``'a'``/``'d'`` (paper cubes) and STAC's words, normalised."""

from __future__ import annotations

__all__ = ["normalize_orbit_state"]

_ORBIT_STATES = {
    "a": "ascending",
    "d": "descending",
    "ascending": "ascending",
    "descending": "descending",
}


def normalize_orbit_state(value: str) -> str:
    """``"ascending"`` or ``"descending"`` for ``value`` (``'a'``/``'d'`` or the word).

    Case and surrounding blanks are ignored.

    Raises
    ------
    ValueError
        For any other value (the message names it and the accepted spellings).
    """
    key = str(value).strip().lower()
    if key not in _ORBIT_STATES:
        raise ValueError(
            f"orbit_state {value!r} is not known; use 'ascending' or 'descending' ('a'/'d')"
        )
    return _ORBIT_STATES[key]
