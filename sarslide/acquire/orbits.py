"""Orbit-direction names: ``'a'``/``'d'`` (paper cubes) and STAC's words, normalised."""

from __future__ import annotations


_ORBIT_STATES = {"a": "ascending", "d": "descending", "ascending": "ascending",
                 "descending": "descending"}


def _orbit_state(value: str) -> str:
    key = str(value).strip().lower()
    if key not in _ORBIT_STATES:
        raise ValueError(
            f"orbit_state {value!r} is not known; use 'ascending' or 'descending' ('a'/'d')"
        )
    return _ORBIT_STATES[key]
