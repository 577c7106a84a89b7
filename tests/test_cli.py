"""The ``sarslide`` command line, run as a user runs it: in a subprocess, checking its
files.

Each command runs on the demo profile shrunk with ``--set`` overrides (a 256×256 px
synthetic scene, 32 px chips, one epoch per stage, one kept checkpoint) so the whole
module takes about a minute on one CPU core. The written files are checked against
independent readers and hand counts: rio-cogeo's COG validator, geopandas for the
GeoJSON (and its CRS), pandas for the CSV, pyproj for the UTM zone, matplotlib for the
PNG. ``fetch`` is served by loopback servers: a zipped datacube with the paper's layout,
and a STAC API over the real OPERA RTC fixtures (``tests/data``), so nothing needs the
network.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from range_server import LoopbackServer
from rasterio.warp import transform_bounds
from rio_cogeo.cogeo import cog_validate
from test_acquire_stac import FIXTURES, _StacApi, fixture_files, stac_item
from test_acquire_zenodo import paper_layout, sha256, zipped_store

from sarslide import ablation
from sarslide.cli import apply_overrides, event_from_bbox, main, parse_run_id, utm_crs
from sarslide.profiles import get_profile

TINY = [
    "--profile",
    "demo",
    "--set",
    "synthetic_shape=256,256",
    "--set",
    "chip_size=32",
    "--set",
    "stage1_max_epochs=1",
    "--set",
    "stage2_max_epochs=1",
    "--set",
    "top_k=1",
]
# A 2.5 km square near Hokkaido's event area (a "new event": bbox + date).
BBOX = ["141.90", "42.70", "141.93", "42.722"]


def run_cli(
    *args: str,
    data_dir: Path,
    entry_point: bool = False,
    timeout: int = 900,
    env_extra=None,
):
    """Run ``sarslide ARGS`` in a subprocess; returns the CompletedProcess (text)."""
    env = dict(
        os.environ,
        SARSLIDE_DATA_DIR=str(data_dir),
        OMP_NUM_THREADS="1",
        MPLBACKEND="Agg",
    )
    env.pop("SARSLIDE_PROFILE", None)
    env.update(env_extra or {})
    script = Path(sys.executable).with_name("sarslide")
    cmd = (
        [str(script)]
        if entry_point and script.exists()
        else [sys.executable, "-m", "sarslide.cli"]
    )
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # progress bars and download logs may come first (stderr); the error is the last
    # line, once
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("sarslide: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli-data")


@pytest.fixture(scope="module")
def mapped(data_dir):
    """``sarslide map --event hokkaido`` once; its output folder and stdout."""
    out = data_dir / "map-hokkaido"
    proc = run_cli(
        "map",
        "--event",
        "hokkaido",
        *TINY,
        "--model",
        "none-nall-s0",
        "--window",
        "128",
        "--cell-size",
        "500",
        "--out",
        str(out),
        data_dir=data_dir,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc.stdout


# ----------------------------------------------------------------------------- help
@pytest.mark.parametrize("command", [[], ["fetch"], ["grid"], ["map"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: sarslide" + (f" {command[0]}" if command else ""))
    if command == ["map"]:
        assert "--bbox W S E N" in text and "--model RUN_OR_CHECKPOINT" in text
        assert "--files PATH" in text and "--force" in text and "--quiet" in text
        examples = text.split("examples:", 1)[1]
        assert examples.count("sarslide map ") >= 4 and "--files" in examples


def test_version(capsys):
    from sarslide import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert (
        exit_.value.code == 0
        and capsys.readouterr().out.strip() == f"sarslide {__version__}"
    )


def test_installed_entry_point_runs():
    script = Path(sys.executable).with_name("sarslide")
    if not script.exists():
        pytest.skip(
            (
                "the console script is installed by `pip install -e .`; not in this "
                "environment"
            )
        )
    proc = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "fetch" in proc.stdout and "map" in proc.stdout


# ----------------------------------------------------------------------------- helpers
@pytest.mark.parametrize(
    "lon, lat",
    [(141.9, 42.7), (173.5, -42.3), (-122.4, 37.8), (2.9, 0.5), (-179.9, -10)],
)
def test_utm_zone_matches_pyproj(lon, lat):
    info = query_utm_crs_info(
        datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat)
    )
    assert utm_crs(lon, lat) in {f"EPSG:{i.code}" for i in info}


def test_event_from_bbox_builds_a_usable_event():
    ev = event_from_bbox([141.9, 42.7, 141.93, 42.722], "2018-09-06")
    assert ev.crs == "EPSG:32654" and ev.bounds_lonlat == (141.9, 42.7, 141.93, 42.722)
    assert ev.time_utc.isoformat() == "2018-09-06T00:00:00+00:00"
    assert ev.paper_pre_pass < ev.date < ev.paper_post_pass
    assert (
        event_from_bbox([141.9, 42.7, 142, 42.8], "2018-09-05T18:08Z").time_utc.hour
        == 18
    )
    with pytest.raises(ValueError, match="west 2.0 must be less than east 1.0"):
        event_from_bbox([2, 0, 1, 1], "2020-01-01")
    with pytest.raises(ValueError, match="not a date"):
        event_from_bbox([1, 0, 2, 1], "2020-02-30")


def test_run_ids_and_profile_overrides():
    assert parse_run_id("hokkaido-nall-s0") == ablation.Run("hokkaido", None, 0)
    assert parse_run_id("none-n005-s3") == ablation.Run("none", 5, 3)
    assert (
        parse_run_id("elsewhere-nall-s0") is None and parse_run_id("model.pt") is None
    )
    run = ablation.Run("kaikoura", 10, 1)
    assert parse_run_id(run.run_id) == run
    p = apply_overrides(
        get_profile("demo"),
        [
            "synthetic_shape=128,96",
            "train_sizes=2,all",
            "learning_rate=0.01",
            "named_passes=true",
            "split_scheme=0.5,0.2,0.2,0.1",
        ],
    )
    assert p.synthetic_shape == (128, 96) and p.train_sizes == (2, None)
    assert (
        p.learning_rate == 0.01
        and p.named_passes is True
        and p.split_scheme == (0.5, 0.2, 0.2, 0.1)
    )
    with pytest.raises(ValueError, match="unknown profile field"):
        apply_overrides(get_profile("demo"), ["epochs=3"])
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        apply_overrides(get_profile("demo"), ["top_k"])


# ----------------------------------------------------------------------------- bad
# input
@pytest.mark.parametrize(
    "args, needles",
    [
        (["map", "--event", "atlantis"], ["unknown event 'atlantis'", "hokkaido"]),
        (
            ["map", "--bbox", "3", "1", "2", "4", "--date", "2020-01-01"],
            ["west 3.0 must be less than east 2.0"],
        ),
        (
            ["map", "--bbox", "1", "1", "2", "2", "--date", "2020-13-01"],
            ["not a date", "YYYY-MM-DD"],
        ),
        (["map", "--bbox", "1", "1", "2", "2"], ["--bbox needs --date"]),
        (
            ["map", "--event", "hokkaido", "--model", "/no/such/model.pt"],
            ["no such checkpoint", "run id"],
        ),
        (
            ["map", "--event", "hokkaido", "--set", "epochs=1"],
            ["unknown profile field"],
        ),
        (
            ["map", "--event", "hokkaido", "--profile", "huge"],
            ["unknown profile 'huge'"],
        ),
        (["fetch", "atlantis"], ["unknown event 'atlantis'"]),
        (
            [
                "fetch",
                "--bbox",
                "141.9",
                "42.7",
                "142",
                "42.8",
                "--date",
                "2018-09-06",
                "--source",
                "zenodo",
            ],
            ["only the paper's events"],
        ),
        (["grid", "--arms", "none,mars"], ["unknown arm(s) ['mars']"]),
        (["grid", "--scheduler", "htp:/x"], ["--scheduler"]),
        # sarslide map: every argument checked before any data work (issues 19.7, 22.6)
        (
            ["map", "--event", "hokkaido", "--cell-size", "nan"],
            ["--cell-size nan", "positive number"],
        ),
        (
            ["map", "--event", "hokkaido", "--cell-size", "15"],
            ["not a whole multiple of the 10 m", "use e.g. 10 or 20"],
        ),
        (["map", "--event", "hokkaido", "--top", "0"], ["--top 0"]),
        (
            ["map", "--bbox", "1", "1", "2", "2", "--date", "2999-01-01"],
            ["in the future", "no radar pass"],
        ),
        (["map", "--files", str(FIXTURES)], ["--files needs the event", "--date"]),
        (
            ["map", "--catalog", str(FIXTURES)],
            ["--files needs the event"],
        ),  # a static catalog on disk
        (["map", "--catalog", "stac.json"], ["not an http(s) STAC API", "--files"]),
        (
            ["map", "--files", "/no/such/scenes", "--date", "2023-12-20"],
            ["no such file or folder"],
        ),
        (
            ["map", "--source", "files", "--event", "hokkaido"],
            ["--source files needs --files"],
        ),
        (
            [
                "map",
                "--files",
                str(FIXTURES),
                "--date",
                "2023-12-20",
                "--cell-size",
                "100",
            ],
            ["not a whole multiple of the 30 m"],
        ),  # the resolution is read from the files
    ],
)
def test_bad_input_is_one_line_and_nonzero(
    args, needles, tmp_path, monkeypatch, capsys
):
    """In-process (``main`` returns the exit status) to keep the suite fast; the two
    cases below run the same checks in a subprocess."""
    monkeypatch.setenv("SARSLIDE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SARSLIDE_PROFILE", raising=False)
    status = main(args)
    captured = capsys.readouterr()
    assert_one_line_error(
        subprocess.CompletedProcess(args, status, captured.out, captured.err), *needles
    )


@pytest.mark.parametrize(
    "args, needles",
    [
        (
            ["map", "--bbox", "3", "1", "2", "4", "--date", "2020-01-01"],
            ["west 3.0 must be less than east 2.0"],
        ),
        (
            ["map", "--event", "hokkaido", "--model", "/no/such/model.pt"],
            ["no such checkpoint", "run id"],
        ),
    ],
)
def test_bad_input_in_a_subprocess(args, needles, tmp_path):
    assert_one_line_error(run_cli(*args, data_dir=tmp_path), *needles)


def test_map_output_and_cache_folders_and_model_checked_first(
    tmp_path, monkeypatch, capsys
):
    """--out or --cache-dir at a file, a corrupt --model file, an --out folder the
    package did not mark as its own (even one holding map files): one line, before any
    scene is built; a failed run leaves no output folder behind."""
    monkeypatch.setenv("SARSLIDE_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SARSLIDE_PROFILE", raising=False)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    corrupt = tmp_path / "model.pt"
    corrupt.write_bytes(b"\0" * 64)
    users = tmp_path / "my_folder"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    unmarked = tmp_path / "unmarked_map"  # map files without the package's marker
    unmarked.mkdir()
    for name in ("map.json", "landslide_map.tif"):
        (unmarked / name).write_text("{}")
    cases = [
        (
            ["--out", str(users)],
            ["holds files that are not a sarslide map", "notes.txt"],
        ),
        (
            ["--out", str(unmarked)],
            ["holds files that are not a sarslide map", "landslide_map.tif, map.json"],
        ),
        (["--out", str(a_file)], ["--out", "is a file"]),
        (
            ["--out", str(a_file / "sub")],
            ["is a file, so the folder cannot be created"],
        ),
        (["--cache-dir", str(a_file)], ["--cache-dir", "is a file"]),
        (
            ["--model", str(corrupt)],
            [str(corrupt), "corrupt or not a sarslide checkpoint"],
        ),
    ]
    for extra, needles in cases:
        status = main(["map", "--event", "hokkaido", *extra])
        captured = capsys.readouterr()
        assert_one_line_error(
            subprocess.CompletedProcess(extra, status, captured.out, captured.err),
            *needles,
        )
        assert "scene:" not in captured.out  # nothing was built
    assert (users / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in unmarked.iterdir()) == [
        "landslide_map.tif",
        "map.json",
    ]
    out = tmp_path / "new" / "map"
    status = main(
        ["map", "--bbox", "1", "1", "2", "2", "--date", "2999-01-01", "--out", str(out)]
    )
    assert (
        status == 1
        and not (tmp_path / "new").exists()
        and not (tmp_path / "cache").exists()
    )
    if (
        os.geteuid() != 0
    ):  # root writes anywhere; a read-only folder only binds other users
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        status = main(["map", "--event", "hokkaido", "--out", str(locked / "map")])
        captured = capsys.readouterr()
        assert_one_line_error(
            subprocess.CompletedProcess([], status, captured.out, captured.err),
            "cannot write",
        )


def test_malformed_command_line_is_a_usage_error(tmp_path):
    proc = run_cli("map", "--bbox", "1", "2", data_dir=tmp_path)
    assert proc.returncode == 2 and "usage: sarslide map" in proc.stderr


def test_debug_shows_the_traceback(tmp_path):
    proc = run_cli("map", "--event", "atlantis", "--debug", data_dir=tmp_path)
    assert (
        proc.returncode != 0
        and "Traceback" in proc.stderr
        and "KeyError" in proc.stderr
    )


def test_real_source_without_key_says_what_it_needs(tmp_path):
    proc = run_cli(
        "map",
        "--bbox",
        *BBOX,
        "--date",
        "2018-09-06",
        "--source",
        "planetary-computer",
        data_dir=tmp_path,
        env_extra={"PC_SDK_SUBSCRIPTION_KEY": ""},
    )
    assert_one_line_error(
        proc, "PC_SDK_SUBSCRIPTION_KEY", "sarslide fetch", "--profile demo"
    )


# ----------------------------------------------------------------------------- fetch
@pytest.fixture
def mirror(tmp_path):
    src = tmp_path / "server"
    src.mkdir()
    archive = zipped_store(paper_layout(), src, "hokkaido_japan")
    with LoopbackServer(src) as server:
        yield server, archive


def _free_port() -> int:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fetch_downloads_verifies_and_reports_the_cache(mirror, tmp_path):
    server, archive = mirror
    cache = tmp_path / "cache"
    proc = run_cli(
        "fetch",
        "hokkaido",
        "--source",
        "zenodo",
        "--url",
        server.url(archive.name),
        "--known-hash",
        sha256(archive),
        "--cache-dir",
        str(cache),
        data_dir=tmp_path / "unused",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = dict(
        line.split(":", 1)
        for line in proc.stdout.splitlines()
        if line.startswith(("cache:", "size:"))
    )
    path = Path(lines["cache"].strip())
    assert path.is_dir() and cache in path.parents
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert lines["size"].strip().endswith(("KiB", "MiB")) and total > 0
    assert (cache / "hokkaido_japan.zip").read_bytes() == archive.read_bytes()
    assert not (tmp_path / "unused" / "hokkaido_japan.zip").exists()
    # cached: a second fetch needs no network (the mirror is unreachable now), via
    # $SARSLIDE_DATA_DIR
    again = run_cli(
        "fetch",
        "hokkaido",
        "--url",
        f"http://127.0.0.1:{_free_port()}/hokkaido_japan.zip",
        data_dir=cache,
    )
    assert again.returncode == 0 and f"cache: {path}" in again.stdout


def test_fetch_bad_checksum_leaves_nothing(mirror, tmp_path):
    server, archive = mirror
    proc = run_cli(
        "fetch",
        "hokkaido",
        "--url",
        server.url(archive.name),
        "--known-hash",
        "sha256:" + "0" * 64,
        data_dir=tmp_path / "c",
    )
    assert_one_line_error(proc)
    assert not list((tmp_path / "c").glob("hokkaido_japan.zip*"))


def test_fetch_without_network_fails_fast_and_says_why(tmp_path):
    proc = run_cli(
        "fetch",
        "hokkaido",
        "--url",
        f"http://127.0.0.1:{_free_port()}/hokkaido_japan.zip",
        data_dir=tmp_path,
        timeout=120,
    )
    assert_one_line_error(proc, "could not reach", "sarslide fetch` needs access")


# ----------------------------------------------------------------------------- map
def test_map_writes_valid_cogs(mapped):
    out, _ = mapped
    for name in (
        "landslide_probability.tif",
        "landslide_map.tif",
        "landslide_density.tif",
    ):
        valid, errors, _ = cog_validate(str(out / name))
        assert valid, (name, errors)
        assert rioxarray.open_rasterio(out / name).rio.crs.to_epsg() == 32654


def test_map_rasters_agree_with_each_other(mapped):
    out, _ = mapped
    info = json.loads((out / "map.json").read_text())
    prob = rioxarray.open_rasterio(out / "landslide_probability.tif").squeeze(
        "band", drop=True
    )
    binary = rioxarray.open_rasterio(out / "landslide_map.tif").squeeze(
        "band", drop=True
    )
    density = rioxarray.open_rasterio(out / "landslide_density.tif").squeeze(
        "band", drop=True
    )
    p, b = prob.values, binary.values
    valid = np.isfinite(p)
    assert ((b == 255) == ~valid).all()
    np.testing.assert_array_equal(
        b[valid], (p[valid] >= info["threshold"]).astype(np.uint8)
    )
    # the heatmap holds the same landslide area as the binary map (hand count)
    mapped_m2 = (b == 1).sum() * 100.0
    assert np.nansum(density.values) * 500.0**2 == pytest.approx(mapped_m2, rel=1e-5)
    assert info["mapped_area_km2"] == pytest.approx(mapped_m2 / 1e6)


def test_map_cells_geojson_and_csv(mapped):
    out, _ = mapped
    doc = json.loads((out / "most_affected_cells.geojson").read_text())
    assert "crs" not in doc  # RFC 7946: lon/lat on WGS 84, no crs member
    lonlat_cells = gpd.read_file(out / "most_affected_cells.geojson")
    assert lonlat_cells.crs.to_epsg() == 4326
    cells = lonlat_cells.to_crs(
        "EPSG:32654"
    )  # back to the map's metres for the checks below
    table = pd.read_csv(out / "most_affected_cells.csv")
    assert list(cells.columns) == [
        "rank",
        "x",
        "y",
        "lon",
        "lat",
        "landslide_fraction",
        "landslide_area_km2",
        "cell_size_m",
        "geometry",
    ]
    assert len(cells) > 0 and len(table) == len(cells)
    assert list(table.columns) == list(cells.columns[:-1]) + ["geometry_wkt", "crs"]
    assert set(table["crs"]) == {"EPSG:32654"}  # the CSV names its CRS
    pd.testing.assert_frame_equal(
        table.drop(columns=["geometry_wkt", "crs"]),
        pd.DataFrame(cells.drop(columns="geometry")),
        check_dtype=False,
    )
    assert list(cells["rank"]) == list(range(1, len(cells) + 1))
    assert (np.diff(cells["landslide_fraction"]) <= 0).all()
    np.testing.assert_allclose(
        cells.geometry.area, 500.0**2, rtol=1e-4
    )  # GeoJSON keeps 7 decimals
    np.testing.assert_allclose(cells.geometry.centroid.x, cells["x"], atol=0.05)
    np.testing.assert_allclose(
        gpd.GeoSeries.from_wkt(table["geometry_wkt"]).area, 500.0**2
    )
    # lon/lat columns are the cell centres in WGS 84
    lonlat = cells.geometry.centroid.to_crs("EPSG:4326")
    np.testing.assert_allclose(lonlat.x, cells["lon"], atol=1e-6)
    np.testing.assert_allclose(lonlat.y, cells["lat"], atol=1e-6)
    # fractions are the density raster's values at those cells
    density = rioxarray.open_rasterio(out / "landslide_density.tif").squeeze(
        "band", drop=True
    )
    at = density.sel(
        x=xr_points(cells["x"]), y=xr_points(cells["y"]), method="nearest"
    ).values
    np.testing.assert_allclose(at, cells["landslide_fraction"], rtol=1e-6)


def xr_points(values):
    import xarray as xr

    return xr.DataArray(np.asarray(values), dims="cell")


def test_map_quicklook_png_is_not_blank(mapped):
    import matplotlib.image as mpimg

    out, stdout = mapped
    png = mpimg.imread(out / "quicklook.png")
    assert png.ndim == 3 and png.shape[0] > 200 and png.shape[1] > 600
    assert png[..., :3].std() > 0.05  # not a blank canvas
    assert "quicklook" in stdout and not list(out.glob(".*tmp*"))


def test_map_json_tags_quality_and_web_map(mapped):
    """Provenance in every GeoTIFF and map.json; the quality block against the synthetic
    labels for the model and the log-ratio baseline; map.html; areas that agree."""
    out, stdout = mapped
    info = json.loads((out / "map.json").read_text())
    assert (
        info["synthetic"] is True
        and info["source"] == "synthetic"
        and info["resolution_m"] == 10.0
    )
    assert "SYNTHETIC" in info["quicklook_title"]
    for name in (
        "landslide_probability.tif",
        "landslide_map.tif",
        "landslide_density.tif",
    ):
        with rasterio.open(out / name) as src:
            tags = src.tags()
        assert tags["SARSLIDE_DATA_SOURCE"].startswith("SYNTHETIC"), name
        assert (
            tags["SARSLIDE_EVENT"] == "hokkaido"
            and tags["SARSLIDE_MODEL"] == "none-nall-s0"
        )
        assert tags["SARSLIDE_PROFILE"].startswith("demo --set")
        assert float(tags["SARSLIDE_THRESHOLD"]) == pytest.approx(
            info["threshold"], rel=1e-5
        )
        assert tags["SARSLIDE_PRE_PASSES"] == ",".join(info["pre_times"])
        assert tags["SARSLIDE_POST_PASSES"] == ",".join(info["post_times"])
        assert tags["SARSLIDE_VERSION"] == info["sarslide_version"]
    binary = rioxarray.open_rasterio(out / "landslide_map.tif").squeeze(
        "band", drop=True
    )
    quality = info["quality"]
    assert quality["truth"].startswith("the scene's labels")
    model, base = quality["model"], quality["log_ratio_baseline"]
    # one area everywhere: map.json, the quality block and a hand count of the file (1
    # only)
    hand_km2 = float((binary.values == 1).sum()) * 100.0 / 1e6
    assert (
        info["mapped_area_km2"]
        == pytest.approx(hand_km2)
        == pytest.approx(model["mapped_area_km2"])
    )
    assert model["true_area_km2"] == base["true_area_km2"] > 0
    for q in (model, base):
        assert (
            0 <= q["precision"] <= 1
            and 0 <= q["recall"] <= 1
            and -1 <= q["heatmap_correlation"] <= 1
        )
        assert 0 <= q["top_cells_shared"] <= q["top_k"] == 10
    assert "log_ratio_baseline" in stdout and "precision" in stdout
    # the first map of a fresh cache trains its model, and says so before it starts
    training = next(
        line
        for line in stdout.splitlines()
        if line.startswith("training model none-nall-s0")
    )
    assert "roughly" in training and " min on the " in training
    html = (out / "map.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "leaflet" in html.lower()
    assert html.count('"rank": ') == len(
        gpd.read_file(out / "most_affected_cells.geojson")
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*info["files"].values(), ".sarslide-store"]
    )


def test_map_files_on_disk_refused_for_the_demo_model_then_forced(
    mapped, data_dir, tmp_path
):
    """The real OPERA RTC fixtures with the demo model: refused with the statistics
    before any compute; with --force mapped, and the tags say real data, demo model."""
    out = tmp_path / "usb"
    args = [
        "map",
        "--files",
        *map(str, sorted(FIXTURES.glob("*.tif"))),
        "--date",
        "2023-12-20",
        *TINY,
        "--model",
        "none-nall-s0",
        "--window",
        "64",
        "--cell-size",
        "300",
        "--out",
        str(out),
    ]
    proc = run_cli(*args, data_dir=data_dir)
    assert_one_line_error(proc, "band vv", "--force", "trained on this kind of data")
    # the scene's statistics in the message are those of the files (rasterio, by hand)
    logs = []
    for stamp in ("20231215T015904Z", "20231227T015903Z"):
        with rasterio.open(fixture_files()[stamp]["vv"]) as src:
            band = src.read(1, masked=True).filled(np.nan)
        logs.append(np.log10(np.maximum(band[np.isfinite(band)], 1e-5)))
    assert f"mean {np.concatenate(logs).mean():.3f}" in proc.stderr
    assert "mapping windows" not in proc.stderr and not out.exists()
    forced = run_cli(*args, "--force", data_dir=data_dir)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    info = json.loads((out / "map.json").read_text())
    assert (
        info["source"] == "files"
        and info["synthetic"] is False
        and info["resolution_m"] == 30.0
    )
    assert info["crs"] == "EPSG:32611" and info["pre_times"][0].startswith("2023-12-15")
    assert info["post_times"][0].startswith("2023-12-27") and info["quality"] is None
    with rasterio.open(out / "landslide_probability.tif") as src:
        tags = src.tags()
        assert src.res == (30.0, 30.0)
    assert tags["SARSLIDE_DATA_SOURCE"].startswith("real radar scenes from files")
    assert tags["SARSLIDE_MODEL"] == "none-nall-s0"
    assert tags["SARSLIDE_MODEL_TRAINED_ON"].startswith(
        "synthetic chips of hokkaido (profile demo"
    )
    assert "SYNTHETIC" not in info["quicklook_title"]


_KILL_WHILE_WRITING = """
import os, signal, sys
import sarslide.mapping.export
def killed(*args, **kwargs):  # the COGs and cells are written by now; die like kill -9
    os.kill(os.getpid(), signal.SIGKILL)
sarslide.mapping.export.write_quicklook = killed
from sarslide.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_rerun_leaves_the_previous_map_whole(mapped, data_dir, tmp_path):
    """A map's files appear together or not at all (issue 22.5): a rerun SIGKILLed after
    its GeoTIFFs are written leaves the old folder byte for byte; the next run replaces
    it whole, cleans the leftovers and with --quiet prints nothing."""
    import shutil

    old, _ = mapped
    out = tmp_path / "map"
    shutil.copytree(old, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    args = [
        "map",
        "--event",
        "hokkaido",
        *TINY,
        "--model",
        "none-nall-s0",
        "--window",
        "128",
        "--cell-size",
        "500",
        "--threshold",
        "0.3",
        "--out",
        str(out),
    ]
    env = dict(
        os.environ,
        SARSLIDE_DATA_DIR=str(data_dir),
        OMP_NUM_THREADS="1",
        MPLBACKEND="Agg",
    )
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_WHILE_WRITING, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert proc.returncode == -9, proc.stdout + proc.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".map.tmp-")]
    assert leftovers and any(
        p.name == "landslide_probability.tif" for p in leftovers[0].iterdir()
    )
    again = run_cli(*args, "--quiet", data_dir=data_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout == "" and "mapping windows" not in again.stderr
    assert json.loads((out / "map.json").read_text())["threshold"] == 0.3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".map.")]


def test_map_a_new_area_from_a_checkpoint(mapped, data_dir, tmp_path):
    """bbox + date, a checkpoint file as --model, a fixed threshold, via the entry
    point."""
    checkpoint = next((data_dir / "ablation").rglob("top-epoch*.pt"))
    out = tmp_path / "aoi"
    proc = run_cli(
        "map",
        "--bbox",
        *BBOX,
        "--date",
        "2018-09-06",
        *TINY,
        "--model",
        str(checkpoint),
        "--threshold",
        "0.5",
        "--cell-size",
        "250",
        "--window",
        "64",
        "--out",
        str(out),
        data_dir=data_dir,
        entry_point=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads((out / "map.json").read_text())
    assert (
        info["crs"] == "EPSG:32654"
        and info["threshold"] == 0.5
        and info["source"] == "synthetic"
    )
    prob = rioxarray.open_rasterio(out / "landslide_probability.tif")
    west, south, east, north = prob.rio.transform_bounds("EPSG:4326")
    bbox = [float(v) for v in BBOX]
    # the scene covers the bbox (to within one 10 m pixel)
    assert (
        west <= bbox[0] + 2e-4
        and south <= bbox[1] + 2e-4
        and east >= bbox[2] - 2e-4
        and north >= bbox[3] - 2e-4
    )
    assert cog_validate(str(out / "landslide_density.tif"))[0]
    assert gpd.read_file(out / "most_affected_cells.geojson").crs.to_epsg() == 4326


# ----------------------------------------------------------------------------- grid
def test_grid_runs_resumes_and_summarises(data_dir, tmp_path):
    out = tmp_path / "grid"
    args = [
        "grid",
        *TINY,
        "--arms",
        "none",
        "--set",
        "train_sizes=2",
        "--set",
        "seeds=0",
        "--set",
        "seeds_smallest=0,1",
        "--out",
        str(out),
    ]
    proc = run_cli(*args, data_dir=data_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = pd.read_parquet(out / "results.parquet")
    assert set(table["run_id"]) == {
        "none-n002-s0",
        "none-n002-s1",
        "log_ratio",
        "random",
    }
    summary = pd.read_csv(out / "summary.csv")
    expected = ablation.summarize(table)
    got = summary[summary["arm"] == "none"].sort_values("metric").reset_index(drop=True)
    want = (
        expected[expected["arm"] == "none"].sort_values("metric").reset_index(drop=True)
    )
    np.testing.assert_allclose(got["mean"], want["mean"])
    np.testing.assert_allclose(got["sem"], want["sem"])
    aprc = want.loc[want["metric"] == "aprc", "mean"].item()
    assert "APRC" in proc.stdout and f"{aprc:.3f}" in proc.stdout
    # the training-health line counts both runs, as their records classify them
    health = ablation.grid_health(table, out)
    assert len(health) == 2 and "training health of 2 runs" in proc.stdout
    for status in set(health["status"]):
        n = int((health["status"] == status).sum())
        assert f"{n} {status}" in proc.stdout
    # resumable: a second call trains nothing and leaves the table as it was
    again = run_cli(*args, data_dir=data_dir)
    assert again.returncode == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), table)
    listing = run_cli(*args, "--list", data_dir=data_dir)
    assert "none-n002-s1" in listing.stdout and "2 runs, 2 done" in listing.stdout


def test_cache_dir_option_and_environment_agree(tmp_path):
    """--cache-dir wins over $SARSLIDE_DATA_DIR, and both name the results folder."""
    proc = run_cli(
        "grid",
        "--list",
        "--arms",
        "none",
        "--cache-dir",
        str(tmp_path / "opt"),
        data_dir=tmp_path / "env",
    )
    assert proc.returncode == 0 and str(tmp_path / "opt" / "ablation") in proc.stdout
    proc = run_cli("grid", "--list", "--arms", "none", data_dir=tmp_path / "env")
    assert proc.returncode == 0 and str(tmp_path / "env" / "ablation") in proc.stdout


# ----------------------------------------------------------------------------- fetch →
# map offline
def test_fetch_passes_from_a_stac_api_then_map_them_offline(mapped, data_dir, tmp_path):
    """A new area through a STAC API (the real OPERA RTC fixtures served on loopback),
    cached by ``fetch``; ``map`` then works from the cache with the server gone."""
    files = fixture_files()
    with rasterio.open(next(iter(files.values()))["vv"]) as src:
        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    bbox = [f"{v:.5f}" for v in (w + 0.003, s + 0.003, e - 0.003, n - 0.003)]
    area = [
        "--bbox",
        *bbox,
        "--date",
        "2024-06-01",
        "--source",
        "planetary-computer",
        "--resolution",
        "30",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    api = _StacApi([])
    with LoopbackServer(FIXTURES, extra_handlers=api.handlers()) as server:
        items = []
        for stamp, pols in files.items():
            item = stac_item(
                stamp, {p: server.url(f.name) for p, f in pols.items()}, pols
            )
            item.collection_id = "sentinel-1-rtc"
            items.append(item.to_dict())
        api.features = items
        proc = run_cli(
            "fetch",
            *area,
            "--catalog",
            f"{server.base_url}/stac",
            "--no-sign",
            "--days-before",
            "200",
            "--days-after",
            "220",
            data_dir=tmp_path / "unused",
            env_extra={"PC_SDK_SUBSCRIPTION_KEY": ""},
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cached = Path(
        next(line for line in proc.stdout.splitlines() if line.startswith("cache:"))
        .split(":", 1)[1]
        .strip()
    )
    assert cached.is_dir() and cached.name.startswith("pc-aoi-20240601") and api.bodies
    centre = (
        (float(bbox[0]) + float(bbox[2])) / 2,
        (float(bbox[1]) + float(bbox[3])) / 2,
    )
    checkpoint = next((data_dir / "ablation").rglob("top-epoch*.pt"))
    out = tmp_path / "map"
    # the same search (catalog and window) as the fetch: the cache is keyed on them
    window = [
        "--catalog",
        f"{server.base_url}/stac",
        "--no-sign",
        "--days-before",
        "200",
        "--days-after",
        "220",
    ]
    map_args = [
        *area,
        *window,
        *TINY,
        "--model",
        str(checkpoint),
        "--threshold",
        "0.5",
        "--window",
        "64",
        "--cell-size",
        "300",
        "--out",
        str(out),
    ]
    # real radar for a model trained on synthetic scenes: refused, then forced
    refused = run_cli(
        "map",
        *map_args,
        data_dir=tmp_path / "unused",
        env_extra={"PC_SDK_SUBSCRIPTION_KEY": ""},
    )
    assert_one_line_error(refused, "band vv", "--force")
    proc = run_cli(
        "map",
        *map_args,
        "--force",
        data_dir=tmp_path / "unused",
        env_extra={"PC_SDK_SUBSCRIPTION_KEY": ""},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"reusing the cached scene {cached}" in proc.stdout
    info = json.loads((out / "map.json").read_text())
    assert info["crs"] == utm_crs(*centre) and info["source"] == "planetary-computer"
    assert info["pre_times"][0].startswith("2023-12-27") and info["post_times"][
        0
    ].startswith("2025-01-02")
    prob = rioxarray.open_rasterio(out / "landslide_probability.tif")
    assert prob.rio.crs.to_string() == utm_crs(*centre) and prob.rio.resolution() == (
        30.0,
        -30.0,
    )
    assert cog_validate(str(out / "landslide_probability.tif"))[0]
    assert np.isfinite(prob.values).mean() > 0.9
    with rasterio.open(out / "landslide_map.tif") as src:
        assert (
            src.tags()["SARSLIDE_DATA_SOURCE"]
            == "real radar from Planetary Computer sentinel-1-rtc"
        )
    # the cache is keyed on the resolution: 10 m is another scene, so it is not the 30 m
    # one reused (the server is gone, so asking the catalog fails and says so)
    ten = run_cli(
        "map",
        *[("10" if v == "30" else v) for v in map_args],
        "--force",
        data_dir=tmp_path / "unused",
        env_extra={"PC_SDK_SUBSCRIPTION_KEY": ""},
        timeout=300,
    )
    assert ten.returncode == 1 and "reusing the cached scene" not in ten.stdout, (
        ten.stdout + ten.stderr
    )
