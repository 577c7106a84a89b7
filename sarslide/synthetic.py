"""A physically plausible synthetic landslide event: the offline default and test data.

The scene is built the way a radar sees real hills:

1. **Terrain.** A fractal (power-law spectrum) elevation model scaled to a median slope
   of 15°; slopes and aspects follow.
2. **Backscatter texture.** Slopes facing the radar return more energy (local incidence
   angle), land cover adds patchy texture; VV and VH share most of it.
3. **Passes.** Each pass adds a small weather-like change (soil moisture) and
   independent multiplicative gamma speckle (``looks`` equivalent number of looks), as
   in multi-looked Sentinel-1 GRD/RTC amplitude.
4. **Landslides.** Compact elongated blobs on slopes steeper than 12°, clustered so some
   areas are hit hard and others not at all. In post-event passes vegetation loss lowers
   backscatter on most landslides (VH more than VV, by a random amount per landslide);
   on some, rough debris raises it instead. Visible on average over a landslide, but
   well inside the speckle on a single pixel.
5. **Other changes.** Between any two passes the land changes for reasons that have
   nothing to do with landslides — fields are ploughed or harvested, soil dries.
   Rectangular patches on gentle slopes change backscatter by a few dB of either sign,
   so a plain change detector raises false alarms that a model using shape and context
   can learn to ignore.
6. **Water.** Lakes and ponds fill the lowest basins of the terrain. Calm water reflects
   the radar away (VV ≈ −20 dB, VH at the noise floor ≈ −24 dB); wind roughens it by a
   different amount on every pass, so water "changes" by several dB between passes
   without any landslide.

The statistics match the real Hokkaido cube (:data:`LOG10_TARGETS`; the synthetic scene
stands in for the paper's datacube, see the "Data" row of ``deviations.md``): log10(VV)
mean ≈ −0.73, std ≈ 0.21; log10(VH) mean ≈ −1.32, std ≈ 0.19, over all pixels and
passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import xarray as xr
from pyproj import Transformer
from scipy import special

from .cube import validate_cube
from .events import get_event

__all__ = ["make_cube", "SceneParameters", "LOG10_TARGETS"]

#: Reference statistics of the real Hokkaido cube: band -> (log10 mean, log10 std).
LOG10_TARGETS: dict[str, tuple[float, float]] = {
    "vv": (-0.73, 0.21),
    "vh": (-1.32, 0.19),
}

_REVISIT_DAYS = 12


@dataclass(frozen=True)
class SceneParameters:
    """The physical knobs of a synthetic scene (see :func:`make_cube` for each one).

    Fractions are shares of pixels (0–1), changes in dB, slopes in degrees and
    ``resolution`` in metres per pixel; ``change_db`` is (VV, VH).
    """

    landslide_fraction: float = 0.03
    cluster_share: float = 0.45
    change_db: tuple[float, float] = (-1.3, -2.3)
    brighter_share: float = 0.2
    field_change_fraction: float = 0.05
    field_change_db: float = 2.5
    looks: float = 7.0
    median_slope_deg: float = 15.0
    nodata_corner: float = 0.04
    water_fraction: float = 0.003
    resolution: float = 10.0


def _fractal_field(
    rng: np.random.Generator, shape: tuple[int, int], beta: float
) -> np.ndarray:
    """Zero-mean, unit-std Gaussian field with power spectrum ~ k^-beta, float64 (ny,
    nx)."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = np.inf
    amplitude = k ** (-beta / 2.0)
    noise = rng.standard_normal((ny, nx // 2 + 1)) + 1j * rng.standard_normal(
        (ny, nx // 2 + 1)
    )
    field = np.fft.irfft2(noise * amplitude, s=(ny, nx))
    return (field - field.mean()) / field.std()


def _zscore(a: np.ndarray) -> np.ndarray:
    return (a - a.mean()) / a.std()


def _speckle_log10_moments(looks: float) -> tuple[float, float]:
    """Mean and std of log10 of unit-mean gamma speckle with ``looks`` looks."""
    mean = (special.digamma(looks) - np.log(looks)) / np.log(10.0)
    std = np.sqrt(special.polygamma(1, looks)) / np.log(10.0)
    return float(mean), float(std)


def _draw_landslides(
    rng: np.random.Generator,
    slope_deg: np.ndarray,
    aspect_rad: np.ndarray,
    fraction: float,
    cluster_share: float,
    forbidden: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Place elongated blobs until ``fraction`` of pixels are covered.

    Returns the blob id raster (int32, 0 = none), a per-pixel change strength (float32,
    0 outside landslides) and the blob centroids as (row, col).
    """
    ny, nx = slope_deg.shape
    draw_start = _start_sampler(rng, slope_deg, cluster_share, forbidden)
    pending: list[int] = []
    ids = np.zeros((ny, nx), dtype=np.int32)
    strength = np.zeros((ny, nx), dtype=np.float32)
    centroids: list[tuple[int, int]] = []
    target = fraction * ny * nx
    covered = 0
    blob = 0
    while covered < target and blob < 100_000:
        if not pending:
            pending = draw_start(256).tolist()
        r0, c0 = divmod(int(pending.pop()), nx)
        window, inside = _blob_footprint(rng, ids, aspect_rad, r0, c0, forbidden)
        if not inside.any():
            continue
        blob += 1
        ids[window][inside] = blob
        strength[window][inside] = rng.uniform(0.5, 1.5)
        covered += int(inside.sum())
        rows, cols = np.nonzero(inside)
        r_lo, c_lo = window[0].start, window[1].start
        centroids.append(
            (r_lo + int(round(rows.mean())), c_lo + int(round(cols.mean())))
        )
    return ids, strength, centroids


def _start_sampler(
    rng: np.random.Generator,
    slope_deg: np.ndarray,
    cluster_share: float,
    forbidden: np.ndarray | None,
):
    """A function ``k -> k`` flat pixel indices where landslides start.

    Starts lie where a smooth "shaking intensity" field is in its top ``cluster_share``
    and the slope exceeds 12°, weighted by shaking and slope. They are drawn in batches
    by inverse-CDF sampling (one cumulative sum for the whole scene), so large scenes
    cost O(pixels), not O(pixels × landslides). Draws the shaking field from ``rng``.
    """
    shaking = _fractal_field(rng, slope_deg.shape, beta=4.0)
    allowed = (shaking > np.quantile(shaking, 1.0 - cluster_share)) & (slope_deg > 12.0)
    if forbidden is not None:
        allowed &= ~forbidden
    weight = np.where(
        allowed, np.exp(1.5 * shaking) * np.sin(np.radians(slope_deg)), 0.0
    ).ravel()
    if weight.sum() <= 0:
        raise ValueError(
            "no slope steep enough for landslides; raise median_slope_deg or lower "
            "cluster_share"
        )
    cdf = np.cumsum(weight)
    cdf /= cdf[-1]

    def starts(k: int) -> np.ndarray:
        return np.minimum(
            np.searchsorted(cdf, rng.random(k), side="right"), cdf.size - 1
        )

    return starts


def _blob_footprint(
    rng: np.random.Generator,
    ids: np.ndarray,
    aspect_rad: np.ndarray,
    r0: int,
    c0: int,
    forbidden: np.ndarray | None,
) -> tuple[tuple[slice, slice], np.ndarray]:
    """An ellipse elongated downslope from (r0, c0), minus taken and forbidden pixels.

    Lengths are lognormal (most landslides are small, a few large; 3–25 pixels, the
    width 35–70 % of it). Returns the (rows, cols) window and its bool ``inside`` mask.
    """
    ny, nx = ids.shape
    length = float(np.clip(rng.lognormal(np.log(6.0), 0.45), 3.0, 25.0))
    width = float(np.clip(length * rng.uniform(0.35, 0.7), 2.0, 12.0))
    theta = float(aspect_rad[r0, c0])  # elongated downslope
    half = int(np.ceil(length)) + 1
    r_lo, r_hi = max(r0 - half, 0), min(r0 + half + 1, ny)
    c_lo, c_hi = max(c0 - half, 0), min(c0 + half + 1, nx)
    rr, cc = np.mgrid[r_lo:r_hi, c_lo:c_hi]
    dr, dc = rr - r0, cc - c0
    along = dc * np.sin(theta) - dr * np.cos(theta)
    across = dc * np.cos(theta) + dr * np.sin(theta)
    inside = (along / length) ** 2 + (across / width) ** 2 <= 1.0
    window = (slice(r_lo, r_hi), slice(c_lo, c_hi))
    inside &= ids[window] == 0
    if forbidden is not None:
        inside &= ~forbidden[window]
    return window, inside


#: log10 backscatter of calm water before speckle: VV ≈ −20 dB, VH at Sentinel-1's noise
#: floor (NESZ ≈ −24 dB), which is what a VH image of calm water records.
_WATER_LOG10 = {"vv": -2.0, "vh": -2.4}
#: Wind roughening of water: per pass, up to this many dB, in smooth gusts.
_WATER_WIND_DB = 10.0


def _draw_water(dem: np.ndarray, fraction: float) -> np.ndarray:
    """Lakes in the lowest basins: the ``fraction`` of pixels with the lowest elevation.

    The fractal terrain is smooth at large scales, so its lowest pixels form a few
    compact basins (lakes and ponds), not scattered pixels. Returns (ny, nx) bool.
    """
    if fraction <= 0:
        return np.zeros(dem.shape, dtype=bool)
    return dem <= np.quantile(dem, fraction)


def _land_log10_moments(
    target_mean: float,
    target_std: float,
    water_share: float,
    water_mean: float,
    water_var: float,
) -> tuple[float, float]:
    """Mean and std of land log10 backscatter so that land + water has the target
    moments.

    For a mixture with water share ``f``: mean = (1−f)·m_land + f·m_water and
    var = (1−f)·v_land + f·v_water + f(1−f)(m_land − m_water)².
    """
    f = float(water_share)
    m_land = (target_mean - f * water_mean) / (1.0 - f)
    v_land = (
        target_std**2 - f * water_var - f * (1.0 - f) * (m_land - water_mean) ** 2
    ) / (1.0 - f)
    if v_land <= 0:
        raise ValueError(
            f"water_fraction={f:.3f} is too large to keep the reference statistics; "
            "use less water"
        )
    return m_land, float(np.sqrt(v_land))


def _draw_field_changes(
    rng: np.random.Generator, slope_deg: np.ndarray, fraction: float, sigma_db: float
) -> np.ndarray:
    """Rectangular patches on gentle slopes with a random backscatter change.

    Returns (ny, nx) float32 change in dB (0 outside the patches), about ``fraction`` of
    pixels.
    """
    ny, nx = slope_deg.shape
    change = np.zeros((ny, nx), dtype=np.float32)
    if fraction <= 0:
        return change
    gentle = np.flatnonzero((slope_deg < np.quantile(slope_deg, 0.5)).ravel())
    covered, target = 0, fraction * ny * nx
    while covered < target:
        r0, c0 = divmod(int(rng.choice(gentle)), nx)
        h, w = (int(v) for v in rng.integers(6, 28, size=2))
        block = change[r0 : r0 + h, c0 : c0 + w]
        fresh = block == 0
        block[fresh] = rng.normal(0.0, sigma_db)
        covered += int(fresh.sum())
    return change


def make_cube(
    shape: tuple[int, int] = (768, 768),
    *,
    event: str = "hokkaido",
    label_kind: str | None = None,
    n_pre: int = 1,
    n_post: int = 1,
    landslide_fraction: float = 0.03,
    cluster_share: float = 0.45,
    change_db: tuple[float, float] = (-1.3, -2.3),
    brighter_share: float = 0.2,
    field_change_fraction: float = 0.05,
    field_change_db: float = 2.5,
    looks: float = 7.0,
    median_slope_deg: float = 15.0,
    nodata_corner: float = 0.04,
    water_fraction: float = 0.003,
    seed: int = 0,
    resolution: float = 10.0,
) -> xr.Dataset:
    """Generate a synthetic event cube that follows :mod:`sarslide.cube`'s schema.

    Parameters
    ----------
    shape:
        ``(ny, nx)`` pixels; the grid is ``resolution`` metres per pixel.
    event:
        Which event's metadata (CRS, event time, pass dates, location) to borrow.
    label_kind:
        ``"mask"`` (uint8 landslide mask) or ``"points"`` (uint16 centroid counts);
        defaults to the event's own kind (Hokkaido: mask, Kaikōura: points).
    n_pre, n_post:
        Number of passes before and after the event (12-day revisit, the paper's pass
        dates nearest the event).
    landslide_fraction:
        Share of pixels inside landslides (the Hokkaido test set has ≈ 0.032).
    cluster_share:
        Share of the area where landslides may occur (the rest stays landslide-free).
    change_db:
        Mean post-event backscatter change on a landslide for (VV, VH) in dB; each
        landslide draws a factor in [0.5, 1.5] of it.
    brighter_share:
        Share of landslides whose backscatter rises instead (rough debris): the factor's
        sign is flipped.
    field_change_fraction, field_change_db:
        Share of pixels in non-landslide change patches, and the standard deviation (dB)
        of their change (same sign in VV and VH).
    looks:
        Equivalent number of looks of the gamma speckle (single-pass noise level).
    median_slope_deg:
        Median terrain slope in degrees. The fractal elevation is scaled to it, so the
        hills are as steep whatever the scene's size (the Iburi hills of the Hokkaido
        event: mostly 10–30°, landslides on the steeper slopes).
    nodata_corner:
        Share of the scene outside the swath (NaN in every pass, a corner wedge).
    water_fraction:
        Share of pixels under water (lakes in the lowest basins); never a landslide or a
        field, dark, and changed by wind on every pass.
    seed:
        Everything is deterministic given the seed.
    resolution:
        Pixel size in metres.

    Returns
    -------
    xarray.Dataset
        ``vv``, ``vh`` (time, y, x) float32 linear backscatter; ``landslides`` (y, x);
        ``dem`` (y, x) float32 metres; per-pass ``orbit_state`` and ``relative_orbit``;
        attrs ``event``, ``event_time``, ``label_kind``, ``source="synthetic"``,
        ``seed``.
    """
    evt = get_event(event)
    kind = label_kind or evt.label_kind
    ny, nx = _checked_arguments(kind, shape, n_pre, n_post, landslide_fraction)
    scene = SceneParameters(
        landslide_fraction=landslide_fraction,
        cluster_share=cluster_share,
        change_db=change_db,
        brighter_share=brighter_share,
        field_change_fraction=field_change_fraction,
        field_change_db=field_change_db,
        looks=looks,
        median_slope_deg=median_slope_deg,
        nodata_corner=nodata_corner,
        water_fraction=water_fraction,
        resolution=resolution,
    )
    # One generator; the steps below draw from it in this order (the scene is a
    # function of the seed alone).
    rng = np.random.default_rng(seed)
    ground = _draw_ground(rng, (ny, nx), scene)
    times = _pass_times(evt, n_pre, n_post)
    bands = _draw_passes(rng, ground, times, n_pre, scene)
    _blank_outside_swath(bands, scene.nodata_corner)
    labels = _labels(kind, ground.ids, ground.centroids)
    x, y = _event_grid(evt, ny, nx, resolution)
    cube = xr.Dataset(
        {
            "vv": (("time", "y", "x"), bands["vv"]),
            "vh": (("time", "y", "x"), bands["vh"]),
            "landslides": (("y", "x"), labels),
            "dem": (("y", "x"), ground.dem.astype(np.float32)),
        },
        coords={
            "time": times,
            "y": y,
            "x": x,
            "orbit_state": ("time", np.array(["descending"] * len(times))),
            "relative_orbit": ("time", np.full(len(times), 46, dtype=np.int16)),
        },
        attrs={
            "event": evt.name,
            "event_time": evt.time_utc.isoformat(),
            "label_kind": kind,
            "source": "synthetic",
            "seed": int(seed),
            "landslide_count": len(ground.centroids),
            "water_fraction": float(int(ground.water.sum()) / (ny * nx)),
        },
    )
    cube["vv"].attrs.update(units="1", long_name="VV backscatter (linear power)")
    cube["vh"].attrs.update(units="1", long_name="VH backscatter (linear power)")
    cube["dem"].attrs.update(units="m", long_name="elevation")
    cube = cube.rio.write_crs(evt.crs)
    return validate_cube(cube)


def _checked_arguments(
    kind: str,
    shape: tuple[int, int],
    n_pre: int,
    n_post: int,
    landslide_fraction: float,
) -> tuple[int, int]:
    """``(ny, nx)`` after checking the label kind, size, pass counts and landslide
    share."""
    if kind not in ("mask", "points"):
        raise ValueError(f"label_kind={kind!r}; choose 'mask' or 'points'")
    ny, nx = (int(s) for s in shape)
    if ny < 32 or nx < 32:
        raise ValueError(
            f"shape={shape} is too small; a synthetic cube needs at least 32×32 pixels"
        )
    if n_pre < 1 or n_post < 1:
        raise ValueError(
            f"n_pre={n_pre}, n_post={n_post}: need at least one pass on each side"
        )
    if not 0.0 < landslide_fraction < 0.5:
        raise ValueError(
            f"landslide_fraction={landslide_fraction} must lie in (0, 0.5)"
        )
    return ny, nx


@dataclass(frozen=True)
class _Ground:
    """What stays the same in every pass: terrain, texture, water, landslides, fields.

    All arrays are (ny, nx): ``dem`` float64 metres, ``slope`` degrees, ``aspect``
    radians from north (downslope), ``texture_vv`` / ``texture_vh`` zero-mean unit-std
    float64, ``water`` bool, ``ids`` int32 landslide ids (0 = none), ``strength``
    float32 signed change factor, ``fields`` float32 non-landslide change in dB;
    ``centroids`` the landslides' (row, col).
    """

    dem: np.ndarray
    slope: np.ndarray
    aspect: np.ndarray
    texture_vv: np.ndarray
    texture_vh: np.ndarray
    water: np.ndarray
    ids: np.ndarray
    strength: np.ndarray
    fields: np.ndarray
    centroids: list[tuple[int, int]]


def _draw_ground(
    rng: np.random.Generator, shape: tuple[int, int], scene: SceneParameters
) -> _Ground:
    """Steps 1–3 of the module docstring: terrain, texture, water, landslides,
    fields."""
    ny, nx = shape
    # 1. Terrain.
    shape_field = _fractal_field(rng, (ny, nx), beta=3.6)
    gy, gx = np.gradient(shape_field, scene.resolution)
    relief = np.tan(np.radians(scene.median_slope_deg)) / np.median(np.hypot(gx, gy))
    dem = relief * shape_field + 400.0
    dzdy, dzdx = np.gradient(dem, scene.resolution)
    slope = np.degrees(np.arctan(np.hypot(dzdx, dzdy)))
    aspect = np.arctan2(-dzdx, dzdy)  # downslope direction, radians from north

    # 2. Texture: local incidence for a right-looking radar looking east (ascending
    #    pass).
    incidence = np.radians(39.0)
    look = np.array([np.sin(incidence), 0.0, -np.cos(incidence)])  # (east, north, up)
    normal = np.stack(
        [-dzdx, dzdy, np.ones_like(dem)]
    )  # y decreases northward: flip dzdy
    normal /= np.linalg.norm(normal, axis=0)
    cos_local = np.clip(-(look[:, None, None] * normal).sum(axis=0), 0.05, 1.0)
    terrain = _zscore(np.log10(cos_local))
    cover = _fractal_field(rng, (ny, nx), beta=2.2)
    texture_vv = _zscore(0.7 * terrain + 0.5 * cover)
    texture_vh = _zscore(
        0.5 * terrain + 0.6 * cover + 0.4 * _fractal_field(rng, (ny, nx), 2.0)
    )

    # 3. Water, then landslides and field changes on land only.
    water = _draw_water(dem, scene.water_fraction)
    ids, strength, centroids = _draw_landslides(
        rng,
        slope,
        aspect,
        scene.landslide_fraction,
        scene.cluster_share,
        forbidden=water,
    )
    if scene.brighter_share > 0:
        flips = np.where(
            rng.random(len(centroids) + 1) < scene.brighter_share, -1.0, 1.0
        ).astype(np.float32)
        flips[0] = 1.0
        strength = strength * flips[ids]
    fields = (
        _draw_field_changes(
            rng, slope, scene.field_change_fraction, scene.field_change_db
        )
        * (ids == 0)
        * ~water
    )
    return _Ground(
        dem,
        slope,
        aspect,
        texture_vv,
        texture_vh,
        water,
        ids,
        strength,
        fields,
        centroids,
    )


def _pass_times(evt, n_pre: int, n_post: int) -> pd.DatetimeIndex:
    """Pass times (naive UTC): the event's named passes, then every 12 days outwards."""
    pre_dates = [
        evt.paper_pre_pass - timedelta(days=_REVISIT_DAYS * i) for i in range(n_pre)
    ][::-1]
    post_dates = [
        evt.paper_post_pass + timedelta(days=_REVISIT_DAYS * i) for i in range(n_post)
    ]
    event_hour = timedelta(
        hours=20, minutes=40
    )  # a descending-like overpass time (UTC)
    return pd.DatetimeIndex(
        [pd.Timestamp(d) + event_hour for d in pre_dates + post_dates]
    )


def _draw_passes(
    rng: np.random.Generator,
    ground: _Ground,
    times: pd.DatetimeIndex,
    n_pre: int,
    scene: SceneParameters,
) -> dict[str, np.ndarray]:
    """Step 4: per band (time, ny, nx) float32 linear backscatter of every pass.

    Clean log10 backscatter + weather + landslide and field change (post-event passes)
    + gamma speckle; water gets its own level and a per-pass wind roughening.
    """
    water = ground.water
    ny, nx = water.shape
    speckle_mean, speckle_std = _speckle_log10_moments(scene.looks)
    weather_std = 0.03
    # Wind on water: a per-pass strength (0 to _WATER_WIND_DB dB) in smooth gusts.
    n_water = int(water.sum())
    wind = (
        [
            rng.uniform(0.0, _WATER_WIND_DB)
            * special.expit(2.0 * _fractal_field(rng, (ny, nx), 3.0)[water])
            / 10.0
            for _ in range(len(times))
        ]
        if n_water
        else []
    )
    water_share = n_water / (ny * nx)
    bands: dict[str, np.ndarray] = {}
    for b, texture, change in (
        ("vv", ground.texture_vv, scene.change_db[0]),
        ("vh", ground.texture_vh, scene.change_db[1]),
    ):
        mean, std = LOG10_TARGETS[b]
        # Land gets the moments that make land + water match the reference statistics.
        water_clean = np.concatenate(wind) + _WATER_LOG10[b] if n_water else np.zeros(1)
        land_mean, land_std = _land_log10_moments(
            mean - speckle_mean,
            np.sqrt(std**2 - speckle_std**2),
            water_share,
            float(water_clean.mean()),
            float(water_clean.var()) + weather_std**2,
        )
        texture_std = np.sqrt(max(land_std**2 - weather_std**2, 1e-6))
        clean = land_mean + texture_std * texture
        stack = np.empty((len(times), ny, nx), dtype=np.float32)
        for t in range(len(times)):
            log10 = clean + weather_std * _fractal_field(rng, (ny, nx), beta=3.0)
            if n_water:
                log10[water] = _WATER_LOG10[b] + wind[t] + (log10[water] - clean[water])
            if t >= n_pre:
                log10 = log10 + (change / 10.0) * ground.strength + ground.fields / 10.0
            speckle = rng.gamma(
                shape=scene.looks, scale=1.0 / scene.looks, size=(ny, nx)
            )
            stack[t] = (10.0**log10 * speckle).astype(np.float32)
        bands[b] = stack
    return bands


def _blank_outside_swath(bands: dict[str, np.ndarray], nodata_corner: float) -> None:
    """Step 5, in place: NaN in every pass on a corner wedge of ``nodata_corner``
    share."""
    if nodata_corner > 0:
        ny, nx = bands["vv"].shape[1:]
        rr, cc = np.mgrid[0:ny, 0:nx]
        wedge = (rr / ny + cc / nx) < np.sqrt(2.0 * nodata_corner)
        for b in bands:
            bands[b][:, wedge] = np.nan


def _labels(kind: str, ids: np.ndarray, centroids: list[tuple[int, int]]) -> np.ndarray:
    """Step 6: uint8 mask of ``ids > 0`` or uint16 counts of the centroids
    ("points")."""
    if kind == "mask":
        return (ids > 0).astype(np.uint8)
    labels = np.zeros(ids.shape, dtype=np.uint16)
    for r, c in centroids:
        labels[r, c] += 1
    return labels


def _event_grid(
    evt, ny: int, nx: int, resolution: float
) -> tuple[np.ndarray, np.ndarray]:
    """Step 7: pixel-centre x, y (metres) in the event's UTM zone, y decreasing.

    The grid is anchored at the south-west corner of the event's area.
    """
    to_utm = Transformer.from_crs("EPSG:4326", evt.crs, always_xy=True)
    west, south = to_utm.transform(evt.bounds_lonlat[0], evt.bounds_lonlat[1])
    x0 = np.floor(west / resolution) * resolution
    y_top = np.floor(south / resolution) * resolution + ny * resolution
    x = x0 + resolution * (np.arange(nx) + 0.5)
    y = y_top - resolution * (np.arange(ny) + 0.5)
    return x, y
