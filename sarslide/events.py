"""Landslide-triggering events as plain data.

Each :class:`Event` records what the rest of the package needs to fetch, grid and label
one event: the area of interest (WGS84 bounds), the projected CRS of its 10 m grid, the
event date, the Sentinel-1 passes the paper used, the kind of landslide labels and where
the inventory and the paper's published datacube live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone

__all__ = ["DataSource", "Event", "EVENTS", "get_event", "event_names"]


@dataclass(frozen=True)
class DataSource:
    """A downloadable file: where it is, how to check it and how to cite it.

    Attributes
    ----------
    url:
        Direct download URL (``https://``) or a pooch ``doi:`` address.
    known_hash:
        ``"sha256:<hex>"`` / ``"md5:<hex>"`` checksum, or ``None`` where the provider
        publishes the checksum itself (Zenodo DOIs are checked against the record's md5).
    citation, license:
        Free text shown in the book.
    """

    url: str
    known_hash: str | None
    citation: str
    license: str


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
        The Sentinel-1 acquisition dates the paper used before and after the event.
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
                "Zhang, Li, Wang & Iio (2019), Characteristics of landslides triggered by "
                "the 2018 Hokkaido Eastern Iburi earthquake, Zenodo 10.5281/zenodo.2577300"
            ),
            license="CC-BY-4.0",
        ),
        datacube=DataSource(
            url=f"{_PAPER_CUBES_DOI}/hokkaido_japan.zip",
            known_hash=None,
            citation=_PAPER_CUBES_CITATION,
            license="CC-BY-4.0",
        ),
        notes="Polygon inventory: thousands of shallow landslides on pumice-covered hills.",
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
            known_hash="sha256:764162430d47d7c3b782885db9f8378cecb5c074773ccd20b26d16211bc542c5",
            citation=(
                "Massey et al. (2021), landslide inventory for the Mw 7.8 14 November 2016 "
                "Kaikōura earthquake (GNS Science), centroids as packaged by "
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
