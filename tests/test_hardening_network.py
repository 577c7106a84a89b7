"""Never hang on a silent server: every network call has a
timeout and a bounded retry with backoff, and ends in the package's
NetworkUnavailableError naming the host, the timeout and the offline alternative.

The servers here are real loopback sockets on 127.0.0.1: ``SilentServer`` accepts every
connection and never sends a byte; a closed port refuses connections. Each call runs in
a daemon thread joined with a deadline, so a regression fails the test instead of
hanging it, and the server closes every connection when the test ends.
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.transform import from_origin

from sarslide.acquire import (
    NetworkSettings,
    NetworkUnavailableError,
    fetch_file,
    gdal_http_options,
    load_stac_items,
    network_settings,
    search_passes,
)
from sarslide.engine.network import with_retries

DEADLINE_S = 60  # far above the ~2 s each call needs with the settings below


class SilentServer:
    """Listens on 127.0.0.1, accepts connections, reads nothing, answers nothing."""

    def __init__(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()
        self._sock.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_bounded(call):
    """Run ``call()`` in a daemon thread; return (exception or None, seconds). Fails the
    test if the call is still running after DEADLINE_S."""
    box: dict = {}

    def target():
        t0 = time.perf_counter()
        try:
            box["value"] = call()
        except BaseException as err:  # noqa: BLE001 - reported to the test
            box["error"] = err
        box["seconds"] = time.perf_counter() - t0

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    assert not thread.is_alive(), f"the call still hangs after {DEADLINE_S} s"
    return box.get("error"), box["seconds"]


@pytest.fixture
def quick_network(monkeypatch):
    monkeypatch.setenv("SARSLIDE_NETWORK_TIMEOUT", "1")
    monkeypatch.setenv("SARSLIDE_NETWORK_RETRIES", "1")
    monkeypatch.setenv("SARSLIDE_NETWORK_BACKOFF", "0.05")


def assert_network_message(err, port):
    assert isinstance(err, NetworkUnavailableError), repr(err)
    text = str(err)
    assert f"127.0.0.1:{port}" in text  # the host
    assert "timeout 1 s" in text  # the timeout in force
    assert "demo" in text and "sarslide fetch" in text  # the offline alternatives


# --- settings and retries ---


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SARSLIDE_NETWORK_TIMEOUT", "7.5")
    monkeypatch.setenv("SARSLIDE_NETWORK_RETRIES", "2")
    monkeypatch.setenv("SARSLIDE_NETWORK_BACKOFF", "0.5")
    assert network_settings() == NetworkSettings(timeout=7.5, retries=2, backoff=0.5)
    assert gdal_http_options() == {
        "GDAL_HTTP_TIMEOUT": "8",
        "GDAL_HTTP_CONNECTTIMEOUT": "8",
        "GDAL_HTTP_MAX_RETRY": "2",
        "GDAL_HTTP_RETRY_DELAY": "0.5",
    }
    monkeypatch.setenv("SARSLIDE_NETWORK_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="SARSLIDE_NETWORK_TIMEOUT='soon'"):
        network_settings()
    monkeypatch.setenv("SARSLIDE_NETWORK_TIMEOUT", "0")
    with pytest.raises(ValueError, match="timeout must be > 0"):
        network_settings()


def test_retries_are_bounded_with_doubling_backoff():
    calls, waits = [], []

    def flaky():
        calls.append(1)
        raise TimeoutError("stalled")

    with pytest.raises(TimeoutError):
        with_retries(
            flaky,
            retry_on=lambda e: True,
            settings=NetworkSettings(1, 3, 0.5),
            sleep=waits.append,
        )
    assert len(calls) == 4 and waits == [0.5, 1.0, 2.0]
    # an error that is not a network failure is raised at once
    calls.clear()
    with pytest.raises(TimeoutError):
        with_retries(
            flaky,
            retry_on=lambda e: False,
            settings=NetworkSettings(1, 3, 0.5),
            sleep=waits.append,
        )
    assert len(calls) == 1


# --- hangs (issue item 2) ---


def test_stac_search_against_a_silent_server_times_out(quick_network):
    with SilentServer() as server:
        err, seconds = run_bounded(
            lambda: search_passes("hokkaido", catalog=f"{server.base_url}/stac")
        )
        assert len(server.accepted) >= 2  # the first attempt and one retry
    assert_network_message(err, server.port)
    assert seconds < 20


def test_download_from_a_silent_server_times_out(quick_network, tmp_path):
    with SilentServer() as server:
        err, _ = run_bounded(
            lambda: fetch_file(
                f"{server.base_url}/files/cube.zip", cache_dir=tmp_path, progress=False
            )
        )
        assert len(server.accepted) >= 2
    assert_network_message(err, server.port)
    assert not list(tmp_path.glob("cube.zip"))  # nothing under the final name


def _geotiff_item(tmp_path, base_url: str) -> tuple[pystac.Item, object]:
    """A STAC item whose vv/vh assets point at ``base_url`` (a 32×32 UTM GeoTIFF
    layout)."""
    from odc.geo.geobox import GeoBox
    from pystac.extensions.projection import ProjectionExtension

    transform = from_origin(500_000, 4_700_000, 10, 10)
    path = tmp_path / "vv.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=32,
        height=32,
        count=1,
        dtype="float32",
        crs="EPSG:32654",
        transform=transform,
        tiled=True,
        blockxsize=16,
        blockysize=16,
    ) as dst:
        dst.write(np.ones((1, 32, 32), "float32"))
    item = pystac.Item(
        "s1",
        geometry={
            "type": "Polygon",
            "coordinates": [
                [
                    [141.0, 42.4],
                    [141.1, 42.4],
                    [141.1, 42.5],
                    [141.0, 42.5],
                    [141.0, 42.4],
                ]
            ],
        },
        bbox=[141.0, 42.4, 141.1, 42.5],
        datetime=np.datetime64("2018-09-13T20:40").astype(object),
        properties={},
    )
    for band in ("vv", "vh"):
        asset = pystac.Asset(
            f"{base_url}/files/{band}.tif",
            media_type=pystac.MediaType.COG,
            roles=["data"],
        )
        item.add_asset(band, asset)
        proj = ProjectionExtension.ext(asset, add_if_missing=True)
        proj.epsg, proj.shape, proj.transform = 32654, [32, 32], list(transform)[:6]
    return item, GeoBox((32, 32), transform, "EPSG:32654")


def test_lazy_read_from_a_silent_asset_server_times_out(quick_network, tmp_path):
    with SilentServer() as server:
        item, geobox = _geotiff_item(tmp_path, server.base_url)
        cube = load_stac_items([item], geobox, chunks=16)  # lazy: nothing read yet
        assert hasattr(cube["vv"].data, "dask")
        err, _ = run_bounded(lambda: cube["vv"].compute(scheduler="synchronous"))
    assert_network_message(err, server.port)


def test_refused_connection_during_a_lazy_read(quick_network, tmp_path):
    port = closed_port()
    item, geobox = _geotiff_item(tmp_path, f"http://127.0.0.1:{port}")
    cube = load_stac_items([item], geobox, chunks=16)
    err, _ = run_bounded(lambda: cube["vv"].compute(scheduler="synchronous"))
    assert not isinstance(err, rasterio.errors.RasterioIOError)
    assert_network_message(err, port)
