"""The event grid: the event's area in its UTM CRS at 10 m, as an odc-geo GeoBox."""

from __future__ import annotations

from sarslide.events import Event, get_event

__all__ = ["event_geobox"]


def event_geobox(
    event: str | Event,
    *,
    resolution: float | None = None,
    crs: str | None = None,
    bounds_lonlat: tuple[float, float, float, float] | None = None,
):
    """The event grid: ``event.bounds_lonlat`` in ``event.crs`` at ``event.resolution``.

    Returns an :class:`odc.geo.geobox.GeoBox` whose pixel edges sit on multiples of the
    resolution (so grids of different loads line up). ``resolution`` (metres), ``crs``
    and ``bounds_lonlat`` (W, S, E, N degrees) override the event's values.
    """
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import box

    ev = get_event(event)
    west, south, east, north = bounds_lonlat or ev.bounds_lonlat
    target = crs or ev.crs
    area = box(west, south, east, north, "EPSG:4326").to_crs(target)
    return GeoBox.from_bbox(
        area.boundingbox, crs=target, resolution=resolution or ev.resolution
    )
