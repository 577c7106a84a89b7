"""Ready-to-train chips of an event under a profile: built once, cached, idempotent.

Every chapter starts from :func:`prepare_event`, so a student may open any chapter on a
fresh runtime: if the chips are not on disk yet they are built through the package
(synthetic cube on the demo profile, the paper's datacube on the paper profile),
balanced, split and standardised with statistics from the stage-1 training split, then
cached.

The cache lives in the experiment's data folder
(:func:`sarslide.experiment.resolve_data_dir`). A store's name carries a hash of
everything that went into it, so changing a profile setting builds a new store instead
of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
import zlib
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

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
from .experiment import Experiment
from .passes import pass_pair
from .profiles import CHIP_FIELDS, CUBE_FIELDS, Profile
from .transforms import compute_stats

__all__ = [
    "CacheRebuiltWarning",
    "prepare_cube",
    "prepare_event",
    "profile_pass_pair",
    "store_key",
]


class CacheRebuiltWarning(UserWarning):
    """A cached cube or chip store was unreadable (corrupt) and has been built again."""


#: Bump when the synthetic generator or the chip pipeline changes what they produce.
PIPELINE_VERSION = 5


def _synthetic_seed(event: str, data_seed: int) -> int:
    """Different events get different (but fixed) scenes for the same data seed."""
    return int(data_seed) + zlib.crc32(event.encode()) % 10_000


def store_key(
    event: str, profile: Profile, data_seed: int, fields: Sequence[str] | None = None
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
            "seed": data_seed,
            "pipeline": PIPELINE_VERSION,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def prepare_cube(exp: Experiment) -> xr.Dataset:
    """The cube of the experiment's event: synthetic (demo) or the paper's datacube
    (paper), as ``exp.profile.data_source`` says.

    Synthetic cubes are generated with enough passes for the profile from its
    ``data_seed`` and cached as zarr in the data folder; the paper's cubes are
    downloaded once by :func:`sarslide.acquire.load_paper_cube`.
    """
    profile = exp.profile
    if profile.data_source == "synthetic":
        from .synthetic import make_cube

        path = _synthetic_cube_path(exp)
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
            event=exp.event,
            n_pre=max(profile.n_pre_passes, 1),
            n_post=max(profile.n_post_passes, 1),
            seed=_synthetic_seed(exp.event, profile.data_seed),
        )
        save_cube(cube, path)
        return open_cube(path)
    if profile.data_source == "zenodo":
        from .acquire import load_paper_cube

        return load_paper_cube(exp.event, cache_dir=exp.data_dir)
    raise ValueError(
        f"profile {profile.name!r} has data_source={profile.data_source!r}; use "
        "'synthetic' or 'zenodo'"
    )


def _synthetic_cube_path(exp: Experiment) -> Path:
    """Where :func:`prepare_cube` caches a synthetic event cube (a zarr store)."""
    key = store_key(exp.event, exp.profile, exp.profile.data_seed, CUBE_FIELDS)
    return exp.data_dir / "cubes" / f"{exp.event}-{key}.zarr"


def _is_chunk_read_error(err: BaseException) -> bool:
    """Whether ``err`` is a compressed chunk that could not be decoded (a truncated or
    damaged zarr chunk: blosc/numcodecs/zarr raise it while the chips are read)."""
    module = type(err).__module__ or ""
    text = str(err).lower()
    return module.startswith(("numcodecs", "zarr", "blosc")) or any(
        word in text for word in ("decompress", "blosc", "codec")
    )


def profile_pass_pair(cube: xr.Dataset, profile: Profile) -> xr.Dataset:
    """The cube's before/after pass pair chosen as the profile says.

    The one rule every caller shares (chip stores, chapters 2 and 7, ``sarslide map``):
    the paper's named passes when ``profile.named_passes`` (the paper profile), else the
    nearest same-track passes, ``n_pre_passes`` / ``n_post_passes`` of them averaged
    (:func:`sarslide.passes.pass_pair`).
    """
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


def prepare_event(exp: Experiment, *, rebuild: bool = False) -> ChipSet:
    """Balanced, split chips of the experiment's event with stage-1 training
    statistics, cached in its data folder.

    The profile's ``data_seed`` seeds the synthetic scene, the balancing and the split
    (another scene: ``exp.with_overrides(data_seed=1)``). ``rebuild`` builds the store
    again even if a cached one exists.

    Returns
    -------
    ChipSet
        ``images`` (N, 4, chip, chip) linear float32, ``labels``, ``meta`` with a
        ``split`` column, ``stats`` from the stage-1 training chips.
    """
    profile, data_seed = exp.profile, exp.profile.data_seed
    key = store_key(exp.event, profile, data_seed, CHIP_FIELDS)
    path = exp.data_dir / "chips" / f"{exp.event}-{key}"
    recover_directory(path)
    if path.exists() and not rebuild:
        try:
            return open_chips(path)
        except CorruptChipStoreError as err:  # a cache the package owns: build it again
            warnings.warn(
                f"rebuilding the cached chips: {err}", CacheRebuiltWarning, stacklevel=2
            )
    cube = prepare_cube(exp)
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
        damaged = _synthetic_cube_path(exp)
        if is_package_store(damaged):  # never delete a folder the package did not write
            shutil.rmtree(damaged)
        cube = prepare_cube(exp)
        chips = _event_chips(cube, profile)
    chips = balance(chips, seed=data_seed)
    chips = assign_splits(chips, profile.split_scheme, seed=data_seed)
    stats = compute_stats(chips.split("stage1_train").images)
    chips = replace(chips, stats=stats.to_dict())
    save_chips(chips, path)
    return chips
