from datetime import date

import pytest
from pyproj import CRS

from sarslide.events import EVENTS, get_event
from sarslide.profiles import PROFILE_ENV, get_profile


def test_events_hold_the_papers_facts():
    hok, kai = get_event("hokkaido"), get_event("Kaikōura")
    assert (hok.magnitude, hok.date, hok.label_kind) == (6.6, date(2018, 9, 6), "mask")
    assert (kai.magnitude, kai.date, kai.label_kind) == (
        7.8,
        date(2016, 11, 14),
        "points",
    )
    assert (hok.paper_pre_pass, hok.paper_post_pass) == (
        date(2018, 8, 24),
        date(2018, 9, 13),
    )
    assert (kai.paper_pre_pass, kai.paper_post_pass) == (
        date(2016, 8, 23),
        date(2016, 11, 15),
    )


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_event_crs_is_the_utm_zone_of_its_area(name):
    evt = get_event(name)
    crs = CRS.from_user_input(evt.crs)
    assert crs.is_projected
    west, south, east, north = evt.bounds_lonlat
    lon = (west + east) / 2
    zone = int((lon + 180) // 6) + 1
    assert crs.utm_zone == f"{zone}{'N' if south > 0 else 'S'}"
    # The paper's passes bracket the event.
    assert evt.paper_pre_pass < evt.time_utc.date() < evt.paper_post_pass


def test_unknown_event_names_the_known_ones():
    with pytest.raises(
        KeyError, match=r"unknown event 'nepal'.*\['hokkaido', 'kaikoura'\]"
    ):
        get_event("nepal")


def test_profile_from_environment(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert get_profile().name == "demo"
    monkeypatch.setenv(PROFILE_ENV, "paper")
    paper = get_profile()
    assert paper.name == "paper" and not paper.offline
    assert (paper.batch_size, paper.learning_rate, paper.patience, paper.top_k) == (
        32,
        1e-3,
        50,
        5,
    )
    assert paper.train_sizes == (2, 5, 10, 20, None)
    assert len(paper.seeds) == 3 and len(paper.seeds_smallest) == 5
    assert get_profile("demo").offline  # an explicit name beats the environment
    with pytest.raises(KeyError, match="unknown profile 'colab'"):
        get_profile("colab")
