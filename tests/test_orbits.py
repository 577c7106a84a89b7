"""Orbit-direction names and the Sentinel-1 repeat (sarslide.orbits).

References: the spellings the data sources write, by hand — the paper's datacubes record
``sat:orbit_state`` as ``'a'``/``'d'``, STAC items as ``'ascending'``/``'descending'`` —
and the repeat cycle from the Sentinel-1 mission (12 days per satellite, S1A and S1B
6 days apart on each track).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_pass_protocol import PASSES, orbit_cube

from sarslide.orbits import (
    normalize_orbit_state,
    orbit_state_name,
    same_track_possible,
)
from sarslide.passes import cube_passes

SPELLINGS = {
    "a": "ascending",
    "d": "descending",
    "A": "ascending",
    " D ": "descending",
    "ascending": "ascending",
    "Descending": "descending",
    " ASCENDING": "ascending",
}


@pytest.mark.parametrize(("value", "direction"), sorted(SPELLINGS.items()))
def test_both_readers_agree_on_every_known_spelling(value, direction):
    assert normalize_orbit_state(value) == direction
    assert orbit_state_name(value) == direction


@pytest.mark.parametrize("value", ["", "x", "asc", "left", None, 1])
def test_an_argument_with_an_unknown_direction_is_refused_by_name(value):
    with pytest.raises(ValueError, match=r"is not known; use 'ascending' or 'desc"):
        normalize_orbit_state(value)


def test_a_recorded_value_is_read_leniently_so_that_messages_can_name_it():
    assert orbit_state_name(b"a") == "ascending"  # zarr may hand back bytes
    assert orbit_state_name(b"descending") == "descending"
    assert orbit_state_name(np.str_("d")) == "descending"
    assert orbit_state_name("") == "unknown"
    assert orbit_state_name(" Left ") == "left"  # kept, lower-cased
    with pytest.raises(ValueError, match=r"orbit_state b'a' is not known"):
        normalize_orbit_state(b"a")  # an argument must be text


def test_a_cube_with_letters_lists_the_same_tracks_as_one_with_words():
    letters = ["D" if s == "descending" else "a" for _, s, _ in PASSES]
    words = cube_passes(orbit_cube())
    table = cube_passes(orbit_cube().assign_coords(orbit_state=("time", letters)))
    assert table["orbit_state"].tolist() == words["orbit_state"].tolist()
    assert table["track"].tolist() == words["track"].tolist()


def test_the_repeat_cycle():
    assert same_track_possible("2018-08-24T20:40", "2018-09-05T20:40")  # 12 days
    assert same_track_possible("2018-08-24T20:40", "2018-08-30T20:45")  # 6 days, 5 min
    assert not same_track_possible("2018-08-24T20:40", "2018-08-30T20:55")  # 15 min
    assert not same_track_possible("2018-08-24T20:40", "2018-08-27T20:40")  # 3 days
