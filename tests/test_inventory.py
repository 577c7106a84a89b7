"""Inventory rasterisation against independent references.

* Real Kaikōura KMZ points: per-pixel counts equal a numpy ``histogram2d`` of the
  points' projected coordinates, and their sum equals the number of points shapely finds
  inside the grid's footprint.
* Polygons of known area (shapely): rasterised area within 1.5 % of the geometric area,
  in the cube's CRS and after a round trip through lon/lat.
"""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from pyproj import Transformer
from shapely import affinity

from sarslide.cube import CubeError, validate_cube
from sarslide.inventory import (
    InventoryWarning,
    polygons_from_mask,
    rasterize,
    read_inventory,
    with_labels,
)

FIXTURES = Path(__file__).resolve().parent / "data"  # real files, see data/README.md
KMZ = FIXTURES / "kaikoura_2016_points" / "Landslides_Kaikoura_2016.kmz"
N_KMZ_POINTS = 7355  # stated in tests/data/README.md

UTM54 = "EPSG:32654"  # Hokkaido's grid CRS
UTM59S = "EPSG:32759"  # Kaikōura's grid CRS


def grid(crs: str, x0: float, y0: float, nx: int, ny: int, res: float) -> xr.DataArray:
    """A template grid: top-left corner (x0, y0), pixel centres, y decreasing."""
    x = x0 + res * (np.arange(nx) + 0.5)
    y = y0 - res * (np.arange(ny) + 0.5)
    da = xr.DataArray(
        np.zeros((ny, nx), "float32"), dims=("y", "x"), coords={"y": y, "x": x}
    )
    return da.rio.write_crs(crs)


def edges(like: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    res = float(like.x[1] - like.x[0])
    xe = np.concatenate([like.x.values - res / 2, [like.x.values[-1] + res / 2]])
    ye = np.concatenate([like.y.values[::-1] - res / 2, [like.y.values[0] + res / 2]])
    return xe, ye


def kaikoura_points_utm() -> gpd.GeoDataFrame:
    return gpd.read_file(KMZ).to_crs(UTM59S)


# --- points ---


@pytest.mark.parametrize("res", [500.0, 2000.0])
def test_kmz_points_counts_match_histogram(res):
    pts = kaikoura_points_utm()
    assert len(pts) == N_KMZ_POINTS
    # A grid over part of the area, so some points fall outside it.
    x0, y0 = 600_000.0, 5_320_000.0
    like = grid(UTM59S, x0, y0, int(60_000 / res), int(80_000 / res), res)
    counts = rasterize(KMZ, like=like)
    assert counts.name == "landslides" and counts.dtype == np.uint16
    assert counts.dims == ("y", "x") and counts.rio.crs.to_epsg() == 32759

    xe, ye = edges(like)
    x = pts.geometry.x.values
    y = pts.geometry.y.values
    hist, _, _ = np.histogram2d(y, x, bins=[ye, xe])
    expected = hist[::-1].astype(int)  # rows north to south like the grid
    np.testing.assert_array_equal(counts.values.astype(int), expected)

    footprint = shapely.box(xe[0], ye[0], xe[-1], ye[-1])
    inside = int(pts.geometry.within(footprint).sum())
    assert 0 < inside < N_KMZ_POINTS
    assert int(counts.values.sum()) == inside
    assert counts.attrs["label_kind"] == "points"


def whole_area_grid(res: float = 1000.0) -> xr.DataArray:
    """A grid one pixel larger on each side than the points' extent."""
    xmin, ymin, xmax, ymax = kaikoura_points_utm().total_bounds
    x0, y0 = math.floor(xmin / res) * res - res, math.ceil(ymax / res) * res + res
    nx = int((xmax - x0) // res) + 2
    ny = int((y0 - ymin) // res) + 2
    return grid(UTM59S, x0, y0, nx, ny, res)


def test_kmz_all_points_on_event_grid():
    """On a grid covering the whole Kaikōura area every point is counted once."""
    counts = rasterize(KMZ, like=whole_area_grid())
    assert int(counts.values.sum()) == N_KMZ_POINTS
    # Dense clusters: several landslides per square kilometre somewhere.
    assert counts.values.max() > 1


def test_points_from_csv_and_geojson_agree(tmp_path):
    rng = np.random.default_rng(0)
    like = grid(UTM54, 580_000.0, 4_740_000.0, 50, 40, 10.0)
    to_ll = Transformer.from_crs(UTM54, "EPSG:4326", always_xy=True)
    # 300 points, some stacked in the same pixel, drawn on the grid (cube CRS).
    px = rng.integers(0, 50, 300)
    py = rng.integers(0, 40, 300)
    xs = 580_000.0 + (px + rng.uniform(0.1, 0.9, 300)) * 10.0
    ys = 4_740_000.0 - (py + rng.uniform(0.1, 0.9, 300)) * 10.0
    lon, lat = to_ll.transform(xs, ys)
    pd.DataFrame({"Longitude": lon, "Latitude": lat, "id": range(300)}).to_csv(
        tmp_path / "pts.csv", index=False
    )
    gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326").to_file(
        tmp_path / "pts.geojson"
    )
    expected = np.zeros((40, 50), int)
    np.add.at(expected, (py, px), 1)  # hand count per pixel
    for path in (tmp_path / "pts.csv", tmp_path / "pts.geojson"):
        counts = rasterize(path, like=like)
        np.testing.assert_array_equal(counts.values, expected)
    assert expected.max() >= 2  # the test really has stacked points


def test_csv_without_coordinate_columns_is_rejected(tmp_path):
    pd.DataFrame({"east": [1.0], "north": [2.0]}).to_csv(
        tmp_path / "bad.csv", index=False
    )
    like = grid(UTM54, 580_000.0, 4_740_000.0, 10, 10, 10.0)
    with pytest.raises(ValueError, match="longitude column"):
        rasterize(tmp_path / "bad.csv", like=like)


# --- polygons ---

X0, Y0, RES = 580_000.0, 4_740_000.0, 10.0  # a 2 km x 2 km grid at 10 m


def known_polygons() -> tuple[gpd.GeoDataFrame, float]:
    """Circle, rotated rectangle and a ring (circle with a hole), disjoint; total
    area."""
    circle = shapely.Point(X0 + 503.0, Y0 - 497.0).buffer(300.0, quad_segs=256)
    rect = affinity.rotate(shapely.box(X0 + 1100, Y0 - 700, X0 + 1500, Y0 - 450), 30.0)
    ring = (
        shapely.Point(X0 + 1000, Y0 - 1500)
        .buffer(350, quad_segs=256)
        .difference(shapely.Point(X0 + 1000, Y0 - 1500).buffer(150, quad_segs=256))
    )
    exact = math.pi * 300.0**2 + 400.0 * 250.0 + math.pi * (350.0**2 - 150.0**2)
    gdf = gpd.GeoDataFrame(
        {"name": ["circle", "rect", "ring"]}, geometry=[circle, rect, ring], crs=UTM54
    )
    # shapely's area of the fine polygonal approximations agrees with the formulas
    assert gdf.area.sum() == pytest.approx(exact, rel=1e-4)
    return gdf, exact


def test_polygon_area_within_tolerance():
    gdf, exact = known_polygons()
    like = grid(UTM54, X0, Y0, 200, 200, RES)
    mask = rasterize(gdf, like=like)
    assert mask.dtype == np.uint8 and set(np.unique(mask.values)) == {0, 1}
    area = mask.values.sum() * RES * RES
    assert area == pytest.approx(exact, rel=0.015)
    assert mask.attrs["label_kind"] == "mask"
    # The hole of the ring stays empty: its centre pixel is 0, the ring itself is 1.
    row, col = int((Y0 - (Y0 - 1500)) / RES), int(1000 / RES)
    assert mask.values[row, col] == 0
    assert mask.values[row, col + 25] == 1


def test_overlapping_polygons_count_once():
    a = shapely.box(X0 + 100, Y0 - 600, X0 + 600, Y0 - 100)
    b = shapely.box(X0 + 350, Y0 - 850, X0 + 850, Y0 - 350)
    gdf = gpd.GeoDataFrame(geometry=[a, b], crs=UTM54)
    mask = rasterize(gdf, like=grid(UTM54, X0, Y0, 100, 100, RES))
    union = shapely.union_all([a, b]).area  # 2 * 250000 - 62500
    assert mask.values.sum() * RES * RES == pytest.approx(union, rel=1e-9)


def test_polygons_in_other_crs_are_reprojected():
    gdf, exact = known_polygons()
    # Densify, then move the polygons to lon/lat: the file-side CRS differs from the
    # cube's.
    lonlat = gdf.set_geometry(gdf.geometry.segmentize(5.0)).to_crs("EPSG:4326")
    like = grid(UTM54, X0, Y0, 200, 200, RES)
    mask_ll = rasterize(lonlat, like=like)
    mask_utm = rasterize(gdf, like=like)
    assert mask_ll.values.sum() * RES * RES == pytest.approx(exact, rel=0.015)
    # Same pixels up to a thin boundary band.
    assert (mask_ll.values != mask_utm.values).sum() <= 0.01 * mask_utm.values.sum()
    # Also into a different projected grid CRS (Web Mercator file -> UTM cube).
    merc = gdf.set_geometry(gdf.geometry.segmentize(5.0)).to_crs("EPSG:3857")
    assert rasterize(merc, like=like).values.sum() * RES * RES == pytest.approx(
        exact, rel=0.015
    )


@pytest.mark.parametrize("suffix", [".gpkg", ".shp", ".geojson"])
def test_polygon_files_match_geodataframe(tmp_path, suffix):
    gdf, _ = known_polygons()
    path = tmp_path / f"inventory{suffix}"
    gdf.to_crs("EPSG:4326").to_file(path)
    like = grid(UTM54, X0, Y0, 200, 200, RES)
    from_file = rasterize(path, like=like)
    from_frame = rasterize(gdf.to_crs("EPSG:4326"), like=like)
    np.testing.assert_array_equal(from_file.values, from_frame.values)


def test_zipped_shapefile(tmp_path):
    import zipfile

    gdf, exact = known_polygons()
    gdf.to_file(tmp_path / "inv.shp")
    with zipfile.ZipFile(tmp_path / "inv.zip", "w") as zf:
        for part in tmp_path.glob("inv.*"):
            if part.suffix != ".zip":
                zf.write(part, part.name)
    mask = rasterize(tmp_path / "inv.zip", like=grid(UTM54, X0, Y0, 200, 200, RES))
    assert mask.values.sum() * RES * RES == pytest.approx(exact, rel=0.015)


def test_all_touched_marks_more_pixels():
    gdf, exact = known_polygons()
    like = grid(UTM54, X0, Y0, 200, 200, RES)
    touched = rasterize(gdf, like=like, all_touched=True).values.sum() * RES * RES
    assert touched > exact * 1.02


# --- bad input ---


def test_inventory_outside_cube_warns_and_gives_zeros():
    far = gpd.GeoDataFrame(
        geometry=[shapely.Point(X0 + 50_000, Y0).buffer(100)], crs=UTM54
    )
    like = grid(UTM54, X0, Y0, 50, 50, RES)
    with pytest.warns(InventoryWarning, match="none of the inventory"):
        mask = rasterize(far, like=like)
    assert mask.dtype == np.uint8 and mask.values.sum() == 0
    pts = gpd.GeoDataFrame(geometry=[shapely.Point(10.0, 50.0)], crs="EPSG:4326")
    with pytest.warns(InventoryWarning):
        counts = rasterize(pts, like=like)
    assert counts.dtype == np.uint16 and counts.values.sum() == 0


def test_mixed_or_line_geometries_are_rejected():
    like = grid(UTM54, X0, Y0, 20, 20, RES)
    mixed = gpd.GeoDataFrame(
        geometry=[shapely.Point(X0 + 5, Y0 - 5), shapely.box(X0, Y0 - 50, X0 + 50, Y0)],
        crs=UTM54,
    )
    with pytest.raises(ValueError, match="geometry types"):
        rasterize(mixed, like=like)
    line = gpd.GeoDataFrame(
        geometry=[shapely.LineString([(X0, Y0), (X0 + 99, Y0 - 99)])], crs=UTM54
    )
    with pytest.raises(ValueError, match="LineString"):
        rasterize(line, like=like)


def test_inventory_without_crs_or_unknown_type(tmp_path):
    like = grid(UTM54, X0, Y0, 20, 20, RES)
    no_crs = gpd.GeoDataFrame(geometry=[shapely.box(X0, Y0 - 50, X0 + 50, Y0)])
    with pytest.raises(ValueError, match="has no CRS"):
        rasterize(no_crs, like=like)
    assert rasterize(no_crs, like=like, crs=UTM54).values.sum() == 25
    (tmp_path / "inv.txt").write_text("nothing")
    with pytest.raises(ValueError, match="unknown file type"):
        rasterize(tmp_path / "inv.txt", like=like)
    with pytest.raises(FileNotFoundError):
        rasterize(tmp_path / "missing.gpkg", like=like)
    with pytest.raises(CubeError, match="no CRS"):
        rasterize(
            no_crs, like=xr.DataArray(np.zeros((2, 2)), dims=("y", "x")), crs=UTM54
        )


# --- with_labels ---


def tiny_cube() -> xr.Dataset:
    rng = np.random.default_rng(1)
    like = grid(UTM54, X0, Y0, 200, 200, RES)
    times = pd.to_datetime(["2018-08-24T08:35", "2018-09-11T08:35"])
    shape = (2, 200, 200)
    cube = xr.Dataset(
        {
            "vv": (("time", "y", "x"), rng.gamma(4, 0.05, shape).astype("float32")),
            "vh": (("time", "y", "x"), rng.gamma(4, 0.012, shape).astype("float32")),
        },
        coords={"time": times, "y": like.y, "x": like.x},
        attrs={
            "event": "hokkaido",
            "event_time": "2018-09-05T18:07:59+00:00",
            "source": "test",
        },
    )
    return cube.rio.write_crs(UTM54)


def test_with_labels_polygons_and_points():
    gdf, exact = known_polygons()
    cube = tiny_cube()
    labelled = with_labels(cube, gdf.to_crs("EPSG:4326"))
    validate_cube(labelled)
    assert labelled.attrs["label_kind"] == "mask"
    assert labelled["landslides"].dtype == np.uint8
    assert labelled["landslides"].values.sum() * RES * RES == pytest.approx(
        exact, rel=0.015
    )
    assert "landslides" not in cube  # the input is not modified

    pts = gpd.GeoDataFrame(geometry=[shapely.Point(X0 + 15, Y0 - 15)] * 3, crs=UTM54)
    counted = with_labels(cube, pts)
    assert counted.attrs["label_kind"] == "points"
    assert counted["landslides"].dtype == np.uint16
    assert (
        counted["landslides"].values[1, 1] == 3
        and counted["landslides"].values.sum() == 3
    )


def test_read_inventory_drops_z_and_empty():
    gdf = gpd.GeoDataFrame(
        geometry=[shapely.Point(1.0, 2.0, 3.0), shapely.Point(), None], crs="EPSG:4326"
    )
    out = read_inventory(gdf)
    assert len(out) == 1 and not out.geometry.has_z.any()


# --- fetch ---


def test_fetch_inventory_checks_the_real_sha256(tmp_path):
    """The Kaikōura KMZ served over loopback passes the sha256 recorded in events.py."""
    import dataclasses

    from range_server import LoopbackServer

    from sarslide.acquire import fetch_inventory
    from sarslide.events import get_event

    real = get_event("kaikoura")
    with LoopbackServer(KMZ.parent) as server:
        url = server.url(KMZ.name)
        event = dataclasses.replace(
            real, inventory=dataclasses.replace(real.inventory, url=url)
        )
        path = fetch_inventory(event, cache_dir=tmp_path / "cache", progress=False)
        assert path.read_bytes() == KMZ.read_bytes()
        # A wrong checksum is refused and leaves nothing in the cache.
        bad = dataclasses.replace(
            real,
            inventory=dataclasses.replace(
                real.inventory, url=url, known_hash="sha256:" + "0" * 64
            ),
        )
        with pytest.raises(ValueError, match="(?i)hash"):
            fetch_inventory(bad, cache_dir=tmp_path / "cache2", progress=False)
        assert list((tmp_path / "cache2").iterdir()) == []
    # Cached: a second call needs no server.
    assert fetch_inventory(event, cache_dir=tmp_path / "cache", progress=False) == path
    assert int(rasterize(path, like=whole_area_grid()).values.sum()) == N_KMZ_POINTS


def test_polygons_from_mask_round_trip():
    rng = np.random.default_rng(5)
    like = grid(UTM54, X0, Y0, 60, 50, RES)
    mask = (rng.random((50, 60)) < 0.15).astype("uint8")
    labels = like.copy(data=mask)
    polys = polygons_from_mask(labels)
    # area of the polygons = labelled pixels x pixel area (checked with shapely's area)
    assert polys.area.sum() == pytest.approx(mask.sum() * RES * RES)
    np.testing.assert_allclose(polys["area_m2"], polys.area)
    np.testing.assert_array_equal(rasterize(polys, like=like).values, mask)
    # through lon/lat and back: pixel corners move far less than half a pixel
    back = rasterize(polys.to_crs("EPSG:4326"), like=like)
    np.testing.assert_array_equal(back.values, mask)
    # 4-connected groups: two pixels touching at a corner are two polygons
    diag = like.copy(data=np.zeros((50, 60), "uint8"))
    diag.values[10, 10] = diag.values[11, 11] = 1
    assert len(polygons_from_mask(diag)) == 2


def test_fetch_inventory_picks_the_file_of_a_doi_record(tmp_path, monkeypatch):
    """A bare record DOI: the one geospatial file is chosen; several need filename=."""
    import sarslide.acquire.inventory as inv

    asked = []
    monkeypatch.setattr(
        inv,
        "fetch_file",
        lambda url, known_hash, **kw: asked.append((url, known_hash)) or tmp_path,
    )
    monkeypatch.setattr(
        inv,
        "doi_record_files",
        lambda doi, cache: {"README.txt": "md5:1", "landslides.zip": "md5:2"},
    )
    inv.fetch_inventory("hokkaido", cache_dir=tmp_path, progress=False)
    assert asked[-1] == ("doi:10.5281/zenodo.2577300/landslides.zip", None)
    monkeypatch.setattr(
        inv,
        "doi_record_files",
        lambda doi, cache: {"polygons.zip": "md5:1", "points.kmz": "md5:2"},
    )
    with pytest.raises(ValueError, match=r"pass filename=") as err:
        inv.fetch_inventory("hokkaido", cache_dir=tmp_path, progress=False)
    assert "points.kmz" in str(err.value) and "polygons.zip" in str(err.value)
    inv.fetch_inventory(
        "hokkaido", cache_dir=tmp_path, filename="points.kmz", progress=False
    )
    assert asked[-1][0] == "doi:10.5281/zenodo.2577300/points.kmz"


def test_inventory_reads_without_the_download_stack():
    """``sarslide.inventory`` is geometry -> raster; the download lives in
    ``acquire``."""
    import subprocess
    import sys

    code = (
        "import sys, sarslide.inventory as inv; "
        "assert 'sarslide.acquire' not in sys.modules, 'inventory imported acquire'; "
        "assert not hasattr(inv, 'fetch_inventory'), 'a download in inventory'; "
        "from sarslide.acquire import fetch_inventory"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
