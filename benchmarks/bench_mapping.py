"""Benchmark: area-wide landslide mapping throughput (km² per second) and peak memory.

Maps a synthetic pass pair with the model chapter 7 uses — the stage-2 segmenter *with*
frozen stage-1 embeddings, ``Segmenter(SiameseClassifier("reference"))`` (untrained
weights: the speed does not depend on them) — through
:func:`sarslide.mapping.predict_probability`, under ``precision="fp32"`` (plain float32)
and ``precision="auto"`` (the device's fast path,
:func:`sarslide.engine.precision.resolve_precision`), alternated after a warm-up so
machine load hits both alike, and the log-ratio baseline. For each it prints wall time,
throughput, how many pixels the model evaluated per mapped pixel (window overlap and
block borders), the peak of numpy/Python allocations during mapping (tracemalloc) and
the process's peak resident memory during mapping (Linux: VmHWM after resetting it;
elsewhere the lifetime peak from getrusage), then the line ``mapping speedup over plain
fp32: N.NN×``.  Not a test.

``--region-km2 10000`` instead maps a part of a lazily built (dask) region of that area
— Kaikōura's affected area is about 10,000 km² — block by block with the fast path,
prints the resident memory after every block (it stays flat: memory is bounded by one
block, not by the area) and projects the time of the whole region from the mean seconds
per block.

Examples::

    .venv/bin/python benchmarks/bench_mapping.py            # 1024² px, fp32 vs fast
    .venv/bin/python benchmarks/bench_mapping.py --size 2048 --skip-baseline
    .venv/bin/python benchmarks/bench_mapping.py --region-km2 10000 --region-blocks 3
    .venv/bin/python benchmarks/bench_mapping.py --lazy --cog /tmp/map.tif
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb(reset_ok: bool) -> float:
    if reset_ok:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024**2


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _evaluated_pixels(ny: int, nx: int, window: int, overlap: int, chunk: int) -> int:
    from sarslide.mapping import block_plan

    plan = block_plan(ny, nx, window, overlap, chunk)
    return sum(len(b.windows) for b in plan) * window**2


def _measure(label: str, run, area_km2: float, ny: int, nx: int, args, window: int):
    overlap = window // 4 if args.overlap is None else args.overlap
    tracemalloc.start()
    tracemalloc.reset_peak()
    reset_ok = _reset_peak_rss()
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    out = run()
    wall = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = _peak_rss_mb(reset_ok)
    ratio = _evaluated_pixels(ny, nx, window, overlap, args.chunk) / (ny * nx)
    print(
        f"{label:<22} {wall:8.2f} s  {area_km2 / wall:8.2f} km²/s  "
        f"{ny * nx / wall / 1e6:6.3f} Mpx/s  evaluated/mapped px {ratio:4.2f}  "
        f"numpy peak {traced_peak / 1024**2:7.0f} MiB  "
        f"RSS before {rss0:6.0f} MiB, peak {peak:6.0f} MiB"
        + ("" if reset_ok else " (lifetime peak)")
    )
    if out is not None:
        finite = np.isfinite(np.asarray(out.values))
        print(f"{'':<22} map {out.shape}, {finite.mean():.1%} valid pixels")
    return wall, out


def _synthetic_pair(size: int, tile: int):
    """A size × size pass pair: one synthetic cube, or a smaller one repeated like
    tiles."""
    from sarslide import passes, synthetic

    side = size if tile <= 0 else min(tile, size)
    pair = passes.pass_pair(synthetic.make_cube((side, side), seed=0)).drop_vars(
        "landslides"
    )
    if side == size:
        return pair
    reps = -(-size // side)
    res = float(pair["x"][1] - pair["x"][0])
    x0, y0 = float(pair["x"][0]) - res / 2, float(pair["y"][0]) + res / 2
    big = xr.Dataset(
        {
            v: (("y", "x"), np.tile(pair[v].values, (reps, reps))[:size, :size])
            for v in pair.data_vars
        },
        coords={
            "y": y0 - res * (np.arange(size) + 0.5),
            "x": x0 + res * (np.arange(size) + 0.5),
        },
        attrs=pair.attrs,
    )
    return big.rio.write_crs(pair.rio.crs)


def _model():
    import torch

    from sarslide import models

    torch.manual_seed(0)
    return models.Segmenter(models.SiameseClassifier("reference")).eval()


def _region(args, stats) -> None:
    """Map a part of a lazily built region of ``--region-km2`` block by block;
    project."""
    import dask
    import dask.array as dsa
    import torch

    from sarslide import mapping
    from sarslide.engine.precision import resolve_precision

    side = int(round((args.region_km2 * 1e6) ** 0.5 / 10.0))  # 10 m pixels
    tile = _synthetic_pair(min(args.tile or 1024, side), 0)
    reps = -(-side // tile.sizes["y"])
    res = 10.0
    x0, y0 = float(tile["x"][0]) - res / 2, float(tile["y"][0]) + res / 2
    lazy = xr.Dataset(
        {
            v: (
                ("y", "x"),
                dsa.tile(
                    dsa.from_array(tile[v].values, chunks=args.chunk), (reps, reps)
                )[:side, :side].rechunk(args.chunk),
            )
            for v in tile.data_vars
        },
        coords={
            "y": y0 - res * (np.arange(side) + 0.5),
            "x": x0 + res * (np.arange(side) + 0.5),
        },
        attrs=tile.attrs,
    ).rio.write_crs(tile.rio.crs)
    prec = resolve_precision(None, "auto")
    model = _model()
    da = mapping.predict_probability(
        lazy,
        model,
        stats,
        window=args.window,
        overlap=args.overlap,
        batch_size=args.batch_size,
        chunk_size=args.chunk,
        lazy=True,
        progress=False,
        precision=prec,
    )
    n_rows, n_cols = len(da.data.chunks[0]), len(da.data.chunks[1])
    print(
        f"region {side}×{side} px at 10 m = {side * side * 1e-4:,.0f} km², lazy "
        "(dask) blocks of "
        f"{args.chunk}² px: {n_rows}×{n_cols} = {n_rows * n_cols} blocks; fast path "
        f"{prec.name}; "
        f"threads {torch.get_num_threads()}; mapping {args.region_blocks} blocks and "
        "projecting"
    )
    reset_ok = _reset_peak_rss()
    seconds = []
    with dask.config.set(scheduler="synchronous"):
        for k in range(min(args.region_blocks, n_rows * n_cols)):
            i, j = divmod(k, n_cols)
            block = da.data.blocks[i, j]
            t0 = time.perf_counter()
            values = block.compute()
            seconds.append(time.perf_counter() - t0)
            print(
                f"  block ({i}, {j}) {values.shape}: {seconds[-1]:7.1f} s, RSS now "
                f"{_rss_mb():6.0f} MiB, "
                f"peak so far {_peak_rss_mb(reset_ok):6.0f} MiB"
            )
            del values
    per_block = float(np.mean(seconds[1:] if len(seconds) > 1 else seconds))
    total = per_block * n_rows * n_cols
    print(
        f"projected: {n_rows * n_cols} blocks × {per_block:.1f} s = {total / 60:.1f} "
        "min for "
        f"{side * side * 1e-4:,.0f} km² ({side * side * 1e-4 / total:.2f} km²/s) on "
        "this machine; "
        "memory bounded by one block (the RSS above does not grow with the blocks "
        "mapped)"
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", type=int, default=1024, help="pass pair side in pixels (10 m)"
    )
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64, help="default: window // 4")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=2048, help="block side in pixels")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--reps", type=int, default=1, help="alternated mappings per precision"
    )
    parser.add_argument(
        "--lazy", action="store_true", help="dask blocks, written to --cog"
    )
    parser.add_argument(
        "--cog", type=Path, default=None, help="write the fast-path model map here"
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=0,
        help="build a synthetic cube of this side and tile it to --size (saves build "
        "time on "
        "huge scenes; mapping speed does not depend on content); 0 = one whole cube",
    )
    parser.add_argument(
        "--region-km2",
        type=float,
        default=None,
        help="map part of a lazy region of this area and project",
    )
    parser.add_argument(
        "--region-blocks",
        type=int,
        default=3,
        help="blocks of the region actually mapped",
    )
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args(argv)
    return args


def _finish(da, cog: Path | None):
    """Compute a map, or stream it into the COG ``cog`` (returns None then)."""
    import dask

    from sarslide import mapping

    # One block at a time: torch already uses every core inside a block.
    with dask.config.set(scheduler="synchronous"):
        if cog is not None:
            mapping.write_cog(da, cog)  # a lazy map streams to disk block by block
            print(f"{'':<22} written to {cog} ({cog.stat().st_size / 1024**2:.1f} MiB)")
            return None
        return da.compute()


def _bench_segmenter(args, pair, stats, common: dict, area: float) -> None:
    """fp32 and the fast path alternated after a warm-up; prints the speedup."""
    import torch

    from sarslide import mapping, models
    from sarslide.engine.precision import resolve_precision

    ny, nx = pair.sizes["y"], pair.sizes["x"]
    model = _model()
    precisions = {
        "fp32": resolve_precision(None, "fp32"),
        "fast": resolve_precision(None, "auto"),
    }
    print(
        f"model: stage-2 Segmenter with stage-1 embeddings (chapter 7's), "
        f"{models.count_parameters(model, trainable_only=False):,} parameters, device "
        f"{'cuda' if torch.cuda.is_available() else 'cpu'}; fast path "
        f"{precisions['fast'].describe()}"
    )
    warm = pair.isel(y=slice(0, args.window), x=slice(0, args.window))
    for prec in precisions.values():  # warm-up: one window each
        mapping.predict_probability(
            warm, model, stats, precision=prec, **{**common, "lazy": False}
        )
    walls: dict[str, list[float]] = {k: [] for k in precisions}
    maps = {}
    for _ in range(args.reps):
        for name, prec in precisions.items():
            label = f"segmenter {name} ({prec.name})"
            cog = args.cog if name == "fast" else None
            wall, out = _measure(
                label,
                lambda prec=prec, cog=cog: _finish(
                    mapping.predict_probability(
                        pair, model, stats, precision=prec, **common
                    ),
                    cog,
                ),
                area,
                ny,
                nx,
                args,
                args.window,
            )
            walls[name].append(wall)
            maps[name] = out
    if maps.get("fp32") is not None and maps.get("fast") is not None:
        a, b = np.asarray(maps["fp32"].values), np.asarray(maps["fast"].values)
        ok = np.isfinite(a) & np.isfinite(b)
        print(
            f"{'':<22} max |fast − fp32| probability {np.abs(a[ok] - b[ok]).max():.4f}"
        )
    ratio = float(np.median(walls["fp32"]) / np.median(walls["fast"]))
    print(
        f"mapping speedup over plain fp32: {ratio:.2f}× ({area:,.0f} km², {ny}×{nx} px)"
    )


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)

    import torch

    from sarslide import baseline, mapping
    from sarslide.transforms import BandStats

    torch.set_num_threads(args.threads)
    # Reference Hokkaido statistics; the speed does not depend on them.
    stats = BandStats(mean={"vv": -0.73, "vh": -1.32}, std={"vv": 0.21, "vh": 0.19})
    if args.region_km2:
        _region(args, stats)
        return
    t0 = time.perf_counter()
    pair = _synthetic_pair(args.size, args.tile)
    ny, nx = pair.sizes["y"], pair.sizes["x"]
    res = float(pair["x"][1] - pair["x"][0])
    area = ny * nx * res * res / 1e6
    print(
        f"pass pair {ny}×{nx} px at {res:g} m = {area:,.0f} km² (tile {args.tile}, "
        "built in "
        f"{time.perf_counter() - t0:.0f} s); window {args.window}, overlap "
        f"{args.overlap}, batch {args.batch_size}, chunk {args.chunk}, torch threads "
        f"{torch.get_num_threads()}, lazy={args.lazy}, cpu count {os.cpu_count()}"
    )
    common = dict(
        window=args.window,
        overlap=args.overlap,
        batch_size=args.batch_size,
        chunk_size=args.chunk,
        lazy=args.lazy,
        progress=False,
    )
    baseline_cog = (
        None
        if args.cog is None
        else args.cog.with_name(args.cog.stem + "_logratio.tif")
    )
    if not args.skip_model:
        _bench_segmenter(args, pair, stats, common, area)
    if not args.skip_baseline:
        _measure(
            "log-ratio baseline",
            lambda: _finish(
                mapping.predict_raw(pair, baseline.log_ratio_score, **common),
                baseline_cog,
            ),
            area,
            ny,
            nx,
            args,
            args.window,
        )


if __name__ == "__main__":
    main()
