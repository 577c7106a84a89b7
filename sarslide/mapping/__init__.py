"""Rapid-response mapping: area-wide inference, calibrated maps, density heatmaps, exports.

The paper's purpose is rapid assessment after a disaster: from one post-event pass, map
where landslides are and which areas are hit hardest. This subpackage turns any
chip-level predictor into such a map, one job per module:

1. :mod:`~sarslide.mapping.windows` — :func:`predict_probability` runs a model over a
   whole pass pair (any size) in overlapping windows and blends them into one
   probability raster with no seams; :func:`predict_raw` does the same for a score
   computed from *linear* backscatter, such as the log-ratio baseline
   (:func:`sarslide.baseline.log_ratio_score`). Both share one window plan
   (:class:`SlidingWindows`, :func:`block_plan`); what runs on a window (a torch module,
   a callable, an ensemble averaged by :func:`sarslide.metrics.ensemble_mean`) is built in
   :mod:`~sarslide.mapping.predictors`.
2. :mod:`~sarslide.mapping.calibration` — :func:`calibrate_threshold` picks the decision
   threshold on validation chips so that the predicted landslide area is unbiased;
   :func:`reliability_curve` gives the data of a reliability diagram; :func:`binary_map`
   applies the threshold.
3. :mod:`~sarslide.mapping.heatmap` — :func:`density_heatmap` aggregates the map into
   landslide area fraction per cell (1 km by default), :func:`rank_cells` lists the most
   affected cells with their coordinates, :func:`heatmap_agreement` compares two
   heatmaps.
4. :mod:`~sarslide.mapping.export` — :func:`write_cog` writes any of the rasters as a
   Cloud-Optimized GeoTIFF; :func:`cells_frame` / :func:`write_cells` export the ranked
   cells as GeoJSON and CSV polygons, :func:`write_quicklook` a PNG.

Every name above is importable from ``sarslide.mapping`` itself.
"""

from __future__ import annotations

from .calibration import (
    BINARY_NODATA,
    binary_map,
    calibrate_threshold,
    reliability_curve,
)
from .errors import MappingError
from .export import CELL_COLUMNS, cells_frame, write_cells, write_cog, write_quicklook
from .heatmap import density_heatmap, heatmap_agreement, rank_cells
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
    "CELL_COLUMNS",
    "WEIGHT_FLOOR",
    "Block",
    "MappingError",
    "SlidingWindows",
    "binary_map",
    "block_plan",
    "calibrate_threshold",
    "cells_frame",
    "density_heatmap",
    "heatmap_agreement",
    "predict_probability",
    "predict_raw",
    "rank_cells",
    "reliability_curve",
    "window_starts",
    "window_weights",
    "write_cells",
    "write_cog",
    "write_quicklook",
]
