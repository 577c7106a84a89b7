"""Lazy handles on zarr stores: which open cubes still read a store that is replaced.

:func:`sarslide.cube.open_cube` returns a cube whose arrays are read from the store's
files only when computed. :func:`register_lazy_handle` records a weak reference to each
such cube; when :func:`sarslide.cube.save_cube` replaces the store,
:func:`warn_stale_handles` warns once about the cubes that are still alive and lazy,
since computing with them would mix the old store's metadata with the new store's files.
"""

from __future__ import annotations

import gc
import os
import warnings
import weakref
from pathlib import Path

import xarray as xr

__all__ = ["StaleHandleWarning", "register_lazy_handle", "warn_stale_handles"]


class StaleHandleWarning(UserWarning):
    """A store was replaced while cubes opened lazily from it were still alive."""


# resolved store path -> weak references to the cubes opened lazily from it
_LAZY_HANDLES: dict[str, list[weakref.ref]] = {}


def _live_handles(path: Path) -> list[weakref.ref]:
    """Weak references to the cubes opened from ``path`` that still read it lazily."""
    key = str(path.resolve())
    if _LAZY_HANDLES.get(key):
        gc.collect()  # xarray objects sit in reference cycles: drop the dead ones first

    def lazy(ref: weakref.ref) -> bool:
        cube = ref()
        return cube is not None and any(
            v.chunks is not None for v in cube.variables.values()
        )

    alive = [r for r in _LAZY_HANDLES.get(key, []) if lazy(r)]
    _LAZY_HANDLES[key] = alive
    return alive


def register_lazy_handle(path: str | os.PathLike, cube: xr.Dataset) -> None:
    """Remember that ``cube`` reads the store at ``path`` lazily (a weak reference)."""
    path = Path(path)
    _live_handles(path).append(weakref.ref(cube))


def warn_stale_handles(path: str | os.PathLike, *, stacklevel: int = 2) -> int:
    """Warn if cubes opened lazily from ``path`` are alive after it was replaced.

    Emits one :class:`StaleHandleWarning` naming how many there are (attributed
    ``stacklevel`` frames up from the caller of this function, as
    :func:`warnings.warn` counts) and forgets them. Returns their number (0: no
    warning).
    """
    path = Path(path)
    stale = _live_handles(path)
    if stale:
        warnings.warn(
            f"{len(stale)} cube(s) opened lazily from {path} before this save now read "
            "the new store's files; open it again with open_cube(path) rather than "
            "computing with the old handle(s), which would mix the two stores",
            StaleHandleWarning,
            stacklevel=stacklevel + 1,
        )
        _LAZY_HANDLES.pop(str(path.resolve()), None)
    return len(stale)
