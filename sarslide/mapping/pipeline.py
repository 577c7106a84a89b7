"""The whole map of one scene: :func:`map_scene`, the pipeline that ``sarslide map``
runs and chapter 7 walks through.

From a pass pair and an ensemble of stage-2 models to what a responder gets, in this
order, each step one function of :mod:`sarslide.mapping`:

1. the probability map: the scene is checked against the models' training statistics
   (:func:`~sarslide.mapping.check_input_distribution`, unless ``force``), then mapped
   in overlapping, blended windows (:func:`~sarslide.mapping.predict_probability`);
2. the threshold: given, or calibrated on the validation chips so that the mapped
   landslide area is unbiased there (:func:`calibrated_threshold`);
3. the binary map, its density heatmap and the most affected cells
   (:func:`~sarslide.mapping.binary_map`, :func:`~sarslide.mapping.density_heatmap`,
   :func:`~sarslide.mapping.rank_cells`);
4. where the truth is known (an inventory rasterised on the map's grid, or the scene's
   own labels: :func:`truth_map`), the log-ratio baseline mapped with the same windows
   and thresholded on the same chips (:func:`baseline_map`), and the quality of both
   maps against the truth (:func:`~sarslide.mapping.quality_block`);
5. the provenance record (:class:`~sarslide.mapping.MapProvenance`).

In go a :class:`Scene` (the pass pair and what it is) and :class:`MapModels` (the
ensemble, its training statistics, the validation chips and what it is;
:func:`run_map_models` and :func:`checkpoint_map_models` build one); out comes a
:class:`SceneMap`. :func:`sarslide.mapping.write_map_folder` writes it as files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from .. import __version__
from .areas import mapped_area_km2, valid_area_km2
from .calibration import binary_map, calibrate_threshold
from .errors import MappingError
from .heatmap import density_heatmap, rank_cells
from .provenance import MapProvenance, quicklook_title
from .quality import quality_block
from .windows import predict_probability, predict_raw

if TYPE_CHECKING:
    from ..ablation import Run
    from ..chips import ChipSet
    from ..events import Event
    from ..experiment import Experiment
    from ..transforms import BandStats

__all__ = [
    "MapModels",
    "Scene",
    "SceneMap",
    "baseline_map",
    "calibrated_threshold",
    "checkpoint_map_models",
    "default_window",
    "map_scene",
    "run_map_models",
    "truth_map",
]

#: The largest window :func:`default_window` picks (pixels).
LARGEST_WINDOW = 256
#: The smallest scene side that can be mapped (pixels).
SMALLEST_WINDOW = 32
#: At most this many most affected cells are compared in the quality block.
QUALITY_TOP = 10


@dataclass(frozen=True, eq=False)
class Scene:
    """A pass pair to map, and what it is (written into the map's files).

    Attributes
    ----------
    pair:
        ``pre_vv``, ``pre_vh``, ``post_vv``, ``post_vh`` on (y, x), linear backscatter,
        NaN = no data, with a CRS (:func:`sarslide.datasets.profile_pass_pair`);
        ``landslides`` as well where the scene has labels; attrs ``pre_times`` and
        ``post_times``.
    event:
        The event record (:func:`sarslide.events.get_event`, or one built for a new
        area): name, title, time and area.
    source:
        ``"synthetic"``, ``"files"``, ``"zenodo"`` or ``"planetary-computer"``.
    collection, catalog:
        The STAC collection and catalog of real data, else ``""``.
    files:
        The scenes on disk it was read from, else empty.
    resolution:
        Pixel size in metres as asked for; ``None``: the pair's own pixel size.
    profile, overrides:
        The profile's name and its ``FIELD=VALUE`` overrides.
    """

    pair: xr.Dataset
    event: Event
    source: str
    collection: str = ""
    catalog: str = ""
    files: Sequence[str] = ()
    resolution: float | None = None
    profile: str = ""
    overrides: Sequence[str] = ()

    @property
    def resolution_m(self) -> float:
        """The pixel size in metres: :attr:`resolution`, else the pair's ``x`` step."""
        if self.resolution is not None:
            return float(self.resolution)
        x = self.pair["x"].values
        return abs(float(x[1] - x[0]))

    @property
    def settings(self) -> str:
        """The profile and its overrides as one text: ``"demo --set chip_size=32"``."""
        return self.profile + "".join(f" --set {item}" for item in self.overrides)


@dataclass(frozen=True, eq=False)
class MapModels:
    """The stage-2 ensemble that maps a scene, and what it is.

    Attributes
    ----------
    models:
        Stage-2 segmenters (torch modules returning logits); their probabilities are
        averaged (:func:`sarslide.metrics.ensemble_mean`).
    stats:
        The band statistics they were trained with (``chipset.stats``).
    chips:
        The chip set whose validation chips calibrate the thresholds of the map and of
        the baseline; ``None`` when neither is needed (a threshold is given and the
        scene has no truth).
    name:
        What made the map, as the files record it: a run id or the checkpoint files.
    description:
        The same in words (``map.json``'s ``model``); default :attr:`name`.
    trained_on:
        What the models were trained on, e.g. ``"synthetic chips of hokkaido"``.
    device:
        Torch device the models run on; ``None``: CUDA where available, else the CPU.
    """

    models: Sequence[Any]
    stats: BandStats | Mapping
    chips: ChipSet | None = None
    name: str = ""
    description: str = ""
    trained_on: str = ""
    device: str | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise MappingError("MapModels got no model; pass at least one checkpoint")
        if not self.description:
            object.__setattr__(self, "description", self.name)

    def validation_chips(self, needed_for: str) -> ChipSet:
        """The validation split of :attr:`chips`; a clear error when there are none."""
        if self.chips is None:
            raise MappingError(
                f"{needed_for} needs validation chips, and these models have none; "
                "build MapModels with chips=prepare_event(exp)"
            )
        return self.chips.split("validation")


@dataclass(frozen=True, eq=False)
class SceneMap:
    """Everything :func:`map_scene` made of one scene.

    Attributes
    ----------
    scene:
        The :class:`Scene` that was mapped.
    model:
        The models in words (:attr:`MapModels.description`).
    probability:
        (y, x) float32 landslide probability, NaN = no data.
    binary:
        (y, x) uint8 map at :attr:`threshold`: 1 landslide, 0 none, 255 no data.
    heatmap:
        (y, x) float32 landslide area fraction per cell of :attr:`cell_size` metres.
    ranked:
        The most affected cells (:func:`~sarslide.mapping.rank_cells`).
    threshold, threshold_choice:
        The probability threshold and how it was chosen (``"given"`` or ``"calibrated
        on validation chips"``).
    window:
        The sliding window in pixels.
    cell_size:
        The heatmap cell in metres.
    provenance:
        What made the map (:class:`~sarslide.mapping.MapProvenance`).
    truth, truth_source:
        The true binary map on the same grid and what it is, where truth exists.
    baseline, baseline_threshold:
        The log-ratio baseline's binary map and its calibrated threshold (dB), where
        truth exists.
    quality:
        :func:`~sarslide.mapping.quality_block` of ``"model"`` and
        ``"log_ratio_baseline"`` against the truth, where truth exists.
    """

    scene: Scene
    model: str
    probability: xr.DataArray
    binary: xr.DataArray
    heatmap: xr.DataArray
    ranked: pd.DataFrame
    threshold: float
    threshold_choice: str
    window: int
    cell_size: float
    provenance: MapProvenance
    truth: xr.DataArray | None = None
    truth_source: str = ""
    baseline: xr.DataArray | None = None
    baseline_threshold: float | None = None
    quality: dict[str, Any] | None = None

    @property
    def title(self) -> str:
        """The event's title, what the data are and the threshold (the quick-look's)."""
        return quicklook_title(self.scene.event.title, self.provenance)

    @property
    def crs(self) -> str:
        """The map's CRS, e.g. ``"EPSG:32654"``."""
        return str(self.scene.pair.rio.crs)

    @property
    def mapped_area_km2(self) -> float:
        """Landslide area of the binary map in km² (no-data never counts)."""
        return mapped_area_km2(self.binary)

    @property
    def valid_area_km2(self) -> float:
        """Area in km² of the pixels that hold data."""
        return valid_area_km2(self.probability)


def default_window(models: Sequence[Any], pair: xr.Dataset) -> int:
    """The largest window up to :data:`LARGEST_WINDOW` pixels that fits the scene and
    every model (a multiple of their ``size_multiple``).

    Raises
    ------
    MappingError
        If the scene is smaller than :data:`SMALLEST_WINDOW` pixels a side.
    """
    multiple = int(
        np.lcm.reduce([int(getattr(m, "size_multiple", 1) or 1) for m in models])
    )
    ny, nx = pair.sizes["y"], pair.sizes["x"]
    fit = min(ny, nx, LARGEST_WINDOW) // multiple * multiple
    if fit < SMALLEST_WINDOW:
        raise MappingError(
            f"the scene is {ny}×{nx} px, too small to map; use a larger area"
        )
    return fit


def calibrated_threshold(models: MapModels) -> float:
    """The threshold that makes the mapped landslide area unbiased on the validation
    chips: the ensemble's probabilities there (standardised with the models' statistics)
    through :func:`~sarslide.mapping.calibrate_threshold`."""
    from ..predict import predict_proba
    from ..transforms import standardize

    val = models.validation_chips("calibrating the threshold")
    val_prob = predict_proba(
        list(models.models), standardize(val.images, models.stats), device=models.device
    )
    return calibrate_threshold(val_prob, val.labels)


def truth_map(
    pair: xr.Dataset,
    probability: xr.DataArray,
    inventory: str | os.PathLike | None = None,
) -> tuple[xr.DataArray | None, str]:
    """``(true binary map, what it is)`` where truth exists, else ``(None, "")``.

    The truth is the ``inventory`` (any file :func:`sarslide.inventory.read_inventory`
    reads) rasterised on the pair's grid, else the pair's own ``landslides`` labels;
    no data wherever ``probability`` is NaN.
    """
    if inventory is not None:
        from ..inventory import rasterize

        labels = rasterize(inventory, like=pair)
        what = f"inventory {inventory}"
    elif "landslides" in pair.variables:
        labels = pair["landslides"]
        synthetic = pair.attrs.get("source") == "synthetic"
        what = "the scene's labels" + (" (synthetic)" if synthetic else "")
    else:
        return None, ""
    valid = probability.notnull()
    truth = (labels > 0).astype("float32").where(valid).rio.write_crs(pair.rio.crs)
    return binary_map(truth, 0.5), what


def baseline_map(
    pair: xr.Dataset, validation: ChipSet, window: int
) -> tuple[xr.DataArray, float]:
    """``(binary map, threshold)`` of the log-ratio baseline
    (:func:`sarslide.baseline.log_ratio_score`), mapped with ``window``-pixel windows,
    its threshold calibrated on the ``validation`` chips (linear ``images``,
    ``labels``)."""
    from ..baseline import log_ratio_score

    score = predict_raw(pair, log_ratio_score, window=window, progress=False)
    threshold = calibrate_threshold(
        log_ratio_score(validation.images), validation.labels
    )
    return binary_map(score, threshold), float(threshold)


def map_scene(
    scene: Scene,
    models: MapModels,
    *,
    threshold: float | None = None,
    cell_size: float = 1000.0,
    top: int = 50,
    window: int | None = None,
    truth: str | os.PathLike | None = None,
    progress: bool = True,
    force: bool = False,
) -> SceneMap:
    """Map a whole scene: probability, binary map, density heatmap, ranked cells,
    quality against the truth and provenance (the steps of the module docstring).

    Parameters
    ----------
    scene, models:
        What to map and with what.
    threshold:
        The probability threshold; ``None``: :func:`calibrated_threshold`.
    cell_size:
        Heatmap cell in metres (a whole multiple of the pixel size).
    top:
        How many most affected cells to rank (the quality block compares at most
        :data:`QUALITY_TOP`).
    window:
        Sliding window in pixels; ``None``: :func:`default_window`.
    truth:
        A landslide inventory to score the map against; ``None``: the scene's labels
        where it has them.
    progress:
        Show a progress bar over the windows.
    force:
        Map even a scene whose statistics are far from the models' training statistics
        (or one the caller has checked already).

    Raises
    ------
    MappingError
        For a scene that cannot be mapped (too small, a missing band, outside the
        training distribution: :class:`~sarslide.mapping.InputShiftError`), or
        validation chips that are needed and missing.
    """
    pair = scene.pair
    window = default_window(models.models, pair) if window is None else window
    probability = predict_probability(
        pair,
        list(models.models),
        models.stats,
        window=window,
        device=models.device,
        progress=progress,
        force=force,
    )
    if threshold is None:
        threshold, how = calibrated_threshold(models), "calibrated on validation chips"
    else:
        threshold, how = float(threshold), "given"
    binary = binary_map(probability, threshold)
    heatmap = density_heatmap(binary, cell_size=cell_size)
    provenance = MapProvenance(
        data_source=scene.source,
        collection=scene.collection,
        event=scene.event.name,
        pre_passes=list(pair.attrs.get("pre_times", [])),
        post_passes=list(pair.attrs.get("post_times", [])),
        model=models.name,
        model_trained_on=models.trained_on,
        profile=scene.settings,
        threshold=threshold,
        threshold_choice=how,
        version=__version__,
    )
    true, truth_source = truth_map(pair, probability, truth)
    baseline = baseline_threshold = quality = None
    if true is not None:
        validation = models.validation_chips("the quality block's log-ratio baseline")
        baseline, baseline_threshold = baseline_map(pair, validation, window)
        quality = quality_block(
            {"model": binary, "log_ratio_baseline": baseline},
            true,
            cell_size=cell_size,
            top=min(top, QUALITY_TOP),
            truth_source=truth_source,
        )
    return SceneMap(
        scene=scene,
        model=models.description,
        probability=probability,
        binary=binary,
        heatmap=heatmap,
        ranked=rank_cells(heatmap, top=top),
        threshold=threshold,
        threshold_choice=how,
        window=window,
        cell_size=float(cell_size),
        provenance=provenance,
        truth=true,
        truth_source=truth_source,
        baseline=baseline,
        baseline_threshold=baseline_threshold,
        quality=quality,
    )


def run_map_models(
    exp: Experiment,
    run: Run,
    *,
    chips: ChipSet | None = None,
    progress: bool = True,
) -> MapModels:
    """The kept checkpoints of an ablation run trained on the chips of ``exp``'s event
    (trained first if the cache lacks them: :func:`sarslide.ablation.run_models`), with
    those chips for calibration (``chips``: where the caller holds them already, else
    :func:`sarslide.datasets.prepare_event`)."""
    from ..ablation import run_models
    from ..datasets import prepare_event

    chips = prepare_event(exp) if chips is None else chips
    models = run_models(exp, run, chips=chips, progress=progress)
    event, profile, device = exp.event, exp.profile, exp.device
    return MapModels(
        models,
        chips.stats,
        chips=chips,
        name=run.run_id,
        description=(
            f"run {run.run_id} ({len(models)} checkpoints, trained on {event})"
        ),
        trained_on=(f"{profile.data_source} chips of {event} (profile {profile.name})"),
        device=device,
    )


def checkpoint_map_models(
    paths: Sequence[str | os.PathLike],
    stats: BandStats | Mapping,
    *,
    chips: ChipSet | None = None,
    device: str | None = None,
) -> MapModels:
    """Stage-2 checkpoint files as an ensemble, with the band statistics they were
    trained with (:func:`sarslide.engine.checkpoints.checkpoint_info`) and, where
    thresholds must be calibrated, validation ``chips``."""
    from ..engine.checkpoints import load_checkpoints

    paths = [Path(p) for p in paths]
    models = load_checkpoints(paths, "stage2", device=device or "cpu")
    text = f"{len(paths)} checkpoint(s) from {paths[0].parent}"
    return MapModels(
        models,
        stats,
        chips=chips,
        name=text,
        trained_on="checkpoint files (their training data is not recorded in them)",
        device=device,
    )
