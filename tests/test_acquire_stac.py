"""Planetary Computer path: search, pass selection and the odc-stac load.

* Search and pass selection run against recorded STAC JSON
  (``tests/data/s1_rtc_hokkaido_2018.json``: hand-written Sentinel-1 RTC items with
  realistic ``sat:``/``sar:`` properties), served by a minimal STAC API on loopback.
* The load runs on the real Sentinel-1 RTC GeoTIFFs in ``tests/data/opera_rtc_s1``,
  described by STAC items built here from the files' own projection metadata and served
  over HTTP with Range support; values are compared with reading the files directly.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pystac
import pytest
import rasterio
import rioxarray
import tornado.web
import xarray as xr
from pystac.extensions.projection import ProjectionExtension
from range_server import LoopbackServer
from rasterio.warp import transform_bounds

from sarslide.acquire import (
    COLLECTIONS,
    MissingKeyError,
    NetworkUnavailableError,
    NoPassesError,
    ResigningRioDriver,
    UncalibratedDataWarning,
    event_geobox,
    group_passes,
    load_planetary_computer,
    load_stac_items,
    pass_table,
    require_key,
    search_passes,
    select_passes,
)
from sarslide.cube import post_event_times, pre_event_times, validate_cube
from sarslide.events import DataSource, Event, get_event
from sarslide.passes import pass_pair

DATA = Path(__file__).resolve().parent / "data"
RECORDED = DATA / "s1_rtc_hokkaido_2018.json"
FIXTURES = DATA / "opera_rtc_s1"  # real files, see data/README.md


def recorded_items() -> list[pystac.Item]:
    features = json.loads(RECORDED.read_text())["features"]
    return [pystac.Item.from_dict(f) for f in features]


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


# --- selection ---


def test_group_passes_joins_frames_and_skips_single_pol():
    ev = get_event("hokkaido")
    passes = group_passes(recorded_items(), bounds_lonlat=ev.bounds_lonlat)
    table = pass_table(passes, ev)
    # 5 two-frame ascending passes, 5 descending 46, 2 descending 119; the VV-only
    # scene of 2018-09-23 is not a usable pass.
    assert len(passes) == 12
    asc = table[table.relative_orbit == 68]
    assert list(asc.n_items) == [2] * 5
    assert (asc.coverage == 1.0).all()  # neither frame alone covers the area, both do
    west = table[table.relative_orbit == 119]
    assert west.coverage.tolist() == pytest.approx(
        [0.4, 0.4], abs=1e-6
    )  # 0.10 of 0.25 deg
    assert "2018-09-23" not in set(table.time.dt.strftime("%Y-%m-%d"))
    assert table.loc[table.time == ts("2018-09-05T08:35:10"), "side"].item() == "pre"
    assert table.loc[table.time == ts("2018-09-07T20:42:31"), "side"].item() == "post"


def test_select_nearest_passes_from_one_track():
    ev = get_event("hokkaido")  # 2018-09-05T18:07:59Z
    sel = select_passes(recorded_items(), ev)
    # Ascending 68: 09-05 08:35 (9.5 h before) and 09-11 08:35 (6 days span) beat
    # descending 46 (08-26 -> 09-07, 12 days); descending 119 covers only 40 %.
    assert (sel.orbit_state, sel.relative_orbit) == ("ascending", 68)
    assert [p.time for p in sel.pre] == [ts("2018-09-05T08:35:10")]
    assert [p.time for p in sel.post] == [ts("2018-09-11T08:35:10")]
    assert len(sel.items) == 4  # two frames each

    two = select_passes(recorded_items(), ev, n_pre=2, n_post=2)
    assert [p.time.strftime("%m-%d") for p in two.pre] == ["09-05", "08-30"]
    assert [p.time.strftime("%m-%d") for p in two.post] == ["09-11", "09-17"]

    desc = select_passes(recorded_items(), ev, orbit_state="d")
    assert desc.relative_orbit == 46
    assert [p.time for p in desc.pre] == [ts("2018-08-26T20:42:31")]
    assert [p.time for p in desc.post] == [ts("2018-09-07T20:42:31")]
    assert {it.properties["sat:relative_orbit"] for it in desc.items} == {46}


def test_coverage_and_orbit_filters():
    ev = get_event("hokkaido")
    with pytest.raises(NoPassesError, match=r"descending orbit 119: 0 pre / 0 post"):
        select_passes(recorded_items(), ev, relative_orbit=119)
    west = select_passes(recorded_items(), ev, relative_orbit=119, min_coverage=0.3)
    assert [p.time.strftime("%m-%d") for p in (*west.pre, *west.post)] == [
        "09-04",
        "09-10",
    ]


def test_no_passes_after_the_event():
    ev = get_event("hokkaido")
    before = [it for it in recorded_items() if it.datetime < ev.time_utc]
    with pytest.raises(NoPassesError, match="1 after the event") as err:
        select_passes(before, ev)
    assert "ascending orbit 68: 3 pre / 0 post" in str(err.value)
    with pytest.raises(NoPassesError, match="0 passes found"):
        select_passes([], ev)


# --- search ---


class _StacApi:
    """A minimal STAC API over the recorded items: landing page + POST /search.

    It filters by collection, bbox and datetime interval as a STAC API does, and keeps
    the request bodies for inspection.
    """

    def __init__(self, features: list[dict]):
        self.features = features
        self.bodies: list[dict] = []

    def handlers(self):
        api = self

        class Landing(tornado.web.RequestHandler):
            def get(self):
                root = f"{self.request.protocol}://{self.request.host}/stac"
                self.write(
                    {
                        "type": "Catalog",
                        "id": "fake",
                        "description": "recorded items",
                        "stac_version": "1.0.0",
                        "conformsTo": [
                            "https://api.stacspec.org/v1.0.0/core",
                            "https://api.stacspec.org/v1.0.0/item-search",
                            "https://api.stacspec.org/v1.0.0/item-search#query",
                        ],
                        "links": [
                            {"rel": "self", "href": root, "type": "application/json"},
                            {"rel": "root", "href": root, "type": "application/json"},
                            {
                                "rel": "search",
                                "href": f"{root}/search",
                                "method": "POST",
                                "type": "application/geo+json",
                            },
                        ],
                    }
                )

        class Search(tornado.web.RequestHandler):
            def post(self):
                body = json.loads(self.request.body)
                api.bodies.append(body)
                w, s, e, n = body["bbox"]
                start, end = (pd.Timestamp(t) for t in body["datetime"].split("/"))
                out = []
                for f in api.features:
                    fw, fs, fe, fn = f["bbox"]
                    t = pd.Timestamp(f["properties"]["datetime"])
                    mode = f["properties"]["sar:instrument_mode"]
                    if (
                        f["collection"] in body["collections"]
                        and fw < e
                        and fe > w
                        and fs < n
                        and fn > s
                        and start <= t <= end
                        and mode == body["query"]["sar:instrument_mode"]["eq"]
                    ):
                        out.append(f)
                self.set_header("Content-Type", "application/geo+json")
                self.write({"type": "FeatureCollection", "features": out, "links": []})

        return [(r"/stac/?", Landing), (r"/stac/search", Search)]


def test_search_sends_the_query_and_feeds_selection(tmp_path):
    features = json.loads(RECORDED.read_text())["features"]
    api = _StacApi(features)
    ev = get_event("hokkaido")
    with LoopbackServer(tmp_path, extra_handlers=api.handlers()) as server:
        items = search_passes(ev, catalog=f"{server.base_url}/stac")
    body = api.bodies[-1]
    assert body["collections"] == ["sentinel-1-rtc"]
    assert body["bbox"] == list(ev.bounds_lonlat)
    # 36 days before to 24 days after the event's UTC origin time
    assert body["datetime"] == "2018-07-31T18:07:59Z/2018-09-29T18:07:59Z"
    assert body["query"] == {"sar:instrument_mode": {"eq": "IW"}}
    ids = {it.id for it in items}
    assert len(items) == len(features) - 1  # 2018-07-21 is outside the window
    assert not any("20180721" in i for i in ids)
    sel = select_passes(items, ev)
    assert [p.time.strftime("%m-%d") for p in (*sel.pre, *sel.post)] == [
        "09-05",
        "09-11",
    ]


def test_unreachable_catalog_names_the_demo_profile():
    with pytest.raises(NetworkUnavailableError, match="demo"):
        search_passes("hokkaido", catalog="http://127.0.0.1:9/stac")


def test_missing_key_for_rtc(monkeypatch):
    monkeypatch.delenv("PC_SDK_SUBSCRIPTION_KEY", raising=False)
    with pytest.raises(MissingKeyError, match="PC_SDK_SUBSCRIPTION_KEY") as err:
        load_planetary_computer("hokkaido", items=recorded_items())
    assert "sentinel-1-grd" in str(err.value)
    require_key("sentinel-1-grd")  # anonymous: no error
    assert COLLECTIONS["sentinel-1-grd"]["needs_key"] is False
    assert "NOT terrain corrected" in COLLECTIONS["sentinel-1-grd"]["values"]
    monkeypatch.setenv("PC_SDK_SUBSCRIPTION_KEY", "dummy")
    require_key("sentinel-1-rtc")


# --- loading ---


def fixture_files() -> dict[str, dict[str, Path]]:
    out: dict[str, dict[str, Path]] = {}
    for path in sorted(FIXTURES.glob("OPERA_*_??.tif")):
        stamp = re.search(r"_(\d{8}T\d{6}Z)_", path.name).group(1)
        pol = path.stem.rsplit("_", 1)[1].lower()
        out.setdefault(stamp, {})[pol] = path
    # three dates x (VV, VH): a missing file fails here, it is never skipped
    assert {k: sorted(v) for k, v in out.items()} == {
        k: ["vh", "vv"]
        for k in ("20231215T015904Z", "20231227T015903Z", "20250102T015857Z")
    }, (
        f"expected 6 OPERA GeoTIFFs in {FIXTURES}, found "
        f"{sorted(FIXTURES.glob('*.tif'))}"
    )
    return out


def stac_item(
    stamp: str, assets: dict[str, str], files: dict[str, Path]
) -> pystac.Item:
    """A STAC item for one date, projection info read from the GeoTIFF itself."""
    with rasterio.open(files["vv"]) as src:
        bounds, crs, shape, transform = src.bounds, src.crs, src.shape, src.transform
    w, s, e, n = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    item = pystac.Item(
        id=f"OPERA_RTC_T137-292318-IW1_{stamp}",
        geometry={
            "type": "Polygon",
            "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]],
        },
        bbox=[w, s, e, n],
        datetime=when,
        properties={
            "platform": "sentinel-1a",
            "sat:orbit_state": "ascending",
            "sat:relative_orbit": 137,
            "sar:instrument_mode": "IW",
        },
    )
    for pol, href in assets.items():
        item.add_asset(
            pol,
            pystac.Asset(href=href, media_type=pystac.MediaType.COG, roles=["data"]),
        )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.apply(
        epsg=crs.to_epsg(),
        shape=list(shape),
        transform=list(transform)[:6],
        bbox=list(bounds),
    )
    return item


def fixture_event() -> Event:
    """An 'event' between the fixture's 2023 and 2025 acquisitions, over its
    footprint."""
    files = next(iter(fixture_files().values()))
    with rasterio.open(files["vv"]) as src:
        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    pad = 0.002  # stay inside the footprint
    none = DataSource(url="", known_hash=None, citation="", license="")
    return Event(
        name="opera_fixture",
        title="OPERA RTC fixture",
        magnitude=0.0,
        date=datetime(2024, 6, 1).date(),
        time_utc=datetime(2024, 6, 1, tzinfo=timezone.utc),
        bounds_lonlat=(w + pad, s + pad, e - pad, n - pad),
        crs="EPSG:32611",
        paper_pre_pass=datetime(2023, 12, 27).date(),
        paper_post_pass=datetime(2025, 1, 2).date(),
        label_kind="mask",
        inventory=none,
        datacube=none,
        resolution=30.0,
    )


def direct(path: Path) -> xr.DataArray:
    return rioxarray.open_rasterio(path, masked=True).squeeze("band", drop=True)


class Tokens:
    """Shared-access tokens that expire on demand; the server accepts only the current
    one."""

    def __init__(self):
        self.current = 0
        self.lock = threading.Lock()
        self.signed = 0

    def sign(self, url: str) -> str:
        with self.lock:
            self.signed += 1
            return url.split("?")[0] + f"?sig={self.current}"

    def authorize(self, request) -> bool:
        return request.query == f"sig={self.current}"


@pytest.fixture
def fixture_server():
    files = fixture_files()
    with LoopbackServer(FIXTURES) as server:
        items = [
            stac_item(stamp, {p: server.url(f.name) for p, f in pols.items()}, pols)
            for stamp, pols in files.items()
        ]
        yield server, items, files


def test_loopback_load_returns_fixture_values(fixture_server):
    server, items, files = fixture_server
    ev = fixture_event()
    with rasterio.open(next(iter(files.values()))["vv"]) as src:
        from odc.geo.geobox import GeoBox

        native = GeoBox(src.shape, src.transform, src.crs.to_wkt())
    tokens = Tokens()
    server.authorize = tokens.authorize
    cube = load_planetary_computer(
        ev,
        items=items,
        geobox=native,
        n_pre=2,
        n_post=1,
        sign=tokens.sign,
        chunks=64,
        resampling="nearest",
    )
    assert hasattr(cube["vv"].data, "dask")  # lazy
    tokens.current = 1  # every token handed out so far expires now
    cube = cube.compute()
    validate_cube(cube, require_labels=False)
    assert cube.attrs["source"] == "planetary-computer:sentinel-1-rtc"
    stamps = sorted(files)
    expected_times = [
        pd.Timestamp(datetime.strptime(s, "%Y%m%dT%H%M%SZ")) for s in stamps
    ]
    assert list(pd.DatetimeIndex(cube.time.values)) == expected_times
    assert list(cube["orbit_state"].values) == ["ascending"] * 3
    assert list(cube["relative_orbit"].values) == [137] * 3
    for k, stamp in enumerate(stamps):
        for pol in ("vv", "vh"):
            ref = direct(files[stamp][pol])
            np.testing.assert_array_equal(cube["x"].values, ref["x"].values)
            np.testing.assert_array_equal(cube["y"].values, ref["y"].values)
            np.testing.assert_array_equal(cube[pol].isel(time=k).values, ref.values)
    assert cube.rio.crs.to_epsg() == 32611
    # pass logic on the loaded cube: two before the 2024-06-01 'event', one after
    assert list(pre_event_times(cube).strftime("%Y-%m-%d")) == [
        "2023-12-27",
        "2023-12-15",
    ]
    assert list(post_event_times(cube).strftime("%Y-%m-%d")) == ["2025-01-02"]
    pair = pass_pair(cube, n_pre=2, n_post=1)
    ref_pre = (
        direct(files[stamps[0]]["vh"]).values + direct(files[stamps[1]]["vh"]).values
    ) / 2
    np.testing.assert_allclose(pair["pre_vh"].values, ref_pre, rtol=1e-6)
    # GDAL read byte ranges, and every read carried a fresh token after the expiry
    ranges = [r for r in server.requests if r[3] is not None]
    assert ranges and all(r[2] in ("sig=0", "sig=1") for r in server.requests)
    assert any(r[2] == "sig=1" for r in ranges)


def test_sign_once_fails_after_expiry(fixture_server):
    """The control: odc-stac's patch_url signs at graph time and the reads are
    refused."""
    import odc.stac

    server, items, files = fixture_server
    tokens = Tokens()
    server.authorize = tokens.authorize
    gbox = event_geobox(fixture_event())
    lazy = odc.stac.load(
        items,
        bands=["vv"],
        geobox=gbox,
        chunks={"x": 64, "y": 64},
        patch_url=tokens.sign,
    )
    tokens.current = 1
    with pytest.raises(Exception, match="(?i)403|forbidden|not recognized|failed"):
        lazy["vv"].compute()
    # ...while the re-signing driver reads through the same expiry.
    lazy = odc.stac.load(
        items,
        bands=["vv"],
        geobox=gbox,
        chunks={"x": 64, "y": 64},
        driver=ResigningRioDriver(tokens.sign),
    )
    tokens.current = 2
    assert np.isfinite(lazy["vv"].values).any()


def test_resigning_driver_travels_to_dask_workers():
    """Distributed dask pickles the driver; the default signer must survive the trip."""
    import pickle

    from sarslide.acquire import resign_planetary_computer

    driver = pickle.loads(pickle.dumps(ResigningRioDriver()))
    assert driver.sign is resign_planetary_computer
    # non-Azure URLs pass through unsigned (no network involved)
    assert driver.sign("http://127.0.0.1:1/x.tif") == "http://127.0.0.1:1/x.tif"


def test_ten_metre_load_is_georeferenced(fixture_server):
    server, items, files = fixture_server
    ev = fixture_event()
    cube = load_planetary_computer(
        ev, items=items, resolution=10.0, sign=False, chunks=128, resampling="nearest"
    )
    assert cube.rio.crs.to_epsg() == 32611
    assert cube.rio.resolution() == (10.0, -10.0)
    # pixel centres on the 10 m lattice, y decreasing
    assert np.allclose(cube.x.values % 10, 5) and np.allclose(cube.y.values % 10, 5)
    assert (np.diff(cube.y.values) < 0).all()
    # the grid covers the event area in UTM
    gbox = event_geobox(ev, resolution=10.0)
    assert cube.sizes["x"] == gbox.shape.x and cube.sizes["y"] == gbox.shape.y
    # a 10 m pixel holds the value of the 30 m pixel that contains it
    # default selection: one pass each side, 2023-12-27 and 2025-01-02
    assert list(pd.DatetimeIndex(cube.time.values).strftime("%Y-%m-%d")) == [
        "2023-12-27",
        "2025-01-02",
    ]
    stamp = next(s for s in files if s.startswith("20231227"))
    ref = direct(files[stamp]["vv"])
    rng = np.random.default_rng(0)
    xs = rng.uniform(cube.x.values[3], cube.x.values[-4], 50)
    ys = rng.uniform(cube.y.values[-4], cube.y.values[3], 50)
    got = (
        cube["vv"]
        .isel(time=0)
        .sel(x=xr.DataArray(xs), y=xr.DataArray(ys), method="nearest")
    )
    # the 10 m pixel centre nearest to (x, y), then the 30 m pixel containing it
    cx = got.x.values
    cy = got.y.values
    want = ref.sel(x=xr.DataArray(cx), y=xr.DataArray(cy), method="nearest")
    np.testing.assert_array_equal(got.values, want.values)


def test_rtc_nodata_becomes_nan(fixture_server, tmp_path):
    """Planetary Computer RTC marks no data with -32768: it must come back as NaN."""
    server, _, files = fixture_server
    stamp = sorted(files)[0]
    with rasterio.open(files[stamp]["vv"]) as src:
        profile, data = src.profile, src.read(1)
    data[10:20, 30:45] = -32768.0
    profile.update(nodata=-32768.0)
    for pol in ("vv", "vh"):
        with rasterio.open(tmp_path / f"{pol}.tif", "w", **profile) as dst:
            dst.write(data, 1)
    with LoopbackServer(tmp_path) as srv:
        item = stac_item(
            stamp, {p: srv.url(f"{p}.tif") for p in ("vv", "vh")}, files[stamp]
        )
        from odc.geo.geobox import GeoBox

        native = GeoBox((100, 100), profile["transform"], profile["crs"].to_wkt())
        ds = load_stac_items([item], native, chunks=None, resampling="nearest").isel(
            time=0
        )
    expected = data.astype("float32")
    expected[expected == -32768.0] = np.nan
    np.testing.assert_array_equal(ds["vv"].values, expected)
    assert np.isnan(ds["vv"].values[10:20, 30:45]).all()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_grd_gcp_scenes_load_onto_the_grid(fixture_server, tmp_path):
    """GRD-like scenes (uint16 DN, GCPs instead of a geotransform) warp onto the
    grid."""
    from rasterio.control import GroundControlPoint

    server, _, files = fixture_server
    ev = fixture_event()
    items = []
    dns = {}
    with LoopbackServer(tmp_path) as srv:
        for stamp, pols in files.items():
            assets = {}
            for pol, path in pols.items():
                with rasterio.open(path) as src:
                    power, transform, crs = src.read(1), src.transform, src.crs
                dn = np.round(np.sqrt(power) * 10000).astype("uint16")
                dns[stamp, pol] = dn
                gcps = [
                    GroundControlPoint(
                        row=r,
                        col=c,
                        x=(transform * (c, r))[0],
                        y=(transform * (c, r))[1],
                    )
                    for r in (0, 50, 100)
                    for c in (0, 50, 100)
                ]
                name = f"grd_{stamp}_{pol}.tif"
                with rasterio.open(
                    tmp_path / name,
                    "w",
                    driver="GTiff",
                    width=100,
                    height=100,
                    count=1,
                    dtype="uint16",
                    nodata=0,
                ) as dst:
                    dst.write(dn, 1)
                    dst.gcps = (gcps, crs)
                assets[pol] = srv.url(name)
            item = stac_item(stamp, assets, pols)
            item.properties.pop("proj:code", None)
            items.append(item)
        with rasterio.open(next(iter(files.values()))["vv"]) as src:
            from odc.geo.geobox import GeoBox

            native = GeoBox(src.shape, src.transform, src.crs.to_wkt())
        with pytest.warns(UncalibratedDataWarning, match="NOT calibrated"):
            cube = load_planetary_computer(
                ev,
                collection="sentinel-1-grd",
                items=items,
                geobox=native,
                sign=False,
                chunks=64,
                resampling="nearest",
            )
        cube = cube.compute()
    loaded = list(pd.DatetimeIndex(cube.time.values).strftime("%Y%m%dT%H%M%SZ"))
    assert loaded == ["20231227T015903Z", "20250102T015857Z"]  # nearest pass each side
    assert cube.attrs["source"] == "planetary-computer:sentinel-1-grd"
    for k, stamp in enumerate(loaded):
        for pol in ("vv", "vh"):
            expected = (
                dns[stamp, pol].astype("float32") ** 2
            )  # DN² in uncalibrated power
            np.testing.assert_array_equal(cube[pol].isel(time=k).values, expected)


def test_timeline_and_footprint_figures_show_the_passes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sarslide.plots.acquisition import plot_footprints, plot_pass_timeline

    ev = get_event("hokkaido")
    passes = group_passes(recorded_items(), bounds_lonlat=ev.bounds_lonlat)
    sel = select_passes(recorded_items(), ev)
    ax = plot_pass_timeline(
        pass_table(passes, ev), ev.time_utc, selected=[p.time for p in sel.passes]
    )
    points = [c.get_offsets() for c in ax.collections]
    assert sum(len(p) for p in points[:-1]) == len(passes)  # one marker per pass
    assert len(points[-1]) == 2  # the two chosen passes are ringed
    ax2 = plot_footprints(sel.passes, ev.bounds_lonlat)
    assert len(ax2.patches) == len(sel.items) + 1  # each frame + the area of interest
    plt.close("all")
