"""Ready-to-train chips of an event under a profile: built once, cached, idempotent.

Every chapter starts from :func:`prepare_event`, so a student may open any chapter on a
fresh runtime: if the chips are not on disk yet they are built through the package
(synthetic cube on the demo profile, the paper's datacube on the paper profile),
balanced, split and standardised with statistics from the stage-1 training split, then
cached.

The cache lives in ``$SARSLIDE_DATA_DIR`` if set, else in the user cache directory
(``~/.cache/sarslide`` on Linux). A store's name carries a hash of everything that went
into it, so changing a profile setting builds a new store instead of reusing a stale
one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
import zlib
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import pooch
import xarray as xr

from .chips import (
    ChipSet,
    CorruptChipStoreError,
    assign_splits,
    balance,
    make_chips,
    open_chips,
    save_chips,
)
from .cube import CubeError, open_cube, save_cube
from .engine.atomic import is_package_store, recover_directory
from .events import get_event
from .passes import pass_pair
from .profiles import CHIP_FIELDS, CUBE_FIELDS, Profile, get_profile
from .transforms import compute_stats

__all__ = [
    "DATA_DIR_ENV",
    "CacheRebuiltWarning",
    "data_dir",
    "prepare_cube",
    "prepare_event",
    "profile_pass_pair",
    "store_key",
]


class CacheRebuiltWarning(UserWarning):
    """A cached cube or chip store was unreadable (corrupt) and has been built again."""


DATA_DIR_ENV = "SARSLIDE_DATA_DIR"
#: Bump when the synthetic generator or the chip pipeline changes what they produce.
PIPELINE_VERSION = 5


def data_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where cubes, chips and checkpoints are cached (created if missing)."""
    path = Path(cache_dir or os.environ.get(DATA_DIR_ENV) or pooch.os_cache("sarslide"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _synthetic_seed(event: str, seed: int) -> int:
    """Different events get different (but fixed) scenes for the same seed."""
    return int(seed) + zlib.crc32(event.encode()) % 10_000


def store_key(
    event: str, profile: Profile, seed: int, fields: Sequence[str] | None = None
) -> str:
    """A short hash of everything that determines a cached product.

    ``fields`` names the profile settings that matter (e.g.
    :data:`sarslide.profiles.CHIP_FIELDS` for a chip store); ``None`` hashes them all.
    """
    settings = asdict(profile)
    if fields is not None:
        settings = {k: settings[k] for k in fields}
    else:
        settings.pop("name")
    payload = json.dumps(
        {
            "event": event,
            "profile": settings,
            "seed": seed,
            "pipeline": PIPELINE_VERSION,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def prepare_cube(
    event: str,
    profile: Profile | str | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    seed: int | None = None,
) -> xr.Dataset:
    """The event cube for a profile: synthetic (demo) or the paper's datacube (paper).

    Synthetic cubes are generated with enough passes for the profile and cached as zarr;
    the paper's cubes are downloaded once by :func:`sarslide.acquire.load_paper_cube`.
    """
    evt = get_event(event)
    profile = get_profile(profile)
    seed = profile.data_seed if seed is None else int(seed)
    if profile.data_source == "synthetic":
        from .synthetic import make_cube

        path = _synthetic_cube_path(evt.name, profile, seed, cache_dir)
        recover_directory(path)
        if path.exists():
            try:
                return open_cube(path)
            except Exception as err:  # a cache the package owns: build it again
                if not (isinstance(err, CubeError) or _is_chunk_read_error(err)):
                    raise
                if not isinstance(err, CubeError):
                    err = (
                        f"{path}: a chunk could not be decoded "
                        f"({type(err).__name__}: {err})"
                    )
                warnings.warn(
                    f"rebuilding the cached cube: {err}",
                    CacheRebuiltWarning,
                    stacklevel=2,
                )
        cube = make_cube(
            profile.synthetic_shape,
            event=evt.name,
            n_pre=max(profile.n_pre_passes, 1),
            n_post=max(profile.n_post_passes, 1),
            seed=_synthetic_seed(evt.name, seed),
        )
        save_cube(cube, path)
        return open_cube(path)
    if profile.data_source == "zenodo":
        from .acquire import load_paper_cube

        return load_paper_cube(evt.name, cache_dir=data_dir(cache_dir))
    raise ValueError(
        f"profile {profile.name!r} has data_source={profile.data_source!r}; use "
        "'synthetic' or 'zenodo'"
    )


def _synthetic_cube_path(event: str, profile: Profile, seed: int, cache_dir) -> Path:
    """Where :func:`prepare_cube` caches a synthetic event cube (a zarr store)."""
    key = store_key(event, profile, seed, CUBE_FIELDS)
    return data_dir(cache_dir) / "cubes" / f"{event}-{key}.zarr"


def _is_chunk_read_error(err: BaseException) -> bool:
    """Whether ``err`` is a compressed chunk that could not be decoded (a truncated or
    damaged zarr chunk: blosc/numcodecs/zarr raise it while the chips are read)."""
    module = type(err).__module__ or ""
    text = str(err).lower()
    return module.startswith(("numcodecs", "zarr", "blosc")) or any(
        word in text for word in ("decompress", "blosc", "codec")
    )


def profile_pass_pair(
    cube: xr.Dataset, profile: Profile | str | None = None
) -> xr.Dataset:
    """The cube's before/after pass pair chosen as the profile says.

    The one rule every caller shares (chip stores, chapters 2 and 7, ``sarslide map``):
    the paper's named passes when ``profile.named_passes`` (the paper profile), else the
    nearest same-track passes, ``n_pre_passes`` / ``n_post_passes`` of them averaged
    (:func:`sarslide.cube.pass_pair`).
    """
    profile = get_profile(profile)
    return pass_pair(
        cube,
        n_pre=profile.n_pre_passes,
        n_post=profile.n_post_passes,
        named=profile.named_passes,
    )


def _event_chips(cube: xr.Dataset, profile: Profile) -> ChipSet:
    """All chips of ``cube`` as the profile cuts them (before balancing and splits)."""
    return make_chips(
        cube,
        profile.chip_size,
        n_pre=profile.n_pre_passes,
        n_post=profile.n_post_passes,
        named_passes=profile.named_passes,
        max_nodata_fraction=profile.max_nodata_fraction,
    )


def prepare_event(
    event: str,
    profile: Profile | str | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    seed: int | None = None,
    rebuild: bool = False,
) -> ChipSet:
    """Balanced, split chips of ``event`` with stage-1 training statistics, cached on
    disk.

    Parameters
    ----------
    event:
        Event name (``"hokkaido"``, ``"kaikoura"``).
    profile:
        A :class:`~sarslide.profiles.Profile`, its name, or ``None`` for
        ``$SARSLIDE_PROFILE``.
    cache_dir:
        Overrides ``$SARSLIDE_DATA_DIR`` / the user cache.
    seed:
        Seeds the synthetic scene, the balancing and the split; ``None`` takes the
        profile's ``data_seed``.
    rebuild:
        Build again even if a cached store exists.

    Returns
    -------
    ChipSet
        ``images`` (N, 4, chip, chip) linear float32, ``labels``, ``meta`` with a
        ``split`` column, ``stats`` from the stage-1 training chips.
    """
    evt = get_event(event)
    profile = get_profile(profile)
    seed = profile.data_seed if seed is None else int(seed)
    path = (
        data_dir(cache_dir)
        / "chips"
        / f"{evt.name}-{store_key(evt.name, profile, seed, CHIP_FIELDS)}"
    )
    recover_directory(path)
    if path.exists() and not rebuild:
        try:
            return open_chips(path)
        except CorruptChipStoreError as err:  # a cache the package owns: build it again
            warnings.warn(
                f"rebuilding the cached chips: {err}", CacheRebuiltWarning, stacklevel=2
            )
    cube = prepare_cube(evt.name, profile, cache_dir=cache_dir, seed=seed)
    try:
        chips = _event_chips(cube, profile)
    except Exception as err:
        if not _is_chunk_read_error(err):
            raise
        store = cube.encoding.get("source", "the cached cube")
        if profile.data_source != "synthetic":
            raise CubeError(
                f"a chunk of {store} could not be decoded ({type(err).__name__}: "
                f"{err}); "
                "the store is damaged: delete it and run again to download it anew"
            ) from err
        # a synthetic cube is the package's own cache: build it again, once
        warnings.warn(
            f"rebuilding the cached cube {store}: a chunk could not be decoded "
            f"({type(err).__name__}: {err})",
            CacheRebuiltWarning,
            stacklevel=2,
        )
        damaged = _synthetic_cube_path(evt.name, profile, seed, cache_dir)
        if is_package_store(damaged):  # never delete a folder the package did not write
            shutil.rmtree(damaged)
        cube = prepare_cube(evt.name, profile, cache_dir=cache_dir, seed=seed)
        chips = _event_chips(cube, profile)
    chips = assign_splits(balance(chips, seed=seed), profile.split_scheme, seed=seed)
    stats = compute_stats(chips.split("stage1_train").images)
    chips = replace(chips, stats=stats.to_dict())
    save_chips(chips, path)
    return chips
