"""A full disk, broken caches, servers that answer badly, and small input slips.

Full disks are real: a 1 MiB tmpfs mounted for the test (``mount -t tmpfs -o size=1m``;
the tests run as root). Where mounting is not allowed those tests skip and say so; the
patched-write tests below them provoke the same errors everywhere. Servers are loopback
HTTP servers on 127.0.0.1 that answer with an HTML page, HTTP 500 or garbage bytes.
"""

from __future__ import annotations

import errno
import http.server
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
from conftest import hand_cube
from test_cli import assert_one_line_error, run_cli
from test_hardening_network import _geotiff_item

from sarslide import chips as chips_module
from sarslide import datasets
from sarslide.acquire import (
    BadResponseError,
    load_stac_items,
    network_settings,
    search_passes,
)
from sarslide.chips import CorruptChipStoreError, make_chips, open_chips, save_chips
from sarslide.engine.checkpoints import (
    CheckpointError,
    read_checkpoint,
    save_checkpoint,
)
from sarslide.engine.embeddings import (
    EmbeddingsCacheWarning,
    cached_embeddings,
    checksum_path,
    embeddings_path,
)
from sarslide.engine.filesystem import DiskFullError
from sarslide.engine.network import NetworkSettings, with_retries
from sarslide.engine.precision import resolve_precision
from sarslide.experiment import Experiment
from sarslide.models import SiameseClassifier
from sarslide.profiles import get_profile
from sarslide.train import seed_everything


@pytest.fixture()
def full_disk(tmp_path):
    """A 1 MiB tmpfs at ``tmp_path/small`` (unmounted afterwards)."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({proc.stderr.strip()}); the "
            "patched-write tests cover this"
        )
    try:
        yield mount
    finally:
        subprocess.run(
            ["umount", "--lazy", str(mount)], capture_output=True
        )  # the error may hold files open


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f}" if n < 10e6 else f"{n / 1e6:.0f}"


def big_chips(n_side: int = 256):
    labels = np.zeros((n_side, n_side), np.uint8)
    labels[10:40, 10:40] = 1
    return make_chips(hand_cube(labels, seed=1), 32)


def assert_disk_full(
    err: DiskFullError, mount: Path, target: Path, needs: int | None
) -> None:
    text = str(err)
    assert err.errno == errno.ENOSPC
    assert f"no space left on {mount} (tmpfs) for {target}" in text, text
    if needs is not None:
        assert f"needs about {megabytes(needs)} MB" in text, text
    assert list(mount.iterdir()) == []  # nothing half-written, no temporary left


# --- a full disk ---
def test_save_chips_on_a_full_disk(full_disk):
    chips = big_chips()
    assert chips.images.nbytes + chips.labels.nbytes > 1 << 20
    target = full_disk / "store"
    with pytest.raises(DiskFullError) as err:
        save_chips(chips, target)
    assert_disk_full(
        err.value,
        full_disk,
        target,
        chips.images.nbytes + chips.labels.nbytes + (1 << 16),
    )


def test_geotiff_write_on_a_full_disk(full_disk):
    """The write of ``mapping.write_cog`` (GDAL's COG driver into an atomic file): GDAL
    removes its partial files before it raises a bare CPLE error, so the size being
    written (``needs_bytes``) is what tells a full disk apart."""
    from sarslide.engine.atomic import atomic_file

    rng = np.random.default_rng(0)
    raster = xr.DataArray(
        rng.random((1024, 1024), dtype=np.float32),
        dims=("y", "x"),
        coords={
            "y": 4_700_000 - 10 * np.arange(1024),
            "x": 500_000 + 10 * np.arange(1024),
        },
    )
    raster = raster.rio.write_crs("EPSG:32654")
    target = full_disk / "landslide_probability.tif"
    with pytest.raises(DiskFullError) as err:
        with atomic_file(target, suffix=".tif", needs_bytes=raster.nbytes) as tmp:
            raster.rio.to_raster(tmp, driver="COG", compress="DEFLATE")
    assert_disk_full(err.value, full_disk, target, raster.nbytes)


def test_checkpoint_write_on_a_full_disk(full_disk):
    model = SiameseClassifier("reference")  # 0.2 MB of weights ...
    optimizer_state = {
        "exp_avg": torch.zeros(400_000)
    }  # ... and 1.6 MB of optimiser state
    target = full_disk / "last.pt"
    with pytest.raises(DiskFullError) as err:
        save_checkpoint(model, target, extra={"optimizer": optimizer_state})
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert_disk_full(err.value, full_disk, target, weights + 400_000 * 4 + (1 << 16))


def test_embeddings_cache_on_a_full_disk(full_disk, make_toy_chips):
    seed_everything(0)
    stage1 = SiameseClassifier("reference").eval()
    x, _ = make_toy_chips(12, seed=3)
    with pytest.raises(DiskFullError) as err:
        cached_embeddings(stage1, x, full_disk, precision="fp32")
    target = embeddings_path(full_disk, stage1, x, resolve_precision("cpu", "fp32"))
    assert_disk_full(
        err.value, full_disk, target, 12 * stage1.embedding_dim * 32 * 32 * 4
    )


def test_disk_full_errors_from_patched_writes(tmp_path, monkeypatch):
    """Where no tmpfs can be mounted: ENOSPC from numpy, and torch's 'unexpected pos'
    while the device reports no free space, both become DiskFullError."""
    chips = big_chips(64)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(chips_module.np, "save", no_space)
    with pytest.raises(
        DiskFullError,
        match=rf"no space left on .* for {tmp_path / 'store'} \(needs about",
    ):
        save_chips(chips, tmp_path / "store")
    monkeypatch.undo()
    assert not (tmp_path / "store").exists()

    real_usage = shutil.disk_usage

    def torch_full(obj, f, *args, **kwargs):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 32"
        )

    monkeypatch.setattr(torch, "save", torch_full)
    monkeypatch.setattr(
        shutil, "disk_usage", lambda p: real_usage(p)._replace(free=4096)
    )
    with pytest.raises(DiskFullError, match="no space left on"):
        save_checkpoint(SiameseClassifier(), tmp_path / "last.pt")
    # the same error with room to spare is not a full disk: raised as it was
    monkeypatch.setattr(shutil, "disk_usage", real_usage)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        save_checkpoint(SiameseClassifier(), tmp_path / "last.pt")


def test_cli_names_a_full_disk_in_one_line():
    from sarslide import cli

    errors = cli._known_errors()
    assert (
        DiskFullError in errors
    )  # imported above, so the command line reports it in one line


# --- broken caches ---
def test_zeroed_embeddings_cache_is_caught_by_its_checksum(
    tmp_path, make_toy_chips, monkeypatch
):
    from sarslide.engine import embeddings

    seed_everything(0)
    stage1 = SiameseClassifier("reference").eval()
    x, _ = make_toy_chips(12, seed=3)
    fresh = cached_embeddings(stage1, x, tmp_path, precision="fp32").clone()
    path = embeddings_path(tmp_path, stage1, x, resolve_precision("cpu", "fp32"))
    assert checksum_path(path).is_file()
    embeddings._VERIFIED.clear()  # a new process
    damaged = np.load(path, mmap_mode="r+")
    damaged[1:] = 0  # every row zero except the first
    damaged.flush()
    del damaged
    calls = []
    real = embeddings._compute
    monkeypatch.setattr(
        embeddings, "_compute", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    with pytest.warns(
        EmbeddingsCacheWarning, match=rf"{path.name} does not match its checksum"
    ):
        again = cached_embeddings(stage1, x, tmp_path, precision="fp32")
    assert calls == [1]  # computed again, not used
    torch.testing.assert_close(again, fresh, rtol=0, atol=0)
    embeddings._VERIFIED.clear()
    cached_embeddings(stage1, x, tmp_path, precision="fp32")
    assert calls == [1]  # the rewritten cache passes its checksum


SMALL = get_profile("demo").with_overrides(
    name="harden2", synthetic_shape=(256, 256), chip_size=16, split_scheme="text"
)


def test_chip_store_missing_meta_parquet_is_named_and_rebuilt(tmp_path):
    chips = datasets.prepare_event(Experiment.create("hokkaido", SMALL, tmp_path))
    (store,) = (tmp_path / "chips").iterdir()
    (store / "meta.parquet").unlink()
    with pytest.raises(CorruptChipStoreError, match=r"meta\.parquet is missing"):
        open_chips(store)
    with pytest.warns(datasets.CacheRebuiltWarning, match=r"meta\.parquet is missing"):
        again = datasets.prepare_event(Experiment.create("hokkaido", SMALL, tmp_path))
    np.testing.assert_array_equal(again.images, chips.images)
    assert (store / "meta.parquet").is_file()


def test_zero_filled_last_pt_gives_no_unsafe_torch_advice(tmp_path):
    last = tmp_path / "last.pt"
    last.write_bytes(bytes(4096))
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(last)
    text = str(err.value)
    assert str(last) in text and "only zero bytes" in text
    for unsafe in ("trusted source", "weights_only", "arbitrary code"):
        assert unsafe not in text


# --- bad servers ---
class _BadServer:
    """Answers every request with ``status`` and ``body`` (HTML page, HTTP 500,
    garbage)."""

    def __init__(self, status: int, body: bytes, content_type: str):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def do_HEAD(self):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()

            def log_message(self, *args):
                pass

        self.requests = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("status", "body", "kind", "needle"),
    [
        (200, b"<html><body>Maintenance</body></html>", "text/html", "not JSON"),
        (500, b"Internal Server Error", "text/plain", "HTTP 500"),
    ],
)
def test_a_stac_server_answering_html_or_500_is_named(
    status, body, kind, needle, monkeypatch
):
    monkeypatch.setenv("SARSLIDE_NETWORK_RETRIES", "0")
    with _BadServer(status, body, kind) as server:
        with pytest.raises(BadResponseError) as err:
            search_passes(
                "hokkaido", collection="sentinel-1-grd", catalog=f"{server.url}/stac"
            )
    assert f"{server.url}/stac" in str(err.value) and needle in str(err.value)


def test_cli_fetch_from_a_stac_server_answering_500_gives_one_line(tmp_path):
    with _BadServer(500, b"Internal Server Error", "text/plain") as server:
        proc = run_cli(
            "fetch",
            "--bbox",
            "141.90",
            "42.70",
            "141.93",
            "42.72",
            "--date",
            "2018-09-06",
            "--source",
            "planetary-computer",
            "--collection",
            "sentinel-1-grd",
            "--catalog",
            f"{server.url}/stac",
            "--no-sign",
            data_dir=tmp_path / "data",
            env_extra={"SARSLIDE_NETWORK_RETRIES": "0"},
            timeout=300,
        )
    assert_one_line_error(proc, "HTTP 500", f"{server.url}/stac")


def test_a_lazy_read_of_garbage_is_named_not_a_raw_rasterio_error(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("SARSLIDE_NETWORK_TIMEOUT", "2")
    monkeypatch.setenv("SARSLIDE_NETWORK_RETRIES", "0")
    with _BadServer(200, b"\x00garbage, not a GeoTIFF" * 64, "image/tiff") as server:
        item, geobox = _geotiff_item(tmp_path, server.url)
        cube = load_stac_items([item], geobox, chunks=16)
        with pytest.raises(BadResponseError) as err:
            cube["vv"].compute(scheduler="synchronous")
    assert not isinstance(err.value, rasterio.errors.RasterioIOError)
    assert f"{server.url}/files/" in str(
        err.value
    ) and "not with a readable GeoTIFF" in str(err.value)


# --- the nits ---
def test_retries_must_be_a_whole_number_and_each_retry_says_so(monkeypatch, capsys):
    monkeypatch.setenv("SARSLIDE_NETWORK_RETRIES", "1.5")
    with pytest.raises(
        ValueError, match=r"SARSLIDE_NETWORK_RETRIES='1.5' is not a whole number"
    ):
        network_settings()
    monkeypatch.setenv("SARSLIDE_NETWORK_RETRIES", "2.0")
    assert network_settings().retries == 2

    def silent():
        raise TimeoutError("timed out")

    with pytest.raises(TimeoutError):
        with_retries(
            silent,
            retry_on=lambda e: True,
            settings=NetworkSettings(60, 2, 1.0),
            sleep=lambda s: None,
            what="STAC search at http://example.test",
        )
    lines = [
        line
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("sarslide:")
    ]
    assert len(lines) == 2
    assert (
        "STAC search at http://example.test" in lines[0] and "timeout 60 s" in lines[0]
    )
    assert "retry 1 of 2 in 1 s" in lines[0] and "retry 2 of 2 in 2 s" in lines[1]
