"""Loading ``sentinel-1-grd`` passes: scenes in radar geometry with ground control
points, warped block by block onto the event grid with GDAL's GCP transformer (lazy,
dask).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from sarslide.cube import BANDS, CubeError

from ..engine.network import gdal_http_options
from .download import network_errors
from .passes import Pass

__all__ = ["load_grd_items"]


def _cloud_gdal() -> dict[str, str]:
    """GDAL settings for reading single files over HTTP (as odc-stac's cloud defaults):
    no directory listing on open, the package's timeout and retries
    (:mod:`.network`)."""
    return {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", **gdal_http_options()}


def _gcp_read_block(hrefs, geobox_spec, window, resampling, sign):
    """Read one block of a GCP-georeferenced pass: DN² (float32, NaN = no data).

    For each scene, the block's outline is mapped into the scene's pixel space with
    GDAL's GCP transformer, only that source window is read (HTTP range requests on a
    COG), and it is warped onto the block with the GCPs shifted to the window. Where
    frames overlap the first scene with data wins.
    """
    import rasterio
    from affine import Affine
    from rasterio.control import GroundControlPoint
    from rasterio.enums import Resampling
    from rasterio.transform import GCPTransformer
    from rasterio.warp import reproject
    from rasterio.warp import transform as warp_points
    from rasterio.windows import Window

    crs_wkt, affine_coeffs, _ = geobox_spec
    (row0, row1), (col0, col1) = window
    height, width = row1 - row0, col1 - col0
    block = Affine(*affine_coeffs) * Affine.translation(col0, row0)
    # points along the block's border, in the target CRS
    edge = np.linspace(0, 1, 9)
    u = np.concatenate([edge, np.ones(9), edge[::-1], np.zeros(9)]) * width
    v = np.concatenate([np.zeros(9), edge, np.ones(9), edge[::-1]]) * height
    bx = block.c + block.a * u + block.b * v
    by = block.f + block.d * u + block.e * v
    out = np.full((height, width), np.nan, dtype="float32")
    margin = 8
    for href in hrefs:
        url = sign(href) if sign is not None else href
        with (
            network_errors(href),
            rasterio.Env(**_cloud_gdal()),
            rasterio.open(url) as src,
        ):
            gcps, gcp_crs = src.gcps
            if not gcps:
                raise CubeError(
                    f"{href} has no ground control points; map-projected assets load "
                    "with load_stac_items"
                )
            gx, gy = warp_points(crs_wkt, gcp_crs, bx, by)
            rows, cols = GCPTransformer(gcps).rowcol(gx, gy, op=float)
            r0 = max(int(np.floor(np.min(rows))) - margin, 0)
            r1 = min(int(np.ceil(np.max(rows))) + margin, src.height)
            c0 = max(int(np.floor(np.min(cols))) - margin, 0)
            c1 = min(int(np.ceil(np.max(cols))) + margin, src.width)
            if r0 >= r1 or c0 >= c1:
                continue  # this scene does not reach the block
            data = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
            shifted = [
                GroundControlPoint(row=g.row - r0, col=g.col - c0, x=g.x, y=g.y, z=g.z)
                for g in gcps
            ]
        dn = np.zeros((height, width), dtype=data.dtype)
        reproject(
            data,
            dn,
            gcps=shifted,
            src_crs=gcp_crs,
            dst_transform=block,
            dst_crs=crs_wkt,
            src_nodata=0,
            dst_nodata=0,
            resampling=Resampling[resampling],
        )
        fill = (dn > 0) & np.isnan(out)
        out[fill] = dn[fill].astype("float32") ** 2
    return out


def load_grd_items(
    passes: Sequence[Pass],
    geobox,
    *,
    bands: Sequence[str] = BANDS,
    chunks: int = 2048,
    sign: Callable[[str], str] | None = None,
    resampling: str = "bilinear",
) -> xr.Dataset:
    """Load GCP-georeferenced GRD passes onto ``geobox`` (lazily, block by block).

    odc-stac needs map-projected assets, but ``sentinel-1-grd`` scenes are in radar
    geometry with ground control points; each block is warped with GDAL's GCP polynomial
    transformer instead (reading only the source window it needs). Values are DN² —
    uncalibrated power — with DN 0 as no data.

    Returns
    -------
    xarray.Dataset
        ``vv``, ``vh`` (time, y, x) float32, one time step per pass.
    """
    import dask
    import dask.array as da

    height, width = geobox.shape.y, geobox.shape.x
    spec = (geobox.crs.to_wkt(), tuple(geobox.affine)[:6], (height, width))
    rows = [(r, min(r + chunks, height)) for r in range(0, height, chunks)]
    cols = [(c, min(c + chunks, width)) for c in range(0, width, chunks)]
    data = {}
    for band in bands:
        per_pass = []
        for p in passes:
            hrefs = [it.assets[band].href for it in p.items]
            blocks = [
                [
                    da.from_delayed(
                        dask.delayed(_gcp_read_block)(
                            hrefs, spec, (r, c), resampling, sign
                        ),
                        shape=(r[1] - r[0], c[1] - c[0]),
                        dtype="float32",
                    )
                    for c in cols
                ]
                for r in rows
            ]
            per_pass.append(da.block(blocks))
        data[band] = (("time", "y", "x"), da.stack(per_pass))
    from odc.geo.xr import xr_coords

    coords = xr_coords(geobox)
    ds = xr.Dataset(
        data,
        coords={
            "time": (
                "time",
                np.array([p.time for p in passes], dtype="datetime64[ns]"),
            ),
            "y": coords["y"].values,
            "x": coords["x"].values,
        },
    )
    return ds.rio.write_crs(geobox.crs.to_wkt())
