"""An interactive web map of a landslide map: density heatmap and ranked cells (folium).

:func:`web_map` draws the density heatmap (landslide area fraction per cell) as a
semi-transparent image and the ranked cells as clickable squares over a basemap, as a
:class:`folium.Map` — Leaflet in a self-contained HTML page, so it renders in a
notebook, on the static book site and in any browser, with no Jupyter widget (no
ipyleaflet). :func:`write_web_map` saves it as ``map.html`` (atomically).

Basemap tiles come from the network in the reader's browser. Where there is none (CI,
an offline laptop) build without tiles: ``tiles=None``, or set the environment variable
:data:`TILES_ENV` to ``none`` (``default_tiles`` reads it). The heatmap and cells are
embedded in the page either way; only the basemap is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from ..engine.atomic import atomic_file
from .errors import MappingError

if TYPE_CHECKING:
    import folium

__all__ = ["TILES_ENV", "default_tiles", "web_map", "write_web_map"]

#: Environment variable choosing the basemap: a folium tile name, or
#: ``none``/``0``/``off``.
TILES_ENV = "SARSLIDE_WEBMAP_TILES"
_NO_TILES = {"", "none", "0", "off", "false", "no"}


def default_tiles() -> str | None:
    """The basemap: ``$SARSLIDE_WEBMAP_TILES`` (``none`` = no basemap), else
    OpenStreetMap."""
    value = os.environ.get(TILES_ENV)
    if value is None:
        return "OpenStreetMap"
    return None if value.strip().lower() in _NO_TILES else value.strip()


def _heatmap_rgba(
    heatmap: xr.DataArray, cmap: str
) -> tuple[np.ndarray, list[list[float]]]:
    """The heatmap in lon/lat as RGBA uint8 (transparent where 0 or no data), and its
    ``[[south, west], [north, east]]`` bounds."""
    from matplotlib import colormaps
    from rasterio.enums import Resampling

    lonlat = heatmap.rio.reproject("EPSG:4326", resampling=Resampling.nearest)
    values = np.asarray(lonlat.values, dtype=np.float64)
    vmax = float(np.nanmax(values)) if np.isfinite(values).any() else 0.0
    scaled = np.clip(values / vmax, 0, 1) if vmax > 0 else np.zeros_like(values)
    rgba = colormaps[cmap](np.nan_to_num(scaled))
    rgba[..., 3] = np.where(np.isfinite(values) & (values > 0), 0.75, 0.0)
    west, south, east, north = lonlat.rio.bounds()
    return (rgba * 255).astype(np.uint8), [[south, west], [north, east]]


def web_map(
    heatmap: xr.DataArray,
    ranked: pd.DataFrame,
    *,
    tiles: str | None = "default",
    title: str = "",
    cmap: str = "YlOrRd",
) -> folium.Map:
    """A folium map of the density heatmap and the ranked cells.

    Parameters
    ----------
    heatmap:
        :func:`sarslide.mapping.density_heatmap` output (any projected CRS).
    ranked:
        :func:`sarslide.mapping.rank_cells` output; drawn as squares numbered by rank,
        with fraction and area in their tooltip.
    tiles:
        A folium basemap name (``"OpenStreetMap"``, ``"CartoDB positron"``), ``None``
        for none (offline), or ``"default"``: :func:`default_tiles`.
    title:
        Shown in the layer control's heatmap entry.

    Returns
    -------
    folium.Map
        Fitted to the heatmap's bounds; a layer control toggles heatmap and cells.
    """
    import folium

    from .export import cells_frame

    if heatmap.rio.crs is None:
        raise MappingError("the heatmap has no CRS; build it with density_heatmap(...)")
    tiles = default_tiles() if tiles == "default" else tiles
    image, bounds = _heatmap_rgba(heatmap, cmap)
    fmap = folium.Map(tiles=tiles, control_scale=True)
    folium.raster_layers.ImageOverlay(
        image=image,
        bounds=bounds,
        name=f"landslide density{' — ' + title if title else ''}",
        mercator_project=True,
    ).add_to(fmap)
    if len(ranked):
        cells = cells_frame(ranked, heatmap).to_crs("EPSG:4326")
        cells["landslide_fraction"] = cells["landslide_fraction"].round(4)
        cells["landslide_area_km2"] = cells["landslide_area_km2"].round(4)
        folium.GeoJson(
            cells[["rank", "landslide_fraction", "landslide_area_km2", "geometry"]],
            name="most affected cells",
            style_function=lambda _: {
                "color": "#000000",
                "weight": 2,
                "fillOpacity": 0,
            },
            tooltip=folium.GeoJsonTooltip(
                fields=["rank", "landslide_fraction", "landslide_area_km2"],
                aliases=["rank", "landslide area fraction", "landslide area (km²)"],
            ),
        ).add_to(fmap)
    folium.LayerControl().add_to(fmap)
    fmap.fit_bounds(bounds)
    return fmap


def write_web_map(fmap: folium.Map, path: str | os.PathLike) -> Path:
    """Save a folium map as one HTML page, atomically."""
    path = Path(path)
    with atomic_file(path, suffix=".html") as tmp:
        fmap.save(str(tmp))
    return path
