"""The paper's datacubes: download, unzip, open, convert — through a loopback server.

A small zarr store with the layout of Zenodo record 7248056 (dims timestep/y/x/timepair;
vv, vh, dem, landslides; coordinate ``sat:orbit_state`` 'a'/'d'; dates as timesteps) is
written in the test, zipped, served on 127.0.0.1 and loaded with the same function the
book uses. The result is checked with ``validate_cube`` and against the arrays that went
into the store.
"""

from __future__ import annotations

import hashlib
import socket
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from range_server import LoopbackServer

from sarslide.acquire import (
    NetworkUnavailableError,
    NoPassesError,
    load_paper_cube,
    load_paper_pass_pair,
)
from sarslide.cube import CubeError, validate_cube
from sarslide.events import get_event
from sarslide.passes import pass_pair

NY, NX = 30, 40
# Hokkaido: event 2018-09-05T18:07:59Z. Dates and orbit states of the test cube.
DATES = pd.to_datetime(
    [
        "2018-08-12",
        "2018-08-18",
        "2018-08-24",
        "2018-08-30",
        "2018-09-05",
        "2018-09-11",
        "2018-09-17",
        "2018-09-23",
    ]
)
STATES = np.array(["d", "a", "d", "a", "d", "a", "d", "a"])


def paper_layout(
    label_kind: str = "mask", seed: int = 0, crs: str | None = "EPSG:32654"
) -> xr.Dataset:
    """A dataset laid out like the published cubes (all values known to the test)."""
    rng = np.random.default_rng(seed)
    x = 580_005.0 + 10.0 * np.arange(NX)
    y = 4_740_005.0 - 10.0 * np.arange(NY)  # y decreasing, as written by rioxarray
    vv = rng.gamma(4.0, 0.21 / 4.0, (len(DATES), NY, NX)).astype("float32")
    vh = rng.gamma(4.0, 0.053 / 4.0, (len(DATES), NY, NX)).astype("float32")
    vv[:, 0, :5] = 0.0  # no data, as zero
    vh[2, -1, -1] = np.nan
    if label_kind == "mask":
        lab = (rng.random((NY, NX)) < 0.05).astype("float32")
        lab[3, 3] = np.nan  # the published labels hold NaN outside the mapped area
    else:
        lab = rng.poisson(0.3, (NY, NX)).astype("float32")
    ds = xr.Dataset(
        {
            "vv": (("timestep", "y", "x"), vv),
            "vh": (("timestep", "y", "x"), vh),
            "dem": (("y", "x"), rng.uniform(0, 400, (NY, NX)).astype("float32")),
            "slope": (("y", "x"), rng.uniform(0, 40, (NY, NX)).astype("float32")),
            "landslides": (("y", "x"), lab),
            "coh_vv": (
                ("timepair", "y", "x"),
                rng.random((3, NY, NX)).astype("float32"),
            ),
        },
        coords={
            "timestep": DATES,
            "y": y,
            "x": x,
            "timepair": np.arange(3),
            "sat:orbit_state": ("timestep", STATES),
        },
    )
    if crs is not None:
        ds = ds.rio.write_crs(crs)
    return ds


def zipped_store(ds: xr.Dataset, folder: Path, name: str) -> Path:
    """Write ``ds`` as ``<name>.zarr`` (zarr v2, consolidated) and zip it to
    ``<name>.zip``."""
    store = folder / f"{name}.zarr"
    ds.to_zarr(store, mode="w", consolidated=True, zarr_format=2)
    archive = folder / f"{name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(store.rglob("*")):
            zf.write(path, path.relative_to(folder))
    return archive


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def served(tmp_path):
    src = tmp_path / "server"
    src.mkdir()
    ds = paper_layout()
    archive = zipped_store(ds, src, "hokkaido_japan")
    with LoopbackServer(src) as server:
        yield server, archive, ds


def test_download_convert_validate(served, tmp_path):
    server, archive, ds = served
    cache = tmp_path / "cache"
    cube = load_paper_cube(
        "hokkaido",
        url=server.url(archive.name),
        known_hash=sha256(archive),
        cache_dir=cache,
        progress=False,
    )
    validate_cube(cube)
    assert cube.attrs["source"] == "zenodo" and cube.attrs["event"] == "hokkaido"
    assert cube.attrs["label_kind"] == "mask"
    assert pd.Timestamp(cube.attrs["event_time"]) == pd.Timestamp(
        "2018-09-05T18:07:59Z"
    )
    assert cube.rio.crs.to_epsg() == 32654
    assert "timepair" not in cube.dims and "coh_vv" not in cube
    assert set(cube.data_vars) == {"vv", "vh", "landslides", "dem"}
    # lazily opened
    assert hasattr(cube["vv"].data, "dask")
    # all amplitude timesteps, in order, with orbit states spelled out
    np.testing.assert_array_equal(cube["time"].values, DATES.values)
    expected_states = ["descending" if s == "d" else "ascending" for s in STATES]
    assert list(cube["orbit_state"].values) == expected_states
    # values: linear backscatter kept, zeros and NaN -> NaN
    vv = ds["vv"].values.copy()
    vv[vv <= 0] = np.nan
    np.testing.assert_array_equal(cube["vv"].values, vv)
    assert np.isnan(cube["vh"].values[2, -1, -1])
    # labels: > 0 -> 1, NaN -> 0, uint8
    lab = np.nan_to_num(ds["landslides"].values) > 0
    assert cube["landslides"].dtype == np.uint8
    np.testing.assert_array_equal(cube["landslides"].values, lab.astype("uint8"))
    np.testing.assert_array_equal(cube["dem"].values, ds["dem"].values)
    # y decreasing, pixel centres kept
    np.testing.assert_array_equal(cube["y"].values, ds["y"].values)
    # timesteps select by date strings, as with the published cubes
    assert cube.sel(time=slice(None, "20180905")).sizes["time"] == 5
    # the downloaded archive is cached: no server needed the second time
    server.stop()
    again = load_paper_cube(
        "hokkaido",
        cache_dir=cache,
        url=server.url(archive.name),
        known_hash=sha256(archive),
        progress=False,
    )
    np.testing.assert_array_equal(again["vh"].values, cube["vh"].values)


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_orbit_state_and_pass_pair(served, tmp_path):
    server, archive, ds = served
    cube = load_paper_cube(
        "hokkaido",
        url=server.url(archive.name),
        known_hash=sha256(archive),
        cache_dir=tmp_path / "c",
        progress=False,
        orbit_state="d",
    )
    assert set(cube["orbit_state"].values) == {"descending"}
    assert cube.sizes["time"] == 4
    # Nearest descending passes: 2018-09-05 00:00 (before 18:07 UTC) and 2018-09-17.
    pair = pass_pair(cube, n_pre=2, n_post=1)
    vv = ds["vv"].values.astype("float64")
    vv[vv <= 0] = np.nan
    pre = np.nanmean(vv[[2, 4]], axis=0)  # 08-24 and 09-05, both 'd'
    np.testing.assert_allclose(pair["pre_vv"].values, pre, rtol=1e-6)
    np.testing.assert_allclose(pair["post_vv"].values, vv[6], rtol=1e-6)
    # the convenience wrapper does the same
    pair2 = load_paper_pass_pair(
        "hokkaido",
        n_pre=2,
        n_post=1,
        orbit_state="descending",
        url=server.url(archive.name),
        known_hash=sha256(archive),
        cache_dir=tmp_path / "c",
        progress=False,
    )
    np.testing.assert_allclose(pair2["pre_vv"].values, pre, rtol=1e-6)


def test_points_event_gives_counts(tmp_path):
    ds = paper_layout("points", crs="EPSG:32759")
    ds = ds.assign_coords(
        x=663_005.0 + 10.0 * np.arange(NX),
        y=5_320_005.0 - 10.0 * np.arange(NY),
        timestep=pd.to_datetime(
            [
                "2016-08-23",
                "2016-09-04",
                "2016-09-16",
                "2016-10-10",
                "2016-11-03",
                "2016-11-15",
                "2016-11-27",
                "2016-12-09",
            ]
        ),
    )
    store = tmp_path / "kaikoura_newzealand.zarr"
    ds.to_zarr(store, consolidated=True, zarr_format=2)
    cube = load_paper_cube("kaikoura", path=store)
    assert cube.attrs["label_kind"] == "points"
    assert cube["landslides"].dtype == np.uint16
    np.testing.assert_array_equal(
        cube["landslides"].values, ds["landslides"].values.astype(int)
    )
    assert cube.rio.crs.to_epsg() == 32759


def test_store_without_crs_takes_the_event_crs(tmp_path):
    ds = paper_layout(crs=None)
    assert ds.rio.crs is None
    store = tmp_path / "hokkaido_japan.zarr"
    ds.to_zarr(store, consolidated=True, zarr_format=2)
    cube = load_paper_cube("hokkaido", path=store)
    assert cube.rio.crs.to_epsg() == 32654


def test_lonlat_store_is_reprojected_to_event_grid(tmp_path):
    """A geographic cube lands on the event's UTM grid at 10 m, values where they
    were."""
    ev = get_event("hokkaido")
    ny, nx = 20, 30
    lon = 141.90 + 0.0005 * (np.arange(nx) + 0.5)
    lat = 42.80 - 0.0005 * (np.arange(ny) + 0.5)
    rng = np.random.default_rng(3)
    base = paper_layout().isel(y=slice(0, ny), x=slice(0, nx)).drop_vars("spatial_ref")
    base = base.assign_coords(x=lon, y=lat)
    base["vv"] = (
        ("timestep", "y", "x"),
        rng.gamma(4, 0.05, (len(DATES), ny, nx)).astype("float32"),
    )
    store = tmp_path / "hokkaido_japan.zarr"
    base.to_zarr(store, consolidated=True, zarr_format=2)
    cube = load_paper_cube("hokkaido", path=store)
    assert cube.rio.crs.to_epsg() == 32654
    assert cube.rio.resolution() == (10.0, -10.0)
    # Sample the reprojected cube at the UTM position of a lon/lat pixel centre.
    from pyproj import Transformer

    to_utm = Transformer.from_crs("EPSG:4326", ev.crs, always_xy=True)
    i, j = 10, 15
    xu, yu = to_utm.transform(lon[j], lat[i])
    got = cube["vv"].isel(time=0).sel(x=xu, y=yu, method="nearest").values
    # bilinear resampling at a source pixel centre returns close to that pixel's value
    neighbours = base["vv"].values[0, i - 1 : i + 2, j - 1 : j + 2]
    assert neighbours.min() <= got <= neighbours.max()
    assert int(cube["landslides"].sum()) > 0


def test_zip_path_and_unknown_layout(tmp_path):
    bad = paper_layout().rename({"vv": "VV"}).rename_dims({"timestep": "t"})
    archive = zipped_store(bad, tmp_path, "weird")
    with pytest.raises(CubeError) as err:
        load_paper_cube("hokkaido", path=archive)
    msg = str(err.value)
    assert "unknown datacube layout" in msg
    assert "'VV'" in msg and "'t'" in msg  # it lists what it found


def test_no_passes_for_orbit_state(tmp_path):
    ds = paper_layout().assign_coords(
        {"sat:orbit_state": ("timestep", ["d"] * len(DATES))}
    )
    store = tmp_path / "h.zarr"
    ds.to_zarr(store, consolidated=True, zarr_format=2)
    with pytest.raises(NoPassesError, match="no ascending passes"):
        load_paper_cube("hokkaido", path=store, orbit_state="ascending")
    with pytest.raises(ValueError, match="not known"):
        load_paper_cube("hokkaido", path=store, orbit_state="sideways")


def test_no_post_event_pass_is_an_error(tmp_path):
    ds = paper_layout().isel(timestep=slice(0, 4))  # all before the event
    store = tmp_path / "h.zarr"
    ds.to_zarr(store, consolidated=True, zarr_format=2)
    with pytest.raises(CubeError, match="before and after the event"):
        load_paper_cube("hokkaido", path=store)


# --- network ---


def test_interrupted_download_leaves_no_file(served, tmp_path):
    server, archive, _ = served
    cache = tmp_path / "cache"
    with pytest.raises(NetworkUnavailableError, match="demo"):
        load_paper_cube(
            "hokkaido",
            url=f"{server.base_url}/truncated/{archive.name}",
            known_hash=None,
            cache_dir=cache,
            progress=False,
        )
    leftovers = [p for p in cache.rglob("*")] if cache.exists() else []
    assert leftovers == []


def test_bad_checksum_leaves_no_file(served, tmp_path):
    server, archive, _ = served
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="(?i)hash"):
        load_paper_cube(
            "hokkaido",
            url=server.url(archive.name),
            known_hash="sha256:" + "1" * 64,
            cache_dir=cache,
            progress=False,
        )
    assert list(cache.rglob("*")) == []


def test_no_network_names_the_demo_profile(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NetworkUnavailableError) as err:
        load_paper_cube(
            "hokkaido",
            url=f"http://127.0.0.1:{port}/hokkaido_japan.zip",
            cache_dir=tmp_path,
            progress=False,
        )
    assert "SARSLIDE_PROFILE=demo" in str(err.value)
    assert isinstance(err.value, ConnectionError)


def test_interrupted_extraction_leaves_no_folder(tmp_path, monkeypatch):
    ds = paper_layout()
    archive = zipped_store(ds, tmp_path, "hokkaido_japan")

    def broken(self, path=None, members=None, pwd=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(zipfile.ZipFile, "extractall", broken)
    with pytest.raises(KeyboardInterrupt):
        load_paper_cube("hokkaido", path=archive)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hokkaido_japan.zarr",
        "hokkaido_japan.zip",
    ]
    monkeypatch.undo()
    validate_cube(load_paper_cube("hokkaido", path=archive))


def test_archive_with_two_stores_is_ambiguous(tmp_path):
    ds = paper_layout()
    ds.to_zarr(tmp_path / "a.zarr", consolidated=True, zarr_format=2)
    ds.to_zarr(tmp_path / "b.zarr", consolidated=True, zarr_format=3)
    with pytest.raises(CubeError, match=r"found 2 \(\['a.zarr', 'b.zarr'\]\)"):
        load_paper_cube("hokkaido", path=tmp_path)
    # a zarr v3 store alone is found and read as well
    validate_cube(load_paper_cube("hokkaido", path=tmp_path / "b.zarr"))


def test_download_killed_midway_leaves_no_file(served, tmp_path, monkeypatch):
    """Ctrl-C while bytes are being written: pooch's temporary file is removed."""
    import pooch

    server, archive, _ = served

    def half_then_interrupt(self, url, output_file, pooch_obj, check_only=False):
        with open(output_file, "wb") as out:
            out.write(archive.read_bytes()[: archive.stat().st_size // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", half_then_interrupt)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        load_paper_cube(
            "hokkaido",
            url=server.url(archive.name),
            known_hash=sha256(archive),
            cache_dir=cache,
            progress=False,
        )
    assert list(cache.rglob("*")) == []


def test_minus_32768_in_the_authors_cube_becomes_nan(tmp_path):
    ds = paper_layout()
    vv = ds["vv"].values.copy()
    vv[
        0, :3, :5
    ] = -32768.0  # Planetary Computer RTC no-data, as the authors' cubes hold it
    ds["vv"] = (ds["vv"].dims, vv)
    store = tmp_path / "hokkaido_japan.zarr"
    ds.to_zarr(store, consolidated=True, zarr_format=2)
    cube = load_paper_cube("hokkaido", path=store)
    values = cube["vv"].values
    assert not (values == -32768.0).any()
    assert np.isnan(values).sum() >= 15  # the 3 x 5 block, now no data
