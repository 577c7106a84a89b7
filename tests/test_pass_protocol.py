"""Which passes make the before/after pair: the paper's named passes, or one orbit
track.

The test cube holds Hokkaido passes on four Sentinel-1 tracks (ascending 68 and 170,
descending 46 and 119) on the dates those tracks really fly over Iburi (S1A and S1B, 6
days apart on each track), including the paper's 2018-08-24 and 2018-09-13. Every time
step has its own constant backscatter (``vv = 0.01 * (position + 1)``), so the averaged
pair says exactly which passes went into it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sarslide.acquire.paper import relative_orbit_from_absolute
from sarslide.chips import make_chips
from sarslide.cube import validate_cube
from sarslide.events import get_event
from sarslide.experiment import Experiment
from sarslide.orbits import same_track_possible
from sarslide.passes import PassSelectionError, cube_passes, pass_pair

# (time UTC, orbit_state, relative_orbit); event 2018-09-05T18:07:59Z.
PASSES = [
    ("2018-08-23T20:49", "descending", 119),
    ("2018-08-24T20:40", "descending", 46),  # the paper's pre-event pass (S1A)
    ("2018-08-27T08:18", "ascending", 170),
    ("2018-09-01T08:27", "ascending", 68),  # nearest ascending-68 pre
    ("2018-09-04T20:49", "descending", 119),  # nearest pre of any track
    ("2018-09-07T08:27", "ascending", 68),  # nearest post of any track
    ("2018-09-13T08:27", "ascending", 68),  # the paper's post-event pass (S1B)
    ("2018-09-14T08:18", "ascending", 170),
    ("2018-09-16T20:49", "descending", 119),
    ("2018-09-17T20:40", "descending", 46),
]


def orbit_cube(
    passes=PASSES, *, coords=("orbit_state", "relative_orbit"), size=32
) -> xr.Dataset:
    times = pd.DatetimeIndex([t for t, _, _ in passes])
    level = 0.01 * (np.arange(len(passes)) + 1)
    vv = np.broadcast_to(level[:, None, None], (len(passes), size, size)).astype(
        "float32"
    )
    labels = np.zeros((size, size), np.uint8)
    labels[2:6, 2:6] = 1
    extra = {}
    if "orbit_state" in coords:
        extra["orbit_state"] = ("time", np.array([s for _, s, _ in passes]))
    if "relative_orbit" in coords:
        extra["relative_orbit"] = (
            "time",
            np.array([r for _, _, r in passes], dtype="int16"),
        )
    cube = xr.Dataset(
        {
            "vv": (("time", "y", "x"), vv.copy()),
            "vh": (("time", "y", "x"), vv / 4),
            "landslides": (("y", "x"), labels),
        },
        coords={
            "time": times,
            "y": 4_700_000.0 - 10.0 * (np.arange(size) + 0.5),
            "x": 580_000.0 + 10.0 * (np.arange(size) + 0.5),
            **extra,
        },
        attrs={
            "event": "hokkaido",
            "event_time": "2018-09-05T18:07:59+00:00",
            "label_kind": "mask",
            "source": "test",
        },
    )
    return validate_cube(cube.rio.write_crs("EPSG:32654"))


def level_of(when: str, passes=PASSES) -> float:
    return 0.01 * ([t for t, _, _ in passes].index(when) + 1)


def test_named_passes_are_exactly_the_papers():
    ev = get_event("hokkaido")
    assert (str(ev.paper_pre_pass), str(ev.paper_post_pass)) == (
        "2018-08-24",
        "2018-09-13",
    )
    pair = pass_pair(orbit_cube(), named=True)
    assert pair["pre_vv"].values[0, 0] == pytest.approx(level_of("2018-08-24T20:40"))
    assert pair["post_vv"].values[0, 0] == pytest.approx(level_of("2018-09-13T08:27"))
    assert pair.attrs["pre_tracks"] == ["descending 46"]
    assert pair.attrs["post_tracks"] == ["ascending 68"]
    assert pair.attrs["same_track"] is False  # the paper's Hokkaido pair is cross-track
    assert pair.attrs["pass_rule"] == "named"


def test_paper_profile_chips_use_the_named_passes():
    chips = make_chips(orbit_cube(), 16, named_passes=True)
    assert chips.attrs["pre_times"][0].startswith("2018-08-24T20:40")
    assert chips.attrs["post_times"][0].startswith("2018-09-13T08:27")
    np.testing.assert_allclose(
        chips.images[:, 0], level_of("2018-08-24T20:40"), rtol=1e-6
    )
    np.testing.assert_allclose(
        chips.images[:, 2], level_of("2018-09-13T08:27"), rtol=1e-6
    )
    assert chips.attrs["same_track"] is False


def test_automatic_pair_comes_from_one_track():
    # By hand: per track, nearest pre -> nearest post: desc 119 09-04 -> 09-16 (12 d),
    # asc 68 09-01 -> 09-07 (6 d), asc 170 08-27 -> 09-14 (18 d), desc 46 08-24 -> 09-17
    # (24 d). The shortest span wins: ascending 68.
    cube = orbit_cube()
    pair = pass_pair(cube)
    assert pair.attrs["pre_tracks"] == pair.attrs["post_tracks"] == ["ascending 68"]
    assert pair["pre_vv"].values[0, 0] == pytest.approx(level_of("2018-09-01T08:27"))
    assert pair["post_vv"].values[0, 0] == pytest.approx(level_of("2018-09-07T08:27"))
    assert pair.attrs["same_track"] is True and pair.attrs["pass_rule"] == "same-track"
    # two passes before: only descending 119 has two (08-23, 09-04), so it wins.
    two = pass_pair(cube, n_pre=2, n_post=1)
    assert two.attrs["pre_tracks"] == ["descending 119"] * 2
    expected = (level_of("2018-09-04T20:49") + level_of("2018-08-23T20:49")) / 2
    assert two["pre_vv"].values[0, 0] == pytest.approx(expected)
    # the filters restrict the tracks considered
    desc = pass_pair(cube, orbit_state="d")
    assert desc.attrs["pre_tracks"] == ["descending 119"]
    assert (
        pass_pair(cube, relative_orbit=46)
        .attrs["post_times"][0]
        .startswith("2018-09-17")
    )


def test_opting_out_gives_the_nearest_passes_of_any_track():
    pair = pass_pair(orbit_cube(), same_track=False)
    assert pair["pre_vv"].values[0, 0] == pytest.approx(level_of("2018-09-04T20:49"))
    assert pair["post_vv"].values[0, 0] == pytest.approx(level_of("2018-09-07T08:27"))
    assert pair.attrs["same_track"] is False and pair.attrs["pass_rule"] == "any-track"


def test_a_mixed_automatic_pair_is_refused_naming_both_passes():
    mixed = [PASSES[1], PASSES[6]]  # desc 46 before, asc 68 after: no common track
    cube = orbit_cube(mixed)
    with pytest.raises(PassSelectionError) as err:
        pass_pair(cube)
    msg = str(err.value)
    assert "2018-08-24 20:40 UTC descending, relative orbit 46" in msg
    assert "2018-09-13 08:27 UTC ascending, relative orbit 68" in msg
    assert "same_track=False" in msg
    with pytest.raises(PassSelectionError, match="relative orbit 46"):
        make_chips(cube, 16)  # the chip pipeline refuses it too
    # the caller may still ask for it, by name or by opting out
    assert (
        pass_pair(cube, pre="2018-08-24", post="2018-09-13").attrs["pass_rule"]
        == "caller"
    )
    assert pass_pair(cube, same_track=False).attrs["same_track"] is False


def test_a_missing_named_pass_lists_the_passes_the_cube_has():
    without = [p for p in PASSES if not p[0].startswith("2018-09-13")]
    with pytest.raises(PassSelectionError) as err:
        pass_pair(orbit_cube(without), named=True)
    msg = str(err.value)
    assert "post-event pass 2018-09-13 (UTC day) is not in the cube" in msg
    assert f"the cube has {len(without)} pass time step(s)" in msg
    for when, state, rel in without:
        stamp = pd.Timestamp(when)
        assert f"{stamp:%Y-%m-%d %H:%M} UTC {state}, relative orbit {rel}" in msg


def test_named_passes_need_one_pass_a_side_and_the_right_side():
    cube = orbit_cube()
    with pytest.raises(ValueError, match="n_pre=2 but 1 pre-event pass"):
        pass_pair(cube, n_pre=2, named=True)
    with pytest.raises(PassSelectionError, match="other side of the event"):
        pass_pair(cube, pre="2018-09-13")
    # a day with two passes needs the time
    two_a_day = PASSES + [("2018-09-13T20:32", "descending", 148)]
    with pytest.raises(PassSelectionError, match="holds 2 different passes"):
        pass_pair(orbit_cube(sorted(two_a_day)), post="2018-09-13")
    pair = pass_pair(
        orbit_cube(sorted(two_a_day)), post="2018-09-13T20:32", pre="2018-08-24"
    )
    assert pair.attrs["post_tracks"] == ["descending 148"]


def test_one_named_side_picks_the_other_from_the_same_track():
    pair = pass_pair(orbit_cube(), post="2018-09-13")
    assert pair.attrs["pre_tracks"] == ["ascending 68"]
    assert pair["pre_vv"].values[0, 0] == pytest.approx(level_of("2018-09-01T08:27"))


def test_same_track_timing_rule():
    # Sentinel-1: one relative orbit repeats every 6 days (S1A + S1B) at the same time.
    assert not same_track_possible("2018-08-24T20:40", "2018-09-13T08:27")  # 19.5 days
    assert not same_track_possible("2018-08-24T20:40", "2018-09-13T20:40")  # 20 days
    assert same_track_possible("2018-08-24T20:40", "2018-09-17T20:41")  # 24 days
    assert same_track_possible(
        "2016-08-23T07:22", "2016-11-15T07:22"
    )  # Kaikoura, 84 = 7 x 12
    assert not same_track_possible(
        "2018-09-01T08:27", "2018-09-07T09:27"
    )  # an hour off


def test_tracks_are_inferred_from_timing_when_the_cube_records_none():
    bare = orbit_cube(coords=())
    table = cube_passes(bare)
    assert table["track_inferred"].all() and (table["orbit_state"] == "unknown").all()
    # the four real tracks are recovered from the dates and times alone
    assert table.groupby("track").ngroups == 4
    assert table.loc[[1, 9], "track"].nunique() == 1  # 08-24 and 09-17: one track
    assert table.loc[1, "track"] != table.loc[6, "track"]  # 08-24 and 09-13: two
    assert pass_pair(bare)["post_vv"].values[0, 0] == pytest.approx(
        level_of("2018-09-07T08:27")
    )
    with pytest.raises(PassSelectionError, match="different orbit tracks"):
        pass_pair(orbit_cube([PASSES[1], PASSES[6]], coords=()))
    # direction alone: tracks split by timing within each direction
    states_only = cube_passes(orbit_cube(coords=("orbit_state",)))
    assert states_only.groupby("track").ngroups == 4


def test_frames_of_one_overflight_are_one_pass():
    # Two frames 25 s apart on ascending 68 after the event, each covering half the
    # area.
    frames = PASSES[:6] + [
        ("2018-09-13T08:27:00", "ascending", 68),
        ("2018-09-13T08:27:25", "ascending", 68),
    ]
    cube = orbit_cube(frames).copy(deep=True)
    cube["vv"][6, :, 16:] = np.nan
    cube["vh"][6, :, 16:] = np.nan
    cube["vv"][7, :, :16] = np.nan
    cube["vh"][7, :, :16] = np.nan
    table = cube_passes(cube)
    assert table.loc[6, "pass_id"] == table.loc[7, "pass_id"]
    pair = pass_pair(cube, post="2018-09-13")
    assert np.isfinite(pair["post_vv"].values).all()  # mosaicked, not one half
    assert pair["post_vv"].values[0, 0] == pytest.approx(
        level_of("2018-09-13T08:27:00", frames)
    )
    assert pair["post_vv"].values[0, -1] == pytest.approx(
        level_of("2018-09-13T08:27:25", frames)
    )


def test_relative_orbit_from_absolute_orbit():
    # ESA's rule, checked on products named with their absolute orbit:
    # S1A_IW_SLC__1SDV_20161115T072214_..._013949 (Kaikoura, ascending track 52),
    # S1B_IW_GRDH_1SDV_20180913T015503_..._012690 (track 64).
    assert relative_orbit_from_absolute("sentinel-1a", 13949) == 52
    assert relative_orbit_from_absolute("S1B", 12690) == 64
    assert relative_orbit_from_absolute("Sentinel-1A", 175 + 73) == 1
    assert relative_orbit_from_absolute("sentinel-1c", 100) is None
    assert relative_orbit_from_absolute("landsat-8", 100) is None


def test_prepare_event_takes_the_pass_rule_from_the_profile(tmp_path):
    from sarslide.datasets import prepare_event
    from sarslide.profiles import get_profile

    small = get_profile("demo").with_overrides(
        synthetic_shape=(256, 256), chip_size=32, split_scheme="text"
    )
    auto = prepare_event(Experiment.create("hokkaido", small, tmp_path))
    named = prepare_event(
        Experiment.create("hokkaido", small.with_overrides(named_passes=True), tmp_path)
    )
    assert auto.attrs["pass_rule"] == "same-track"
    assert named.attrs["pass_rule"] == "named"
    assert named.attrs["pre_times"][0].startswith("2018-08-24")
    assert named.attrs["post_times"][0].startswith("2018-09-13")


def test_a_bare_date_on_the_event_day_is_flagged():
    # A cube that stores dates only: 2018-09-05 could be S1A's 20:40 UTC pass, after the
    # 18:07 UTC event, although midnight sorts it before.
    dates = [
        ("2018-08-24", "descending", 46),
        ("2018-09-05", "descending", 46),
        ("2018-09-17", "descending", 46),
    ]
    cube = orbit_cube(dates)
    with pytest.warns(
        UserWarning, match="2018-09-05 00:00 UTC descending.*may have been taken after"
    ):
        pass_pair(cube)
    # named passes are the caller's choice: no warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pass_pair(cube, pre="2018-08-24", post="2018-09-17").attrs["same_track"]
