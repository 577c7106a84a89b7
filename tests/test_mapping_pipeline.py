"""The map pipeline (sarslide.mapping.pipeline) and the map folder it writes.

A hand-made scene whose answer is known pixel by pixel: constant backscatter with one
block ten times brighter after the event, one pass of no data, and 1×1-convolution
"models" whose logit is ``k · log10(post VV / pre VV) + b``, so the probability of every
pixel is a sigmoid computed here by hand. The binary map, the heatmap cells, the ranked
cells, the areas and the quality against the labels (or an inventory polygon written as
GeoJSON) are then hand counts; the folder's files are read back with rasterio, geopandas
and json.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import xarray as xr
from shapely.geometry import box

from sarslide import mapping
from sarslide.engine.atomic import STORE_MARKER, ForeignPathError
from sarslide.events import get_event
from sarslide.predict import predict_proba
from sarslide.transforms import BandStats, standardize

torch = pytest.importorskip("torch")

CRS = "EPSG:32654"
X0, Y0 = 500_000.0, 4_700_000.0  # top-left corner of the grid
RES = 10.0
NY, NX = 64, 96
BLOCK = (slice(10, 30), slice(20, 50))  # the landslide: 20 × 30 px, 0.06 km²
IDENTITY_STATS = BandStats(mean={"vv": 0.0, "vh": 0.0}, std={"vv": 1.0, "vh": 1.0})
K, B = 6.0, -3.0  # logit = K · log10(post_vv / pre_vv) + B


def _pair(labels: bool = True) -> xr.Dataset:
    """Constant backscatter; the block 10× brighter after; NaN in the last row."""
    ones = np.ones((NY, NX), np.float32)
    post_vv = 0.05 * ones
    post_vv[BLOCK] = 0.5
    post_vv[-1, :] = np.nan
    data = {
        "pre_vv": (("y", "x"), 0.05 * ones),
        "pre_vh": (("y", "x"), 0.013 * ones),
        "post_vv": (("y", "x"), post_vv),
        "post_vh": (("y", "x"), 0.013 * ones),
    }
    if labels:
        mask = np.zeros((NY, NX), np.uint8)
        mask[BLOCK] = 1
        data["landslides"] = (("y", "x"), mask)
    pair = xr.Dataset(
        data,
        coords={
            "y": Y0 - RES * (np.arange(NY) + 0.5),
            "x": X0 + RES * (np.arange(NX) + 0.5),
        },
        attrs={
            "source": "synthetic",
            "pre_times": ["2018-08-24T20:43:00"],
            "post_times": ["2018-09-13T08:27:00"],
        },
    )
    return pair.rio.write_crs(CRS)


def _log_ratio_model(k: float = K, b: float = B) -> torch.nn.Module:
    model = torch.nn.Conv2d(4, 1, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0, 0] = -k  # pre VV (log10, standardised with identity stats)
        model.weight[0, 2] = k  # post VV
        model.bias.fill_(b)
    return model


@dataclass
class _Split:
    images: np.ndarray
    labels: np.ndarray


class _Chips:
    """Validation chips: half hold a block 10× brighter after the event."""

    def __init__(self, n: int = 8, size: int = 16):
        images = np.empty((n, 4, size, size), np.float32)
        images[:, [0, 2]] = 0.05
        images[:, [1, 3]] = 0.013
        labels = np.zeros((n, size, size), np.uint8)
        for i in range(0, n, 2):
            images[i, 2, 4:10, 4:12] = 0.5
            labels[i, 4:10, 4:12] = 1
        self.validation = _Split(images, labels)
        self.asked: list[str] = []

    def split(self, name: str) -> _Split:
        self.asked.append(name)
        return self.validation


def _scene(pair: xr.Dataset) -> mapping.Scene:
    return mapping.Scene(
        pair,
        get_event("hokkaido"),
        "synthetic",
        profile="demo",
        overrides=["chip_size=32"],
    )


def _models(chips=None) -> mapping.MapModels:
    torch.manual_seed(0)
    return mapping.MapModels(
        [_log_ratio_model(), _log_ratio_model()],
        IDENTITY_STATS,
        chips=chips,
        name="two log-ratio convolutions",
        trained_on="nothing: set by hand",
        device="cpu",
    )


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_map_scene_against_hand_counts():
    chips = _Chips()
    scene_map = mapping.map_scene(
        _scene(_pair()),
        _models(chips),
        threshold=0.5,
        cell_size=100.0,
        top=4,
        window=32,
        progress=False,
        force=True,  # constant backscatter has no spread to check against
    )
    inside, outside = _sigmoid(K + B), _sigmoid(B)  # ≈ 0.95 and ≈ 0.047
    expected = np.full((NY, NX), outside)
    expected[BLOCK] = inside
    expected[-1, :] = np.nan
    prob = scene_map.probability.values
    assert np.array_equal(np.isnan(prob), np.isnan(expected))
    # the device's fast arithmetic (bf16 on some CPUs) is within 0.02 of float32
    np.testing.assert_allclose(prob, expected, atol=0.02)

    binary = scene_map.binary.values
    hand = np.zeros((NY, NX), np.uint8)
    hand[BLOCK] = 1
    hand[-1, :] = 255
    assert np.array_equal(binary, hand)
    assert scene_map.threshold == 0.5 and scene_map.threshold_choice == "given"
    assert scene_map.window == 32 and scene_map.cell_size == 100.0
    assert scene_map.mapped_area_km2 == pytest.approx(20 * 30 * 1e-4)
    assert scene_map.valid_area_km2 == pytest.approx((NY - 1) * NX * 1e-4)

    # 10 × 10 px cells: the block covers rows 1-2 and columns 2-4 of cells wholly
    heat = scene_map.heatmap.values
    assert heat.shape == (7, 10)
    full = np.zeros((7, 10))
    full[1:3, 2:5] = 1.0
    np.testing.assert_allclose(heat, full)
    ranked = scene_map.ranked
    assert len(ranked) == 4 and (ranked["landslide_fraction"] == 1.0).all()
    np.testing.assert_allclose(ranked["landslide_area_km2"], 0.01)

    # truth: the scene's labels; the model finds them exactly
    assert scene_map.truth_source == "the scene's labels (synthetic)"
    quality = scene_map.quality
    assert quality["truth"] == scene_map.truth_source and quality["top_k"] == 4
    model = quality["model"]
    assert model["precision"] == 1.0 and model["recall"] == 1.0
    assert model["mapped_area_km2"] == pytest.approx(0.06)
    assert model["true_area_km2"] == pytest.approx(0.06)
    # the baseline was calibrated on the validation chips and mapped on the same grid
    assert chips.asked == ["validation"]
    assert scene_map.baseline.shape == (NY, NX) and scene_map.baseline_threshold > 0
    assert set(quality["log_ratio_baseline"]) == set(model)

    prov = scene_map.provenance
    assert prov.data_source == "synthetic" and prov.event == "hokkaido"
    assert prov.model == "two log-ratio convolutions"
    assert prov.model_trained_on == "nothing: set by hand"
    assert prov.profile == "demo --set chip_size=32"
    assert prov.threshold == 0.5 and prov.threshold_choice == "given"
    assert list(prov.pre_passes) == ["2018-08-24T20:43:00"]
    assert list(prov.post_passes) == ["2018-09-13T08:27:00"]
    assert scene_map.title.endswith("threshold 0.5") and "SYNTHETIC" in scene_map.title


def test_threshold_calibrated_on_the_validation_chips():
    """Unbiased area on the validation chips: the threshold lies between the two
    probabilities of the chips, so exactly the bright blocks are mapped there."""
    torch.set_num_threads(1)
    models = pytest.importorskip("sarslide.models")
    torch.manual_seed(0)
    segmenter = models.Segmenter(None)
    chips = _Chips()
    map_models = mapping.MapModels(
        [segmenter], IDENTITY_STATS, chips=chips, name="untrained", device="cpu"
    )
    pair = _pair(labels=False)
    scene_map = mapping.map_scene(
        _scene(pair), map_models, cell_size=100.0, window=32, progress=False, force=True
    )
    assert scene_map.threshold_choice == "calibrated on validation chips"
    assert scene_map.quality is None and scene_map.truth is None
    val = chips.validation
    prob = predict_proba([segmenter], standardize(val.images, IDENTITY_STATS))
    k = int(val.labels.sum())

    def miss(t: float) -> int:
        return abs(int((prob >= t).sum()) - k)

    # as unbiased as any threshold can be (ties of the probabilities aside)
    assert miss(scene_map.threshold) == min(miss(t) for t in np.unique(prob))


def test_truth_from_an_inventory_file(tmp_path):
    """An inventory polygon over half the block (a GeoPackage in the map's CRS): recall
    1, precision 1/2 by hand."""
    pair = _pair(labels=False)
    west = X0 + 20 * RES
    north = Y0 - 10 * RES
    polygon = box(west, north - 20 * RES, west + 15 * RES, north)  # 20 × 15 px
    inventory = tmp_path / "inventory.gpkg"
    gpd.GeoDataFrame(geometry=[polygon], crs=CRS).to_file(inventory, driver="GPKG")
    scene_map = mapping.map_scene(
        _scene(pair),
        _models(_Chips()),
        threshold=0.5,
        cell_size=100.0,
        window=32,
        truth=inventory,
        progress=False,
        force=True,
    )
    assert scene_map.truth_source == f"inventory {inventory}"
    truth = scene_map.truth.values
    assert int((truth == 1).sum()) == 300 and (truth[-1] == 255).all()
    model = scene_map.quality["model"]
    assert model["recall"] == 1.0 and model["precision"] == 0.5


def test_no_truth_no_quality_and_no_chips_needed():
    scene_map = mapping.map_scene(
        _scene(_pair(labels=False)),
        _models(chips=None),
        threshold=0.5,
        cell_size=100.0,
        window=32,
        progress=False,
        force=True,
    )
    assert scene_map.quality is None and scene_map.baseline is None


def test_missing_chips_and_small_scenes_are_named():
    with pytest.raises(mapping.MappingError, match="needs validation chips"):
        mapping.map_scene(
            _scene(_pair()), _models(chips=None), window=32, progress=False, force=True
        )
    with pytest.raises(mapping.MappingError, match="too small to map"):
        mapping.default_window([_log_ratio_model()], _pair().isel(y=slice(0, 20)))
    assert mapping.default_window([_log_ratio_model()], _pair()) == NY
    with pytest.raises(mapping.MappingError, match="no model"):
        mapping.MapModels([], IDENTITY_STATS)


def test_a_shifted_scene_is_refused_before_any_window():
    far = BandStats(mean={"vv": 3.0, "vh": 3.0}, std={"vv": 0.1, "vh": 0.1})
    pair = _pair()
    noisy = np.random.default_rng(0).gamma(4.0, 0.0125, size=(NY, NX))
    pair = pair.assign(pre_vv=(("y", "x"), noisy.astype(np.float32)))
    models = mapping.MapModels([_log_ratio_model()], far, name="m", device="cpu")
    with pytest.raises(mapping.InputShiftError):
        mapping.map_scene(_scene(pair), models, threshold=0.5, window=32)


def test_write_map_folder_files_record_and_refusal(tmp_path):
    scene_map = mapping.map_scene(
        _scene(_pair()),
        _models(_Chips()),
        threshold=0.5,
        cell_size=100.0,
        window=32,
        progress=False,
        force=True,
    )
    out = tmp_path / "map"
    files = mapping.write_map_folder(scene_map, out, cells_crs="native", tiles=None)
    assert list(files) == list(mapping.MAP_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*mapping.MAP_FILES.values(), STORE_MARKER]
    )
    with rasterio.open(files["binary"]) as src:
        assert src.crs.to_string() == CRS
        assert int((src.read(1) == 1).sum()) == 600
        assert src.tags()["SARSLIDE_PROFILE"] == "demo --set chip_size=32"
        assert src.tags()["SARSLIDE_MODEL"] == "two log-ratio convolutions"
    cells = gpd.read_file(files["cells_geojson"])
    assert cells.crs.to_string() == CRS and len(cells) == 6
    record = json.loads(files["record"].read_text())
    event = get_event("hokkaido")
    assert record["event"] == "hokkaido" and record["title"] == event.title
    assert record["event_time_utc"] == event.time_utc.isoformat()
    assert record["crs"] == CRS and record["cells_geojson_crs"] == CRS
    assert record["resolution_m"] == RES and record["profile_overrides"] == [
        "chip_size=32"
    ]
    assert record["threshold"] == 0.5 and record["window"] == 32
    assert record["mapped_area_km2"] == pytest.approx(0.06)
    assert record["files"] == mapping.MAP_FILES
    baseline = record["quality"]["log_ratio_baseline"]
    assert baseline["threshold"] == scene_map.baseline_threshold
    # strict JSON: an undefined figure would be null, never NaN

    def no_constant(name):
        raise AssertionError(f"{name} in map.json")

    json.loads(files["record"].read_text(), parse_constant=no_constant)
    # a folder the package did not write is refused, and left as it was
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ForeignPathError):
        mapping.write_map_folder(scene_map, foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with pytest.raises(mapping.MappingError, match="cells_crs"):
        mapping.write_map_folder(scene_map, out, cells_crs="utm")


def test_quality_table_and_miscount_summary_by_hand():
    block = {
        "truth": "hand",
        "cell_size_m": 100.0,
        "top_k": 5,
        "model": {"precision": 0.5, "recall": 1.0},
        "log_ratio_baseline": {"precision": 0.25, "recall": 0.5},
    }
    table = mapping.quality_table(block, {"model": "segmenter"})
    assert list(table.columns) == ["segmenter"]
    assert table.loc["precision", "segmenter"] == 0.5
    assert list(mapping.quality_table(block).columns) == ["model", "log_ratio_baseline"]
    prob = np.zeros((2, 4, 4))
    prob[0, :2] = 0.9  # 8 px at 0.9
    prob[1, 0, :2] = 0.6  # 2 px at 0.6
    labels = np.zeros((2, 4, 4), np.uint8)
    labels[0, :1] = 1  # 4 true px
    labels[1, 0, :2] = 1  # 2 true px
    tables = mapping.miscounts_by_threshold(prob, labels, {"0.5": 0.5, "0.7": 0.7})
    summary = mapping.miscount_summary(tables)
    assert list(summary.columns) == ["0.5", "0.7"]
    # at 0.5: Δcount 4 and 0 (median 2); at 0.7: 4 and -2 (median |Δ| 3)
    assert summary.loc["median |Δcount|, test chips", "0.5"] == 2.0
    assert summary.loc["median |Δcount|, test chips", "0.7"] == 3.0
    assert summary.loc["total predicted px", "0.7"] == 8
    assert summary.loc["total true px", "0.5"] == 6


def test_scene_resolution_and_settings():
    pair, event = _pair(), get_event("hokkaido")
    scene = mapping.Scene(pair, event, "files")
    assert scene.resolution_m == RES and scene.settings == ""
    assert mapping.Scene(pair, event, "files", resolution=30).resolution_m == 30.0
