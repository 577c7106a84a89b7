"""Landslide-triggering events as plain data.

Each :class:`Event` records what the rest of the package needs to fetch, grid and label
one event: the area of interest (WGS84 bounds), the projected CRS of its 10 m grid, the
event date, the Sentinel-1 passes the paper used, the kind of landslide labels and where
the inventory and the paper's published datacube live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone

__all__ = ["DataSource", "PassGeometry", "Event", "EVENTS", "get_event", "event_names"]


@dataclass(frozen=True)
class DataSource:
    """A downloadable file: where it is, how to check it and how to cite it.

    Attributes
    ----------
    url:
        Direct download URL (``https://``) or a pooch ``doi:`` address.
    known_hash:
        ``"sha256:<hex>"`` / ``"md5:<hex>"`` checksum, or ``None`` where the provider
        publishes the checksum itself (Zenodo DOIs are checked against the record's
        md5).
    citation, license:
        Free text shown in the book.
    """

    url: str
    known_hash: str | None
    citation: str
    license: str


@dataclass(frozen=True)
class PassGeometry:
    """What a named Sentinel-1 pass most likely was, worked out from the orbit, not from
    data.

    Sentinel-1 flies 175 orbits in 12 days (S1A and S1B 6 days apart on every track), so
    a place is seen by a few relative orbits, each on its own days and at its own time
    of day. A circular ground-track model (anchored on S1A absolute orbit 13949,
    2016-11-15 07:22 UTC, relative orbit 52, and agreeing with the published Hokkaido
    tracks 46 descending / 68 ascending) gives, for each named date, the track(s) whose
    IW swath (about 29°–46° incidence, right-looking) covers the area that UTC day. The
    package never uses this to select data: direction and relative orbit are read from
    the cube.

    Attributes
    ----------
    platform:
        ``"S1A"`` or ``"S1B"``.
    orbit_state:
        ``"ascending"`` or ``"descending"``.
    relative_orbit:
        Relative orbit (track) number, 1–175.
    time_utc:
        Approximate overpass time, ``"HH:MM"`` UTC.
    incidence_deg:
        Approximate incidence angle at the area's centre, degrees.
    certainty:
        How sure, and the alternative if there is one.
    """

    platform: str
    orbit_state: str
    relative_orbit: int
    time_utc: str
    incidence_deg: float
    certainty: str


@dataclass(frozen=True)
class Event:
    """One landslide-triggering event.

    Attributes
    ----------
    name:
        Short key used everywhere (``"hokkaido"``, ``"kaikoura"``).
    title:
        Human-readable name for figures.
    magnitude:
        Moment magnitude (Mw) of the triggering earthquake.
    date:
        Day of the event (local calendar day, as usually quoted).
    time_utc:
        Origin time of the main shock (UTC). Passes strictly before it are pre-event,
        passes strictly after it are post-event.
    bounds_lonlat:
        Area of interest as ``(west, south, east, north)`` in degrees (EPSG:4326).
    crs:
        Projected CRS of the event grid (UTM zone, metres), e.g. ``"EPSG:32654"``.
    resolution:
        Pixel size of the event grid in metres.
    paper_pre_pass, paper_post_pass:
        The Sentinel-1 acquisition dates (UTC) the paper used before and after the
        event.
    paper_pre_geometry, paper_post_geometry:
        What those passes most likely were (:class:`PassGeometry`): documentation for
        the book, never used to select data.
    label_kind:
        ``"mask"`` (polygon inventory) or ``"points"`` (landslide centroids).
    inventory:
        Where the landslide inventory is published.
    datacube:
        The paper's published datacube (Zenodo record 7248056) for this event.
    """

    name: str
    title: str
    magnitude: float
    date: date
    time_utc: datetime
    bounds_lonlat: tuple[float, float, float, float]
    crs: str
    paper_pre_pass: date
    paper_post_pass: date
    label_kind: str
    inventory: DataSource
    datacube: DataSource
    resolution: float = 10.0
    notes: str = field(default="", compare=False)
    paper_pre_geometry: PassGeometry | None = field(default=None, compare=False)
    paper_post_geometry: PassGeometry | None = field(default=None, compare=False)


_PAPER_CUBES_DOI = "doi:10.5281/zenodo.7248056"
_PAPER_CUBES_CITATION = (
    "Böhm et al. (2022), datacubes for 'SAR-based landslide classification pretraining "
    "leads to better segmentation', Zenodo 10.5281/zenodo.7248056"
)

EVENTS: dict[str, Event] = {
    "hokkaido": Event(
        name="hokkaido",
        title="Hokkaido Eastern Iburi earthquake, Japan",
        magnitude=6.6,
        date=date(2018, 9, 6),
        time_utc=datetime(2018, 9, 5, 18, 7, 59, tzinfo=timezone.utc),
        bounds_lonlat=(141.85, 42.64, 142.10, 42.86),
        crs="EPSG:32654",
        paper_pre_pass=date(2018, 8, 24),
        paper_post_pass=date(2018, 9, 13),
        label_kind="mask",
        inventory=DataSource(
            url="doi:10.5281/zenodo.2577300",
            known_hash=None,
            citation=(
                "Zhang, Li, Wang & Iio (2019), Characteristics of landslides triggered "
                "by the 2018 Hokkaido Eastern Iburi earthquake, Zenodo "
                "10.5281/zenodo.2577300"
            ),
            license="CC-BY-4.0",
        ),
        datacube=DataSource(
            url=f"{_PAPER_CUBES_DOI}/hokkaido_japan.zip",
            known_hash=None,
            citation=_PAPER_CUBES_CITATION,
            license="CC-BY-4.0",
        ),
        notes=(
            "Polygon inventory: thousands of shallow landslides on pumice-covered "
            "hills."
        ),
        # 20 days apart: not one track. On each UTC day only one track's swath covers
        # the area.
        paper_pre_geometry=PassGeometry(
            "S1A",
            "descending",
            46,
            "20:40",
            40.0,
            "the only Sentinel-1 track over the area on 2018-08-24 (UTC)",
        ),
        paper_post_geometry=PassGeometry(
            "S1B",
            "ascending",
            68,
            "08:27",
            36.0,
            "the only Sentinel-1 track over the area on 2018-09-13 (UTC); with the "
            "pre-event pass a cross-track pair (opposite look directions)",
        ),
    ),
    "kaikoura": Event(
        name="kaikoura",
        title="Kaikōura earthquake, New Zealand",
        magnitude=7.8,
        date=date(2016, 11, 14),
        time_utc=datetime(2016, 11, 13, 11, 2, 56, tzinfo=timezone.utc),
        bounds_lonlat=(172.90, -43.02, 174.28, -41.60),
        crs="EPSG:32759",
        paper_pre_pass=date(2016, 8, 23),
        paper_post_pass=date(2016, 11, 15),
        label_kind="points",
        inventory=DataSource(
            url=(
                "https://github.com/loreabad6/KaikouraDammedLakes_public/raw/4f6db50b/"
                "ref_data/Landslides_Kaikoura_2016.kmz"
            ),
            known_hash=(
                "sha256:"
                "764162430d47d7c3b782885db9f8378cecb5c074773ccd20b26d16211bc542c5"
            ),
            citation=(
                "Massey et al. (2021), landslide inventory for the Mw 7.8 14 November "
                "2016 Kaikōura earthquake (GNS Science), centroids as packaged by "
                "loreabad6/KaikouraDammedLakes_public"
            ),
            license="MIT (packaging); inventory by GNS Science",
        ),
        datacube=DataSource(
            url=f"{_PAPER_CUBES_DOI}/kaikoura_newzealand.zip",
            known_hash=None,
            citation=_PAPER_CUBES_CITATION,
            license="CC-BY-4.0",
        ),
        notes="Point inventory: 7,355 landslide centroids.",
        # 84 days = 7 x 12 apart: both dates fall on the same two candidate tracks.
        paper_pre_geometry=PassGeometry(
            "S1A",
            "ascending",
            52,
            "07:22",
            37.0,
            "likely; S1B descending relative orbit 146 (about 17:38 UTC) also covers "
            "the area on both dates, if S1B (launched April 2016) acquired there that "
            "August",
        ),
        paper_post_geometry=PassGeometry(
            "S1A",
            "ascending",
            52,
            "07:22",
            37.0,
            "likely (S1A absolute orbit 13949 is an ascending 07:22 UTC pass over "
            "Kaikōura that day); S1B descending 146 at about 17:38 UTC is the "
            "alternative, as before",
        ),
    ),
}


def event_names() -> list[str]:
    """Names of the known events, sorted."""
    return sorted(EVENTS)


def get_event(name: str | Event) -> Event:
    """Look an event up by name (case-insensitive); an :class:`Event` passes through.

    Raises
    ------
    KeyError
        If the name is unknown; the message lists the known names.
    """
    if isinstance(name, Event):
        return name
    key = str(name).strip().lower().replace("ō", "o")
    if key not in EVENTS:
        raise KeyError(
            f"unknown event {name!r}; known events are {event_names()} "
            "(add a new one to sarslide.events.EVENTS)"
        )
    return EVENTS[key]
