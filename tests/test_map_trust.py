"""A map responders can trust (issue 19), at the package level.

Areas that never count no-data, the refusal of scenes outside the training distribution,
scenes on disk (the real OPERA RTC GeoTIFFs of ``tests/data``, as files, a folder, an
item collection and a static catalog), provenance tags, RFC 7946 GeoJSON, the quality
block against scikit-learn, the folium web map and progress bars that honour
``TQDM_DISABLE``. References are independent: hand counts, rasterio reads of the files,
scikit-learn, pyproj transforms.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pystac
import pytest
import rasterio
import shapely
import shapely.geometry
import xarray as xr
from pyproj import Transformer
from sklearn.metrics import precision_score, recall_score
from test_acquire_stac import FIXTURES, fixture_files

from sarslide import mapping
from sarslide.mapping import InputShiftError, MappingError
from sarslide.passes import pass_pair
from sarslide.transforms import BandStats, compute_stats

CRS = "EPSG:32654"
X0, Y0 = 500_000.0, 4_700_000.0


def _grid(values: np.ndarray, res: float = 10.0, name: str = "v") -> xr.DataArray:
    ny, nx = values.shape
    da = xr.DataArray(
        values,
        dims=("y", "x"),
        coords={
            "y": Y0 - res * (np.arange(ny) + 0.5),
            "x": X0 + res * (np.arange(nx) + 0.5),
        },
        name=name,
    )
    return da.rio.write_crs(CRS)


def _binary(values: np.ndarray, res: float = 10.0) -> xr.DataArray:
    """A binary map (1/0/255) through binary_map, from a float array with NaN
    no-data."""
    return mapping.binary_map(_grid(values.astype(np.float32), res), 0.5)


# ----------------------------------------------------------------------------- areas
def test_mapped_area_never_counts_nodata():
    values = np.zeros((20, 30), np.float32)
    values[2:5, 3:7] = 1.0  # 12 landslide pixels
    values[10:20, :] = np.nan  # 300 no-data pixels, stored as 255
    binary = _binary(values)
    assert int((binary.values == 255).sum()) == 300
    pixel_km2 = 10.0 * 10.0 / 1e6
    assert mapping.mapped_area_km2(binary) == pytest.approx(12 * pixel_km2)
    assert mapping.valid_area_km2(binary) == pytest.approx(300 * pixel_km2)
    # the count chapter 7 used to make: no-data counted as landslide (26x too much here)
    assert float((binary > 0).sum()) * pixel_km2 == pytest.approx(312 * pixel_km2)
    # the heatmap holds the same area (its own sum), so the two can never disagree
    heat = mapping.density_heatmap(binary, cell_size=50.0)
    assert float(np.nansum(heat.values)) * 50.0**2 / 1e6 == pytest.approx(
        12 * pixel_km2
    )


def test_mapped_area_of_a_non_binary_map_is_refused():
    with pytest.raises(MappingError, match="binary_map"):
        mapping.mapped_area_km2(_grid(np.zeros((4, 4), np.float32)))


def test_mapped_area_honours_a_custom_nodata_value():
    binary = _grid(np.array([[1, 1, 0], [7, 7, 1]], np.uint8)).rio.write_nodata(7)
    assert mapping.mapped_area_km2(binary) == pytest.approx(3 * 1e-4)
    assert mapping.valid_area_km2(binary) == pytest.approx(4 * 1e-4)


# ----------------------------------------------------------------------------- quality
def test_quality_block_matches_sklearn_and_hand_counts():
    rng = np.random.default_rng(3)
    pred = (rng.random((40, 40)) < 0.2).astype(np.float32)
    true = (rng.random((40, 40)) < 0.15).astype(np.float32)
    pred[:5, :] = np.nan  # no data in the map
    true[:, :3] = np.nan  # no data in the truth
    model, truth = _binary(pred), _binary(true)
    q = mapping.map_quality(model, truth, cell_size=100.0, top=5)
    ok = np.isfinite(pred) & np.isfinite(true)
    assert q["precision"] == pytest.approx(precision_score(true[ok], pred[ok]))
    assert q["recall"] == pytest.approx(recall_score(true[ok], pred[ok]))
    assert q["mapped_area_km2"] == pytest.approx(np.nansum(pred) * 1e-4)
    assert q["true_area_km2"] == pytest.approx(np.nansum(true) * 1e-4)
    assert q["area_ratio"] == pytest.approx(np.nansum(pred) / np.nansum(true))

    # heatmap correlation: 10x10 px cells, fraction = landslide px / 100, by reshaping
    def cells(a):
        valid = np.isfinite(a).reshape(4, 10, 4, 10).any(axis=(1, 3))
        frac = np.nan_to_num(a).reshape(4, 10, 4, 10).sum(axis=(1, 3)) / 100.0
        return np.where(valid, frac, np.nan)

    a, b = cells(pred).ravel(), cells(true).ravel()
    both = np.isfinite(a) & np.isfinite(b)
    assert q["heatmap_correlation"] == pytest.approx(
        np.corrcoef(a[both], b[both])[0, 1]
    )
    assert 0 <= q["top_cells_shared"] <= 5 and q["top_k"] == 5

    block = mapping.quality_block(
        {"model": model, "log_ratio_baseline": truth},
        truth,
        cell_size=100.0,
        top=5,
        truth_source="hand",
    )
    assert block["truth"] == "hand" and block["model"] == q
    perfect = block["log_ratio_baseline"]
    assert perfect["precision"] == perfect["recall"] == 1.0
    assert (
        perfect["heatmap_correlation"] == pytest.approx(1.0)
        and perfect["top_cells_shared"] == 5
    )


def test_quality_needs_one_grid():
    with pytest.raises(MappingError, match="different grids"):
        mapping.map_quality(
            _binary(np.zeros((10, 10))), _binary(np.zeros((10, 20))), cell_size=50
        )


# ----------------------------------------------------------------------------- scenes
# on disk
def _direct_pair(pre: str, post: str) -> dict[str, np.ndarray]:
    files = fixture_files()
    out = {}
    for side, stamp in (("pre", pre), ("post", post)):
        for pol in ("vv", "vh"):
            with rasterio.open(files[stamp][pol]) as src:
                out[f"{side}_{pol}"] = src.read(1, masked=True).filled(np.nan)
    return out


def _check_fixture_cube(cube):
    assert cube.rio.crs.to_epsg() == 32611 and cube.sizes == {
        "time": 3,
        "y": 100,
        "x": 100,
    }
    assert abs(float(cube.x[1] - cube.x[0])) == 30.0  # resolution read from the files
    pair = pass_pair(cube)  # the same rule as everywhere
    assert pair.attrs["pre_times"][0].startswith("2023-12-15")
    assert pair.attrs["post_times"][0].startswith("2023-12-27")
    direct = _direct_pair("20231215T015904Z", "20231227T015903Z")
    for name, values in direct.items():
        np.testing.assert_array_equal(pair[name].values, values)
    return pair


def test_local_cube_from_files_and_a_folder(tmp_path):
    _check_fixture_cube(mapping.local_cube([FIXTURES], "2023-12-20"))
    # polarisation tokens in any case, files named one by one
    for path in FIXTURES.glob("OPERA_*.tif"):
        stem, pol = path.stem.rsplit("_", 1)
        shutil.copy(path, tmp_path / f"{stem.lower()}_{pol.lower()}.TIF")
    cube = mapping.local_cube(sorted(tmp_path.iterdir()), "2023-12-20T00:00Z")
    _check_fixture_cube(cube)
    crs, res, lonlat = mapping.files_grid([tmp_path])
    assert (crs, res) == ("EPSG:32611", 30.0)
    with rasterio.open(next(FIXTURES.glob("*VV.tif"))) as src:
        west, south = Transformer.from_crs(
            src.crs, "EPSG:4326", always_xy=True
        ).transform(src.bounds.left, src.bounds.bottom)
    assert lonlat[0] <= west + 1e-3 and lonlat[1] <= south + 1e-3


def _items(case: str = "upper") -> list[pystac.Item]:
    items = []
    for stamp, pols in fixture_files().items():
        item = pystac.Item(
            id=stamp,
            geometry=None,
            bbox=None,
            properties={},
            datetime=pd.Timestamp(stamp).to_pydatetime(),
        )
        item.properties["sat:orbit_state"] = "descending"
        item.properties["sat:relative_orbit"] = 137
        for pol, path in pols.items():
            key = pol.upper() if case == "upper" else pol.capitalize()
            item.add_asset(
                key, pystac.Asset(href=str(path), media_type=pystac.MediaType.COG)
            )
        items.append(item)
    return items


def test_local_cube_from_an_item_collection_and_a_static_catalog(tmp_path):
    collection = tmp_path / "items.json"
    collection.write_text(json.dumps(pystac.ItemCollection(_items("upper")).to_dict()))
    cube = mapping.local_cube([collection], "2023-12-20")
    _check_fixture_cube(cube)
    assert list(cube["relative_orbit"].values) == [137] * 3
    catalog = pystac.Catalog(id="usb-stick", description="scenes copied by hand")
    for item in _items("capitalised"):
        catalog.add_item(item)
    catalog.normalize_hrefs(str(tmp_path / "catalog"))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    _check_fixture_cube(
        mapping.local_cube([tmp_path / "catalog" / "catalog.json"], "2023-12-20")
    )
    _check_fixture_cube(
        mapping.local_cube([tmp_path / "catalog"], "2023-12-20")
    )  # its folder
    single = tmp_path / "one.json"
    single.write_text(json.dumps(_items()[0].to_dict()))
    assert len(mapping.local_scenes([single])) == 2


def test_local_scenes_say_what_is_wrong(tmp_path):
    with pytest.raises(MappingError, match="no such file"):
        mapping.local_scenes([tmp_path / "missing"])
    with pytest.raises(MappingError, match="holds no GeoTIFF"):
        mapping.local_scenes([tmp_path])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(MappingError, match="not a GeoTIFF"):
        mapping.local_scenes([tmp_path / "notes.txt"])
    broken = tmp_path / "scene_20231215_VV.tif"
    broken.write_bytes(b"not a tiff at all")
    with pytest.raises(MappingError, match="not a readable GeoTIFF"):
        mapping.local_scenes([broken])
    only_vv = sorted(FIXTURES.glob("*VV.tif"))
    with pytest.raises(MappingError, match="no VH scene"):
        mapping.local_cube(only_vv, "2023-12-20")
    (tmp_path / "cat.json").write_text(json.dumps({"type": "Topology"}))
    with pytest.raises(MappingError, match="not a STAC catalog"):
        mapping.local_scenes([tmp_path / "cat.json"])


# -----------------------------------------------------------------------------
# distribution shift
def _synthetic_stats() -> BandStats:
    from sarslide.synthetic import make_cube

    cube = make_cube((128, 128), event="hokkaido", n_pre=1, n_post=1, seed=0)
    pair = pass_pair(cube)
    return compute_stats(
        np.stack([pair[c].values for c in ("pre_vv", "pre_vh", "post_vv", "post_vh")])[
            None
        ]
    )


def test_scene_stats_are_compute_stats_of_the_pair():
    pair = pass_pair(mapping.local_cube([FIXTURES], "2023-12-20"))
    images = np.stack(
        [pair[c].values for c in ("pre_vv", "pre_vh", "post_vv", "post_vh")]
    )[None]
    expected = compute_stats(images)
    got = mapping.scene_stats(pair)
    for band in ("vv", "vh"):
        assert got.mean[band] == pytest.approx(expected.mean[band])
        assert got.std[band] == pytest.approx(expected.std[band])


def test_real_radar_is_refused_for_a_model_trained_on_synthetic_scenes():
    pair = pass_pair(mapping.local_cube([FIXTURES], "2023-12-20"))
    stats = _synthetic_stats()
    scene = mapping.scene_stats(pair)
    calls = []

    def model(batch):
        calls.append(batch.shape)
        return np.full((batch.shape[0],) + batch.shape[2:], 0.5, np.float32)

    with pytest.raises(InputShiftError) as err:
        mapping.predict_probability(pair, model, stats, window=32, progress=False)
    text = str(err.value)
    assert calls == []  # refused before the model saw a single window
    for needle in (
        "band vv",
        f"{scene.mean['vv']:.3f}",
        f"{stats.mean['vv']:.3f}",
        f"{stats.std['vv']:.3f}",
        "trained on this kind of data",
        "force=True",
    ):
        assert needle in text, (needle, text)
    shift = (scene.mean["vv"] - stats.mean["vv"]) / stats.std["vv"]
    assert abs(shift) > mapping.shift.MAX_MEAN_SHIFT
    prob = mapping.predict_probability(
        pair, model, stats, window=32, progress=False, force=True
    )
    assert calls and np.isfinite(prob.values).mean() > 0.9
    # the scene's own statistics are in distribution: no refusal
    assert len(mapping.check_input_distribution(pair, scene)) == 2


# -----------------------------------------------------------------------------
# provenance, exports
def _prov(source="synthetic", collection=""):
    return mapping.MapProvenance(
        data_source=source,
        collection=collection,
        event="hokkaido",
        model="none-nall-s0",
        model_trained_on="synthetic chips of hokkaido (profile demo)",
        profile="demo",
        threshold=0.42,
        threshold_choice="given",
        pre_passes=["2018-08-24T20:40:00"],
        post_passes=["2018-09-13T20:40:00"],
        version="9.9",
    )


@pytest.mark.parametrize("lazy", [False, True])
def test_every_geotiff_carries_its_provenance(tmp_path, lazy):
    prov = _prov()
    tags = mapping.provenance_tags(prov)
    raster = _grid(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64))
    if lazy:
        raster = raster.chunk({"y": 32, "x": 32})
    path = mapping.write_cog(raster, tmp_path / "p.tif", tags=tags)
    with rasterio.open(path) as src:
        read = src.tags()
    for key in (
        "DATA_SOURCE",
        "EVENT",
        "PRE_PASSES",
        "POST_PASSES",
        "MODEL",
        "MODEL_TRAINED_ON",
        "PROFILE",
        "THRESHOLD",
        "VERSION",
    ):
        assert read["SARSLIDE_" + key] == tags["SARSLIDE_" + key]
    assert read["SARSLIDE_DATA_SOURCE"].startswith("SYNTHETIC")
    assert read["SARSLIDE_THRESHOLD"] == "0.42" and read["SARSLIDE_VERSION"] == "9.9"


def test_titles_and_tags_say_synthetic_or_real():
    assert "SYNTHETIC" in mapping.quicklook_title("Hokkaido", _prov())
    real = _prov("planetary-computer", "sentinel-1-rtc")
    assert "SYNTHETIC" not in mapping.quicklook_title("Hokkaido", real)
    assert mapping.provenance_tags(real)["SARSLIDE_DATA_SOURCE"] == (
        "real radar from Planetary Computer sentinel-1-rtc"
    )
    assert mapping.provenance_tags(_prov("files"))["SARSLIDE_DATA_SOURCE"].startswith(
        "real radar"
    )


def _cells():
    values = np.zeros((40, 40), np.float32)
    values[:10, :10] = 1
    values[30:, 20:25] = 1
    heat = mapping.density_heatmap(_binary(values), cell_size=100.0)
    ranked = mapping.rank_cells(heat, top=5)
    return heat, ranked, mapping.cells_frame(ranked, heat)


def test_geojson_is_rfc7946_lonlat_and_csv_names_its_crs(tmp_path):
    import geopandas as gpd

    _, ranked, cells = _cells()
    geojson, csv = mapping.write_cells(
        cells, tmp_path / "c.geojson", tmp_path / "c.csv"
    )
    doc = json.loads(geojson.read_text())
    assert "crs" not in doc  # RFC 7946: no crs member, WGS 84 lon/lat implied
    ring = np.asarray(doc["features"][0]["geometry"]["coordinates"][0])
    assert shapely.LinearRing(
        ring
    ).is_ccw  # RFC 7946 §3.1.6: exterior rings counterclockwise
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    corners = np.asarray(
        shapely.geometry.polygon.orient(cells.geometry.iloc[0]).exterior.coords
    )
    lon, lat = to_lonlat.transform(corners[:, 0], corners[:, 1])
    np.testing.assert_allclose(ring[:, 0], lon, atol=1e-6)
    np.testing.assert_allclose(ring[:, 1], lat, atol=1e-6)
    assert gpd.read_file(geojson).crs.to_epsg() == 4326
    table = pd.read_csv(csv)
    assert set(table["crs"]) == {CRS} and list(table["rank"]) == list(ranked["rank"])
    native, _ = mapping.write_cells(
        cells, tmp_path / "u.geojson", tmp_path / "u.csv", geojson_crs="native"
    )
    assert gpd.read_file(native).crs.to_epsg() == 32654
    np.testing.assert_allclose(gpd.read_file(native).geometry.area, 100.0**2)


def test_web_map_draws_heatmap_and_cells_with_or_without_tiles(tmp_path, monkeypatch):
    heat, ranked, _ = _cells()
    offline = mapping.web_map(heat, ranked, tiles=None)
    html = offline.get_root().render()
    assert (
        "tile.openstreetmap.org" not in html
    )  # no basemap: nothing fetched from a tile server
    assert html.count('"rank": ') == len(ranked)  # every ranked cell is drawn
    assert "data:image/png;base64" in html  # the heatmap, embedded
    online = mapping.web_map(heat, ranked, tiles="OpenStreetMap").get_root().render()
    assert "tile.openstreetmap.org" in online
    monkeypatch.setenv(mapping.TILES_ENV, "none")
    assert mapping.default_tiles() is None
    monkeypatch.delenv(mapping.TILES_ENV)
    assert mapping.default_tiles() == "OpenStreetMap"
    path = mapping.write_web_map(offline, tmp_path / "map.html")
    assert path.read_text().startswith("<!DOCTYPE html>")
    # the view is the heatmap's extent in lon/lat
    west, south, east, north = heat.rio.transform_bounds("EPSG:4326")
    view = re.search(
        r"fitBounds\(\s*\[\[([-\d.e]+), ([-\d.e]+)\], \[([-\d.e]+), ([-\d.e]+)\]\]",
        html,
    )
    np.testing.assert_allclose(
        [float(v) for v in view.groups()], [south, west, north, east], atol=2e-3
    )


def test_progress_bars_honour_tqdm_disable(monkeypatch):
    from sarslide.engine.progress import progress_bar

    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress_bar(total=3, disable=False).disable is True
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert progress_bar(total=3, disable=False).disable is False
