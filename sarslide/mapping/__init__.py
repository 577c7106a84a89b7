"""Rapid-response mapping: area-wide inference, calibrated maps, density heatmaps,
exports.

The paper's purpose is rapid assessment after a disaster: from one post-event pass, map
where landslides are and which areas are hit hardest. :mod:`~sarslide.mapping.pipeline`
does it in one call, :func:`map_scene`: a :class:`Scene` (the pass pair and what it is)
and :class:`MapModels` (a stage-2 ensemble, its training statistics and validation
chips) in, a :class:`SceneMap` out (probability, binary map, density heatmap, ranked
cells, threshold, quality against the truth, provenance), which
:func:`write_map_folder` writes as files. ``sarslide map`` and chapter 7 both run it.
Its steps, one job per module:

1. :mod:`~sarslide.mapping.windows` — :func:`predict_probability` runs a model over a
   whole pass pair (any size) in overlapping windows and blends them into one
   probability raster with no seams; :func:`predict_raw` does the same for a score
   computed from *linear* backscatter, such as the log-ratio baseline
   (:func:`sarslide.baseline.log_ratio_score`). Both share one window plan
   (:class:`SlidingWindows`, :func:`block_plan`); what runs on a window (a torch module,
   a callable, an ensemble averaged by :func:`sarslide.metrics.ensemble_mean`) is built
   in :mod:`~sarslide.mapping.predictors`.
2. :mod:`~sarslide.mapping.calibration` — :func:`calibrate_threshold` picks the decision
   threshold on validation chips so that the predicted landslide area is unbiased;
   :func:`reliability_curve` gives the data of a reliability diagram,
   :func:`miscounts_by_threshold` / :func:`miscount_summary` the per-chip miscounts of
   other chips at several thresholds; :func:`binary_map` applies the threshold.
3. :mod:`~sarslide.mapping.heatmap` — :func:`density_heatmap` aggregates the map into
   landslide area fraction per cell (1 km by default), :func:`rank_cells` lists the most
   affected cells with their coordinates, :func:`heatmap_agreement` compares two
   heatmaps.
4. :mod:`~sarslide.mapping.export` — :func:`write_cog` writes any of the rasters as a
   Cloud-Optimized GeoTIFF; :func:`cells_frame` / :func:`write_cells` export the ranked
   cells as GeoJSON (RFC 7946 lon/lat) and CSV polygons, :func:`write_quicklook` a PNG,
   :func:`write_map_folder` all of a :class:`SceneMap` at once (:data:`MAP_FILES`);
   :mod:`~sarslide.mapping.provenance` says what made a map (:func:`provenance_tags`,
   written into every GeoTIFF) and :mod:`~sarslide.mapping.webmap` draws the heatmap and
   cells on an interactive web map (:func:`web_map`, folium).
5. :mod:`~sarslide.mapping.areas` — :func:`mapped_area_km2`, the one count of mapped
   landslide area (no-data never counts); :mod:`~sarslide.mapping.quality` —
   :func:`map_quality` / :func:`quality_block`: precision, recall, areas and heatmap
   agreement against a true map (the pipeline's :func:`truth_map`: an inventory or the
   scene's labels), for the model and the log-ratio baseline (:func:`baseline_map`),
   side by side; :func:`quality_table` shows them as a table.
6. :mod:`~sarslide.mapping.shift` — :func:`check_input_distribution` refuses a scene
   whose backscatter statistics are far from the model's training statistics
   (:class:`InputShiftError`); :func:`predict_probability` runs it first.
7. :mod:`~sarslide.mapping.local` — :func:`local_cube`: an event cube from GeoTIFFs, a
   folder or a static STAC catalog on disk.

Every name above is importable from ``sarslide.mapping`` itself.
"""

from __future__ import annotations

from .areas import mapped_area_km2, pixel_area_km2, valid_area_km2
from .calibration import (
    BINARY_NODATA,
    binary_map,
    calibrate_threshold,
    miscount_summary,
    miscounts_by_threshold,
    reliability_curve,
)
from .errors import MappingError
from .export import (
    CELL_COLUMNS,
    MAP_FILES,
    cells_frame,
    map_record,
    write_cells,
    write_cog,
    write_map_folder,
    write_quicklook,
)
from .heatmap import density_heatmap, heatmap_agreement, rank_cells
from .local import LocalScene, files_grid, local_cube, local_scenes
from .pipeline import (
    MapModels,
    Scene,
    SceneMap,
    baseline_map,
    calibrated_threshold,
    checkpoint_map_models,
    default_window,
    map_scene,
    run_map_models,
    truth_map,
)
from .provenance import MapProvenance, describe_source, provenance_tags, quicklook_title
from .quality import map_quality, quality_block, quality_table
from .shift import (
    InputShift,
    InputShiftError,
    check_input_distribution,
    input_shift,
    scene_stats,
)
from .webmap import TILES_ENV, default_tiles, web_map, write_web_map
from .windows import (
    WEIGHT_FLOOR,
    Block,
    SlidingWindows,
    block_plan,
    predict_probability,
    predict_raw,
    window_starts,
    window_weights,
)

__all__ = [
    "BINARY_NODATA",
    "Block",
    "CELL_COLUMNS",
    "InputShift",
    "InputShiftError",
    "LocalScene",
    "MAP_FILES",
    "MapModels",
    "MapProvenance",
    "MappingError",
    "Scene",
    "SceneMap",
    "SlidingWindows",
    "TILES_ENV",
    "WEIGHT_FLOOR",
    "baseline_map",
    "binary_map",
    "block_plan",
    "calibrate_threshold",
    "calibrated_threshold",
    "cells_frame",
    "check_input_distribution",
    "checkpoint_map_models",
    "default_tiles",
    "default_window",
    "density_heatmap",
    "describe_source",
    "files_grid",
    "heatmap_agreement",
    "input_shift",
    "local_cube",
    "local_scenes",
    "map_quality",
    "map_record",
    "map_scene",
    "miscount_summary",
    "miscounts_by_threshold",
    "mapped_area_km2",
    "pixel_area_km2",
    "predict_probability",
    "predict_raw",
    "provenance_tags",
    "quality_block",
    "quality_table",
    "quicklook_title",
    "rank_cells",
    "reliability_curve",
    "run_map_models",
    "scene_stats",
    "truth_map",
    "valid_area_km2",
    "web_map",
    "window_starts",
    "window_weights",
    "write_cells",
    "write_cog",
    "write_map_folder",
    "write_quicklook",
    "write_web_map",
]
